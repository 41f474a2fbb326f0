"""Tests of `pis_nb.model`: the network's properties (shapes, batch permutation, group isolation, gradients), the
group context against independent re-statements of the paper's equations and of the released OCR block, the group
memory (batch-invariant predictions, checkpoints), entropy maps, discriminators and ImageNet weights from the cache.

Everything runs on the small backbone with tiny inputs; ResNet-50 and VGG-16 are only built and run once at 33x47.
"""
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from pis_nb.core import RunConfig, ConfigError
from pis_nb.model import (CONTEXT_MODES, CONTEXT_VARIANTS, Discriminator, Discriminators, GroupContext, GroupMemory,
                          PISNet, PretrainedWeightsWarning, SegOutput, cached_weights_path, compare_context_cost,
                          count_parameters, entropy_map, mean_entropy, pixel_attention, pixel_entropy)

torch.set_num_threads(2)
MODES_VARIANTS = [(m, v) for m in CONTEXT_MODES for v in CONTEXT_VARIANTS]


def small(mode='group', variant='paper', seed=0, **kw):
    torch.manual_seed(seed)
    return PISNet(backbone='small', context_mode=mode, context_variant=variant, key_channels=32, **kw)


# ---------------------------------------------------------------- shapes

@pytest.mark.parametrize('mode,variant', MODES_VARIANTS)
def test_shapes_any_size(mode, variant):
    net = small(mode, variant).eval()
    with torch.no_grad():
        out = net(torch.randn(3, 3, 33, 47), [0, 1, 0], return_attention=True)
    assert isinstance(out, SegOutput)
    assert out.main.shape == out.aux.shape == (3, 21, 33, 47)
    if mode == 'group':
        assert out.attention.shape == (3, 5, 6, 3 * 21)
        assert len(out.regions.image) == 3 * 21
    else:
        assert out.attention is None


@pytest.mark.parametrize('mode,variant', MODES_VARIANTS)
def test_batch_of_one_in_training(mode, variant):
    out = small(mode, variant).train()(torch.randn(1, 3, 17, 30))
    assert out.main.shape == (1, 21, 17, 30)


@pytest.mark.parametrize('backbone,kw', [('resnet50', {}), ('resnet50', dict(deep_stem=True, context_variant='released')),
                                         ('vgg16', dict(context_mode='global'))])
def test_paper_size_backbones_shapes(backbone, kw):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', PretrainedWeightsWarning)
        net = PISNet(backbone=backbone, pretrained=False, **kw)
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 33, 47))
        feats = net.encoder(torch.randn(1, 3, 33, 47))
    assert out.main.shape == (2, 21, 33, 47)
    assert feats.shape == (1, 512, 5, 6)


def test_resnet50_batch_one_training():
    net = PISNet(backbone='resnet50', pretrained=False).train()
    out = net(torch.randn(1, 3, 33, 33))
    assert out.main.shape == (1, 21, 33, 33)


def test_encoder_regions_and_memory_sizes():
    net = small().eval()
    x = torch.randn(2, 3, 40, 40)
    assert net.encoder(x).shape == (2, 64, 5, 5)
    f, pooled = net.extract_regions(x)
    assert f.shape == (2, 21, 64) and pooled.shape == (2, 64)
    mem = net.new_memory()
    assert (mem.num_classes, mem.channels) == (21, 64)
    with pytest.raises(ValueError, match='has no regions'):
        small('none').extract_regions(x)


# ---------------------------------------------------------------- batch properties

@pytest.mark.parametrize('mode,variant', [m for m in MODES_VARIANTS if m[0] != 'none'])
def test_batch_permutation_permutes_output(mode, variant):
    net = small(mode, variant).eval()
    imgs, groups = torch.randn(5, 3, 24, 40), torch.tensor([2, 7, 2, 7, 2])
    perm = torch.tensor([4, 1, 0, 3, 2])
    with torch.no_grad():
        a = net(imgs, groups).main
        b = net(imgs[perm], groups[perm]).main
    torch.testing.assert_close(b, a[perm], atol=1e-4, rtol=1e-4)


