"""The check: trace -> exact model -> stratum -> verdict -> report.

:func:`check` is a linear pipeline of stages; each stage either adds to the
report or ends it with a verdict.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import flint
import numpy as np
import torch

from . import framework

from . import certify
from ._exact import Q0, Q1, from_floats, from_tensor, matmul2d, q, to_float
from .certify import rows_to_int
from .model import ExactModel, has_balls, same_cases
from fractions import Fraction
from .errors import OutsideTheoryError, UndecidedError
from .report import Report, Verdict, Witness
from .strata import SolverLimits, find_direction_outside, in_convex_hull
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
          seed: int = 0, name: str | None = None, max_rank: int = 400, model=None, batch=None) -> Report:
    """Decide whether PyTorch's gradient of ``fn`` at ``inputs`` is one the mathematics allows.

    ``fn`` is an ``nn.Module`` (checked in the mode it is in: call ``.eval()``) or a
    function of one or more tensors returning tensors. Gradients are taken with
    respect to the floating-point inputs that require grad (all of them if none
    does), or those listed in ``wrt``.

    ``neighbours`` decides the differentiable / true-gradient / Clarke fields (one-sided
    directional derivatives, and for small programs an enumeration of at most
    ``max_pieces`` neighbouring strata). ``rtol``/``atol`` override the per-dtype tolerance
    used when float arithmetic does not replay the exact values. ``rlimit`` bounds every z3
    query (resource units, machine independent). ``max_rank`` bounds the exact linear solves
    of the failure path (a witness or a nonzero Y); past it the verdict is ``UNKNOWN``.

    With respect to parameters (:mod:`mtcheck.params`, ``docs/parameters.md``): ``wrt`` may also be
    ``"parameters"`` (the module's parameters that require grad), ``"inputs"``, ``"all"``, a parameter
    name or a list of names (and input positions); ``fn`` must then be an ``nn.Module``. The loss
    form ``check(loss_fn, model=net, batch=(x, y), wrt="parameters")`` checks ``loss_fn(net(x), y)``
    (``wrt`` defaults to ``"parameters"`` there). ``report.n_inputs`` counts the checked scalars and
    ``report.wrt_names`` lists the checked tensors. Any other ``wrt`` raises ``CheckInputError``.
    """
    from . import params as _params

    if model is not None or batch is not None or _params.names_parameters(wrt):
        return _params.check_params(fn, inputs, wrt, model=model, batch=batch, neighbours=neighbours,
                                    max_pieces=max_pieces, forward_mode=forward_mode, rtol=rtol, atol=atol,
                                    rlimit=rlimit, seed=seed, name=name, max_rank=max_rank)
    _params.validate_positions(wrt, len(inputs))
    _validate(neighbours=neighbours, max_pieces=max_pieces, forward_mode=forward_mode, rtol=rtol, atol=atol,
              rlimit=rlimit, seed=seed, max_rank=max_rank)
    threads = torch.get_num_threads()
    try:
        # the framework's side is many tiny VJPs and JVPs: intra-op threads only contend (on 2 cores
        # under load, 10x slower); the user's setting is restored on the way out
        torch.set_num_threads(1)
        return _check(fn, inputs, wrt, neighbours, max_pieces, forward_mode, rtol, atol, rlimit, seed, name,
                      max_rank)
    except MemoryError as e:
        # the exact model of a program too large for this machine: no verdict, never a pass
        rep = Report(Verdict.UNKNOWN, program=name or _name(fn))
        rep.reasons["budget"] = ("out of memory in the exact evaluation of the program"
                                 + (f" ({str(e)[:160]})" if str(e) else "") + ": not decided")
        return rep
    finally:
        torch.set_num_threads(threads)


def _check(fn, inputs, wrt, neighbours, max_pieces, forward_mode, rtol, atol, rlimit, seed, name, max_rank):
    clock = {}
    t0 = time.perf_counter()
    lim = SolverLimits(rlimit=rlimit, seed=seed)
    leaves, wrt = prepare_inputs(inputs, wrt)
    tr = trace(fn, leaves)
    model = ExactModel(tr)
    x_exact = [from_tensor(t) for t in leaves]
    rep = Report(Verdict.UNKNOWN, program=name or _name(fn))
    try:
        ev = model.evaluate(x_exact)
    except UndecidedError as e:
        # an irrational discriminant whose enclosure contains 0: never decided by a tolerance
        rep.reasons["undecided"] = f"the case of {e.op} at {e.where} is not decided: {e.why}"
        rep.n_inputs = sum(x_exact[i].size for i in wrt)
        rep.timings = {"trace+exact forward": time.perf_counter() - t0}
        rep.replay = _replay_text(rep.program, inputs, wrt)
        return rep
    clock["trace+exact forward"] = time.perf_counter() - t0

    rep.pattern = model.pattern(ev)
    n = sum(x_exact[i].size for i in wrt)
    rep.n_inputs = n

    # --- floats: did the framework replay the exact values, and take the same branches?
    ev_fw = model.evaluate(x_exact, framework_args=True)
    rounding = []
    for node, d_ex, d_fw in zip(tr.nodes, ev.discs, ev_fw.discs):
        if not same_cases(d_ex, d_fw):
            rep.rounding_nodes.append(f"{node.label} at {node.where}")
            rounding.append((node, d_ex, d_fw))
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

    # --- exact derivatives on the stratum: J_S (reverse mode when it is cheaper), the tie rows' support
    t1 = time.perf_counter()
    try:
        J_S, tans = _stratum_jacobian(model, ev, wrt, n)
    except certify.Budget as e:
        rep.reasons["budget"] = str(e)
        rep.timings = clock
        rep.replay = _replay_text(rep.program, inputs, wrt)
        return rep
    J_S, J_rad = _enclosure(J_S)
    if J_rad is not None:
        rep.enclosure_radius = float(max(J_rad, default=0))
        rep.notes.append(f"smooth ops with irrational values: J_S is enclosed (largest row L1 radius "
                         f"{rep.enclosure_radius:.3g}), and each row's radius is added to its tolerance")
    m = J_S.shape[0]
    rep.n_outputs = m
    ties = certify.find_ties(model, ev, wrt)
    if ties.support_note:
        rep.notes.append(ties.support_note)
    clock["exact derivatives"] = time.perf_counter() - t1

    # --- the framework
    t2 = time.perf_counter()
    for note in framework.not_differentiated(tr, model.live_refs(wrt)):
        rep.notes.append(note)
    J_fw = framework.reverse_jacobian(tr, wrt)
    rep.framework_jacobian = J_fw
    rep.stratum_jacobian = certify.QMat.of(J_S).floats()
    finite = bool(np.isfinite(J_fw).all())
    J_fwd = None
    if forward_mode:
        J_fwd, why = framework.forward_jacobian(fn, tr, wrt)
        if J_fwd is None:
            rep.reasons["forward = reverse"] = why
        else:
            rep.forward_matches_reverse = _same(J_fwd, J_fw, rep.exact_mode, rep.tolerance)
    # a rounding backward is additive only up to rounding relative to the cotangents inside it, which
    # can be far larger than a coordinate they cancel to: in tolerance mode additivity is compared
    # against the size of the gradient vectors (framework.check_linearity), coordinate by coordinate
    # only when the forward is exact
    lin_tol, exact_scaling = rep.tolerance or TOLERANCES[torch.float64], True
    normwise = rep.tolerance is not None
    if low in (torch.float16, torch.bfloat16):
        # a low-precision backward rounds at every node (relative 2^-11 or 2^-8 each): the linearity
        # test allows that much accumulated rounding, so only a real nonlinearity is reported
        eps = float(torch.finfo(low).eps)
        lin_tol = (max(lin_tol[0], eps * (4 + len(tr.nodes))), max(lin_tol[1], float(torch.finfo(low).tiny) * 64))
        exact_scaling = False
    if has_balls(ev):
        # irrational values: the framework's backward approximates transcendental functions, and
        # may choose its approximation by the size of the cotangent (matrix_exp's scaling and
        # squaring does), so doubling need not commute with it exactly: compared with the tolerance
        exact_scaling = False
    lin = framework.check_linearity(tr, wrt, J_fw, lin_tol, exact_scaling, normwise) if finite else None
    clock["framework jacobians"] = time.perf_counter() - t2

    # --- the verdict and its certificate
    t3 = time.perf_counter()
    if lin is not None and not lin.ok:
        rep.verdict = Verdict.NONLINEAR_VJP
        rep.mismatch = lin.detail
        rep.certificate = _linearity_certificate(lin, n, m)
    elif rounding:
        rep.verdict = Verdict.ROUNDING_BRANCH
        rep.certificate = _rounding_certificate(rounding, n, m)
    elif not finite:
        # a NaN or inf gradient is wrong wherever the program is Lipschitz; the entry is its own proof
        bad = np.argwhere(~np.isfinite(J_fw))[0]
        rep.verdict = Verdict.NOT_ASSOCIATED if ties.k else Verdict.SMOOTH_WRONG
        rep.mismatch = (f"the framework's gradient holds a non-finite value ({J_fw[tuple(bad)]!r}) at index "
                        f"(output {bad[0]}, input {bad[1]}); the program is Lipschitz, so every gradient is finite")
        rep.reasons["certificate"] = "none needed: the non-finite entry of the framework's Jacobian is the proof"
    else:
        try:
            _decide(rep, model, ev, wrt, x_exact, n, m, J_S, J_fw, ties, max_rank, J_rad)
        except certify.Budget as e:
            rep.verdict = Verdict.UNKNOWN
            rep.reasons["budget"] = str(e)
            rep.certificate = None         # an unfinished proof is no certificate
        except MemoryError as e:
            rep.verdict = Verdict.UNKNOWN
            rep.reasons["budget"] = (f"out of memory while deciding the verdict ({n} inputs, {ties.k} tie rows"
                                     f"{': ' + str(e)[:120] if str(e) else ''})")
            rep.certificate = None
        if rep.exact_mode and not rep.verdict.passed:
            # The forward replays exact values, but the backward may still round (a 3-way tie splits
            # the gradient into thirds). A difference within float64 rounding is reported as such,
            # with the tolerance, never as exact.
            alt = Report(Verdict.UNKNOWN)
            alt.tolerance = (rtol if rtol is not None else TOLERANCES[torch.float64][0],
                             atol if atol is not None else TOLERANCES[torch.float64][1])
            try:
                _decide(alt, model, ev, wrt, x_exact, n, m, J_S, J_fw, ties, max_rank)
            except (certify.Budget, MemoryError):
                pass
            if alt.verdict.passed:
                rep.exact_mode, rep.tolerance = False, alt.tolerance
                if forward_mode and J_fwd is not None:
                    # the backward rounds, so forward and reverse are compared at that tolerance too
                    rep.forward_matches_reverse = _same(J_fwd, J_fw, False, rep.tolerance)
                for k in ("verdict", "certificate", "tangent_dim", "mismatch", "witness"):
                    setattr(rep, k, getattr(alt, k))
                rep.reasons.pop("budget", None)
                rep.reasons.update(alt.reasons)
                rep.notes.extend(alt.notes)
                rep.notes.append("the framework's backward pass rounds (its gradient is not exactly representable); "
                                 "gradients compared with the float64 tolerance")
    if rep.forward_matches_reverse is False:
        rep.reasons["forward = reverse"] = _forward_reverse_detail(J_fwd, J_fw, rep.stratum_jacobian, rep.verdict)
    if rep.certificate is not None:
        from .certificate import verify

        res = verify(rep.certificate)
        rep.certificate_ok = res.ok
        rep.certificate_check = res.reason
        if not res.ok:   # pragma: no cover - an engine bug: never report an unproven verdict
            rep.reasons["certificate"] = f"the independent checker rejected the certificate: {res.reason}"
            rep.verdict = Verdict.UNKNOWN
    clock["verdict+certificate"] = time.perf_counter() - t3

    # --- neighbouring strata: differentiable, true gradient, Clarke
    t4 = time.perf_counter()
    if rep.verdict in (Verdict.SMOOTH_OK, Verdict.SMOOTH_WRONG):
        rep.differentiable = True
        rep.true_gradient = rep.stratum_jacobian
        rep.true_gradient_match = rep.verdict is Verdict.SMOOTH_OK
        rep.clarke = rep.true_gradient_match if m == 1 else None
        rep.pieces = 1
    elif not neighbours:
        rep.reasons["differentiable"] = "neighbouring strata not enumerated (neighbours=False)"
    elif not finite or rep.verdict is Verdict.UNKNOWN:
        rep.reasons["differentiable"] = "not decided (the verdict is not decided)"
    elif not _piecewise_affine(model, tans if tans is not None else {r: True for r in model.live_refs(wrt)}):
        rep.reasons["differentiable"] = ("the program is not piecewise affine (it multiplies input-dependent values, "
                                         "or has smooth nonlinear ops), "
                                         "so Jacobians vary inside a stratum; the neighbouring-strata test is not done")
        rep.reasons["Clarke"] = "needs the neighbouring strata (not enumerated)"
    elif has_balls(ev):
        rep.reasons["differentiable"] = ("piecewise affine, but with irrational coefficients (enclosures, e.g. eval "
                                         "batch norm's 1/sqrt(var + eps)): the neighbouring strata are decided by z3 "
                                         "over exact rationals, so they are not enumerated")
        rep.reasons["Clarke"] = "needs the neighbouring strata (not enumerated)"
    else:
        tol = rep.tolerance
        if n <= SMALL_N:
            _neighbours(rep, fn, tr, model, x_exact, leaves, wrt, n, m, J_fw, lim, max_pieces, seed, tol)
        else:
            _directional(rep, fn, tr, model, ev, x_exact, leaves, wrt, n, m, seed, max_pieces)
    if m != 1 and rep.clarke is None:
        rep.reasons.setdefault("Clarke", "defined here for scalar outputs only")
    clock["neighbouring strata"] = time.perf_counter() - t4
    rep.timings = clock
    rep.replay = _replay_text(rep.program, inputs, wrt)
    return rep


FORWARD_ENTRIES = 20_000_000   # exact tangent entries a forward-mode Jacobian may hold
SMALL_N = 64        # up to this many inputs the neighbouring strata are enumerated with z3
EXACT_RANK_ENTRIES = 20_000   # tie matrices up to this many entries get an exact rank (the tangent dimension)


def _validate(**opts):
    from .errors import CheckInputError

    for k in ("neighbours", "forward_mode"):
        if not isinstance(opts[k], bool):
            raise CheckInputError(f"{k} must be True or False, not {opts[k]!r}")
    for k in ("max_pieces", "rlimit", "seed", "max_rank"):
        v = opts[k]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or (k != "seed" and v < 1) or v < 0:
            raise CheckInputError(f"{k} must be a {'non-negative' if k == 'seed' else 'positive'} integer, not {v!r}")
    for k in ("rtol", "atol"):
        v = opts[k]
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0):
            raise CheckInputError(f"{k} must be a finite number >= 0 (or None for the dtype's default), not {v!r}")


def _stratum_jacobian(model, ev, wrt, n):
    """J_S exactly: reverse mode (one pass per output) when outputs are fewer than inputs and
    every rule on the way has a reverse rule, else forward mode. Returns (J_S, forward tangents or None)."""
    from .model import NoReverse

    seeds, m = model.output_seeds(ev)
    why = ""
    if m <= n:
        try:
            return model.reverse(ev, wrt, seeds, m, as_fx=True), None
        except NoReverse as e:
            why = f" ({e})"
    big = max((int(np.size(v)) for v in ev.values.values() if isinstance(v, np.ndarray)), default=1)
    if n * big > FORWARD_ENTRIES:
        raise certify.Budget(f"the forward-mode Jacobian ({n} directions through values of up to {big} entries) "
                             f"is past the budget of {FORWARD_ENTRIES:,} exact tangent entries; reverse mode "
                             f"was not available{why}")
    tans = model.linearize(ev, wrt)
    return model.output_jacobian(ev, tans, n), tans


def _decide(rep, model, ev, wrt, x_exact, n, m, J_S, J_fw, ties, max_rank, J_rad=None):
    """The verdict by row space (see :mod:`mtcheck.certify`) and its certificate. ``J_rad``: for an
    enclosed J_S (midpoints given), each row's L1 radius, added to that row's tolerance."""
    QMat = certify.QMat
    tol = None if rep.exact_mode else rep.tolerance
    Js = QMat.of(J_S)
    Jf = QMat.of_floats(J_fw)
    D = Jf - Js
    tols = certify.row_tolerances(Js, tol)
    if J_rad is not None:
        if tol is None:   # pragma: no cover - an enclosure is never exact mode
            raise certify.Budget("an enclosed J_S cannot be compared in exact mode")
        tols = [t + r for t, r in zip(tols, J_rad)]
    l1 = D.row_l1()
    small = all(v <= t for v, t in zip(l1, tols)) if tol is not None else all(v == 0 for v in l1)
    cert = {"format": "mtcheck-certificate", "version": 1, "n": n, "m": m,
            "tolerance": None if tol is None else {"rtol": certify.rational(q(tol[0])),
                                                   "atol": certify.rational(q(tol[1]))},
            "J_fw": Jf.encode(), "J_S": Js.encode(),
            "tie_rows": None, "nonzero_tie_row": None, "Y": None, "witness": None}
    if J_rad is not None:
        den = _den_of(J_rad)           # once: per entry it made this quadratic in m (1.9 s at m = 1024)
        cert["J_S_radius"] = {"den": den, "num": [int(r * den) for r in J_rad]}
    rep.certificate = cert

    # is T(x) a proper subspace? one nonzero tie row proves it (found by residues, then exact);
    # all tie rows exactly zero prove the converse
    nonzero = None
    k = ties.k
    A = None
    for start in range(0, min(k, 64), 8):
        T = certify.tie_matrix(model, ev, wrt, ties, n, start, 8)
        nonzero = _first_nonzero_row(T)
        if nonzero is not None:
            break
    if nonzero is None and k:
        A = certify.tie_matrix(model, ev, wrt, ties, n)
        nonzero = _first_nonzero_row(A)
        if nonzero is None and _enclosed(A):
            undecided = int((~A.proven_zero()).sum())
            if undecided:
                raise certify.Budget(f"{undecided} tie rows pass through irrational values and their enclosures "
                                     "contain 0 without being exactly 0: whether T(x) = R^n is not decided")
        elif nonzero is None:
            nz = np.nonzero(A.nonzero_rows())[0]             # residues mod one prime all zero: look exactly
            nonzero = (A.rows([int(nz[0])])[0], None) if nz.size else None
    if nonzero is None:
        # every tie row is zero: the stratum is open, T(x) = R^n. Rows shown exactly zero are left out
        # of the certificate like structurally zero ones (the checker trusts the tie rows it is given)
        rep.tangent_dim = n
        cert["tie_rows"] = None
        if ties.total and not k:
            rep.notes.append(f"{ties.total} tied entries, all with structurally zero derivative rows (dead units)")
        elif k:
            rep.notes.append(f"{ties.total} tied entries: {ties.structural_zero} with structurally zero derivative "
                             f"rows, the other {k} rows computed and exactly zero (the tied entries are the same "
                             "function of the inputs)")
        if small:
            rep.verdict = Verdict.SMOOTH_OK
        else:
            rep.verdict = Verdict.SMOOTH_WRONG
            i = int(np.argmax([float(v - t) for v, t in zip(l1, tols)]))
            row = D.ints[i].tolist()
            t = np.array([q(1) if v > 0 else q(-1) if v < 0 else Q0 for v in row], dtype=object) \
                if tol is not None else _unit(n, next(j for j, v in enumerate(row) if v != 0))
            cert["witness"] = {"output": i, "t": certify.encode(t), "columns": None}
            rep.witness = _witness(model, ev, x_exact, wrt, J_fw, Js, t, i)
            rep.mismatch = _mismatch_rows(J_fw, Js.floats(), l1, tols, tol, "framework Jacobian vs the program's Jacobian")
        cert["verdict"] = str(rep.verdict)
        return
    cert["nonzero_tie_row"] = nonzero[0].encode()
    if nonzero[1] is not None:
        cert["nonzero_tie_row_radius"] = nonzero[1].encode()
    if k * n <= EXACT_RANK_ENTRIES:
        # small enough to compute the exact rank (FLINT, fraction-free): the tangent dimension
        if A is None:
            A = certify.tie_matrix(model, ev, wrt, ties, n)
        if not _enclosed(A):
            Ai = A.full().ints
            rep.tangent_dim = n - flint.fmpz_mat(Ai.shape[0], n, [int(v) for v in Ai.ravel().tolist()]).rank()
    if small:
        rep.verdict = Verdict.ASSOCIATED
        cert["verdict"] = "ASSOCIATED"
        rep.reasons.setdefault("tangent space", "not computed: the certificate Y = 0 needs no basis of T(x) "
                                                 "(one nonzero tie row shows T(x) != R^n)")
        return

    # the hard path: D is not (near) zero. Residues find a row basis; exact products prove Y or a witness.
    if A is None:
        A = certify.tie_matrix(model, ev, wrt, ties, n)
    if _enclosed(A):
        return _decide_enclosed(rep, cert, A, D, J_fw - Js.floats(), tols, tol)
    res, p = A.residues()
    live = np.nonzero((np.asarray(res) != 0).any(axis=1))[0]
    b = certify.basis(np.asarray(res)[live], p)
    b.rows = [int(live[j]) for j in b.rows]
    if rep.tangent_dim is None:
        rep.reasons["tangent space"] = (f"rank of the {len(live)}x{n} tie matrix modulo a prime: {len(b.cols)} "
                                        f"(a lower bound of the rank; so dim T(x) <= {n - len(b.cols)})")
    Jsf = Js.floats()
    D_f = J_fw - Jsf
    if tol is None:
        Y = certify.exact_y(A.full(), D, b, max_rank)
        if Y is not None:
            used = [j for j in range(Y.shape[1]) if any(v != 0 for v in Y[:, j].tolist())]
            cert["Y"] = certify.encode(Y[:, used])
            cert["tie_rows"] = {"columns": None, "A": A.rows(used).encode()}
            rep.verdict = Verdict.ASSOCIATED
            cert["verdict"] = "ASSOCIATED"
            rep.notes.append(f"J_fw - J_S is a combination of {len(used)} tie rows (exact certificate Y)")
            return
        A_f = A.floats()
    else:
        A_f = A.floats()
        Yf = certify.float_y(A_f, D_f)
        used = [j for j in range(Yf.shape[1]) if (Yf[:, j] != 0).any()]
        if used:
            Ye = QMat.of_floats(Yf[:, used])
            Au = A.rows(used)
            R = D - certify.qmatmul(Ye, Au)
            if all(v <= t for v, t in zip(R.row_l1(), tols)):
                cert["Y"] = Ye.encode()
                cert["tie_rows"] = {"columns": None, "A": Au.encode()}
                rep.verdict = Verdict.ASSOCIATED
                cert["verdict"] = "ASSOCIATED"
                rep.notes.append(f"J_fw - J_S is within the tolerance of a combination of {len(used)} tie rows "
                                 "(certificate Y, residual checked exactly)")
                return
    # a witness: an exact kernel vector t of A along which D t is beyond the tolerance
    frees = certify.kernel_candidates(b, n)
    if not frees:
        raise certify.Budget("no free column modulo the prime (rank modulo p = n) while D is outside the row "
                             "space: neither certificate found")
    V = certify.kernel_vectors_float(A_f, b, frees)
    DV = D_f @ V
    scale = np.abs(V).max(axis=0)
    tolf = np.array([float(t) for t in tols])
    score = np.abs(DV) / scale[None, :] - tolf[:, None]
    order = np.argsort(-score.max(axis=0))
    for jj in order[:8]:
        f = frees[int(jj)]
        kv = certify.exact_kernel_vector(A, b, f, max_rank)
        if kv is None:
            continue
        support, tv, Asup = kv
        cols = np.asarray(support)
        Dt = [Fraction(int(v), D.den) for v in D.ints[:, cols].dot(np.array(tv, dtype=object)).tolist()]
        tinf = max(abs(v) for v in tv)
        margins = [abs(v) - tols[i] * tinf for i, v in enumerate(Dt)]
        i = int(np.argmax([float(v) for v in margins]))
        if margins[i] > 0:
            t_full = np.empty(n, dtype=object)
            t_full.fill(Q0)
            t_full[cols] = [q(v) for v in tv]
            cert["tie_rows"] = {"columns": support, "A": Asup.encode()}
            cert["witness"] = {"output": i, "t": certify.encode(np.array([q(v) for v in tv], dtype=object)),
                               "columns": support}
            rep.verdict = Verdict.NOT_ASSOCIATED
            cert["verdict"] = "NOT_ASSOCIATED"
            rep.witness = _witness(model, ev, x_exact, wrt, J_fw, Js, t_full, i)
            rep.mismatch = _mismatch_witness(D_f, i, t_full, J_fw, Jsf, tols, tol, len(support))
            return
    raise certify.Budget("neither certificate found: D = J_fw - J_S is not within the tolerance of a combination "
                         "of tie rows, and no kernel vector tried shows a difference beyond it")


def _decide_enclosed(rep, cert, A, D, D_f, tols, tol):
    """The hard path when tie rows are enclosures: ASSOCIATED by a float Y whose rigorous
    residual bound ``|D - Y mid| + |Y| rad`` (exact products) is within every row's tolerance;
    nothing else is provable from enclosed rows without an exact kernel, so otherwise UNKNOWN."""
    QMat = certify.QMat
    if tol is None:
        raise certify.Budget("exact mode with tie rows that pass through irrational values: an enclosure "
                             "proves a residual bound, never an exact zero")
    Yf = certify.float_y(A.mid, D_f)
    used = [j for j in range(Yf.shape[1]) if (Yf[:, j] != 0).any()]
    if used:
        Ye = QMat.of_floats(Yf[:, used])
        Amid, Arad = QMat.of_floats(A.mid[used]), QMat.of_floats(A.rad[used])
        R = D - certify.qmatmul(Ye, Amid)
        spread = certify.qmatmul(QMat(np.abs(Ye.ints), Ye.den), Arad).row_l1()
        bound = [r + s for r, s in zip(R.row_l1(), spread)]
        if all(v <= t for v, t in zip(bound, tols)):
            cert["Y"] = Ye.encode()
            cert["tie_rows"] = {"columns": None, "A": Amid.encode(), "A_radius": Arad.encode()}
            rep.verdict = Verdict.ASSOCIATED
            cert["verdict"] = "ASSOCIATED"
            rep.notes.append(f"J_fw - J_S is within the tolerance of a combination of {len(used)} enclosed tie rows "
                             f"(certificate Y; residual bound |D - Y mid| + |Y| rad, largest tie-row radius "
                             f"{float(A.rad.max()):.3g})")
            return
    raise certify.Budget("J_fw - J_S is not within the tolerance of a combination of the enclosed tie rows, and a "
                         "NOT_ASSOCIATED witness needs an exact kernel vector of rows that pass through irrational "
                         "values (not implemented)")


def _enclosed(T) -> bool:
    return getattr(T, "enclosed", False)


def _first_nonzero_row(T):
    """The first tie row of ``T`` shown nonzero: (exact row, None) from residues then exactly, or
    (exact midpoints, exact radii) of an enclosed row with an entry excluding 0; or None."""
    if _enclosed(T):
        return T.first_nonzero()
    res, _ = T.residues()
    nz = np.nonzero((np.asarray(res) != 0).any(axis=1))[0] if np.size(res) else []
    if len(nz) == 0:
        return None
    return T.rows([int(nz[0])])[0], None


def _rate(Q, i, t):
    """Q[i] . t exactly (an fmpq), Q a QMat and t exact values."""
    tq = [q(v) for v in np.asarray(t, dtype=object).tolist()]
    nz = [j for j, v in enumerate(tq) if v != 0]
    s = sum((int(Q.ints[i, j]) * tq[j] for j in nz), Q0)
    return s / Q.den


def _mm(a, b):
    return matmul2d(np.asarray(a, dtype=object), np.asarray(b, dtype=object))


def _unit(n, j):
    t = np.empty(n, dtype=object)
    t.fill(Q0)
    t[j] = Q1
    return t


def _mismatch_rows(J_fw, Jsf, l1, tols, tol, what):
    diff = np.abs(J_fw - Jsf)
    bad = (diff != 0) if tol is None else diff > float(tol[1]) + float(tol[0]) * np.abs(Jsf)
    if not bad.any():
        bad = diff == diff.max()
    rows = [i for i, (v, t) in enumerate(zip(l1, tols)) if v > t]
    txt = _mismatch_text(J_fw, Jsf, diff, bad, tol, 0)
    if tol is not None:
        txt += "\nRows beyond their tolerance (||D_i||_1 > atol + rtol ||J_S[i]||_1): " + ", ".join(
            f"output {i}: {float(l1[i]):.6g} > {float(tols[i]):.6g}" for i in rows[:6])
    return txt


def _mismatch_witness(D_f, i, t, J_fw, Jsf, tols, tol, support):
    tf = to_float(t)
    a, b = float(J_fw[i] @ tf), float(Jsf[i] @ tf)
    tinf = float(np.abs(tf).max())
    tol_txt = "exact comparison, no tolerance" if tol is None else \
        f"rtol={tol[0]:g}, atol={tol[1]:g}; bound tol_i * ||t||_inf = {float(tols[i]) * tinf:.6g}"
    Dt = np.abs(D_f @ tf)
    bound = np.array([float(t) for t in tols]) * tinf
    k = int((Dt > bound).sum()) or 1
    m = Dt.size
    return (f"Compared: the framework's and the program's rates along a direction t of the stratum's tangent space "
            f"({tol_txt}).\n"
            f"Mismatched elements: {k} / {m} ({100.0 * k / m:.1f}%) of J t\n"
            f"Greatest absolute difference: {abs(a - b):.6g} at index (output {i}, along t)\n"
            f"Along t (exact, {support} nonzero coordinates, ||t||_inf = {tinf:.6g}): output {i}: "
            f"framework J t = {a:.17g}, program J_S t = {b:.17g}, difference {abs(a - b):.6g}")


def _linearity_certificate(lin, n, m):
    c = getattr(lin, "certificate", None)
    if c is None:
        return None
    return {"format": "mtcheck-certificate", "version": 1, "verdict": "NONLINEAR_VJP", "n": n, "m": m,
            "linearity": c}


def _rounding_certificate(rounding, n, m):
    entries = []
    for node, d_ex, d_fw in rounding:
        for a, b in zip(d_ex, d_fw):
            sa, sb = a.signs(), b.signs()
            if sa.shape != sb.shape:
                continue
            diff = np.nonzero(sa != sb)[0]
            for j in diff[:4]:
                e = {"node": f"{node.label} at {node.where}"}
                for key, v in (("exact", a.values[j]), ("framework", b.values[j])):
                    if isinstance(v, (complex, np.complexfloating)):
                        # an enclosed (irrational) value: its ball [mid - rad, mid + rad], exactly
                        mid, rad = Fraction(float(v.real)), Fraction(float(v.imag))
                        e[key + "_enclosure"] = [certify.rational(mid - rad), certify.rational(mid + rad)]
                    else:
                        e[key] = certify.rational(v)
                entries.append(e)
    if not entries:
        return None
    return {"format": "mtcheck-certificate", "version": 1, "verdict": "ROUNDING_BRANCH", "n": n, "m": m,
            "rounding": entries}


_BILINEAR = ("aten.mul.", "aten.div.", "aten.mm.", "aten.bmm.", "aten.matmul.", "aten.mv.", "aten.dot.",
             "aten.addmm.", "aten.addmv.", "aten.baddbmm.", "aten.addbmm.", "aten.convolution.", "aten._convolution.",
             "aten.mul_.", "aten.div_.", "aten._prelu_kernel.")
_ADDED_FIRST = ("aten.addmm.", "aten.addmv.", "aten.baddbmm.", "aten.addbmm.")
_CONV = ("aten.convolution.", "aten._convolution.")
_NONAFFINE = ("aten.native_layer_norm.", "aten.native_group_norm.",
              "aten.pow.", "aten.square.", "aten.hardswish.", "aten.smooth_l1_loss.", "aten.huber_loss.",
              "aten.mse_loss.", "aten.polar.")


# modules whose rules are smooth and nonlinear (or, for steps, locally constant away from jumps the
# neighbouring-strata probes could cross): a program using them is not treated as piecewise affine,
# even at a point where their values happen to be exact (sin(0) = 0)
_SMOOTH_MODULES = (".smooth", ".attention", ".special", ".misc_smooth", ".linalg_enclosed", ".steps")


def _enclosure(J_S):
    """(J_S as exact data, None) or, for an enclosed J_S, (its float64 midpoints, every row's L1
    radius as an exact upper bound: Fractions)."""
    from ._ball import Ball, exactify, radius_l1_rows

    if not isinstance(J_S, Ball):
        return J_S, None
    e = exactify(J_S)
    if not isinstance(e, Ball):
        return e, None
    return np.array(J_S.mid), [Fraction(float(r)) for r in radius_l1_rows(J_S)]


def _den_of(fracs) -> int:
    import math

    d = 1
    for f in fracs:
        d = d * f.denominator // math.gcd(d, f.denominator)
    return d


def _piecewise_affine(model, tans) -> bool:
    """True when, with the pattern fixed, every node is an affine function of the inputs:
    no product of two input-dependent values, no polynomial op."""
    import torch.utils._pytree as pytree

    from .trace import Ref

    for node, rule in zip(model.trace.nodes, model.rules):
        if node.op.startswith(_NONAFFINE) or type(rule).__module__.endswith(_SMOOTH_MODULES):
            return False
        if node.op.startswith("aten.multi_margin_loss.") and len(node.args) > 2 and node.args[2] == 2:
            return False                  # p = 2 squares the hinge
        if node.op.startswith(_BILINEAR):
            args = node.args
            if node.op.startswith(_ADDED_FIRST):
                args = args[1:]            # addmm(bias, a, b): the bias is added, not multiplied
            elif node.op.startswith(_CONV):
                args = args[:2]            # convolution(x, w, bias, ...): likewise
            live = [a for a in pytree.tree_leaves(args, is_leaf=lambda v: isinstance(v, Ref))
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
            if getattr(ex, "rad", None) is not None:
                return False, f"{node.label} at {node.where} (irrational values)"
            if not torch.isfinite(r).all():
                # new_empty's uninitialised memory (circular pad overwrites it everywhere)
                return False, f"{node.label} at {node.where} (a non-finite float value)"
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


def _apply_step(x_exact, wrt, t, h):
    out = list(x_exact)
    off = 0
    for i in wrt:
        s = x_exact[i].size
        out[i] = np.asarray(x_exact[i].ravel() + t[off:off + s] * h, dtype=object).reshape(x_exact[i].shape)
        off += s
    return out


def _witness(model, ev, x_exact, wrt, J_fw, Js, t, i) -> Witness:
    """The user-facing witness: direction t (exact), both rates, and exact values of the program
    along t inside the stratum (a dyadic step h that keeps the pattern)."""
    from .model import has_balls

    t = np.asarray(t, dtype=object)
    fw_rate = _rate(certify.QMat.of_floats(J_fw[i:i + 1]), 0, t)
    s_rate = _rate(Js, i, t)
    w = Witness(int(i), list(t), fw_rate, s_rate)
    if has_balls(ev):
        w.note = ("the program's values are enclosures (irrational), so no exact values f(x + h t) are shown; "
                  "the rate J_S t is the midpoint's, and the certificate's margin exceeds the tolerance plus the "
                  "enclosure radius")
        return w
    f0 = model.output_values(ev)[i]
    tans = None
    if not model.trace.has_branches():
        try:
            tans = model.linearize(ev, wrt, t[None, :])
        except Exception:  # noqa: BLE001 - no analytic step: the search below evaluates instead
            tans = None
    if tans is not None and _piecewise_affine(model, tans):
        # affine along t inside the stratum: every discriminant moves at its exact rate, so the
        # largest safe step is read off (no evaluation), and f(x + h t) = f(x) + h J_S[i] t
        h = _stratum_step(model, ev, tans)
        if h is not None:
            w.h, w.f_x, w.f_x_plus_ht = h, f0, f0 + h * s_rate
            return w
    sig = ExactModel.signature(ev)
    k0 = max(max(abs(int(q(v).p)).bit_length() for v in t.tolist()) - 1, 0)
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


def _stratum_step(model, ev, tans):
    """The largest dyadic h = 2^-k (k >= 0) with h < |disc| / |rate| for every untied discriminant
    moving towards 0 along the direction of ``tans`` (a single direction, rates exact), or None when a
    tied discriminant moves (the direction leaves the stratum)."""
    from fractions import Fraction

    best = None
    for node, d in zip(model.trace.nodes, ev.discs):
        for disc in d:
            rate = model.disc_rows(ev, tans, node.index, disc, 1)[:, 0]
            vals = disc.values
            s = disc.signs()
            moving = np.nonzero(np.array([r != 0 for r in rate.tolist()], dtype=bool))[0] if rate.size else []
            for j in moving:
                v, r = vals[j], rate[j]
                if s[j] == 0:
                    return None
                if (v > 0) == (r > 0):
                    continue                            # moving away from 0
                lim = abs(q(v) / q(r))
                best = lim if best is None or lim < best else best
    if best is None:
        return q(1)
    lim = Fraction(int(best.p), int(best.q))
    k = 0
    while Fraction(1, 1 << k) >= lim:
        k += 1
    return q(1) / (1 << k)


def _directional(rep, fn, tr, model, ev, x_exact, leaves, wrt, n, m, seed, tries):
    """Non-differentiability by one-sided directional derivatives: a differentiable function has
    f'(x; t) = -f'(x; -t). Each rate is exact (:meth:`ExactModel.directional`: the piece the ray
    x + s t enters, found from the rates of the tied cases, no probe evaluation)."""
    if tr.has_branches():
        rep.reasons["differentiable"] = ("the program branches in Python; one-sided rates need the enumeration "
                                         "(small inputs only)")
        return
    rng = np.random.default_rng(seed)
    for attempt in range(max(1, min(tries, 2))):
        t = np.array([q(int(v)) for v in rng.integers(-8, 9, size=n)], dtype=object)
        if all(v == 0 for v in t.tolist()):
            t[0] = Q1
        plus = _one_sided(model, ev, wrt, t)
        minus = _one_sided(model, ev, wrt, -t)
        if any(a + b != 0 for a, b in zip(plus, minus)):
            rep.differentiable = False
            rep.pieces = None
            i = next(j for j, (a, b) in enumerate(zip(plus, minus)) if a + b != 0)
            rep.reasons["differentiable"] = (
                f"not differentiable: along a direction t the one-sided rates of output {i} are "
                f"f'(x; t) = {float(plus[i]):.6g} and f'(x; -t) = {float(minus[i]):.6g}, whose sum is not 0 (exact)")
            rep.reasons.setdefault("equals true gradient", "no true gradient: the program is not differentiable here")
            if m == 1:
                rep.reasons["Clarke"] = (f"not decided: {n} inputs is more than the enumeration of neighbouring "
                                         f"strata handles (up to {SMALL_N})")
            return
    rep.reasons["differentiable"] = (f"not decided: {attempt + 1} random directions showed no kink, and {n} inputs "
                                     f"is more than the enumeration of neighbouring strata handles (up to {SMALL_N})")


def _one_sided(model, ev, wrt, t):
    """Exact f'(x; t), one value per output."""
    J = model.output_jacobian(ev, model.directional(ev, wrt, t), 1)
    return [J[i, 0] for i in range(J.shape[0])]


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
            try:
                mp = ExactModel(trace(fn, lv)) if tr.has_branches() else model
                evp = mp.evaluate(y)
                one = mp.linearize(evp, wrt, t[None, :])
            except (OutsideTheoryError, UndecidedError) as e:
                # the probe point sits on another piece's jump (a step function's) or an undecided
                # case: a point closer to x along t
                why = f"a probe point is outside the theory or undecided ({type(e).__name__})"
                continue
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


def _forward_reverse_detail(J_fwd, J_fw, J_S, verdict) -> str:
    """Where forward mode and reverse mode disagree, in words: the largest difference, and which
    of the two equals the program's exact derivative there when the point is smooth."""
    a, b = np.asarray(J_fwd, dtype=np.float64), np.asarray(J_fw, dtype=np.float64)
    d = np.abs(a - b)
    d[~np.isfinite(d)] = np.inf
    i, j = np.unravel_index(int(np.argmax(d)), d.shape)
    n_diff = int((a != b).sum())
    out = (f"forward mode differs from reverse mode in {n_diff} of {a.size} Jacobian entries; the largest at "
           f"(output {i}, input {j}): forward {float(a[i, j])!r}, reverse {float(b[i, j])!r}")
    if verdict in (Verdict.SMOOTH_OK, Verdict.SMOOTH_WRONG) and J_S is not None:
        e = float(np.asarray(J_S, dtype=np.float64)[i, j])
        out += f", the program's exact derivative {e!r}"
        if verdict is Verdict.SMOOTH_OK:
            out += " (reverse mode is right: forward mode is the wrong one)"
    if not np.any(a):
        out += "; forward mode's Jacobian is zero everywhere (no tangent propagated)"
    return out


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
