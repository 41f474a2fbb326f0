"""PIS-Synth (`pis_nb.synth`): byte-for-byte determinism, the real layouts read by the kit's readers, overwrite
protection and crash safety, and the data properties the method relies on (distinct users, long-tailed class
mixes, less varied than the source, recurring scenes)."""
import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pis_nb.synth as synth
from pis_nb.core import NUM_CLASSES, PisError, VOC_CLASSES, voc_palette
from pis_nb.data import UserDataset, VOCSource, list_users, read_image
from pis_nb.explore import channel_stats, class_proportions, mask_table
from pis_nb.synth import make_pis_synth, synth_manifest, synth_meta

ARGS = dict(n_users=3, images_per_user=48, n_source=40, size=96, seed=0)
VALID = set(range(NUM_CLASSES)) | {255}


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    "A small PIS-Synth shared by the read-only tests: 3 users x 48 photos, 40 + 6 source images, 96 px."
    return make_pis_synth(tmp_path_factory.mktemp('synth') / 'pis', progress=False, **ARGS)


def digest(root):
    "sha256 of every file under `root`, by relative path."
    root = Path(root)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob('*')) if p.is_file()}


def small(path, **kw):
    return make_pis_synth(path, **{**dict(n_users=1, images_per_user=8, n_source=4, size=64, progress=False), **kw})


# ------------------------------------------------------------------ determinism
def test_same_arguments_same_bytes(root, tmp_path):
    again = make_pis_synth(tmp_path / 'again', progress=False, workers=2, **ARGS)   # a process pool this time
    a, b = digest(root), digest(again)
    assert len(a) > 200 and a == b


def test_seed_changes_every_image(root, tmp_path):
    other = digest(make_pis_synth(tmp_path / 'seed1', progress=False, **{**ARGS, 'seed': 1}))
    jpgs = [k for k in digest(root) if k.endswith('.jpg')]
    assert all(other.get(k) != digest(root)[k] for k in jpgs)


# ------------------------------------------------------------------ layout
def test_manifest_and_tree(root):
    man = synth_manifest(root)
    assert man['format'] == 'pis-synth' and man['version'] == synth.SYNTH_VERSION and man['args'] == ARGS
    assert man['users'] == ['id1', 'id2', 'id3']
    assert sorted(p.name for p in root.iterdir()) == ['VOCdevkit', 'personal', 'pis_synth.json']
    voc = root / 'VOCdevkit' / 'VOC2012'
    for d in ('JPEGImages', 'SegmentationClassAug', 'SegmentationClass', 'ImageSets/Segmentation'): assert (voc / d).is_dir()
    assert not list(root.parent.glob('pis.partial')) and not list(root.rglob('.pis_synth_partial'))
    for u in man['users']:
        assert sorted(p.name for p in (root / 'personal' / u).iterdir()) == ['JPEGImages', 'SegmentationClass', 'meta.json', 'val_all.txt']


def test_lists_name_existing_files(root):
    voc = root / 'VOCdevkit' / 'VOC2012'
    train = (voc / 'train_aug.txt').read_text().split('\n')
    assert train[-1] == '' and len(train) - 1 == ARGS['n_source'] and all(' ' not in n and '/' not in n for n in train[:-1])
    for lst, sub in (('train_aug.txt', 'SegmentationClassAug'), ('ImageSets/Segmentation/val.txt', 'SegmentationClass'),
                     ('ImageSets/Segmentation/train.txt', 'SegmentationClass')):
        for n in (voc / lst).read_text().split():
            assert (voc / 'JPEGImages' / f'{n}.jpg').is_file() and (voc / sub / f'{n}.png').is_file()
    for u in list_users(root / 'personal'):
        ud = root / 'personal' / u
        lines = (ud / 'val_all.txt').read_text().splitlines()
        for line in lines:
            img, msk = line.split()   # two columns: no group id before clustering
            assert img.startswith('/JPEGImages/') and msk.startswith('/SegmentationClass/')
            assert (ud / img[1:]).is_file() and (ud / msk[1:]).is_file()
        assert len(lines) == len(list((ud / 'SegmentationClass').glob('*.png')))


def test_masks_are_voc_masks(root):
    voc = root / 'VOCdevkit' / 'VOC2012'
    pal = voc_palette().flatten().tolist()
    for p in list((voc / 'SegmentationClassAug').glob('*.png'))[:20]:
        im = Image.open(p); assert im.mode == 'L' and set(np.unique(np.array(im))) <= VALID
    for p in list((voc / 'SegmentationClass').glob('*.png')) + list((root / 'personal' / 'id1' / 'SegmentationClass').glob('*.png')):
        im = Image.open(p); assert im.mode == 'P' and im.getpalette() == pal
        lab = np.array(im); assert set(np.unique(lab)) <= VALID
        assert (lab == 255).any()                                     # the void band on object boundaries
        assert Image.open(p.parent.parent / 'JPEGImages' / f'{p.stem}.jpg').size == im.size


