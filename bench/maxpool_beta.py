"""Boustany (TMLR 2024) on max-pool backwards, reproduced: the beta-family and how often it matters.

The beta-family of max-pool backwards on a tied 2x2 window (tie set T, |T| = k):

    gradient to tied entry i = beta / k + (1 - beta) * [i is the first max]        (beta in [0, 1])

beta = 0 is PyTorch's rule (the first max in scan order gets everything), beta = 1 the even split.
The weights sum to 1 for every beta, and mtcheck calls every beta ASSOCIATED (J_fw - J_S is a
combination of the tie rows) while a rule whose weights do not sum to 1 (``sum2``: the even split
doubled; ``all``: every tied entry gets the full gradient) is NOT_ASSOCIATED, with a witness.

Then Boustany's measurement: on a VGG-style CNN (VGG11's layout at a quarter of its width, PyTorch
default init, ``torch.manual_seed(init)``) and a mini-batch of CIFAR-like images, is the parameter
gradient of the loss different (bitwise) between beta = 0 and beta = 1, at float16 / float32 / float64?
Boustany reports 100% at 16 bits, 55% at 32 and 0% at 64 (VGG11 on CIFAR10, during training).

Data: synthetic CIFAR-like 3x32x32 images generated here: smooth images (8x8 uniform noise, bilinearly
upsampled) quantised to 8 bits (k/255, as CIFAR's pixels, so neighbouring pixels are often equal),
normalised with CIFAR10's channel means and deviations. Labels uniform; loss cross-entropy for the
count. mtcheck checks the network's outputs (all 10 logits) with respect to parameters.

    .venv/bin/python bench/maxpool_beta.py --inits 20 --batch 16
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mtcheck  # noqa: E402

PAPER = {"16": "100%", "32": "55%", "64": "0%"}
DTYPES = {"16": torch.float16, "32": torch.float32, "64": torch.float64}
VGG11_QUARTER = (16, "M", 32, "M", 64, 64, "M", 128, 128, "M", 128, 128, "M")


def beta_pool(beta: float | str):
    """A 2x2 / stride 2 max-pool whose backward is the beta rule (``beta`` in [0, 1]), or a rule whose
    tie weights do not sum to 1: ``"sum2"`` (twice the even split) or ``"all"`` (1 to every tied entry)."""

    class MaxPoolBeta(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return F.max_pool2d(x, 2)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            *lead, h, w = x.shape
            h2, w2 = h // 2, w // 2
            win = x[..., : 2 * h2, : 2 * w2].reshape(*lead, h2, 2, w2, 2).transpose(-3, -2)
            win = win.reshape(*lead, h2, w2, 4)                       # the window in scan order
            m = win.amax(dim=-1, keepdim=True)
            mask = (win == m).to(g.dtype)
            k = mask.sum(dim=-1, keepdim=True)
            first = F.one_hot(win.argmax(dim=-1), 4).to(g.dtype)       # argmax: the first max
            if beta == "sum2":
                wts = torch.where(k > 1, 2 * mask / k, first)             # wrong at ties only
            elif beta == "all":
                wts = mask
            else:
                wts = beta * mask / k + (1 - beta) * first
            gw = (g.unsqueeze(-1) * wts).reshape(*lead, h2, w2, 2, 2).transpose(-3, -2)
            gx = torch.zeros_like(x, dtype=g.dtype)
            gx[..., : 2 * h2, : 2 * w2] = gw.reshape(*lead, 2 * h2, 2 * w2)
            return gx

    MaxPoolBeta.__name__ = MaxPoolBeta.__qualname__ = f"MaxPoolBeta[{beta}]"
    return MaxPoolBeta


class Pool(nn.Module):
    def __init__(self, beta=0.0):
        super().__init__()
        self.beta = beta
        self._fn = beta_pool(beta)

    def set_beta(self, beta):
        self.beta, self._fn = beta, beta_pool(beta)

    def forward(self, x):
        return self._fn.apply(x)


class VGG(nn.Module):
    """VGG-style: conv3x3-relu blocks and 2x2 max-pools (``cfg`` as torchvision's), linear 10."""

    def __init__(self, cfg=VGG11_QUARTER, side=32, beta=0.0):
        super().__init__()
        layers, cin = [], 3
        for v in cfg:
            if v == "M":
                layers.append(Pool(beta))
                side //= 2
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
                cin = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin * side * side, 10)

    def set_beta(self, beta):
        for m in self.modules():
            if isinstance(m, Pool):
                m.set_beta(beta)
        return self

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


_MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).reshape(1, 3, 1, 1)
_STD = torch.tensor([0.2470, 0.2435, 0.2616]).reshape(1, 3, 1, 1)


def cifar_like(n: int, seed: int = 0, side: int = 32):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand((n, 3, 8, 8), generator=g)
    img = F.interpolate(low, size=(side, side), mode="bilinear", align_corners=False)
    img = torch.round(img * 255) / 255
    return (img - _MEAN) / _STD, torch.randint(0, 10, (n,), generator=g)


