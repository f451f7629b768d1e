"""Bertoin et al. (NeurIPS 2021), "Numerical influence of ReLU'(0) on backpropagation", reproduced.

Their protocol (github.com/deel-ai/relu-prime, ``notebooks/volume_estimation_by_architecture.ipynb``,
"Volume by number of layers"): for each run, a fresh MLP 784-256xL-10 (L hidden layers, PyTorch's
default init) and a copy with relu'(0) = 1; MNIST's training set in order, batches of 256, pixels k/255
(``ToTensor``, no normalisation), cross-entropy; the run counts when some batch gives a different
gradient of the first layer's weights (compared with ``!= 0`` on the difference). The weights stay at
their init (no optimizer step). Counts out of 1000 runs, on a GPU:

    depth (L)     1     2     3     5     6
    16 bits     871   999  1000  1000  1000
    32 bits      54   258   463   647   697
    64 bits       0     0     0     0     0   (their loop breaks before the first batch at 64 bits)

Here, the same protocol on CPU kernels, with 10000 real MNIST digits (``bench/data/mnist10k.npz``)
instead of 60000, so each run sees 1/6 of the paper's batches; the last column extrapolates the
32-bit rate to 60000 images (differing batches per run are rare events: Poisson, rate times 6).
Run ``init`` of depth L is ``torch.manual_seed(1000 * L + init)`` then construction. Batches are
compared one by one (the notebook accumulates ``.grad`` across batches, which can only hide a
difference). A batch whose forward pass has no relu input exactly 0 gives bitwise the same
gradients under both choices (the two backward passes are the same computation), so only batches
with a zero are differentiated twice; ``--verify`` runs both backward passes on every batch of the
first runs and counts any batch where that shortcut would be wrong.

What only mtcheck adds, for the float32 batches whose gradients differ: whether the zero that relu
saw is an exact zero of the real function (an exact tie: both gradients are then checked for
association) or a rounding-induced zero of the float program (``ROUNDING_BRANCH``), decided in exact
rational arithmetic on the float32 weights and pixels, with the exact value of that relu input: its
sign says which of the two choices follows the real function's branch there. mtcheck checks the
cross-entropy of the smallest aligned chunk of the batch (1, 4, 16, ... samples) in which the zero
and the difference survive, with respect to all parameters.

    .venv/bin/python bench/relu_prime.py                      # about 5 minutes, a few hundred runs
    .venv/bin/python bench/relu_prime.py --max-seconds 2400 --runs-other 100 --mtcheck 6   # the paper's 1000
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mtcheck  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "mnist10k.npz"
PAPER = {"16": {1: 871, 2: 999, 3: 1000, 5: 1000, 6: 1000},
         "32": {1: 54, 2: 258, 3: 463, 5: 647, 6: 697},
         "64": {1: 0, 2: 0, 3: 0, 5: 0, 6: 0}}
PAPER_IMAGES = 60000
DTYPES = {"16": torch.float16, "32": torch.float32, "64": torch.float64}


class Relu1(torch.autograd.Function):
    """relu with relu'(0) = 1 (the notebook's ``ReLUAlpha(1)``)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.relu(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x >= 0).to(g.dtype)


class MLP(nn.Module):
    """784-256xdepth-10, ``nn.Linear`` layers, relu'(0) = ``relu_prime_0``."""

    def __init__(self, depth: int, width: int = 256, relu_prime_0: int = 0):
        super().__init__()
        sizes = [784] + [width] * depth + [10]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.relu_prime_0 = relu_prime_0

    def forward(self, x):
        x = x.flatten(1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = Relu1.apply(x) if self.relu_prime_0 == 1 else torch.relu(x)
        return x


def load_mnist():
    with np.load(DATA, allow_pickle=False) as d:
        x = torch.from_numpy(d["images"].astype(np.float32) / np.float32(255))   # ToTensor: k/255 in float32
        return x.unsqueeze(1), torch.from_numpy(d["labels"].astype(np.int64))


def relu_zeros(net, x):
    """The relu inputs that are exactly 0 in the float forward: [(layer, sample, unit)]."""
    out, h = [], x.flatten(1)
    with torch.no_grad():
        for i, layer in enumerate(net.layers):
            h = layer(h)
            if i < len(net.layers) - 1:
                out += [(i, int(s), int(u)) for s, u in (h == 0).nonzero().tolist()]
                h = torch.relu(h)
    return out


def first_layer_grads(net, x, y):
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(x), y).backward()
    return net.layers[0].weight.grad.clone()


