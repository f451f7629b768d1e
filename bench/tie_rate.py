"""How often generated inputs sit on exact ties, layer by layer; and how well deep_ties does.

Part 1 (tie rate): for three reference models of ``mtcheck.zoo`` (an MLP, a LeNet-5-like CNN
and a small VGG-like CNN), the fraction of inputs with at least one exact tie in each
nonsmooth layer, by depth, for ``mtcheck.strategies.tie_inputs`` against Gaussian inputs and
uniform inputs (what generic autodiff fuzzers draw). A tie counts when it holds in exact
arithmetic *and* in PyTorch's float forward pass. (A max-pool after a relu ties for random
inputs too: two dead units give two zeros in one window.)

Part 2 (deep ties): ``deep_ties`` targets in relu MLPs (input 16, widths up to 256, depth up
to 4) and in the LeNet-like CNN: success rate (tie confirmed in the float forward pass) and
the time per target (median, worst). Targets are a nonsmooth layer (the element nearest its
kink is chosen) and, with ``--units``, also a specific unit drawn at random.

Part 3 (real weights, ``--only real``): models as users have them, PyTorch's default init
(``torch.manual_seed(0)``), float32, no rounding of weights: a relu MLP 64-256-256-256-10,
``zoo.ZOO["lenet-f32"]`` and ``zoo.ZOO["vgg-f32"]`` (3x32x32). Per nonsmooth layer: ``deep_ties``
success (an exact tie that PyTorch's float forward also sees, confirmed by a fresh trace) and
the seconds per request; and rounding-induced ties (``float_ties``: a float zero / equal floats
that exact arithmetic does not have), at float32 and float16, on the MLP and LeNet. Seeds are
``structured_inputs`` draws, as in the strategies.

Run::

    python bench/tie_rate.py              # default sizes, a few minutes on 2 cores
    python bench/tie_rate.py --only real --requests 10           # part 3
    python bench/tie_rate.py --only real --models mlp-f32 --kinds float
    python bench/tie_rate.py --quick      # smoke run
    python bench/tie_rate.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch
from hypothesis import HealthCheck, Phase, given, settings

from mtcheck import zoo
from mtcheck._synth import Program, Target, node_has_tie, synthesize
from mtcheck.strategies import tie_inputs

MODELS = {"mlp": zoo.mlp, "lenet": zoo.lenet, "small-vgg": zoo.small_vgg}


def _draw(strategy, n, seed):
    """n examples of a hypothesis strategy, reproducibly (derandomized, generate phase only)."""
    out = []

    @settings(max_examples=n, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(x):
        out.append(x)

    collect()
    return out[:n]


def _layer_ties(prog: Program, x):
    """Per nonsmooth node: tied in exact arithmetic and in the float forward pass."""
    ev_fw, ev_ex = prog.float_eval(x)
    return [node_has_tie(ev_ex, nd) and node_has_tie(ev_fw, nd) for nd in prog.nonsmooth]


def tie_rate(name, n, seed=0):
    model, (ex,) = MODELS[name](seed=seed)
    shape, dtype = tuple(ex.shape), ex.dtype
    prog = Program(model, torch.zeros(shape, dtype=dtype))
    g = torch.Generator().manual_seed(seed)
    sources = {
        "tie_inputs": lambda: _draw(tie_inputs(model, shape=shape, dtype=dtype), n, seed),
        "gaussian": lambda: [torch.randn(shape, generator=g, dtype=dtype) for _ in range(n)],
        "uniform": lambda: [torch.rand(shape, generator=g, dtype=dtype) * 2 - 1 for _ in range(n)],
    }
    rows = {}
    for src, make in sources.items():
        t0 = time.perf_counter()
        xs = make()
        gen_s = time.perf_counter() - t0
        ties = np.array([_layer_ties(prog, x) for x in xs], dtype=bool)
        rows[src] = {"cases": len(xs), "by_depth": ties.mean(axis=0).tolist(),
                     "all_layers": float(ties.all(axis=1).mean()), "seconds_per_case": gen_s / max(1, len(xs))}
    kinds = [prog.model.rules[nd].__class__.__name__ for nd in prog.nonsmooth]
    return {"model": name, "layers": [f"{prog.trace.nodes[nd].label}" for nd in prog.nonsmooth],
            "kinds": kinds, "sources": rows}


class _ReluMLP(torch.nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        for i, lay in enumerate(self.layers):
            x = lay(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


def _seed_point(shape, rng, bits=8):
    """A generic dyadic point (grid 2^-bits): no tie by accident."""
    k = rng.integers(-(1 << bits), (1 << bits) + 1, size=shape)
    return torch.tensor(k / (1 << bits), dtype=torch.float64)


ALL_TIMES: list = []
MISSES: list = []


def deep_tie_bench(configs, n_targets, units, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for label, model, shape in configs:
        prog = Program(model, torch.zeros(shape, dtype=torch.float64))
        times, ok, n, float_miss = [], 0, 0, 0
        for i in range(n_targets):
            depth = i % len(prog.nonsmooth)
            node = prog.nonsmooth[depth]
            x = _seed_point(shape, rng)
            group = None
            if units:
                ev = prog.evaluate(_exact(x))
                d = ev.discs[node][0]
                group = int(rng.choice(np.unique(d.group)))
            if group is None and node_has_tie(prog.evaluate(_exact(x)), node):
                continue      # the seed already ties there: not a synthesis
            r = synthesize(prog, x, [Target(node, None, group)], seed=int(rng.integers(0, 1 << 16)))
            n += 1
            times.append(r.seconds)
            ok += bool(r.ok)
            if r.exact and all(r.exact) and not all(r.in_float):
                float_miss += 1
            if not r.ok:
                MISSES.append(f"{label}, node {node}: {r.reason}")
        ALL_TIMES.extend(times)
        out.append({"config": label, "targets": n, "success": ok / n if n else 0.0,
                    "median_s": statistics.median(times) if times else 0.0, "worst_s": max(times) if times else 0.0,
                    "float_misses": float_miss, "mode": "unit" if units else "layer"})
    return out


def _exact(x):
    from mtcheck._exact import from_tensor

    return from_tensor(x).ravel()


def mlp_configs(widths, depths, seed=0):
    cfgs = []
    for w in widths:
        for d in depths:
            m = zoo.dyadic_(_ReluMLP((16,) + (w,) * d + (10,)), seed=seed, bits=3, scale=0.5).double().eval()
            cfgs.append((f"mlp 16-{w}x{d}", m, (1, 16)))
    return cfgs


# ---------------------------------------------------------------- part 3: real float weights

def real_mlp(dtype=torch.float32, seed=0):
    """relu MLP 64-256-256-256-10, PyTorch default init."""
    torch.manual_seed(seed)
    return _ReluMLP((64, 256, 256, 256, 10)).to(dtype).eval(), (1, 64)


def _real_model(name, dtype):
    if name == "mlp-f32":
        return real_mlp(dtype)
    m, (ex,) = zoo.ZOO[name]()
    return m.to(dtype).eval(), tuple(ex.shape)


REAL_MODELS = ("mlp-f32", "lenet-f32", "vgg-f32")


def real_bench(models, requests, kinds, seed=0):
    from mtcheck._synth import reset_synthesis_stats
    from mtcheck.float_ties import float_tie
    from mtcheck.strategies import structured_inputs

    rows = []
    for name in models:
        for kind, dtype in [("deep", torch.float32), ("float", torch.float32), ("float", torch.float16)]:
            if kind not in kinds or (kind == "float" and name == "vgg-f32"):
                continue
            model, shape = _real_model(name, dtype)
            prog = Program(model, torch.zeros(shape, dtype=dtype))
            seeds = _draw(structured_inputs(shape, dtype), requests * len(prog.nonsmooth), seed)
            for d, node in enumerate(prog.nonsmooth, 1):
                reset_synthesis_stats()
                ok, times, reasons = 0, [], []
                for i in range(requests):
                    x = seeds[(d - 1) * requests + i]
                    t0 = time.perf_counter()
                    if kind == "deep":
                        r = synthesize(prog, x, [Target(node)], seed=i)
                    else:
                        r = float_tie(prog, x, Target(node), seed=i)
                    times.append(time.perf_counter() - t0)
                    ok += bool(r.ok)
                    if not r.ok:
                        reasons.append(r.reason)
                row = {"model": name, "dtype": str(dtype).replace("torch.", ""),
                       "kind": "exact tie (deep_ties)" if kind == "deep" else "float-only tie (float_ties)",
                       "depth": d, "layer": prog.trace.nodes[node].label, "requests": requests,
                       "hits": ok, "success": ok / requests, "median_s": statistics.median(times),
                       "worst_s": max(times), "misses": reasons[:3]}
                rows.append(row)
                print(f"{name:10s} {row['dtype']:8s} {row['kind']:28s} d{d} {row['layer']:28s} "
                      f"{ok:>3}/{requests:<3} {100 * ok / requests:5.0f}%  median {row['median_s']:.2f} s  "
                      f"worst {row['worst_s']:.2f} s" + (f"  miss: {reasons[0][:70]}" if reasons else ""))
                sys.stdout.flush()
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--cases", type=int, default=None, help="inputs per model and source")
    ap.add_argument("--targets", type=int, default=None, help="deep_ties targets per configuration")
    ap.add_argument("--units", action="store_true", help="also target random units (not the nearest)")
    ap.add_argument("--json", default=None, help="write the numbers to this file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=("rate", "deep", "real"), default=None, help="run one part only")
    ap.add_argument("--requests", type=int, default=10, help="part 3: requests per layer")
    ap.add_argument("--models", default=",".join(REAL_MODELS), help="part 3: comma-separated real-weight models")
    ap.add_argument("--kinds", default="deep,float", help="part 3: deep (exact ties), float (float-only ties)")
    a = ap.parse_args(argv)
    cases = a.cases or (4 if a.quick else 12)
    targets = a.targets or (4 if a.quick else 10)
    torch.set_num_threads(1)
    report = {"tie_rate": [], "deep_ties": [], "real_weights": []}

    if a.only == "real":
        print(f"== real weights (default init, seed 0): {a.requests} requests per layer; success = the tie "
              "confirmed by a fresh trace of PyTorch's float forward, and exactly (exact ties: the exact "
              "discriminant is 0; float-only ties: it is not)")
        report["real_weights"] = real_bench(a.models.split(","), 2 if a.quick else a.requests,
                                            a.kinds.split(","), a.seed)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(report, f, indent=1)
        return

    if a.only == "deep":
        MODELS_RUN = []
    else:
        MODELS_RUN = list(MODELS)
    if MODELS_RUN:
        print(f"== tie rate: fraction of inputs with >= 1 exact tie (exact and in float) per nonsmooth layer "
              f"({cases} inputs per source)")
    for name in MODELS_RUN:
        t0 = time.perf_counter()
        r = tie_rate(name, cases, a.seed)
        report["tie_rate"].append(r)
        print(f"\n{name}: nonsmooth layers by depth: {', '.join(r['layers'])}  ({time.perf_counter() - t0:.0f} s)")
        head = "source".ljust(12) + "".join(f"d{d + 1:<6}" for d in range(len(r["layers"]))) + "all layers  s/case"
        print(head)
        for src, row in r["sources"].items():
            print(src.ljust(12) + "".join(f"{100 * v:5.0f}% " for v in row["by_depth"])
                  + f"{100 * row['all_layers']:6.0f}%    {row['seconds_per_case']:.2f}")
        sys.stdout.flush()

    widths = (32, 256) if a.quick else (32, 64, 128, 256)
    depths = (1, 4) if a.quick else (1, 2, 3, 4)
    cfgs = mlp_configs(widths, depths, a.seed)
    lenet, _ = zoo.lenet(seed=a.seed)
    cfgs.append(("lenet", lenet, (1, 1, 28, 28)))
    modes = [] if a.only == "rate" else [False, True] if a.units else [False]
    for units in modes:
        print(f"\n== deep_ties: {'a random unit' if units else 'a layer (nearest unit)'} per target, "
              f"{targets} targets per configuration; success = tie exact and in the float forward pass")
        print("config".ljust(18) + "targets  success  median_s  worst_s  float_misses")
        rows = deep_tie_bench(cfgs, targets, units, a.seed)
        for row in rows:
            print(row["config"].ljust(18) + f"{row['targets']:>7}  {100 * row['success']:6.1f}%  "
                  f"{row['median_s']:8.3f}  {row['worst_s']:7.3f}  {row['float_misses']:>5}")
        allt = sum(r["targets"] for r in rows)
        succ = sum(r["success"] * r["targets"] for r in rows)
        ts = sorted(ALL_TIMES)
        print(f"overall: {succ:.0f}/{allt} = {100 * succ / max(1, allt):.1f}%; time per target: "
              f"median {statistics.median(ts):.3f} s, worst {ts[-1]:.3f} s")
        ALL_TIMES.clear()
        for m in MISSES:
            print(f"  miss: {m}")
        MISSES.clear()
        report["deep_ties"].extend(rows)
        sys.stdout.flush()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
