"""What the framework computes: PyTorch's reverse-mode and forward-mode Jacobians.

This is the only module that asks torch for derivatives; the exact side
(:mod:`mtcheck.model`) never does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .trace import Trace


@dataclass
class Linearity:
    ok: bool
    detail: str = ""
    certificate: dict | None = None      # the counterexample, in the certificate format's "linearity" form


def _vec(a) -> dict:
    """Exact encoding of a float64 vector (floats are dyadic)."""
    from fractions import Fraction

    fr = [Fraction(float(v)) for v in np.asarray(a, dtype=np.float64).tolist()]
    den = 1
    for f in fr:
        den = max(den, f.denominator)        # powers of two: the largest is a common denominator
    return {"den": den, "num": [int(f * den) for f in fr]}


def _rat(v) -> str:
    from fractions import Fraction

    f = Fraction(float(v))
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


def _float_outputs(tr: Trace):
    return [t for t in tr.out_tensors if t is not None and t.is_floating_point()]


def vjp(tr: Trace, wrt: list, cot: np.ndarray) -> np.ndarray:
    """PyTorch's reverse pass with cotangent ``cot`` (length m, float64 values): (n,) float64."""
    outs = _float_outputs(tr)
    ins = [tr.inputs[i] for i in wrt]
    pairs, off = [], 0
    for o in outs:
        k = o.numel()
        if o.requires_grad:
            pairs.append((o, torch.as_tensor(cot[off:off + k], dtype=o.dtype).reshape(o.shape)))
        off += k
    if not pairs:
        return np.zeros(sum(x.numel() for x in ins))
    try:
        grads = torch.autograd.grad([p[0] for p in pairs], ins, [p[1] for p in pairs], retain_graph=True,
                                    allow_unused=True)
    except (RuntimeError, NotImplementedError) as e:
        _no_derivative(tr, e)
        from .errors import CheckInputError

        raise CheckInputError(f"PyTorch's backward pass raised {type(e).__name__}: {str(e).splitlines()[0][:300]}; "
                              "there is no framework gradient to check") from None
    return np.concatenate([_dense(g, x) for g, x in zip(grads, ins)])


def _dense(g, x) -> np.ndarray:
    """A gradient as a flat float64 array: None, and PyTorch's symbolic zero tensors (``sgn``'s
    backward returns one), are zeros."""
    if g is None or g._is_zerotensor():
        return np.zeros(x.numel())
    return g.detach().to(torch.float64).reshape(-1).numpy()


def _no_derivative(tr: Trace, e: Exception) -> None:
    """PyTorch has no backward for an op of the program: a documented error naming the op and its line."""
    import re

    from .errors import UnsupportedOpError

    m = re.search(r"derivative for (?:aten::)?([\w.]+) is not implemented", str(e))
    if m is None:
        return
    name = m.group(1)
    node = next((n for n in tr.nodes if n.op.split(".")[1] == name), None) if "." not in name else None
    raise UnsupportedOpError(node.op if node is not None else f"aten.{name}", node.where if node is not None else "<unknown>",
                             "PyTorch has no derivative for it (its backward raises), so there is no framework "
                             "gradient to check") from None


_DIFFERENTIATED: dict = {}     # ATen op -> per output, whether autograd gives it a gradient (probed once)
_CONSTANT_BY_DESIGN = ("aten.detach.", "aten.detach_.", "aten.lift_fresh")   # a stop-gradient on purpose


