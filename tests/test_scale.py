"""The Ray engine against a real local Ray runtime (2 CPUs, tiny sizes): the bench gives the same cells and numbers as
the local engine; a task that raises does not stop the others; a task whose worker is killed is reported and a rerun
completes it from its checkpoint; the command line starts and stops its own local cluster."""
import json, os, signal, shutil, subprocess, sys, threading, time
from pathlib import Path
import pytest

ray = pytest.importorskip('ray', reason='Ray is a dev dependency: pip install -e ".[dev]"')
import pandas as pd
from pis_nb.core import RunConfig
from pis_nb.bench import run_bench
from pis_nb.scale import personalize

TINY = dict(crop_size=32, base_size=32, eval_size=32, batch_size=4)


@pytest.fixture(scope='module')
def cluster():
    "One local Ray runtime for the module (the engines join it instead of starting their own)."
    os.environ['RAY_USAGE_STATS_ENABLED'] = '0'
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    "PIS-Synth at the bench's tiny size and a 3-step source-only run on it."
    from pis_nb.synth import make_pis_synth
    from pis_nb.train import train
    from pis_nb.cli import DEMO_CONFIG
    root = tmp_path_factory.mktemp('scale')
    data = root/'data'
    make_pis_synth(data, n_users=2, images_per_user=16, n_source=24, size=48, seed=0, progress=False)
    cfg = RunConfig().override(**{**DEMO_CONFIG, **TINY}, source_root=str(data/'VOCdevkit'/'VOC2012'),
                               personal_root=str(data/'personal'))
    train(cfg.override(num_steps=3), root/'src', 'source', progress=False)
    return root


def test_ray_bench_equals_local(cluster, tmp_path):
    kw = dict(seeds=(0,), users=['id1'], tables=('1',), progress=False, cpus_per_task=1)
    local = run_bench(tmp_path/'local', 'tiny', engine='local', **kw)
    remote = run_bench(tmp_path/'ray', 'tiny', data=tmp_path/'local'/'data', engine='ray', **kw)
    assert local.complete and remote.complete and not remote.failed
    cols = ['table', 'variant', 'user', 'seed', 'fiou', 'fiou_released', 'miou', 'miou_released']
    a, b = (r.cells[cols].sort_values(cols[:4]).reset_index(drop=True) for r in (local, remote))
    assert len(a) == len(b) > 10
    pd.testing.assert_frame_equal(a, b, check_exact=True)       # per-cell seeding, same threads: the same numbers
    assert sorted(remote.computed) == sorted(local.computed)
    again = run_bench(tmp_path/'ray', 'tiny', data=tmp_path/'local'/'data', engine='ray', **kw)
    assert again.computed == [] and again.complete


def test_ray_failing_task_does_not_stop_the_others(cluster, tiny, tmp_path):
    personal = tmp_path/'personal'
    shutil.copytree(tiny/'data'/'personal', personal)
    bad = sorted((personal/'id2'/'JPEGImages').iterdir())[0]
    bad.write_bytes(b'not a jpeg')
    r = personalize(personal, tmp_path/'out', source=tiny/'src', steps=dict(stage1=2, stage2=2), source_data=tiny/'data'/'VOCdevkit'/'VOC2012',
                    engine='ray', progress=False, log=lambda *a: None)
    status = {n: t.status for n, t in r.tasks.items()}
    assert status == {'groups/id1': 'done', 'stage1/id1': 'done', 'stage2/id1': 'done', 'eval/id1': 'done',
                      'groups/id2': 'failed', 'stage1/id2': 'blocked', 'stage2/id2': 'blocked', 'eval/id2': 'blocked'}
    assert bad.name in r.tasks['groups/id2'].error and '\n' not in r.tasks['groups/id2'].error
    assert sorted(r.results.user.unique()) == ['id1'] and r.report.is_file()


def _ray_pids(title: str) -> list[int]:
    "PIDs of the processes whose command line (Ray's process title) starts with `title`."
    pids = []
    for p in Path('/proc').iterdir():
        if p.name.isdigit():
            try: cmd = (p/'cmdline').read_bytes().replace(b'\0', b' ').decode(errors='replace')
            except OSError: continue
            if cmd.startswith(title): pids.append(int(p.name))
    return pids


def test_ray_killed_task_is_reported_and_rerun_completes_it(cluster, tiny, tmp_path):
    out, killed = tmp_path/'out', []
    ckpt = out/'id1'/'ours_s1'/'checkpoint.pt'

    def killer():     # kill the worker running id1's stage 1 once it has written a checkpoint
        deadline = time.time() + 240
        while time.time() < deadline and not killed:
            if ckpt.is_file() and (pids := _ray_pids('ray::stage1/id1')):
                for pid in pids: os.kill(pid, signal.SIGKILL)
                killed.extend(pids)
            time.sleep(0.05)
    threading.Thread(target=killer, daemon=True).start()
    kw = dict(source=tiny/'src', users=['id1'], steps=dict(stage1=400, stage2=2), save_every=5, engine='ray',
              progress=False, log=lambda *a: None)
    r = personalize(tiny/'data'/'personal', out, **kw)
    assert killed, 'the stage-1 worker was never seen running'
    assert r.tasks['stage1/id1'].status == 'failed', r.tasks['stage1/id1']
    assert 'Worker' in r.tasks['stage1/id1'].error or 'died' in r.tasks['stage1/id1'].error, r.tasks['stage1/id1'].error
    assert r.tasks['eval/id1'].status == 'blocked' and r.report is None
    step = json.loads((out/'id1'/'ours_s1'/'summary.json').read_text()).get('step', 0) if (out/'id1'/'ours_s1'/'summary.json').is_file() else 0
    assert ckpt.is_file() and step < 400
    r2 = personalize(tiny/'data'/'personal', out, **kw)
    assert r2.failed == [], r2.failed
    steps = [json.loads(l)['step'] for l in (out/'id1'/'ours_s1'/'log.jsonl').read_text().splitlines() if '"step"' in l]
    assert max(steps) == 400
    assert json.loads((out/'id1'/'ours_s1'/'summary.json').read_text())['status'] == 'finished'
    assert r2.report.is_file()


def test_cli_ray_engine_starts_its_own_cluster(tiny, tmp_path):
    if ray.is_initialized(): ray.shutdown()              # the command must start (and stop) a local cluster itself
    cmd = [str(Path(sys.executable).parent/'pis-nb'), 'personalize', str(tiny/'data'/'personal'), '--out', str(tmp_path/'out'),
           '--source', str(tiny/'src'), '--users', 'id1', '--steps', '2', '--engine', 'ray', '--num-cpus', '2', '--quiet']
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert 'personalize complete' in p.stdout and 'ours_s2' in p.stdout
    assert (tmp_path/'out'/'report.md').is_file()
    bad = subprocess.run(cmd[:-5] + ['--engine', 'local', '--gpus-per-task', '1', '--quiet'], capture_output=True, text=True)
    assert bad.returncode != 0 and 'need --engine ray' in bad.stderr + bad.stdout and 'Traceback' not in bad.stderr
