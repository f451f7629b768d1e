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

Below float64 (real float32/float16/bfloat16 weights) :func:`_synthesize_float` is used
instead: a float64 Newton on the replayed trace, exact rows by reverse mode, the exact
lattice of solutions at the finest representable grid (coarser ones when it has no float
tie), and a search of that lattice in PyTorch's float forward (replayed op by op) for a point
that ties there too; see the note above :data:`FLOAT_SEARCH_CANDIDATES`. A single relu target fed
by a float32 convolution that PyTorch computes as one fused multiply-add chain per output (checked
bit for bit on the program first) goes to :mod:`mtcheck._fma_ties` before that search: the chain
returns 0.0 only when its last nonzero product is a float, so the last term's activation is first
set to a short float in PyTorch's forward (:func:`_fma_first`); the tie is still found on the
lattice of exact solutions and decided by :func:`_confirm`.
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
from ._ball import Ball, exactify
from .errors import UndecidedError
from .model import ExactModel, NoReverse, has_balls
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
        # the layout of every node's discriminants (which entries each compares; a window's
        # entries), read by the float64 stand-in for an exact evaluation of a seed (_seed_discs64)
        self.ref_discs = ev.discs

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
    M, r, entries = _integer_system(rows, rhs, k)
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


def _linearize(prog, ev, D, upto=None):
    """Exact tangents along the rows of D. The model offers a verified-float fast path and a
    rational one; which is faster depends on the network (measured: the rational path 6x faster
    on a 256-wide MLP, the fast path 2x faster on LeNet), so the first call times both and the
    program keeps the faster one."""
    model = prog.model
    if prog.lin_fast is None:
        try:
            t0 = time.perf_counter()
            out = model.linearize(ev, [0], D, fast=False, upto=upto)
            t1 = time.perf_counter()
            model.linearize(ev, [0], D, fast=True, upto=upto)
            t2 = time.perf_counter()
            prog.lin_fast = (t2 - t1) < (t1 - t0)
            return out
        except TypeError:       # a model without the option
            prog.lin_fast = True
    if prog.lin_fast:
        return model.linearize(ev, [0], D, upto=upto)
    return model.linearize(ev, [0], D, fast=False, upto=upto)


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

    def __init__(self, prog: Program, ev, dirs: Directions, last: int | None = None):
        self.prog, self.ev, self.dirs = prog, ev, dirs
        self.last = last          # the deepest target: rows of nodes past it may be enclosures
        self.s = dirs.s
        self.tans = _linearize(prog, ev, dirs.matrix(), last)
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
            rows = self.prog.model.disc_rows(self.ev, self.tans, node, disc, self.s)
            if isinstance(rows, Ball):
                # an exact value with an enclosed derivative (elu above 0: exp(min(x, 0)) is a Ball
                # of radius 0 there); a radius means the row is irrational and cannot be solved for
                rows = exactify(rows)
                if isinstance(rows, Ball):
                    raise _Enclosed(node)
            self._cache[key] = rows
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
               max_rounds: int = 8, seed: int = 0, lim: SolverLimits | None = None,
               method: str = "auto") -> TieResult:
    """Move ``x0`` so that every target is exactly on a kink, in exact arithmetic and in
    PyTorch's float forward pass. A target without a group is satisfied by any element of
    its node (kept if one is tied already, else the element nearest its kink).

    With ``every_layer``, every nonsmooth node gets a tie, depth by depth, each new one
    solved together with the ties already placed (kept as equalities).

    ``method``: ``"exact"`` (the minimum-norm/Newton steps and one lattice point per
    exponent, the path for dyadic weights in float64), ``"float"`` (exact rows by reverse
    mode and a search of the lattice of exact solutions in PyTorch's float forward, the
    path for real float32/float16/bfloat16 weights), ``"auto"``: ``"float"`` below float64.
    """
    t0 = time.perf_counter()
    try:
        if every_layer:
            return _every_layer(prog, x0, list(targets), max_free=max_free, max_rounds=max_rounds, seed=seed,
                                lim=lim, method=method)
        return _synthesize(prog, x0, targets, max_free=max_free, max_rounds=max_rounds, seed=seed, lim=lim,
                           method=method, t0=t0)
    except _Enclosed:
        return _finish(TieResult(x0, False), "none", t0, _ENCLOSED_REASON)
    except UndecidedError as e:
        # the exact forward cannot decide a case at the seed (enclosures overlap at a comparison
        # of irrational values): nothing to solve from; the check at the input says UNKNOWN
        return _finish(TieResult(x0, False), "none", t0, f"the exact forward is undecided at the seed: {e}")


def _synthesize(prog, x0, targets, *, max_free, max_rounds, seed, lim, method, t0) -> TieResult:
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
    if _use_float_path(prog, method):
        # (the float path checks for enclosures on its own evaluation of the program up to the
        # deepest target: a whole-program evaluation only for that check costs as much as the
        # synthesis of a shallow tie, and values downstream of the targets do not enter their rows)
        if len(targets) == 1 and _fma_first(prog, x0, targets[0], res, seed, max_free):
            return _finish(res, "fma-short-last", t0, "")
        res = TieResult(x0, False)
        try:
            return _synthesize_float(prog, x0, targets, max_free=max_free, max_rounds=max(max_rounds, 10),
                                     seed=seed, res=res, t0=t0)
        except _NO_REVERSE:
            _STATS["float_path_fallback"] += 1
            res = TieResult(x0, False)
    last = max(t.node for t in targets)
    if _has_enclosures(prog, x_seed, last):
        # irrational values (an enclosed smooth op, eval batch norm): the lattice of exact solutions
        # needs exact tie rows; the input is returned unmoved, with the reason
        return _finish(res, "none", t0, _ENCLOSED_REASON)
    if k0 > kmax:
        # a seed on a finer grid than the lattice searched (randn in float64): start from its
        # rounding to 2^-kmax (the seed only steers; the tie found is decided exactly)
        x_cur = np.array([Q(_round_q(v * (1 << kmax)), 1 << kmax) for v in x_seed.tolist()], dtype=object)
        x_seed, k0 = x_cur.copy(), kmax
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
        if has_balls(ev, last):
            # the input moved to where a smooth op upstream of a target is irrational (elu below 0)
            return _finish(res, "none", t0, _ENCLOSED_REASON)
        R = _Rows(prog, ev, dirs, last)
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
        ktop = max(kmax, kstart)     # a seed on a finer grid than kmax (randn in float64) starts there
        ks = list(range(kstart, ktop + 1, 3))
        if ks[-1] != ktop:
            ks.append(ktop)
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
    return _finish(res, method, t0, last_reason)


def _fma_first(prog, x0, target, res, seed, max_free) -> bool:
    """A relu fed by a convolution of hidden activations, in float32: the short-last-term
    construction of :mod:`mtcheck._fma_ties` first (the lattice search below cannot tie such a unit
    in PyTorch's FMA convolution). True when it placed a confirmed tie in ``res``."""
    from ._fma_ties import fma_conv_tie

    try:
        return fma_conv_tie(prog, x0, target, res, seed=seed, max_free=max_free)
    except _NO_REVERSE:
        return False
    except Exception:  # noqa: BLE001 - a heuristic construction: the generic path still runs
        _STATS["fma_error"] += 1
        return False