def differ(net0, net1, x, y) -> bool:
    """The paper's test: do relu'(0) = 0 and = 1 give different first-layer weight gradients?"""
    return bool((first_layer_grads(net0, x, y) - first_layer_grads(net1, x, y)).abs().sum() != 0)


def run(depth, init, dtype, X, Y, batch, verify, stop_at_first=False):
    """One run of the protocol. Returns (differing batch starts, zero info per differing batch,
    batches whose two gradients were compared, shortcut violations). ``stop_at_first``: stop at the
    first differing batch, as the notebook does."""
    torch.manual_seed(1000 * depth + init)
    net0 = MLP(depth).to(dtype)
    net1 = copy.deepcopy(net0)
    net1.relu_prime_0 = 1
    diffs, zinfo, compared, wrong = [], [], 0, 0
    for s0 in range(0, X.shape[0], batch):
        x, y = X[s0:s0 + batch].to(dtype), Y[s0:s0 + batch]
        z = relu_zeros(net0, x)
        if not z and not verify:
            continue
        compared += 1
        d = differ(net0, net1, x, y)
        if d and not z:
            wrong += 1
        if d:
            diffs.append(s0)
            zinfo.append(z)
            if stop_at_first and not verify:
                break
    return diffs, zinfo, compared, wrong


def chunk_with_zero(net0, net1, X, Y, s0, batch, z):
    """The smallest aligned chunk of batch ``s0`` in which relu input ``z`` is still exactly 0 and the
    two first-layer gradients still differ (a matrix product's rounding can depend on how many rows
    it has)."""
    layer, sample, unit = z
    i = s0 + sample
    for size in (1, 4, 16, 64, batch):
        a = s0 + (sample - sample % size) if size < batch else s0
        xs, ys = X[a:a + size], Y[a:a + size]
        if (layer, i - a, unit) in relu_zeros(net0, xs) and differ(net0, net1, xs, ys):
            return xs, ys, i - a
    return None


def mtcheck_chunk(depth, init, s0, z, X, Y, batch):
    torch.manual_seed(1000 * depth + init)
    net0 = MLP(depth)
    net1 = copy.deepcopy(net0)
    net1.relu_prime_0 = 1
    found = chunk_with_zero(net0, net1, X, Y, s0, batch, z)
    if found is None:
        return None
    xs, ys, _ = found
    res = {"samples": xs.shape[0]}
    for r0, net in ((0, net0), (1, net1)):
        t0 = time.perf_counter()
        rep = mtcheck.check(F.cross_entropy, model=net, batch=(xs, ys), wrt="parameters")
        res[r0] = rep
        res[f"t{r0}"] = time.perf_counter() - t0
    return res


def closer(r0, r1):
    """On the entries where the two float gradients differ, the largest distance of each to the exact
    gradient of the real function at the point (smooth there when the zero is rounding-induced)."""
    g0, g1 = np.asarray(r0.framework_jacobian), np.asarray(r1.framework_jacobian)
    J = np.asarray(r0.stratum_jacobian, dtype=np.float64)
    mask = g0 != g1
    if J.shape != g0.shape or not mask.any():
        return "-"
    e0, e1 = float(np.abs(g0 - J)[mask].max()), float(np.abs(g1 - J)[mask].max())
    who = "relu'(0)=1" if e1 < e0 else "relu'(0)=0" if e0 < e1 else "neither"
    return f"{who} ({int(mask.sum())} entries differ; error {e0:.1e} with 0, {e1:.1e} with 1)"