def block_like(n: int, seed: int = 0, side: int = 16, block: int = 4):
    """CIFAR-like images made of constant ``block`` x ``block`` patches (8-bit values), normalised: equal
    neighbours make max-pool windows tie with positive values (effective ties w.r.t. the image)."""
    g = torch.Generator().manual_seed(seed)
    v = torch.round(torch.rand((n, 3, side // block, side // block), generator=g) * 255) / 255
    img = v.repeat_interleave(block, dim=-2).repeat_interleave(block, dim=-1)
    return ((img - _MEAN) / _STD).contiguous()


def param_grads(net, x, y):
    return torch.autograd.grad(F.cross_entropy(net(x), y), list(net.parameters()))


def differs(net, x, y, dtype) -> bool:
    a = copy.deepcopy(net).to(dtype).set_beta(0.0)
    b = copy.deepcopy(net).to(dtype).set_beta(1.0)
    xd = x.to(dtype)
    return any(not torch.equal(u, v) for u, v in zip(param_grads(a, xd, y), param_grads(b, xd, y)))


def mtcheck_rules(net, x, rules, wrt="parameters"):
    out = []
    for r in rules:
        m = copy.deepcopy(net).set_beta(r).eval()
        t0 = time.perf_counter()
        try:
            rep = mtcheck.check(m, x, wrt=wrt, neighbours=False, forward_mode=False)
            out.append((r, str(rep.verdict), rep.certificate_ok, rep.n_inputs, time.perf_counter() - t0,
                        _tied_windows(rep)))
        except mtcheck.CheckInputError as e:
            out.append((r, f"error: {type(e).__name__}: {str(e)[:80]}", None, 0, time.perf_counter() - t0, 0))
    return out


def _tied_windows(rep) -> int:
    n = 0
    for e in rep.pattern or []:
        if getattr(e, "kind", "") == "window":
            n += int(e.counts.get("tied windows", 0) or 0)
    return n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inits", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--dtypes", default="16,32,64")
    ap.add_argument("--mtcheck-samples", type=int, default=1, help="samples in the batch mtcheck checks")
    ap.add_argument("--mtcheck-side", type=int, default=16, help="image side for mtcheck's checks")
    ap.add_argument("--skip-mtcheck", action="store_true")
    ap.add_argument("--data", choices=("smooth", "blocks"), default="smooth",
                    help="the count's images: smooth 8-bit images, or constant 8x8 blocks (many exact ties)")
    ap.add_argument("--max-seconds", type=float, default=200.0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    dts = args.dtypes.split(",")
    rules = [0.0, 0.25, 0.5, 1.0, "sum2", "all"]

    if not args.skip_mtcheck:
        # 1. the beta-family in mtcheck's eyes: a VGG-style CNN (float32, default init) at a CIFAR-like image
        torch.manual_seed(0)
        net = VGG(cfg=(16, "M", 32, "M", 32, "M"), side=args.mtcheck_side).eval()
        x = block_like(args.mtcheck_samples, seed=1, side=args.mtcheck_side, block=8)
        res = mtcheck_rules(net, x, rules)
        res_in = mtcheck_rules(net, x, rules, wrt=None)
        print(f"\nmtcheck on the beta-family (VGG-style 16-M-32-M-32-M, float32 default init, "
              f"{args.mtcheck_samples} {args.mtcheck_side}x{args.mtcheck_side} image(s) of constant 8x8 blocks):")
        print("| backward rule | tie weights sum to | w.r.t. parameters | certificate | parameters | seconds | "
              "w.r.t. the input | tied windows |")
        print("|---|---|---|---|---|---|---|---|")
        for (r, v, ok, n, s, tw), (_, vi, _, _, si, _) in zip(res, res_in):
            total = "1" if not isinstance(r, str) else ("2 (at ties)" if r == "sum2" else "k (the tie size)")
            name = f"beta = {r}" if not isinstance(r, str) else {"sum2": "2 x even split", "all": "all ties get 1"}[r]
            print(f"| {name} | {total} | {v} | {'verified' if ok else ok} | {n} | {s:.1f} | {vi} | {tw} |")
        print("(w.r.t. parameters, a window whose entries tie because the image is constant there holds entries that "
              "are the same function of the parameters: its tie rows are zero, the program is smooth there in "
              "parameter space, and every rule whose weights sum to 1 gives the same real gradient there: a difference "
              "between beta = 0 and beta = 1 at such windows is rounding)")

    # 2. Boustany's count: batches whose parameter gradient differs between beta = 0 and beta = 1
    X, Y = cifar_like(max(8 * args.batch, 256), seed=2)
    if args.data == "blocks":
        X = block_like(X.shape[0], seed=2, side=32, block=8)
    counts = {d: 0 for d in dts}
    done = 0
    for init in range(args.inits):
        if time.perf_counter() - t_start > args.max_seconds:
            break
        torch.manual_seed(init)
        net = VGG().eval()
        g = torch.Generator().manual_seed(init)
        idx = torch.randperm(X.shape[0], generator=g)[: args.batch]
        for d in dts:
            counts[d] += differs(net, X[idx], Y[idx], DTYPES[d])
        done += 1
    print(f"\nBoustany's measurement: mini-batches ({args.batch} CIFAR-like images ({args.data}), VGG11 layout at 1/4 width, "
          "default init, one batch per init) whose parameter gradient differs between beta = 0 and beta = 1")
    print("| bits | paper (VGG11, CIFAR10) | here |")
    print("|---|---|---|")
    for d in dts:
        print(f"| {d} | {PAPER.get(d, '-')} | {counts[d]}/{done} = {100 * counts[d] / max(done, 1):.0f}% |")
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