_ENCLOSED_REASON = ("the program has enclosed (irrational) values upstream of its ties; "
                    "deep_ties solves for ties in exact rational arithmetic only")


def _has_enclosures(prog, x_seed, upto=None) -> bool:
    """Whether the program's exact forward at the seed holds enclosed values (Balls) in the nodes
    up to ``upto`` (the deepest target: values downstream of it do not enter its tie rows)."""
    from .model import has_balls

    try:
        ev = prog.evaluate(x_seed)
    except Exception:  # noqa: BLE001 - the synthesis reports its own failures later
        return False
    return has_balls(ev, upto)


class _Enclosed(Exception):
    """A tie row of a target is an enclosure (an irrational derivative upstream of it)."""


def _finish(res, method, t0, reason):
    """Time and count a synthesis result (see :func:`synthesis_stats`)."""
    res.method = method
    res.seconds = time.perf_counter() - t0
    _TIMES.append(res.seconds)
    if res.ok:
        _STATS["hit"] += 1
    else:
        res.reason = reason
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
    f_exact = _window_margin_fn(ev0, t) or (_elem_value if t.label in _ELEMENTWISE else None)
    if f_exact is None:
        return None

    def f(ev, t):
        # a point where a smooth op upstream of the target is irrational has no exact margin
        return None if has_balls(ev, t.node) else f_exact(ev, t)

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
        if R.last is not None and node > R.last:
            continue
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


def _confirm(prog: Program, cand: torch.Tensor, resolved, res: TieResult, same_pattern: bool = False) -> bool:
    """Exact and float ties for every resolved target at ``cand`` (a fresh trace). With
    ``same_pattern``, also the same case at every node in float as in exact arithmetic (no
    rounding branch anywhere: the check then decides the exact tie, not ROUNDING_BRANCH)."""
    ev_fw, ev_ex = prog.float_eval(cand)
    res.exact = [_tied(ev_ex, t) for t in resolved]
    res.in_float = [_tied(ev_fw, t) for t in resolved]
    if same_pattern and all(res.exact) and all(res.in_float):
        from .model import case_keys

        def same(a, b):
            # fast: equal signs (and, for windows, equal winners) mean equal cases
            if a.values.shape == b.values.shape and np.array_equal(a.signs(), b.signs()) and (
                    not a.max_type or np.array_equal(np.asarray(a.idx_b), np.asarray(b.idx_b))):
                return True
            return case_keys(a) == case_keys(b)

        for d_ex, d_fw in zip(ev_ex.discs, ev_fw.discs):
            if len(d_ex) != len(d_fw) or not all(same(a, b) for a, b in zip(d_ex, d_fw)):
                _STATS["float_search_rounding_elsewhere"] += 1
                return False
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
_NO_REVERSE = (NoReverse,)
_RETRIES = 3            # fresh directions and jitter for a node whose synthesis failed


def _use_float_path(prog: Program, method: str) -> bool:
    if method == "float":
        return True
    if method == "exact":
        return False
    return prog.dtype in (torch.float32, torch.float16, torch.bfloat16)


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


# ---------------------------------------------------------------- real float weights (float32/16/bf16)
#
# With 24-bit weights an exact tie deep in the network is almost always rounded away by
# PyTorch's own float forward (the products have 48 bits, every partial sum rounds): no
# input lattice makes the float forward exact beyond the first product. What does work is
# to treat the float forward as a black box and *search*: every point of the integer
# lattice of exact solutions (a particular lattice point plus LLL-reduced kernel vectors,
# entries of a few units of 2^-k) ties exactly; each gives the float forward another
# rounding, and a fraction of them ties in float too. The float forward is replayed op by
# op from the trace (the same ATen calls on the same shapes, so the same bits), up to the
# target node only; a candidate that ties there is confirmed exactly and by a fresh trace.
# The tie rows come from one exact reverse pass per target (cheap on wide inputs, where
# forward mode along 48 directions is not), and the model is truncated after the deepest
# target (nothing downstream decides whether the target ties).
#
# Where the time goes: an exact evaluation of a conv net costs hundreds of float replays
# (VGG-style 3x32x32: ~0.3 s against ~1 ms), so a request does as few as it can. Two are
# needed: one at the Newton point (the exact values and rows of the tie equation) and the one
# _confirm does at the hit (with the fresh trace's float pattern). Everything else is float64
# heuristics that only choose: the seed's ties and nearest elements (_seed_discs64, instead of
# an exact evaluation of the seed), whether the lattice point is still in the pattern
# (_near_kink64; a float-tied candidate that is not an exact tie brings the exact evaluation
# back), and whether a float-tied candidate has a rounding branch elsewhere (_same_pattern64,
# before the whole-program confirmation). The search combines only the kernel vectors that move
# a direction the tie rows depend on, and when the finest lattice has no float tie it tries
# coarser ones (:data:`_COARSE_KS`). Every success is still decided by _confirm: an exact
# evaluation (the tie is 0 in rationals) and a fresh trace of PyTorch's float forward.

FLOAT_SEARCH_CANDIDATES = 400       # lattice points tried in the float forward, per lattice
FLOAT_SEARCH_SECONDS = 0.6          # and the time they may take


def _replay_float(tr, x: torch.Tensor, upto: int, grad: bool = False, consts=None) -> dict:
    """PyTorch's float forward of the trace on input ``x``, op by op, nodes ``0..upto``:
    a dict Ref -> tensor (the same ATen calls on the same shapes as the traced program).
    ``consts`` replaces the trace's constants (float64 copies, for a heuristic replay)."""
    import torch.utils._pytree as pytree

    from .trace import Ref

    vals: dict = {}

    def f(v):
        if isinstance(v, Ref):
            if v.kind == "in":
                return x
            if v.kind == "const":
                return consts[v.index]
            return vals[v]
        return v

    consts = tr.consts if consts is None else consts
    with torch.set_grad_enabled(grad):
        for node in tr.nodes[:upto + 1]:
            args = pytree.tree_map(f, node.args, is_leaf=lambda v: isinstance(v, Ref))
            kwargs = pytree.tree_map(f, node.kwargs, is_leaf=lambda v: isinstance(v, Ref))
            if node.func._schema.is_mutable:
                args = pytree.tree_map(lambda v: v.clone() if isinstance(v, torch.Tensor) else v, args)
            out = node.func(*args, **kwargs)
            if isinstance(out, (tuple, list)):
                for j, o in enumerate(out):
                    vals[Ref("node", node.index, j)] = o
            else:
                vals[Ref("node", node.index, 0)] = out
    return vals


def _node_leaves(node):
    import torch.utils._pytree as pytree

    from .trace import Ref

    return [v for v in pytree.tree_leaves(node.args, is_leaf=lambda v: isinstance(v, Ref))
            if isinstance(v, Ref) or isinstance(v, torch.Tensor) or isinstance(v, np.ndarray)]


