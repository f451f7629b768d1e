"""Built-in models: the paper's examples and a small zoo of MLPs and CNNs.

Every entry is a factory ``f(dtype=torch.float64, seed=0) -> (program, example_inputs)``
whose weights are dyadic (exactly representable, small denominators) so that
float64 replays exact arithmetic and ties are structural where the model says so.
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
}
