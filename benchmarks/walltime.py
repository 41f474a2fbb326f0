#!/usr/bin/env python3
"""Source-only FIoU after the same wall time: small (random init) against lite0 (ImageNet init), side by side in one run.

    .venv/bin/python benchmarks/walltime.py                 # 4 setups x 300 s of training (21 min on 2 CPU cores, measured)
    .venv/bin/python benchmarks/walltime.py --seconds 20    # a smoke run

Each setup trains the source-only model of the demo recipe on PIS-Synth at the demo size (seed 0) for as many steps as
fit in the budget (steps = budget / seconds per step, measured on a 30-step run first, so the poly schedule ends
when the budget does), then scores the labelled photos of users id1 and id2 and the source's own `val.txt` photos
(in-domain). Beside each setup it prints the *resolution ceiling*: the FIoU a perfect classifier reaches when its
class scores live on the network's output grid (crop / output stride) and are upsampled bilinearly to the photo's
size, as the network's logits are. At 64 px and output stride 8 the grid is 8 x 8.
"""
from __future__ import annotations
import argparse, json, os, sys, tempfile, time, warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings('ignore')

import torch, torch.nn.functional as F

SETUPS = [  # label, overrides of the demo recipe
    ('small 64 (demo today)', dict(backbone='small', pretrained=False)),
    ('lite0 OS8 64', dict(backbone='lite0', pretrained=True, output_stride=8)),
    ('small 128/96', dict(backbone='small', pretrained=False, base_size=128, crop_size=96, eval_size=128)),
    ('lite0 OS8 128/96', dict(backbone='lite0', pretrained=True, output_stride=8, base_size=128, crop_size=96, eval_size=128)),
]


def source_val_folder(voc_root: Path, out: Path) -> Path:
    "The source's val photos as a user folder (hard links), so that `evaluate_run` scores them like a user's."
    names = (voc_root/'ImageSets'/'Segmentation'/'val.txt').read_text().split()
    for sub in ('JPEGImages', 'SegmentationClass'): (out/sub).mkdir(parents=True, exist_ok=True)
    for n in names:
        for sub, ext in (('JPEGImages', '.jpg'), ('SegmentationClass', '.png')):
            if not (out/sub/(n + ext)).exists(): os.link(voc_root/sub/(n + ext), out/sub/(n + ext))
    return out


def grid_ceiling(user_root: Path, grid: int) -> float:
    "FIoU of the true labels pooled to a `grid` x `grid` score map and upsampled bilinearly (ignore pooled as background)."
    from pis_nb.data import read_mask
    from pis_nb.metrics import fiou
    labs = [torch.from_numpy(read_mask(p)).long() for p in sorted((user_root/'SegmentationClass').glob('*.png'))]
    preds = []
    for l in labs:
        oh = F.one_hot(l.clamp(max=20), 21).permute(2, 0, 1)[None].float()
        oh[:, 0] += (l == 255).float()
        up = F.interpolate(F.adaptive_avg_pool2d(oh, grid), size=l.shape, mode='bilinear', align_corners=False)
        preds.append(up.argmax(1)[0].to(torch.uint8))
    return fiou(preds, labs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--seconds', type=float, default=300, help='training budget per setup (default 300)')
    ap.add_argument('--only', type=int, nargs='*', help='indices of SETUPS to run (default: all)')
    args = ap.parse_args(argv)
    from pis_nb.bench import bench_config
    from pis_nb.cli import DEMO_SIZE
    from pis_nb.evaluate import evaluate_run
    from pis_nb.synth import make_pis_synth
    from pis_nb.train import train
    from benchmarks.perf import machine, table
    print('# pis-nb: source-only FIoU after the same wall time\n'); print('\n'.join(machine()), '\n')
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp); data = make_pis_synth(tmp/'data', **DEMO_SIZE, progress=False)
        srcval = source_val_folder(data/'VOCdevkit'/'VOC2012', tmp/'srcval')
        users = {'id1': data/'personal'/'id1', 'id2': data/'personal'/'id2', 'src val': srcval}
        for i, (label, kw) in enumerate(SETUPS):
            if args.only and i not in args.only: continue
            cfg = bench_config(data, 'medium').override(**kw)
            # probe: a short real run (data loading included), so that the budget holds for the long one
            t0 = time.perf_counter(); train(cfg.override(num_steps=30), tmp/f'probe{i}', method='source', progress=False)
            s_step = (time.perf_counter() - t0) / 30
            steps = max(2, int(args.seconds / s_step))
            t0 = time.perf_counter(); train(cfg.override(num_steps=steps), tmp/f'run{i}', method='source', progress=False)
            secs = time.perf_counter() - t0
            res = evaluate_run(tmp/f'run{i}', users=list(users.values()), progress=False)
            m = res.pivot_table(index='user', columns='metric', values='value')
            stride = 8 if cfg.backbone == 'small' else cfg.output_stride
            grid = -(-cfg.eval_size // stride)
            row = dict(setup=label, steps=steps, **{'s/step': s_step, 'train s': secs},
                       **{f'FIoU {u}': 100 * m.loc[Path(r).name, 'fiou'] for u, r in users.items()},
                       **{'MIoU id1+id2': 50 * (m.loc['id1', 'miou'] + m.loc['id2', 'miou'])},
                       grid=f'{grid}x{grid}',
                       **{f'ceiling {u}': 100 * grid_ceiling(Path(r), grid) for u, r in users.items()})
            rows.append(row); print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    cols = list(rows[0])
    print('\n' + table(rows, cols))
    print(f"\nbudget {args.seconds:.0f} s of training per setup (seed 0, batch 8, lr 0.01 with heads x10, poly 0.9); "
          "FIoU and MIoU (paper's: foreground classes in the labels) in %; 'src val' is the source's own val.txt (in-domain); "
          "ceiling: a perfect classifier on the output grid, upsampled bilinearly.")
    return 0


if __name__ == '__main__':
    sys.exit(main())
