"""The check: trace -> exact model -> stratum -> verdict -> report.

:func:`check` is a linear pipeline of stages; each stage either adds to the
report or ends it with a verdict.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from . import framework

from ._exact import Q0, Q1, from_floats, from_tensor, is_zero, matmul2d, q, to_float, zeros
from ._kernel import KernelUndecided, kernel, rows_to_int
from .model import ExactModel, case_keys
from .report import Report, Verdict, Witness
from .strata import SolverLimits, find_direction_outside, in_convex_hull, membership
from .trace import prepare_inputs, trace

# assert_close's defaults, per dtype: (rtol, atol)
TOLERANCES = {
    torch.float64: (1e-7, 1e-7),
    torch.float32: (1.3e-6, 1e-5),
    torch.float16: (1e-3, 1e-5),
    torch.bfloat16: (1.6e-2, 1e-5),
}
_PRECISION_ORDER = [torch.bfloat16, torch.float16, torch.float32, torch.float64]


@dataclass
class Piece:
    J: np.ndarray            # exact (m, n)
    cone: list               # rows c: the piece near x is {x + h t : c.t > 0 for all c, small h}


def check(fn, *inputs, wrt=None, neighbours: bool = True, max_pieces: int = 8, forward_mode: bool = True,
          rtol: float | None = None, atol: float | None = None, rlimit: int = 5_000_000,
          seed: int = 0, name: str | None = None) -> Report:
    """Decide whether PyTorch's gradient of ``fn`` at ``inputs`` is one the mathematics allows.

    ``fn`` is an ``nn.Module`` (checked in the mode it is in: call ``.eval()``) or a
    function of one or more tensors returning tensors. Gradients are taken with
    respect to the floating-point inputs that require grad (all of them if none
    does), or those listed in ``wrt``.

    ``neighbours`` enumerates the full-dimensional strata around the input (at most
    ``max_pieces``) to decide the differentiable / true-gradient / Clarke fields.
    ``rtol``/``atol`` override the per-dtype tolerance used when float arithmetic
    does not replay the exact values. ``rlimit`` bounds every z3 query (resource
    units, machine independent).
    """
    clock = {}
    t0 = time.perf_counter()
    lim = SolverLimits(rlimit=rlimit, seed=seed)
    leaves, wrt = prepare_inputs(inputs, wrt)
    tr = trace(fn, leaves)
    model = ExactModel(tr)
    x_exact = [from_tensor(t) for t in leaves]
    ev = model.evaluate(x_exact)
    clock["trace+exact forward"] = time.perf_counter() - t0

    rep = Report(Verdict.UNKNOWN, program=name or _name(fn))
    rep.pattern = model.pattern(ev)
    n = sum(x_exact[i].size for i in wrt)
    rep.n_inputs = n

    # --- floats: did the framework replay the exact values, and take the same branches?
    ev_fw = model.evaluate(x_exact, framework_args=True)
    for node, d_ex, d_fw in zip(tr.nodes, ev.discs, ev_fw.discs):
        if [case_keys(a) for a in d_ex] != [case_keys(b) for b in d_fw]:
            rep.rounding_nodes.append(f"{node.label} at {node.where}")
    exact_forward, first_diff = _forward_is_exact(model, ev)
    for c in ev.ctxs:
        note = c.aux.get("note")
        if note and note not in rep.notes:
            rep.notes.append(note)
    dtypes = {leaves[i].dtype for i in wrt} | {t.dtype for t in tr.out_tensors if t is not None and t.is_floating_point()}
    low = min(dtypes, key=lambda d: _PRECISION_ORDER.index(d) if d in _PRECISION_ORDER else 0)
    rep.exact_mode = exact_forward and dtypes == {torch.float64} and not rep.notes
    if not rep.exact_mode:
        base = TOLERANCES.get(low, TOLERANCES[torch.float32])
        rep.tolerance = (rtol if rtol is not None else base[0], atol if atol is not None else base[1])
        if not exact_forward and first_diff:
            rep.notes.append(f"float forward differs from exact arithmetic first at {first_diff}")
    tol = rep.tolerance

    # --- exact derivatives on the stratum
    t1 = time.perf_counter()
    tans = model.linearize(ev, wrt)
    J_S = model.output_jacobian(ev, tans, n)
    m = J_S.shape[0]
    rep.n_outputs = m
    tie_rows, strict_vals = [], []
    for node, d in zip(tr.nodes, ev.discs):
        for disc in d:
            s = disc.signs()
            if (s == 0).any():
                tie_rows.append(rows_to_int(model.disc_rows(ev, tans, node.index, disc, n, select=(s == 0),
                                                            exact=False)))
            if len(strict_vals) < 16:
                strict_vals.extend(disc.values[s != 0][:16 - len(strict_vals)].tolist())
    if tie_rows and all(r.dtype == np.int64 for r in tie_rows):
        A = np.concatenate(tie_rows, axis=0)
    else:
        A = np.concatenate([r.astype(object) for r in tie_rows], axis=0) if tie_rows else np.zeros((0, n), dtype=object)
    A = A[np.asarray(A != 0).any(axis=1)] if A.shape[0] else A
    try:
        rank, N = kernel(A)
    except KernelUndecided as e:
        rank, N = None, None
        rep.reasons["tangent space"] = str(e)
    rep.tangent_dim = None if rank is None else n - rank
    clock["exact derivatives+tangent space"] = time.perf_counter() - t1

    x_flat = np.concatenate([x_exact[i].ravel() for i in wrt])
    A_spot = A[:2]          # a spot certificate: z3 re-checks a few constraints at x
    mem = membership(x_flat, A_spot, [sum((int(r[j]) * x_flat[j] for j in np.nonzero(r)[0]), Q0) for r in A_spot],
                     strict_vals, lim)
    if rank is None:
        mem = type(mem)(None, rep.reasons["tangent space"])

    # --- the framework
    t2 = time.perf_counter()
    J_fw = framework.reverse_jacobian(tr, wrt)
    rep.framework_jacobian = J_fw
    rep.stratum_jacobian = to_float(J_S)
    finite = bool(np.isfinite(J_fw).all())
    if forward_mode:
        J_fwd, why = framework.forward_jacobian(fn, tr, wrt)
        if J_fwd is None:
            rep.reasons["forward = reverse"] = why
        else:
            rep.forward_matches_reverse = _same(J_fwd, J_fw, rep.exact_mode, tol)
    clock["framework jacobians"] = time.perf_counter() - t2

    # --- the verdict
    if not finite:
        D_ok = False
        rep.mismatch = "the framework's gradient holds a non-finite value (NaN or inf)"
    elif rank is None:
        D_ok = False
    else:
        J_fw_e = from_floats(J_fw)
        D = J_fw_e - J_S
        DN = _times_kernel(D, N)
        D_ok = is_zero(DN)
        if not D_ok and rep.exact_mode:
            # The forward replays exact values, but the backward may still round (a
            # 3-way tie splits the gradient into thirds). A difference within float64
            # rounding is reported as such, with the tolerance, never as exact.
            fallback = (rtol if rtol is not None else TOLERANCES[torch.float64][0],
                        atol if atol is not None else TOLERANCES[torch.float64][1])
            ok, _ = _tolerant_compare(J_fw, J_S, N, fallback, rank)
            if ok:
                rep.exact_mode, rep.tolerance, tol = False, fallback, fallback
                rep.notes.append("the framework's backward pass rounds (its gradient is not exactly representable); "
                                 "gradients compared with the float64 tolerance")
        if not D_ok and not rep.exact_mode:
            D_ok, rep.mismatch = _tolerant_compare(J_fw, J_S, N, tol, rank)
        elif not D_ok:
            rep.mismatch = _exact_mismatch(J_fw, J_S, N, DN, rank)
    lin = framework.check_linearity(tr, wrt, J_fw, tol or TOLERANCES[torch.float64]) if finite else None
    if lin is not None and not lin.ok:
        rep.verdict = Verdict.NONLINEAR_VJP
        rep.mismatch = lin.detail
    elif rep.rounding_nodes:
        rep.verdict = Verdict.ROUNDING_BRANCH
    elif mem.sat is None:
        rep.verdict = Verdict.UNKNOWN
        rep.reasons["membership"] = mem.reason
    elif mem.sat is False:  # pragma: no cover - would be a bug in the exact model
        rep.verdict = Verdict.UNKNOWN
        rep.reasons["membership"] = "z3 found the input outside its own stratum (an inconsistency in mtcheck)"
    elif rank == 0:
        rep.verdict = Verdict.SMOOTH_OK if D_ok else Verdict.SMOOTH_WRONG
    else:
        rep.verdict = Verdict.ASSOCIATED if D_ok else Verdict.NOT_ASSOCIATED
    if finite and rep.verdict in (Verdict.NOT_ASSOCIATED, Verdict.SMOOTH_WRONG):
        rep.witness = _witness(model, ev, x_exact, wrt, J_fw_e, J_S, N, DN if rep.exact_mode else _float_dn(J_fw, J_S, N))
    if rank is None and rep.verdict not in (Verdict.NONLINEAR_VJP, Verdict.ROUNDING_BRANCH):
        rep.verdict = Verdict.UNKNOWN

    # --- neighbouring strata: differentiable, true gradient, Clarke
    t3 = time.perf_counter()
    if rank == 0:
        rep.differentiable = True
        rep.true_gradient = rep.stratum_jacobian
        rep.true_gradient_match = D_ok if finite else False
        rep.clarke = rep.true_gradient_match if m == 1 else None
        rep.pieces = 1
    elif neighbours and finite and rank is not None and not _piecewise_affine(model, tans):
        rep.reasons["differentiable"] = ("the program is not piecewise affine (it multiplies input-dependent values), "
                                         "so Jacobians vary inside a stratum; the neighbouring-strata test is not done")
        rep.reasons["Clarke"] = "needs the neighbouring strata (not enumerated)"
    elif neighbours and finite and rank is not None:
        _neighbours(rep, fn, tr, model, x_exact, leaves, wrt, n, m, J_fw, lim, max_pieces, seed, tol)
    else:
        rep.reasons["differentiable"] = "neighbouring strata not enumerated (neighbours=False)"
    if m != 1 and rep.clarke is None:
        rep.reasons.setdefault("Clarke", "defined here for scalar outputs only")
    clock["neighbouring strata"] = time.perf_counter() - t3
    rep.timings = clock
    rep.replay = _replay_text(rep.program, inputs, wrt)
    return rep


_BILINEAR = ("aten.mul.", "aten.div.", "aten.mm.", "aten.bmm.", "aten.matmul.", "aten.mv.", "aten.dot.",
             "aten.addmm.", "aten.addmv.", "aten.baddbmm.", "aten.addbmm.", "aten.convolution.", "aten._convolution.",
             "aten.mul_.", "aten.div_.", "aten._prelu_kernel.")
_NONAFFINE = ("aten.pow.", "aten.square.", "aten.hardswish.", "aten.smooth_l1_loss.", "aten.huber_loss.",
              "aten.mse_loss.")


def _piecewise_affine(model, tans) -> bool:
    """True when, with the pattern fixed, every node is an affine function of the inputs:
    no product of two input-dependent values, no polynomial op."""
    import torch.utils._pytree as pytree

    from .trace import Ref

    for node in model.trace.nodes:
        if node.op.startswith(_NONAFFINE):
            return False
        if node.op.startswith("aten.multi_margin_loss.") and len(node.args) > 2 and node.args[2] == 2:
            return False                  # p = 2 squares the hinge
        if node.op.startswith(_BILINEAR):
            live = [a for a in pytree.tree_leaves(node.args, is_leaf=lambda v: isinstance(v, Ref))
                    if isinstance(a, Ref) and tans.get(a) is not None]
            if len(live) > 1 or (node.op.startswith(("aten.div.", "aten.div_.")) and len(node.args) > 1
                                 and isinstance(node.args[1], Ref) and tans.get(node.args[1]) is not None):
                return False
    return True


def _name(fn) -> str:
    if isinstance(fn, torch.nn.Module):
        return type(fn).__name__
    return getattr(fn, "__qualname__", repr(fn))


def _forward_is_exact(model: ExactModel, ev):
    for node in model.trace.nodes:
        rec = node.recorded
        recs = rec if isinstance(rec, tuple) else (rec,)
        for j, r in enumerate(recs):
            if not isinstance(r, torch.Tensor) or not r.is_floating_point() or r.numel() == 0:
                continue
            ex = ev.values.get(_ref(node.index, j))
            if ex is None or ex.dtype != object:
                continue
            fw = from_tensor(r)
            if fw.shape != ex.shape or (fw != ex).any():
                return False, f"{node.label} at {node.where}"
    return True, ""


def _ref(i, j):
    from .trace import Ref

    return Ref("node", i, j)


def _same(a: np.ndarray, b: np.ndarray, exact: bool, tol) -> bool:
    if a.shape != b.shape:
        return False
    if exact or tol is None:
        return bool(np.array_equal(a, b))
    rtol, atol = tol
    return bool((np.abs(a - b) <= atol + rtol * np.abs(b)).all())


def _times_kernel(D, N) -> np.ndarray:
    """D @ N exactly, for an exact (m, n) rational D and an fmpz_mat kernel basis N: (m, n - rank) fmpq."""
    m = D.shape[0]
    if N.ncols() == 0:
        return zeros((m, 0))
    Di = rows_to_int(D)
    scale = [_row_scale(D[i], Di[i]) for i in range(m)]
    P = N.left_mul(Di)
    out = zeros((m, N.ncols()))
    for i in range(m):
        for j in range(N.ncols()):
            v = int(P[i, j])
            if v:
                out[i, j] = q(v) * scale[i]
    return out


def _row_scale(row, ints):
    """The rational s with row = s * ints (rows_to_int scaled the row by 1/s)."""
    for v, k in zip(row.tolist(), ints.tolist()):
        if k:
            return q(v) / k
    return Q1


def _kernel_array(N) -> np.ndarray:
    """An fmpz_mat kernel basis as an (n, d) fmpq object array."""
    n, d = N.nrows(), N.ncols()
    out = zeros((n, d))
    ent = N.entries()
    for i in range(n):
        for j in range(d):
            v = int(ent[i * d + j])
            if v:
                out[i, j] = q(v)
    return out


def _kernel_float(N) -> np.ndarray:
    """A kernel basis as float64 columns, each scaled so that its largest entry has 60 bits
    (the columns of an integer kernel can hold numbers far beyond float range)."""
    n, d = N.nrows(), N.ncols()
    ent = [int(v) for v in N.entries()]
    out = np.zeros((n, d))
    for j in range(d):
        col = ent[j::d]
        shift = max(max(abs(v).bit_length() for v in col) - 60, 0)
        out[:, j] = [float(v >> shift) if v >= 0 else -float((-v) >> shift) for v in col]
    return out


def _orthonormal(N) -> np.ndarray:
    Nf = _kernel_float(N) if hasattr(N, "ncols") else to_float(N)
    if Nf.shape[1] == 0:
        return Nf
    qm, _ = np.linalg.qr(Nf)
    return qm


def _tolerant_compare(J_fw, J_S, N, tol, rank):
    """assert_close-style comparison of the framework's and the program's rates along the tangent space."""
    rtol, atol = tol
    Qn = np.eye(J_fw.shape[1]) if rank == 0 else _orthonormal(N)
    a = J_fw @ Qn
    b = to_float(J_S) @ Qn
    diff = np.abs(a - b)
    bad = diff > atol + rtol * np.abs(b)
    if not bad.any():
        return True, ""
    return False, _mismatch_text(a, b, diff, bad, tol, rank)


def _mismatch_text(a, b, diff, bad, tol, rank):
    total = bad.size
    k = int(bad.sum())
    i, j = np.unravel_index(int(np.argmax(np.where(bad, diff, -1))), diff.shape)
    rel = diff / np.maximum(np.abs(b), 1e-300)
    ri, rj = np.unravel_index(int(np.argmax(np.where(bad, rel, -1))), rel.shape)
    where = "(output {}, input {})" if rank == 0 else "(output {}, tangent direction {})"
    what = ("framework Jacobian vs the program's Jacobian" if rank == 0 else
            "framework Jacobian vs the program's, along an orthonormal basis of the stratum's tangent space")
    tol_txt = "exact comparison, no tolerance" if tol is None else f"rtol={tol[0]:g}, atol={tol[1]:g}"
    return (f"Compared: {what} ({tol_txt}).\n"
            f"Mismatched elements: {k} / {total} ({100.0 * k / total:.1f}%)\n"
            f"Greatest absolute difference: {diff[i, j]:.6g} at index {where.format(i, j)}: "
            f"framework {a[i, j]:.17g}, program {b[i, j]:.17g}\n"
            f"Greatest relative difference: {rel[ri, rj]:.6g} at index {where.format(ri, rj)}")


def _exact_mismatch(J_fw, J_S, N, DN, rank):
    Jsf = to_float(J_S)
    if rank == 0:
        a, b = J_fw, Jsf
    else:
        Nf = _kernel_float(N)
        a, b = J_fw @ Nf, Jsf @ Nf
    diff = np.abs(a - b)
    bad = np.asarray(DN != 0, dtype=bool) if rank else (from_floats(J_fw) != J_S)
    return _mismatch_text(a, b, diff, np.asarray(bad, dtype=bool), None, rank)


def _float_dn(J_fw, J_S, N):
    if N.ncols() == 0:
        return zeros((J_fw.shape[0], 0))
    Nf = _kernel_float(N)
    return from_floats(J_fw @ Nf - to_float(J_S) @ Nf)


def _apply_step(x_exact, wrt, t, h):
    out = list(x_exact)
    off = 0
    for i in wrt:
        s = x_exact[i].size
        out[i] = np.asarray(x_exact[i].ravel() + t[off:off + s] * h, dtype=object).reshape(x_exact[i].shape)
        off += s
    return out


def _witness(model, ev, x_exact, wrt, J_fw_e, J_S, N, DN) -> Witness:
    absdn = np.vectorize(lambda v: abs(q(v)), otypes=[object])(DN) if DN.size else DN
    i, j = np.unravel_index(int(np.argmax(to_float(absdn))), DN.shape)
    t = np.array([q(v) for v in N.column(int(j))], dtype=object)
    fw_rate = matmul2d(J_fw_e[i:i + 1], t[:, None])[0, 0]
    s_rate = matmul2d(J_S[i:i + 1], t[:, None])[0, 0]
    w = Witness(int(i), list(t), fw_rate, s_rate)
    sig = ExactModel.signature(ev)
    f0 = model.output_values(ev)[i]
    k0 = max(max(abs(int(v.p)).bit_length() for v in t.tolist()) - 1, 0)
    for k in range(k0, k0 + 64):
        h = q(1) / (1 << k)
        y = _apply_step(x_exact, wrt, t, h)
        try:
            ev2 = model.evaluate(y)
        except Exception:  # noqa: BLE001 - a replay error just means no exact values to show
            break
        if ExactModel.signature(ev2) == sig:
            w.h, w.f_x, w.f_x_plus_ht = h, f0, model.output_values(ev2)[i]
            break
    else:
        w.note = f"no dyadic step h >= 2^-{k0 + 63} stays in the stratum along t"
    return w


def _neighbours(rep, fn, tr, model, x_exact, leaves, wrt, n, m, J_fw, lim, max_pieces, seed, tol):
    rng = np.random.default_rng(seed)
    pieces: list[Piece] = []
    complete = None
    reason = ""
    for it in range(max_pieces + 1):
        if it == 0:
            t = [q(int(v)) for v in rng.integers(-8, 9, size=n)]
            if all(v == 0 for v in t):
                t[0] = Q1
        else:
            ans = find_direction_outside([p.cone for p in pieces], n, lim)
            if ans.sat is False:
                complete = True
                break
            if ans.sat is None:
                reason = ans.reason
                break
            t = _integerize(ans.model)
            t = _perturb(t, [p.cone for p in pieces], rng)
        if it == max_pieces:
            reason = f"more than {max_pieces} neighbouring strata (max_pieces budget)"
            break
        piece, why = _probe(fn, tr, model, x_exact, leaves, wrt, n, t, rng)
        if piece is None:
            reason = why
            break
        pieces.append(piece)
        distinct = _distinct([p.J for p in pieces])
        if len(distinct) > 1 and m != 1:
            break   # not differentiable; Clarke is for scalar outputs only
    rep.pieces = len(pieces)
    distinct = _distinct([p.J for p in pieces])
    if len(distinct) > 1:
        rep.differentiable = False
        rep.reasons["differentiable"] = (f"{len(distinct)} different Jacobians on neighbouring full-dimensional strata"
                                         + ("" if complete else " (found before the enumeration ended)"))
    elif complete and distinct:
        rep.differentiable = True
        rep.true_gradient = to_float(distinct[0])
        rep.true_gradient_match = _same(J_fw, rep.true_gradient, rep.exact_mode, tol) if not rep.exact_mode else \
            bool((from_floats(J_fw) == distinct[0]).all())
    else:
        rep.reasons["differentiable"] = reason or "enumeration of neighbouring strata incomplete"
    if rep.differentiable is not True:
        rep.reasons.setdefault("equals true gradient", "no true gradient: not differentiable or undecided")
    if m == 1 and pieces:
        pts = [J[0] for J in distinct]
        target = from_floats(J_fw[0])
        slack = None
        if not rep.exact_mode and tol is not None:
            rtol_, atol_ = tol
            slack = from_floats(atol_ + rtol_ * np.abs(J_fw[0]))
            rep.reasons["Clarke"] = f"decided exactly for the framework's gradient within rtol={rtol_:g}, atol={atol_:g}"
        ans = in_convex_hull(pts, target, lim, slack)
        if ans.sat is True:
            rep.clarke = True
        elif ans.sat is False and complete:
            rep.clarke = False
        else:
            rep.reasons["Clarke"] = ans.reason or "not in the hull of the strata found so far; enumeration incomplete"


def _distinct(Js):
    out = []
    for J in Js:
        if not any((J == K).all() for K in out):
            out.append(J)
    return out


def _integerize(vals):
    import math

    den = 1
    for v in vals:
        den = den * int(v.q) // math.gcd(den, int(v.q))
    return [q(int(v.p) * (den // int(v.q))) for v in vals]


def _perturb(t, cones, rng):
    """Scale t up and add small noise so that it lands off every boundary, if it stays outside."""
    tt = [v * 64 + int(r) for v, r in zip(t, rng.integers(-1, 2, size=len(t)))]
    arr = np.array(tt, dtype=object)
    for cone in cones:
        if not any(sum((c * arr).tolist(), Q0) < 0 for c in cone):
            return t
    return tt


def _probe(fn, tr, model, x_exact, leaves, wrt, n, t, rng):
    """The full-dimensional stratum entered from x along direction t: (Piece, '') or (None, why)."""
    t = np.array(t, dtype=object)
    why = "no probe point found along the direction"
    for attempt in range(3):
        for k in range(2, 48, 2):
            h = q(1) / (1 << k)
            y = _apply_step(x_exact, wrt, t, h)
            if tr.has_branches():
                yt = []
                ok = True
                for i, (leaf, yv) in enumerate(zip(leaves, y)):
                    if i in wrt:
                        f = torch.tensor(to_float(yv), dtype=leaf.dtype)
                        if not (from_tensor(f) == yv).all():
                            ok = False
                            break
                        yt.append(f)
                    else:
                        yt.append(leaf.detach())
                if not ok:
                    why = "a probe point is not representable in the input dtype"
                    continue
                from .trace import prepare_inputs as _prep

                lv, _ = _prep(yt, wrt)
                trp = trace(fn, lv)
                mp = ExactModel(trp)
            else:
                mp = model
            evp = mp.evaluate(y)
            one = mp.linearize(evp, wrt, t[None, :])
            adjacent = True
            for node, d in zip(mp.trace.nodes, evp.discs):
                for disc in d:
                    rate = mp.disc_rows(evp, one, node.index, disc, 1)[:, 0]
                    vp = disc.values
                    dx = vp - rate * h
                    s = disc.signs()
                    if ((s > 0) & (dx < 0)).any() or ((s < 0) & (dx > 0)).any():
                        adjacent = False
                        break
                if not adjacent:
                    break
            if not adjacent:
                continue
            full = mp.linearize(evp, wrt)
            cone, generic = [], True
            for node, d in zip(mp.trace.nodes, evp.discs):
                for disc in d:
                    s = disc.signs()
                    if (s == 0).any():
                        tied = rows_to_int(mp.disc_rows(evp, full, node.index, disc, n, select=(s == 0), exact=False))
                        if any(any(v != 0 for v in r) for r in tied):
                            generic = False
                            break
                    rate = mp.disc_rows(evp, one, node.index, disc, 1)[:, 0]
                    active = (s != 0) & (disc.values - rate * h == 0)
                    if active.any():
                        rows = rows_to_int(mp.disc_rows(evp, full, node.index, disc, n, select=active, exact=False))
                        for r, sg in zip(rows, s[active]):
                            cone.append(np.asarray([v * int(sg) for v in r], dtype=object))
                if not generic:
                    break
            if not generic:
                why = "probe points along the direction sit on another kink"
                break
            J = mp.output_jacobian(evp, full, n)
            return Piece(J, cone), ""
        t = np.array([v * 16 + int(r) for v, r in zip(t.tolist(), rng.integers(-1, 2, size=n))], dtype=object)
    return None, why


def _replay_text(name, inputs, wrt) -> str:
    parts = []
    for x in inputs:
        if x.numel() > 64:
            return (f"Replay: mtcheck.check({name}, ...) with inputs of shapes "
                    f"{[tuple(v.shape) for v in inputs]} (save them with mtcheck's corpus to replay exactly)")
        vals = ", ".join(float(v).hex() if x.is_floating_point() else str(int(v))
                         for v in x.detach().reshape(-1).tolist())
        parts.append(f"    torch.tensor([{vals}], dtype={x.dtype}).reshape({tuple(x.shape)}),")
    return "Replay:\n  mtcheck.check(\n    " + name + ",\n" + "\n".join("  " + p for p in parts) + "\n  )"