def exact_value(rep):
    """The exact value of the first relu input that the float program rounded to 0 (from the
    ROUNDING_BRANCH certificate), or None."""
    for e in (rep.certificate or {}).get("rounding", []):
        if e.get("framework") == "0" and "exact" in e:
            return Fraction(e["exact"])
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=1000, help="runs per depth (the paper: 1000); see --max-seconds")
    ap.add_argument("--max-seconds", type=float, default=240.0,
                    help="stop starting new runs after this many seconds (every depth gets the same number)")
    ap.add_argument("--runs-other", type=int, default=20,
                    help="runs per depth at 16 and 64 bits (each stops at its first differing batch, as the "
                         "notebook does); 32 bits gets every run and every batch")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--depths", default="1,2,3,5,6")
    ap.add_argument("--dtypes", default="16,32,64")
    ap.add_argument("--verify", type=int, default=2,
                    help="runs per (depth, precision) that differentiate every batch twice, to test the shortcut")
    ap.add_argument("--mtcheck", type=int, default=4, help="differing float32 batches checked by mtcheck")
    ap.add_argument("--exact-depths", default="1,3,6",
                    help="depths at which an exact tie is built (mtcheck.strategies.relu_kink) and both choices "
                         "are checked ('' to skip)")
    args = ap.parse_args(argv)
    depths = [int(d) for d in args.depths.split(",")]
    dts = args.dtypes.split(",")
    X, Y = load_mnist()
    t_start = time.perf_counter()
    counts = {(d, L): 0 for d in dts for L in depths}
    nruns = {d: 0 for d in dts}
    nbatches = {(d, L): 0 for d in dts for L in depths}
    compared = wrong = 0
    found32 = []                      # (depth, init, batch start, first zero)
    runs = 0
    for init in range(args.runs):
        if time.perf_counter() - t_start > args.max_seconds:
            break
        for L in depths:
            for d in dts:
                if d != "32" and init >= args.runs_other:
                    continue
                diffs, zinfo, c, w = run(L, init, DTYPES[d], X, Y, args.batch, init < args.verify,
                                         stop_at_first=(d != "32"))
                compared, wrong = compared + c, wrong + w
                counts[(d, L)] += bool(diffs)
                nbatches[(d, L)] += len(diffs)
                if d == "32":
                    found32 += [(L, init, s0, z[0]) for s0, z in zip(diffs, zinfo)]
        runs += 1
        for d in dts:
            nruns[d] += d == "32" or init < args.runs_other
        if runs % 20 == 0:
            print(f"{runs} runs, {time.perf_counter() - t_start:.0f} s", file=sys.stderr, flush=True)
    t_count = time.perf_counter() - t_start

    n_img = X.shape[0]
    scale = PAPER_IMAGES / n_img
    print(f"\nBertoin et al.'s table (runs whose first-layer weight gradient differs between relu'(0)=0 and "
          f"relu'(0)=1 on some batch of {args.batch}; per 1000 runs). Paper: GPU, MNIST's 60000 training images, "
          f"1000 runs. Here: CPU (torch {torch.__version__}), {n_img} real MNIST digits, runs per depth: "
          + ", ".join(f"{nruns[d]} at {d} bits" for d in dts) + f"; {t_count:.0f} s.")
    head = "| depth |" + "".join(f" {d} bits: paper | {d} bits: here |" for d in dts)
    if "32" in dts:
        head += f" 32 bits here, extrapolated to {PAPER_IMAGES} images |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for L in depths:
        cells = ""
        for d in dts:
            c, n = counts[(d, L)], nruns[d]
            cells += f" {PAPER[d].get(L, '-')} | {c}/{n} = {1000 * c / max(n, 1):.0f} |"
        if "32" in dts:
            lam = nbatches[("32", L)] / max(runs, 1)
            cells += f" {1000 * (1 - np.exp(-scale * lam)):.0f} ({nbatches[('32', L)]} differing batches) |"
        print(f"| {L} |{cells}")
    print(f"(shortcut check: {compared} batches differentiated under both choices, {wrong} of them differing "
          f"without a relu input exactly 0; the paper's 64-bit row was not computed, here it is)")

    if found32 and args.mtcheck:
        print("\nmtcheck on float32 batches whose gradients differ (cross-entropy, w.r.t. all parameters, the "
              "smallest aligned chunk of the batch that keeps the zero and the difference):")
        print("| depth | run | batch | relu (linear layer, unit) | samples | parameters | relu'(0)=0 (PyTorch) | relu'(0)=1 "
              "| exact value of the relu input | the zero is | the real function's relu' there | closer to the exact "
              "gradient | certificates | seconds |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        # spread the checks over the depths
        by_depth = {L: [f for f in found32 if f[0] == L] for L in depths}
        picked = []
        for k in range(max(map(len, by_depth.values()))):
            picked += [fs[k] for fs in by_depth.values() if k < len(fs)]
        picked = picked[:args.mtcheck]
        for L, init, s0, z in picked:
            res = mtcheck_chunk(L, init, s0, z, X, Y, args.batch)
            if res is None:
                print(f"| {L} | {init} | {s0 // args.batch} | {z[0]}, {z[2]} | - | - | - | - | - | the zero does "
                      f"not survive in a smaller chunk | - | - | - | - |")
                continue
            r0, r1 = res[0], res[1]
            v = exact_value(r0)
            kind = ("rounding-induced" if r0.verdict.name == "ROUNDING_BRANCH" else
                    "an exact tie" if r0.verdict.name in ("ASSOCIATED", "NOT_ASSOCIATED") else str(r0.verdict))
            val = "-" if v is None else f"{float(v):.3e}"
            branch = "-" if v is None else ("1 (relu'(0)=1 follows it)" if v > 0 else "0 (PyTorch's choice follows it)")
            print(f"| {L} | {init} | {s0 // args.batch} | {z[0]}, {z[2]} | {res['samples']} | {r0.n_inputs} | "
                  f"{r0.verdict} | {r1.verdict} | {val} | {kind} | {branch} | {closer(r0, r1)} | {r0.certificate_ok}, "
                  f"{r1.certificate_ok} | {res['t0']:.1f} + {res['t1']:.1f} |")
    if args.exact_depths:
        exact_ties(args, X, Y)
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")


def exact_ties(args, X, Y):
    """The other kind of zero: an exact tie of the real function, built with mtcheck.strategies.relu_kink
    (unit 0 of the first layer at relu's kink on sample 0), float32, default init otherwise."""
    from mtcheck.strategies import relu_kink

    print("\nExact ties (built): unit 0 of the first layer put exactly on relu's kink for sample 0 "
          "(mtcheck.strategies.relu_kink), float32, 4 MNIST digits, cross-entropy, w.r.t. all parameters:")
    print("| depth | how | gradients differ (PyTorch) | relu'(0)=0 | relu'(0)=1 | certificates | seconds |")
    print("|---|---|---|---|---|---|---|")
    for depth in [int(d) for d in args.exact_depths.split(",")]:
        torch.manual_seed(depth)
        net = MLP(depth)
        x, y = X[:4], Y[:4]
        tie = relu_kink(net, x, "layers.0", unit=0, sample=0)
        net0 = tie.model
        net1 = copy.deepcopy(net0)
        net1.relu_prime_0 = 1
        dif = differ(net0, net1, x, y)
        reps, secs = [], []
        for net in (net0, net1):
            t0 = time.perf_counter()
            reps.append(mtcheck.check(F.cross_entropy, model=net, batch=(x, y), wrt="parameters"))
            secs.append(time.perf_counter() - t0)
        how = "bias" if not tie.note else "one weight kept (" + tie.note.split("(")[1].split(")")[0] + ")"
        print(f"| {depth} | {tie.kind}: {how} | {'yes' if dif else 'no'} | {reps[0].verdict} | {reps[1].verdict} | "
              f"{reps[0].certificate_ok}, {reps[1].certificate_ok} | {secs[0]:.1f} + {secs[1]:.1f} |")


if __name__ == "__main__":
    main()
