"""Shared pytest fixtures.

Data fixtures (prefixed `data_`) build tiny folders laid out exactly as the PIS release and VOCdevkit lay them out: a PIS release user
folder (`personal/idN/...`) and a VOCdevkit folder. They write files with PIL directly (not with `pis_nb.data`),
so that the readers are tested against independently written data.
"""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from pis_nb.core import voc_palette


def data_write_photo(path, h, w, seed=0, exif=None, fmt_kw=None):
    "Save a smooth random RGB photo (stored h x w) as JPEG at `path`; returns the array written."
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (3, 3, 3)).astype(np.uint8)
    arr = np.array(Image.fromarray(base).resize((w, h), Image.BILINEAR))
    path.parent.mkdir(parents=True, exist_ok=True)
    kw = dict(quality=95, **(fmt_kw or {}))
    if exif is not None: kw['exif'] = exif
    Image.fromarray(arr).save(path, **kw)
    return arr


def data_write_palette_mask(path, lab):
    "Save `lab` (H, W) uint8 as a palette PNG with the VOC palette, as the PIS and VOC releases do."
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.asarray(lab, np.uint8))
    im.putpalette(voc_palette().reshape(-1).tolist())
    im.save(path)


def data_label_map(h, w, seed):
    "A plausible label map: background, one object block, a 255 boundary."
    rng = np.random.default_rng(seed)
    lab = np.zeros((h, w), np.uint8)
    cls = int(rng.integers(1, 21))
    lab[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = cls
    lab[h // 4, w // 4: 3 * w // 4] = 255
    return lab


def data_make_user(personal, user='id1', n=10, labelled=(1, 4, 7), size=(24, 32), groups=None, seed=0):
    """A user folder as released: `JPEGImages/<name>.jpg` for all photos, `SegmentationClass/<name>.png` (palette)
    for `labelled` only, `train_cluster80.txt` listing every photo with a mask path (that does not exist for the
    unlabelled ones) and its group, and `val_all.txt` listing the labelled photos in the same format."""
    root = Path(personal)/user
    groups = list(groups) if groups is not None else [i % 3 for i in range(n)]
    names = [f"{user}_{i:04d}" for i in range(n)]
    labels, lines = {}, []
    for i, name in enumerate(names):
        data_write_photo(root/'JPEGImages'/f"{name}.jpg", *size, seed=seed * 1000 + i)
        if i in labelled:
            labels[name] = data_label_map(*size, seed=seed * 1000 + i)
            data_write_palette_mask(root/'SegmentationClass'/f"{name}.png", labels[name])
        lines.append(f"/JPEGImages/{name}.jpg /SegmentationClass/{name}.png {groups[i]}")
    (root/'train_cluster80.txt').write_text('\n'.join(lines) + '\n')
    (root/'val_all.txt').write_text(''.join(lines[i] + '\n' for i in labelled))
    return SimpleNamespace(root=root, names=names, labelled=list(labelled), groups=groups, labels=labels, size=size)


@pytest.fixture
def data_user(tmp_path):
    "One released-layout user folder `personal/id1` with 10 photos, 3 of them labelled (30%), groups i % 3."
    return data_make_user(tmp_path/'personal')


@pytest.fixture
def data_voc(tmp_path):
    """A VOCdevkit/VOC2012 folder: JPEGImages, SegmentationClass (palette) for every photo, SegmentationClassAug
    (plain 8-bit) for all but the last, ImageSets/Segmentation/{train,val}.txt (bare names) and a train_aug.txt of
    path pairs in the VOC2012 folder."""
    v = tmp_path/'VOCdevkit'/'VOC2012'
    names = ['2007_000032', '2007_000039', '2007_000063', '2008_000002', '2008_000003']
    sizes = [(20, 30), (30, 20), (24, 24), (18, 26), (26, 18)]
    labels = {}
    for i, (name, (h, w)) in enumerate(zip(names, sizes)):
        data_write_photo(v/'JPEGImages'/f"{name}.jpg", h, w, seed=100 + i)
        labels[name] = data_label_map(h, w, seed=100 + i)
        data_write_palette_mask(v/'SegmentationClass'/f"{name}.png", labels[name])
        if i < len(names) - 1:
            (v/'SegmentationClassAug').mkdir(parents=True, exist_ok=True)
            Image.fromarray(labels[name]).save(v/'SegmentationClassAug'/f"{name}.png")   # mode L
    seg = v/'ImageSets'/'Segmentation'
    seg.mkdir(parents=True)
    (seg/'train.txt').write_text('\n'.join(names[:3]) + '\n')
    (seg/'val.txt').write_text('\n'.join(names[3:]) + '\n')
    (v/'train_aug.txt').write_text(''.join(f"/JPEGImages/{n}.jpg /SegmentationClassAug/{n}.png\n" for n in names[:4]))
    return SimpleNamespace(root=v, devkit=tmp_path/'VOCdevkit', names=names, sizes=sizes, labels=labels)


@pytest.fixture
def data_build():
    "The builders above (`photo`, `palette_mask`, `label_map`, `make_user`) for tests that lay out their own data."
    return SimpleNamespace(photo=data_write_photo, palette_mask=data_write_palette_mask, label_map=data_label_map,
                           make_user=data_make_user)


@pytest.fixture
def one_thread():
    "Tiny networks: one thread is as fast, and much faster when other jobs share the cores (restored afterwards)."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
