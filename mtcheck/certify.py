"""Deciding a verdict by row space, and the certificate that proves it.

With ``D = J_fw - J_S`` and ``A`` the tie rows (the derivative rows of the tied
discriminants, so ``T(x) = null(A)``), the framework's gradient is associated exactly when
every row of ``D`` lies in the row space of ``A`` (within the tolerance, in float modes).
This module decides that without a basis of ``T(x)`` (whose exact entries have
``rank * bits`` bits for real weights):

* ``Y = 0`` first: a correct framework usually makes the same choice at ties as the exact
  model (max-pool follows the framework's own index, relu'(0) = 0), so ``D`` is zero, or
  rounding noise within the tolerance. Then no tie row is needed beyond one nonzero row,
  which proves ``T(x) != R^n``.
* otherwise the tie rows are computed exactly and floats (or residues modulo a prime)
  *find* a certificate: ``Y`` with ``D = Y A`` (plus a residual within the tolerance), or
  a kernel vector ``t`` with ``A t = 0`` and ``D t`` beyond the tolerance. Exact integer
  products *prove* it. A rank modulo a prime is never part of a proof.

Row tolerance in float modes: ``tol_i = atol + rtol * ||J_S[i]||_1``; the claim is
``|J_fw[i] t - J_S[i] t| <= tol_i`` for every ``t`` in ``T(x)`` with ``||t||_inf <= 1``.
The certificates are the plain data of ``docs/certificates.md``, re-checked by the
independent :mod:`mtcheck.certificate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import flint
import numpy as np

from ._exact import Q0, from_floats, q, to_float

PRIME = (1 << 61) - 1            # a Mersenne prime: residues for *finding* pivots and row bases
PRIMES = (PRIME, (1 << 62) - 57, (1 << 62) - 87)


def _memory_budget() -> int:
    try:
        import os

        return min(8 << 30, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4)
    except (ValueError, OSError, AttributeError):      # pragma: no cover - no sysconf
        return 2 << 30


MAX_TIE_BYTES = _memory_budget()   # tie rows held at once, as one prime's int64 residues


class Budget(Exception):
    """A stated budget ran out: the verdict is UNKNOWN with this reason."""


@dataclass
class Ties:
    """The tied discriminants whose derivative rows may be nonzero."""

    discs: list = field(default_factory=list)     # (node index, Disc restricted to those entries)
    total: int = 0                                # tied entries (all of them)
    structural_zero: int = 0                      # tied entries whose row is structurally zero
    support_note: str = ""

    @property
    def k(self) -> int:
        return sum(d.values.size for _, d in self.discs)


def select(disc, mask):
    from .ops import Disc

    sel = np.nonzero(mask)[0]
    return Disc(disc.label, disc.a, None if disc.idx_a is None else disc.idx_a[sel], disc.b,
                None if disc.idx_b is None else disc.idx_b[sel],
                disc.const[sel] if isinstance(disc.const, np.ndarray) else disc.const,
                disc.values[sel], disc.group[sel], disc.max_type, disc.negate, disc.branch)


def find_ties(model, ev, wrt) -> Ties:
    """Tied discriminants, without those whose derivative row is structurally zero."""
    out = Ties()
    sup = None
    last = max((i for i, d in enumerate(ev.discs) if any((disc.signs() == 0).any() for disc in d)), default=None)
    if last is None:
        return out                       # no tie: no row to test for a structural zero
    try:
        sup = model.support(ev, wrt, upto=last)
    except Exception:  # noqa: BLE001 - a rule outside the flag arithmetic: assume every row may be nonzero
        out.support_note = ("structural zeros not computed (a rule before the last tie has no structural "
                            "form): every tie row is kept as possibly nonzero, which can only add rows")
    for node, d in zip(model.trace.nodes, ev.discs):
        for disc in d:
            s = disc.signs()
            tied = s == 0
            if not tied.any():
                continue
            out.total += int(tied.sum())
            if disc.a is None and disc.b is None:
                out.structural_zero += int(tied.sum())
                continue
            sd = select(disc, tied)
            if sup is not None:
                maybe = model.disc_support(sup, node.index, sd)
                out.structural_zero += int((~maybe).sum())
                if not maybe.any():
                    continue
                sd = select(sd, maybe)
            out.discs.append((node.index, sd))
    return out


def _seeds_one_hot(ties: Ties, start: int, count: int):
    """Disc seeds giving rows start..start+count-1 of the tie matrix, one each."""
    seeds, off = [], 0
    for ni, d in ties.discs:
        L = d.values.size
        lo, hi = max(start - off, 0), min(start + count - off, L)
        if lo < hi:
            w = np.zeros((count, L), dtype=np.int64)
            j = np.arange(lo, hi)
            w[off + j - start, j] = 1
            seeds.append((ni, d, w))
        off += L
    return seeds


def tie_rows(model, ev, wrt, ties: Ties, n: int, start: int = 0, count: int | None = None):
    """Exact tie rows start..start+count-1 (fmpq, (count, n)): reverse mode when there are
    fewer rows than inputs, forward mode otherwise."""
    from .model import NoReverse

    k = ties.k
    count = k - start if count is None else min(count, k - start)
    if count <= 0:
        from ._exact import zeros

        return zeros((0, n))
    if count <= n:
        try:
            return model.reverse(ev, wrt, {}, count, _seeds_one_hot(ties, start, count))
        except NoReverse:
            pass
    # only the nodes up to the last tied one matter (a smooth tail, e.g. a loss, is not followed)
    tans = model.linearize(ev, wrt, upto=max(ni for ni, _ in ties.discs))
    rows, off = [], 0
    for ni, d in ties.discs:
        L = d.values.size
        lo, hi = max(start - off, 0), min(start + count - off, L)
        if lo < hi:
            r = model.disc_rows(ev, tans, ni, d, n, select=np.arange(lo, hi))
            rows.append(r if getattr(r, "rad", None) is not None else np.asarray(r, dtype=object))
        off += L
    return np.concatenate(rows, axis=0)


# ----------------------------------------------------------------------------- exact matrices

@dataclass
class QMat:
    """An exact rational matrix as integers over one common denominator: ``ints / den``.

    The decision works on this form: J_S and tie rows come from the engine as fixed point
    (``den = 2**e``), so nothing is converted entry by entry into rationals, norms are integer
    sums, and the certificate's encoding is the integers themselves."""

    ints: np.ndarray        # object array of Python ints (or fmpz)
    den: int

    @classmethod
    def of(cls, a) -> "QMat":
        from ._fixed import Fx

        if isinstance(a, QMat):
            return a
        if isinstance(a, Fx):
            return cls(a.view(np.ndarray), 1 << a.e)
        a = np.asarray(a)
        if a.dtype != object:
            return cls.of_floats(a)
        ints, den = to_ints(a)
        return cls(ints, den)

    @classmethod
    def of_floats(cls, a) -> "QMat":
        from ._fixed import from_floats as fx

        f = fx(np.asarray(a, dtype=np.float64))
        return cls(f.view(np.ndarray), 1 << f.e)

    @property
    def shape(self):
        return self.ints.shape

    def __getitem__(self, key) -> "QMat":
        return QMat(self.ints[key], self.den)

    def __sub__(self, other: "QMat") -> "QMat":
        L = self.den * other.den // math.gcd(self.den, other.den)
        a = self.ints if L == self.den else self.ints * (L // self.den)
        b = other.ints if L == other.den else other.ints * (L // other.den)
        return QMat(np.asarray(a - b, dtype=object), L)

    def floats(self) -> np.ndarray:
        try:
            f = self.ints.astype(np.float64)
            if self.den & (self.den - 1) == 0:
                return np.ldexp(f, -(self.den.bit_length() - 1))
            return f / float(self.den)
        except OverflowError:
            return np.array([float(Fraction(int(v), self.den)) for v in self.ints.ravel().tolist()],
                            dtype=np.float64).reshape(self.shape)

    def exact(self) -> np.ndarray:
        """fmpq objects (for the few places that need rationals)."""
        d = flint.fmpz(self.den)
        out = np.empty(self.ints.size, dtype=object)
        out[:] = [flint.fmpq(int(v), d) for v in self.ints.ravel().tolist()]
        return out.reshape(self.shape)

    def row_l1(self) -> list:
        """||row||_1 of every row, exactly (Fractions)."""
        if self.ints.shape[1] == 0:
            return [Fraction(0)] * self.ints.shape[0]
        sums = np.abs(self.ints).sum(axis=1)
        return [Fraction(int(v), self.den) for v in sums.tolist()]

    def row_nonzero(self) -> np.ndarray:
        if not self.ints.size:
            return np.zeros(self.ints.shape[0], dtype=bool)
        return np.asarray(self.ints != 0, dtype=bool).any(axis=1)

    def encode(self) -> dict:
        flat = self.ints.ravel().tolist()
        if not set(map(type, flat)) <= {int}:
            flat = [int(v) for v in flat]
        d = {"den": int(self.den), "num": flat}
        if self.ints.ndim == 2:
            d = {"shape": [int(self.ints.shape[0]), int(self.ints.shape[1])], **d}
        return d


class TieMatrix:
    """The tie rows of a check, as residues first, exact only where a certificate needs them.

    ``residues()`` are the images of the integer rows (each row times one positive power of two,
    so the same row space) modulo a word-size prime: one numpy reverse pass; they *find* pivots and
    nonzero rows, and prove nothing. ``rows`` (a few rows: a fixed-point pass on those rows only),
    ``columns`` (the support of a witness) and ``full`` are exact (:class:`QMat`), from the images
    modulo enough primes for the proven bound, reconstructed by the Chinese remainder theorem."""

    def __init__(self, model=None, ev=None, wrt=None, seeds=None, B=0, exact=None):
        self._m, self._ev, self._wrt, self._seeds, self._B = model, ev, wrt, seeds, B
        self._first = None
        self._parts = None
        self._full = None if exact is None else QMat.of(exact)
        self._res = None
        if exact is None:
            self._first = model.reverse_parts(ev, wrt, {}, B, seeds, count=1)[0]

    @property
    def shape(self):
        return self._first.shape if self._first is not None else self._full.shape

    def residues(self):
        """(residues (k, n), p)."""
        if self._res is None:
            if self._first is not None:
                self._res = (self._first.view(np.ndarray), self._first.p)
            else:
                p = PRIME
                self._res = (np.array([int(v) % p for v in self._full.ints.ravel().tolist()],
                                      dtype=object).reshape(self._full.shape), p)
        return self._res

    def _all_parts(self):
        if self._parts is None:
            self._parts = self._m.reverse_parts(self._ev, self._wrt, {}, self._B, self._seeds, first=self._first)
        return self._parts

    def nonzero_rows(self) -> np.ndarray:
        """Rows that are exactly nonzero (bool per row). From the images modulo every prime the
        bound needs: an integer below half their product that all of them divide is 0 (no CRT)."""
        if self._full is not None:
            return self._full.row_nonzero()
        nz = np.zeros(self.shape[0], dtype=bool)
        for m in self._all_parts():
            nz |= (m.view(np.ndarray) != 0).any(axis=1)
        return nz

    def full(self) -> QMat:
        if self._full is None:
            from ._fixed import crt

            self._full = QMat.of(crt(self._all_parts()))
        return self._full

    def rows(self, idx) -> QMat:
        idx = [int(i) for i in idx]
        if self._full is not None:
            return self._full[np.asarray(idx, dtype=np.int64)]
        if self._parts is not None:
            from ._fixed import crt

            return QMat.of(crt([m[np.asarray(idx, dtype=np.int64)] for m in self._parts]))
        # a few rows: their own exact pass (one seed row each)
        seeds = []
        for ni, d, w in self._seeds:
            seeds.append((ni, d, np.asarray(w)[idx]))
        return QMat.of(self._m.reverse(self._ev, self._wrt, {}, len(idx), seeds, as_fx=True))

    def columns(self, cols) -> QMat:
        if self._full is not None:
            return self._full[:, np.asarray(cols, dtype=np.int64)]
        from ._fixed import crt

        return QMat.of(crt(self._all_parts(), cols=np.asarray(cols, dtype=np.int64)))

    def floats(self) -> np.ndarray:
        return self.full().floats()


def tie_matrix(model, ev, wrt, ties: Ties, n: int, start: int = 0, count: int | None = None) -> TieMatrix:
    """Tie rows start..start+count-1 as a :class:`TieMatrix` (residue passes when they can be
    used, else the exact rows of :func:`tie_rows`)."""
    from ._fixed import NotDyadic
    from .model import NoReverse

    k = ties.k
    count = k - start if count is None else min(count, k - start)
    if count * n * 8 > MAX_TIE_BYTES:
        raise Budget(f"{count} tie rows over {n} inputs would take {count * n * 8 / 2**30:.1f} GiB of memory as "
                     f"residues, over the budget of {MAX_TIE_BYTES / 2**30:.1f} GiB (a quarter of this machine's "
                     "memory, at most 8 GiB): not decided; fewer inputs fit (wrt= a few parameter names, or a "
                     "smaller batch)")
    if 0 < count <= n:
        try:
            return TieMatrix(model, ev, wrt, _seeds_one_hot(ties, start, count), count)
        except (NotDyadic, NoReverse):
            pass
    rows = tie_rows(model, ev, wrt, ties, n, start, count)
    from ._ball import Ball, exactify

    if isinstance(rows, Ball):
        rows = exactify(rows)
        if isinstance(rows, Ball):
            return EnclosedTieMatrix(rows)
    return TieMatrix(exact=rows)


class EnclosedTieMatrix:
    """Tie rows that pass through irrational values: enclosures ``mid +- rad`` (float64).

    What they prove: a row is nonzero when one entry's enclosure excludes 0; a row is zero only
    when every entry is exactly 0 (radius 0); and ``|D t| <= (|D - Y mid| + |Y| rad) |t|`` for
    every t in the kernel of the true rows, whatever they are inside their enclosures (the
    ASSOCIATED residual bound). No rank and no kernel vector is decided from them."""

    enclosed = True

    def __init__(self, ball):
        self.mid = np.array(ball.mid, dtype=np.float64)
        self.rad = np.array(ball.rad, dtype=np.float64)

    @property
    def shape(self):
        return self.mid.shape

    def proven_nonzero(self) -> np.ndarray:
        return (np.abs(self.mid) > self.rad).any(axis=1)

    def proven_zero(self) -> np.ndarray:
        return ((self.mid == 0) & (self.rad == 0)).all(axis=1)

    def first_nonzero(self):
        """(exact midpoint row, exact radius row) of the first row shown nonzero, or None."""
        nz = np.nonzero(self.proven_nonzero())[0]
        if not nz.size:
            return None
        i = int(nz[0])
        return QMat.of_floats(self.mid[i]), QMat.of_floats(self.rad[i])

    def floats(self) -> np.ndarray:
        return self.mid


# ----------------------------------------------------------------------------- integers

def common_den(a: np.ndarray) -> int:
    den = 1
    for v in a.ravel().tolist():
        d = int(q(v).q)
        if d != 1 and den % d:
            den = den * d // math.gcd(den, d)
    return den


def to_ints(a: np.ndarray, den: int | None = None):
    """(integer object array, den) with a = ints / den."""
    den = common_den(a) if den is None else den
    flat = [int(q(v).p) * (den // int(q(v).q)) for v in a.ravel().tolist()]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(a.shape), den


def encode(a: np.ndarray) -> dict:
    """A matrix (2-D) or vector of exact rationals in the certificate format."""
    a = np.asarray(a, dtype=object)
    ints, den = to_ints(a)
    d = {"den": int(den), "num": [int(v) for v in ints.ravel().tolist()]}
    if a.ndim == 2:
        d = {"shape": [int(a.shape[0]), int(a.shape[1])], **d}
    return d


def encode_floats(a: np.ndarray) -> dict:
    """Exact encoding of a float64 matrix (every float is dyadic)."""
    from ._fixed import from_floats as fx

    f = fx(np.asarray(a, dtype=np.float64))
    return {"shape": [int(a.shape[0]), int(a.shape[1])], "den": 1 << f.e,
            "num": [int(v) for v in f.view(np.ndarray).ravel().tolist()]}


def rational(v) -> str:
    v = q(v)
    return str(int(v.p)) if int(v.q) == 1 else f"{int(v.p)}/{int(v.q)}"


def row_tolerances(J_S, tol) -> list:
    """tol_i = atol + rtol * ||J_S[i]||_1, exactly (Fractions); zeros in exact mode."""
    J = QMat.of(J_S)
    m = J.shape[0]
    if tol is None:
        return [Fraction(0)] * m
    rtol, atol = Fraction(tol[0]), Fraction(tol[1])
    return [atol + rtol * v for v in J.row_l1()]


def row_l1(D) -> list:
    return QMat.of(D).row_l1()


def qmatmul(a: QMat, b: QMat) -> QMat:
    """Exact product of two exact matrices (one FLINT integer product)."""
    r, k = a.shape
    k2, c = b.shape
    assert k == k2, (a.shape, b.shape)
    if r == 0 or c == 0 or k == 0:
        return QMat(np.zeros((r, c), dtype=object) * 0, a.den * b.den)
    prod = flint.fmpz_mat(r, k, [int(v) for v in a.ints.ravel().tolist()]) * \
        flint.fmpz_mat(k, c, [int(v) for v in b.ints.ravel().tolist()])
    out = np.empty(r * c, dtype=object)
    out[:] = [int(v) for v in prod.entries()]
    return QMat(out.reshape(r, c), a.den * b.den)


# ----------------------------------------------------------------------------- modular finding

def _mod_matrix(ints: np.ndarray, p: int) -> "flint.nmod_mat":
    r, c = ints.shape
    return flint.nmod_mat(r, c, [int(v) % p for v in ints.ravel().tolist()], p)


def _pivots(R, r: int, n: int) -> list:
    E = R.entries()
    piv = []
    for i in range(r):
        row = E[i * n:(i + 1) * n]
        piv.append(next(j for j, v in enumerate(row) if int(v) != 0))
    return piv


@dataclass
class Basis:
    """Independent rows ``rows`` and columns ``cols`` of the integer tie matrix with
    ``A[rows][:, cols]`` nonsingular (shown modulo a prime: a nonzero minor mod p is nonzero
    over the integers), found modulo ``p``; ``R`` is A's reduced echelon form mod p."""

    rows: list
    cols: list
    R: object
    p: int


def basis(Ai: np.ndarray, p: int = PRIME) -> Basis:
    """Pivot columns and independent rows of the integer matrix ``Ai`` (or of its residues
    modulo ``p``: the result is the same), found modulo ``p``."""
    k, n = Ai.shape
    M = _mod_matrix(Ai, p)
    R, r = M.rref()
    cols = _pivots(R, r, n)
    sub = _mod_matrix(Ai[:, cols].T.copy(), p)                 # (r, k): its pivots are independent rows
    R2, r2 = sub.rref()
    rows = _pivots(R2, r2, k)
    return Basis(rows, cols, R, p)


def _solve(M: np.ndarray, rhs: np.ndarray):
    """Exact solution X of M X = rhs for a nonsingular integer M (fmpq, FLINT)."""
    r = M.shape[0]
    A = flint.fmpz_mat(r, r, [int(v) for v in M.ravel().tolist()])
    B = flint.fmpz_mat(r, rhs.shape[1], [int(v) for v in rhs.ravel().tolist()])
    X = A.solve(B)
    out = np.empty(r * rhs.shape[1], dtype=object)
    out[:] = X.entries()
    return out.reshape(r, rhs.shape[1])


def exact_y(A: QMat, D: QMat, b: Basis, max_rank: int):
    """Exact Y (m, k) with D = Y A, or None when this basis gives none (D outside A's row
    space, or the prime was unlucky)."""
    r = len(b.rows)
    if r > max_rank:
        raise Budget(f"the exact row-space certificate needs a {r}x{r} solve (budget: rank <= {max_rank})")
    Ai, a_den, Di, d_den = A.ints, A.den, D.ints, D.den
    AB = Ai[np.asarray(b.rows)][:, np.asarray(b.cols)]
    # Y_B AB = D[:, cols]  <=>  AB^T Y_B^T = D[:, cols]^T
    YBt = _solve(AB.T.copy(), Di[:, np.asarray(b.cols)].T.copy())    # (r, m) rationals, for D*d_den*... scale below
    m, k = Di.shape[0], Ai.shape[0]
    Y = np.empty((m, k), dtype=object)
    Y.fill(Q0)
    # D = Di / d_den, A = Ai / a_den:  Y (Ai / a_den) = Di / d_den  =>  Y = (Di Ai^-1) * a_den / d_den
    scale = q(a_den) / q(d_den)
    for j, row in enumerate(b.rows):
        for i in range(m):
            Y[i, row] = q(YBt[j, i]) * scale
    # prove it: Y A == D exactly (every column)
    YA = qmatmul(QMat.of(Y), A)
    if not bool(((YA - D).ints == 0).all()):
        return None
    return Y


def float_y(A_f: np.ndarray, D_f: np.ndarray) -> np.ndarray:
    """Least-squares Y (float64) with D ~ Y A, rows of A scaled for conditioning."""
    if A_f.shape[0] == 0:
        return np.zeros((D_f.shape[0], 0))
    s = np.abs(A_f).max(axis=1)
    s[s == 0] = 1.0
    As = A_f / s[:, None]
    Ys, *_ = np.linalg.lstsq(As.T, D_f.T, rcond=None)
    return Ys.T / s[None, :]


def exact_kernel_vector(A: "TieMatrix", b: Basis, f: int, max_rank: int):
    """An exact integer t with A t = 0, t[f] != 0, supported on ``f`` and the pivot columns its
    echelon column uses (modulo p); falls back to every pivot column. None if the basis fails.
    Returns (support, t, A restricted to the support columns as a QMat)."""
    k, n = A.shape
    E = b.R.entries()
    r = len(b.cols)
    used = [b.cols[j] for j in range(r) if int(E[j * n + f]) != 0]
    for cols in (used, list(b.cols)):
        if len(cols) > max_rank:
            raise Budget(f"the exact witness needs a {len(cols)}x{len(cols)} solve (budget: {max_rank})")
        support = sorted(set(cols) | {f})
        Asup = A.columns(support)                      # exact, every tie row, the support's columns
        pos = {c: j for j, c in enumerate(support)}
        Ai = Asup.ints
        if not cols:
            t = {f: 1}
        else:
            sub = Ai[:, [pos[c] for c in cols]]
            Ms = _mod_matrix(sub.T.copy(), b.p)
            R2, r2 = Ms.rref()
            if r2 < len(cols):
                continue
            rows = _pivots(R2, r2, k)
            M = sub[np.asarray(rows)]
            y = _solve(M, (-Ai[np.asarray(rows)][:, [pos[f]]]).copy())
            dens = [int(q(v).q) for v in y.ravel().tolist()]
            L = 1
            for d in dens:
                L = L * d // math.gcd(L, d)
            t = {f: L}
            for c, v in zip(cols, y.ravel().tolist()):
                vv = q(v) * L
                if vv != 0:
                    t[c] = int(vv.p)
        vec = np.array([t.get(c, 0) for c in support], dtype=object)
        prod = Ai.dot(vec) if k else np.zeros(0, dtype=object)
        if not any(int(v) != 0 for v in prod.tolist()):
            g = 0
            for v in vec.tolist():
                g = math.gcd(g, int(v))
            keep = [j for j, v in enumerate(vec.tolist()) if v != 0]
            return [support[j] for j in keep], [int(vec[j]) // g for j in keep], Asup[:, np.asarray(keep)]
    return None


def kernel_candidates(b: Basis, n: int) -> list:
    """Free columns, sorted by how many pivot columns their echelon kernel vector uses."""
    E = b.R.entries()
    r = len(b.cols)
    piv = set(b.cols)
    free = [f for f in range(n) if f not in piv]
    cost = {f: sum(1 for j in range(r) if int(E[j * n + f]) != 0) for f in free}
    return sorted(free, key=lambda f: cost[f])


def kernel_vectors_float(A_f: np.ndarray, b: Basis, frees: list) -> np.ndarray:
    """Float approximations of the echelon kernel vectors of the given free columns (n, len)."""
    n = A_f.shape[1]
    V = np.zeros((n, len(frees)))
    if not b.cols:
        for j, f in enumerate(frees):
            V[f, j] = 1.0
        return V
    M = A_f[np.asarray(b.rows)][:, np.asarray(b.cols)]
    rhs = -A_f[np.asarray(b.rows)][:, np.asarray(frees)]
    try:
        Y = np.linalg.solve(M, rhs)
    except np.linalg.LinAlgError:
        Y = np.linalg.lstsq(M, rhs, rcond=None)[0]
    V[np.asarray(b.cols)] = Y
    for j, f in enumerate(frees):
        V[f, j] = 1.0
    return V


def _rows_to_int64(a: np.ndarray):
    """Vectorized rows_to_int for exact dyadic float64 rows whose scaled entries fit in int64."""
    if a.size == 0:
        return a.astype(np.int64)
    if not np.isfinite(a).all():
        return None
    m, e = np.frexp(a)
    im = (np.abs(m) * 2.0 ** 53).astype(np.int64)
    low = np.where(im != 0, im & -im, 1 << 62)
    g = e.astype(np.int64) - 53 + np.log2(low.astype(np.float64)).astype(np.int64)   # per-entry lowest bit
    g = np.where(a != 0, g, np.iinfo(np.int64).max)
    gmin = g.min(axis=1, keepdims=True)
    gmin = np.where(gmin == np.iinfo(np.int64).max, 0, gmin)
    scaled = np.ldexp(a, -gmin)                          # exact: every entry is a multiple of 2^gmin
    if np.abs(scaled).max() >= 2.0 ** 62:
        return None
    ints = scaled.astype(np.int64)
    d = np.gcd.reduce(np.abs(ints), axis=1, keepdims=True)
    d = np.where(d == 0, 1, d)
    return ints // d


def rows_to_int(rows) -> np.ndarray:
    """Scale each row of an exact rational matrix (fmpq objects, or exact dyadic float64) to
    coprime integers with the same row space. Returns an object array of Python ints."""
    a = np.asarray(rows)
    if a.dtype != object:
        from ._fastfloat import granularity

        fast = _rows_to_int64(a)
        if fast is not None:
            return fast
        out = np.empty(a.shape, dtype=object)
        for i, r in enumerate(a):
            g = granularity(r)
            if g is None:
                out[i] = [0] * a.shape[1]
                continue
            ints = [int(v) for v in np.ldexp(r, -g).tolist()]
            d = 0
            for v in ints:
                d = math.gcd(d, v)
            out[i] = [v // d for v in ints] if d else ints
        return out
    out = np.empty(a.shape, dtype=object)
    for i, r in enumerate(a):
        vals = r.tolist()
        den = 1
        for v in vals:
            den = den * int(v.q) // math.gcd(den, int(v.q))
        ints = [int(v.p) * (den // int(v.q)) for v in vals]
        d = 0
        for v in ints:
            d = math.gcd(d, v)
        out[i] = [v // d for v in ints] if d else ints
    return out


def floats_of(a: np.ndarray) -> np.ndarray:
    return to_float(np.asarray(a, dtype=object))


__all__ = ["rows_to_int", "Ties", "find_ties", "tie_rows", "Budget", "basis", "exact_y", "float_y", "exact_kernel_vector",
           "kernel_candidates", "kernel_vectors_float", "encode", "encode_floats", "rational", "row_tolerances",
           "row_l1", "to_ints", "from_floats", "PRIMES", "QMat", "TieMatrix", "tie_matrix", "qmatmul"]
