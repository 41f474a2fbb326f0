"""Stage 0 (pis_nb.cluster): embedders, feature cache, K-means with capped / automatic K, the group list file,
scene agreement on PIS-Synth, and the GroupBrowser widget's state. No test times anything."""
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

import pis_nb.cluster as C
from pis_nb.core import PisError
from pis_nb.data import GroupBatchSampler, UserDataset, read_image
from pis_nb.synth import make_pis_synth, synth_meta


class CountingEncoder(nn.Module):
    "A small conv net that counts its forward calls."
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, 2, 1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return torch.relu(self.conv(x))


@pytest.fixture(scope='module')
def synth(tmp_path_factory):
    "A tiny PIS-Synth: 2 users of 48 photos, 64 px (5 recurring scenes and 6 one-offs each)."
    return make_pis_synth(tmp_path_factory.mktemp('cl')/'pis-synth', n_users=2, images_per_user=48, n_source=2,
                          size=64, seed=0, progress=False)


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return fn(*a, **kw)


# --- the list file ---------------------------------------------------------------------------------------------

def test_list_round_trip(data_user):
    r = _quiet(C.cluster_user, data_user.root, 3, embedder='colour-texture', progress=False)
    assert r.path == data_user.root/'train_cluster3.txt' and r.k == 3
    lines = r.path.read_text().splitlines()
    assert len(lines) == 10
    assert lines[0] == f"/JPEGImages/{r.names[0]}.jpg /SegmentationClass/{r.names[0]}.png {r.labels[0]}"
    ds = UserDataset(data_user.root, r.path.name)
    assert ds.names == r.names == data_user.names
    assert ds.groups.tolist() == r.labels.tolist()
    assert ds.labelled == data_user.labelled == r.labelled          # mask paths of unlabelled photos are written too
    for batch in GroupBatchSampler(ds.groups, 2, seed=0):
        assert len(set(ds.groups[batch].tolist())) == 1
    assert sorted(np.bincount(r.labels).tolist(), reverse=True) == np.bincount(r.labels).tolist()   # 0 = largest


def test_list_write_is_atomic(data_user, monkeypatch):
    root = data_user.root
    target = root/'train_cluster2.txt'
    target.write_text('old content\n')
    calls = {'n': 0}
    real = C._list_line

    def failing(*a):
        calls['n'] += 1
        if calls['n'] > 3: raise RuntimeError('disk full')
        return real(*a)

    monkeypatch.setattr(C, '_list_line', failing)
    paths = UserDataset(root).image_paths
    with pytest.raises(RuntimeError, match='disk full'):
        C.write_cluster_list(root, paths, np.arange(10) % 2, overwrite=True)
    assert target.read_text() == 'old content\n'                      # the old list survives
    with pytest.raises(RuntimeError, match='disk full'):
        calls['n'] = 0
        C.write_cluster_list(root, paths, np.arange(10) % 2, list_name='fresh.txt')
    assert not (root/'fresh.txt').exists()                            # no half file
    assert not [p for p in root.iterdir() if p.name.endswith('.tmp')]  # and no temporary left behind


def test_existing_list_not_overwritten(data_user):
    root = data_user.root                                              # holds the release's train_cluster80.txt
    before = (root/'train_cluster80.txt').read_text()
    with pytest.raises(C.ClusterError, match='exists with other groups'):
        _quiet(C.cluster_user, root, 3, embedder='colour-texture', list_name='train_cluster80.txt', progress=False)
    assert (root/'train_cluster80.txt').read_text() == before
    r = _quiet(C.cluster_user, root, 3, embedder='colour-texture', list_name='train_cluster80.txt', overwrite=True,
               progress=False)
    assert UserDataset(root, 'train_cluster80.txt').groups.tolist() == r.labels.tolist()


# --- K ---------------------------------------------------------------------------------------------------------

