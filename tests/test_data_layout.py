"""The released layouts (the PIS release and VOCdevkit) read unchanged: PIS user folders with their list files, and VOCdevkit with SBD's
augmented masks; photos in every mode phones and cameras write, EXIF orientation included."""
import numpy as np
import pytest
from PIL import Image

from pis_nb.core import voc_palette
from pis_nb.data import (DatasetError, ListEntry, UserDataset, VOCSource, image_size, list_users, read_image, read_list,
                         read_mask, write_mask)


# ---------------------------------------------------------------- PIS release: personal/idN

def test_release_lists_parse(data_user):
    entries = read_list(data_user.root/'train_cluster80.txt')
    assert len(entries) == 10
    assert entries[0] == ListEntry(f"/JPEGImages/{data_user.names[0]}.jpg", f"/SegmentationClass/{data_user.names[0]}.png", 0, 1)
    assert [e.group for e in entries] == data_user.groups
    assert [e.name for e in entries] == data_user.names and not any(e.bare for e in entries)


def test_release_user_with_cluster_list(data_user):
    ds = UserDataset(data_user.root, 'train_cluster80.txt')
    assert len(ds) == 10 and ds.names == data_user.names
    assert ds.labelled == data_user.labelled                          # masks only for the labelled 30%
    assert ds.groups.dtype == np.int64 and ds.groups.tolist() == data_user.groups
    assert [m is None for m in ds.mask_paths] == [i not in data_user.labelled for i in range(10)]
    assert ds.sizes == [(24, 32)] * 10 and ds.skipped == []
    for i in range(10):
        it = ds[i]
        assert set(it) == {'image', 'mask', 'name', 'group', 'index', 'path'}
        assert it['image'].shape == (24, 32, 3) and it['image'].dtype == np.uint8
        assert (it['name'], it['group'], it['index']) == (data_user.names[i], data_user.groups[i], i)
        if i in data_user.labelled:
            assert it['mask'].dtype == np.uint8 and np.array_equal(it['mask'], data_user.labels[it['name']])
        else:
            assert it['mask'] is None
    assert repr(ds).endswith('10 photos, 3 labelled, 3 groups, 0 skipped)')


def test_release_user_val_list(data_user):
    ds = UserDataset(data_user.root, 'val_all.txt')
    assert ds.names == [data_user.names[i] for i in data_user.labelled]
    assert ds.labelled == [0, 1, 2]
    assert ds.groups.tolist() == [data_user.groups[i] for i in data_user.labelled]


def test_release_user_absolute_list_and_no_list(data_user, tmp_path):
    lf = tmp_path/'elsewhere.txt'
    lf.write_text((data_user.root/'val_all.txt').read_text())
    assert UserDataset(data_user.root, lf).names == UserDataset(data_user.root, 'val_all.txt').names
    scan = UserDataset(data_user.root)
    assert scan.names == sorted(data_user.names) and scan.labelled == data_user.labelled
    assert scan.groups.tolist() == [-1] * 10 and scan.list_file is None


def test_transform_hook(data_user):
    ds = UserDataset(data_user.root, 'train_cluster80.txt', transform=lambda s: {**s, 'seen': s['name'].upper()})
    assert ds[3]['seen'] == data_user.names[3].upper()
    ds.transform = None
    assert 'seen' not in ds[3]


def test_list_users_natural_order(tmp_path, data_build):
    for u in ('id10', 'id2', 'id1'):
        data_build.make_user(tmp_path/'personal', u, n=2, labelled=(0,))
    (tmp_path/'personal'/'notes').mkdir()
    assert list_users(tmp_path/'personal') == ['id1', 'id2', 'id10']
    with pytest.raises(DatasetError, match='no user folders'):
        list_users(tmp_path/'personal'/'notes')


def test_one_column_and_bare_name_lists(data_user):
    n = data_user.names
    (data_user.root/'mixed.txt').write_text(f"# hand-written\n{n[1]}\n/JPEGImages/{n[2]}.jpg\n/JPEGImages/{n[4]}.jpg 5\n")
    ds = UserDataset(data_user.root, 'mixed.txt')
    assert ds.names == [n[1], n[2], n[4]]
    assert ds.labelled == [0, 2]                       # masks found by name in SegmentationClass/
    assert ds.groups.tolist() == [-1, -1, 5]


# ---------------------------------------------------------------- VOCdevkit + SBD

def test_voc_bare_names(data_voc):
    src = VOCSource(data_voc.root, 'train.txt')        # found in ImageSets/Segmentation/
    assert src.names == data_voc.names[:3] and src.labelled == [0, 1, 2]
    assert all(m.parent.name == 'SegmentationClassAug' for m in src.mask_paths)
    for i, name in enumerate(src.names):
        it = src[i]
        assert it['image'].shape == (*data_voc.sizes[i], 3) and it['group'] == -1
        assert np.array_equal(it['mask'], data_voc.labels[name])


