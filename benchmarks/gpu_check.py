#!/usr/bin/env python3
"""The GPU figures of pis-nb in one run (run by benchmarks/gpu_check.sh; `--cpu-dry-run` checks it on a CPU machine).

At the paper's configuration (ResNet-50 + PSP + group context, crop 320, batch 8: §5.2) and for the kit's CPU
backbones: training step time and images/s of method ours (one source and one target batch a step), the FLOPs of
one step counted by torch's FlopCounterMode and the fraction of the GPU's dense bf16 peak they reach; a two-stage
train (stage 1 then pseudo labels and stage 2, a few hundred steps); evaluation images/s. Prints one table and
writes it to --out. Networks start from random weights (nothing is downloaded): speed does not depend on them.
"""
from __future__ import annotations
import argparse, json, os, platform, sys, tempfile, time, warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT/'benchmarks'))
warnings.filterwarnings('ignore')
import torch

# dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets, by a word in the device name
BF16_PEAK_TFLOPS = {'H200': 989.5, 'H100': 989.5, 'GH200': 989.5, 'B200': 2250.0, 'A100': 312.0, 'A10G': 70.0, 'A10': 125.0,
                    'L40S': 362.0, 'L40': 181.0, 'L4': 121.0, 'RTX 4090': 165.0, 'RTX 3090': 71.0}


def bf16_peak(name: str) -> float | None:
    "The dense bf16 peak of the GPU called `name` (TFLOP/s), or None when the table does not know it."
    for key in sorted(BF16_PEAK_TFLOPS, key=len, reverse=True):
        if key in name: return BF16_PEAK_TFLOPS[key]
    return None


def step_flops(cfg, user) -> float:
    "FLOPs of one training step of method ours (forward and backward of every network in it), counted by torch."
    from torch.utils.flop_counter import FlopCounterMode
    from pis_nb.train import Trainer
    with tempfile.TemporaryDirectory() as d:
        t = Trainer(cfg, Path(d)/'run', 'ours', progress=False, target_user=user)
        with FlopCounterMode(display=False) as fc: t.benchmark(steps=1, warmup=0)
        return float(fc.get_total_flops())


