"""Transforms, collation and group-aware batching: shapes, dtypes, the ignore label, determinism, single-group
batches, epochs, evaluation order and distributed ranks, and a DataLoader with worker processes."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset

from pis_nb.core import RunConfig, seed_everything
from pis_nb.data import (IMAGENET_MEAN, IMAGENET_STD, EvalTransform, GroupBatchSampler, TrainTransform, UserDataset,
                         collate, denormalize, restore_size)


def _sample(h=24, w=32, labelled=True, seed=0):
    rng = np.random.default_rng(seed)
    mask = rng.choice(np.r_[0:21, 255], (h, w)).astype(np.uint8) if labelled else None
    return dict(image=rng.integers(0, 256, (h, w, 3), dtype=np.uint8), mask=mask, name='x', group=3, index=7, path='/x.jpg')


# ---------------------------------------------------------------- TrainTransform

def test_train_transform_output():
    t = TrainTransform(crop_size=20, base_size=24, scale=(0.5, 2.0))
    for seed in range(20):
        out = t(_sample(), generator=torch.Generator().manual_seed(seed))
        assert out['image'].shape == (3, 20, 20) and out['image'].dtype == torch.float32
        assert out['mask'].shape == (20, 20) and out['mask'].dtype == torch.int64
        assert type(out['image']) is torch.Tensor and type(out['mask']) is torch.Tensor
        assert set(out['mask'].unique().tolist()) <= set(range(21)) | {255}
        assert (out['name'], out['group'], out['index']) == ('x', 3, 7)


def test_train_transform_mask_follows_image():
    "Crop, scale and flip move image and mask together: a mask equal to a channel of the image stays aligned."
    h, w = 24, 32
    lab = np.zeros((h, w), np.uint8); lab[:, 20:] = 1; lab[:8, :] = 2
    img = np.zeros((h, w, 3), np.uint8); img[..., 0] = lab * 100
    t = TrainTransform(crop_size=16, base_size=24, scale=(0.75, 1.5))
    for seed in range(10):
        out = t(dict(image=img, mask=lab), generator=torch.Generator().manual_seed(seed))
        red = denormalize(out['image'])[..., 0].astype(int)
        inside = out['mask'] != 255
        # nearest-neighbour labels agree with the bilinear image away from the label borders
        agree = (np.abs(red - out['mask'].numpy() * 100) < 20) | ~inside.numpy()
        assert agree.mean() > 0.8


def test_train_transform_deterministic_with_generator():
    t = TrainTransform(crop_size=16, base_size=20)
    a = [t(_sample(seed=i), generator=torch.Generator().manual_seed(5)) for i in range(3)]
    b = [t(_sample(seed=i), generator=torch.Generator().manual_seed(5)) for i in range(3)]
    for x, y in zip(a, b):
        assert torch.equal(x['image'], y['image']) and torch.equal(x['mask'], y['mask'])
    seed_everything(11); c = t(_sample())
    seed_everything(11); d = t(_sample())
    assert torch.equal(c['image'], d['image'])
    outs = {t(_sample(), generator=torch.Generator().manual_seed(s))['image'].sum().item() for s in range(8)}
    assert len(outs) > 4                                          # and different seeds give different crops


def test_train_transform_padding_and_unlabelled():
    t = TrainTransform(crop_size=48, base_size=20, scale=(1.0, 1.0), flip=False)
    out = t(_sample(labelled=True))                               # resized to 20x26, padded to 48x48
    assert (out['mask'][20:, :] == 255).all() and (out['mask'][:, 27:] == 255).all()
    assert out['image'][:, 20:, :].abs().max() == 0 and out['image'][:, :, 27:].abs().max() == 0   # the mean colour
    assert (out['mask'][:20, :26] != 255).any()
    u = t(_sample(labelled=False))
    assert u['mask'].shape == (48, 48) and (u['mask'] == 255).all()


def test_train_transform_flip_and_scale():
    img = np.zeros((20, 20, 3), np.uint8); img[:, :10] = 255
    lab = np.zeros((20, 20), np.uint8); lab[:, :10] = 1
    t = TrainTransform(crop_size=20, base_size=20, scale=(1.0, 1.0), flip=True)
    firsts = set()
    for s in range(12):
        out = t(dict(image=img, mask=lab), generator=torch.Generator().manual_seed(s))
        firsts.add(int(out['mask'][0, 0]))
        assert out['mask'][0, 0] != out['mask'][0, -1]
    assert firsts == {0, 1}                                       # flipped sometimes, not always
    big = TrainTransform(crop_size=8, base_size=40, scale=(2.0, 2.0), flip=False)
    assert big(dict(image=img, mask=lab))['image'].shape == (3, 8, 8)
    with pytest.raises(ValueError, match='scale'): TrainTransform(scale=(2.0, 1.0))
    cfg = RunConfig().override(crop_size=64, base_size=96, scale_min=0.75, scale_max=1.25)
    tc = TrainTransform.from_config(cfg)
    assert (tc.crop_size, tc.base_size, tc.scale) == (64, 96, (0.75, 1.25))


# ---------------------------------------------------------------- EvalTransform, restore_size, collate, denormalize

def test_eval_transform_and_restore():
    s = _sample(30, 50)
    out = EvalTransform(20)(s)
    assert out['image'].shape == (3, 20, 33) and out['orig_size'] == (30, 50)
    assert out['mask'].shape == (30, 50) and out['mask'].dtype == torch.int64
    assert torch.equal(out['mask'], torch.from_numpy(s['mask']).long())       # full-size mask untouched
    assert EvalTransform((16, 16))(s)['image'].shape == (3, 16, 16)
    assert EvalTransform.from_config(RunConfig()).size == 320
    assert EvalTransform(20)(_sample(labelled=False))['mask'] is None
    # a prediction at network size goes back to the photo's size
    logits = torch.zeros(1, 21, 20, 33); logits[:, 5] = 1
    full = restore_size(logits, out['orig_size'])
    assert full.shape == (1, 21, 30, 50) and (full.argmax(1) == 5).all()
    labels = torch.full((20, 33), 7, dtype=torch.uint8)
    lab_full = restore_size(labels, out['orig_size'])
    assert lab_full.shape == (30, 50) and lab_full.dtype == torch.uint8 and (lab_full == 7).all()
    # bilinear for logits is smooth, nearest for labels keeps values
    ramp = torch.arange(4.).view(1, 1, 1, 4).expand(1, 1, 2, 4)
    assert restore_size(ramp, (2, 8))[0, 0, 0].tolist() == pytest.approx([0, .25, .75, 1.25, 1.75, 2.25, 2.75, 3])
    ilab = torch.tensor([[0, 255], [3, 4]])
    assert set(restore_size(ilab, (7, 9)).unique().tolist()) == {0, 3, 4, 255}
    with pytest.raises(ValueError): EvalTransform(0)


def test_collate_rules():
    e = EvalTransform(16)
    items = [e(_sample(24, 32, seed=0)), e(_sample(24, 32, labelled=False, seed=1)), e(_sample(30, 50, seed=2))]
    b = collate(items[:2])
    assert b['image'].shape == (2, 3, 16, 21) and b['orig_size'].tolist() == [[24, 32], [24, 32]]
    assert isinstance(b['mask'], list) and b['mask'][1] is None and b['mask'][0].shape == (24, 32)
    assert b['name'] == ['x', 'x'] and b['group'].tolist() == [3, 3] and b['path'] == ['/x.jpg'] * 2
    c = collate([items[0], items[2]])
    assert isinstance(c['image'], list) and [m.shape for m in c['mask']] == [(24, 32), (30, 50)]
    assert collate([items[1], items[1]])['mask'] is None
    with pytest.raises(ValueError): collate([])
    with pytest.raises(ValueError): collate([{'a': 1}, {'b': 1}])
    # restore a batch whose photos had different sizes
    preds = torch.zeros(2, 21, 16, 21)   # e.g. predicted at one common size
    parts = restore_size(preds, c['orig_size'])
    assert [tuple(p.shape) for p in parts] == [(21, 24, 32), (21, 30, 50)]


def test_denormalize():
    s = _sample(8, 10)
    x = EvalTransform(None)(s)['image']
    assert np.array_equal(denormalize(x), s['image'])
    assert denormalize(torch.stack([x, x])).shape == (2, 8, 10, 3)
    z = denormalize(torch.zeros(3, 2, 2))
    assert np.allclose(z[0, 0], np.array(IMAGENET_MEAN) * 255, atol=1)
    with pytest.raises(ValueError): denormalize(torch.zeros(2, 4, 4))
    assert IMAGENET_STD == (0.229, 0.224, 0.225)


# ---------------------------------------------------------------- GroupBatchSampler

def _random_groups(seed, n=60, k=7):
    return np.random.default_rng(seed).integers(0, k, n)


@pytest.mark.parametrize('seed', range(5))
@pytest.mark.parametrize('bs', [1, 3, 8])
def test_training_batches(seed, bs):
    groups = _random_groups(seed)
    s = GroupBatchSampler(groups, bs, seed=seed)
    batches = list(s)
    assert len(batches) == len(s) == sum(-(-c // bs) for c in np.bincount(groups) if c)
    for b in batches:
        assert len(b) == bs and len(set(groups[b].tolist())) == 1 and all(isinstance(i, int) for i in b)
    assert sorted({i for b in batches for i in b}) == list(range(len(groups)))
    for g in np.unique(groups):                         # filling cycles through the group: counts differ by <= 1
        members = np.flatnonzero(groups == g)
        counts = np.bincount([i for b in batches if groups[b[0]] == g for i in b], minlength=len(groups))[members]
        assert counts.min() >= 1 and counts.max() - counts.min() <= 1


def test_small_groups_cycle_and_drop_last():
    groups = np.array([0] * 10 + [1] * 2 + [2])
    s = GroupBatchSampler(groups, 4)
    by_group = {}
    for b in s: by_group.setdefault(int(groups[b[0]]), []).append(b)
    assert [len(by_group[g]) for g in (0, 1, 2)] == [3, 1, 1]
    assert sorted(by_group[1][0]) == [10, 10, 11, 11] and by_group[2][0] == [12] * 4
    d = GroupBatchSampler(groups, 4, drop_last=True)
    assert len(d) == 4 and len(list(d)) == 4            # group 0: 2 full batches; groups 1, 2 still filled
    assert all(len(set(b)) == 4 for b in d if groups[b[0]] == 0)


def test_epochs_and_seeds():
    groups = _random_groups(0)
    s = GroupBatchSampler(groups, 4, seed=3)
    e0 = list(s); assert list(s) == e0                  # same epoch, same order
    s.set_epoch(1); e1 = list(s)
    assert e1 != e0 and len(e1) == len(e0)
    s.set_epoch(0); assert list(s) == e0
    assert list(GroupBatchSampler(groups, 4, seed=4)) != e0
    assert list(GroupBatchSampler(torch.tensor(groups), 4, seed=3)) == e0
    assert s.batches() == e0


def test_evaluation_order():
    groups = np.array([2, 0, 1, 0, 2, 2, 0, 1, 2, 2, 2])
    s = GroupBatchSampler(groups, 2, shuffle=False)
    assert list(s) == [[1, 3], [6], [2, 7], [0, 4], [5, 8], [9, 10]]
    assert len(s) == 6
    flat = [i for b in s for i in b]
    assert sorted(flat) == list(range(len(groups))) and len(flat) == len(set(flat))   # every photo exactly once
    s.set_epoch(5); assert list(s) == [[1, 3], [6], [2, 7], [0, 4], [5, 8], [9, 10]]
    with pytest.raises(ValueError, match='drop_last'): GroupBatchSampler(groups, 2, shuffle=False, drop_last=True)


@pytest.mark.parametrize('replicas', [2, 3])
def test_distributed_ranks(replicas):
    groups = _random_groups(1, n=50, k=5)
    ranks = [GroupBatchSampler(groups, 4, seed=2, num_replicas=replicas, rank=r) for r in range(replicas)]
    for r in ranks: r.set_epoch(3)
    lists = [list(r) for r in ranks]
    assert len({len(l) for l in lists}) == 1 and all(len(l) == len(r) for l, r in zip(lists, ranks))
    full = GroupBatchSampler(groups, 4, seed=2); full.set_epoch(3)
    whole = full.batches()
    # the ranks take disjoint slices of the epoch's batches; the few pad batches repeat the first ones
    got = [b for i in range(len(lists[0])) for l in lists for b in l[i:i + 1]]
    assert got[:len(whole)] == whole and got[len(whole):] == whole[:len(got) - len(whole)]
    for l in lists:
        for b in l: assert len(set(groups[b].tolist())) == 1
    ev = [GroupBatchSampler(groups, 4, shuffle=False, num_replicas=replicas, rank=r) for r in range(replicas)]
    flat = sorted(i for r in ev for b in r for i in b)
    assert flat == list(range(50))                      # evaluation: every photo once over all ranks
    assert sum(len(r) for r in ev) == len(GroupBatchSampler(groups, 4, shuffle=False))
    with pytest.raises(ValueError): GroupBatchSampler(groups, 4, num_replicas=2, rank=2)


def test_sampler_argument_errors():
    with pytest.raises(ValueError, match='non-empty'): GroupBatchSampler([], 2)
    with pytest.raises(ValueError, match='batch_size'): GroupBatchSampler([0, 1], 0)
    with pytest.raises(ValueError, match='integers'): GroupBatchSampler([0.5, 1], 2)
    assert list(GroupBatchSampler([0.0, 1.0], 1, shuffle=False)) == [[0], [1]]


# ---------------------------------------------------------------- end to end

def test_dataloader_workers_deterministic(data_user):
    def run(seed, workers):
        ds = UserDataset(data_user.root, 'train_cluster80.txt', transform=TrainTransform(crop_size=16, base_size=20))
        sampler = GroupBatchSampler(ds.groups, 3, seed=seed)
        dl = DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                        generator=torch.Generator().manual_seed(seed))
        return [b for epoch in range(2) for b in (sampler.set_epoch(epoch), list(dl))[1]]
    a, b = run(0, 2), run(0, 2)
    assert len(a) == 2 * 4                              # groups of 4, 3, 3 photos in batches of 3: 2 + 1 + 1 per epoch
    for x, y in zip(a, b):
        assert x['image'].shape == (3, 3, 16, 16) and x['mask'].shape == (3, 16, 16)
        assert torch.equal(x['image'], y['image']) and torch.equal(x['mask'], y['mask'])
        assert len(set(x['group'].tolist())) == 1 and x['name'] == y['name']
    assert not all(torch.equal(x['image'], y['image']) for x, y in zip(a, run(1, 2)))


def test_evaluation_loader_on_labelled_photos(data_user):
    ds = UserDataset(data_user.root, 'train_cluster80.txt', transform=EvalTransform(12))
    lab = Subset(ds, ds.labelled)
    sampler = GroupBatchSampler(ds.groups[ds.labelled], 2, shuffle=False)
    seen = []
    for b in DataLoader(lab, batch_sampler=sampler, collate_fn=collate):
        assert len(set(b['group'].tolist())) == 1 and all(m is not None for m in b['mask'])
        assert b['image'].shape[1:] == (3, 12, 16) and b['orig_size'].tolist()[0] == [24, 32]
        seen += b['name']
    assert sorted(seen) == sorted(data_user.names[i] for i in data_user.labelled)