def _changes(net, i, j, groups):
    torch.manual_seed(1)
    imgs = torch.randn(4, 3, 24, 40)
    alt = imgs.clone()
    alt[j] = torch.randn(3, 24, 40)
    with torch.no_grad():
        a, b = net(imgs, groups).main[i], net(alt, groups).main[i]
    return not torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize('mode,variant', [('group', 'paper'), ('group', 'released'), ('global', 'paper'),
                                          ('global', 'released')])
def test_context_flows_within_group_only(mode, variant):
    net = small(mode, variant).eval()
    groups = [0, 0, 1, 1]
    assert _changes(net, 0, 1, groups)
    assert not _changes(net, 0, 2, groups)
    assert not _changes(net, 3, 0, groups)
    assert _changes(net, 0, 3, None)        # None: the whole batch is one group


def test_released_exact_layout_stays_within_group():
    net = small('group', 'released', exact_released=True).eval()
    assert _changes(net, 0, 1, [0, 0, 1, 1])
    assert not _changes(net, 0, 2, [0, 0, 1, 1])


@pytest.mark.parametrize('variant', CONTEXT_VARIANTS)
def test_none_mode_photos_are_independent(variant):
    net = small('none', variant).eval()
    assert count_parameters(net.context) == 0
    assert not _changes(net, 0, 1, None)
    assert not _changes(net, 2, 3, [0, 0, 0, 0])


@pytest.mark.parametrize('mode,variant', MODES_VARIANTS)
def test_every_parameter_gets_a_gradient(mode, variant):
    net = small(mode, variant).train()
    torch.manual_seed(0)
    out = net(torch.randn(3, 3, 40, 40), [0, 0, 1])
    y = torch.randint(0, 21, (3, 40, 40))
    (F.cross_entropy(out.main, y) + 0.4 * F.cross_entropy(out.aux, y)).backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


# ---------------------------------------------------------------- the context against the equations

def test_paper_context_matches_equations():
    """Eq. 4-7 written out per image and per pixel (class-softmax regions, normalised to weighted averages)."""
    torch.manual_seed(0)
    ch, d, c = 6, 4, 3
    m = GroupContext(ch, d, c, mode='group', variant='paper').eval()
    x, p = torch.randn(3, ch, 2, 3), torch.randn(3, c, 2, 3)
    groups = [0, 1, 0]
    with torch.no_grad():
        got = m(x, p, groups)
        regions = []
        for b in range(3):
            r = p[b].reshape(c, -1).softmax(0)                                 # softmax over classes per pixel
            regions.append(torch.stack([(r[k] * x[b].reshape(ch, -1)).sum(1) / r[k].sum() for k in range(c)]))
        ctx = torch.zeros_like(x)
        for b in range(3):
            cands = torch.cat([regions[j] for j in range(3) if groups[j] == groups[b]])
            keys, vals = m.key(cands), m.value(cands)
            for i in range(2):
                for j in range(3):
                    q = m.query.weight[:, :, 0, 0] @ x[b, :, i, j] + m.query.bias
                    w = ((keys @ q) / math.sqrt(d)).softmax(0)
                    ctx[b, :, i, j] = m.out((w[:, None] * vals).sum(0))
        want = m.fuse(torch.cat([x, ctx], 1))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def _released_reference(m, x, p, scramble):
    """The released OCR block (gpocr=True) as its code computes it, for one batch = one group."""
    b, ch, h, w = x.shape
    k = m.key_channels
    probs = p.reshape(b, p.shape[1], -1).softmax(2)                          # softmax over pixels per class
    proxy = (probs @ x.reshape(b, ch, -1).transpose(1, 2)).permute(0, 2, 1)[..., None]   # (B, CH, C, 1)
    query = m.f_pixel(x).reshape(b, k, -1).permute(0, 2, 1)
    key = m.f_object(proxy).reshape(b, k, -1)
    value = m.f_down(proxy).reshape(b, k, -1).permute(0, 2, 1)                # (B, C, K)
    sim = (query @ key * k ** -0.5).softmax(-1)
    context = (sim @ value).permute(0, 2, 1).reshape(b, k, h, w)
    if scramble: value_bt = value.permute(1, 0, 2).contiguous().view(k, -1)
    else: value_bt = value.reshape(-1, k).t()
    sim_bt = (query @ value_bt * k ** -0.5 * 8).softmax(-1)
    gp = (sim_bt @ value_bt.t()).permute(0, 2, 1).reshape(b, k, h, w)
    return m.fuse(torch.cat([context, gp, x], 1))


