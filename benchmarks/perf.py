#!/usr/bin/env python3
"""Performance figures of pis-nb, side by side in one run.

    .venv/bin/python benchmarks/perf.py            # default: CPU always, CUDA too when present (< ~10 min on 2 CPU cores)
    .venv/bin/python benchmarks/perf.py --quick    # a smoke run (seconds)

Prints: the machine; training and evaluation images/s per backbone (small, lite0 at output stride 8 and 16, vgg16,
resnet50) on CPU and, when
available, on CUDA (with the GPU's name); the group-context overhead (group against none, same run, interleaved);
clustering time at the PIS size (10,080 photos x 2048-d, K-means K = 80); peak memory. Networks start from random
weights (nothing is downloaded): speed does not depend on the weights' values.

The big backbones are measured on CPU at a small input (crop 128, batch 2) so that the default run stays short; the
CUDA rows use the paper's input (crop 320, batch 8). Images/s scale roughly with 1/pixels, so CPU figures at 320x320
are about (128/320)^2 = 0.16 times those printed.
"""
from __future__ import annotations
import argparse, os, platform, resource, sys, tempfile, time, warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings('ignore')

import torch


def rss_mib() -> float:
    "Peak resident memory of this process so far (MiB; ru_maxrss is KiB on Linux)."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_model() -> str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'): return line.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or 'unknown CPU'


def machine() -> list[str]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    lines = [f"CPU: {cpu_model()}, {cores} usable cores ({os.cpu_count()} online), torch threads {torch.get_num_threads()}",
             f"torch {torch.__version__}, python {platform.python_version()}, {platform.system()} {platform.release()}",
             f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}"]
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        lines.append(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}")
    else: lines.append("GPU: none (CUDA not available): CPU figures only")
    return lines


def table(rows: list[dict], cols: list[str]) -> str:
    "A plain text table."
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)
    cells = [[fmt(r.get(c, '')) for c in cols] for r in rows]
    w = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    out = ['  '.join(c.ljust(w[i]) for i, c in enumerate(cols)), '  '.join('-' * x for x in w)]
    out += ['  '.join(x[i].ljust(w[i]) for i in range(len(cols))) for x in cells]
    return '\n'.join(out)


def make_data(root: Path, size: int) -> Path:
    "A small PIS-Synth (1 user) to read batches from."
    from pis_nb.synth import make_pis_synth
    return make_pis_synth(root, n_users=1, images_per_user=24, n_source=32, size=size, seed=0, progress=False)


def eval_speed(cfg, user, n_photos: int, device) -> float:
    "Evaluation images/s: `predict_user` (read, resize, network, logits back to full size, softmax) over the user's photos."
    from pis_nb.model import PISNet
    from pis_nb.data import UserDataset
    from pis_nb.train import predict_user
    ds = UserDataset(user)
    net = PISNet.from_config(cfg).to(device).eval()
    only = list(range(min(n_photos, len(ds))))
    for _ in predict_user(net, ds, cfg.eval_size, cfg.batch_size, device, only=only[:cfg.batch_size]): pass   # warm-up
    if device.type == 'cuda': torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in predict_user(net, ds, cfg.eval_size, cfg.batch_size, device, only=only): pass
    if device.type == 'cuda': torch.cuda.synchronize()
    return len(only) / (time.perf_counter() - t)


def speed_rows(data: Path, device: torch.device, setups, steps: int, eval_photos: int) -> list[dict]:
    from pis_nb.core import RunConfig
    from pis_nb.train import benchmark_training
    rows = []
    for bb, crop, batch, *rest in setups:
        stride = rest[0] if rest else 8
        n_steps = steps * 4 if bb == 'small' else steps          # the small network is cheap: more steps, less noise
        cfg = RunConfig(source_root=str(data/'VOCdevkit'/'VOC2012'), personal_root=str(data/'personal'), backbone=bb,
                        pretrained=False, output_stride=stride, crop_size=crop, base_size=crop, eval_size=crop, batch_size=batch, num_workers=0,
                        device=str(device), num_groups=1)
        if device.type == 'cuda': torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        tr = benchmark_training(cfg, (bb,), 'ours', steps=n_steps, warmup=2 if bb == 'small' else 1, target_user='id1').iloc[0]
        ev = eval_speed(cfg, data/'personal'/'id1', eval_photos, device)
        r = dict(device=device.type, backbone=bb if bb != 'lite0' else f'lite0 OS{stride}', crop=crop, batch=batch, amp=tr['amp'],
                 **{'train img/s': float(tr['images_per_s']), 's/step': float(tr['s_per_step']),
                    'eval img/s': float(ev), 'peak RSS MiB': rss_mib(), 'took s': time.perf_counter() - t0})
        if device.type == 'cuda': r['CUDA max alloc MiB'] = torch.cuda.max_memory_allocated() / 2**20
        rows.append(r)
        print(f"  measured {bb} on {device.type} ({r['took s']:.0f} s)", file=sys.stderr, flush=True)
    return rows


def context_rows(device: torch.device, setups, steps: int) -> list[dict]:
    from pis_nb.model import compare_context_cost
    rows = []
    for bb, size, batch in setups:
        if device.type == 'cuda': torch.cuda.reset_peak_memory_stats()
        res = {r['mode']: r for r in compare_context_cost(bb, ('group', 'none'), batch_size=batch, size=size, steps=steps,
                                                          warmup=1, device=device)}
        g, n = res['group'], res['none']
        rows.append({'device': device.type, 'backbone': bb, 'size': size, 'batch': batch,
                     'none s/step': n['step_s'], 'group s/step': g['step_s'], 'time ratio': g['step_s'] / n['step_s'],
                     'activation ratio': g['activation_MiB'] / n['activation_MiB'],
                     'extra params': g['params'] - n['params']})
        print(f"  context cost {bb} on {device.type}", file=sys.stderr, flush=True)
    return rows