def test_voc_palette_fallback(data_voc):
    val = VOCSource(data_voc.root, 'ImageSets/Segmentation/val.txt')
    assert [m.parent.name for m in val.mask_paths] == ['SegmentationClassAug', 'SegmentationClass']
    assert Image.open(val.mask_paths[1]).mode == 'P' and Image.open(val.mask_paths[0]).mode == 'L'
    for i, name in enumerate(val.names):
        assert np.array_equal(val[i]['mask'], data_voc.labels[name])


def test_voc_path_pairs_and_roots(data_voc):
    a = VOCSource(data_voc.root)                       # train_aug.txt of path pairs, the default
    assert a.names == data_voc.names[:4]
    b = VOCSource(data_voc.devkit, 'train_aug.txt')    # the VOCdevkit folder is accepted too
    assert b.names == a.names and b.root == data_voc.root
    c = VOCSource(data_voc.root, data_voc.root/'ImageSets'/'Segmentation'/'train.txt')
    assert c.names == data_voc.names[:3]
    (data_voc.root/'grouped.txt').write_text(''.join(f"/JPEGImages/{n}.jpg /SegmentationClass/{n}.png {i * 7}\n"
                                                     for i, n in enumerate(data_voc.names)))
    g = VOCSource(data_voc.root, 'grouped.txt')
    assert g.groups.tolist() == [0, 7, 14, 21, 28] and g[4]['group'] == 28


# ---------------------------------------------------------------- EXIF orientation

def _exif(o):
    ex = Image.Exif(); ex[0x0112] = o
    return ex


@pytest.mark.parametrize('orientation, shape', [(1, (30, 40)), (3, (30, 40)), (6, (40, 30)), (8, (40, 30))])
def test_exif_orientation(tmp_path, orientation, shape):
    stored = np.zeros((30, 40, 3), np.uint8); stored[:10, :10] = 255        # a white corner, top-left as stored
    p = tmp_path/'phone.jpg'; Image.fromarray(stored).save(p, exif=_exif(orientation), quality=95)
    img = read_image(p)
    assert img.shape == (*shape, 3) and image_size(p) == shape
    corner = {1: img[:10, :10], 3: img[-10:, -10:], 6: img[:10, -10:], 8: img[-10:, :10]}[orientation]
    assert corner.mean() > 200 and img.mean() < 40


def test_exif_orientation_mask_validation(data_user, data_build):
    name = 'portrait'
    data_build.photo(data_user.root/'JPEGImages'/f"{name}.jpg", 24, 32, exif=_exif(6))   # displayed 24 wide, 32 high
    mask = data_user.root/'SegmentationClass'/f"{name}.png"
    data_build.palette_mask(mask, np.ones((32, 24), np.uint8))                             # drawn on the upright photo
    (data_user.root/'p.txt').write_text(f"/JPEGImages/{name}.jpg /SegmentationClass/{name}.png 4\n")
    ds = UserDataset(data_user.root, 'p.txt')
    assert ds.sizes == [(32, 24)] and ds.labelled == [0]
    it = ds[0]
    assert it['image'].shape == (32, 24, 3) and it['mask'].shape == (32, 24)
    # a mask matching the *stored* pixels is refused, with a hint about the orientation
    data_build.palette_mask(mask, np.ones((24, 32), np.uint8))
    with pytest.raises(DatasetError) as e:
        UserDataset(data_user.root, 'p.txt')
    msg = str(e.value)
    assert msg.startswith(f"{data_user.root/'p.txt'}:1: mask") and 'is 32x24 (width x height)' in msg
    assert 'is 24x32' in msg and 'EXIF orientation 6' in msg


# ---------------------------------------------------------------- photo modes

def _save(tmp_path, im, name, **kw):
    p = tmp_path/name; im.save(p, **kw); return p