@pytest.mark.parametrize('exact', [False, True])
def test_released_context_matches_released_computation(exact):
    torch.manual_seed(0)
    m = GroupContext(8, 6, 5, mode='group', variant='released', exact_released=exact).eval()
    assert m.region_softmax == 'pixels'
    x, p = torch.randn(3, 8, 4, 5), torch.randn(3, 5, 4, 5)
    with torch.no_grad():
        torch.testing.assert_close(m(x, p), _released_reference(m, x, p, exact), atol=1e-5, rtol=1e-5)


def test_global_context_is_group_mean():
    torch.manual_seed(0)
    m = GroupContext(6, 4, 3, mode='global').eval()
    x, p = torch.randn(3, 6, 2, 3), torch.randn(3, 3, 2, 3)
    with torch.no_grad():
        got = m(x, p, [0, 1, 0])
        g = x.mean((2, 3))
        gm = torch.stack([(g[0] + g[2]) / 2, g[1], (g[0] + g[2]) / 2])
        want = m.fuse(torch.cat([x, x * torch.sigmoid(m.out(m.value(gm)))[:, :, None, None]], 1))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_bad_arguments():
    with pytest.raises(ConfigError, match='backbone must be one of'):
        PISNet(backbone='resnet101')
    with pytest.raises(ConfigError, match='context_variant must be one of'):
        small('group', 'ocr')
    with pytest.raises(ConfigError, match='region_softmax must be one of'):
        small(region_softmax='both')
    net = small().eval()
    with pytest.raises(ValueError, match='2 group ids for a batch of 3'):
        net(torch.randn(3, 3, 16, 16), [0, 1])
    with pytest.raises(ValueError, match='cannot use a GroupMemory'):
        m = small('group', 'released', exact_released=True).eval()
        m(torch.randn(1, 3, 16, 16), [0], memory=m.new_memory())


# ---------------------------------------------------------------- memory

def _photos():
    torch.manual_seed(3)
    photos = {f'p{i}': torch.randn(3, 24, 40) for i in range(6)}
    groups = {'p0': 0, 'p1': 0, 'p2': 0, 'p3': 0, 'p4': 5, 'p5': 5}
    def batch(names):
        return dict(image=torch.stack([photos[n] for n in names]), name=list(names),
                    group=torch.tensor([groups[n] for n in names]))
    return batch