def clustering_rows(data: Path, n: int, dim: int, k: int, n_init: int) -> tuple[list[dict], list[str]]:
    from pis_nb.cluster import synthetic_features, prepare_features, kmeans, time_embedding
    from pis_nb.data import UserDataset
    notes = []
    X = synthetic_features(n, dim, seed=0)
    t = time.perf_counter(); P = prepare_features(X); t_prep = time.perf_counter() - t
    t = time.perf_counter(); kmeans(P, k, seed=0, n_init=n_init); t_km = time.perf_counter() - t
    rows = [dict(step=f'K-means K={k} (n_init={n_init}) on {n} x {dim} synthetic features', seconds=t_km, **{'peak RSS MiB': rss_mib()}),
            dict(step='L2 normalisation', seconds=t_prep)]
    paths = UserDataset(data/'personal'/'id1').image_paths
    emb = time_embedding(paths, 'colour-texture')
    rows.append(dict(step=f"embedding, colour-texture ({emb['photos_per_s']:.0f} photos/s on {emb['photos']} photos), "
                          f"extrapolated to {n} photos", seconds=n / emb['photos_per_s']))
    import torchvision
    net = torchvision.models.resnet50(weights=None).eval()       # speed does not depend on the weights' values
    net.fc = torch.nn.Identity()
    x = torch.randn(8, 3, 224, 224)
    with torch.inference_mode():
        net(x[:2])
        t = time.perf_counter(); net(x); dt = (time.perf_counter() - t) / len(x)
    rows.append(dict(step=f"embedding, ResNet-50 2048-d at 224x224 (network only, {1 / dt:.1f} photos/s on a batch of 8), "
                          f"extrapolated to {n} photos", seconds=n * dt))
    notes.append("K-means runs on synthetic 2048-d vectors (pis_nb.cluster.synthetic_features, 1,200 centres): embedding "
                 "10,080 real photos with ResNet-50 on 2 CPU cores takes far longer than the clustering itself; it is "
                 "timed on a few photos and extrapolated instead.")
    return rows, notes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--quick', action='store_true', help='smoke run: tiny sizes, 1 step, small clustering')
    ap.add_argument('--steps', type=int, default=3, help='timed training steps per backbone (after 1 warm-up step)')
    ap.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s choice)')
    a = ap.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    t_all = time.perf_counter()
    out = ['# pis-nb performance figures', '', *machine(), '']
    steps = 1 if a.quick else a.steps
    cpu_setups = [('small', 64, 8), ('lite0', 64, 8, 8), ('lite0', 64, 8, 16), ('small', 128, 2), ('lite0', 128, 2, 16),
                  ('vgg16', 128, 2), ('resnet50', 128, 2)]
    gpu_setups = [('small', 64, 8), ('lite0', 64, 8, 8), ('small', 320, 8), ('lite0', 320, 8, 8), ('vgg16', 320, 8),
                  ('resnet50', 320, 8)]
    if a.quick: cpu_setups = [('small', 64, 2)]; gpu_setups = [('small', 64, 2)]
    with tempfile.TemporaryDirectory() as d:
        data = make_data(Path(d)/'synth', 128)
        devices = [torch.device('cpu')] + ([torch.device('cuda')] if torch.cuda.is_available() else [])
        rows = []
        for dev in devices:
            rows += speed_rows(data, dev, cpu_setups if dev.type == 'cpu' else gpu_setups, steps if dev.type == 'cpu' else 5,
                               8 if (a.quick or dev.type == 'cpu') else 24)
        out += ['## Training and evaluation throughput (method ours: source + target batch per step, group context)', '',
                table(rows, ['device', 'backbone', 'crop', 'batch', 'amp', 'train img/s', 's/step', 'eval img/s',
                             'peak RSS MiB'] + (['CUDA max alloc MiB'] if len(devices) > 1 else [])), '',
                "train img/s counts source and target images (2 x batch per step); eval img/s: predict_user at eval size = "
                "crop on 128x128 PIS-Synth photos, including reading and restoring full size. "
                f"CPU: {steps} timed steps after 1 warm-up ({4 * steps} after 2 for small), random weights.", '']
        ctx = []
        for dev in devices:
            setups = [('small', 64, 8), ('resnet50', 128, 2)] if dev.type == 'cpu' else [('small', 320, 8), ('resnet50', 320, 8)]
            if a.quick: setups = [('small', 64, 2)]
            ctx += context_rows(dev, setups, steps if dev.type == 'cpu' else 5)
        out += ['## Group-context overhead (one training step, group vs none, measured interleaved in this run)', '',
                table(ctx, ['device', 'backbone', 'size', 'batch', 'none s/step', 'group s/step', 'time ratio',
                            'activation ratio', 'extra params']), '']
        n, dim, k = (2000, 256, 20) if a.quick else (10080, 2048, 80)
        crows, notes = clustering_rows(data, n, dim, k, 1 if a.quick else 4)
        out += ['## Clustering at the PIS size (15 users x 672 photos = 10,080; the paper groups per user)', '',
                table(crows, ['step', 'seconds', 'peak RSS MiB']), '', *notes, '']
    out += ['## Peak memory', '', f"peak RSS of this process: {rss_mib():.0f} MiB"]
    if torch.cuda.is_available(): out.append(f"CUDA max allocated (last section): {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    out += ['', f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; total {time.perf_counter() - t_all:.0f} s. "
            "Figures on a shared machine vary with its load: compare rows of one run, not runs of different machines."]
    print('\n'.join(out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
