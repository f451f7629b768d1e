"""Built-in models: the paper's examples and a small zoo of MLPs and CNNs.

Every entry is a factory ``f(dtype=torch.float64, seed=0) -> (program, example_inputs)``
whose weights are dyadic (exactly representable, small denominators) so that
float64 replays exact arithmetic and ties are structural where the model says so.

The ``*-f32`` entries are the exception: real-weight models as users have them,
``f(dtype=torch.float32, seed=0)``, PyTorch's default initialisation (``torch.manual_seed(seed)``
then construction, no rounding), float32, at tie-heavy but not dyadic inputs (a digit-like
image on a zero background; a CIFAR-shape image of constant blocks).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def dyadic_(module: nn.Module, seed: int = 0, bits: int = 3, scale: float = 1.0) -> nn.Module:
    """Overwrite every parameter with small dyadic values k / 2^bits * scale (k in [-2^bits, 2^bits])."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            k = torch.randint(-(2 ** bits), 2 ** bits + 1, p.shape, generator=g)
            p.copy_(k.to(p.dtype) * (scale / 2 ** bits))
    return module


# ----------------------------------------------------------------- the paper's examples

def max1(x):
    """Boustany's max_1 (paper, section 5.3): a Python loop with ``if x[i] > res``."""
    res = x[0]
    for i in range(1, x.shape[0]):
        if x[i] > res:
            res = x[i]
    return res


_A = (1.0, 2.0, 3.0, 4.0)


def boustany(t):
    """t -> max1(t a) - torch.max(t a), a = (1, 2, 3, 4): the null function; autodiff gives -1.5 at 0."""
    a = torch.tensor(_A, dtype=t.dtype)
    return max1(t * a) - torch.max(t * a)


def maxpool_pair(t):
    """t -> maxpool1d(t, 4t) - maxpool1d(4t, t) (paper, section 5.4): -3 at t = 0."""
    p = nn.MaxPool1d(2, stride=1)
    u = torch.stack([t, 4 * t]).reshape(1, 1, 2)
    v = torch.stack([4 * t, t]).reshape(1, 1, 2)
    return (p(u) - p(v)).reshape(())


def max_xx(x):
    """max(x, x) (paper, section 2.2): the identity, derivative 1 everywhere."""
    return torch.max(torch.stack([x, x]))


def relu_w0(x, w0: float = 0.0):
    """relu(w0 x) with w0 = 0 (paper, section 2.1): derivative 0."""
    return torch.relu(w0 * x)


# ----------------------------------------------------------------- nets

class MLP(nn.Module):
    def __init__(self, sizes=(64, 128, 128, 10)):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class LeNet(nn.Module):
    """LeNet-5-like: 1x28x28, two conv+relu+maxpool stages, three linear layers."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5)
        self.c2 = nn.Conv2d(6, 16, 5)
        self.f1 = nn.Linear(16 * 4 * 4, 120)
        self.f2 = nn.Linear(120, 84)
        self.f3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        x = x.flatten(1)
        x = F.relu(self.f1(x))
        x = F.relu(self.f2(x))
        return self.f3(x)


class SmallVGG(nn.Module):
    """Three conv+relu+maxpool stages on 3x16x16, then a linear head."""

    def __init__(self, width=8):
        super().__init__()
        w = width
        self.convs = nn.ModuleList([nn.Conv2d(3, w, 3, padding=1), nn.Conv2d(w, 2 * w, 3, padding=1),
                                    nn.Conv2d(2 * w, 2 * w, 3, padding=1)])
        self.head = nn.Linear(2 * w * 2 * 2, 10)

    def forward(self, x):
        for c in self.convs:
            x = F.max_pool2d(F.relu(c(x)), 2)
        return self.head(x.flatten(1))


class ResidualCNN(nn.Module):
    """conv, relu, max-pool, a residual block, linear: an ordinary user model."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.b1 = nn.Conv2d(4, 4, 3, padding=1)
        self.b2 = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.stem(x)), 2)
        y = F.relu(self.b1(x))
        x = F.relu(x + self.b2(y))
        x = F.max_pool2d(x, 2)
        return self.head(x.flatten(1))