def two_stage(cfg, user, steps: int) -> dict:
    "Seconds of a stage-1 run of `steps`, then pseudo labels and stage 2 of `steps` (method ours), on one user."
    from pis_nb.train import train
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter(); s1 = train(cfg.override(num_steps=steps), Path(d)/'s1', 'ours', target_user=user, progress=False)
        t1 = time.perf_counter(); s2 = train(cfg.override(num_steps=steps), Path(d)/'s2', 'ours', 2, target_user=user,
                                             init=Path(d)/'s1', progress=False)
        t2 = time.perf_counter()
        assert s1.status == s2.status == 'finished', (s1.status, s2.status)
        return dict(stage1_s=t1 - t0, stage2_s=t2 - t1, steps=steps)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--cpu-dry-run', action='store_true', help='tiny sizes on the CPU: checks the script without a GPU')
    ap.add_argument('--out', default=str(ROOT/'benchmarks'/'gpu-check.txt'), help='file the table is written to')
    ap.add_argument('--steps', type=int, default=10, help='timed training steps per row (after 2 warm-up steps)')
    ap.add_argument('--train-steps', type=int, default=200, help='steps of each stage of the two-stage train')
    a = ap.parse_args(argv)
    from pis_nb.core import RunConfig
    from pis_nb.train import benchmark_training
    from perf import make_data, eval_speed, cpu_model
    t_all = time.perf_counter()
    if a.cpu_dry_run: device, steps, train_steps = torch.device('cpu'), 1, 3
    else:
        if not torch.cuda.is_available(): print("gpu_check: no CUDA GPU (use --cpu-dry-run to check the script)"); return 2
        device, steps, train_steps = torch.device('cuda'), a.steps, a.train_steps
    rows_cfg = ([('small', 32, 2, 8)] if a.cpu_dry_run else
                [('resnet50', 320, 8, 8), ('vgg16', 320, 8, 8), ('lite0', 320, 8, 8), ('lite0', 320, 8, 16), ('small', 320, 8, 8)])
    size = 48 if a.cpu_dry_run else 320
    name = torch.cuda.get_device_name(0) if device.type == 'cuda' else cpu_model()
    peak = bf16_peak(name) if device.type == 'cuda' else None
    head = [f"# pis-nb GPU check, {time.strftime('%Y-%m-%d %H:%M')}{' (CPU dry run: tiny sizes, figures mean nothing)' if a.cpu_dry_run else ''}",
            f"device: {name}" + (f", dense bf16 peak {peak:g} TFLOP/s (data sheet)" if peak else ''),
            f"torch {torch.__version__} (CUDA {torch.version.cuda}), python {platform.python_version()}, CPU {cpu_model()}"]
    lines, rows = [], []
    with tempfile.TemporaryDirectory() as d:
        from pis_nb.synth import make_pis_synth
        data = make_pis_synth(Path(d)/'synth', n_users=1, images_per_user=24 if a.cpu_dry_run else 48,
                              n_source=24 if a.cpu_dry_run else 48, size=size, seed=0, progress=False)
        user = data/'personal'/'id1'
        for bb, crop, batch, stride in rows_cfg:
            cfg = RunConfig(source_root=str(data/'VOCdevkit'/'VOC2012'), personal_root=str(data/'personal'), backbone=bb,
                            pretrained=False, output_stride=stride, crop_size=crop, base_size=crop, eval_size=crop,
                            batch_size=batch, num_workers=0, device=str(device), num_groups=1, disc_width=32 if a.cpu_dry_run else 64)
            if device.type == 'cuda': torch.cuda.reset_peak_memory_stats()
            try:
                tr = benchmark_training(cfg, (bb,), 'ours', steps=steps, warmup=1 if a.cpu_dry_run else 2, target_user='id1').iloc[0]
                flops = step_flops(cfg, 'id1')
                ev = eval_speed(cfg, user, 8 if a.cpu_dry_run else 48, device)
            except Exception as e:                       # one row's failure (a missing package, memory) keeps the others
                lines.append(f"{bb} (output stride {stride}): skipped: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                continue
            r = dict(backbone=bb if bb != 'lite0' else f"lite0 OS{stride}", crop=crop, batch=batch, amp=tr['amp'],
                     s_step=float(tr['s_per_step']), train_img_s=float(tr['images_per_s']), gflop_step=flops / 1e9,
                     tflop_s=flops / float(tr['s_per_step']) / 1e12, eval_img_s=float(ev))
            r['peak_pct'] = 100 * r['tflop_s'] / peak if peak else float('nan')
            if device.type == 'cuda': r['max_alloc_gib'] = torch.cuda.max_memory_allocated() / 2**30
            rows.append(r)
            print(f"  {r['backbone']}: {r['s_step']:.4f} s/step, {r['tflop_s']:.1f} TFLOP/s", file=sys.stderr, flush=True)
        bb, crop, batch, stride = rows_cfg[0]
        cfg = RunConfig(source_root=str(data/'VOCdevkit'/'VOC2012'), personal_root=str(data/'personal'), backbone=bb,
                        pretrained=False, output_stride=stride, crop_size=crop, base_size=crop, eval_size=crop, batch_size=batch,
                        num_workers=0, device=str(device), num_groups=1, disc_width=32 if a.cpu_dry_run else 64)
        ts = two_stage(cfg, 'id1', train_steps)
    cols = ['backbone', 'crop', 'batch', 'amp', 's_step', 'train_img_s', 'gflop_step', 'tflop_s', 'peak_pct', 'eval_img_s'] + \
           (['max_alloc_gib'] if device.type == 'cuda' else [])
    if not rows: print('gpu_check: every row failed:', *lines, sep='\n'); return 1
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    cells = [[fmt(r.get(c, '')) for c in cols] for r in rows]
    w = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    lines += ['', '  '.join(c.ljust(w[i]) for i, c in enumerate(cols)), '  '.join('-' * x for x in w)]
    lines += ['  '.join(x[i].ljust(w[i]) for i in range(len(cols))) for x in cells]
    lines += ['', f"two-stage train, {rows_cfg[0][0]} crop {crop} batch {batch}: stage 1 {ts['steps']} steps in {ts['stage1_s']:.1f} s, "
                  f"pseudo labels + stage 2 {ts['steps']} steps in {ts['stage2_s']:.1f} s "
                  f"({(ts['stage1_s'] + ts['stage2_s']) / (2 * ts['steps']):.4f} s a step, data loading and checkpoints included)",
              "s_step: one step of method ours (source + target batch, discriminators), after warm-up; gflop_step: that step's "
              "FLOPs (forward + backward, FlopCounterMode); peak_pct: tflop_s / the data sheet's dense bf16 peak; "
              f"eval_img_s: predict_user on {size}-px photos, reading and full-size restore included.",
              f"total {time.perf_counter() - t_all:.0f} s"]
    text = '\n'.join(head + [''] + lines) + '\n'
    print(text)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(text)
    (Path(a.out).with_suffix('.json')).write_text(json.dumps(dict(rows=rows, two_stage=ts, device=name), indent=1))
    print(f"wrote {a.out}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