def test_photo_sizes_vary_within_range(root):
    sizes = {Image.open(p).size for p in (root / 'personal' / 'id1' / 'JPEGImages').glob('*.jpg')}
    sizes |= {Image.open(p).size for p in (root / 'VOCdevkit/VOC2012/JPEGImages').glob('*.jpg')}
    assert len(sizes) >= 4 and all(63 <= min(s) and max(s) == 96 for s in sizes)
    assert any(w > h for w, h in sizes) and any(w < h for w, h in sizes)


def test_readers_take_it_unchanged(root):
    voc = root / 'VOCdevkit' / 'VOC2012'
    assert list_users(root / 'personal') == ['id1', 'id2', 'id3']
    for u in list_users(root / 'personal'):
        ds = UserDataset(root / 'personal' / u)
        assert len(ds) == ARGS['images_per_user'] and ds.skipped == []
        lab = UserDataset(root / 'personal' / u, 'val_all.txt')
        assert sorted(lab.names) == sorted(ds.names[i] for i in ds.labelled) and len(lab.labelled) == len(lab)
        assert len(ds.labelled) == round(0.3 * ARGS['images_per_user'])          # ~30% labelled
    src = VOCSource(voc)
    assert len(src) == ARGS['n_source'] and len(src.labelled) == len(src)
    assert len(VOCSource(voc, 'val.txt')) == round(ARGS['n_source'] * 1449 / 10582)
    assert len(VOCSource(root / 'VOCdevkit', 'train.txt')) == round(ARGS['n_source'] * 1464 / 10582)
    assert UserDataset(root / 'personal' / 'id2').verify() == [] and src.verify() == []   # every file decodes
    s = src[0]
    assert s['image'].shape[:2] == s['mask'].shape and set(np.unique(s['mask'])) <= VALID


def test_meta_records_every_photo(root):
    for u in list_users(root / 'personal'):
        meta = synth_meta(root / 'personal' / u)
        names = sorted(p.stem for p in (root / 'personal' / u / 'JPEGImages').glob('*.jpg'))
        assert sorted(p['name'] for p in meta['photos']) == names
        assert {'gain', 'brightness', 'noise', 'blur', 'jpeg'} <= set(meta['traits'])
        assert set(meta['class_weights']) == set(VOC_CLASSES[1:])
        labelled = {p['name'] for p in meta['photos'] if p['labelled']}
        assert labelled == {p.stem for p in (root / 'personal' / u / 'SegmentationClass').glob('*.png')}
        one = sum(p['one_off'] for p in meta['photos'])
        assert one == round(0.12 * ARGS['images_per_user'])
        assert all(s['n_photos'] >= 2 for s in meta['scenes'])


# ------------------------------------------------------------------ safety
def test_cached_when_identical(tmp_path):
    r = small(tmp_path / 'a'); before = {p: p.stat().st_mtime_ns for p in r.rglob('*')}
    t0 = time.perf_counter(); assert small(tmp_path / 'a') == r
    assert time.perf_counter() - t0 < 0.5
    assert {p: p.stat().st_mtime_ns for p in r.rglob('*')} == before


def test_refuses_to_overwrite(tmp_path):
    r = small(tmp_path / 'a')
    with pytest.raises(PisError, match='other arguments'): small(r, seed=3)
    mine = tmp_path / 'mine'; mine.mkdir(); (mine / 'thesis.tex').write_text('precious')
    with pytest.raises(PisError, match='not a finished PIS-Synth'): small(mine)
    assert (mine / 'thesis.tex').read_text() == 'precious'
    (tmp_path / 'f').write_text('x')
    with pytest.raises(PisError, match='not a folder'): small(tmp_path / 'f')
    empty = tmp_path / 'empty'; empty.mkdir()
    assert synth_manifest(small(empty)) is not None                              # an empty folder is fine


def test_overwrite_replaces(tmp_path):
    r = small(tmp_path / 'a')
    small(r, seed=3, overwrite=True)
    assert synth_manifest(r)['args']['seed'] == 3 and not (tmp_path / 'a.old').exists()


