"""The OpInfo sweep: PyTorch's own op database, its samples moved onto ties, judged by mtcheck.

``torch.testing._internal.common_methods_invocations.op_db`` lists every op PyTorch tests,
each with ``sample_inputs(device, dtype)``. Those samples avoid ties (that is why
``gradcheck`` passes on them). The sweep takes, for every entry with a real
floating-point float64 sample, its first few small samples, moves their float64
tensors onto ties by several strategies, and runs ``mtcheck.check(fn, *tensors,
neighbours=False)`` where ``fn`` binds the sample's other arguments. Every check ends in
one outcome:

* ``verdict``: a verdict (``SMOOTH_OK``, ``ASSOCIATED``, ... ; ``UNKNOWN`` is recorded but
  not counted as decided);
* ``unsupported`` / ``outside`` / ``nonfinite`` / ``input``: mtcheck's documented errors
  (:mod:`mtcheck.errors`), with the ATen op and the reason;
* ``crash``: any other exception out of ``mtcheck.check``: an internal crash, a bug of
  mtcheck (the traceback's last lines are kept);
* ``timeout``: the per-op time budget ran out inside the check.

A strategy whose moved input the op itself rejects (torch raises, or the output is
not finite) is recorded as ``invalid`` and not counted. An op is *decided* when at least
one of its checks gives a decided verdict.

Use::

    python properties/opinfo_sweep.py --max-ops 0 --output opinfo.json    # or: mtcheck opinfo
    mtcheck opinfo --output opinfo.json --corpus opinfo-corpus           # + every finding as a corpus case
    mtcheck opinfo --cases-from opinfo.json --corpus opinfo-corpus       # the cases of a saved sweep only
    from opinfo_sweep import sweep; res = sweep(ops=["dot", "mean"])

The summary line reads ``decided X/Y ops (Z%), N internal crashes``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field

STRATEGIES = ("grid", "repeat", "zeros", "kinks", "equal_rows")
DECIDED = ("SMOOTH_OK", "ASSOCIATED", "SMOOTH_WRONG", "NOT_ASSOCIATED", "NONLINEAR_VJP", "ROUNDING_BRANCH")
BUGS = ("SMOOTH_WRONG", "NOT_ASSOCIATED", "NONLINEAR_VJP")

MAX_NUMEL = 128         # float elements of one sample (inputs); larger ones only when no sample is smaller
MAX_NUMEL_LARGE = 1280  # ... and never more than this
MAX_OUT_NUMEL = 1024    # float elements of the output (one reverse pass per element, batched)
MAX_SAMPLES_TRIED = 6   # samples tried per op until ``samples`` of them give the op an input it accepts
SAMPLES_SCANNED = 48    # samples generated per op (the small ones among them are used, varied options first)

# kinks of ops whose kink is not at 0 and not a difference of two arguments
KINKS = {
    "nn.functional.hardtanh": (-1.0, 1.0), "nn.functional.relu6": (0.0, 6.0),
    "nn.functional.hardshrink": (-0.5, 0.5), "nn.functional.softshrink": (-0.5, 0.5),
    "nn.functional.hardsigmoid": (-3.0, 3.0), "nn.functional.hardswish": (-3.0, 3.0, 0.0),
    "nn.functional.smooth_l1_loss": (1.0, -1.0, 0.0), "nn.functional.huber_loss": (1.0, -1.0, 0.0),
    "clamp": (0.0,), "clip": (0.0,),
}


def load_op_db():
    """The OpInfo database (imports ``expecttest``; raises ImportError without it)."""
    from torch.testing._internal.common_methods_invocations import op_db

    return op_db


def op_key(op) -> str:
    return op.name + (f".{op.variant_test_name}" if op.variant_test_name else "")


# ------------------------------------------------------------------ moving samples onto ties

def _scalars(sample) -> list:
    """The sample's numeric (non-tensor) float arguments: candidate kinks (clamp bounds, thresholds)."""
    import torch.utils._pytree as pytree

    out = []
    for v in pytree.tree_leaves((sample.args, sample.kwargs)):
        if isinstance(v, float) and math.isfinite(v) and not isinstance(v, bool):
            out.append(v)
    return out


def _grid(x):
    import torch

    return torch.round(x).clamp(-8, 8)


