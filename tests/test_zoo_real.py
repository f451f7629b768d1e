"""The real-weight (float32, PyTorch default init) models of the zoo: how they are built.

No mtcheck verdicts here: these tests are about the models and inputs themselves.
"""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mtcheck import zoo

REAL = {"lenet-f32": (1, 1, 28, 28), "lenet-f32-bad-maxpool": (1, 1, 28, 28), "resnet-bn-f32": (1, 3, 32, 32),
        "vgg-f32": (1, 3, 32, 32), "vgg11-f32": (1, 3, 32, 32)}


@pytest.fixture(scope="module")
def built():
    return {name: zoo.ZOO[name]() for name in REAL}


def _state(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def _same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _more_bits_than(t, bits):
    """Whether some element of float tensor ``t`` has a mantissa using more than ``bits`` bits."""
    mant, _ = torch.frexp(t.detach().flatten())
    scaled = mant * 2.0 ** bits                          # exact: a power-of-two scaling
    return bool((scaled != torch.round(scaled)).any())


@pytest.mark.parametrize("name", sorted(REAL))
def test_factory_builds_float32_eval_model_of_the_stated_shapes(built, name):
    m, inputs = built[name]
    assert name in zoo.ZOO and isinstance(m, nn.Module) and not m.training
    assert isinstance(inputs, tuple) and len(inputs) == 1
    (x,) = inputs
    assert x.dtype == torch.float32 and tuple(x.shape) == REAL[name]
    assert all(p.dtype == torch.float32 for p in m.parameters())
    assert all(b.dtype == torch.float32 for b in m.buffers() if b.is_floating_point())
    with torch.no_grad():
        y = m(x)
    assert y.dtype == torch.float32 and tuple(y.shape) == (1, 10) and torch.isfinite(y).all()


@pytest.mark.parametrize("name", sorted(REAL))
def test_weights_are_default_init_not_dyadic(built, name):
    m, _ = built[name]
    assert any(_more_bits_than(p, 10) for p in m.parameters())
    # and they are PyTorch's default initialisation under torch.manual_seed(seed)
    torch.manual_seed(0)
    ref = type(m)()
    for (k, p), (k2, q) in zip(m.named_parameters(), ref.named_parameters()):
        assert k == k2
        if ".bn" not in k and "_bn" not in k and "down.1" not in k:  # BatchNorm affine params are set (resnet)
            assert torch.equal(p, q), k


def test_a_dyadic_zoo_model_is_detected_as_dyadic():
    m, _ = zoo.ZOO["lenet"]()
    assert not any(_more_bits_than(p, 4) for p in m.parameters())


def test_shapes_of_the_architectures():
    r = zoo.ResNetBN()
    bns = [b for b in r.modules() if isinstance(b, nn.BatchNorm2d)]
    assert len(bns) == 6                                # stem, 2 per block, the downsample's
    assert r.b1.down is None and r.b2.down is not None
    down_conv = r.b2.down[0]
    assert down_conv.kernel_size == (1, 1) and down_conv.stride == (2, 2)
    assert any(isinstance(c, nn.Linear) and c.out_features == 10 for c in r.modules())
    v = zoo.VGGSmall()
    assert [c.out_channels for c in v.modules() if isinstance(c, nn.Conv2d)] == [16, 32, 64]
    assert sum(isinstance(c, nn.MaxPool2d) for c in v.modules()) == 3
    v11 = zoo.VGG11()
    assert [c.out_channels for c in v11.modules() if isinstance(c, nn.Conv2d)] == \
        [64, 128, 256, 256, 512, 512, 512, 512]
    assert sum(isinstance(c, nn.MaxPool2d) for c in v11.modules()) == 5
    assert (v11.classifier.in_features, v11.classifier.out_features) == (512, 10)
    assert sum(p.numel() for p in v11.parameters()) > 9_000_000


@pytest.mark.parametrize("name", ["lenet-f32", "resnet-bn-f32", "vgg-f32"])
def test_deterministic_per_seed(built, name):
    m, (x,) = built[name]
    m2, (x2,) = zoo.ZOO[name](seed=0)
    assert _same_state(_state(m), _state(m2)) and torch.equal(x, x2)
    m3, (x3,) = zoo.ZOO[name](seed=1)
    assert not _same_state(_state(m), _state(m3)) and not torch.equal(x, x3)


def test_vgg11_deterministic(built):
    m, (x,) = built["vgg11-f32"]
    torch.manual_seed(0)
    ref = zoo.VGG11()
    assert _same_state(_state(m), _state(ref))
    assert torch.equal(x, zoo.block_image(seed=0))


def test_factory_respects_dtype_argument():
    m, (x,) = zoo.ZOO["lenet-f32"](dtype=torch.float64)
    assert x.dtype == torch.float64 and all(p.dtype == torch.float64 for p in m.parameters())
    m32, (x32,) = zoo.ZOO["lenet-f32"]()
    assert torch.equal(x.float(), x32)


def test_digit_image(built):
    _, (x,) = built["lenet-f32"]
    nz = x[x != 0]
    assert (x == 0).float().mean() > 0.6                # zero background: tied max-pool windows
    assert 30 < nz.numel() < 400                         # a few strokes
    assert nz.min() > 0 and nz.max() <= 1
    assert nz.unique().numel() > 20                      # torch.rand-like values ...
    assert _more_bits_than(nz, 10)                   # ... not on a coarse grid
    # strokes are a few pixels wide: most stroke pixels have a stroke neighbour
    on = (x[0, 0] != 0)
    nb = F.max_pool2d(F.pad(on.float()[None, None], (1, 1, 1, 1)), 3, stride=1)[0, 0]
    assert on.sum() > 0 and (on & (nb > 0)).sum() == on.sum()


def test_block_image(built):
    _, (x,) = built["vgg-f32"]
    assert torch.equal(x, built["resnet-bn-f32"][1][0]) and torch.equal(x, built["vgg11-f32"][1][0])
    blocks = x[..., ::8, ::8]
    assert torch.equal(x, blocks.repeat_interleave(8, -2).repeat_interleave(8, -1))   # piecewise constant
    assert blocks.unique().numel() == blocks.numel() == 3 * 4 * 4
    assert x.min() >= 0 and x.max() < 1 and _more_bits_than(x, 10)


def test_resnet_batchnorm_statistics_are_nontrivial(built):
    m, _ = built["resnet-bn-f32"]
    bns = [b for b in m.modules() if isinstance(b, nn.BatchNorm2d)]
    assert bns and not any(b.training for b in bns)
    for b in bns:
        assert b.track_running_stats and b.running_mean.abs().min() > 0
        assert not torch.allclose(b.running_mean, torch.zeros_like(b.running_mean))
        assert not torch.allclose(b.running_var, torch.ones_like(b.running_var))
        assert b.running_var.min() >= 0.5 and b.running_var.max() <= 1.5
        assert not torch.allclose(b.weight, torch.ones_like(b.weight))
        assert not torch.allclose(b.bias, torch.zeros_like(b.bias))
    # the statistics differ between BatchNorms, and eval mode uses them
    assert not torch.equal(bns[0].running_mean[:4], bns[1].running_mean[:4])
    x = zoo.block_image(seed=0)
    with torch.no_grad():
        y1 = m(x)
        bns[0].running_mean.zero_()
        y2 = m(x)
    assert not torch.equal(y1, y2)


def test_bad_maxpool_model_has_lenets_weights_and_forward(built):
    good, (x,) = built["lenet-f32"]
    bad, (xb,) = built["lenet-f32-bad-maxpool"]
    assert type(good) is zoo.LeNet and isinstance(bad, zoo.LeNet)
    assert _same_state(_state(good), _state(bad)) and torch.equal(x, xb)
    with torch.no_grad():
        assert torch.equal(good(x), bad(x))


def _stock_grad(x, g):
    xx = x.detach().clone().requires_grad_()
    F.max_pool2d(xx, 2).backward(g)
    return xx.grad


def _bad_grad(x, g):
    xx = x.detach().clone().requires_grad_()
    y = zoo.MaxPool2dAllTies.apply(xx)
    assert torch.equal(y, F.max_pool2d(x, 2))
    y.backward(g)
    return xx.grad


def test_bad_maxpool_gives_every_tied_entry_the_full_gradient():
    x = torch.tensor([[[[1.0, 1.0], [0.25, 1.0]]]])
    g = torch.tensor([[[[3.0]]]])
    bad, stock = _bad_grad(x, g), _stock_grad(x, g)
    assert torch.equal(bad, torch.tensor([[[[3.0, 3.0], [0.0, 3.0]]]]))
    assert stock.sum() == 3 and (stock != 0).sum() == 1 and stock[0, 0, 1, 0] == 0   # one winner
    # an all-zero window (relu's zeros): all four get it
    assert torch.equal(_bad_grad(torch.zeros(1, 1, 2, 2), g), torch.full((1, 1, 2, 2), 3.0))


def test_bad_maxpool_backward_against_a_loop_and_untied_agrees_with_stock():
    gen = torch.Generator().manual_seed(3)
    x = torch.randint(0, 3, (2, 3, 7, 6), generator=gen).float()     # odd height: last row dropped
    g = torch.randn(2, 3, 3, 3, generator=gen)
    bad = _bad_grad(x, g)
    want = torch.zeros_like(x)
    for n in range(2):
        for c in range(3):
            for i in range(3):
                for j in range(3):
                    w = x[n, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
                    want[n, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2] = g[n, c, i, j] * (w == w.max())
    assert torch.equal(bad, want) and torch.all(bad[:, :, 6] == 0)
    assert not torch.equal(bad, _stock_grad(x, g))                   # ties: differs from stock
    u = torch.randn(2, 3, 8, 8, generator=gen)                        # no ties: the same as stock
    gu = torch.randn(2, 3, 4, 4, generator=gen)
    assert torch.equal(_bad_grad(u, gu), _stock_grad(u, gu))


def test_registered_and_listed_by_the_cli():
    from click.testing import CliRunner

    from mtcheck.cli import main

    r = CliRunner().invoke(main, ["zoo"])
    assert r.exit_code == 0, r.output
    lines = {ln.split()[0]: ln for ln in r.output.splitlines() if ln.strip()}
    for name, shape in REAL.items():
        assert str(shape) in lines[f"zoo:{name}"]
    assert {"zoo:lenet", "zoo:residual-cnn", "zoo:paper-boustany"} <= set(lines)   # the old entries stay


def test_default_campaign_includes_them_at_float32():
    from mtcheck.campaign import DEFAULT_TARGETS, resolve_target

    assert "zoo:lenet-f32" in DEFAULT_TARGETS and "zoo:resnet-bn-f32" in DEFAULT_TARGETS
    for t in ("zoo:lenet-f32", "zoo:resnet-bn-f32"):
        prog, (x,), ref = resolve_target(t)
        assert ref == t and x.dtype == torch.float32
        assert all(p.dtype == torch.float32 for p in prog.parameters())
    _, (x,), _ = resolve_target("zoo:lenet")                          # the dyadic ones stay float64
    assert x.dtype == torch.float64
    _, (x,), _ = resolve_target("zoo:lenet-f32", "float64")           # an explicit dtype wins
    assert x.dtype == torch.float64
