"""Deep-tie synthesis: move an input so that chosen hidden units sit exactly on a kink.

The method (all decisions exact, in rationals):

1. Evaluate the program exactly at the seed point; its pattern fixes every
   intermediate value as an affine function of the input near the seed.
2. Pick the free coordinates ``S`` (all of them for small inputs, else a seeded
   sample of those that reach the targets) and linearize on ``S`` exactly.
3. Solve the targets' equalities (a relu pre-activation = 0, two entries of a
   max window equal, a clamp input = its bound) with the minimum-norm step, and,
   when that step leaves the pattern, with z3 (linear real arithmetic) on the
   pattern-fixed local problem with margins: the strict inequalities of the
   pattern kept at a fraction of their current slack ("deeper inside").
4. Round the rational solution onto the dyadic lattice ``2^-k Z^S``: an integer
   solution of the scaled equalities from the Hermite normal form, its integer
   kernel reduced with LLL, and the lattice point nearest the rational solution
   (python-flint). Every rational solution of a tie equation is almost never
   dyadic; only a point on the lattice is representable in the program's dtype.
5. Re-check exactly, then run PyTorch's own float forward (a fresh trace) and
   confirm each tie there too. Misses are counted (:func:`synthesis_stats`).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field

import flint
import numpy as np
import torch
import z3

from ._exact import Q0, from_tensor, q, zeros
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
        self.nonsmooth = [n.index for n in self.trace.nodes if self.model.rules[n.index].nonsmooth]

    def evaluate(self, x_exact):
        return self.model.evaluate([np.asarray(x_exact, dtype=object).reshape(self.shape)])

    def float_eval(self, x: torch.Tensor):
        """The discriminants PyTorch's float forward pass took (fresh trace)."""
        leaves, _ = prepare_inputs((x,), None)
        tr = trace(self.fn, leaves)
        m = ExactModel(tr)
        return m.evaluate([from_tensor(leaves[0])], framework_args=True), m.evaluate([from_tensor(leaves[0])])

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
    t = [float(v * scale) - z for v, z in zip(target, z0)]
    Kf = np.array(Kl, dtype=np.float64)
    coef, *_ = np.linalg.lstsq(Kf.T, np.array(t), rcond=None)
    c = [int(round(v)) for v in coef]
    z = [z0[j] + sum(c[i] * Kl[i][j] for i in range(len(Kl))) for j in range(s)]
    # greedy polish: step along basis vectors while it brings z closer to the target
    tz = [float(v * scale) for v in target]
    def dist(zz):
        return sum((a - b) ** 2 for a, b in zip(zz, tz))
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


class _Rows:
    """Exact tangent rows of every discriminant, on the free coordinates, at one evaluation."""

    def __init__(self, prog: Program, ev, free: list):
        n = int(np.prod(prog.shape))
        self.prog, self.ev, self.free = prog, ev, free
        D = zeros((len(free), n))
        for i, j in enumerate(free):
            D[i, j] = Q(1)
        self.tans = prog.model.linearize(ev, [0], D)
        self._cache: dict = {}

    def rows(self, node: int, di: int):
        key = (node, di)
        if key not in self._cache:
            disc = self.ev.discs[node][di]
            self._cache[key] = self.prog.model.disc_rows(self.ev, self.tans, node, disc, len(self.free))
        return self._cache[key]


def _choose_element(R: _Rows, node: int, label, group, want_tied=False, allow_zero_row=False):
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
        for i in cand.tolist():
            v = vals[i]
            if want_tied and v != 0:
                continue
            row = rows[i]
            nz = any(x != 0 for x in row.tolist())
            if not nz and not (allow_zero_row and v == 0):
                continue
            if want_tied:
                score = 0.0 if not nz else 1.0
            else:
                norm = math.sqrt(sum(float(x) ** 2 for x in row.tolist()))
                score = abs(float(v)) / norm if norm else math.inf
            if group is not None and disc.max_type:
                score = -float(v)      # the entry nearest the winner
            if best is None or score < best[0]:
                best = (score, di, i, v, row, int(disc.group[i]), disc.label)
    return None if best is None else best[1:]


