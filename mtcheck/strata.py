"""Strata: the constraints of a pattern, its tangent space, and the z3 queries.

The stratum of ``x`` is ``{y : A y = A x, C y < d}``; its tangent space is ``null(A)``
(decided by row space in :mod:`mtcheck.certify`, never through a basis). z3 is used,
deterministically (fixed seed, a work limit ``rlimit``), for the cones of neighbouring
full-dimensional strata and for Clarke hulls of small programs. An ``unknown`` answer is
returned as ``None``, never as a yes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import z3

from ._exact import q


@dataclass
class SolverLimits:
    rlimit: int = 5_000_000      # z3 resource units: the same answer on any machine
    timeout_ms: int = 20_000     # wall-clock guard on top of rlimit
    seed: int = 0


def make_solver(lim: SolverLimits) -> z3.Solver:
    z3.set_param("smt.random_seed", lim.seed)
    z3.set_param("sat.random_seed", lim.seed)
    s = z3.SolverFor("QF_LRA")
    s.set("rlimit", int(lim.rlimit))
    s.set("timeout", int(lim.timeout_ms))
    s.set("random_seed", lim.seed)
    return s


def _rv(v):
    if isinstance(v, int):
        return z3.RealVal(v)
    v = q(v)
    if int(v.q) == 1:
        return z3.RealVal(int(v.p))
    return z3.Q(int(v.p), int(v.q))


def _lin(row, xs):
    row = np.asarray(row)
    terms = [(_rv(int(row[j]) if row.dtype != object else row[j]), xs[j]) for j in np.nonzero(row != 0)[0]]
    if not terms:
        return z3.RealVal(0)
    return z3.Sum([c * x for c, x in terms])


@dataclass
class Answer:
    sat: bool | None
    reason: str = ""
    model: list | None = None


def _check(s: z3.Solver, xs=None) -> Answer:
    r = s.check()
    if r == z3.sat:
        mdl = None
        if xs is not None:
            m = s.model()
            mdl = []
            for x in xs:
                v = m.eval(x, model_completion=True)
                mdl.append(q(0) if not z3.is_rational_value(v) else
                           __import__("flint").fmpq(v.numerator_as_long(), v.denominator_as_long()))
        return Answer(True, model=mdl)
    if r == z3.unsat:
        return Answer(False)
    return Answer(None, f"z3 answered unknown ({s.reason_unknown()})")


def find_direction_outside(cones, n, lim: SolverLimits, start=None) -> Answer:
    """A direction t strictly outside the closure of every cone (each a list of rows c
    with the cone being {t : c.t > 0 for all c}). sat=False: the cones cover R^n."""
    s = make_solver(lim)
    ts = [z3.Real(f"t{i}") for i in range(n)]
    for rows in cones:
        if not rows:
            return Answer(False)   # a cone with no constraint is everything
        s.add(z3.Or([_lin(c, ts) <= -1 for c in rows]))
    for i, t in enumerate(ts):
        s.add(t <= 1 << 20, t >= -(1 << 20))
    return _check(s, ts)


def in_convex_hull(points, target, lim: SolverLimits, slack=None) -> Answer:
    """Is ``target`` (length n, exact) a convex combination of ``points`` (k x n, exact)?

    ``slack`` (length n, exact, >= 0) allows |combination - target| <= slack per
    coordinate: used when the target is a float gradient compared with a tolerance."""
    k = len(points)
    s = make_solver(lim)
    lam = [z3.Real(f"l{i}") for i in range(k)]
    for l_ in lam:
        s.add(l_ >= 0)
    s.add(z3.Sum(lam) == 1 if k > 1 else lam[0] == 1)
    n = len(target)
    for j in range(n):
        comb = z3.Sum([_rv(points[i][j]) * lam[i] for i in range(k)])
        if slack is None or slack[j] == 0:
            s.add(comb == _rv(target[j]))
        else:
            s.add(comb <= _rv(target[j]) + _rv(slack[j]), comb >= _rv(target[j]) - _rv(slack[j]))
    return _check(s)