class _FloatProbe:
    """Whether the float forward ties a target element (one discriminant group of a node):
    reads the float arguments of the node from a replay. A fast filter only: every hit is
    confirmed exactly and by a fresh trace."""

    def __init__(self, prog, node: int, disc, group: int):
        from .trace import Ref

        self.node = node
        leaves = _node_leaves(prog.trace.nodes[node])
        sel = np.nonzero(disc.group == group)[0]
        self.max_type = disc.max_type
        self.ref_a = leaves[disc.a] if disc.a is not None else None
        self.ref_b = leaves[disc.b] if disc.b is not None else None
        self.ia = np.asarray(disc.idx_a)[sel] if disc.idx_a is not None else None
        self.ib = np.asarray(disc.idx_b)[sel] if disc.idx_b is not None else None
        self.const = None
        if self.ref_b is None and disc.const is not None:
            c = disc.const[sel] if isinstance(disc.const, np.ndarray) else np.full(sel.size, disc.const, dtype=object)
            self.const = np.array([float(v) for v in c.tolist()], dtype=np.float64)
        self.ok = isinstance(self.ref_a, Ref) and self.ia is not None and (
            self.ref_b is None or isinstance(self.ref_b, Ref) or self.const is not None)

    def _arg(self, vals, ref, prog):
        from .trace import Ref

        if isinstance(ref, Ref):
            if ref.kind == "const":
                return prog.trace.consts[ref.index]
            return vals[ref] if ref.kind == "node" else vals["x"]
        return ref

    def gap(self, vals, prog) -> float:
        """The float discriminant nearest 0 at the target (0.0: tied in float)."""
        a = self._arg(vals, self.ref_a, prog).detach().reshape(-1).to(torch.float64).numpy()
        if self.max_type:
            idx = np.unique(np.concatenate([self.ia, self.ib]))
            w = np.sort(a[idx])
            return float(w[-1] - w[-2]) if w.size > 1 else float("inf")
        av = a[self.ia]
        if self.ref_b is not None:
            bv = self._arg(vals, self.ref_b, prog).detach().reshape(-1).to(torch.float64).numpy()[self.ib]
        else:
            bv = self.const
        d = av - bv
        return float(d[np.argmin(np.abs(d))])


def _replay_probe(prog, x, probes, upto):
    from .trace import Ref

    vals = _replay_float(prog.trace, x, upto)
    vals["x"] = x
    vals[Ref("in", 0)] = x
    return [p.gap(vals, prog) for p in probes]


def _upto_model(prog, last: int):
    """The exact model truncated after node ``last`` (cached on the program)."""
    cache = prog.__dict__.setdefault("_upto", {})
    if last not in cache:
        m = copy.copy(prog.model)
        tr = copy.copy(prog.trace)
        tr.nodes = prog.trace.nodes[:last + 1]
        m.trace = tr
        m.rules = prog.model.rules[:last + 1]
        cache[last] = m
    return cache[last]


def _sub_disc(disc, sel):
    from .ops import Disc

    sel = np.asarray(sel, dtype=np.int64)
    return Disc(disc.label, disc.a, None if disc.idx_a is None else disc.idx_a[sel], disc.b,
                None if disc.idx_b is None else disc.idx_b[sel],
                disc.const[sel] if isinstance(disc.const, np.ndarray) else disc.const,
                disc.values[sel], disc.group[sel], disc.max_type, disc.negate, disc.branch)


def _reverse_grads(model, ev, picks):
    """Exact gradients with respect to every input coordinate of the picked discriminant elements,
    ``picks`` = [(node, disc, element)], by one exact reverse pass: an object array (B, n)."""
    B = len(picks)
    seeds = []
    for b, (node, disc, i) in enumerate(picks):
        w = zeros((B, 1))
        w[b, 0] = Q(1)
        seeds.append((node, _sub_disc(disc, [i]), w))
    g = model.reverse(ev, [0], {}, B, disc_seeds=seeds)          # (B, n)
    return np.asarray(g, dtype=object).reshape(B, -1)


def _reverse_rows(model, ev, picks, dirs: Directions):
    """Exact tangent rows (along the free directions) of the picked discriminant elements,
    ``picks`` = [(node, disc, element)], by one exact reverse pass: a list of fmpq lists."""
    B = len(picks)
    g = _reverse_grads(model, ev, picks)
    out = []
    for b in range(B):
        row = [Q0] * dirs.s
        gb = g[b]
        nz = np.nonzero(gb != 0)[0]
        for j in nz.tolist():
            row[int(dirs.block[j])] += gb[j] * int(dirs.weight[j])
        out.append(row)
    return out


def _integer_system(rows: list, rhs: list, k: int):
    """The equalities ``rows . z = rhs * 2^k`` as integer rows ``M z = r`` (each row times the lcm of
    its denominators), and the entries of ``[M^T | I]`` whose HNF gives solutions and kernel."""
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
    return M, r, entries


