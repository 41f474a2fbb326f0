"""Catalogue of bad input for `pis_nb.data`: every error is a `PisError` (a `ValueError`), names the file (and the
list `file:line` where there is one), says what is wrong, and never lets a PIL exception or traceback out."""
import logging
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from pis_nb.core import PisError
from pis_nb.data import (DatasetError, ImageReadError, ListFileError, MaskError, UserDataset, VOCSource, image_size,
                         read_image, read_list, read_mask, resolve_path, write_mask)


def raises(exc_type, fn, *parts):
    "Call `fn`, check it raises `exc_type` (a PisError) with every string of `parts` in its message; return it."
    with pytest.raises(exc_type) as info:
        fn()
    e = info.value
    assert isinstance(e, PisError) and isinstance(e, ValueError)
    # no PIL exception chained: nothing to print as "During handling of the above exception ..."
    assert e.__cause__ is None and (e.__context__ is None or e.__suppress_context__), "an exception leaked as the cause"
    msg = str(e)
    for p in parts: assert str(p) in msg, f"{p!r} not in {msg!r}"
    return e


def _chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


def bomb_png(path, w=30000, h=30000):
    "A valid PNG header announcing w x h pixels, a hundred bytes on disk."
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + _chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 0, 0, 0, 0))
                     + _chunk(b'IDAT', zlib.compress(b'\0' * 100)) + _chunk(b'IEND', b''))
    return path


@pytest.fixture
def good_jpg(tmp_path, data_build):
    p = tmp_path/'good.jpg'
    data_build.photo(p, 40, 60)
    return p


# ---------------------------------------------------------------- photos

def test_empty_file(tmp_path):
    p = tmp_path/'x.jpg'; p.write_bytes(b'')
    raises(ImageReadError, lambda: read_image(p), f"{p}: file is empty")


def test_text_file_named_jpg(tmp_path):
    p = tmp_path/'notes.jpg'; p.write_text('shopping list: milk, eggs\n')
    raises(ImageReadError, lambda: read_image(p), f"{p}: not an image file (cannot identify image format)")


def test_heic_hint(tmp_path):
    p = tmp_path/'IMG_0001.HEIC'; p.write_bytes(b'\0\0\0\x18ftypheic' + b'\0' * 40)
    raises(ImageReadError, lambda: read_image(p), f"{p}: not an image file", 'pillow-heif')


def test_truncated_jpeg_data(tmp_path, good_jpg):
    p = tmp_path/'cut.jpg'; p.write_bytes(good_jpg.read_bytes()[:-300])
    raises(ImageReadError, lambda: read_image(p), f"{p}: truncated or corrupt image data", 'truncated')
    # the header is intact, so the size is known without decoding
    assert image_size(p) == (40, 60)


def test_truncated_jpeg_header(tmp_path, good_jpg):
    p = tmp_path/'stub.jpg'; p.write_bytes(good_jpg.read_bytes()[:40])
    raises(ImageReadError, lambda: read_image(p), f"{p}: truncated or corrupt image data")


def test_truncated_png_header(tmp_path):
    p = tmp_path/'a.png'; Image.new('RGB', (10, 10)).save(p)
    q = tmp_path/'cut.png'; q.write_bytes(p.read_bytes()[:30])
    raises(ImageReadError, lambda: read_image(q), f"{q}: truncated or corrupt image data (PNG header cannot be parsed)")


def test_missing_file_and_folder(tmp_path):
    raises(ImageReadError, lambda: read_image(tmp_path/'gone.jpg'), f"{tmp_path/'gone.jpg'}: missing file")
    raises(ImageReadError, lambda: image_size(tmp_path/'gone.jpg'), 'gone.jpg: missing file')
    raises(ImageReadError, lambda: read_image(tmp_path), f"{tmp_path}: is a folder")