@pytest.mark.parametrize('mode,variant', [('group', 'paper'), ('group', 'released'), ('global', 'paper')])
def test_memory_makes_prediction_independent_of_batch(mode, variant):
    batch = _photos()
    net = small(mode, variant).eval()
    mem = net.new_memory().refresh(net, [batch(['p0', 'p4', 'p1']), batch(['p2', 'p5', 'p3'])])
    assert len(mem) == 6 and not net.training

    def pred(names, i, memory):
        b = batch(names)
        with torch.no_grad():
            return net(b['image'], b['group'], memory=memory, photo_ids=b['name']).main[i]

    ref = pred(['p0'], 0, mem)
    # float noise here is ~1e-7; the global weighting moves an untrained net's output by ~1e-5, so tolerances are tight
    torch.testing.assert_close(pred(['p0', 'p1'], 0, mem), ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(pred(['p3', 'p2', 'p0', 'p5'], 2, mem), ref, atol=1e-6, rtol=0)
    assert not torch.allclose(pred(['p0', 'p1'], 0, None), pred(['p0', 'p2', 'p3'], 0, None), atol=2e-6, rtol=0)


def test_memory_attends_over_the_whole_group():
    batch = _photos()
    net = small().eval()
    mem = net.new_memory().refresh(net, [batch(['p0', 'p1', 'p2', 'p3', 'p4', 'p5'])])
    b = batch(['p1'])
    with torch.no_grad():
        out = net(b['image'], b['group'], memory=mem, photo_ids=b['name'], return_attention=True)
    photos = out.regions.photo
    seen = {p for p, w in zip(photos, out.attention[0, 0, 0].tolist()) if w > 0}
    assert seen == {'p0', 'p1', 'p2', 'p3'}                   # the group, not p4/p5 (other group)
    w = out.attention[0, 0, 0]
    own = [i for i, p in enumerate(photos) if p == 'p1' and w[i] > 0]
    assert len(own) == 21 and (out.regions.image[own] == 0).all()   # p1's fresh regions, not its stored entry
    stored = [i for i, p in enumerate(photos) if p == 'p1' and out.regions.image[i] == -1]
    assert len(stored) == 21 and (w[stored] == 0).all()


def test_memory_updates_in_training_and_checkpoints(tmp_path):
    batch = _photos()
    net = small().train()
    mem = net.new_memory(momentum=0.9)
    b = batch(['p0', 'p1', 'p4'])
    net(b['image'], b['group'], memory=mem, photo_ids=b['name'])
    assert mem.photo_ids == ['p0', 'p1', 'p4'] and mem.groups.tolist() == [0, 0, 5]
    before = mem.regions.clone()
    net(b['image'], b['group'], memory=mem, photo_ids=b['name'], update_memory=False)
    assert torch.equal(before, mem.regions)
    torch.save({'model': net.state_dict(), 'memory': mem.state_dict()}, tmp_path/'ckpt.pt')
    ck = torch.load(tmp_path/'ckpt.pt', weights_only=True)
    mem2 = small().new_memory()
    mem2.load_state_dict(ck['memory'])
    assert mem2.photo_ids == mem.photo_ids and mem2.momentum == 0.9
    assert torch.equal(mem2.regions, mem.regions) and 'p4' in mem2


def test_memory_update_rules():
    mem = GroupMemory(2, 3)
    mem.update(['a', 'a'], [0, 0], torch.stack([torch.zeros(2, 3), torch.ones(2, 3)]), torch.ones(2, 3))
    assert len(mem) == 1 and torch.equal(mem.regions[0], torch.ones(2, 3))   # last one wins
    mem.update(['a'], [4], torch.full((1, 2, 3), 3.), torch.zeros(1, 3), momentum=0.5)
    assert torch.allclose(mem.regions[0], torch.full((2, 3), 2.)) and mem.groups.tolist() == [4]
    mem.clear()
    assert len(mem) == 0 and 'a' not in mem


# ---------------------------------------------------------------- entropy, discriminators

def test_entropy_bounds():
    uniform = torch.zeros(2, 21, 4, 5)
    onehot = torch.full((2, 21, 4, 5), -50.)
    onehot[:, 3] = 50.
    torch.testing.assert_close(pixel_entropy(uniform), torch.ones(2, 4, 5))
    torch.testing.assert_close(pixel_entropy(onehot), torch.zeros(2, 4, 5), atol=1e-6, rtol=0)
    torch.testing.assert_close(mean_entropy(uniform), torch.ones(2))
    lg = torch.randn(1, 21, 3, 3)
    pr = lg.softmax(1)
    torch.testing.assert_close(entropy_map(lg), -pr * torch.log2(pr) / math.log2(21))
    e = pixel_entropy(torch.randn(4, 21, 8, 8) * 5)
    assert (e >= 0).all() and (e <= 1 + 1e-6).all()


def test_discriminator_layout():
    d = Discriminator(21)
    convs = [m for m in d if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5 and [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) and c.padding == (1, 1) for c in convs)
    assert all(m.negative_slope == 0.2 for m in d if isinstance(m, torch.nn.LeakyReLU))
    assert d(torch.randn(2, 21, 64, 96)).shape == (2, 1, 2, 3)
    with pytest.raises(ValueError, match='at least 32x32'):
        d(torch.randn(1, 21, 16, 64))
    pair = Discriminators(21)
    assert pair.aux(entropy_map(torch.randn(1, 21, 40, 40))).shape == (1, 1, 1, 1)


# ---------------------------------------------------------------- ImageNet weights

def test_imagenet_weights_only_from_cache(tmp_path, monkeypatch):
    import torchvision
    from torchvision.models import ResNet50_Weights, VGG16_Weights
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    path = cached_weights_path(ResNet50_Weights.IMAGENET1K_V1)
    assert path == tmp_path/'hub'/'checkpoints'/'resnet50-0676ba61.pth'
    with pytest.warns(PretrainedWeightsWarning, match='resnet50-0676ba61.pth'):
        PISNet(backbone='resnet50', pretrained=True)
    state = torchvision.models.resnet50().state_dict()
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    with warnings.catch_warnings():
        warnings.simplefilter('error', PretrainedWeightsWarning)
        net = PISNet(backbone='resnet50', pretrained=True)
    assert torch.equal(net.backbone.layer4[0].conv2.weight.detach(), state['layer4.0.conv2.weight'])
    assert torch.equal(net.backbone.stem.bn1.running_var, state['bn1.running_var'])
    with pytest.warns(PretrainedWeightsWarning, match='kept random'):     # deep stem: the stem stays random
        deep = PISNet(backbone='resnet50', pretrained=True, deep_stem=True)
    assert torch.equal(deep.backbone.layer2[1].conv1.weight.detach(), state['layer2.1.conv1.weight'])
    # VGG-16: only the convolutions are used (a file with just `features.*` is enough)
    vgg = PISNet(backbone='vgg16', pretrained=False)
    feats = {f'features.{k}': torch.randn_like(v) for k, v in vgg.backbone.features.state_dict().items()}
    torch.save(feats, cached_weights_path(VGG16_Weights.IMAGENET1K_V1))
    with warnings.catch_warnings():
        warnings.simplefilter('error', PretrainedWeightsWarning)
        vgg = PISNet(backbone='vgg16', pretrained=True)
    assert torch.equal(vgg.backbone.features[28].weight.detach(), feats['features.28.weight'])


def test_corrupt_cached_weights_are_reported(tmp_path, monkeypatch):
    from torchvision.models import ResNet50_Weights
    from pis_nb.core import PisError
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    path = cached_weights_path(ResNet50_Weights.IMAGENET1K_V1)
    path.parent.mkdir(parents=True)
    path.write_bytes(b'not a checkpoint')
    with pytest.raises(PisError, match='cannot load cached ImageNet weights file'):
        PISNet(backbone='resnet50', pretrained=True)


# ---------------------------------------------------------------- configuration, optimiser groups, benchmark, figure

def test_from_config_and_param_groups():
    net = PISNet.from_config(RunConfig.released(backbone='small', deep_stem=False, key_channels=16))
    assert (net.context_variant, net.context.region_softmax, net.context.key_channels) == ('released', 'pixels', 16)
    assert net.context.exact_released and net.align_corners     # the released network's layout and upsampling
    groups = net.param_groups(0.5, head_lr_mult=4)
    assert [g['lr'] for g in groups] == [0.5, 2.0]
    ids = [id(p) for g in groups for p in g['params']]
    assert len(ids) == len(set(ids)) == len(list(net.parameters()))
    assert {id(p) for p in net.backbone.parameters()} == {id(p) for p in groups[0]['params']}


def test_compare_context_cost_runs():
    rows = compare_context_cost('small', modes=('group', 'none'), batch_size=2, size=48, steps=1, warmup=0,
                                key_channels=16)
    assert [r['mode'] for r in rows] == ['group', 'none']
    assert all(r['step_s'] > 0 and r['activation_MiB'] > 0 for r in rows)
    assert rows[1]['time_overhead_%'] == 0


def test_pixel_attention_and_figure():
    import matplotlib
    matplotlib.use('Agg')
    from pis_nb.model import plot_pixel_attention
    net = small().eval()
    imgs = torch.randn(3, 3, 48, 48)
    with torch.no_grad():
        out = net(imgs, [0, 0, 1], return_attention=True)
    w, info = pixel_attention(out, 1, 47, 47, (48, 48))
    assert w.shape == (63,) and float(w[info.group == 1].sum()) == 0.0
    fig = plot_pixel_attention(imgs, out, 0, 10, 20)
    assert len(fig.axes) >= 2
    with pytest.raises(ValueError, match='return_attention=True'):
        pixel_attention(net(imgs[:1]), 0, 0, 0, (48, 48))