def _tie_image(shape, dtype, seed, frac=0.5):
    """A tie-heavy input: a constant background (exact zeros) with a dyadic patch."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(shape, dtype=dtype)
    patch = (torch.randint(-4, 5, shape, generator=g).to(dtype) / 4)
    mask = torch.rand(shape, generator=g) < frac
    return torch.where(mask, patch, x)


def mlp(dtype=torch.float64, seed=0, sizes=(64, 128, 128, 10)):
    m = dyadic_(MLP(sizes), seed).to(dtype).eval()
    return m, (_tie_image((1, sizes[0]), dtype, seed),)


def mlp_small(dtype=torch.float64, seed=0):
    return mlp(dtype, seed, sizes=(8, 16, 16, 4))


def lenet(dtype=torch.float64, seed=0):
    m = dyadic_(LeNet(), seed, scale=0.5).to(dtype).eval()
    return m, (_tie_image((1, 1, 28, 28), dtype, seed, frac=0.3),)


def small_vgg(dtype=torch.float64, seed=0):
    m = dyadic_(SmallVGG(), seed, scale=0.5).to(dtype).eval()
    return m, (_tie_image((1, 3, 16, 16), dtype, seed, frac=0.3),)


def residual_cnn(dtype=torch.float64, seed=0):
    m = dyadic_(ResidualCNN(), seed, scale=0.5).to(dtype).eval()
    return m, (_tie_image((1, 1, 16, 16), dtype, seed, frac=0.3),)


def paper_boustany(dtype=torch.float64, seed=0):
    return boustany, (torch.tensor(0.0, dtype=dtype),)


def paper_maxpool(dtype=torch.float64, seed=0):
    return maxpool_pair, (torch.tensor(0.0, dtype=dtype),)


def paper_max_xx(dtype=torch.float64, seed=0):
    return max_xx, (torch.tensor(0.5, dtype=dtype),)


def paper_relu_w0(dtype=torch.float64, seed=0):
    return relu_w0, (torch.tensor(0.0, dtype=dtype),)


# ----------------------------------------------------------------- real-weight models (float32, default init)

class ResNetBN(nn.Module):
    """A small residual CNN for 3x32x32: conv-BN-relu stem, max-pool, two basic residual
    blocks with BatchNorm2d (the second with a stride-2 1x1 conv+BN downsample), global
    average pool, linear 10."""

    def __init__(self, width=16):
        super().__init__()
        w = width
        self.stem = nn.Conv2d(3, w, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(w)
        self.b1 = _BasicBlock(w, w, stride=1)
        self.b2 = _BasicBlock(w, 2 * w, stride=2)
        self.fc = nn.Linear(2 * w, 10)

    def forward(self, x):
        x = F.relu(self.stem_bn(self.stem(x)))
        x = F.max_pool2d(x, 2)                      # 32x32 -> 16x16
        x = self.b2(self.b1(x))                     # 16x16 -> 8x8
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


class _BasicBlock(nn.Module):
    """conv3x3-BN-relu-conv3x3-BN, plus the shortcut (identity, or a 1x1 conv+BN when the shape changes), relu."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        s = x if self.down is None else self.down(x)
        return F.relu(y + s)


def _vgg_features(cfg, cin=3):
    layers = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
            cin = v
    return nn.Sequential(*layers)


class VGGSmall(nn.Module):
    """VGG-style CNN on 3x32x32: conv3x3-relu-maxpool stages of widths 16, 32, 64, then linear 10."""

    def __init__(self, widths=(16, 32, 64)):
        super().__init__()
        cfg = []
        for w in widths:
            cfg += [w, "M"]
        self.features = _vgg_features(cfg)
        side = 32 // 2 ** len(widths)
        self.classifier = nn.Linear(widths[-1] * side * side, 10)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