def move(strategy: str, tensors: list, kinks=()) -> list:
    """The float64 tensors of a sample moved onto ties by ``strategy``.

    grid: rounded to integers in [-8, 8] (values repeat, zeros appear); repeat: consecutive
    pairs of entries made equal; zeros: every other entry 0; kinks: every other entry set
    to one of the op's kinks (its scalar arguments, known kinks, 0); equal_rows: every row
    (index along dim 0) equal to the first, and every later tensor of the first one's
    shape equal to the first (equal operands). When none of these gives a verdict (the op rejects
    the input, as a singular matrix, or mtcheck refuses it there, as a logarithm of 0 or a step
    function on its jumps), in turn: fine, a grid of 1/16, ties or not; positive, the ``grid``
    values made positive, ``|g| + 1``, so values still repeat; raw, the sample as PyTorch's tests
    draw it, where the op is generic.
    """
    import torch

    out = []
    for k, x in enumerate(tensors):
        g = _grid(x)
        flat = g.reshape(-1).clone()
        if strategy == "repeat":
            if flat.numel() > 1:
                flat[1::2] = flat[0::2][: flat[1::2].numel()]
        elif strategy == "zeros":
            flat[0::2] = 0.0
        elif strategy == "kinks":
            ks = [float(v) for v in kinks] or [0.0]
            for j in range(0, flat.numel(), 2):
                flat[j] = ks[(j // 2 + k) % len(ks)]
        elif strategy == "equal_rows":
            if g.ndim >= 1 and g.shape[0] > 1:
                g = g[:1].expand_as(g).clone()
            elif g.numel() > 1:
                g = g.reshape(-1)[:1].expand_as(g).clone()
            if out and out[0].shape == g.shape:
                g = out[0].clone()
            out.append(g)
            continue
        elif strategy == "fine":
            flat = (torch.round(x * 16) / 16).reshape(-1).clone()
        elif strategy == "positive":
            flat = flat.abs() + 1.0
        elif strategy == "raw":
            flat = x.reshape(-1).clone()
        elif strategy != "grid":
            raise ValueError(f"unknown strategy {strategy!r}")
        out.append(flat.reshape(x.shape).to(torch.float64))
    return out


# ------------------------------------------------------------------ one op

@dataclass
class Bound:
    """A sample with its float64 tensors taken out: ``fn(*tensors)`` calls the op."""

    fn: object
    tensors: list
    kinks: tuple = ()
    shapes: list = field(default_factory=list)
    wrt: list | None = None
    views: list = field(default_factory=list)   # per tensor: None, or the geometry of the view it is


_RANDOM_INPLACE = frozenset({"cauchy", "exponential", "geometric", "log_normal", "normal.in_place", "uniform"})


def bind(op, sample) -> Bound | None:
    """``fn`` binding the sample's non-tensor and non-float64 arguments; None without float64 tensors."""
    import torch
    import torch.utils._pytree as pytree

    leaves, spec = pytree.tree_flatten((sample.input, sample.args, sample.kwargs))
    pos = [i for i, v in enumerate(leaves)
           if isinstance(v, torch.Tensor) and v.dtype == torch.float64 and v.layout == torch.strided
           and v.numel() > 0]
    if not pos:
        return None
    tensors = [leaves[i].detach().clone() for i in pos]
    views = [_view_geometry(leaves[i]) for i in pos]
    # the tensors PyTorch's own gradient tests differentiate (requires_grad in the sample)
    wrt = [k for k, i in enumerate(pos) if leaves[i].requires_grad] or None
    post = getattr(sample, "output_process_fn_grad", None)
    fun = op.op
    # the function PyTorch's own gradient tests differentiate: the op behind its gradcheck
    # wrapper (hermitian inputs for cholesky/eigh, masked outputs for masked ops, ...)
    wrap = getattr(op, "gradcheck_wrapper", None) or (lambda f, *a, **k: f(*a, **k))
    # a random op that overwrites its input (uniform_, cauchy_, ...) is checked on a copy, as a
    # program writes it (autograd forbids overwriting a leaf): x -> op_(x.clone()), whose output
    # ignores x's values (a constant with the draws fixed; PyTorch's derivative is 0)
    fresh = op_key(op) in _RANDOM_INPLACE

    def fn(*xs):
        ls = list(leaves)
        for p, x in zip(pos, xs):
            ls[p] = x.clone() if fresh else x
        inp, args, kwargs = pytree.tree_unflatten(ls, spec)
        out = wrap(fun, inp, *args, **kwargs)
        out = post(out) if post is not None else out
        if torch.is_grad_enabled():
            # as gradcheck: float outputs autograd does not differentiate (native_layer_norm's mean
            # and rstd) are left out where others are differentiated; where none is, all stay, and
            # the check names the op PyTorch does not differentiate
            flat = [o for o in pytree.tree_leaves(out) if isinstance(o, torch.Tensor) and o.is_floating_point()]
            if any(o.requires_grad for o in flat) and not all(o.requires_grad for o in flat):
                out = pytree.tree_map(lambda o: None if isinstance(o, torch.Tensor) and o.is_floating_point()
                                      and not o.requires_grad else o, out)
        # a complex output is checked as the real function x -> view_as_real(op(x)), as gradcheck does
        return pytree.tree_map(lambda o: torch.view_as_real(o.resolve_conj()) if isinstance(o, torch.Tensor)
                               and o.is_complex() else o, out)

    fn.__name__ = fn.__qualname__ = f"opinfo[{op_key(op)}]"
    kinks = tuple(KINKS.get(op.name, ())) + tuple(_scalars(sample)) + (0.0,)
    kinks = tuple(dict.fromkeys(kinks))
    return Bound(fn, tensors, kinks, [tuple(t.shape) for t in tensors], wrt, views)


def _view_geometry(t):
    """(size, stride, storage offset, storage elements) of a tensor that is a view of a larger
    storage (OpInfo's partial views), else None."""
    n = t.untyped_storage().nbytes() // t.element_size()
    if t.storage_offset() == 0 and t.is_contiguous() and n == t.numel():
        return None
    return (tuple(t.size()), tuple(t.stride()), t.storage_offset(), n)


def _as_view(x, geom):
    """``x``'s values in a view of the recorded geometry (the rest of the storage zero)."""
    if geom is None:
        return x
    import torch

    size, stride, off, n = geom
    buf = torch.zeros(n, dtype=x.dtype)
    v = buf.as_strided(size, stride, off)
    v.copy_(x)
    return v


class _Timeout(BaseException):
    """The per-op budget ran out (a BaseException: no ``except Exception`` swallows it)."""


def _on_alarm(signum, frame):
    raise _Timeout()


def _out_ok(out):
    """(the output is usable, a reason): finite, real, not too large."""
    import torch
    import torch.utils._pytree as pytree

    n, floats = 0, False
    for o in pytree.tree_leaves(out):
        if isinstance(o, torch.Tensor):
            if o.is_complex():
                o = torch.view_as_real(o.resolve_conj())     # checked through its real view (see bind)
            if o.is_floating_point():
                if not torch.isfinite(o).all():
                    return False, "non-finite output"
                n += o.numel()
                floats = True
    if floats and n == 0:
        return False, "empty output (no gradient to check)"
    if n > MAX_OUT_NUMEL:
        return False, f"output too large ({n} elements)"
    return True, ""


def classify(exc) -> dict:
    """The outcome of an exception out of ``mtcheck.check``."""
    import mtcheck
    from mtcheck.errors import NonFiniteError

    if isinstance(exc, mtcheck.UnsupportedOpError):
        return {"outcome": "unsupported", "aten": exc.op, "why": exc.why, "where": exc.where}
    if isinstance(exc, mtcheck.OutsideTheoryError):
        return {"outcome": "outside", "aten": exc.op, "where": exc.where, "why": str(exc).split(": ", 1)[-1][:200]}
    if isinstance(exc, NonFiniteError):
        return {"outcome": "nonfinite", "why": str(exc)[:200]}
    if isinstance(exc, mtcheck.CheckInputError):
        return {"outcome": "input", "why": str(exc)[:200]}
    if isinstance(exc, mtcheck.MtcheckError):
        return {"outcome": "mtcheck_error", "why": str(exc)[:200]}
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return {"outcome": "crash", "error": f"{type(exc).__name__}: {str(exc)[:300]}",
            "traceback": "".join(tb[-4:])[-1500:]}


def check_seeded(fn, xs, opts: dict):
    """``mtcheck.check(fn, *xs, **opts)``; a program refused for its random ops is checked again with
    its draws fixed (``torch_seed=0``, mtcheck/ops/random_fixed.py), and ``opts`` then says so. OpInfo
    marks no op as random, and a seed is not given to the others: it makes mtcheck evaluate the
    program twice and compare bit for bit, which an op reading uninitialised memory (empty_like)
    fails."""
    import mtcheck

    try:
        return mtcheck.check(fn, *xs, **opts)
    except mtcheck.UnsupportedOpError as e:
        if "torch_seed=" not in str(e) or "torch_seed" in opts:
            raise
    opts["torch_seed"] = 0
    return mtcheck.check(fn, *xs, **opts)


def check_one(bound: Bound, strategy: str) -> dict:
    """Move the sample onto ties by ``strategy`` and check it; the outcome as a dict."""
    import torch

    import mtcheck
    from mtcheck import framework

    moved = move(strategy, bound.tensors, bound.kinks)
    geoms = bound.views or [None] * len(moved)
    xs = [_as_view(x, g) for x, g in zip(moved, geoms)]
    rec = {"strategy": strategy, "shapes": bound.shapes}
    try:
        with torch.no_grad():
            out = bound.fn(*[_as_view(x.clone(), g) for x, g in zip(moved, geoms)])
        ok, why = _out_ok(out)
    except _Timeout:
        raise
    except Exception as e:  # noqa: BLE001 - the op itself rejects this input: not mtcheck's business
        ok, why = False, f"the op raises on this input: {type(e).__name__}: {str(e)[:120]}"
    if not ok:
        rec.update(outcome="invalid", why=why)
        return rec
    t0 = time.perf_counter()
    try:
        rep = check_seeded(bound.fn, xs, dict(neighbours=False, wrt=bound.wrt))
    except _Timeout:
        raise
    except Exception as e:  # noqa: BLE001 - every exception is an outcome to record
        rec.update(classify(e))
    else:
        v = str(rep.verdict)
        nd = next((n for n in rep.notes if n.startswith(framework.NOT_DIFFERENTIATED)), None)
        if nd is not None and v in BUGS:
            # a documented non-differentiable op: its silent 0 gradient is no finding of the sweep
            rec.update(outcome="unsupported", aten=nd.split()[4],
                       why="PyTorch has no derivative for it (" + nd.split(": ", 1)[1] + ")")
            rec["seconds"] = round(time.perf_counter() - t0, 3)
            return rec
        rec.update(outcome="verdict", verdict=v, forward_matches_reverse=rep.forward_matches_reverse,
                   exact=rep.exact_mode, tangent_dim=rep.tangent_dim, n_inputs=rep.n_inputs)
        if rep.n_inputs and rep.tangent_dim is not None:
            rec["tie"] = rep.tangent_dim < rep.n_inputs
        if rep.forward_matches_reverse is None and rep.reasons.get("forward = reverse"):
            rec["forward_reason"] = rep.reasons["forward = reverse"][:160]
        if v in BUGS:
            rec["mismatch"] = (rep.mismatch or "")[:600]
            rec["inputs"] = [x.reshape(-1).tolist() for x in xs]
        if rep.forward_matches_reverse is False:
            rec["inputs"] = [x.reshape(-1).tolist() for x in xs]
            rec["forward_reverse_gap"] = _fwd_rev_gap(bound, xs, rep)
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    return rec


def _fwd_rev_gap(bound, xs, rep):
    """The largest |forward-mode - reverse-mode| entry and the largest |entry|, to tell a
    disagreement at a tie from float rounding (the two modes round differently off exact mode)."""
    try:
        import numpy as np

        from mtcheck import framework
        from mtcheck.trace import prepare_inputs, trace

        leaves, wrt = prepare_inputs(xs, bound.wrt)
        J_fwd, _ = framework.forward_jacobian(bound.fn, trace(bound.fn, leaves), wrt)
        J = rep.framework_jacobian
        return [float(np.abs(J_fwd - J).max()), float(max(np.abs(J).max(), np.abs(J_fwd).max()))]
    except Exception:  # noqa: BLE001 - the gap is a note, not a check
        return None


def _rounding_only(c) -> bool:
    """A forward/reverse difference within float64 rounding (relative 1e-12): one of the two
    modes rounds (vander's forward mode computes powers that round although the values are
    exact), which is no disagreement about the gradient at a tie. The verdict is not affected."""
    g = c.get("forward_reverse_gap")
    return bool(g) and g[0] <= 1e-12 * max(1.0, g[1])


def _samples(op, rng_seed=0):
    import torch

    torch.manual_seed(rng_seed)
    out = []
    try:
        it = iter(op.sample_inputs("cpu", torch.float64, requires_grad=op.supports_autograd,
                                   small_inputs_only=True))
        first = [next(it, None)]
    except TypeError:
        torch.manual_seed(rng_seed)
        it = iter(op.sample_inputs("cpu", torch.float64, requires_grad=op.supports_autograd))
        first = [next(it, None)]
    import itertools

    for i, s in enumerate(itertools.chain([] if first[0] is None else first, it)):
        if i >= SAMPLES_SCANNED:
            break
        out.append((i, s))
    return out


def _varied(cand):
    """The samples in an order that takes each distinct set of non-tensor arguments (a norm's p,
    a reduction mode) in turn, in the database's order within each: an op whose first samples
    all use one option (cdist: sixteen with p = 0) is checked with its other options too."""
    import torch
    import torch.utils._pytree as pytree

    groups: dict = {}
    for i, s in cand:
        leaves = pytree.tree_leaves((s.args, s.kwargs))
        key = repr([v for v in leaves if not isinstance(v, torch.Tensor)])
        groups.setdefault(key, []).append((i, s))
    out, lists = [], list(groups.values())
    while any(lists):
        for g in lists:
            if g:
                out.append(g.pop(0))
    return out


def sweep_op(op, *, samples: int = 2, strategies=STRATEGIES, budget: float = 4.0, clarke: bool = True) -> dict:
    """Every check of one op, within ``budget`` seconds (wall clock)."""
    import torch

    row = {"op": op_key(op), "name": op.name, "variant": op.variant_test_name, "aten_name": op.aten_name,
           "checks": []}
    t0 = time.perf_counter()
    try:
        dts = op.supported_dtypes("cpu")
    except Exception:  # noqa: BLE001
        dts = set()
    if torch.float64 not in dts:
        row.update(status="no_float_sample", reason="the op has no float64 variant")
        return row
    import warnings

    warnings.simplefilter("ignore")          # deprecations and beta notices of the ops themselves
    old = signal.signal(signal.SIGALRM, _on_alarm) if _main_thread() else None
    if old is not None:
        signal.setitimer(signal.ITIMER_REAL, budget)
    try:
        try:
            cand = _samples(op)
        except _Timeout:
            cand = []
            row["budget_exhausted"] = True
        except Exception as e:  # noqa: BLE001
            row.update(status="no_float_sample", reason=f"sample_inputs raised {type(e).__name__}: {str(e)[:100]}")
            return row
        bounds = []
        large = []
        for i, s in _varied(cand):
            b = bind(op, s)
            if b is None:
                continue
            size = sum(t.numel() for t in b.tensors)
            if size > MAX_NUMEL:
                large.append((size, i, b))
                continue
            bounds.append((i, b))
            if len(bounds) >= MAX_SAMPLES_TRIED:
                break
        if not bounds and large:
            # the smallest of the large samples first; the next ones only where it gives no verdict
            # (scaled_dot_product_attention's first samples are causal with a -inf mask, its later
            # ones of the same size are not)
            for size, i, b in sorted(large, key=lambda e: e[0])[:MAX_SAMPLES_TRIED]:
                if size <= MAX_NUMEL_LARGE:
                    bounds.append((i, b))
        if not bounds:
            if large:
                row.update(status="too_large", has_float_sample=True,
                           reason=f"no sample with at most {MAX_NUMEL_LARGE} float64 elements among the first "
                                  f"{len(cand)}")
            else:
                row.update(status="no_float_sample", reason="no sample with a real float64 tensor")
            return row
        row["has_float_sample"] = True
        used = 0
        try:
            for i, b in bounds:
                if used >= samples:
                    break
                for st in strategies:
                    rec = check_one(b, st)
                    rec["sample"] = i
                    row["checks"].append(rec)
                for st in ("fine", "positive", "raw"):
                    if any(c.get("verdict") in DECIDED for c in row["checks"] if c["sample"] == i):
                        break
                    # no tie strategy gave a decided verdict: the op rejects the input (a singular
                    # matrix, a zero divisor), mtcheck refuses it there (a logarithm of 0, a step
                    # function on its jumps), or an enclosure left a case UNKNOWN (an eigenvector
                    # entry that is 0 under abs): the sample on a fine grid, then with positive
                    # values, then as drawn
                    rec = check_one(b, st)
                    rec["sample"] = i
                    row["checks"].append(rec)
                if any(c["outcome"] == "verdict" for c in row["checks"] if c["sample"] == i):
                    used += 1      # a sample with a verdict; one without makes room for the next
        except _Timeout:
            row["checks"].append({"sample": i, "strategy": st, "shapes": b.shapes, "outcome": "timeout",
                                  "why": f"the op's budget of {budget:g} s ran out"})
            row["budget_exhausted"] = True
        if clarke and not row.get("budget_exhausted"):
            try:
                _clarke_of(row, dict(bounds))
            except _Timeout:
                row["clarke_reason"] = "the op's budget ran out"
    finally:
        if old is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    row["seconds"] = round(time.perf_counter() - t0, 2)
    _summarise(row)
    return row


CLARKE_MAX_INPUTS = 64      # the Clarke column: tie checks with at most this many input entries (what the
                            # checker's enumeration of neighbouring strata handles: mtcheck.checker.SMALL_N)


def _scalarised(fn):
    """``fn`` composed with a fixed generic dyadic linear functional of its float outputs."""
    def g(*xs):
        import torch
        import torch.utils._pytree as pytree

        outs = [o.reshape(-1) for o in pytree.tree_leaves(fn(*xs))
                if isinstance(o, torch.Tensor) and o.is_floating_point()]
        if not outs:
            raise _NoFloatOutput()
        flat = torch.cat(outs)
        w = torch.arange(1, flat.numel() + 1, dtype=flat.dtype) * 0.125 + 1.0
        w = torch.where(torch.arange(flat.numel()) % 2 == 0, w, -w / 2)
        return (flat * w).sum()

    return g


class _NoFloatOutput(Exception):
    pass


def _clarke_of(row, bounds):
    """``row["clarke"]``: for the smallest exact, associated tie check of the op, whether the gradient of a
    generic linear functional of the outputs is a Clarke subgradient (neighbouring strata enumerated)."""
    import mtcheck

    cands = [c for c in row["checks"] if c.get("outcome") == "verdict" and c.get("tie") and c.get("exact")
             and c.get("verdict") in ("ASSOCIATED", "SMOOTH_OK") and c.get("n_inputs")
             and c["n_inputs"] <= CLARKE_MAX_INPUTS and c.get("sample") in bounds]
    if not cands:
        ties = [c for c in row["checks"] if c.get("tie")]
        if ties:
            row["clarke_reason"] = (f"no exact associated tie check with at most {CLARKE_MAX_INPUTS} inputs (smallest: "
                                    f"{min(c.get('n_inputs') or 0 for c in ties)})")
        return
    c = min(cands, key=lambda c: c["n_inputs"])
    b = bounds[c["sample"]]
    moved = move(c["strategy"], b.tensors, b.kinks)
    xs = [_as_view(x, g) for x, g in zip(moved, b.views or [None] * len(moved))]
    try:
        rep = check_seeded(_scalarised(b.fn), xs, dict(neighbours=True, forward_mode=False, wrt=b.wrt, max_pieces=16))
    except _Timeout:
        raise
    except _NoFloatOutput:
        row["clarke_reason"] = "no floating-point output"
        return
    except Exception as e:  # noqa: BLE001 - the column says why
        row["clarke_reason"] = f"{type(e).__name__}: {str(e)[:60]}"
        return
    row["clarke_check"] = {"sample": c["sample"], "strategy": c["strategy"]}
    if rep.clarke is None or not rep.exact_mode:
        row["clarke_reason"] = (rep.reasons.get("Clarke", "") or "not exact")[:80]
        return
    row["clarke"] = bool(rep.clarke)


def _main_thread():
    import threading

    return threading.current_thread() is threading.main_thread()


def _summarise(row):
    """status: decided / crash / unsupported / outside / ... ; reason: the most telling error."""
    checks = [c for c in row["checks"] if c["outcome"] != "invalid"]
    verdicts = [c for c in checks if c["outcome"] == "verdict"]
    crashes = [c for c in checks if c["outcome"] == "crash"]
    row["verdicts"] = sorted({c["verdict"] for c in verdicts})
    row["crashes"] = len(crashes)
    decided = [c for c in verdicts if c["verdict"] in DECIDED]
    fr = [True if c.get("forward_matches_reverse") is False and _rounding_only(c) else c.get("forward_matches_reverse")
          for c in decided]
    row["forward_reverse"] = ("differ" if any(f is False for f in fr) else "agree" if fr and all(f is True for f in fr)
                              else "agree where available" if any(f is True for f in fr) else "no forward mode"
                              if decided else None)
    row["findings"] = [c for c in decided if c["verdict"] in BUGS or (c.get("forward_matches_reverse") is False
                                                                      and not _rounding_only(c))]
    if crashes:
        row["status"] = "crash"
        row["reason"] = crashes[0]["error"]
    elif decided:
        row["status"] = "decided"
        refused = [c for c in checks if c["outcome"] not in ("verdict", "timeout")]
        if refused:
            row["partial"] = f"{len(refused)}/{len(checks)} checks refused ({_why(refused[0])})"
    elif verdicts:
        row["status"] = "unknown"
        row["reason"] = "every verdict UNKNOWN"
    elif checks:
        order = ("unsupported", "outside", "nonfinite", "input", "mtcheck_error", "timeout")
        first = min(checks, key=lambda c: order.index(c["outcome"]) if c["outcome"] in order else 99)
        row["status"] = first["outcome"]
        row["reason"] = _why(first)
        if first.get("aten"):
            row["aten"] = first["aten"]
    else:
        row["status"] = "invalid"
        row["reason"] = row["checks"][0]["why"] if row["checks"] else "no check ran"


def _why(c) -> str:
    if c.get("aten"):
        return f"{c['aten']}: {c.get('why', '')}"[:200]
    return str(c.get("why") or c.get("error") or c["outcome"])[:200]


# ------------------------------------------------------------------ the sweep

def _select(op_db, ops=None, max_ops=0):
    chosen = [op for op in op_db if not ops or op_key(op) in ops or op.name in ops]
    if max_ops:
        chosen = chosen[:max_ops]
    return chosen


_DB = None


def _worker_init():
    import torch

    torch.set_num_threads(1)


def _work(args):
    idx, kw = args
    op = _DB[idx]
    try:
        return idx, sweep_op(op, **kw)
    except Exception as e:  # noqa: BLE001 - the sweep's own failure on one op (not mtcheck's): a row of its own
        return idx, {"op": op_key(op), "name": op.name, "variant": op.variant_test_name, "aten_name": op.aten_name,
                     "checks": [], "status": "sweep_error", "reason": f"{type(e).__name__}: {str(e)[:200]}"}


def sweep(ops=None, *, max_ops: int = 0, samples: int = 2, budget: float = 4.0, jobs: int = 1,
          strategies=STRATEGIES, progress=None, clarke: bool = True) -> dict:
    """Run the sweep; returns ``{"torch", "summary", "ops": [row, ...]}`` (rows in op_db order)."""
    global _DB
    import torch

    op_db = load_op_db()
    _DB = op_db
    chosen = _select(op_db, ops, max_ops)
    index = {id(op): i for i, op in enumerate(op_db)}
    kw = dict(samples=samples, budget=budget, strategies=tuple(strategies), clarke=clarke)
    t0 = time.perf_counter()
    rows: dict = {}
    tasks = [(index[id(op)], kw) for op in chosen]
    if jobs > 1 and len(tasks) > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(jobs, initializer=_worker_init) as pool:
            for idx, row in pool.imap_unordered(_work, tasks, chunksize=1):
                rows[idx] = row
                if progress:
                    progress(row, len(rows), len(tasks))
    else:
        for t in tasks:
            idx, row = _work(t)
            rows[idx] = row
            if progress:
                progress(row, len(rows), len(tasks))
    ordered = [rows[i] for i, _ in tasks]
    res = {"torch": torch.__version__, "samples": samples, "budget": budget, "strategies": list(strategies),
           "seconds": round(time.perf_counter() - t0, 1), "ops": ordered}
    res["summary"] = summarise(ordered)
    return res


def summarise(rows) -> dict:
    with_sample = [r for r in rows if r.get("has_float_sample")]
    decided = [r for r in with_sample if r["status"] == "decided"]
    crashes = sum(r.get("crashes", 0) for r in rows)
    by = {}
    for r in rows:
        by[r["status"]] = by.get(r["status"], 0) + 1
    return {"ops": len(rows), "with_float_sample": len(with_sample), "decided": len(decided),
            "decided_pct": round(100.0 * len(decided) / len(with_sample), 1) if with_sample else 0.0,
            "internal_crashes": crashes, "crashed_ops": [r["op"] for r in rows if r.get("crashes")],
            "by_status": by, "findings": sum(len(r.get("findings", [])) for r in rows)}


_NO_EXACT_MODEL = ("discontinuous", "random", "complex", "CUDA only", "PyTorch has no derivative")


def scope_line(res) -> str:
    """The same figure over the ops a verdict can exist for (not discontinuous, random, complex,
    CUDA-only, or without a PyTorch derivative; irrational values are enclosed, so they count)."""
    from mtcheck.catalogue import sweep_rows

    rows = {r["op"]: r for r in sweep_rows(res)}
    ops = [r for r in res["ops"] if r.get("has_float_sample")]
    out = [r for r in ops if r["status"] != "decided" and rows[r["op"]]["reason"].startswith(_NO_EXACT_MODEL)]
    n = len(ops) - len(out)
    d = sum(1 for r in ops if r["status"] == "decided")
    return (f"of the {n} ops that can have an exact verdict, {d} decided ({100.0 * d / n:.1f}%); "
            f"{len(out)} have none (discontinuous, random, complex, CUDA only, no PyTorch derivative)") if n else ""


def summary_line(res) -> str:
    s = res["summary"]
    return (f"decided {s['decided']}/{s['with_float_sample']} ops ({s['decided_pct']}%), "
            f"{s['internal_crashes']} internal crashes")


# ------------------------------------------------------------------ findings -> corpus cases

def finding_cases(res, directory, *, progress=None) -> list:
    """Every finding of a sweep (a bug verdict, or forward mode != reverse mode at a check) as a
    replayable corpus case in ``directory``: the sample is bound again, moved onto its tie by the
    same strategy, checked again with forward mode, and saved with its traced program (ATen ops,
    exact constants), so ``mtcheck replay DIR`` runs it without importing the op database.
    Returns one record per case (also stored as ``res["cases"]``); a finding that no longer
    reproduces, or whose program cannot be stored, is listed with ``file: None`` and why."""
    import torch

    import mtcheck
    from mtcheck.corpus import case_from_report, save_case

    by_key = {op_key(op): op for op in load_op_db()}
    out = []
    for row in res.get("ops", []):
        fs = row.get("findings") or []
        if not fs:
            continue
        op = by_key.get(row["op"])
        samples = dict(_samples(op)) if op is not None else {}
        done = set()
        for f in fs:
            kind = "wrong gradient" if f.get("verdict") in BUGS else "forward != reverse"
            key = (f.get("sample"), f.get("strategy"), kind)
            if key in done or f.get("sample") not in samples:
                continue
            done.add(key)
            rec = {"op": row["op"], "kind": kind, "sample": f.get("sample"), "strategy": f.get("strategy"),
                   "verdict": f.get("verdict"), "file": None}
            b = bind(op, samples[f["sample"]])
            moved = move(f["strategy"], b.tensors, b.kinks)
            xs = [_as_view(x, g) for x, g in zip(moved, b.views or [None] * len(moved))]
            opts = {"neighbours": False, "forward_mode": True, "wrt": b.wrt}
            try:
                rep = check_seeded(b.fn, xs, opts)      # adds torch_seed to opts where it was needed
            except Exception as e:  # noqa: BLE001 - recorded, the others go on
                rec["why"] = f"{type(e).__name__}: {str(e)[:120]}"
                out.append(rec)
                continue
            still = (str(rep.verdict) in BUGS) if kind == "wrong gradient" else rep.forward_matches_reverse is False
            if not still:
                rec["why"] = f"does not reproduce (now {rep.verdict}, forward = reverse: {rep.forward_matches_reverse})"
                out.append(rec)
                continue
            origin = {"source": "mtcheck opinfo", "op": row["op"], "sample": f["sample"], "strategy": f["strategy"],
                      "finding_kind": "wrong_gradient" if kind == "wrong gradient" else "forward_reverse",
                      "torch": torch.__version__}
            try:
                case = case_from_report(None, xs, rep, program=b.fn, options=opts, origin=origin)
                path = save_case(directory, case)
            except Exception as e:  # noqa: BLE001 - a program the trace cannot store: listed, not fatal
                rec["why"] = f"not stored: {type(e).__name__}: {str(e)[:120]}"
                out.append(rec)
                continue
            rec.update(file=os.path.basename(str(path)), verdict=str(rep.verdict))
            same = next((c for c in out if c["file"] == rec["file"]), None)
            if same is not None:        # the same input: another strategy, or both kinds of finding
                if rec["strategy"] not in same["strategy"].split(", "):
                    same["strategy"] += f", {rec['strategy']}"
                if rec["kind"] not in same["kind"].split(" and "):
                    same["kind"] += f" and {rec['kind']}"
                continue
            out.append(rec)
            if progress:
                progress(rec)
    res["cases"] = [c for c in out if c["file"]]
    res["cases_not_written"] = [c for c in out if not c["file"]]
    return out


def merge(results) -> dict:
    """One sweep result from several (disjoint sets of ops, e.g. run in chunks), rows in op_db order."""
    import torch

    order = {op_key(op): i for i, op in enumerate(load_op_db())}
    rows = {}
    for r in results:
        for row in r["ops"]:
            rows[row["op"]] = row
    first = results[0]
    ordered = sorted(rows.values(), key=lambda row: order.get(row["op"], len(order)))
    res = {"torch": torch.__version__, "samples": first.get("samples"), "budget": first.get("budget"),
           "strategies": first.get("strategies"), "seconds": round(sum(r.get("seconds", 0) for r in results), 1),
           "ops": ordered}
    res["summary"] = summarise(ordered)
    return res


def write_json(res, path) -> None:
    import tempfile

    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".opinfo-")
    with os.fdopen(fd, "w") as fh:
        json.dump(res, fh, indent=1, default=str)
        fh.write("\n")
    os.replace(tmp, path)


def main(argv=None) -> int:
    """Command line (also ``mtcheck opinfo``). Exit 0: no internal crash; 1: crashes; 2: usage."""
    import argparse

    p = argparse.ArgumentParser(prog="mtcheck opinfo", description=__doc__.split("\n\n")[0])
    p.add_argument("--op", action="append", dest="ops", default=None, help="only this op (name or name.variant)")
    p.add_argument("--max-ops", type=int, default=0, help="at most this many ops (0: all)")
    p.add_argument("--samples", type=int, default=2, help="samples per op")
    p.add_argument("--op-budget", type=float, default=4.0, help="seconds per op (wall clock)")
    p.add_argument("-n", "--jobs", type=int, default=0, help="worker processes (0: available cores)")
    p.add_argument("--output", default="opinfo-sweep.json", help="JSON results")
    p.add_argument("--catalogue", default=None, help="also write the catalogue (markdown) to this file")
    p.add_argument("--corpus", default=None, metavar="DIR",
                   help="write every finding as a replayable corpus case into DIR (mtcheck replay DIR)")
    p.add_argument("--cases-from", default=None, metavar="JSON",
                   help="no sweep: write the findings of this saved sweep (its JSON) as cases into --corpus DIR, "
                        "and add them to the JSON")
    p.add_argument("--no-clarke", action="store_true", help="skip the Clarke check of each op's smallest tie")
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)
    try:
        load_op_db()
    except ImportError as e:
        print(f"mtcheck opinfo: needs the `expecttest` package to import PyTorch's op database ({e})",
              file=sys.stderr)
        return 2
    jobs = a.jobs or max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)

    def progress(row, k, n):
        if not a.quiet and (row["status"] != "decided" or k % 25 == 0):
            print(f"[{k}/{n}] {row['op']}: {row['status']}" + (f" ({row.get('reason', '')[:100]})"
                                                               if row.get("reason") else ""), file=sys.stderr)

    def case_progress(rec):
        if not a.quiet:
            print(f"case {rec['file']}: {rec['op']}, {rec['kind']}, {rec['verdict']}", file=sys.stderr)

    if a.cases_from:
        if not a.corpus:
            print("mtcheck opinfo: --cases-from needs --corpus DIR", file=sys.stderr)
            return 2
        with open(a.cases_from) as fh:
            res = json.load(fh)
        t0 = time.perf_counter()
        recs = finding_cases(res, a.corpus, progress=case_progress)
        write_json(res, a.cases_from)
        print(f"{len(res['cases'])} case(s) written to {a.corpus} from the findings of {a.cases_from} "
              f"({len(recs) - len(res['cases'])} not written) [{time.perf_counter() - t0:.1f} s]")
        for c in res["cases_not_written"]:
            print(f"  not written: {c['op']} ({c['kind']}): {c.get('why')}", file=sys.stderr)
        return 0
    res = sweep(a.ops, max_ops=a.max_ops, samples=a.samples, budget=a.op_budget, jobs=jobs, progress=progress,
                clarke=not a.no_clarke)
    if a.corpus:
        finding_cases(res, a.corpus, progress=case_progress)
        print(f"{len(res['cases'])} finding case(s) written to {a.corpus}")
    write_json(res, a.output)
    if a.catalogue:
        from mtcheck import catalogue

        text = catalogue.render_markdown(catalogue.build_catalogue(clarke=False), sweep=res)
        with open(a.catalogue, "w") as fh:
            fh.write(text)
    for r in res["ops"]:
        if r.get("crashes"):
            print(f"INTERNAL CRASH {r['op']}: {r['reason']}", file=sys.stderr)
    print(summary_line(res) + f"  [{res['seconds']} s, results in {a.output}]")
    if not a.quiet:
        print(scope_line(res))
    return 1 if res["summary"]["internal_crashes"] else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