def test_crash_leaves_no_finished_looking_dataset(tmp_path, monkeypatch):
    real = synth._work
    def dies(job):
        if job[1]['img'].endswith('src_000002.jpg'): raise RuntimeError('disk full')
        return real(job)
    monkeypatch.setattr(synth, '_work', dies)
    with pytest.raises(RuntimeError, match='disk full'): small(tmp_path / 'a', workers=0)
    assert not (tmp_path / 'a').exists() and (tmp_path / 'a.partial' / '.pis_synth_partial').exists()
    monkeypatch.setattr(synth, '_work', real)
    r = small(tmp_path / 'a')
    assert synth_manifest(r) is not None and not (tmp_path / 'a.partial').exists()
    assert digest(r) == digest(small(tmp_path / 'b'))


def test_foreign_partial_folder_is_left_alone(tmp_path):
    (tmp_path / 'a.partial').mkdir(); (tmp_path / 'a.partial' / 'x').write_text('x')
    with pytest.raises(PisError, match='not made by make_pis_synth'): small(tmp_path / 'a')
    assert (tmp_path / 'a.partial' / 'x').exists()


@pytest.mark.parametrize('kw, msg', [(dict(size=16), 'size must be >= 32'), (dict(n_users=0), 'n_users must be >= 1'),
                                     (dict(images_per_user=2.5), 'images_per_user must be an integer'),
                                     (dict(seed=True), 'seed must be an integer')])
def test_bad_arguments(tmp_path, kw, msg):
    with pytest.raises(PisError, match=msg): small(tmp_path / 'x', **kw)
    assert not (tmp_path / 'x').exists()


# ------------------------------------------------------------------ properties the method relies on
def test_users_have_distinct_colour_statistics(root):
    ch = channel_stats(root / 'personal', progress=False)
    m = ch[['mean_r', 'mean_g', 'mean_b']].to_numpy(float)
    gaps = [np.abs(m[i] - m[j]).max() for i in range(len(m)) for j in range(i + 1, len(m))]
    assert min(gaps) > 0.03, gaps


def test_users_vary_less_than_the_source(root):
    ch = channel_stats(root / 'personal', progress=False)
    src = channel_stats(root / 'VOCdevkit', progress=False).loc['source', ['std_r', 'std_g', 'std_b']].to_numpy(float)
    users = ch[['std_r', 'std_g', 'std_b']].to_numpy(float)
    assert (users < src).all() and users.mean() < 0.85 * src.mean()
    # the per-photo mean colour wanders less across one user's photos than across source photos
    spread = lambda paths: np.std([read_image(p).reshape(-1, 3).mean(0) for p in paths], axis=0).mean()
    src_spread = spread(sorted((root / 'VOCdevkit/VOC2012/JPEGImages').glob('*.jpg')))
    assert all(spread(sorted((root / 'personal' / u / 'JPEGImages').glob('*.jpg'))) < src_spread for u in ('id1', 'id2', 'id3'))


def test_users_have_distinct_long_tailed_class_mixes(root):
    p = class_proportions(mask_table(root / 'personal', progress=False))
    tv = [(p.iloc[i] - p.iloc[j]).abs().sum() / 2 for i in range(len(p)) for j in range(i + 1, len(p))]
    assert min(tv) > 0.3, tv
    for u in p.index:   # a few classes dominate each user
        assert np.sort(p.loc[u].to_numpy())[-3:].sum() > 0.6
    personas = {synth_meta(root / 'personal' / u)['persona'] for u in p.index}
    assert len(personas) == len(p)


def _hist(path):
    a = (read_image(path) // 32).reshape(-1, 3).astype(int)
    h = np.bincount(a @ [64, 8, 1], minlength=512)
    return h / h.sum()


def test_photos_of_a_scene_are_alike(root):
    for u in list_users(root / 'personal'):
        ud = root / 'personal' / u
        photos = [p for p in synth_meta(ud)['photos'] if not p['one_off']]
        H = np.stack([_hist(ud / 'JPEGImages' / f"{p['name']}.jpg") for p in photos])
        sc = np.array([p['scene'] for p in photos])
        D = np.abs(H[:, None] - H[None]).sum(-1) / 2                            # total variation between histograms
        same = (sc[:, None] == sc[None]) & ~np.eye(len(sc), dtype=bool)
        assert D[same].mean() < 0.8 * D[sc[:, None] != sc[None]].mean(), u


def test_scenes_recur_with_the_same_objects_and_hard_cases_have_clear_siblings(root):
    clear_sibling, hard = 0, 0
    for u in list_users(root / 'personal'):
        meta = synth_meta(root / 'personal' / u)
        rec = [p for p in meta['photos'] if not p['one_off']]
        assert len(meta['scenes']) <= len(rec) / 2
        for p in rec:
            if p['hard'] is None: continue
            hard += 1
            clear_sibling += any(q['scene'] == p['scene'] and q['hard'] is None and p['subject'] in q['classes'] for q in rec)
    assert hard > 10 and clear_sibling / hard > 0.85