def lattice_basis(rows: list, rhs: list, target: list, k: int):
    """(z, kernel): a lattice point of :func:`lattice_point` and the LLL-reduced integer kernel
    of the scaled equalities (a list of int vectors); (None, None) when no lattice point exists."""
    m, s = len(rows), len(rows[0])
    scale = Q(1 << k)
    M, r, entries = _integer_system(rows, rhs, k)
    H = flint.fmpz_mat(s, m + s, entries).hnf()
    P = [[int(H[i, j]) for j in range(m)] for i in range(m)]
    if any(P[i][i] == 0 for i in range(m)):
        return None, None
    y = []
    for i in range(m):
        acc = r[i] - sum(P[j][i] * y[j] for j in range(i))
        if acc % P[i][i]:
            return None, None
        y.append(acc // P[i][i])
    U = [[int(H[i, m + c]) for c in range(s)] for i in range(s)]
    z0 = [sum(y[i] * U[i][c] for i in range(m)) for c in range(s)]
    if s == m:
        return z0, []
    K = flint.fmpz_mat([U[i] for i in range(m, s)])
    try:
        K = K.lll()
    except Exception:  # noqa: BLE001 - LLL is an optimisation
        pass
    Kl = [[int(v) for v in row] for row in K.tolist()]
    d = [v * scale - z for v, z in zip(target, z0)]
    Kq = flint.fmpq_mat(len(Kl), s, [Q(v) for row in Kl for v in row])
    try:
        c = (Kq * Kq.transpose()).solve(Kq * flint.fmpq_mat(s, 1, d))
        cr = [_round_q(c[i, 0]) for i in range(len(Kl))]
    except (ZeroDivisionError, ValueError):
        cr = [0] * len(Kl)
    z = [z0[j] + sum(cr[i] * Kl[i][j] for i in range(len(Kl)) if cr[i]) for j in range(s)]
    return z, Kl


def _live_tied(model, ev, node, disc):
    """The tied elements of a discriminant that may be effective: for a max window, those whose
    winner is nonzero (a window of dead relu zeros ties, but no direction moves it)."""
    tied = np.nonzero(disc.values == 0)[0]
    if not disc.max_type or tied.size == 0:
        return tied
    leaves = _node_leaves(model.trace.nodes[node])
    ref = leaves[disc.a] if disc.a is not None else None
    val = ev.values.get(ref) if ref is not None else None
    if val is None:
        return tied
    a = np.asarray(val, dtype=object).reshape(-1)
    return np.array([i for i in tied.tolist() if a[int(disc.idx_b[i])] != 0], dtype=np.int64)


def _live_untied(model, ev, node, disc):
    """The untied elements worth tying: for a max window, those whose winner is nonzero (equating
    an entry with a winner of 0 only puts that entry's relu on its kink, a tie of another layer)."""
    nz = np.nonzero(disc.values != 0)[0]
    if not disc.max_type or nz.size == 0:
        return nz
    leaves = _node_leaves(model.trace.nodes[node])
    ref = leaves[disc.a] if disc.a is not None else None
    val = ev.values.get(ref) if ref is not None else None
    if val is None:
        return nz
    a = np.asarray(val, dtype=object).reshape(-1)
    win = np.asarray(disc.idx_b)[nz]
    live = np.array([a[int(w)] != 0 for w in win.tolist()], dtype=bool)
    return nz[live]


def _pick_element(model, ev, dirs, node, label, group, want_tied, excluded, n_cand=8):
    """(disc index, disc, element, value, row) for a target, or None; the row is exact.

    Candidates: the tied elements (``want_tied``), the elements of ``group``, or the
    ``n_cand`` elements nearest their kink by value; among them the one nearest by
    |value| / |row| with a nonzero row (a zero row is kept only for a tie already there)."""
    cands = []
    for di, disc in enumerate(ev.discs[node]):
        if label is not None and disc.label != label:
            continue
        vals = disc.values
        if group is not None:
            idx = np.nonzero(disc.group == group)[0]
            if disc.max_type and idx.size:
                vf = _floats(vals[idx])
                idx = idx[np.argsort(-vf)][:1]          # the entry nearest the winner
        elif want_tied:
            idx = _live_tied(model, ev, node, disc)[:n_cand]
        else:
            nz = _live_untied(model, ev, node, disc)
            if nz.size == 0:
                continue
            vf = np.abs(_floats(vals[nz]))
            idx = nz[np.argsort(vf, kind="stable")[:4 * n_cand]]
        for i in idx.tolist():
            if (node, di, int(i)) not in excluded:
                cands.append((abs(float(vals[i])), di, int(i)))
    cands.sort()
    if not cands:
        return None
    # the element nearest its kink by value first (one reverse pass costs about as much per
    # row as the whole choice is worth); more only when its row is zero (a dead unit)
    first = cands[:1]
    picks = [(node, ev.discs[node][di], i) for _, di, i in first]
    rows = _reverse_rows(model, ev, picks, dirs)
    if all(all(v == 0 for v in r) for r in rows) and len(cands) > 1 and not want_tied:
        first = cands[1:n_cand]
        rows = _reverse_rows(model, ev, [(node, ev.discs[node][di], i) for _, di, i in first], dirs)
    cands = first
    best = None
    for (vabs, di, i), row in zip(cands, rows):
        nrm = math.sqrt(sum(float(v) ** 2 for v in row))
        if nrm == 0:
            continue          # a tie that no direction moves (dead units): not an effective tie
        score = vabs / nrm
        if best is None or score < best[0]:
            best = (score, di, i, row)
    if best is None:
        return None
    _, di, i, row = best
    return di, ev.discs[node][di], i, ev.discs[node][di].values[i], row


def _synthesize_float(prog: Program, x0: torch.Tensor, targets, *, max_free: int, max_rounds: int, seed: int,
                      res: TieResult, t0: float) -> TieResult:
    """:func:`synthesize` for real float weights: exact tie rows by reverse mode, the exact
    lattice of solutions, and a search of it in PyTorch's float forward (see the note above)."""
    rng = np.random.default_rng(seed)
    dtype = prog.dtype
    n = int(np.prod(prog.shape))
    last = max(t.node for t in targets)
    model = _upto_model(prog, last)
    x_seed = from_tensor(x0.detach()).ravel()
    k0 = _grid_bits(x_seed.tolist())
    kmax = _KMAX.get(dtype, 18)
    dirs = Directions(n, max_free, rng)
    delta_cur = [Q0] * dirs.s
    excluded: set = set()
    fixed: dict = {}
    reason = "no round ran"
    method = "float-search"
    # ties the targets do not ask for (constant patches tie every max-pool window over them):
    # the pattern-fixed model holds on one side of them only, and the lattice point of the
    # solution would fall on the other. Step to a generic dyadic point nearby first.
    # What the seed looks like (its ties, the elements nearest their kinks) only steers the choices
    # below, so it is read from the float64 replay (_seed_discs64), not from an exact evaluation:
    # on a deep target that evaluation cost as much as the rest of the synthesis. The exact
    # rounds below evaluate exactly, and decide.
    ev0 = _seed_discs64(prog, x_seed, last)
    if ev0 is None:       # a layout the float64 stand-in does not read: the exact evaluation
        ev0 = model.evaluate([np.asarray(x_seed, dtype=object).reshape(prog.shape)])
        if has_balls(ev0):
            return _finish(res, "none", t0, _ENCLOSED_REASON)
    wanted = {t.node for t in targets}
    if any(node_has_tie(ev0, nd) for nd in prog.nonsmooth if nd <= last and nd not in wanted):
        kj = min(kmax, max(k0 + 4, 8))
        noise = rng.integers(-3, 4, size=n)
        jittered = np.array([v + Q(int(e), 1 << kj) for v, e in zip(x_seed.tolist(), noise.tolist())], dtype=object)
        if _representable(jittered.tolist(), dtype) is not None:
            x_seed = jittered
            k0 = _grid_bits(x_seed.tolist())
            _STATS["float_path_jitter"] += 1
            # (the elements are still chosen from the seed before the jitter: a tie there, e.g. in a
            # window over a constant patch, is an element the jitter left within 2^-kj of its kink)
    # a float64 Newton on the replayed forward first (heuristic only, fast): the exact rounds
    # below then start within about 2^-kmax of the tie, where the pattern almost always holds
    try:
        pre = _presolve64(prog, ev0, x_seed, dirs, targets, last, kmax)
    except Exception:  # noqa: BLE001 - a program the float64 replay cannot run: exact rounds only
        pre = None
        _STATS["presolve_failed"] += 1
    if pre is not None:
        delta_cur, fixed_pre = pre
        fixed.update(fixed_pre)
        _STATS["presolved"] += 1
    newton = 0
    coarse_left = _COARSE_TRIES
    for rnd in range(max_rounds + 1):
        res.rounds = rnd + 1
        x_cur = dirs.apply(x_seed, delta_cur)
        ev = model.evaluate([np.asarray(x_cur, dtype=object).reshape(prog.shape)])
        if has_balls(ev):
            # irrational values upstream of a target (an enclosed smooth op, eval batch norm): the
            # lattice of exact solutions needs exact tie rows; the input is returned unmoved
            return _finish(res, "none", t0, _ENCLOSED_REASON)
        resolved, eqs, probes = [], [], []
        ok = True
        for t in targets:
            t_fix = fixed.get(t.node) if t.group is None else None
            tied_node = t.group is None and node_has_tie(ev, t.node)
            ch = None
            if t_fix is not None:
                ch = _pick_element(model, ev, dirs, t.node, t_fix.label, t_fix.group, False, excluded)
            if ch is None and tied_node:
                ch = _pick_element(model, ev, dirs, t.node, t.label, None, True, excluded)
            if ch is None:
                ch = _pick_element(model, ev, dirs, t.node, t.label, t.group, False, excluded)
            if ch is None:
                ok = False
                reason = f"node {t.node}: no element reachable from the free coordinates"
                break
            di, disc, i, v, row = ch
            tt = Target(t.node, disc.label, int(disc.group[i]))
            if t.group is None:
                fixed[t.node] = tt
            resolved.append(tt)
            probes.append(_FloatProbe(prog, t.node, disc, int(disc.group[i])))
            if any(c != 0 for c in row):
                eqs.append((tt, v, row, (t.node, di, i), t.group is None))
            elif v != 0:
                ok = False
                reason = (f"node {t.node} ({tt.label} {tt.group}) does not depend on the free directions here "
                          "(saturated or dead units upstream)")
        res.targets = resolved
        if not ok:
            break
        rows = [list(r) for _, _, r, _, _ in eqs]
        if not rows:
            # every target tied with a zero row (constant there): only the float forward is left
            cand = _representable(np.asarray(x_cur).tolist(), dtype)
            if cand is not None and _confirm(prog, cand.reshape(prog.shape), resolved, res):
                res.ok = True
            else:
                reason = "tied exactly with a constant discriminant, not in the float forward pass"
            break
        if all(_tied(ev, t) for t in resolved):
            # already tied exactly here: search the float forward around this point
            d_star = list(delta_cur)
            rows, _ = _independent(rows, [Q0] * len(rows))
        else:
            rhs = [-v for _, v, _, _, _ in eqs]
            rows, rhs = _independent(rows, rhs)
            step = min_norm_step(rows, rhs)
            d_star = [a + b for a, b in zip(delta_cur, step)]
        abs_rhs = [sum((a * b for a, b in zip(row, d_star)), Q0) for row in rows]
        # every exact evaluation stays at dyadic points of the 2^-kmax lattice (a rational
        # iterate with a large denominator makes the exact forward 10-100x slower)
        for k in _float_ks(dtype, kmax):
            z, K = lattice_basis(rows, abs_rhs, d_star, k)
            if z is None:
                continue
            x_z = dirs.apply(x_seed, [Q(int(v), 1 << k) for v in z])
            if _representable(x_z.tolist(), dtype) is not None:
                break
        if z is None:
            reason = "the tie equations have no dyadic solution for the chosen elements"
            _STATS["no_dyadic_solution"] += 1
            for _, _, _, key, free_choice in eqs:
                excluded.add(key)
                if free_choice:
                    fixed.pop(key[0], None)
            continue
        d_z = [Q(int(v), 1 << k) for v in z]
        x_z = dirs.apply(x_seed, d_z)
        if _representable(x_z.tolist(), dtype) is None:
            reason = f"the lattice point at 2^-{k} is not representable in {dtype}"
            break
        # Is z still in the pattern (an exact tie)? On a deep target the exact evaluation that says so
        # costs as much as all the rest of the round, so when the float64 replay puts every target
        # within rounding of its kink at z it is skipped: the search then runs at once, every
        # float-tied candidate is decided by _confirm's exact evaluation, and the first candidate
        # that is not an exact tie stops the search and brings the evaluation back (a heuristic
        # choice of what to compute first, never a decision)
        hit = None
        if _near_kink64(prog, ev, resolved, x_z):
            _STATS["lattice_eval_skipped"] += 1
            hit = _float_lattice_search(prog, model, dirs, x_seed, z, K, k, resolved, probes, res, rng, last,
                                        rows=rows, stop_on_exact_miss=True)
            if hit is True:
                res.bits = k
                res.ok = True
                break
        ev_z = None
        if hit is None or hit is _EXACT_MISS:
            ev_z = model.evaluate([np.asarray(x_z, dtype=object).reshape(prog.shape)])
        if ev_z is not None and not all(_tied(ev_z, t) for t in resolved):
            # the solution left the pattern: the crossing on the segment (dyadic points only),
            # else Newton from the (dyadic) lattice point
            newton += 1
            reason = "the local solution left the pattern; Newton step from it"
            if len(eqs) == len(resolved) and not all(_tied(ev, t) for t in resolved):
                d_root = _dyadic_segment_root(_Up(prog, model), ev, ev_z, x_seed, dirs, delta_cur, d_z, resolved, k)
                if d_root is not None:
                    _STATS["segment_roots"] += 1
                    delta_cur = d_root
                    reason = "the local solution left the pattern; moved near the crossing on the segment"
                    continue
            if newton % 6 == 0 and all(fc for _, _, _, _, fc in eqs):
                # cycling between pieces: another element
                for _, _, _, key, _ in eqs:
                    excluded.add(key)
                    fixed.pop(key[0], None)
                delta_cur = [Q0] * dirs.s
            elif newton % 6 == 5:
                delta_cur = _tame([(a + b) / 2 for a, b in zip(delta_cur, d_z)], k)      # damped
            else:
                delta_cur = d_z
            continue
        if hit is None or hit is _EXACT_MISS:
            hit = _float_lattice_search(prog, model, dirs, x_seed, z, K, k, resolved, probes, res, rng, last,
                                        rows=rows)
            if hit is True:
                res.bits = k
                res.ok = True
                break
        reason = hit
        if isinstance(hit, str) and hit.startswith("no lattice point") and coarse_left > 0:
            # no float tie on the fine lattice: the same equations on coarser ones (see _COARSE_KS)
            coarse_left -= 1
            if _coarse_search(prog, model, dirs, x_seed, rows, abs_rhs, d_star, k, max(k0, 1), ev, resolved,
                              probes, res, rng, last) is True:
                res.ok = True
                break
        if all(fc for _, _, _, _, fc in eqs):
            # these elements do not tie in the float forward near here: choose others
            _STATS["float_element_switch"] += 1
            for _, _, _, key, _ in eqs:
                excluded.add(key)
                fixed.pop(key[0], None)
            delta_cur = [Q0] * dirs.s
            continue
        # a fresh start: jitter, new free directions
        dirs = Directions(n, max_free, rng)
        delta_cur = [Q0] * dirs.s
        x_seed = np.asarray(dirs.apply(x_seed, _jitter([Q0] * dirs.s, max(k0, 4) + 2, rng)), dtype=object)
        if _representable(x_seed.tolist(), dtype) is None:
            x_seed = from_tensor(x0.detach()).ravel()
        fixed.clear()
    return _finish(res, method, t0, reason)


# lattice exponents of the float path, finest first: the finest the dtype represents for inputs
# of magnitude < 2 (the lattice points are then 16x closer to the rational solution than at
# _KMAX, which keeps max-pool winners and relu signs), then _KMAX
_KMAX_FLOAT = {torch.float32: 22, torch.float16: 10, torch.bfloat16: 7}


# Coarser lattices tried (exponent k minus these) when the finest has no point that ties in the
# float forward. A float forward that accumulates a dot product with fused multiply-adds (oneDNN's
# direct convolution on LeNet's layers does, bias first) returns exactly 0.0 only when the exact
# partial sum at its last rounding is itself a float, which inputs with 23 significant bits almost
# never allow and inputs with 11 often do: on LeNet's first relu, 2/10 requests found a float tie
# on the 2^-22 lattice and 9/10 on the 2^-10 one. A coarse lattice point is farther from the
# rational solution, so it may leave the pattern: each is prechecked in float64 and decided by
# _confirm, as on the fine lattice.
_COARSE_KS = (8, 12)
_COARSE_TRIES = 3     # rounds per synthesis that try them (where the fine lattice has no float tie)


def _coarse_search(prog, model, dirs, x_seed, rows, abs_rhs, d_star, k, kmin, ev, resolved, probes, res, rng, last):
    """The lattice search of :func:`_float_lattice_search` on the lattices 2^-(k - c), c in
    :data:`_COARSE_KS` (not below ``kmin``): True when one ties in the float forward (confirmed),
    else None."""
    for c in _COARSE_KS:
        kc = k - c
        if kc < kmin:
            break
        z, K = lattice_basis(rows, abs_rhs, d_star, kc)
        if z is None:
            continue
        x_z = dirs.apply(x_seed, [Q(int(v), 1 << kc) for v in z])
        if _representable(x_z.tolist(), prog.dtype) is None or not _near_kink64(prog, ev, resolved, x_z):
            continue
        _STATS["coarse_searches"] += 1
        hit = _float_lattice_search(prog, model, dirs, x_seed, z, K, kc, resolved, probes, res, rng, last,
                                    rows=rows, stop_on_exact_miss=True)
        if hit is True:
            res.bits = kc
            _STATS["coarse_hits"] += 1
            return True
        if hit is _EXACT_MISS:
            break
    return None


def _float_ks(dtype, kmax):
    kf = _KMAX_FLOAT.get(dtype, kmax)
    return [kf, kmax] if kf > kmax else [kmax]


def _consts64(prog):
    c = prog.__dict__.get("_consts64")
    if c is None:
        c = [t.detach().to(torch.float64) if t.is_floating_point() else t for t in prog.trace.consts]
        prog.__dict__["_consts64"] = c
    return c


def _replay64(prog, x, upto):
    """The trace replayed in float64 (float64 copies of the weights), autograd on: a heuristic
    model of the exact forward for Newton steps, never a decision."""
    from .trace import Ref

    vals = _replay_float(prog.trace, x, upto, grad=torch.is_grad_enabled(), consts=_consts64(prog))
    vals[Ref("in", 0)] = x
    return vals


@dataclass
class _Disc64:
    """A node's discriminants in float64 at one point, laid out as :class:`mtcheck.ops.Disc`
    (``values``: float64; ``live``: the element may be effective, i.e. a window's winner is
    nonzero). Heuristics only: it chooses elements, it decides nothing."""

    label: str
    a: int
    idx_a: np.ndarray
    b: int | None
    idx_b: np.ndarray | None
    const: object
    values: np.ndarray
    group: np.ndarray
    max_type: bool
    live: np.ndarray

    def signs(self) -> np.ndarray:
        return np.sign(self.values).astype(np.int8)


class _Seed64:
    """The float64 stand-in for an exact evaluation of a seed: ``discs[node]`` (see :func:`_seed_discs64`)."""

    def __init__(self, discs):
        self.discs = discs


def _seed_discs64(prog, x_seed, last, vals=None):
    """Every nonsmooth node's discriminants up to ``last`` at the exact point ``x_seed``, from the
    float64 replay (or from the replayed values ``vals``), in the layout of the exact model's
    discriminants at the program's reference input (elementwise ones compare fixed entries; a
    window's entries are fixed, its winner is the maximum here). A :class:`_Seed64`, or None when
    a layout is not one of those (the caller then evaluates exactly). It only steers choices:
    whether to jitter, which element to solve for, which candidate to confirm first."""
    from .trace import Ref

    if getattr(prog, "ref_discs", None) is None:
        return None
    if vals is None:
        try:
            with torch.no_grad():
                vals = _replay64(prog, torch.tensor(_floats(x_seed).astype(np.float64)).reshape(prog.shape), last)
        except Exception:  # noqa: BLE001 - a program the float64 replay cannot run
            return None

    def arg(ref):
        if isinstance(ref, Ref):
            v = _consts64(prog)[ref.index] if ref.kind == "const" else vals[ref]
        else:
            v = ref
        v = v.detach().to(torch.float64).numpy() if isinstance(v, torch.Tensor) else np.asarray(v, dtype=np.float64)
        return v.reshape(-1)

    discs = [[] for _ in range(last + 1)]
    for nd in prog.nonsmooth:
        if nd > last:
            break
        leaves = _node_leaves(prog.trace.nodes[nd])
        for d in prog.ref_discs[nd]:
            if d.a is None or d.idx_a is None:
                return None
            A = arg(leaves[d.a])
            if not d.max_type:
                if d.b is not None:
                    other = arg(leaves[d.b])[np.asarray(d.idx_b)]
                elif d.const is None:
                    other = 0.0
                else:
                    other = _floats(d.const) if isinstance(d.const, np.ndarray) else float(d.const)
                v = A[np.asarray(d.idx_a)] - other
                discs[nd].append(_Disc64(d.label, d.a, d.idx_a, d.b, d.idx_b, d.const, v, d.group, False,
                                         np.ones(v.shape, dtype=bool)))
                continue
            # a window: its entries from the reference layout, its winner the float64 maximum here
            if d.b != d.a:
                return None
            grp = np.asarray(d.group)
            counts = np.bincount(grp)
            m = int(counts[0]) if counts.size else 0
            if m < 2 or (counts != m).any():
                return None                        # ragged or two-entry windows: the exact evaluation
            order = np.argsort(grp, kind="stable")
            ia = np.asarray(d.idx_a)[order].reshape(-1, m)
            ib = np.asarray(d.idx_b)[order].reshape(-1, m)
            if (ib == ib[:, :1]).all():
                take_min = False
                ent = np.concatenate([ib[:, :1], ia], axis=1)
            elif (ia == ia[:, :1]).all():
                take_min = True
                ent = np.concatenate([ia[:, :1], ib], axis=1)
            else:
                return None
            w = A[ent]
            col = np.argmin(w, axis=1) if take_min else np.argmax(w, axis=1)
            G = ent.shape[0]
            win = ent[np.arange(G), col]
            mask = np.ones(ent.shape, dtype=bool)
            mask[np.arange(G), col] = False
            oth = ent[mask].reshape(G, m)
            g = np.repeat(np.arange(G), m)
            winr = np.repeat(win, m)
            othr = oth.reshape(-1)
            if take_min:
                discs[nd].append(_Disc64(d.label, d.a, winr, d.a, othr, None, A[winr] - A[othr], g, True,
                                         A[winr] != 0))
            else:
                discs[nd].append(_Disc64(d.label, d.a, othr, d.a, winr, None, A[othr] - A[winr], g, True,
                                         A[winr] != 0))
    return _Seed64(discs)


def _same_pattern64(prog, x: torch.Tensor, resolved) -> bool:
    """Whether PyTorch's float forward at ``x`` takes the cases of the float64 replay at every
    nonsmooth node, the targets' own elements aside: a rounding branch elsewhere makes _confirm
    fail, after a whole exact evaluation; this filter costs two float replays. A heuristic (the
    float64 replay stands in for exact arithmetic): it only chooses which candidates are worth
    confirming; True when it cannot tell."""
    from .trace import Ref

    end = len(prog.trace.nodes) - 1
    try:
        with torch.no_grad():
            v32 = _replay_float(prog.trace, x, end)
        v32[Ref("in", 0)] = x
        s32 = _seed_discs64(prog, None, end, vals=v32)
        s64 = _seed_discs64(prog, from_tensor(x).ravel(), end)
    except Exception:  # noqa: BLE001 - a program the replay cannot run: no filter
        return True
    if s32 is None or s64 is None:
        return True
    for nd in prog.nonsmooth:
        mine = [t.group for t in resolved if t.node == nd]
        for a, b in zip(s32.discs[nd], s64.discs[nd]):
            keep = ~np.isin(a.group, mine) if mine else slice(None)
            if not np.array_equal(np.sign(a.values[keep]), np.sign(b.values[keep])):
                return False
            if a.max_type and not np.array_equal(np.asarray(a.idx_b)[keep], np.asarray(b.idx_b)[keep]):
                return False
    return True


def _presolve64(prog, ev0, x_seed, dirs, targets, last, kmax, max_iter=24):
    """Float64 Newton (minimum-norm steps) on the free directions towards the targets' ties:
    (dyadic delta on the 2^-kmax grid, {node: Target}) or None. Elements: per target, the one
    nearest its kink (|value| / |gradient|) among the nearest by value; a node tied already
    keeps one of its tied elements (its equation, value 0, is kept)."""
    from .trace import Ref

    xs = torch.tensor(_floats(x_seed).astype(np.float64))
    w = torch.tensor(dirs.weight.astype(np.float64))
    blk = torch.tensor(dirs.block)
    shape = prog.shape

    def fwd(delta):
        return _replay64(prog, (xs + w * delta[blk]).reshape(shape), last)

    def leaf(vals, ref):
        if isinstance(ref, Ref):
            if ref.kind == "const":
                return _consts64(prog)[ref.index]
            return vals[ref]
        return ref

    eqs = []          # (fn(vals) -> scalar tensor, Target)
    fixed = {}
    delta = torch.zeros(dirs.s, dtype=torch.float64, requires_grad=True)
    vals = fwd(delta)
    for t in targets:
        leaves = _node_leaves(prog.trace.nodes[t.node])
        best = None
        for disc in ev0.discs[t.node]:
            if t.label is not None and disc.label != t.label:
                continue
            if disc.a is None or not isinstance(leaves[disc.a], Ref):
                continue
            A = leaf(vals, leaves[disc.a]).reshape(-1)
            Bt = leaf(vals, leaves[disc.b]).reshape(-1) if disc.b is not None else None
            if isinstance(disc, _Disc64):
                tied = np.nonzero((disc.values == 0) & disc.live)[0]
            else:
                tied = _live_tied(prog.model, ev0, t.node, disc)
            keep_tied = t.group is None and tied.size > 0
            if t.group is not None:
                cand = np.nonzero(disc.group == t.group)[0]
            elif keep_tied:
                cand = tied[:8]
            else:
                if isinstance(disc, _Disc64):
                    nz = np.nonzero((disc.values != 0) & disc.live)[0]
                else:
                    nz = _live_untied(prog.model, ev0, t.node, disc)
                vf = np.abs(_floats(disc.values[nz]))
                cand = nz[np.argsort(vf, kind="stable")[:8]]
            for i in cand.tolist():
                ia = int(disc.idx_a[i])
                if disc.max_type:
                    ib = int(disc.idx_b[i])
                    fn = (lambda vv, ref=leaves[disc.a], ia=ia, ib=ib: leaf(vv, ref).reshape(-1)[ia]
                          - leaf(vv, ref).reshape(-1)[ib])
                elif Bt is not None:
                    ib = int(disc.idx_b[i])
                    fn = (lambda vv, ra=leaves[disc.a], rb=leaves[disc.b], ia=ia, ib=ib:
                          leaf(vv, ra).reshape(-1)[ia] - leaf(vv, rb).reshape(-1)[ib])
                else:
                    c = float(disc.const[i]) if isinstance(disc.const, np.ndarray) else float(disc.const or 0)
                    fn = lambda vv, ra=leaves[disc.a], ia=ia, c=c: leaf(vv, ra).reshape(-1)[ia] - c  # noqa: E731
                v = fn(vals)
                if not v.requires_grad:
                    continue
                (g,) = torch.autograd.grad(v, delta, retain_graph=True)
                gn = float(g.norm())
                if gn == 0.0:
                    continue
                score = abs(float(v.detach())) / gn
                if best is None or score < best[0]:
                    best = (score, fn, Target(t.node, disc.label, int(disc.group[i])))
        if best is None:
            return None
        eqs.append((best[1], best[2]))
        fixed[t.node] = best[2]
    d = delta.detach().clone()
    scale = None
    for _ in range(max_iter):
        dd = d.clone().requires_grad_(True)
        vv = fwd(dd)
        v = torch.stack([fn(vv) for fn, _ in eqs])
        G = torch.stack([torch.autograd.grad(vi, dd, retain_graph=True)[0] for vi in v])
        vn = float(v.detach().abs().max())
        if scale is None:
            scale = max(vn, 1e-300)
        if vn <= scale * 1e-12 or vn == 0.0:
            break
        step = torch.linalg.lstsq(G @ G.T, -v.detach().unsqueeze(1)).solution
        d = d + (G.T @ step).squeeze(1).detach()
    # onto the 2^-kmax grid: exact dyadics (the exact rounds take over from here)
    out = [Q(_round_q(Q(*float(v).as_integer_ratio()) * (1 << kmax)), 1 << kmax) for v in d.tolist()]
    return out, fixed


def _float64_target_fn(prog, ev0, t):
    """x (exact dyadics) -> float64 value of a target's continuous tie function (an element's
    discriminant; for a window, the entry winning at ev0 minus the largest other), by the
    float64 replay; None when the target's layout is not understood. Heuristics only."""
    from .trace import Ref

    leaves = _node_leaves(prog.trace.nodes[t.node])
    for disc in ev0.discs[t.node]:
        if disc.label != t.label or disc.a is None or not isinstance(leaves[disc.a], Ref):
            continue
        sel = np.nonzero(disc.group == t.group)[0]
        if sel.size == 0:
            continue
        ra = leaves[disc.a]

        def get(vals, ref):
            return _consts64(prog)[ref.index] if ref.kind == "const" else vals[ref]

        if disc.max_type:
            win = int(disc.idx_b[sel[0]])
            others = np.asarray(disc.idx_a[sel], dtype=np.int64)

            def fn(x, ra=ra, win=win, others=others):
                with torch.no_grad():
                    vals = _replay64(prog, torch.tensor(_floats(x)).reshape(prog.shape), t.node)
                    a = get(vals, ra).reshape(-1)
                    return float(a[win] - a[torch.from_numpy(others)].max())
            return fn
        if sel.size != 1:
            return None
        i = int(sel[0])
        ia = int(disc.idx_a[i])
        rb = leaves[disc.b] if disc.b is not None else None
        ib = int(disc.idx_b[i]) if disc.b is not None else None
        c = None if rb is not None else (float(disc.const[i]) if isinstance(disc.const, np.ndarray)
                                         else float(disc.const or 0))
        sign = -1.0 if disc.negate else 1.0

        def fn(x, ra=ra, rb=rb, ia=ia, ib=ib, c=c, sign=sign):
            with torch.no_grad():
                vals = _replay64(prog, torch.tensor(_floats(x)).reshape(prog.shape), t.node)
                a = float(get(vals, ra).reshape(-1)[ia])
                b = float(get(vals, rb).reshape(-1)[ib]) if rb is not None else c
                return sign * (a - b)
        return fn
    return None


def _dyadic_segment_root(up, ev0, ev1, x_seed, dirs, d0, d1, resolved, k, max_evals=10):
    """Near where the one target still off its tie crosses its kink on the segment d0 -> d1
    (looking beyond d1 up to 64x when it has not crossed yet): regula falsi (Illinois) on a
    continuous piecewise-linear function that is 0 exactly at the tie, every point rounded onto
    the 2^-k grid (dyadic, so the exact forward stays fast). Returns a dyadic delta near the
    crossing (the next Newton step starts there), or None."""
    off = [t for t in resolved if not _tied(ev1, t)]
    if len(off) != 1:
        return None
    t = off[0]
    f = _window_margin_fn(ev0, t) or (_elem_value if t.label in _ELEMENTWISE else None)
    if f is None:
        return None
    step = [b - a for a, b in zip(d0, d1)]

    def point(c):
        return _tame([a + c * e for a, e in zip(d0, step)], k)

    f64 = _float64_target_fn(up._prog, ev0, t)

    def fval(c):
        # a heuristic start point only: float64 (the replayed forward), exact when that is unavailable
        x = dirs.apply(x_seed, point(c))
        if f64 is not None:
            try:
                v = f64(x)
                return Q(*float(v).as_integer_ratio())
            except Exception:  # noqa: BLE001
                pass
        return f(up.evaluate(x), t)

    fa, fb = f(ev0, t), f(ev1, t)
    if fa is None or fb is None or fa == 0:
        return None
    a, b = Q0, Q(1)
    n = 0
    while (fa > 0) == (fb > 0):
        a, fa = b, fb
        b = b * 4
        if b > 64:
            return None
        fb = fval(b)
        n += 1
        if fb is None:
            return None
        if fb == 0:
            return point(b)
    side = 0
    best = (abs(fa), a) if abs(fa) < abs(fb) else (abs(fb), b)
    while n < max_evals:
        c = a - fa * (b - a) / (fb - fa)
        c = Q(_round_q(c * (1 << 20)), 1 << 20)
        if c <= a or c >= b:
            break
        fc = fval(c)
        n += 1
        if fc is None:
            break
        if fc == 0:
            return point(c)
        if abs(fc) < best[0]:
            best = (abs(fc), c)
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
    return point(best[1])


class _Up:
    """A view of a program whose ``evaluate`` runs the truncated exact model."""

    def __init__(self, prog, model):
        self._prog, self._model = prog, model

    def evaluate(self, x_exact):
        return self._model.evaluate([np.asarray(x_exact, dtype=object).reshape(self._prog.shape)])


_EXACT_MISS = "a float-tied lattice point was not an exact tie (the lattice point left the pattern)"


def _near_kink64(prog, ev, resolved, x) -> bool:
    """Whether the float64 replay puts every resolved target within rounding of its kink at the
    exact point ``x`` (a heuristic for what to evaluate first; never a decision)."""
    for t in resolved:
        fn = _float64_target_fn(prog, ev, t)
        if fn is None:
            return False
        try:
            v = fn(x)
        except Exception:  # noqa: BLE001 - a program the float64 replay cannot run
            return False
        if not abs(v) <= _NEAR_KINK64:
            return False
    return True


_NEAR_KINK64 = 2.0 ** -40      # float64 rounding of an exact 0 is ~1e-15; leaving the pattern moves it far more


def _float_lattice_search(prog, model, dirs, x_seed, z, K, k, resolved, probes, res, rng, last, rows=None,
                          stop_on_exact_miss=False):
    """Lattice points z + small kernel combinations, each a point of the exact tie (while the
    pattern holds); the first whose float forward ties every target, confirmed exactly and by
    a fresh trace: True, else the reason (a string). With ``stop_on_exact_miss`` (the caller has
    not evaluated z exactly), a float-tied candidate that is not an exact tie returns
    :data:`_EXACT_MISS` at once.

    Only the kernel vectors that move a free direction the tie ``rows`` depend on are combined:
    the others change nothing upstream of the targets, so they only repeat a float outcome
    already seen (on a conv layer most of the kernel is such vectors)."""
    dtype = prog.dtype
    xs64 = _floats(x_seed).astype(np.float64)
    w = dirs.weight.astype(np.float64)
    blk = dirs.block
    scale = float(1 << k)
    if K and rows:
        support = np.array([any(r[j] != 0 for r in rows) for j in range(dirs.s)], dtype=bool)
        useful = [v for v in K if any(v[j] != 0 for j in np.flatnonzero(support).tolist())]
        K = useful or K
    Karr = np.array(K, dtype=object) if K else np.zeros((0, dirs.s), dtype=object)
    zarr = np.array(z, dtype=object)
    small = Karr.size == 0 or max(abs(int(v)) for v in Karr.ravel().tolist()) < (1 << 40)
    Kf = Karr.astype(np.float64) if small and Karr.size else np.zeros((0, dirs.s))
    t_start = time.perf_counter()
    seen = set()
    tried = 0
    exact_left = 0
    not_rep = 0
    nk = Kf.shape[0]
    reason = f"no lattice point at 2^-{k} tied in the float forward pass"
    cand_z = zarr
    while tried < FLOAT_SEARCH_CANDIDATES and time.perf_counter() - t_start < FLOAT_SEARCH_SECONDS:
        if tried:
            r = int(rng.integers(1, 4)) if nk else 0
            if not nk:
                break
            picks = rng.choice(nk, size=min(r, nk), replace=False)
            coef = rng.choice(np.array([-2, -1, 1, 2]), size=picks.size)
            cz = zarr.copy()
            for p_, c_ in zip(picks.tolist(), coef.tolist()):
                cz = cz + Karr[p_] * int(c_)
            key = tuple(int(v) for v in cz.tolist())
            if key in seen:
                tried += 1
                continue
            seen.add(key)
            cand_z = cz
        tried += 1
        zf = np.array([float(int(v)) for v in cand_z.tolist()]) / scale
        x64 = xs64 + w * zf[blk]
        t = torch.from_numpy(x64.copy()).to(dtype)
        if not np.array_equal(t.to(torch.float64).numpy(), x64):
            not_rep += 1
            continue
        t = t.reshape(prog.shape)
        gaps = _replay_probe(prog, t, probes, last)
        _STATS["float_search_evals"] += 1
        if any(g != 0 for g in gaps):
            continue
        if not _same_pattern64(prog, t, resolved):
            _STATS["float_search_prefiltered"] += 1       # a rounding branch elsewhere, most likely
            continue
        # a float tie: the point must be the exact lattice point and tie exactly
        x_ex = dirs.apply(x_seed, [Q(int(v), 1 << k) for v in cand_z.tolist()])
        if any(a != b for a, b in zip(from_tensor(t).ravel().tolist(), x_ex.tolist())):
            continue
        # (the exact tie is decided by _confirm's full exact evaluation: every lattice point ties
        # exactly while the pattern holds, and _confirm sees whether it did)
        if _confirm(prog, t, resolved, res, same_pattern=True):
            _STATS["float_search_hits"] += 1
            res.__dict__["float_candidates"] = tried
            return True
        if not all(res.exact):
            exact_left += 1
            reason = f"lattice points at 2^-{k} tied in float left the exact pattern"
            if stop_on_exact_miss:
                res.__dict__["float_candidates"] = tried
                return _EXACT_MISS
        else:
            _STATS["float_probe_disagree"] += 1
    if not_rep and not_rep == tried:
        reason = f"the lattice points at 2^-{k} are not representable in {dtype}"
    res.__dict__["float_candidates"] = tried
    return reason
