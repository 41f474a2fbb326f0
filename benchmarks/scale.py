"""Side by side on this machine: `bench --size tiny` and `personalize` on 4 users with the local engine and with Ray,
plus Ray's own costs (starting a local cluster, the overhead of one task on a warm one). Prints one table and writes
it to benchmarks/scale-cpu.txt (or --out). Run it with nothing else heavy on the machine:

    .venv/bin/python benchmarks/scale.py [--cpus 2] [--out FILE]
"""
import argparse, os, platform, sys, tempfile, time
from pathlib import Path

os.environ['RAY_USAGE_STATS_ENABLED'] = '0'


def _noop(i: int) -> int: return i


def timed(fn):
    t0 = time.perf_counter(); out = fn(); return out, time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--cpus', type=int, default=os.cpu_count(), help='CPUs of the local Ray cluster (default: all)')
    ap.add_argument('--out', default=str(Path(__file__).with_name('scale-cpu.txt')))
    ap.add_argument('--noop-tasks', type=int, default=200)
    args = ap.parse_args(argv)
    import ray, torch
    from pis_nb.bench import run_bench
    from pis_nb.scale import Task, run_tasks, RayEngine, personalize
    from pis_nb.synth import make_pis_synth
    from pis_nb.cli import DEMO_SIZE, shipped_source_dir
    rows, tmp = [], Path(tempfile.mkdtemp(prefix='pis-scale-'))

    # Ray's own costs: starting (and stopping) a local cluster; one no-op task on a warm cluster
    eng, start_s = timed(lambda: RayEngine(num_cpus=args.cpus))
    res, noop_s = timed(lambda: run_tasks([Task(f"noop/{i}", _noop, dict(i=i)) for i in range(args.noop_tasks)],
                                          RayEngine(), progress=False))   # joins the running cluster
    assert all(r.status == 'done' for r in res.values())
    _, stop_s = timed(eng.close)
    rows.append(('ray: start a local cluster', f"{start_s:.1f} s", f"{args.cpus} CPUs"))
    rows.append(('ray: stop it', f"{stop_s:.1f} s", ''))
    rows.append(('ray: one no-op task, warm cluster', f"{1000 * noop_s / args.noop_tasks:.1f} ms",
                 f"{args.noop_tasks} tasks in {noop_s:.2f} s (submit, schedule, run, return)"))

    # bench --size tiny, every table: local loop (as `pis-nb bench`), then Ray with one CPU per task
    (lb, lb_s) = timed(lambda: run_bench(tmp/'bench-local', 'tiny', progress=False))
    (rb, rb_s) = timed(lambda: run_bench(tmp/'bench-ray', 'tiny', data=tmp/'bench-local'/'data', engine='ray',
                                         num_cpus=args.cpus, cpus_per_task=1, progress=False))
    assert lb.complete and rb.complete, (lb, rb)
    same = (lb.cells.sort_values(['table', 'variant', 'user', 'seed'])[['fiou', 'miou']].round(6).values.tolist()
            == rb.cells.sort_values(['table', 'variant', 'user', 'seed'])[['fiou', 'miou']].round(6).values.tolist())
    rows.append(('bench --size tiny, local engine', f"{lb_s:.1f} s", f"{len(lb.cells)} cells, torch {torch.get_num_threads()} threads"))
    rows.append(('bench --size tiny, ray engine', f"{rb_s:.1f} s",
                 f"{len(rb.cells)} cells, {args.cpus} tasks at once x 1 thread, cluster start included; "
                 f"ratio local/ray {lb_s / rb_s:.2f}; numbers {'equal to 1e-6' if same else 'DIFFER (thread count)'}"))

    # personalize: 4 users of the demo's size, from the shipped source model, 50 + 50 steps
    data = tmp/'data'
    make_pis_synth(data, seed=0, progress=False, **DEMO_SIZE)
    kw = dict(steps=dict(stage1=50, stage2=50), progress=False, log=lambda *a, **k: None)
    (lp, lp_s) = timed(lambda: personalize(data/'personal', tmp/'pers-local', **kw))
    (rp, rp_s) = timed(lambda: personalize(data/'personal', tmp/'pers-ray', engine='ray', num_cpus=args.cpus,
                                           cpus_per_task=1, **kw))
    assert not lp.failed and not rp.failed, (lp.failed, rp.failed)
    n_users = lp.results.user.nunique()
    per_task = {n.split('/')[0]: [] for n in lp.tasks}
    for n, r in lp.tasks.items(): per_task[n.split('/')[0]].append(r.seconds)
    stage_s = ', '.join(f"{k} {sum(v) / len(v):.1f} s" for k, v in per_task.items())
    rows.append((f'personalize {n_users} users, local engine', f"{lp_s:.1f} s",
                 f"{lp_s / n_users:.1f} s a user ({stage_s})"))
    rows.append((f'personalize {n_users} users, ray engine', f"{rp_s:.1f} s",
                 f"{args.cpus} tasks at once x 1 thread, cluster start included; ratio local/ray {lp_s / rp_s:.2f}"))

    cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), platform.processor())
    head = (f"pis-nb scale benchmark, {time.strftime('%Y-%m-%d')}: {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"ray {ray.__version__}, Python {platform.python_version()}")
    w = max(len(r[0]) for r in rows)
    text = '\n'.join([head, ''] + [f"{a:<{w}}  {b:>9}  {c}" for a, b, c in rows]) + '\n'
    print(text)
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")


if __name__ == '__main__':
    sys.exit(main())