def test_k_is_capped(data_user):
    with pytest.warns(UserWarning, match=r'K=80 capped to 5 \(10 photos'):
        r = C.cluster_user(data_user.root, 80, embedder='colour-texture', progress=False, write=False)
    assert r.k == 5 and r.k_requested == 80 and r.path is None
    assert C.cap_k(80, 672) == 80
    with pytest.warns(UserWarning, match='capped to 1'):
        assert C.cap_k(3, 1) == 1
    with pytest.warns(UserWarning, match='capped to 4 .30 photos, 4 distinct'):
        assert C.cap_k(10, 30, n_distinct=4) == 4
    with pytest.raises(PisError, match='K must be >= 1'):
        C.cap_k(0, 10)
    with pytest.raises(PisError, match="k must be a positive integer or 'auto'"):
        C.cluster_user(data_user.root, 2.5, embedder='colour-texture', progress=False)


def test_auto_k_curve_and_range(synth):
    u = synth/'personal'/'id1'
    r = _quiet(C.cluster_user, u, 'auto', embedder='colour-texture', progress=False, write=False)
    rng = C.default_k_range(48)
    assert rng[0] == 2 and rng[-1] == 12
    assert list(r.curve.columns) == ['k', 'silhouette', 'inertia'] and r.curve.k.tolist() == rng
    assert r.k in rng and r.k == int(r.curve.k[r.curve.silhouette.idxmax()])
    assert math.isclose(r.silhouette, r.curve.silhouette.max())
    r2 = _quiet(C.cluster_user, u, 'auto', embedder='colour-texture', k_range=[3, 5, 7, 400], progress=False, write=False)
    assert r2.k in (3, 5, 7) and r2.curve.k.tolist() == [3, 5, 7]     # K above n // 2 is dropped
    assert C.default_k_range(672)[0] == 26 and C.default_k_range(672)[-1] == 160


def test_scenes_recovered(synth):
    "Measured on this tiny PIS-Synth with K = scenes + 2 = 7: ARI 0.70 for both users; threshold 0.5."
    for u in ('id1', 'id2'):
        root = synth/'personal'/u
        k = len(synth_meta(root)['scenes']) + 2
        r = C.cluster_user(root, k, embedder='colour-texture', progress=False, write=False)
        a = C.scene_agreement(r)
        assert a['ari'] > 0.5, a
        assert 0 < a['nmi'] <= 1


# --- embedders and the cache ----------------------------------------------------------------------------------

def test_embedder_interface():
    ct = C.ColourTextureEmbedder()
    photos = [np.full((20, 30, 3), c, np.uint8) for c in (10, 128, 250)]
    f = ct(photos)
    assert f.shape == (3, ct.dim) and f.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1, atol=1e-5)
    batch = torch.stack([ct.prepare(p) for p in photos])
    np.testing.assert_allclose(ct(batch), f, atol=1e-5)
    np.testing.assert_allclose(ct(batch.permute(0, 2, 3, 1).numpy()), f, atol=1e-5)
    enc = C.EncoderEmbedder(CountingEncoder(), size=16)
    assert enc(photos).shape == (3, 6) and enc.dim == 6
    assert isinstance(C.get_embedder('colour-texture'), C.ColourTextureEmbedder)
    with pytest.raises(PisError, match="unknown embedder 'clip'"):
        C.get_embedder('clip')


def test_cache_hit_and_miss(data_user, tmp_path):
    enc = CountingEncoder()
    emb = C.EncoderEmbedder(enc, size=16)
    root = data_user.root
    f1 = C.embed_photos(root, emb, batch_size=4, progress=False)
    assert f1.shape == (10, 6) and enc.calls == 3
    cache = root/'.pis_cache'
    assert (cache/'.gitignore').read_text().strip().endswith('*')
    assert len(list(cache.glob('features-encoder-*.npz'))) == 1
    f2 = C.embed_photos(root, emb, batch_size=4, progress=False)
    assert enc.calls == 3 and np.array_equal(f1, f2)                  # second call: no forward at all
    photo = UserDataset(root).image_paths[4]
    Image.fromarray(255 - read_image(photo)).save(photo, quality=95)  # a photo changes on disk
    f3 = C.embed_photos(root, emb, batch_size=4, progress=False)
    assert enc.calls == 4                                             # only that photo is embedded again
    assert not np.allclose(f3[4], f1[4]) and np.allclose(np.delete(f3, 4, 0), np.delete(f1, 4, 0))
    with torch.no_grad(): enc.conv.bias.add_(1)                       # new weights: a new cache entry
    C.embed_photos(root, emb, batch_size=4, progress=False)
    assert enc.calls == 7
    other = tmp_path/'elsewhere'
    C.embed_photos(root, emb, batch_size=10, cache_dir=other, progress=False)
    assert enc.calls == 8 and len(list(other.glob('*.npz'))) == 1
    C.embed_photos(root, emb, batch_size=10, cache_dir=False, progress=False)
    assert enc.calls == 9


