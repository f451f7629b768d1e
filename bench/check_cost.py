"""Cost of one exact check against one forward+backward and one torch.autograd.gradcheck.

    python bench/check_cost.py [--repeat N] [--full]

Models: an MLP 64-128-128-10 and a LeNet-5-like CNN (1x28x28, two conv+relu+maxpool
stages), float64 with dyadic weights, at a tie-heavy input (a constant zero
background with a dyadic patch). All timings are taken in this one process and
printed as ratios to the forward+backward baseline. gradcheck also runs at a tie,
where finite differences straddle the kink: its verdict there is shown too.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import mtcheck
from mtcheck import zoo


def timeit(fn, repeat):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), out


def fwd_bwd(model, x):
    def run():
        xx = x.detach().requires_grad_()
        y = model(xx)
        for i in range(y.numel()):
            torch.autograd.grad(y.reshape(-1)[i], xx, retain_graph=True)
    return run


def gradcheck(model, x):
    def run():
        xx = x.detach().requires_grad_()
        try:
            torch.autograd.gradcheck(model, (xx,), eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True,
                                          fast_mode=False)
            return "passed"
        except Exception as e:  # noqa: BLE001
            return "FAILED (" + str(e).strip().splitlines()[0][:70] + ")"
    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--full", action="store_true", help="include the neighbouring-strata enumeration")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name in ("mlp", "lenet"):
        model, (x,) = zoo.ZOO[name]()
        mtcheck.check(model, x, neighbours=False, forward_mode=False)   # warm-up (imports, caches)
        t_base, _ = timeit(fwd_bwd(model, x), args.repeat)
        t_check, rep = timeit(lambda: mtcheck.check(model, x, neighbours=args.full, forward_mode=False), args.repeat)
        t_gc, gc = timeit(gradcheck(model, x), 1)
        rows.append((name, x.numel(), rep.pattern.n_ties, rep.verdict, t_base, t_check, t_gc, gc, rep.timings))
    print(f"{'model':7} {'n':>5} {'ties':>5} {'verdict':12} {'fwd+bwd':>9} {'check':>9} {'gradcheck':>10} "
          f"{'check/fb':>9} {'check/gc':>9}  gradcheck at the tie")
    for name, n, nt, v, tb, tc, tg, gc, _ in rows:
        print(f"{name:7} {n:5d} {nt:5d} {str(v):12} {tb*1e3:8.1f}ms {tc*1e3:8.1f}ms {tg*1e3:9.1f}ms "
              f"{tc/tb:9.1f} {tc/tg:9.2f}  {gc}")
    for name, *_, timings in rows:
        print(f"{name} check stages: " + ", ".join(f"{k} {v*1e3:.0f}ms" for k, v in timings.items()))


if __name__ == "__main__":
    main()
