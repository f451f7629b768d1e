"""Deep-tie synthesis: move an input so that chosen hidden units sit exactly on a kink.

The method (every decision exact, in rationals; floats only rank candidates):

1. Evaluate the program exactly at the seed point; its pattern makes every
   intermediate value an affine function of the input near the seed.
2. Free directions (:class:`Directions`): every coordinate for small inputs, else
   ``max_free`` random blocks of coordinates with weights in {-2, -1, 1, 2}; the
   exact tangent rows of every discriminant along them (``ExactModel.linearize``).
   Ties that no target asks for are first stepped off with a tiny dyadic jitter.
3. Solve the targets' equalities (a relu pre-activation = 0, two entries of a max
   window equal, a clamp input = its bound) with the exact minimum-norm step. When
   the step leaves the pattern: Newton from the new point; after two misses, follow
   the segment into the next piece only (:func:`_path_step`). z3 on the
   pattern-fixed local problem with margins is available (``USE_Z3``) but off: it
   never rescued a case in ``bench/tie_rate.py`` and cost seconds per call.
4. Round onto the dyadic lattice ``2^-k Z^s`` (:func:`lattice_point`): an integer
   solution of the scaled equalities from the Hermite normal form of ``[M^T | I]``,
   the integer kernel reduced with LLL, and the nearest lattice point by exact
   Babai rounding (python-flint). A rational solution of a tie equation is almost
   never dyadic; only a lattice point is representable in the program's dtype.
   When no lattice point exists (an odd factor of the coefficients does not divide
   the constant), another element of the layer is chosen.
5. Re-check exactly, then run PyTorch's own float forward (a fresh trace) and
   confirm each tie there too. Misses are counted (:func:`synthesis_stats`).
"""

from __future__ import annotations

import copy
import math
import time
from collections import Counter
from dataclasses import dataclass, field

import flint
import numpy as np
import torch
import z3

from ._exact import Q0, from_tensor, q, to_float, zeros
from .model import ExactModel
from .strata import SolverLimits, make_solver
from .trace import prepare_inputs, trace

Q = flint.fmpq

# ---------------------------------------------------------------- counters

_STATS: Counter = Counter()
_TIMES: list = []