VGG11_CFG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG11(nn.Module):
    """VGG11's convolutions on 3x32x32 (the setting of Boustany's max-pool study), then linear 512 -> 10."""

    def __init__(self):
        super().__init__()
        self.features = _vgg_features(VGG11_CFG)
        self.classifier = nn.Linear(512, 10)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class MaxPool2dAllTies(torch.autograd.Function):
    """``F.max_pool2d(x, 2)`` whose backward gives EVERY entry equal to its window's max the full
    incoming gradient (instead of one of them): a planted bug of a real class (reported against
    Theano's and cuDNN's max-pool backward), wrong only where a window ties."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return F.max_pool2d(x, 2)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        *lead, h, w = x.shape
        h2, w2 = h // 2, w // 2
        win = x[..., : 2 * h2, : 2 * w2].reshape(*lead, h2, 2, w2, 2)
        m = win.amax(dim=(-3, -1), keepdim=True)                 # the max of each window
        mask = (win == m).to(g.dtype)                             # every entry equal to it
        gw = (g.reshape(*lead, h2, 1, w2, 1) * mask).reshape(*lead, 2 * h2, 2 * w2)
        gx = torch.zeros_like(x, dtype=g.dtype)
        gx[..., : 2 * h2, : 2 * w2] = gw
        return gx


class LeNetBadMaxPool(LeNet):
    """LeNet (same parameters) whose max-pools use :class:`MaxPool2dAllTies`."""

    def forward(self, x):
        x = MaxPool2dAllTies.apply(F.relu(self.c1(x)))
        x = MaxPool2dAllTies.apply(F.relu(self.c2(x)))
        x = x.flatten(1)
        x = F.relu(self.f1(x))
        x = F.relu(self.f2(x))
        return self.f3(x)


def digit_image(shape=(1, 1, 28, 28), dtype=torch.float32, seed=0, strokes=None):
    """A digit-like image: exact-zero background and a few strokes (line segments 2-3 pixels
    wide) whose pixels have float32 intensities in (0, 1] (``1 - torch.rand``, not rounded)."""
    g = torch.Generator().manual_seed(seed)
    h, w = shape[-2], shape[-1]
    x = torch.zeros(shape[-2:], dtype=torch.float32)
    n = strokes if strokes is not None else 3 + int(torch.randint(0, 3, (), generator=g))
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    for _ in range(n):
        p = 4 + torch.rand(2, generator=g) * torch.tensor([h - 8.0, w - 8.0])
        q = 4 + torch.rand(2, generator=g) * torch.tensor([h - 8.0, w - 8.0])
        half = 0.75 + 0.5 * float(torch.rand((), generator=g))          # half-width: 2-3 pixels wide
        d = q - p
        t = (((yy - p[0]) * d[0] + (xx - p[1]) * d[1]) / d.dot(d).clamp_min(1e-6)).clamp(0, 1)
        dist = ((yy - p[0] - t * d[0]) ** 2 + (xx - p[1] - t * d[1]) ** 2).sqrt()
        on = dist <= half
        vals = 1 - torch.rand((h, w), generator=g)                       # in (0, 1]
        x = torch.where(on, torch.maximum(x, vals), x)
    return x.expand(shape).clone().to(dtype)


def block_image(shape=(1, 3, 32, 32), dtype=torch.float32, seed=0, block=8):
    """A CIFAR-shape tie-heavy image: constant ``block`` x ``block`` patches, each channel of each
    patch one float32 value from ``torch.rand`` (equal neighbours make max-pool windows tie)."""
    g = torch.Generator().manual_seed(seed)
    *lead, h, w = shape
    v = torch.rand((*lead, -(-h // block), -(-w // block)), generator=g)
    x = v.repeat_interleave(block, dim=-2).repeat_interleave(block, dim=-1)[..., :h, :w]
    return x.contiguous().to(dtype)


def _default_init(cls, seed):
    torch.manual_seed(seed)
    return cls()


def lenet_f32(dtype=torch.float32, seed=0):
    """LeNet, PyTorch default init, at a digit-like 1x1x28x28 image."""
    m = _default_init(LeNet, seed).to(dtype).eval()
    return m, (digit_image((1, 1, 28, 28), dtype, seed),)


def lenet_f32_bad_maxpool(dtype=torch.float32, seed=0):
    """lenet-f32 (same weights, same input) with the planted all-ties max-pool backward."""
    m = _default_init(LeNetBadMaxPool, seed).to(dtype).eval()
    return m, (digit_image((1, 1, 28, 28), dtype, seed),)


def bn_stats_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters, from ``seed``:
    running_mean ~ 0.1 N(0,1), running_var ~ U(0.5, 1.5), weight ~ 1 + 0.1 N(0,1), bias ~ 0.1 N(0,1)."""
    g = torch.Generator().manual_seed(seed + 7919)
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, nn.modules.batchnorm._BatchNorm):
                c = bn.num_features
                bn.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                bn.running_var.copy_(0.5 + torch.rand(c, generator=g))
                bn.weight.copy_(1 + 0.1 * torch.randn(c, generator=g))
                bn.bias.copy_(0.1 * torch.randn(c, generator=g))
    return module


def resnet_bn_f32(dtype=torch.float32, seed=0):
    """ResNetBN, default init, non-trivial BatchNorm statistics, eval mode, at a 1x3x32x32 block image."""
    m = bn_stats_(_default_init(ResNetBN, seed), seed).to(dtype).eval()
    return m, (block_image((1, 3, 32, 32), dtype, seed),)


def vgg_f32(dtype=torch.float32, seed=0):
    """VGGSmall (16-32-64), default init, at a 1x3x32x32 block image."""
    m = _default_init(VGGSmall, seed).to(dtype).eval()
    return m, (block_image((1, 3, 32, 32), dtype, seed),)


def vgg11_f32(dtype=torch.float32, seed=0):
    """VGG11 (9.2M weights), default init, at a 1x3x32x32 block image."""
    m = _default_init(VGG11, seed).to(dtype).eval()
    return m, (block_image((1, 3, 32, 32), dtype, seed),)


ZOO = {
    "paper-boustany": paper_boustany,
    "paper-maxpool": paper_maxpool,
    "paper-max-xx": paper_max_xx,
    "paper-relu-w0": paper_relu_w0,
    "mlp": mlp,
    "mlp-small": mlp_small,
    "lenet": lenet,
    "small-vgg": small_vgg,
    "residual-cnn": residual_cnn,
    "lenet-f32": lenet_f32,
    "lenet-f32-bad-maxpool": lenet_f32_bad_maxpool,
    "resnet-bn-f32": resnet_bn_f32,
    "vgg-f32": vgg_f32,
    "vgg11-f32": vgg11_f32,
}