def not_differentiated(tr: Trace, live: set) -> list:
    """The ops of the program that PyTorch does not differentiate although an output of theirs
    that the program uses depends on the differentiated inputs, as notes: autograd treats such
    an output as a constant (``special.bessel_j0``, ``native_layer_norm``'s mean and rstd), so
    the gradient through it is silently 0. mtcheck judges the function the program computes
    (as with ``detach()``), so the gradient then differs from the true one; the note says why.
    Each op is probed once per process: it is called again on its recorded arguments, the
    input-dependent ones requiring grad."""
    notes = []
    import torch.utils._pytree as pytree

    from .trace import _SHAPE_ONLY, Ref

    def recorded(ref):
        if ref.kind == "in":
            return tr.inputs[ref.index]
        if ref.kind == "const":
            return tr.consts[ref.index]
        rec = tr.nodes[ref.index].recorded
        return rec[ref.out] if isinstance(rec, tuple) else rec

    # the values the program's outputs are computed from (an unused output, as layer norm's
    # mean and rstd in F.layer_norm, does not matter)
    needed = {r for r in tr.outputs if isinstance(r, Ref)}
    for node in reversed(tr.nodes):
        rec = node.recorded if isinstance(node.recorded, tuple) else (node.recorded,)
        if any(Ref("node", node.index, j) in needed for j in range(len(rec))):
            needed.update(v for v in pytree.tree_leaves((node.args, node.kwargs), is_leaf=lambda v: isinstance(v, Ref))
                          if isinstance(v, Ref))
    for node in tr.nodes:
        if not node.grad_enabled or node.op in _SHAPE_ONLY or node.op.startswith(_CONSTANT_BY_DESIGN):
            continue
        rec = node.recorded if isinstance(node.recorded, tuple) else (node.recorded,)
        outs = [j for j, t in enumerate(rec) if isinstance(t, torch.Tensor) and t.is_floating_point()
                and Ref("node", node.index, j) in live and Ref("node", node.index, j) in needed]
        if not outs:
            continue
        known = _DIFFERENTIATED.get(node.op)
        if known is not None:
            bad = [j for j in outs if j < len(known) and not known[j]]
            if bad:
                notes.append(_note(node, bad[0], len(rec)))
            continue
        grads = []

        def arg(v):
            if not isinstance(v, Ref):
                return v
            t = recorded(v).detach().clone()
            if v in live and t.is_floating_point():
                t.requires_grad_()
                grads.append(t)
            return t

        try:
            args = pytree.tree_map(arg, node.args, is_leaf=lambda v: isinstance(v, Ref))
            kwargs = pytree.tree_map(arg, node.kwargs, is_leaf=lambda v: isinstance(v, Ref))
            if not grads:
                continue
            with torch.enable_grad():
                out = node.func(*args, **kwargs)
        except Exception:  # noqa: BLE001 - an op that cannot be replayed alone (in place on a leaf): not probed
            continue
        res = out if isinstance(out, (tuple, list)) else (out,)
        diff = [not (isinstance(o, torch.Tensor) and o.is_floating_point()) or o.requires_grad for o in res]
        _DIFFERENTIATED[node.op] = diff
        bad = [j for j in outs if j < len(diff) and not diff[j]]
        if bad:
            notes.append(_note(node, bad[0], len(rec)))
    return notes


NOT_DIFFERENTIATED = "PyTorch does not differentiate"


def _note(node, j, nout) -> str:
    what = "its output" if nout == 1 else f"its output {j}"
    return (f"{NOT_DIFFERENTIATED} {node.op} at {node.where}: {what} is a constant to autograd, so the framework's "
            "gradient through it is 0")


def reverse_jacobian(tr: Trace, wrt: list) -> np.ndarray:
    """Row i = vjp with cotangent e_i: the framework Jacobian J_fw (m, n), float64 (exact copy of the dtype)."""
    outs = _float_outputs(tr)
    m = sum(o.numel() for o in outs)
    n = sum(tr.inputs[i].numel() for i in wrt)
    ins = [tr.inputs[i] for i in wrt]
    if not any(o.requires_grad for o in outs) or m == 0:
        return np.array([vjp(tr, wrt, np.eye(m)[i]) for i in range(m)]).reshape(m, n)
    # the same reverse pass as vjp(e_i), row by row, with one zero cotangent buffer per output whose
    # entry i is set and reset around each call
    bufs = [torch.zeros(o.shape, dtype=o.dtype) for o in outs]
    flat = [b.view(-1) for b in bufs]
    live = [k for k, o in enumerate(outs) if o.requires_grad]
    J = np.zeros((m, n))
    off = 0
    for k, o in enumerate(outs):
        for j in range(o.numel()):
            if o.requires_grad:
                flat[k][j] = 1
                try:
                    grads = torch.autograd.grad([outs[q] for q in live], ins, [bufs[q] for q in live],
                                                retain_graph=True, allow_unused=True)
                except (RuntimeError, NotImplementedError):
                    flat[k][j] = 0
                    e = np.zeros(m)
                    e[off + j] = 1.0
                    vjp(tr, wrt, e)          # raises the documented error (no derivative, ...)
                    raise
                # copied out before the buffer is reset: a gradient may be a view of the cotangent
                # (sum's backward expands it)
                J[off + j] = np.concatenate([_dense(g, x) for g, x in zip(grads, ins)])
                flat[k][j] = 0
        off += o.numel()
    return J