def _z3_step(R: _Rows, rows, rhs, step_hint, lim: SolverLimits, margin=Q(1, 4)):
    """A Delta solving the equalities and keeping every nearby strict sign with a margin (z3, LRA)."""
    s = len(R.free)
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
    count = 0
    for node in R.prog.nonsmooth:
        for di, disc in enumerate(R.ev.discs[node]):
            s_ = disc.signs()
            idx = np.nonzero(s_ != 0)[0]
            if idx.size == 0:
                continue
            rws = R.rows(node, di)
            for i in idx.tolist():
                row = rws[i]
                l1 = sum(abs(float(c)) for c in row.tolist())
                if l1 == 0 or abs(float(disc.values[i])) > l1 * bound:
                    continue      # cannot flip inside the box
                v = disc.values[i]
                keep = abs(v) * margin
                e = z3.Q(int(v.p), int(v.q)) + lin(row)
                sol.add(e >= z3.Q(int(keep.p), int(keep.q)) if s_[i] > 0 else e <= -z3.Q(int(keep.p), int(keep.q)))
                count += 1
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
               max_rounds: int = 4, seed: int = 0, lim: SolverLimits | None = None) -> TieResult:
    """Move ``x0`` so that every target (and, with ``every_layer``, some element of every
    nonsmooth node) is exactly on a kink, in exact arithmetic and in PyTorch's float forward."""
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
    _STATS["requested"] += max(1, len(targets)) if not every_layer else 1
    method = "seed"
    fixed: dict = {}          # node -> Target (resolved, with group)

    free = list(range(n)) if n <= max_free else sorted(rng.choice(n, size=max_free, replace=False).tolist())

    last_reason = "no round ran"
    for rnd in range(max_rounds):
        res.rounds = rnd + 1
        ev = prog.evaluate(x_cur)
        R = _Rows(prog, ev, free)
        eqs = []              # (Target, di, i, value, row)
        resolved = []
        ok_struct = True
        want = list(targets)
        if every_layer:
            have = {t.node for t in want}
            for node in prog.nonsmooth:
                if node not in have:
                    want.append(Target(node, None, None))
        for t in want:
            if t.node in fixed and t.group is None:
                t = fixed[t.node]
            if t.group is None and node_has_tie(ev, t.node) and (every_layer and t not in targets):
                ch = _choose_element(R, t.node, t.label, None, want_tied=True, allow_zero_row=True)
                if ch is not None:
                    di, i, v, row, g, lab = ch
                    t = Target(t.node, lab, g)
            if t.group is None:
                ch = _choose_element(R, t.node, t.label, None)
                if ch is None:
                    ok_struct = False
                    last_reason = f"node {t.node}: no element reachable from the free coordinates"
                    continue
                di, i, v, row, g, lab = ch
                t = Target(t.node, lab, g)
            else:
                ch = _choose_element(R, t.node, t.label, t.group, allow_zero_row=True)
                if ch is None:
                    ok_struct = False
                    last_reason = f"node {t.node} group {t.group}: not found"
                    continue
                di, i, v, row, g, lab = ch
                t = Target(t.node, lab, g)
            fixed[t.node] = t
            resolved.append(t)
            if any(c != 0 for c in row.tolist()):
                eqs.append((t, v, row))
            elif v != 0:
                ok_struct = False
                last_reason = f"{t}: its value does not depend on the free coordinates"
        res.targets = resolved
        if not ok_struct and not resolved:
            break
        if all(_tied(ev, t) for t in resolved) and rnd == 0:
            cand = _representable(x_cur.tolist(), dtype)
            if cand is not None and _confirm(prog, cand.reshape(prog.shape), resolved, res):
                method = "seed"
                res.ok = ok_struct
                break
        if not eqs:
            last_reason = "nothing to solve" if ok_struct else last_reason
            break
        rows = [list(row.tolist()) for _, _, row in eqs]
        # rows @ Delta = -value
        rhs = [-v for _, v, _ in eqs]
        rows, rhs = _independent(rows, rhs)
        x_S = [x_cur[j] for j in free]
        delta = min_norm_step(rows, rhs)
        method = "min-norm"
        x_star = list(x_cur)
        for j, d in zip(free, delta):
            x_star[j] = x_star[j] + d
        ev_star = prog.evaluate(x_star)
        if not all(_tied(ev_star, t) for t in resolved):
            dz = _z3_step(R, rows, rhs, delta, lim)
            if dz is not None:
                method = "z3"
                x_star = list(x_cur)
                for j, d in zip(free, dz):
                    x_star[j] = x_star[j] + d
                ev_star = prog.evaluate(x_star)
        if not all(_tied(ev_star, t) for t in resolved):
            last_reason = "the local solution left the pattern; Newton step from it"
            x_cur = np.array(x_star, dtype=object)
            continue
        # absolute equalities on x_S: rows @ x_S = rows @ x_S_star
        xs_star = [x_star[j] for j in free]
        abs_rhs = [sum((a * b for a, b in zip(row, xs_star)), Q0) for row in rows]
        done = False
        kstart = max(k0, 1)
        ks = list(range(kstart, kmax + 1, 3))
        if ks[-1] != kmax:
            ks.append(kmax)
        for k in ks:
            z = lattice_point(rows, abs_rhs, xs_star, k)
            if z is None:
                continue
            x_new = list(x_cur)
            for j, zz in zip(free, z):
                x_new[j] = Q(int(zz), 1 << k)
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
        x_cur = np.array(x_star, dtype=object)     # next round: re-linearize at the rational solution
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


def _round_near(x, free, k):
    """Put a rational point onto the 2^-k lattice (coordinates in ``free``)."""
    out = list(x)
    for j in free:
        v = q(out[j])
        out[j] = Q(int(round(float(v) * (1 << k))), 1 << k) if int(v.q) > (1 << k) else v
    return out


def _confirm(prog: Program, cand: torch.Tensor, resolved, res: TieResult) -> bool:
    """Exact and float ties for every resolved target at ``cand`` (a fresh trace)."""
    ev_fw, ev_ex = prog.float_eval(cand)
    res.exact = [_tied(ev_ex, t) for t in resolved]
    res.in_float = [_tied(ev_fw, t) for t in resolved]
    if all(res.exact) and all(res.in_float):
        res.input = cand
        return True
    return False