def test_damaged_cache_is_rebuilt(data_user):
    emb = C.ColourTextureEmbedder(size=32)
    f1 = C.embed_photos(data_user.root, emb, progress=False)
    (cf,) = (data_user.root/'.pis_cache').glob('features-colour-texture-*.npz')
    cf.write_bytes(cf.read_bytes()[:100])
    with pytest.warns(UserWarning, match='unreadable feature cache'):
        f2 = C.embed_photos(data_user.root, emb, progress=False)
    np.testing.assert_allclose(f1, f2, atol=1e-6)
    np.testing.assert_allclose(C.embed_photos(data_user.root, emb, progress=False), f1, atol=1e-6)


def test_resnet50_weights_from_hub_cache(tmp_path, monkeypatch, data_user):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path/'torch'))
    path = C.resnet50_weights_path()
    assert path == tmp_path/'torch'/'hub'/'checkpoints'/'resnet50-11ad3fa6.pth'
    with pytest.raises(C.WeightsMissingError) as e:
        C.ResNet50Embedder()
    msg = str(e.value)
    assert f'weights not found at {path}' in msg and 'never downloads' in msg and "embedder='colour-texture'" in msg
    assert isinstance(e.value, PisError)
    with pytest.raises(C.WeightsMissingError):                        # the default of cluster_user is the paper's
        C.cluster_user(data_user.root, 2, progress=False)
    import torchvision
    path.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    rn = C.ResNet50Embedder()
    f = rn([np.zeros((40, 50, 3), np.uint8), np.full((30, 20, 3), 200, np.uint8)])
    assert f.shape == (2, 2048) and rn.dim == 2048 and np.isfinite(f).all()
    assert rn.config()['weights_sha1'] == C.file_sha1(path)
    bad = tmp_path/'bad.pth'
    torch.save({'fc.weight': torch.zeros(3)}, bad)
    with pytest.raises(C.WeightsError, match='not a torchvision ResNet-50 state dict'):
        C.ResNet50Embedder(weights_path=bad)


# --- looking at the groups -------------------------------------------------------------------------------------

def test_group_browser_state(synth):
    res = _quiet(C.cluster_users, synth/'personal', k=6, embedder='colour-texture', progress=False, write=False)
    assert list(res) == ['id1', 'id2']
    gb = C.GroupBrowser(res, max_thumbs=5, n_epochs=20)
    r1, r2 = res['id1'], res['id2']
    assert (gb.user, gb.group) == ('id1', 0)
    assert gb.shown == [r1.names[i] for i in r1.members(0)][:5]
    assert [v for _, v in gb.group_dd.options] == list(range(r1.k))
    assert gb.stats['size'] == r1.sizes[0] and sum(gb.stats['scenes'].values()) == r1.sizes[0]
    gb.group = 2
    assert gb.shown == [r1.names[i] for i in r1.members(2)][:5]
    assert len(gb.grid.children) == len(gb.shown)
    gb.user = 'id2'
    assert gb.group == 0 and gb.shown[0] == r2.names[r2.members(0)[0]]
    xy = r2.map_xy(n_epochs=20)
    j = int(np.argmax(r2.labels))                                     # a photo of the last group
    assert gb.select_point(*xy[j]) == r2.names[j]
    assert (gb.selected, gb.group) == (r2.names[j], r2.labels[j])
    gb.select_photo(r2.names[0])
    assert gb.group == r2.labels[0] and gb.photo_dd.value == r2.names[0]
    gb.colour = 'class'
    assert gb.colour_dd.value == 'class'
    assert gb.widget.children[-1] is gb.grid
