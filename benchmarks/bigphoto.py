#!/usr/bin/env python3
"""Peak memory of scoring one big photo at its original resolution: the whole (C, H, W) probabilities restored at
once (what `evaluate_user` did before) against the band-by-band maps it uses now (`full_size_maps`), side by side.

    .venv/bin/python benchmarks/bigphoto.py                        # 3 MP and 12 MP both ways, then 48 MP and 169 MP band by band
    .venv/bin/python benchmarks/bigphoto.py --sizes 2000x1500      # a smoke run

Each measurement runs in a fresh process (peak resident memory is per process): a user folder with one labelled
photo of the size given (a smooth JPEG and its palette mask), a small random-init network, eval size 320, and the
photo predicted, its arg-max and entropy maps built and the FIoU computed. It prints the peak RSS, the seconds, and
whether both ways gave the same arg-max map.
"""
from __future__ import annotations
import argparse, json, resource, subprocess, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _make_user(root: Path, h: int, w: int) -> Path:
    "A user folder with one labelled photo of h x w pixels (smooth colours, a block of class 8 on background)."
    import numpy as np
    from PIL import Image
    from pis_nb.core import voc_palette
    user = root/'personal'/'id1'
    (user/'JPEGImages').mkdir(parents=True); (user/'SegmentationClass').mkdir()
    small = np.random.default_rng(0).integers(0, 256, (6, 8, 3)).astype(np.uint8)
    Image.fromarray(small).resize((w, h), Image.BILINEAR).save(user/'JPEGImages'/'big.jpg', quality=90)
    lab = np.zeros((h, w), np.uint8); lab[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 8
    m = Image.fromarray(lab); m.putpalette(voc_palette().reshape(-1).tolist()); m.save(user/'SegmentationClass'/'big.png')
    return user


def _child(user: str, mode: str, out: str) -> None:
    "One measurement in this process: predict the photo `mode` ('whole' | 'bands') and write the figures to `out`."
    import torch
    from pis_nb.model import PISNet, pixel_entropy
    from pis_nb.train import predict_user
    from pis_nb.evaluate import eval_photos
    from pis_nb.metrics import fiou
    torch.set_num_threads(2); torch.manual_seed(0)
    net = PISNet(backbone='small', context_mode='none', pretrained=False).eval()
    ds, _ = eval_photos(user)
    t0 = time.perf_counter()
    for p in predict_user(net, ds, eval_size=320, batch_size=1, full_prob=mode == 'whole'):
        if mode == 'whole':
            pred = p['prob'].argmax(0).to(torch.uint8)
            pixel_entropy(p['prob'].clamp_min(1e-30).log()[None])
        else: pred = p['pred']
        score = fiou([pred], [p['mask']])
    secs = time.perf_counter() - t0
    torch.save(pred, Path(out).with_suffix('.pred.pt'))
    Path(out).write_text(json.dumps(dict(rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, seconds=secs,
                                         fiou=float(score))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--sizes', nargs='+', default=['2000x1500', '4000x3000'], help='WxH photos measured both ways')
    ap.add_argument('--bands-only', nargs='*', default=['8000x6000', '13000x13000'], help='WxH photos measured band by band only')
    a = ap.parse_args()
    import torch
    print(f"{'photo':>12} {'MP':>6} {'way':>6} {'peak RSS MiB':>13} {'seconds':>8}  same arg-max")
    jobs = [(s, m) for s in a.sizes for m in ('whole', 'bands')] + [(s, 'bands') for s in a.bands_only]
    with tempfile.TemporaryDirectory() as d:
        users = {}
        for size, mode in jobs:
            w, h = map(int, size.split('x'))
            if size not in users: users[size] = _make_user(Path(d)/size, h, w)
            out = Path(d)/f"{size}-{mode}.json"
            subprocess.run([sys.executable, __file__, '--child', str(users[size]), mode, str(out)], check=True)
            r = json.loads(out.read_text())
            same = ''
            if mode == 'bands' and (Path(d)/f"{size}-whole.pred.pt").is_file():
                a_, b_ = (torch.load(Path(d)/f"{size}-{m}.pred.pt", weights_only=True) for m in ('whole', 'bands'))
                same = f"{(a_ == b_).double().mean().item() * 100:.4f} % of pixels"
            print(f"{size:>12} {w * h / 1e6:6.0f} {mode:>6} {r['rss_mib']:13.0f} {r['seconds']:8.1f}  {same}", flush=True)


if __name__ == '__main__':
    if len(sys.argv) == 5 and sys.argv[1] == '--child': _child(*sys.argv[2:])
    else: main()