def test_photo_modes(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    assert np.array_equal(read_image(_save(tmp_path, Image.fromarray(rgb), 'rgb.png')), rgb)
    g = read_image(_save(tmp_path, Image.fromarray(rgb[..., 1]), 'l.png'))
    assert all(np.array_equal(g[..., c], rgb[..., 1]) for c in range(3))
    b = read_image(_save(tmp_path, Image.fromarray(rgb[..., 0] > 127), 'bits.png'))
    assert set(np.unique(b).tolist()) <= {0, 255}
    # alpha: composited on white
    rgba = np.dstack([rgb, np.full((6, 8), 255, np.uint8)]); rgba[:, :4, 3] = 0; rgba[0, 7, 3] = 128
    a = read_image(_save(tmp_path, Image.fromarray(rgba), 'rgba.png'))
    assert (a[:, :4] == 255).all() and np.array_equal(a[1:, 4:], rgb[1:, 4:])
    assert np.allclose(a[0, 7].astype(int), (rgb[0, 7].astype(int) + 255) / 2, atol=2)
    la = read_image(_save(tmp_path, Image.new('LA', (3, 2), (0, 0)), 'la.png'))
    assert (la == 255).all()
    p = Image.new('P', (4, 4), 1); p.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762); p.info['transparency'] = 0
    pt = read_image(_save(tmp_path, p, 'ptrans.png', transparency=0))
    assert pt[0, 0].tolist() == [200, 10, 10]
    p2 = Image.new('P', (4, 4), 0); p2.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    assert (read_image(_save(tmp_path, p2, 'pt2.png', transparency=0)) == 255).all()     # transparent index -> white
    # 16-bit, 32-bit and float grey
    g16 = np.array([[0, 257, 65535]], np.uint16)
    assert read_image(_save(tmp_path, Image.fromarray(g16), 'g16.png'))[..., 0].tolist() == [[0, 1, 255]]
    i32 = Image.fromarray(np.array([[0, 65535, 70000, -5]], np.int32))
    assert read_image(_save(tmp_path, i32, 'i32.tif'))[..., 2].tolist() == [[0, 255, 255, 0]]
    f01 = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert read_image(_save(tmp_path, f01, 'f01.tif'))[..., 0].tolist() == [[0, 128, 255]]
    f255 = Image.fromarray(np.array([[0.0, 100.4, 300.0]], np.float32))
    assert read_image(_save(tmp_path, f255, 'f255.tif'))[..., 0].tolist() == [[0, 100, 255]]
    # CMYK (print workflows, some cameras' JPEGs), YCbCr, GIF, WebP, BMP, TIFF
    c = read_image(_save(tmp_path, Image.new('CMYK', (5, 4), (0, 255, 255, 0)), 'cmyk.jpg'))
    assert c.shape == (4, 5, 3) and c[..., 0].min() > 230 and c[..., 1:].max() < 30          # pure red ink
    assert read_image(_save(tmp_path, Image.new('CMYK', (5, 4), (0, 0, 0, 0)), 'cmyk.tif')).min() == 255
    for name in ('x.gif', 'x.webp', 'x.bmp', 'x.tif'):
        out = read_image(_save(tmp_path, Image.fromarray(rgb), name))
        assert out.shape == (6, 8, 3) and out.dtype == np.uint8 and out.flags.writeable and out.flags.c_contiguous


# ---------------------------------------------------------------- masks

def test_mask_formats(tmp_path, data_build):
    lab = np.zeros((5, 7), np.uint8); lab[1:3, 1:4] = 12; lab[4] = 255; lab[0, 6] = 20
    data_build.palette_mask(tmp_path/'p.png', lab)
    Image.fromarray(lab).save(tmp_path/'l.png')
    rgb = voc_palette()[lab]
    Image.fromarray(rgb).save(tmp_path/'rgb.png')
    rgb_white = rgb.copy(); rgb_white[lab == 255] = 255
    Image.fromarray(rgb_white).save(tmp_path/'white.png')
    rgba = np.dstack([rgb, np.full(lab.shape, 255, np.uint8)]); rgba[0, 0] = (7, 7, 7, 0)    # transparent: ignore
    Image.fromarray(rgba).save(tmp_path/'rgba.png')
    Image.fromarray(lab.astype(np.uint16)).save(tmp_path/'l16.png')
    Image.fromarray(np.dstack([lab, np.full(lab.shape, 255, np.uint8)]), 'LA').save(tmp_path/'la.png')
    for name in ('p.png', 'l.png', 'rgb.png', 'white.png', 'l16.png', 'la.png'):
        m = read_mask(tmp_path/name)
        assert m.dtype == np.uint8 and np.array_equal(m, lab), name
    expect = lab.copy(); expect[0, 0] = 255
    assert np.array_equal(read_mask(tmp_path/'rgba.png'), expect)


def test_write_mask_round_trip(tmp_path):
    import torch
    lab = np.random.default_rng(0).choice(np.r_[0:21, 255], (9, 11)).astype(np.uint8)
    p = write_mask(tmp_path/'sub'/'m.png', torch.from_numpy(lab))
    im = Image.open(p)
    assert im.mode == 'P' and np.array_equal(np.array(im.getpalette()).reshape(-1, 3)[:21], voc_palette()[:21])
    assert np.array_equal(read_mask(p), lab)
    assert sorted(x.name for x in p.parent.iterdir()) == ['m.png']     # no temporary left behind