def check_linearity(tr: Trace, wrt: list, J: np.ndarray, tol, exact_scaling: bool = True,
                    normwise: bool = False) -> Linearity:
    """Is the reverse pass linear in its cotangent?

    Zero, negation and doubling are exact in binary floating point for a linear
    pass (round-to-nearest is symmetric and scaling by 2 is exact), so they are
    compared exactly; additivity involves rounded sums, so it is compared with
    the tolerance ``tol`` (float64's when the forward is exact). With ``exact_scaling``
    False (float16/bfloat16, whose backward passes reach subnormals, where doubling
    rounds) scaling is compared with the tolerance too. With ``normwise`` (tolerance mode)
    additivity is compared against the size of the gradient vectors (``rtol * (||lhs||_inf +
    ||rhs||_inf)``) instead of each coordinate's: a low-precision backward rounds relative to the
    cotangents inside it, which can be far larger than a coordinate they cancel to, while a real
    nonlinearity (a rule of ``g*|g|``, one that ignores its gradient) is off by the size of the
    vectors themselves.
    """
    m = J.shape[0]
    if m == 0:
        return Linearity(True)
    rng = np.random.default_rng(0)
    u = rng.integers(-3, 4, size=m).astype(np.float64)
    if not u.any():
        u[0] = 1.0
    v = rng.integers(-3, 4, size=m).astype(np.float64)
    g0 = vjp(tr, wrt, np.zeros(m))
    if np.any(g0 != 0):
        i = int(np.nonzero(g0 != 0)[0][0])
        return Linearity(False, f"the reverse pass with a zero incoming gradient returned {g0[i]!r} at input "
                                f"coordinate {i} (a linear map sends 0 to 0)",
                         {"kind": "zero", "u": _vec(np.zeros(m)), "v": None, "c": None, "vjp_u": None, "vjp_v": None,
                          "vjp_lhs": _vec(g0), "tolerance": None})
    gu = vjp(tr, wrt, u)
    for c in (-1.0, 2.0):
        gc = vjp(tr, wrt, c * u)
        differ = (gc != c * gu) if exact_scaling else \
            ~(np.abs(gc - c * gu) <= tol[1] + tol[0] * np.abs(c * gu))
        if differ.any():
            i = int(np.nonzero(differ)[0][0])
            return Linearity(False, f"vjp({c:g}*u) = {gc[i]!r} but {c:g}*vjp(u) = {(c * gu)[i]!r} at input coordinate "
                                    f"{i} (u = {u.tolist()})",
                             {"kind": "scale", "u": _vec(u), "v": None, "c": _rat(c), "vjp_u": _vec(gu), "vjp_v": None,
                              "vjp_lhs": _vec(gc), "tolerance": None})
    gv = vjp(tr, wrt, v)
    guv = vjp(tr, wrt, u + v)
    rows = J.T @ u
    for lhs, rhs, what in ((guv, gu + gv, "vjp(u+v) vs vjp(u)+vjp(v)"), (gu, rows, "vjp(u) vs sum_i u_i vjp(e_i)")):
        rtol, atol = tol
        scale = rtol * (np.abs(lhs).max(initial=0.0) + np.abs(rhs).max(initial=0.0)) if normwise else \
            rtol * np.abs(rhs)
        bad = np.abs(lhs - rhs) > atol + scale
        if bad.any():
            i = int(np.nonzero(bad)[0][0])
            cert = None
            if lhs is guv:
                cert = {"kind": "additivity", "u": _vec(u), "v": _vec(v), "c": None, "vjp_u": _vec(gu),
                        "vjp_v": _vec(gv), "vjp_lhs": _vec(guv), "tolerance": {"rtol": _rat(rtol), "atol": _rat(atol)}}
            return Linearity(False, f"{what}: {lhs[i]!r} != {rhs[i]!r} at input coordinate {i} "
                                    f"(u = {u.tolist()}, v = {v.tolist()})", cert)
    return Linearity(True)


def forward_jacobian(fn, tr: Trace, wrt: list, max_loop: int = 256):
    """PyTorch's forward-mode Jacobian (m, n), or (None, reason) where forward mode is unavailable."""
    import torch.autograd.forward_ad as fwAD

    ins = [x.detach() for x in tr.inputs]
    n_list = [ins[i].numel() for i in wrt]
    n = sum(n_list)
    if n > max_loop:
        return None, f"forward mode skipped: {n} input coordinates > {max_loop} (one forward pass each)"
    cols = []
    try:
        for k in range(n):
            with fwAD.dual_level():
                duals = list(ins)
                off = 0
                for i, s in zip(wrt, n_list):
                    tan = torch.zeros(s, dtype=ins[i].dtype)
                    if off <= k < off + s:
                        tan[k - off] = 1
                    duals[i] = fwAD.make_dual(ins[i], tan.reshape(ins[i].shape))
                    off += s
                from .ops.random_fixed import reseed

                reseed()             # check(..., torch_seed=s): the trace's draws again
                out = fn(*duals)
                flat = [o for o in torch.utils._pytree.tree_leaves(out)
                        if isinstance(o, torch.Tensor) and o.is_floating_point()]
                col = []
                for o in flat:
                    t = fwAD.unpack_dual(o).tangent
                    col.append(torch.from_numpy(_dense(t, o)))
                cols.append(torch.cat(col).numpy() if col else np.zeros(0))
    except Exception as e:  # noqa: BLE001 - any failure means "forward mode unavailable here"
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return None, f"forward mode unavailable: {type(e).__name__}: {msg[:200]}"
    return np.stack(cols, axis=1) if cols else None, ""
