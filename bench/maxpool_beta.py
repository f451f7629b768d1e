"""Boustany (TMLR 2024) on max-pool backwards, reproduced: the beta-family and how often it matters.

The beta-family of max-pool backwards on a tied 2x2 window (tie set T, |T| = k):

    gradient to tied entry i = beta / k + (1 - beta) * [i is the first max]        (beta in [0, 1])

beta = 0 is PyTorch's rule (the first max in scan order gets everything), beta = 1 the even split.
The weights sum to 1 for every beta, and mtcheck calls every beta ASSOCIATED (J_fw - J_S is a
combination of the tie rows) while a rule whose weights do not sum to 1 (``sum2``: the even split
doubled; ``all``: every tied entry gets the full gradient) is NOT_ASSOCIATED, with a witness.

Then Boustany's measurement, with his protocol: R. Boustany, "On the numerical reliability of
nonsmooth autodiff: a MaxPool case study", TMLR 2024 (arXiv 2401.02736); code
github.com/ryanboustany/MaxPool-numerical. His 100% / 55% / 0% are the output of the cell "Volume by
precision" of ``notebooks/volume_estimation_by_architecture.ipynb`` (391/391, 216/391, 0/391):

- network: ``models/vgg.py`` VGG('VGG11'), full width (64-M-128-M-256-256-M-512-512-M-512-512-M,
  conv3x3 + ReLU, no batch norm, 2x2 max-pools, Linear(512, 10)); max-pool ``maxpool.py``
  MaxPool2DBeta(beta) = beta * (even split) + (1 - beta) * nn.MaxPool2d, beta = 0 against beta = 1;
- init: the notebook's ``init_weights``: conv weights kaiming_uniform_(fan_in, relu), conv biases 0,
  linear weights N(0, 0.01), linear bias 0; ``torch.manual_seed(0)``; weights then fixed (SGD, lr = 0);
- data: CIFAR-10's 50000 training images in order (DataLoader batch 128, no shuffle: 391 batches, the
  last of 80), RandomCrop(32, padding=4) + RandomHorizontalFlip, Normalize(mean (0.4914, 0.4822,
  0.4465), std (0.2023, 0.1994, 0.2010)), cast to the precision after normalising; loss cross-entropy;
- count: for each batch, sum over the parameter tensors of max |grad(beta=0) - grad(beta=1)|
  (``compute_norms``, in the network's precision); the batch counts when that exceeds 1e-3 (16 bits),
  1e-7 (32) or 1e-15 (64). The percentage is counted batches / 391, one epoch, one initialisation;
- hardware: CUDA with cudnn.deterministic, cudnn.benchmark off, use_deterministic_algorithms(True).

Here: the same network, init, augmentation, normalisation, batch size, statistic and thresholds, on
PyTorch's CPU kernels, with mini-batches drawn (with replacement) from the 20 real CIFAR-10 images in
``bench/data/cifar10_subset.npz`` (all the real CIFAR-10 this machine can get) and a few batches per
precision instead of an epoch (a batch of 128 through full-width VGG11 costs about 4 s at float32,
12 s at float64 and 75 s at float16 on one CPU core). The table also gives the bitwise count and the
number of tied windows (positive maximum attained twice or more) the batch meets in the max-pools.
``--no-augment`` drops the crop and flip (the crop's black padding makes many ties), ``--data smooth``
uses synthetic images, ``--width quarter`` VGG11 at 1/4 width.

    .venv/bin/python bench/maxpool_beta.py                       # defaults: 1 / 24 / 3 batches
    .venv/bin/python bench/maxpool_beta.py --batches 16:4,32:100,64:10 --max-seconds 3000
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

DATA = Path(__file__).resolve().parent / "data" / "cifar10_subset.npz"
PAPER = {"16": (391, 391), "32": (216, 391), "64": (0, 391)}      # volume_estimation_by_architecture.ipynb
THRESHOLD = {"16": 1e-3, "32": 1e-7, "64": 1e-15}                # the same cell's thresholds
DTYPES = {"16": torch.float16, "32": torch.float32, "64": torch.float64}
VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")       # models/vgg.py cfg['VGG11']
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
            elif beta == 1:
                wts = None                                                 # g / k, as Boustany's maxpool.py
            else:
                wts = beta * mask / k + (1 - beta) * first
            gw = g.unsqueeze(-1) * mask / k if wts is None else g.unsqueeze(-1) * wts
            gw = gw.reshape(*lead, h2, w2, 2, 2).transpose(-3, -2)
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

    def __init__(self, cfg=VGG11, side=32, beta=0.0):
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


# Boustany's normalisation (data_utils.py, and the notebook's transform): CIFAR-10's channel means, but
# these standard deviations, not the 0.2470/0.2435/0.2616 above
_B_MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).reshape(1, 3, 1, 1)
_B_STD = torch.tensor([0.2023, 0.1994, 0.2010]).reshape(1, 3, 1, 1)


def load_cifar10_subset(path: Path = DATA):
    """The shipped real CIFAR-10 images: uint8 (N, 3, 32, 32) and int64 labels (N,)."""
    import numpy as np

    with np.load(path, allow_pickle=False) as d:
        x, y = d["images"], d["labels"]
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y.astype("int64"))


def augment(u8: torch.Tensor, g: torch.Generator, crop_flip: bool = True) -> torch.Tensor:
    """torchvision's RandomCrop(32, padding=4) (black padding) + RandomHorizontalFlip() + ToTensor()
    + Normalize(Boustany's mean, std), one draw per image, on uint8 (N, 3, 32, 32): float32 (N, 3, 32, 32).
    ``crop_flip=False``: ToTensor() + Normalize() only."""
    n, _, h, w = u8.shape
    if not crop_flip:
        return (u8.float().div(255) - _B_MEAN) / _B_STD
    padded = F.pad(u8, (4, 4, 4, 4))
    ij = torch.randint(0, 9, (n, 2), generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    out = torch.stack([padded[b, :, i:i + h, j:j + w] for b, (i, j) in enumerate(ij.tolist())])
    out = torch.where(flip.reshape(n, 1, 1, 1), out.flip(-1), out)
    return (out.float().div(255) - _B_MEAN) / _B_STD


def boustany_batches(n_batches: int, batch: int, data: str, seed: int = 0, crop_flip: bool = True):
    """Mini-batches (float32, labels): drawn with replacement from the shipped CIFAR-10 images and augmented
    (``data="cifar10"``), or synthetic (``"smooth"``: 8-bit smooth images; ``"blocks"``: constant 8x8 blocks)."""
    g = torch.Generator().manual_seed(seed)
    if data == "cifar10":
        X, Y = load_cifar10_subset()
        for _ in range(n_batches):
            idx = torch.randint(0, X.shape[0], (batch,), generator=g)
            yield augment(X[idx], g, crop_flip), Y[idx]
        return
    for b in range(n_batches):
        x, y = cifar_like(batch, seed=seed + 1000 + b)
        if data == "blocks":
            x = block_like(batch, seed=seed + 1000 + b, side=32, block=8)
        yield x, y


def boustany_init(net: nn.Module) -> nn.Module:
    """The notebook's ``init_weights``."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="relu")
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.constant_(m.bias, 0)
    return net


def param_grads(net, x, y):
    return torch.autograd.grad(F.cross_entropy(net(x), y), list(net.parameters()))


def compare(net0, net1, x, y):
    """(Boustany's statistic: sum over parameter tensors of max |g0 - g1|, in the networks' precision;
    whether any parameter gradient differs bitwise)."""
    g0, g1 = param_grads(net0, x, y), param_grads(net1, x, y)
    norm = 0
    for u, v in zip(g0, g1):
        norm += torch.norm(u - v, float("inf"))
    return float(norm), any(not torch.equal(u, v) for u, v in zip(g0, g1))


def count_positive_ties(net: nn.Module, counter: list):
    """Forward hooks on ``net``'s max-pools adding to ``counter[0]`` the number of 2x2 windows whose maximum
    is positive and attained more than once (a tie at 0 sits behind a ReLU at 0 and carries no gradient)."""

    def hook(mod, inp, out):
        x = inp[0].detach()
        *lead, h, w = x.shape
        win = x[..., : h // 2 * 2, : w // 2 * 2].reshape(*lead, h // 2, 2, w // 2, 2).transpose(-3, -2)
        win = win.reshape(*lead, h // 2, w // 2, 4)
        m = win.amax(dim=-1, keepdim=True)
        counter[0] += int((((win == m).sum(dim=-1) > 1) & (m.squeeze(-1) > 0)).sum())

    return [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, Pool)]


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


def mtcheck_real_images(args):
    """What only mtcheck can say about the ties Boustany's batches meet: on real augmented CIFAR-10
    images through VGG11 at 1/4 width (his init; at full width, 9.2M parameters, the first image has
    908 tie rows, 62 GiB as residues: UNKNOWN by mtcheck's memory budget), whether each float
    tie of the max-pools is an exact tie (no rounding node) and whether it is a kink in parameter space
    (a nonzero tie row) or a tie between entries that are one function of the parameters (SMOOTH_OK with
    a full tangent space: beta = 0 and beta = 1 then differ by rounding only)."""
    torch.manual_seed(args.seed)
    base = boustany_init(VGG(cfg=VGG11_QUARTER))
    print(f"\nmtcheck on real CIFAR-10 images as Boustany's batches see them (augmented, VGG11 at 1/4 width, his "
          "init, float32, cross-entropy, w.r.t. all parameters):")
    print("| image | float ties in the max-pools (max > 0) | beta | verdict | rounding nodes | tangent space | "
          "certificate | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for i, (x, y) in enumerate(boustany_batches(args.mtcheck_real, 1, "cifar10", seed=args.seed)):
        ties = [0]
        hooks = count_positive_ties(base, ties)
        with torch.no_grad():
            base(x)
        for h in hooks:
            h.remove()
        for beta in (0.0, 1.0):
            net = copy.deepcopy(base).set_beta(beta).eval()
            t0 = time.perf_counter()
            rep = mtcheck.check(F.cross_entropy, model=net, batch=(x, y), wrt="parameters")
            tan = "-" if rep.tangent_dim is None else f"{rep.tangent_dim}/{rep.n_inputs}"
            print(f"| {i} (label {int(y[0])}) | {ties[0]} | {beta:g} | {rep.verdict} | {len(rep.rounding_nodes)} | "
                  f"{tan} | {'verified' if rep.certificate_ok else rep.certificate_ok} | "
                  f"{time.perf_counter() - t0:.0f} |")
    print("(SMOOTH_OK with the full tangent space and no rounding node: every tie the image meets is exact and sits "
          "between entries that are the same function of the parameters (the crop's black padding, flat regions), "
          "so it is no kink of the loss in parameter space, and any difference between beta = 0 and beta = 1 there "
          "is rounding in the backward pass)")


def _parse_batches(spec: str) -> dict:
    out = {}
    for part in spec.split(","):
        d, n = part.split(":")
        out[d.strip()] = int(n)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", default="16:1,32:24,64:3",
                    help="mini-batches per precision, bits:count,... (Boustany: 391, one CIFAR-10 epoch)")
    ap.add_argument("--batch", type=int, default=128, help="mini-batch size (Boustany: 128)")
    ap.add_argument("--width", choices=("full", "quarter"), default="full", help="VGG11 at full or 1/4 width")
    ap.add_argument("--data", choices=("cifar10", "smooth", "blocks"), default="cifar10",
                    help="the shipped real CIFAR-10 images (augmented), synthetic smooth 8-bit images, or "
                         "constant 8x8 blocks (many exact ties)")
    ap.add_argument("--no-augment", action="store_true",
                    help="real images without Boustany's random crop (black padding) and flip")
    ap.add_argument("--seed", type=int, default=0, help="torch.manual_seed before the init (Boustany: 0)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mtcheck-samples", type=int, default=1, help="samples in the batch mtcheck checks")
    ap.add_argument("--mtcheck-side", type=int, default=16, help="image side for mtcheck's checks")
    ap.add_argument("--skip-mtcheck", action="store_true")
    ap.add_argument("--mtcheck-real", type=int, default=1,
                    help="real augmented CIFAR-10 images mtcheck checks through VGG11 at 1/4 width (0: none)")
    ap.add_argument("--max-seconds", type=float, default=600.0,
                    help="stop a precision's batches once the whole run has taken this long (each precision "
                         "still gets one batch)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    nb = _parse_batches(args.batches)
    dts = [d for d in ("16", "32", "64") if nb.get(d, 0) > 0]
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

        mtcheck_real_images(args)

    # 2. Boustany's count: batches whose parameter gradients differ between beta = 0 and beta = 1
    cfg = VGG11 if args.width == "full" else VGG11_QUARTER
    torch.manual_seed(args.seed)
    base = boustany_init(VGG(cfg=cfg))                 # one init, float32, cast to each precision
    res = {}
    for d in dts:
        net0 = copy.deepcopy(base).to(DTYPES[d]).set_beta(0.0).to(memory_format=torch.channels_last)
        net1 = copy.deepcopy(base).to(DTYPES[d]).set_beta(1.0).to(memory_format=torch.channels_last)
        rows, t0 = [], time.perf_counter()
        for i, (x, y) in enumerate(boustany_batches(nb[d], args.batch, args.data, seed=args.seed,
                                                          crop_flip=not args.no_augment)):
            if i and time.perf_counter() - t_start > args.max_seconds:
                break
            x = x.to(DTYPES[d]).contiguous(memory_format=torch.channels_last)
            ties = [0]
            hooks = count_positive_ties(net0, ties)
            rows.append((*compare(net0, net1, x, y), ties[0]))
            for h in hooks:
                h.remove()
        res[d] = (rows, time.perf_counter() - t0)

    data = {"cifar10": f"real CIFAR-10 (20 images{', not augmented' if args.no_augment else ', augmented'})", "smooth": "synthetic smooth 8-bit images",
            "blocks": "synthetic 8x8 blocks"}[args.data]
    print(f"\nBoustany's measurement: mini-batches of {args.batch} whose parameter gradients differ between "
          f"beta = 0 and beta = 1 (VGG11 {'full width' if args.width == 'full' else 'at 1/4 width'}, his init, "
          f"fixed weights; statistic: sum over the {len(list(base.parameters()))} parameter tensors of "
          "max |g0 - g1|, counted above his threshold)")
    print("| bits | threshold | paper: VGG11, CIFAR-10 train epoch, CUDA | here: over threshold | "
          "here: bitwise different | here: median / max statistic | here: tied windows with max > 0 per batch "
          "(median) | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for d in dts:
        rows, s = res[d]
        pc, pn = PAPER[d]
        n = len(rows)
        over = sum(v > THRESHOLD[d] for v, _, _ in rows)
        bit = sum(b for _, b, _ in rows)
        vals = sorted(v for v, _, _ in rows)
        ties = sorted(k for _, _, k in rows)
        med = vals[n // 2] if n else float("nan")
        print(f"| {d} | {THRESHOLD[d]:g} | {pc}/{pn} = {100 * pc / pn:.1f}% | {over}/{n} = {100 * over / max(n, 1):.0f}% "
              f"| {bit}/{n} = {100 * bit / max(n, 1):.0f}% | {med:.3g} / {vals[-1] if n else float('nan'):.3g} "
              f"| {ties[n // 2] if n else '-'} | {s:.0f} |")
    under = [f"{sum(b and v <= THRESHOLD[d] for v, b, _ in res[d][0])}/{len(res[d][0])} at {d} bits" for d in dts]
    print("(his percentages count a batch when the statistic exceeds the threshold, not when the gradients differ "
          f"bitwise; batches that differ bitwise but stay under the threshold here: {', '.join(under)}. A tie whose "
          "entries are copies of the same function of the parameters (the same input patch: black padding, flat "
          "8-bit regions) is smooth in parameter space and there beta = 0 and beta = 1 differ by rounding only; a "
          "tie by coincidence of values (the commoner the fewer the bits) is a kink where they differ in exact "
          "arithmetic too; the tie count above does not tell the two apart)")
    print("\nProtocol differences from the paper's cell (everything else as in his code: network, init, "
          "augmentation, normalisation, batch size, statistic, thresholds):")
    print(f"- kernels: PyTorch {torch.__version__} CPU, {args.threads} thread(s), channels-last tensors (here the "
          "float16 convolutions run through PyTorch's own slow_conv2d, as this CPU has no float16 oneDNN path); "
          "his: CUDA GPU, cuDNN deterministic. Rounding, and so the statistic, depends on the kernels' summation "
          "order: the counts are not expected to match exactly, only in kind")
    print(f"- data: {data}, drawn with replacement into each batch (so a batch repeats images, each with its own "
          "crop and flip); his: CIFAR-10's 50000 training images in order")
    print(f"- counts: {', '.join(f'{len(res[d][0])} batch(es) at {d} bits' for d in dts)}; his: 391 at each "
          "precision (one epoch)")
    print(f"- init: torch.manual_seed({args.seed}), one float32 draw cast to each precision (his: a fresh draw per "
          "precision)")
    print("- max-pool: the same two backwards (beta = 0: first max in scan order, as nn.MaxPool2d; beta = 1: g / k "
          "to each of the k tied entries), as one autograd.Function per beta instead of his sum "
          "beta * custom + (1 - beta) * native, which is bitwise the same at beta = 0 and 1")
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
