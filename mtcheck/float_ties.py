"""Rounding-induced ties on purpose, and the per-layer count of tie kinds.

Two kinds of tie matter in float32 practice:

- an **exact tie**: the exact value of a discriminant (a relu's input, the difference of two
  entries of a max window) is 0, and PyTorch's float forward sees the same 0
  (:func:`mtcheck._synth.synthesize`, :func:`mtcheck.strategies.deep_ties`);
- a **float-only tie** (rounding-induced): PyTorch's float forward computes an exact float 0
  (or two equal floats in a window) where exact arithmetic has a nonzero value. The framework
  then takes a branch that exact arithmetic does not, and ``mtcheck.check`` reports
  ``ROUNDING_BRANCH`` naming the node with both values.

:func:`float_tie` builds inputs of the second kind: the float discriminant of a chosen layer is
a black box replayed op by op from the trace (the same ATen calls, the same bits), driven to an
exact float 0 by Newton steps and a bisection over the float values of one input coordinate,
then confirmed: a fresh trace sees the tie, and the exact value there is nonzero (decided in
rationals, never with a tolerance). A relu fed by a float32 convolution goes to
:func:`mtcheck._fma_ties.fma_float_tie` first: PyTorch's FMA chain ends at 0.0 only when its last
product is a float, which that construction arranges (the search here never does).
:func:`float_ties` is the Hypothesis strategy.

:func:`layer_tie_kinds` reads a report and says, per nonsmooth layer, whether it tied exactly,
only in float, or not at all; :class:`LayerTieCounter` counts those over many reports (the
fixture's ``--mtcheck-show-statistics`` and the campaign status use it).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from ._exact import from_tensor
from ._synth import Program, Target, _node_leaves, _upto_model

TIE_KINDS = ("exact", "float", "none")

_STATS: Counter = Counter()
_TIMES: list = []


def float_tie_stats() -> dict:
    """Counters of :func:`float_tie` since the last reset: requested, hit, miss, evals, median_s, worst_s."""
    d = dict(_STATS)
    if _TIMES:
        ts = sorted(_TIMES)
        d["median_s"] = ts[len(ts) // 2]
        d["worst_s"] = ts[-1]
    return d


def reset_float_tie_stats() -> None:
    _STATS.clear()
    _TIMES.clear()


@dataclass
class FloatTieResult:
    input: torch.Tensor | None
    ok: bool
    target: Target | None = None          # node, discriminant label, element group
    node_label: str = ""
    exact_value: object = None            # the exact discriminant there (an fmpq, nonzero on success;
                                          # None when it is irrational, an enclosure excluding 0)
    float_value: float | None = None      # the framework's (0.0 on success)
    seconds: float = 0.0
    evals: int = 0                        # float forward replays
    reason: str = ""
    exact_tie_instead: bool = False       # the float zero was an exact zero too (not rounding-induced)

    def __bool__(self) -> bool:
        return self.ok


# ---------------------------------------------------------------- the float discriminant, as a black box

def _replay(prog: Program, x: torch.Tensor, upto: int, grad: bool):
    from ._synth import _replay_float

    return _replay_float(prog.trace, x, upto, grad)


class _Phi:
    """phi(x): one float discriminant of the node, as PyTorch computes it (a float64 number; 0.0
    means a float tie). For a relu-like element, its float input minus the kink; for a window,
    the difference of two of its entries."""

    def __init__(self, prog, node, ref_a, ia, ref_b=None, ib=None, const=0.0):
        self.prog, self.node = prog, node
        self.ref_a, self.ia, self.ref_b, self.ib, self.const = ref_a, ia, ref_b, ib, const
        self.evals = 0

    def _get(self, vals, ref, x):
        if ref.kind == "in":
            return x
        if ref.kind == "const":
            return self.prog.trace.consts[ref.index]
        return vals[ref]

    def value_t(self, x, grad=False):
        vals = _replay(self.prog, x, self.node, grad)
        self.evals += 1
        a = self._get(vals, self.ref_a, x).reshape(-1)[self.ia]
        if self.ref_b is not None:
            return a.to(torch.float64) - self._get(vals, self.ref_b, x).reshape(-1)[self.ib].to(torch.float64)
        return a.to(torch.float64) - self.const

    def __call__(self, x) -> float:
        return float(self.value_t(x))

    def grad(self, x):
        xg = x.detach().clone().requires_grad_(True)
        v = self.value_t(xg, grad=True)
        if not v.requires_grad:
            return float(v), torch.zeros_like(xg, dtype=torch.float64)
        (g,) = torch.autograd.grad(v, xg)
        return float(v.detach()), g.to(torch.float64)


def _candidates(prog, node, ev, x, rng, n=10):
    """(_Phi, Target) candidates of the node, nearest their kink in float first."""
    from .trace import Ref

    vals = _replay(prog, x, node, False)
    leaves = _node_leaves(prog.trace.nodes[node])

    def get(ref):
        if ref.kind == "in":
            return x
        if ref.kind == "const":
            return prog.trace.consts[ref.index]
        return vals[ref]

    out = []
    for disc in ev.discs[node]:
        if disc.a is None or not isinstance(leaves[disc.a], Ref):
            continue
        A = get(leaves[disc.a]).detach().reshape(-1).to(torch.float64).numpy()
        if disc.max_type:
            # windows: the top two float entries, nearest first (already tied windows skipped)
            groups = {}
            for i, g in enumerate(disc.group.tolist()):
                groups.setdefault(g, set()).update((int(disc.idx_a[i]), int(disc.idx_b[i])))
            scored = []
            for g, idx in groups.items():
                idx = np.array(sorted(idx))
                w = A[idx]
                order = np.argsort(-w, kind="stable")
                if idx.size < 2:
                    continue
                gap = w[order[0]] - w[order[1]]
                if gap > 0 and w[order[1]] != 0:
                    scored.append((gap / max(abs(w[order[0]]), 1e-30), g, int(idx[order[0]]), int(idx[order[1]])))
            scored.sort()
            for _, g, i1, i2 in scored[:n]:
                out.append((_Phi(prog, node, leaves[disc.a], i1, leaves[disc.a], i2), Target(node, disc.label, g)))
        else:
            if disc.b is not None and isinstance(leaves[disc.b], Ref):
                B = get(leaves[disc.b]).detach().reshape(-1).to(torch.float64).numpy()
                d = A[np.asarray(disc.idx_a)] - B[np.asarray(disc.idx_b)]
                consts = None
            else:
                consts = np.array([float(c) for c in (disc.const.tolist() if isinstance(disc.const, np.ndarray)
                                                      else [disc.const] * disc.values.size)])
                d = A[np.asarray(disc.idx_a)] - consts
            nz = np.nonzero(d != 0)[0]
            order = nz[np.argsort(np.abs(d[nz]), kind="stable")][:n]
            for i in order.tolist():
                if consts is None:
                    phi = _Phi(prog, node, leaves[disc.a], int(disc.idx_a[i]), leaves[disc.b], int(disc.idx_b[i]))
                else:
                    phi = _Phi(prog, node, leaves[disc.a], int(disc.idx_a[i]), const=float(consts[i]))
                out.append((phi, Target(node, disc.label, int(disc.group[i]))))
    return out          # nearest first within each discriminant


_BISECTIONS = 6        # lines (coordinates) bisected per element
_CLIMB = 500           # random-descent moves per element


def _to(v: float, dtype):
    return torch.tensor(v, dtype=torch.float64).to(dtype)


def _next(v: torch.Tensor, direction: float):
    return torch.nextafter(v, torch.tensor(direction, dtype=v.dtype))


def _bisect_coordinate(phi, x, j, budget, rng):
    """Search the float values of coordinate ``j`` of ``x`` for phi == 0.0 exactly: bracket the
    sign change, bisect over the float grid, look at the floats around the crossing. Returns
    (x with phi 0.0, or None, evaluations used)."""
    flat = x.reshape(-1)
    dtype = x.dtype
    used = 0
    v0 = float(phi(x))
    used += 1
    if v0 == 0.0:
        return x, used
    val, g = phi.grad(x)
    used += 1
    gj = float(g.reshape(-1)[j])
    if gj == 0.0 or not np.isfinite(gj):
        return None, used
    step = -v0 / gj
    lo_x = float(flat[j])

    def at(val_j):
        y = x.clone()
        y.reshape(-1)[j] = val_j
        return y

    hi_v = _to(lo_x + step * 1.5, dtype)
    hi = at(hi_v)
    f_hi = phi(hi)
    used += 1
    k = 0
    while f_hi != 0.0 and (f_hi > 0) == (v0 > 0) and k < 6:
        step *= 4
        hi_v = _to(lo_x + step, dtype)
        hi = at(hi_v)
        f_hi = phi(hi)
        used += 1
        k += 1
    if f_hi == 0.0:
        return hi, used
    if (f_hi > 0) == (v0 > 0):
        return None, used
    a_v, b_v = flat[j].clone(), hi_v.clone()
    fa, fb = v0, f_hi
    while used < budget:
        mid = _to((float(a_v) + float(b_v)) / 2, dtype)
        if mid == a_v or mid == b_v:
            break
        fm = phi(at(mid))
        used += 1
        if fm == 0.0:
            return at(mid), used
        if (fm > 0) == (fa > 0):
            a_v, fa = mid, fm
        else:
            b_v, fb = mid, fm
    # a and b are neighbouring floats with phi of opposite signs: no float zero on this line;
    # the floats a little further on either side sometimes round to one (phi is not monotone)
    for base, direction in ((a_v, -np.inf if float(b_v) > float(a_v) else np.inf),
                            (b_v, np.inf if float(b_v) > float(a_v) else -np.inf)):
        v = base
        for _ in range(4):
            v = _next(v, direction)
            if used >= budget:
                break
            fv = phi(at(v))
            used += 1
            if fv == 0.0:
                return at(v), used
    return None, used


def float_tie(program, x0: torch.Tensor, target=None, *, depth: int | None = None, seed: int = 0,
              max_evals: int = 3000, max_seconds: float = 20.0) -> FloatTieResult:
    """An input near ``x0`` where PyTorch's float forward ties one element of a nonsmooth layer
    that exact arithmetic does not tie (a rounding-induced tie).

    ``program``: a :class:`mtcheck._synth.Program` (or a one-input module, traced at ``x0``);
    ``target``: a :class:`Target` (its group may be None: the element nearest its kink in float),
    or ``depth`` (1-based among the nonsmooth nodes). Confirmed by a fresh trace (the float tie)
    and in exact rationals (the exact value there is nonzero). Never raises for a miss:
    ``result.ok`` is False and ``result.reason`` says why.
    """
    t0 = time.perf_counter()
    prog = program if isinstance(program, Program) else Program(program, x0)
    rng = np.random.default_rng(seed)
    _STATS["requested"] += 1
    x0 = x0.detach().clone().to(prog.dtype).reshape(prog.shape)
    res = None
    for attempt in range(3):
        # the seed, then the seed plus a little noise: a structured seed (zero background,
        # constant patches) has windows whose entries are all dead or all equal, which no float
        # rounding separates; a generic point near it has windows with two live entries
        start = x0 if attempt == 0 else (x0.to(torch.float64) + 0.25 * attempt * torch.from_numpy(
            rng.standard_normal(tuple(x0.shape)))).to(prog.dtype)
        res = _float_tie_once(prog, start, target, depth, rng, max_evals, t0 + max_seconds * (attempt + 1) / 3)
        if res.ok:
            break
    return _done(res, t0)


def _float_tie_once(prog, x0, target, depth, rng, max_evals, deadline) -> FloatTieResult:
    t0 = time.perf_counter()
    max_seconds = deadline - t0
    if target is None:
        if not prog.nonsmooth:
            raise ValueError("the program has no nonsmooth node")
        d = depth if depth is not None else 1 + int(rng.integers(0, len(prog.nonsmooth)))
        target = Target(prog.nonsmooth[d - 1])
    elif not isinstance(target, Target):
        target = Target(*target)
    res = FloatTieResult(None, False, target, prog.trace.nodes[target.node].label)
    node = target.node
    model = _upto_model(prog, node)
    x = x0.detach().clone().to(prog.dtype).reshape(prog.shape)
    if _fma_first(prog, x, target, res, rng, deadline):
        return res
    ev = model.evaluate([from_tensor(x)])
    cands = [(p, t) for p, t in _candidates(prog, node, ev, x, rng)
             if (target.label is None or t.label == target.label) and (target.group is None or t.group == target.group)]
    if not cands:
        res.reason = f"node {node}: no element with a nonzero float discriminant to move"
        return res
    evals = 0
    exact_zero = 0
    for phi, t in cands:
        if evals >= max_evals or time.perf_counter() - t0 > max_seconds:
            break
        v, g = phi.grad(x)
        evals += 1
        gf = g.reshape(-1)
        if not torch.isfinite(gf).all() or not (gf != 0).any():
            continue
        # Newton in float64 towards phi = 0, rounded to the dtype
        y = x
        for _ in range(3):
            gg = float((gf * gf).sum())
            if gg == 0.0:
                break
            y_new = (y.reshape(-1).to(torch.float64) - v * gf / gg).to(prog.dtype).reshape(prog.shape)
            if not torch.isfinite(y_new).all():
                break
            y = y_new
            v, g = phi.grad(y)
            evals += 1
            gf = g.reshape(-1)
            if v == 0.0 or not (gf != 0).any():
                break
        order = torch.argsort(gf.abs(), descending=True).tolist()
        tries = [j for j in order[:8] if gf[j] != 0]
        for attempt in range(_BISECTIONS):
            if evals >= max_evals or time.perf_counter() - t0 > max_seconds or not tries:
                break
            j = tries[attempt % len(tries)]
            base = y
            if attempt >= len(tries):
                # another rounding realisation: one ulp on another coordinate
                base = y.clone()
                k = int(rng.integers(0, base.numel()))
                bf = base.reshape(-1)
                bf[k] = _next(bf[k], np.inf if rng.random() < 0.5 else -np.inf)
            hit, used = _bisect_coordinate(phi, base, j, min(120, max_evals - evals), rng)
            evals += used
            if hit is None:
                continue
            out = _confirm_float_only(prog, model, hit, phi, t, res)
            if out is True:
                res.evals = evals
                return res
            if out == "exact":
                exact_zero += 1
        # the float discriminant jumps over 0 along every line tried (float16 and deep layers:
        # the upstream values move in coarse float steps): a random descent of |phi| by moves of
        # a few ulps on the coordinates it depends on most, which reaches the values between
        movable = [j for j in order[:256] if gf[j] != 0]
        if not movable:
            continue
        cur, fcur = y, abs(phi(y))
        evals += 1
        budget = min(max_evals - evals, _CLIMB)
        for _ in range(max(budget, 0)):
            if time.perf_counter() - t0 > max_seconds:
                break
            cand = cur.clone()
            cf = cand.reshape(-1)
            for _m in range(int(rng.integers(1, 3))):
                j = movable[int(rng.integers(0, len(movable)))]
                direction = np.inf if rng.random() < 0.5 else -np.inf
                for _k in range(int(rng.integers(1, 4))):
                    cf[j] = _next(cf[j], direction)
            fv = phi(cand)
            evals += 1
            if fv == 0.0:
                out = _confirm_float_only(prog, model, cand, phi, t, res)
                if out is True:
                    res.evals = evals
                    _STATS["climb_hits"] += 1
                    return res
                if out == "exact":
                    exact_zero += 1
                continue
            if abs(fv) <= fcur:
                cur, fcur = cand, abs(fv)
    res.evals = evals
    res.reason = ("only exact zeros found (exact ties, not rounding-induced)" if exact_zero else
                  f"no float zero of node {node} found in {evals} float evaluations")
    return res


def _fma_first(prog, x, target, res, rng, deadline) -> bool:
    """A relu fed by a float32 convolution: the short-last-term construction of
    :func:`mtcheck._fma_ties.fma_float_tie` first (the generic search below cannot make PyTorch's
    FMA chain end at 0.0: its last product is rarely a float). True when ``res`` holds a
    confirmed float-only tie."""
    from ._fma_ties import fma_float_applies, fma_float_tie
    from ._synth import _NO_REVERSE

    if not fma_float_applies(prog, target):
        return False          # (no draw from rng: the other searches see the same stream)
    try:
        return fma_float_tie(prog, x, target, res, seed=int(rng.integers(0, 1 << 16)), deadline=deadline)
    except _NO_REVERSE:
        return False
    except Exception:  # noqa: BLE001 - a heuristic construction: the generic search still runs
        _STATS["fma_error"] += 1
        return False


def _confirm_float_only(prog, model, x, phi, t, res):
    """The float tie seen by a fresh trace, and a nonzero exact value at the same element."""
    from ._synth import _tied

    ev = model.evaluate([from_tensor(x)])
    tied_exact = _tied(ev, t)
    ev_fw, ev_ex = prog.float_eval(x)
    if not _tied(ev_fw, t):
        _STATS["probe_disagree"] += 1
        return False
    if tied_exact or _tied(ev_ex, t):
        res.exact_tie_instead = True
        return "exact"
    res.input, res.ok, res.target = x, True, t
    for disc in ev_ex.discs[t.node]:
        if disc.label != t.label:
            continue
        sel = np.nonzero(disc.group == t.group)[0]
        if sel.size:
            vals = disc.values[sel]
            from ._ball import is_ball

            if is_ball(vals):
                res.exact_value = None      # irrational: its enclosure excludes 0 (the case is decided)
            elif disc.max_type:
                res.exact_value = max(vals.tolist())
            else:
                res.exact_value = vals[0]
            break
    res.float_value = 0.0
    return True


def _done(res, t0):
    res.seconds = time.perf_counter() - t0
    _TIMES.append(res.seconds)
    _STATS["hit" if res.ok else "miss"] += 1
    _STATS["evals"] += res.evals
    return res


# ---------------------------------------------------------------- the strategy

def float_ties(program, *, shape=None, dtype=None, depths=None, grid_bits: int = 2, max_abs: float = 2,
               with_result: bool = False):
    """Inputs where PyTorch's float forward ties one element of a chosen nonsmooth layer that
    exact arithmetic does not (``mtcheck.check`` reports ``ROUNDING_BRANCH`` there).

    Draws a structured seed (:func:`mtcheck.strategies.structured_inputs`) and a layer
    (``depths``: 1-based among the nonsmooth nodes; default all), then :func:`float_tie`.
    Misses are rejected (Hypothesis ``assume``) and counted (:func:`float_tie_stats`).
    ``with_result=True`` yields ``(tensor, FloatTieResult)``.
    """
    from ._gen import _ProgramRef

    ref = _ProgramRef(program, shape, dtype)
    if not ref.has_program:
        raise TypeError("float_ties needs a program (a NetSpec, or a module with shape=)")
    return _float_strategy(ref, depths, grid_bits, max_abs, with_result)


def _float_strategy_impl(draw, ref, depths, grid_bits, max_abs, with_result):
    from hypothesis import assume
    from hypothesis import strategies as st

    from ._gen import _event, structured_inputs

    prog = ref.program()
    if not prog.nonsmooth:
        assume(False)
    allowed = [d for d in (depths or range(1, len(prog.nonsmooth) + 1)) if 1 <= d <= len(prog.nonsmooth)]
    if not allowed:
        raise ValueError(f"depths {depths} outside 1..{len(prog.nonsmooth)}")
    d = draw(st.sampled_from(allowed))
    x = draw(structured_inputs(ref.shape, ref.dtype, grid_bits, max_abs))
    seed = draw(st.integers(0, 255))
    r = float_tie(prog, x, Target(prog.nonsmooth[d - 1]), seed=seed)
    _event(f"float-only tie at depth {d}: {'hit' if r.ok else 'miss'}")
    assume(r.ok)
    return (r.input, r) if with_result else r.input


def _float_strategy(ref, depths, grid_bits, max_abs, with_result):
    from hypothesis import strategies as st

    @st.composite
    def s(draw):
        return _float_strategy_impl(draw, ref, depths, grid_bits, max_abs, with_result)

    return s()


def both_tie_kinds(program, *, shape=None, dtype=None, grid_bits: int = 2, max_abs: float = 2,
                   kinds=("structured", "exact tie", "float-only tie"), max_seconds: float = 20.0):
    """Inputs of three kinds, never rejected: a structured input as drawn, one moved onto an
    exact tie of a drawn layer (``deep_ties``' synthesis), or onto a float-only tie of a drawn
    layer (:func:`float_tie`); a miss keeps the structured input. Yields ``(tensor, kind)`` with
    kind ``"structured"``, ``"exact tie"`` or ``"float-only tie"`` (the kind asked for; what the
    input really has is in the check's report: :func:`layer_tie_kinds`). ``kinds`` restricts the
    kinds drawn; ``max_seconds`` bounds one float-only search (:func:`float_tie`)."""
    if not (isinstance(max_seconds, (int, float)) and max_seconds > 0):
        raise ValueError(f"max_seconds must be a positive number of seconds, got {max_seconds!r}")
    from ._gen import _ProgramRef

    ref = _ProgramRef(program, shape, dtype)
    if not ref.has_program:
        raise TypeError("both_tie_kinds needs a program (a NetSpec, or a module with shape=)")
    from hypothesis import strategies as st

    from ._gen import _event, structured_inputs
    from ._synth import synthesize

    @st.composite
    def s(draw):
        x = draw(structured_inputs(ref.shape, ref.dtype, grid_bits, max_abs))
        kind = draw(st.sampled_from(list(kinds)))
        try:
            prog = ref.program()
        except ValueError:          # the program branches in Python: no synthesis, the drawn input
            return x, "structured"
        if kind == "structured" or not prog.nonsmooth:
            return x, "structured"
        d = draw(st.integers(1, len(prog.nonsmooth)))
        seed = draw(st.integers(0, 255))
        if kind == "exact tie":
            r = synthesize(prog, x, [Target(prog.nonsmooth[d - 1])], seed=seed)
        else:
            r = float_tie(prog, x, Target(prog.nonsmooth[d - 1]), seed=seed, max_seconds=max_seconds)
        _event(f"{kind} at depth {d}: {'hit' if r.ok else 'miss'}")
        if not r.ok or r.input is None:
            return x, "structured"
        return r.input.reshape(ref.shape), kind

    return s()


# ---------------------------------------------------------------- reading reports

def layer_tie_kinds(report) -> list:
    """Per nonsmooth layer of a report: ``{"depth", "node", "kind", "tie"}`` with ``tie`` one of
    ``"exact"`` (an exact tie there: exact discriminant 0; the float forward may or may not see
    it), ``"float"`` (no exact tie, but PyTorch's float forward has one: a rounding-induced tie,
    read from the ``ROUNDING_BRANCH`` certificate's exact and framework values) or ``"none"``."""
    pattern = getattr(report, "pattern", None) or []
    float_only = set()
    cert = getattr(report, "certificate", None)
    if isinstance(cert, dict) and cert.get("verdict") == "ROUNDING_BRANCH":
        for e in cert.get("rounding", []):
            if str(e.get("framework")) == "0" and str(e.get("exact")) != "0":
                float_only.add(str(e.get("node", "")).split(" at ")[0])
    rounding = {str(r).split(" at ")[0] for r in (getattr(report, "rounding_nodes", None) or [])}
    out = []
    for depth, e in enumerate(pattern, 1):
        if e.counts.get("tie", 0):
            tie = "exact"
        elif e.label in float_only:
            tie = "float"
        else:
            tie = "none"
        out.append({"depth": depth, "node": e.label, "kind": e.kind, "tie": tie,
                    "rounding": e.label in rounding})
    return out


@dataclass
class LayerTieCounter:
    """Per nonsmooth layer (depth and node label): how many examples tied exactly, only in
    float, or not at all."""

    layers: dict = field(default_factory=dict)      # (depth, node) -> Counter of TIE_KINDS

    def add(self, report_or_kinds) -> None:
        kinds = report_or_kinds if isinstance(report_or_kinds, list) else layer_tie_kinds(report_or_kinds)
        for e in kinds:
            key = (int(e["depth"]), str(e["node"]))
            self.layers.setdefault(key, Counter())[e["tie"]] += 1

    def as_dict(self) -> list:
        return [{"depth": d, "node": n, **{k: int(c.get(k, 0)) for k in TIE_KINDS}}
                for (d, n), c in sorted(self.layers.items())]

    def lines(self) -> list:
        return [f"depth {e['depth']} {e['node']}: exact {e['exact']}, float-only {e['float']}, none {e['none']}"
                for e in self.as_dict()]