def synthesis_stats() -> dict:
    """Counters of every synthesis since the last reset: requested, exact hits, float-confirmed, misses."""
    d = dict(_STATS)
    if _TIMES:
        ts = sorted(_TIMES)
        d["median_s"] = ts[len(ts) // 2]
        d["worst_s"] = ts[-1]
    return d


def reset_synthesis_stats() -> None:
    _STATS.clear()
    _TIMES.clear()


# ---------------------------------------------------------------- data

@dataclass(frozen=True)
class Target:
    """A kink to put an input on: trace node ``node``, discriminant ``label`` ('relu', 'window',
    'lo', 'hi', 'max', ...), output element / window ``group`` (None: the one nearest its kink)."""

    node: int
    label: str | None = None
    group: int | None = None


@dataclass
class TieResult:
    input: torch.Tensor | None          # the synthesized input (the seed when nothing was done)
    ok: bool
    targets: list = field(default_factory=list)     # resolved Targets (group filled in)
    exact: list = field(default_factory=list)       # per target: tied in exact arithmetic
    in_float: list = field(default_factory=list)    # per target: tied in PyTorch's float forward
    seconds: float = 0.0
    rounds: int = 0
    bits: int | None = None                         # lattice exponent k of the free coordinates
    method: str = ""                                # 'seed', 'min-norm', 'z3'
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


# ---------------------------------------------------------------- program helpers

class Program:
    """A one-input program with its exact model (traced once at a reference input)."""

    def __init__(self, fn, example: torch.Tensor):
        self.fn = fn
        self.dtype = example.dtype
        self.shape = tuple(example.shape)
        leaves, wrt = prepare_inputs((example,), None)
        self.trace = trace(fn, leaves)
        if self.trace.has_branches():
            raise ValueError("deep-tie synthesis needs a program without data-dependent Python control flow")
        self.model = ExactModel(self.trace)
        self.lin_fast = None      # which linearization path is faster here (decided on first use)
        # the nodes with discriminants, in execution order: depth d is self.nonsmooth[d - 1]
        # (the same numbering as the report's pattern and mtcheck.coverage)
        ev = self.model.evaluate([from_tensor(leaves[0])])
        self.nonsmooth = [n.index for n in self.trace.nodes if ev.discs[n.index]]

    def evaluate(self, x_exact):
        return self.model.evaluate([np.asarray(x_exact, dtype=object).reshape(self.shape)])

    def float_eval(self, x: torch.Tensor):
        """The discriminants PyTorch's float forward pass took (fresh trace)."""
        leaves, _ = prepare_inputs((x,), None)
        tr = trace(self.fn, leaves)
        if len(tr.nodes) == len(self.trace.nodes) and len(tr.consts) == len(self.trace.consts) and all(
                a.op == b.op for a, b in zip(tr.nodes, self.trace.nodes)):
            # the same program: reuse the exact weights, read the new trace's float values
            m = copy.copy(self.model)
            m.trace = tr
        else:  # pragma: no cover - a program whose trace depends on its input
            m = ExactModel(tr)
        xe = from_tensor(leaves[0])
        return m.evaluate([xe], framework_args=True), m.evaluate([xe])

    def depth_of(self, node: int) -> int:
        return self.nonsmooth.index(node) + 1


def _tied(ev, t: Target) -> bool:
    for disc in ev.discs[t.node]:
        if t.label is not None and disc.label != t.label:
            continue
        sel = disc.group == t.group
        if sel.any() and (disc.values[sel] == 0).any():
            return True
    return False


def node_has_tie(ev, node: int) -> bool:
    return any((d.signs() == 0).any() for d in ev.discs[node])


# ---------------------------------------------------------------- exact linear algebra

def _lcm_den(vals) -> int:
    den = 1
    for v in vals:
        d = int(q(v).q)
        den = den * d // math.gcd(den, d)
    return den


def _independent(rows: list, rhs: list):
    """Keep a maximal independent subset of the rows (exact), in order."""
    kept, kr = [], []
    for r, b in zip(rows, rhs):
        trial = kept + [r]
        mat = flint.fmpq_mat(len(trial), len(r), [v for row in trial for v in row])
        if mat.rank() == len(trial):
            kept.append(r)
            kr.append(b)
    return kept, kr


def min_norm_step(rows: list, rhs: list):
    """Exact minimum-norm Delta with rows @ Delta = rhs (rows independent)."""
    m = len(rows)
    s = len(rows[0])
    E = flint.fmpq_mat(m, s, [v for r in rows for v in r])
    G = E * E.transpose()
    y = G.solve(flint.fmpq_mat(m, 1, list(rhs)))
    d = E.transpose() * y
    return [d[i, 0] for i in range(s)]


def lattice_point(rows: list, rhs: list, target: list, k: int):
    """An integer vector z with rows @ (z / 2^k) = rhs, near 2^k * target; None if none exists.

    ``rows`` (m x s) and ``rhs`` are exact rationals, ``target`` an exact solution.
    Integer rows: M z = r. HNF of [M^T | I] = [U M^T | U] gives a particular solution
    from the triangular top block and the integer kernel from U's remaining rows; the
    kernel is LLL-reduced and the nearest lattice point found by rounding coordinates.
    """
    m, s = len(rows), len(rows[0])
    scale = Q(1 << k)
    M, r = [], []
    for row, b in zip(rows, rhs):
        L = _lcm_den(list(row) + [b * scale])
        M.append([int((v * L).p) for v in row])
        r.append(int((b * scale * L).p))
    entries = []
    for i in range(s):
        entries.extend(M[j][i] for j in range(m))
        entries.extend(1 if c == i else 0 for c in range(s))
    A = flint.fmpz_mat(s, m + s, entries)
    H = A.hnf()
    # the first m rows carry the (upper-triangular) block P = (U M^T)_top, then the kernel
    P = [[int(H[i, j]) for j in range(m)] for i in range(m)]
    if any(P[i][i] == 0 for i in range(m)):
        return None
    y = []
    for i in range(m):           # P^T y = r (lower triangular)
        acc = r[i] - sum(P[j][i] * y[j] for j in range(i))
        if acc % P[i][i]:
            return None
        y.append(acc // P[i][i])
    U = [[int(H[i, m + c]) for c in range(s)] for i in range(s)]
    z0 = [sum(y[i] * U[i][c] for i in range(m)) for c in range(s)]
    if s == m:
        return z0
    K = flint.fmpz_mat([U[i] for i in range(m, s)])
    try:
        K = K.lll()
    except Exception:  # noqa: BLE001 - LLL is an optimisation; the HNF kernel is still a basis
        pass
    Kl = [[int(v) for v in row] for row in K.tolist()]
    # exact Babai rounding: coefficients of (2^k target - z0) in the reduced kernel basis
    d = [v * scale - z for v, z in zip(target, z0)]
    Kq = flint.fmpq_mat(len(Kl), s, [Q(v) for row in Kl for v in row])
    try:
        c = (Kq * Kq.transpose()).solve(Kq * flint.fmpq_mat(s, 1, d))
        cr = [_round_q(c[i, 0]) for i in range(len(Kl))]
    except (ZeroDivisionError, ValueError):
        cr = [0] * len(Kl)
    z = [z0[j] + sum(cr[i] * Kl[i][j] for i in range(len(Kl)) if cr[i]) for j in range(s)]
    # greedy polish: step along basis vectors while it brings z closer to the target
    tz = [v * scale for v in target]

    def dist(zz):
        return sum(((a - b) ** 2 for a, b in zip(zz, tz)), Q0)
    best = dist(z)
    for _ in range(2):
        improved = False
        for vec in Kl:
            for sg in (1, -1):
                cand = [a + sg * b for a, b in zip(z, vec)]
                dc = dist(cand)
                if dc < best:
                    z, best, improved = cand, dc, True
        if not improved:
            break
    return z


def _round_q(v) -> int:
    """Nearest integer to an exact rational (halves away from zero)."""
    v = q(v)
    p, d = int(v.p), int(v.q)
    return (2 * p + d) // (2 * d) if p >= 0 else -((-2 * p + d) // (2 * d))


# ---------------------------------------------------------------- the synthesis

_KMAX = {torch.float64: 40, torch.float32: 18, torch.float16: 8, torch.bfloat16: 5}


def _grid_bits(vals) -> int:
    k = 0
    for v in vals:
        d = int(q(v).q)
        k = max(k, d.bit_length() - 1)
    return k


def _representable(vals, dtype) -> torch.Tensor | None:
    f = torch.tensor([float(v) for v in vals], dtype=torch.float64)
    t = f.to(dtype)
    back = from_tensor(t)
    if any(a != b for a, b in zip(back.tolist(), vals)):
        return None
    return t


def _floats(a) -> np.ndarray:
    """Float copies of exact values, for heuristics only (choices, never decisions)."""
    a = np.asarray(a)
    try:
        return a.astype(np.float64)
    except (TypeError, ValueError, OverflowError):
        return to_float(a)


def _linearize(prog, ev, D):
    """Exact tangents along the rows of D. The model offers a verified-float fast path and a
    rational one; which is faster depends on the network (measured: the rational path 6x faster
    on a 256-wide MLP, the fast path 2x faster on LeNet), so the first call times both and the
    program keeps the faster one."""
    model = prog.model
    if prog.lin_fast is None:
        try:
            t0 = time.perf_counter()
            out = model.linearize(ev, [0], D, fast=False)
            t1 = time.perf_counter()
            model.linearize(ev, [0], D, fast=True)
            t2 = time.perf_counter()
            prog.lin_fast = (t2 - t1) < (t1 - t0)
            return out
        except TypeError:       # a model without the option
            prog.lin_fast = True
    if prog.lin_fast:
        return model.linearize(ev, [0], D)
    return model.linearize(ev, [0], D, fast=False)


class Directions:
    """The free directions of a synthesis: coordinate ``j`` moves by ``weight[j] * delta[block[j]]``.

    Small inputs: every coordinate is its own direction. Large inputs: the coordinates are
    split into ``s`` random blocks with random weights in {-2, -1, 1, 2}, so that every unit of
    the network is reachable while the local problem keeps ``s`` variables.
    """

    def __init__(self, n: int, max_free: int, rng):
        self.n = n
        if n <= max_free:
            self.block = np.arange(n)
            self.weight = np.ones(n, dtype=np.int64)
            self.s = n
        else:
            perm = rng.permutation(n)
            self.block = np.empty(n, dtype=np.int64)
            for b, part in enumerate(np.array_split(perm, max_free)):
                self.block[part] = b
            self.weight = rng.choice(np.array([-2, -1, 1, 2]), size=n)
            self.s = max_free

    def matrix(self):
        D = zeros((self.s, self.n))
        for j in range(self.n):
            D[self.block[j], j] = Q(int(self.weight[j]))
        return D

    def apply(self, x_seed, delta):
        """x_seed + D^T delta (exact)."""
        out = np.array(x_seed, dtype=object)
        for j in range(self.n):
            d = delta[self.block[j]]
            if d != 0:
                out[j] = out[j] + d * int(self.weight[j])
        return out


class _Rows:
    """Exact tangent rows of every discriminant along the free directions, at one evaluation."""

    def __init__(self, prog: Program, ev, dirs: Directions):
        self.prog, self.ev, self.dirs = prog, ev, dirs
        self.s = dirs.s
        self.tans = _linearize(prog, ev, dirs.matrix())
        self._cache: dict = {}

    def float_rows(self, node: int, di: int):
        key = ("f", node, di)
        if key not in self._cache:
            self._cache[key] = _floats(self.rows(node, di))
        return self._cache[key]

    def rows(self, node: int, di: int):
        key = (node, di)
        if key not in self._cache:
            disc = self.ev.discs[node][di]
            self._cache[key] = self.prog.model.disc_rows(self.ev, self.tans, node, disc, self.s)
        return self._cache[key]


def _choose_element(R: _Rows, node: int, label, group, want_tied=False, allow_zero_row=False, excluded=()):
    """(di, element index, value, row) of the element to equate, or None.

    With ``group`` None: the element nearest its kink (|value| / |row|) among those with a
    nonzero row; with ``want_tied``: a tied element (zero-row ones first, they need no equation).
    """
    best = None
    for di, disc in enumerate(R.ev.discs[node]):
        if label is not None and disc.label != label:
            continue
        vals = disc.values
        if group is not None:
            cand = np.nonzero(disc.group == group)[0]
        elif want_tied:
            cand = np.nonzero(vals == 0)[0]
        else:
            cand = np.nonzero(vals != 0)[0]
        if cand.size == 0:
            continue
        rows = R.rows(node, di)
        rf = R.float_rows(node, di)[cand]
        norms = np.sqrt((rf * rf).sum(axis=1))
        nz = (rows[cand] != 0).any(axis=1)
        vf = np.abs(_floats(vals[cand]))
        if want_tied:
            scores = np.where(nz, 1.0, 0.0)
            keep = (vals[cand] == 0) & (nz | allow_zero_row)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                scores = np.where(norms > 0, vf / np.where(norms > 0, norms, 1.0), np.inf)
            keep = nz | (allow_zero_row & (vals[cand] == 0))
            if group is not None and disc.max_type:
                scores = vf          # the entry nearest the winner
        if excluded:
            keep = keep & np.array([(node, di, int(i)) not in excluded for i in cand], dtype=bool)
        if not keep.any():
            continue
        scores = np.where(keep, scores, np.inf)
        j = int(np.argmin(scores))
        if not keep[j]:
            continue
        i = int(cand[j])
        if best is None or scores[j] < best[0]:
            best = (float(scores[j]), di, i, vals[i], rows[i], int(disc.group[i]), disc.label)
    return None if best is None else best[1:]


_Z3_MAX_STRICT = 300
USE_Z3 = False          # z3 on the pattern-fixed local problem when the minimum-norm step leaves it


def _z3_step(R: _Rows, rows, rhs, step_hint, lim: SolverLimits, margin=Q(1, 4)):
    """A Delta solving the equalities and keeping every nearby strict sign with a margin (z3, LRA)."""
    s = R.s
    ds = [z3.Real(f"d{i}") for i in range(s)]
    sol = make_solver(lim)
    def lin(row):
        terms = [z3.Q(int(c.p), int(c.q)) * d for c, d in zip(row, ds) if c != 0]
        return z3.Sum(terms) if terms else z3.RealVal(0)
    for row, b in zip(rows, rhs):
        sol.add(lin(row) == z3.Q(int(b.p), int(b.q)))
    bound = max((abs(float(v)) for v in step_hint), default=1.0) * 4 + 1e-9
    bq = Q(*float(bound).as_integer_ratio())
    for d in ds:
        sol.add(d <= z3.Q(int(bq.p), int(bq.q)), d >= -z3.Q(int(bq.p), int(bq.q)))
    near = []        # (slack / reach, node, di, i): the strict signs nearest to flipping
    for node in R.prog.nonsmooth:
        for di, disc in enumerate(R.ev.discs[node]):
            s_ = disc.signs()
            idx = np.nonzero(s_ != 0)[0]
            if idx.size == 0:
                continue
            rf = R.float_rows(node, di)[idx]
            l1 = np.abs(rf).sum(axis=1)
            vf = np.abs(_floats(disc.values[idx]))
            ok = (l1 > 0) & (vf <= l1 * bound)
            for j in np.nonzero(ok)[0].tolist():
                near.append((vf[j] / l1[j], node, di, int(idx[j])))
    near.sort()
    for _, node, di, i in near[:_Z3_MAX_STRICT]:
        disc = R.ev.discs[node][di]
        row = R.rows(node, di)[i]
        v = disc.values[i]
        keep = abs(v) * margin
        e = z3.Q(int(v.p), int(v.q)) + lin(row)
        sol.add(e >= z3.Q(int(keep.p), int(keep.q)) if v > 0 else e <= -z3.Q(int(keep.p), int(keep.q)))
    r = sol.check()
    if r != z3.sat:
        return None
    mdl = sol.model()
    out = []
    for d in ds:
        v = mdl.eval(d, model_completion=True)
        out.append(Q(v.numerator_as_long(), v.denominator_as_long()))
    return out


def synthesize(prog: Program, x0: torch.Tensor, targets=(), *, every_layer: bool = False, max_free: int = 48,
               max_rounds: int = 8, seed: int = 0, lim: SolverLimits | None = None) -> TieResult:
    """Move ``x0`` so that every target is exactly on a kink, in exact arithmetic and in
    PyTorch's float forward pass. A target without a group is satisfied by any element of
    its node (kept if one is tied already, else the element nearest its kink).

    With ``every_layer``, every nonsmooth node gets a tie, depth by depth, each new one
    solved together with the ties already placed (kept as equalities).
    """
    if every_layer:
        return _every_layer(prog, x0, list(targets), max_free=max_free, max_rounds=max_rounds, seed=seed, lim=lim)
    t0 = time.perf_counter()
    lim = lim or SolverLimits(rlimit=2_000_000, timeout_ms=10_000, seed=seed)
    rng = np.random.default_rng(seed)
    dtype = prog.dtype
    n = int(np.prod(prog.shape))
    x_cur = from_tensor(x0.detach()).ravel()
    x_seed = x_cur.copy()
    k0 = _grid_bits(x_seed.tolist())
    kmax = _KMAX.get(dtype, 18)
    targets = [t if isinstance(t, Target) else Target(*t) for t in targets]
    res = TieResult(x0, False)
    _STATS["requested"] += 1
    method = "seed"
    fixed: dict = {}          # node -> Target (resolved, with group)

    dirs = Directions(n, max_free, rng)
    delta_cur = [Q0] * dirs.s     # x_cur = x_seed + D^T delta_cur

    last_reason = "no round ran"
    jittered = False
    newton_fails = 0
    excluded: set = set()     # (node, disc index, element) with no dyadic solution
    for rnd in range(max_rounds + 1):
        res.rounds = rnd + 1
        ev = prog.evaluate(x_cur)
        R = _Rows(prog, ev, dirs)
        eqs = []              # (Target, di, i, value, row)
        resolved = []
        ok_struct = True
        for t0_ in targets:
            t = t0_
            free_choice = t0_.group is None
            if t.node in fixed and t.group is None:
                t = fixed[t.node]
            if t.group is None and node_has_tie(ev, t.node):
                ch = _choose_element(R, t.node, t.label, None, want_tied=True, allow_zero_row=True,
                                     excluded=excluded)
                if ch is not None:
                    di, i, v, row, g, lab = ch
                    t = Target(t.node, lab, g)
            if t.group is None:
                ch = _choose_element(R, t.node, t.label, None, excluded=excluded)
                if ch is None:
                    ok_struct = False
                    last_reason = f"node {t.node}: no element reachable from the free coordinates"
                    continue
            else:
                ch = _choose_element(R, t.node, t.label, t.group, allow_zero_row=True, excluded=excluded)
                if ch is None:
                    ok_struct = False
                    last_reason = f"node {t.node} group {t.group}: no usable element"
                    continue
            di, i, v, row, g, lab = ch
            t = Target(t.node, lab, g)
            fixed[t.node] = t
            resolved.append(t)
            if any(c != 0 for c in row.tolist()):
                eqs.append((t, v, row, (t.node, di, i), free_choice))
            elif v != 0:
                ok_struct = False
                last_reason = (f"node {t.node} ({t.label} {t.group}) does not depend on the free directions here "
                               "(saturated or dead units upstream)")
        res.targets = resolved
        if not ok_struct:
            break
        if all(_tied(ev, t) for t in resolved) and rnd == 0:
            cand = _representable(x_cur.tolist(), dtype)
            if cand is not None and _confirm(prog, cand.reshape(prog.shape), resolved, res):
                method = "seed"
                res.ok = ok_struct
                break
        if not jittered and _loose_ties(R, resolved):
            # ties the targets do not ask for, moved by the free coordinates: the pattern-fixed
            # model holds on one side of them only. Step to a generic point nearby first.
            jittered = True
            delta_cur = _jitter(delta_cur, k0 + 4, rng)
            x_cur = dirs.apply(x_seed, delta_cur)
            continue
        if not eqs:
            last_reason = "nothing to solve" if ok_struct else last_reason
            break
        rows = [list(row.tolist()) for _, _, row, _, _ in eqs]
        # rows @ Delta = -value
        rhs = [-v for _, v, _, _, _ in eqs]
        rows, rhs = _independent(rows, rhs)
        step = min_norm_step(rows, rhs)
        method = "min-norm"
        d_star = [a + b for a, b in zip(delta_cur, step)]
        x_star = dirs.apply(x_seed, d_star)
        ev_star = prog.evaluate(x_star)
        if not all(_tied(ev_star, t) for t in resolved) and USE_Z3:
            t_z3 = time.perf_counter()
            dz = _z3_step(R, rows, rhs, step, lim)
            _STATS["z3_calls"] += 1
            _STATS["z3_sat"] += dz is not None
            _STATS["z3_seconds"] += time.perf_counter() - t_z3
            if dz is not None:
                method = "z3"
                d_star = [a + b for a, b in zip(delta_cur, dz)]
                x_star = dirs.apply(x_seed, d_star)
                ev_star = prog.evaluate(x_star)
        if not all(_tied(ev_star, t) for t in resolved):
            newton_fails += 1
            t_root = _segment_root(prog, ev, ev_star, x_seed, dirs, delta_cur, step, resolved)
            if t_root is not None:
                # the target crossed its kink along the segment: its exact crossing point
                last_reason = "the local solution left the pattern; moved to the crossing on the segment"
                delta_cur = [a + t_root * b for a, b in zip(delta_cur, step)]
                x_cur = dirs.apply(x_seed, delta_cur)
                _STATS["segment_roots"] += 1
            elif newton_fails <= 2:
                last_reason = "the local solution left the pattern; Newton step from it"
                delta_cur = _tame(d_star, kmax + 12)     # keep the iterates' denominators small
                x_cur = dirs.apply(x_seed, delta_cur)
            else:
                # Newton cycles between pieces: follow the segment instead, into the next piece only
                last_reason = "the local solution left the pattern; followed the path piece by piece"
                t = _path_step(R, resolved, step)
                if t is None:
                    delta_cur = _tame(d_star, kmax + 12)
                else:
                    delta_cur = _tame([a + t * b for a, b in zip(delta_cur, step)], kmax + 12)
                    _STATS["path_steps"] += 1
                x_cur = dirs.apply(x_seed, delta_cur)
            continue
        # absolute equalities on delta: rows @ delta = rows @ d_star
        abs_rhs = [sum((a * b for a, b in zip(row, d_star)), Q0) for row in rows]
        done = False
        kstart = max(k0, 1)
        ks = list(range(kstart, kmax + 1, 3))
        if ks[-1] != kmax:
            ks.append(kmax)
        solvable = False
        for k in ks:
            z = lattice_point(rows, abs_rhs, d_star, k)
            if z is None:
                continue
            solvable = True
            x_new = dirs.apply(x_seed, [Q(int(zz), 1 << k) for zz in z])
            cand = _representable(x_new, dtype)
            if cand is None:
                last_reason = f"the lattice point at 2^-{k} is not representable in {dtype}"
                break
            ev_new = prog.evaluate(x_new)
            if not all(_tied(ev_new, t) for t in resolved):
                last_reason = f"rounded point at 2^-{k} left the tie"
                continue
            if _confirm(prog, cand.reshape(prog.shape), resolved, res):
                res.bits = k
                res.ok = ok_struct
                done = True
                break
            last_reason = f"tie exact at 2^-{k} but not in the float forward pass"
            _STATS["float_miss_tries"] += 1
        if done:
            break
        if not solvable:
            # no point of the lattice solves these equalities (an odd factor of the coefficients
            # does not divide the constant): no dyadic input ties these elements in this piece.
            # Choose other elements where the target allows it.
            last_reason = "the tie equations have no dyadic solution for the chosen elements"
            _STATS["no_dyadic_solution"] += 1
            for t, _, _, key, free_choice in eqs:
                excluded.add(key)
                if free_choice:
                    fixed.pop(t.node, None)
            continue
        delta_cur, x_cur = d_star, x_star     # next round: re-linearize at the rational solution
    res.method = method
    res.seconds = time.perf_counter() - t0
    _TIMES.append(res.seconds)
    if res.ok:
        _STATS["hit"] += 1
    else:
        res.reason = last_reason
        _STATS["miss"] += 1
        if res.exact and all(res.exact) and not all(res.in_float):
            _STATS["miss_float"] += 1
    return res


_ELEMENTWISE = ("relu", "leaky_relu", "threshold", "abs", "lo", "hi", "max", "min", "cmp")


def _elem_value(ev, t: Target):
    """The value of an elementwise target (one discriminant per group), or None."""
    for disc in ev.discs[t.node]:
        if disc.label != t.label or disc.max_type:
            continue
        sel = np.nonzero(disc.group == t.group)[0]
        if sel.size == 1:
            return disc.values[int(sel[0])]
    return None


def _window_margin_fn(ev0, t: Target):
    """For a max-type target: h = (entry that wins at the start) - (largest other entry of the
    window), a continuous piecewise-linear function that is 0 exactly at a tie; None otherwise."""
    for disc in ev0.discs[t.node]:
        if disc.label != t.label or not disc.max_type:
            continue
        sel = np.nonzero(disc.group == t.group)[0]
        if sel.size == 0:
            return None
        b = int(disc.idx_b[sel[0]])

        def h(ev, t=t, b=b):
            for d in ev.discs[t.node]:
                if d.label != t.label or not d.max_type:
                    continue
                sl = np.nonzero(d.group == t.group)[0]
                if sl.size == 0:
                    return None
                if int(d.idx_b[sl[0]]) == b:
                    return -max(d.values[sl].tolist())
                hit = [v for v, a in zip(d.values[sl].tolist(), d.idx_a[sl].tolist()) if int(a) == b]
                return hit[0] if hit else None
            return None
        return h
    return None


def _segment_root(prog, ev0, ev1, x_seed, dirs, delta_cur, step, resolved, max_evals=24):
    """Where the one target still off its tie crosses its kink along ``delta_cur + t * step``:
    exact regula falsi (Illinois) on a continuous piecewise-linear function that is 0 exactly at
    the tie (the element's value; for a max window, :func:`_window_margin_fn`), looking beyond
    t = 1 (up to 256) when it has not changed sign yet. None when there is no such crossing."""
    off = [t for t in resolved if not _tied(ev1, t)]
    if len(off) != 1:
        return None
    t = off[0]
    f = _window_margin_fn(ev0, t) or (_elem_value if t.label in _ELEMENTWISE else None)
    if f is None:
        return None
    fa, fb = f(ev0, t), f(ev1, t)
    if fa is None or fb is None or fa == 0:
        return None
    b = Q(1)
    while (fa > 0) == (fb > 0):
        # not crossed yet: the other units moved against it; look further along the segment
        b = b * 4
        if b > 256:
            return None
        fb = f(prog.evaluate(dirs.apply(x_seed, [d + b * e for d, e in zip(delta_cur, step)])), t)
        if fb is None:
            return None
        if fb == 0:
            return b
    a = Q0
    side = 0
    for _ in range(max_evals):
        c = a - fa * (b - a) / (fb - fa)
        fc = f(prog.evaluate(dirs.apply(x_seed, [d + c * e for d, e in zip(delta_cur, step)])), t)
        if fc is None:
            return None
        if fc == 0:
            return c
        if (fc > 0) == (fa > 0):
            a, fa = c, fc
            if side == -1:
                fb = fb / 2
            side = -1
        else:
            b, fb = c, fc
            if side == 1:
                fa = fa / 2
            side = 1
    return None


def _path_step(R: _Rows, resolved, step):
    """The fraction t of ``step`` that ends inside the next piece along the segment: halfway
    between the first and the second kink crossed (exact rationals), or None when the whole
    step stays in the current piece."""
    wanted = {(t.node, t.label, t.group) for t in resolved}
    sf = _floats(np.array(step, dtype=object))
    cands = []
    for node in R.prog.nonsmooth:
        for di, disc in enumerate(R.ev.discs[node]):
            sg = disc.signs()
            idx = np.nonzero(sg != 0)[0]
            if idx.size == 0:
                continue
            rate = R.float_rows(node, di)[idx] @ sf
            vf = _floats(disc.values[idx])
            with np.errstate(divide="ignore", invalid="ignore"):
                tt = np.where(vf * rate < 0, -vf / rate, np.inf)
            for j in np.nonzero(tt <= 1.0 + 1e-9)[0].tolist():
                i = int(idx[j])
                if (node, disc.label, int(disc.group[i])) in wanted:
                    continue
                cands.append((float(tt[j]), node, di, i))
    if not cands:
        return None
    cands.sort()
    exact = []
    for _, node, di, i in cands[:4]:
        row = R.rows(node, di)[i]
        rate = sum((a * b for a, b in zip(row.tolist(), step)), Q0)
        if rate != 0:
            exact.append(-R.ev.discs[node][di].values[i] / rate)
    exact = sorted(t for t in exact if t > 0)
    if not exact:
        return None
    t1 = exact[0]
    t2 = next((t for t in exact[1:] if t > t1), min(Q(1), t1 * 2))
    return (t1 + t2) / 2


def _loose_ties(R: _Rows, resolved) -> bool:
    wanted = {(t.node, t.label, t.group) for t in resolved}
    for node in R.prog.nonsmooth:
        for di, disc in enumerate(R.ev.discs[node]):
            z = np.nonzero(disc.values == 0)[0]
            if z.size == 0:
                continue
            rows = R.rows(node, di)
            for i in z.tolist():
                if (node, disc.label, int(disc.group[i])) in wanted:
                    continue
                if any(c != 0 for c in rows[i].tolist()):
                    return True
    return False


def _tame(delta, k):
    """Round rationals with denominators above 2^k onto the 2^-k grid (an iterate, not a result)."""
    out = []
    for v in delta:
        v = q(v)
        out.append(v if int(v.q) <= (1 << k) else Q(_round_q(v * (1 << k)), 1 << k))
    return out


def _jitter(delta, k, rng):
    steps = rng.integers(-3, 4, size=len(delta))
    return [d + Q(int(st_), 1 << k) for d, st_ in zip(delta, steps.tolist())]


def _confirm(prog: Program, cand: torch.Tensor, resolved, res: TieResult) -> bool:
    """Exact and float ties for every resolved target at ``cand`` (a fresh trace)."""
    ev_fw, ev_ex = prog.float_eval(cand)
    res.exact = [_tied(ev_ex, t) for t in resolved]
    res.in_float = [_tied(ev_fw, t) for t in resolved]
    if all(res.exact) and all(res.in_float):
        res.input = cand
        return True
    return False


def _every_layer(prog: Program, x0, targets, **kw) -> TieResult:
    """Every nonsmooth node tied, depth by depth. When a deep node cannot be reached (saturated
    or dead units upstream make it constant in the input), start again from the seed scaled
    towards 0 (exact dyadic halvings), which unsaturates most networks; keep the best."""
    t0 = time.perf_counter()
    best = None
    x0 = x0.detach()
    starts = []
    for scale in _RESTART_SCALES:
        start = x0 * scale if scale != 1 else x0
        if scale != 1 and (not torch.equal((start / scale).to(x0.dtype), x0) or not x0.any()):
            continue      # the scaled seed is not exact in this dtype, or the seed is 0
        starts.append(start)
    # last resort: the seed plus a little dyadic noise (a generic point near it)
    g = torch.Generator().manual_seed(int(kw.get("seed", 0)))
    k = _grid_bits(from_tensor(x0).ravel().tolist()) + 2
    noise = torch.randint(-2, 3, tuple(x0.shape), generator=g).to(torch.float64) / (1 << k)
    starts.append((x0.to(torch.float64) + noise).to(x0.dtype))
    for start in starts:
        r = _every_layer_once(prog, start, targets, **kw)
        if best is None or sum(r.exact) + sum(r.in_float) > sum(best.exact) + sum(best.in_float):
            best = r
        if best.ok:
            break
    best.seconds = time.perf_counter() - t0
    return best


_RESTART_SCALES = (1, 0.25, 1 / 64)
_RETRIES = 3            # fresh directions and jitter for a node whose synthesis failed


def _every_layer_once(prog: Program, x0, targets, **kw) -> TieResult:
    t0 = time.perf_counter()
    x = x0
    kept = list(targets)
    ev = prog.evaluate(from_tensor(x0.detach()).ravel())
    last = TieResult(x0, False)
    missed = []
    for node in prog.nonsmooth:
        if any(t.node == node for t in kept):
            continue
        if node_has_tie(ev, node):
            kept.append(Target(node))
            continue
        for attempt in range(_RETRIES):
            kw2 = dict(kw, seed=kw.get("seed", 0) + 7919 * attempt)
            r = synthesize(prog, x, kept + [Target(node)], **kw2)
            if r.ok:
                break
        if r.ok:
            # keep the ties placed so far, each free to move to another tied element of its node
            x, last = r.input, r
            kept = list(kept) + [Target(node)]
            ev = prog.evaluate(from_tensor(x.detach()).ravel())
        else:
            missed.append(f"{node} ({r.reason})")
    ev_fw, ev_ex = prog.float_eval(x.reshape(prog.shape))
    out = TieResult(x, not missed, [Target(nd) for nd in prog.nonsmooth],
                    [node_has_tie(ev_ex, nd) for nd in prog.nonsmooth],
                    [node_has_tie(ev_fw, nd) for nd in prog.nonsmooth],
                    time.perf_counter() - t0, 0, last.bits, "every-layer",
                    "" if not missed else "no tie placed at node " + "; ".join(missed))
    out.ok = all(out.exact) and all(out.in_float)
    return out