def test_decompression_bomb(tmp_path):
    p = bomb_png(tmp_path/'bomb.png')
    raises(ImageReadError, lambda: read_image(p), f"{p}: image too large", 'decompression bomb')
    raises(ImageReadError, lambda: image_size(p), 'bomb.png: image too large')
    raises(MaskError, lambda: read_mask(p), 'bomb.png: image too large')


def test_max_pixels(good_jpg):
    raises(ImageReadError, lambda: read_image(good_jpg, max_pixels=1000), 'good.jpg: image too large (60x40 = 2,400 pixels, limit 1,000)')
    assert read_image(good_jpg, max_pixels=2400).shape == (40, 60, 3)


def test_every_bad_file_is_a_pis_error(tmp_path, good_jpg):
    "Whatever the damage, readers raise the kit's errors only (never OSError, SyntaxError, struct.error ...)."
    data = good_jpg.read_bytes()
    rng = np.random.default_rng(0)
    bad = [b'', b'\xff', b'\xff\xd8\xff', b'\x89PNG\r\n\x1a\n', b'GIF89a', b'BM' + bytes(20), b'II*\x00' + bytes(8),
           data[:200], data[:len(data) // 2], bytes(rng.integers(0, 256, 500, dtype=np.uint8))]
    flipped = bytearray(data); flipped[300:340] = bytes(40); bad.append(bytes(flipped))
    for i, content in enumerate(bad):
        p = tmp_path/f"bad{i}.jpg"; p.write_bytes(content)
        for fn in (read_image, read_mask, image_size):
            try: fn(p)
            except PisError as e: assert f"bad{i}.jpg" in str(e)
            # a half-zeroed JPEG may still decode (to garbage pixels): not an error, but then it must be an array
            else: assert fn is not read_mask


# ---------------------------------------------------------------- masks

def test_mask_bad_values(tmp_path):
    lab = np.zeros((10, 10), np.uint8); lab[0, :4] = 21; lab[1, :2] = 100; lab[2, 0] = 254
    p = tmp_path/'bad.png'; Image.fromarray(lab).save(p)
    raises(MaskError, lambda: read_mask(p), f"{p}: label values outside 0..20 and 255: 21 (4 pixels), 100 (2 pixels), 254 (1 pixels)",
           '(7 of 100 pixels)')


def test_mask_many_bad_values_are_summarised(tmp_path):
    lab = np.arange(100, dtype=np.uint8).reshape(10, 10) + 30
    p = tmp_path/'many.png'; Image.fromarray(lab).save(p)
    e = raises(MaskError, lambda: read_mask(p), 'many.png: label values outside', 'and 95 more values')
    assert len(str(e)) < 400


def test_palette_mask_bad_index(tmp_path, data_build):
    lab = np.zeros((6, 6), np.uint8); lab[0, 0] = 22
    p = tmp_path/'pal.png'; data_build.palette_mask(p, lab)
    raises(MaskError, lambda: read_mask(p), 'pal.png: label values outside 0..20 and 255: 22 (1 pixels)')


def test_16bit_mask_values_are_not_wrapped(tmp_path):
    lab = np.zeros((4, 4), np.uint16); lab[0, 0] = 256 + 3   # would wrap to 3 in uint8
    p = tmp_path/'m16.png'; Image.fromarray(lab).save(p)
    raises(MaskError, lambda: read_mask(p), 'm16.png: label values outside 0..20 and 255: 259 (1 pixels)')


def test_rgb_mask_unknown_colour(tmp_path):
    from pis_nb.core import voc_palette
    rgb = voc_palette()[np.zeros((8, 8), np.uint8)]
    rgb[0, :3] = (10, 20, 30); rgb[1, 0] = (128, 0, 1)
    p = tmp_path/'painted.png'; Image.fromarray(rgb).save(p)
    raises(MaskError, lambda: read_mask(p), f"{p}: RGB mask has colours that are not VOC label colours",
           '(10, 20, 30) (3 pixels)', '(128, 0, 1) (1 pixels)')


def test_mask_saved_as_jpeg(tmp_path):
    from pis_nb.core import voc_palette
    lab = np.zeros((32, 32), np.uint8); lab[8:24, 8:24] = 15
    p = tmp_path/'mask.jpg'; Image.fromarray(voc_palette()[lab]).save(p, quality=75)
    raises(MaskError, lambda: read_mask(p), 'mask.jpg: RGB mask has colours that are not VOC label colours')


def test_mask_unsupported_modes(tmp_path):
    for mode, ext in (('1', 'png'), ('F', 'tif'), ('CMYK', 'tif')):
        p = tmp_path/f"m_{mode}.{ext}"; Image.new(mode, (4, 4)).save(p)
        raises(MaskError, lambda: read_mask(p), f"{p}: unsupported mask mode {mode!r}")


def test_mask_unreadable(tmp_path):
    p = tmp_path/'m.png'; p.write_text('not a png')
    raises(MaskError, lambda: read_mask(p), f"{p}: not an image file")
    raises(MaskError, lambda: read_mask(tmp_path/'none.png'), 'none.png: missing file')


def test_write_mask_rejects_bad_labels(tmp_path):
    raises(MaskError, lambda: write_mask(tmp_path/'w.png', np.full((3, 3), 40)), 'w.png: label values outside', '40 (9 pixels)')
    raises(MaskError, lambda: write_mask(tmp_path/'w.png', np.zeros((2, 2, 3))), 'w.png: a mask must be an (H, W) label map')
    raises(MaskError, lambda: write_mask(tmp_path/'w.png', np.full((2, 2), -1)), 'w.png: label values outside', '-1 (4 pixels)')
    assert not (tmp_path/'w.png').exists()


# ---------------------------------------------------------------- list files

@pytest.mark.parametrize('line, message', [
    ('/JPEGImages/a.jpg /SegmentationClass/a.png 3 extra', 'expected 1 to 3 space-separated columns (image [mask [group]]), got 4'),
    ('/JPEGImages/a.jpg /SegmentationClass/a.png x', "group id must be a non-negative integer, got 'x'"),
    ('/JPEGImages/a.jpg /SegmentationClass/a.png -1', 'group id must be a non-negative integer, got -1'),
    ('/JPEGImages/a.jpg /SegmentationClass/a.png 2.0', "group id must be a non-negative integer, got '2.0'"),
    ('/JPEGImages/a.jpg -4', 'group id must be a non-negative integer, got -4'),
])
def test_malformed_list_line(tmp_path, line, message):
    p = tmp_path/'train_cluster80.txt'
    p.write_text('# header comment\n/JPEGImages/ok.jpg /SegmentationClass/ok.png 0\n\n' + line + '\n')
    raises(ListFileError, lambda: read_list(p), f"{p}:4: {message}")


def test_list_file_problems(tmp_path):
    raises(ListFileError, lambda: read_list(tmp_path/'none.txt'), f"{tmp_path/'none.txt'}: missing list file")
    raises(ListFileError, lambda: read_list(tmp_path), f"{tmp_path}: is a folder")
    b = tmp_path/'bin.txt'; b.write_bytes(b'\x89PNG\r\n\x1a\n\0\0\0\rIHDR')
    raises(ListFileError, lambda: read_list(b), f"{b}: not a text list file")
    l1 = tmp_path/'latin1.txt'; l1.write_bytes('/JPEGImages/\xe9t\xe9.jpg\n'.encode('latin-1'))
    raises(ListFileError, lambda: read_list(l1), f"{l1}: not a UTF-8 text file")


def test_list_on_error_skips(tmp_path):
    p = tmp_path/'l.txt'; p.write_text('/a.jpg /a.png 1\n/b.jpg /b.png x\n/c.jpg /c.png 1 2\n/d.jpg\n')
    seen = []
    entries = read_list(p, on_error=lambda where, e: seen.append((where, str(e))))
    assert [e.image for e in entries] == ['/a.jpg', '/d.jpg']
    assert [w for w, _ in seen] == [f"{p}:2", f"{p}:3"]
    assert seen[0][1].startswith(f"{p}:2: group id")


def test_resolve_path_escape(tmp_path):
    root = tmp_path/'personal'/'id1'; root.mkdir(parents=True)
    for rel in ('/../../x.jpg', '/../id2/JPEGImages/a.jpg', '/JPEGImages/../../id2/a.jpg', '/..', '/'):
        raises(ListFileError, lambda: resolve_path(root, rel, 'list.txt:7'), f"list.txt:7: path {rel!r} leaves the data folder")
    assert resolve_path(root, '/JPEGImages/a.jpg') == root.resolve()/'JPEGImages'/'a.jpg'
    assert resolve_path(root, 'JPEGImages/./b.jpg') == root.resolve()/'JPEGImages'/'b.jpg'


# ---------------------------------------------------------------- datasets

def _write_list(root, *lines, name='list.txt'):
    p = root/name; p.write_text(''.join(l + '\n' for l in lines)); return p


def test_path_escaping_user_folder(data_user):
    lf = _write_list(data_user.root, f"/JPEGImages/{data_user.names[0]}.jpg /SegmentationClass/x.png 0",
                     '/../../etc/passwd.jpg /SegmentationClass/x.png 1')
    raises(ListFileError, lambda: UserDataset(data_user.root, lf.name), f"{lf}:2: path '/../../etc/passwd.jpg' leaves the data folder")


def test_missing_photo(data_user):
    lf = _write_list(data_user.root, f"/JPEGImages/{data_user.names[0]}.jpg /SegmentationClass/x.png 0",
                     '/JPEGImages/lost.jpg /SegmentationClass/lost.png 1')
    raises(DatasetError, lambda: UserDataset(data_user.root, lf.name),
           f"{lf}:2: missing photo {data_user.root.resolve()/'JPEGImages'/'lost.jpg'}")


def test_missing_mask_is_normal(data_user):
    n = data_user.names
    lf = _write_list(data_user.root, f"/JPEGImages/{n[0]}.jpg /SegmentationClass/{n[0]}.png 0",
                     f"/JPEGImages/{n[1]}.jpg /SegmentationClass/{n[1]}.png 0")
    ds = UserDataset(data_user.root, lf.name)
    assert ds.labelled == [1] and ds[0]['mask'] is None and ds.skipped == []


def test_mask_size_mismatch(data_user, data_build):
    name = data_user.names[1]
    mask = data_user.root/'SegmentationClass'/f"{name}.png"
    data_build.palette_mask(mask, np.zeros((20, 32), np.uint8))        # photo is 32 wide, 24 high
    e = raises(DatasetError, lambda: UserDataset(data_user.root, 'train_cluster80.txt'),
               f"{data_user.root/'train_cluster80.txt'}:2: mask {mask.resolve()} is 32x20 (width x height)",
               f"but its photo {(data_user.root/'JPEGImages'/f'{name}.jpg').resolve()} is 32x24")
    assert 'EXIF' not in str(e)
    # also when the dataset is built from the folder, without a list
    raises(DatasetError, lambda: UserDataset(data_user.root), f"mask {mask} is 32x20", 'is 32x24')


def test_mask_not_an_image_at_construction(data_user):
    name = data_user.names[4]
    m = data_user.root/'SegmentationClass'/f"{name}.png"; m.write_text('oops')
    raises(MaskError, lambda: UserDataset(data_user.root, 'val_all.txt'),
           f"{data_user.root/'val_all.txt'}:2: {m.resolve()}: not an image file")


def test_photo_not_an_image_at_construction(data_user):
    p = data_user.root/'JPEGImages'/f"{data_user.names[2]}.jpg"; p.write_bytes(b'')
    raises(ImageReadError, lambda: UserDataset(data_user.root, 'train_cluster80.txt'),
           f"{data_user.root/'train_cluster80.txt'}:3: {p.resolve()}: file is empty")


def test_truncated_photo_found_by_verify_and_on_read(data_user):
    "Construction reads headers only; a photo whose pixel data is cut short is reported by verify() and on reading."
    p = data_user.root/'JPEGImages'/f"{data_user.names[2]}.jpg"
    p.write_bytes(p.read_bytes()[:-200])
    ds = UserDataset(data_user.root, 'train_cluster80.txt')
    problems = ds.verify()
    assert [path for path, _ in problems] == [str(p.resolve())]
    assert 'truncated or corrupt image data' in problems[0][1]
    raises(ImageReadError, lambda: ds[2], f"{p.resolve()}: truncated or corrupt image data")
    assert ds[1]['image'].shape == (24, 32, 3)


def test_bad_mask_values_found_by_verify_and_on_read(data_user):
    name = data_user.names[7]
    m = data_user.root/'SegmentationClass'/f"{name}.png"
    Image.fromarray(np.full((24, 32), 99, np.uint8)).save(m)
    ds = UserDataset(data_user.root)
    assert ds.verify() == [(str(data_user.root/'JPEGImages'/f"{name}.jpg"), f"{m}: label values outside 0..20 and 255: 99 (768 pixels) (768 of 768 pixels)")]
    raises(MaskError, lambda: ds[7], f"{m}: label values outside 0..20 and 255: 99 (768 pixels)")


def test_duplicate_line(data_user):
    n = data_user.names
    lf = _write_list(data_user.root, f"/JPEGImages/{n[0]}.jpg /SegmentationClass/{n[0]}.png 0",
                     f"/JPEGImages/{n[1]}.jpg /SegmentationClass/{n[1]}.png 0",
                     f"/JPEGImages/{n[0]}.jpg /SegmentationClass/{n[0]}.png 2")
    raises(DatasetError, lambda: UserDataset(data_user.root, lf.name), f"{lf}:3: photo", f"{n[0]}.jpg is listed twice (first at {lf}:1)")


def test_same_name_in_two_folders(data_user, data_build):
    n = data_user.names[0]
    data_build.photo(data_user.root/'extra'/f"{n}.jpg", 24, 32)
    lf = _write_list(data_user.root, f"/JPEGImages/{n}.jpg", f"/extra/{n}.jpg")
    raises(DatasetError, lambda: UserDataset(data_user.root, lf.name), f"{lf}:2: two photos are named {n!r}")


def test_skip_bad_reports(data_user, data_build, caplog):
    n = data_user.names
    data_build.palette_mask(data_user.root/'SegmentationClass'/f"{n[4]}.png", np.zeros((10, 10), np.uint8))
    lf = _write_list(data_user.root,
                     f"/JPEGImages/{n[0]}.jpg /SegmentationClass/{n[0]}.png 0",
                     '/JPEGImages/lost.jpg /SegmentationClass/lost.png 0',
                     f"/JPEGImages/{n[1]}.jpg /SegmentationClass/{n[1]}.png zero",
                     '/../../x.jpg /SegmentationClass/x.png 1',
                     f"/JPEGImages/{n[4]}.jpg /SegmentationClass/{n[4]}.png 1",
                     f"/JPEGImages/{n[5]}.jpg /SegmentationClass/{n[5]}.png 2")
    with caplog.at_level(logging.WARNING, logger='pis_nb.data'):
        ds = UserDataset(data_user.root, lf.name, skip_bad=True)
    assert ds.names == [n[0], n[5]] and ds.groups.tolist() == [0, 2]
    paths = [p for p, _ in ds.skipped]
    reasons = [r for _, r in ds.skipped]
    assert paths == [str(data_user.root.resolve()/'JPEGImages'/'lost.jpg'), f"{lf}:3", f"{lf}:4",
                     str(data_user.root.resolve()/'JPEGImages'/f"{n[4]}.jpg")]
    assert reasons[0].startswith(f"{lf}:2: missing photo") and reasons[1].startswith(f"{lf}:3: group id")
    assert reasons[2].startswith(f"{lf}:4: path") and reasons[3].startswith(f"{lf}:5: mask") and 'is 10x10' in reasons[3]
    warned = [r.getMessage() for r in caplog.records if r.name == 'pis_nb.data' and r.levelno == logging.WARNING]
    assert len(warned) == 4 and all(any(r in w for w in warned) for r in reasons)
    assert '4 skipped' in repr(ds)


def test_skip_bad_everything_bad(data_user):
    lf = _write_list(data_user.root, '/JPEGImages/a.jpg', '/JPEGImages/b.jpg')
    raises(DatasetError, lambda: UserDataset(data_user.root, lf.name, skip_bad=True), f"{lf}: no photos (2 skipped as bad")


def test_empty_user_folders(tmp_path, data_user):
    raises(DatasetError, lambda: UserDataset(tmp_path/'nobody'), f"{tmp_path/'nobody'}: no such user folder")
    (tmp_path/'u0').mkdir()
    raises(DatasetError, lambda: UserDataset(tmp_path/'u0'), f"{tmp_path/'u0'}: no JPEGImages folder")
    (tmp_path/'u1'/'JPEGImages').mkdir(parents=True); (tmp_path/'u1'/'JPEGImages'/'notes.txt').write_text('x')
    (tmp_path/'u1'/'JPEGImages'/'._IMG_1.jpg').write_bytes(b'\0\x05\x16\x07')       # macOS resource fork: ignored
    raises(DatasetError, lambda: UserDataset(tmp_path/'u1'), f"{tmp_path/'u1'/'JPEGImages'}: no images")
    lf = _write_list(data_user.root, '# nothing here', '')
    raises(DatasetError, lambda: UserDataset(data_user.root, lf.name), f"{lf}: no photos")
    raises(ListFileError, lambda: UserDataset(data_user.root, 'val_none.txt'), 'val_none.txt: missing list file')
    raises(ListFileError, lambda: UserDataset(data_user.root, tmp_path/'abs.txt'), f"{tmp_path/'abs.txt'}: missing list file")


def test_voc_problems(data_voc, data_build):
    v = data_voc.root
    seg = v/'ImageSets'/'Segmentation'
    (seg/'nomask.txt').write_text('2007_000032\n2009_000001\n')
    data_build.photo(v/'JPEGImages'/'2009_000001.jpg', 10, 10)
    raises(DatasetError, lambda: VOCSource(v, 'nomask.txt'), f"{seg/'nomask.txt'}:2: no mask for 2009_000001",
           str(v/'SegmentationClassAug'/'2009_000001.png'), str(v/'SegmentationClass'/'2009_000001.png'))
    assert VOCSource(v, 'nomask.txt', require_masks=False).labelled == [0]
    (v/'pairs.txt').write_text('/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png\n'
                               '/JPEGImages/2008_000003.jpg /SegmentationClassAug/2008_000003.png\n')
    raises(DatasetError, lambda: VOCSource(v, 'pairs.txt'), f"{v/'pairs.txt'}:2: missing mask {v.resolve()/'SegmentationClassAug'/'2008_000003.png'}")
    (v/'escape.txt').write_text('/../../../x.jpg /SegmentationClassAug/x.png\n')
    raises(ListFileError, lambda: VOCSource(v, 'escape.txt'), f"{v/'escape.txt'}:1: path '/../../../x.jpg' leaves the data folder")
    raises(ListFileError, lambda: VOCSource(v, 'test.txt'), 'test.txt: missing list file', str(seg))
    raises(DatasetError, lambda: VOCSource(v.parent.parent/'nothing'), 'nothing: no such VOC2012 folder')
    raises(DatasetError, lambda: VOCSource(seg), 'no JPEGImages folder, not a VOC2012 folder')
