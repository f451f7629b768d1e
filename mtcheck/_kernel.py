"""Exact rank and kernel of an integer matrix, by modular elimination plus an exact certificate.

Fraction-free elimination over the integers can blow up (entry growth: minutes for a
dense 600x800 system). Instead: reduce modulo a 61-bit prime (FLINT ``nmod_mat``,
machine words), read a kernel basis off the reduced row echelon form, recover its
rational entries by rational reconstruction, and then *verify* over the integers
that every basis vector is in the kernel (``A @ N == 0`` with FLINT ``fmpz_mat``).
The rank mod p is a lower bound on the rank over Q (a nonzero minor mod p is
nonzero over Z); ``n - rank`` verified independent kernel vectors make it an upper
bound. So the answer is exact, and an unlucky prime just costs another prime.
"""

from __future__ import annotations

import math

import flint
import numpy as np

def _primes(count: int, start: int = 1 << 62) -> list:
    out, c = [], start - 1
    while len(out) < count:
        if flint.fmpz(c).is_prime():
            out.append(c)
        c -= 2
    return out


PRIMES = _primes(64)
MAX_FALLBACK_ENTRIES = 40_000   # fraction-free elimination only for small systems


class KernelBasis:
    """An integer kernel basis in echelon form, without materialising its n x d entries:
    column j is ``den[j] * e_{free[j]} - sum_i R[i, j] * e_{pivots[i]}``.

    ``R`` is an (r x d) ``fmpz_mat``. Products ``M @ N`` use only the small blocks
    ``M[:, free]`` and ``M[:, pivots]``. ``dense`` (an n x d ``fmpz_mat``) replaces the
    echelon form when the basis came from elsewhere (FLINT's fraction-free nullspace)."""

    def __init__(self, n, pivots=(), free=(), den=(), R=None, dense=None):
        self.n = n
        self.pivots = list(pivots)
        self.free = list(free)
        self.den = [int(v) for v in den]
        self.R = R
        self.dense = dense

    def nrows(self) -> int:
        return self.n

    def ncols(self) -> int:
        return self.dense.ncols() if self.dense is not None else len(self.free)

    def left_mul(self, M) -> "flint.fmpz_mat":
        """``M @ N`` exactly for an (m x n) integer numpy array ``M``."""
        M = np.asarray(M)
        m = M.shape[0]
        d = self.ncols()
        if d == 0:
            return flint.fmpz_mat(m, 0, [])
        if self.dense is not None:
            return flint.fmpz_mat(m, self.n, M.ravel().tolist()) * self.dense
        free = np.asarray(self.free, dtype=np.int64)
        MF = M[:, free]
        if M.dtype == object or max(self.den) >= 2 ** 31 or np.abs(MF).max(initial=0) >= 2 ** 31:
            MF = MF.astype(object) * np.asarray(self.den, dtype=object)[None, :]
        else:
            MF = MF * np.asarray(self.den, dtype=np.int64)[None, :]
        out = flint.fmpz_mat(m, d, MF.ravel().tolist())
        if self.pivots:
            MP = flint.fmpz_mat(m, len(self.pivots), M[:, np.asarray(self.pivots, dtype=np.int64)].ravel().tolist())
            out = out - MP * self.R
        return out

    def column(self, j: int) -> list:
        if self.dense is not None:
            return [int(self.dense[i, j]) for i in range(self.n)]
        col = [0] * self.n
        col[self.free[j]] = self.den[j]
        for i, p in enumerate(self.pivots):
            col[p] = -int(self.R[i, j])
        return col

    def __getitem__(self, ij):
        i, j = ij
        return self.column(j)[i]

    def entries(self) -> list:
        """Row-major entries (n * d Python ints): materialises the basis, for display paths."""
        d = self.ncols()
        cols = [self.column(j) for j in range(d)]
        return [cols[j][i] for i in range(self.n) for j in range(d)]

    def __rmul__(self, M):
        if isinstance(M, flint.fmpz_mat):
            return self.left_mul(np.array([int(v) for v in M.entries()], dtype=object).reshape(M.nrows(),
                                                                                                M.ncols()))
        return NotImplemented


class KernelUndecided(Exception):
    """No prime gave a verified kernel within the budget."""


def _ratrecon(a: int, m: int):
    """a/b = a mod m with |a|, b <= sqrt(m/2), or None."""
    if a == 0:
        return 0, 1
    bound = math.isqrt(m // 2)
    r0, r1 = m, a % m
    s0, s1 = 0, 1
    while r1 > bound:
        qt = r0 // r1
        r0, r1 = r1, r0 - qt * r1
        s0, s1 = s1, s0 - qt * s1
    if s1 == 0 or abs(s1) > bound:
        return None
    if s1 < 0:
        r1, s1 = -r1, -s1
    if math.gcd(r1, s1) != 1:
        return None
    return r1, s1


def int_matrix(rows) -> tuple[int, int, list]:
    """(k, n, flat list of Python ints) from a 2-D int64 or object array of ints."""
    a = np.asarray(rows)
    k, n = a.shape
    return k, n, a.ravel().tolist()


def kernel(rows, n: int | None = None):
    """Exact rank of an integer matrix and an integer basis of its kernel.

    ``rows``: 2-D numpy array of Python ints or int64 (k x n). Returns
    ``(rank, N)`` with ``N`` an ``flint.fmpz_mat`` of shape (n, n - rank) whose
    columns span the kernel over Q (verified: rows @ N == 0).
    """
    a = np.asarray(rows)
    if a.ndim != 2:
        raise ValueError("rows must be 2-D")
    k, n = a.shape
    if k == 0:
        return 0, KernelBasis(n, [], list(range(n)), [1] * n, flint.fmpz_mat(0, n, []))
    if a.dtype == np.int64:
        a = np.unique(a, axis=0)          # repeated tie rows (a window's ties seen twice) change nothing
        k = a.shape[0]
    if a.dtype == np.int64:
        small, flat = a.ravel(), None
    else:
        flat = a.ravel().tolist()
        try:
            small = np.asarray(a, dtype=np.int64).ravel() if max(flat, key=abs, default=0) < 2 ** 62 and \
                -min(flat, default=0) < 2 ** 62 else None
        except (OverflowError, TypeError):
            small = None
    ref_pivots, acc, mod, used = None, None, 1, 0
    for p in PRIMES:
        residues = (small % p).tolist() if small is not None else [v % p for v in flat]
        M = flint.nmod_mat(k, n, residues, p)
        R, r = M.rref()
        if r == n:
            return n, KernelBasis(n, list(range(n)), [], [], flint.fmpz_mat(n, 0, []))
        E = np.array([int(e) for e in R.entries()[: r * n]], dtype=np.int64).reshape(r, n)
        pivots = np.argmax(E != 0, axis=1).tolist()
        if ref_pivots is None or len(pivots) > len(ref_pivots):
            ref_pivots, acc, mod, used = pivots, None, 1, 0     # a larger rank: earlier primes were unlucky
        elif pivots != ref_pivots:
            continue                                           # this prime is unlucky
        is_free = np.ones(n, dtype=bool)
        is_free[pivots] = False
        free = np.nonzero(is_free)[0].tolist()
        rows_i, cols_f = np.nonzero(E[:, is_free])
        fcols = np.asarray(free, dtype=np.int64)[cols_f]
        vals = {(int(i), int(f)): int(E[i, f]) for i, f in zip(rows_i.tolist(), fcols.tolist())}
        if acc is None:
            acc = vals
        else:
            keys = set(acc) | set(vals)
            inv = pow(mod, -1, p)
            acc = {key: _crt(acc.get(key, 0), mod, vals.get(key, 0), p, inv) for key in keys}
        mod *= p
        used += 1
        if (used < 2 and k * n > 4096) or used & (used - 1):
            continue                # reconstruct after 2, 4, 8, ... primes (1 for small systems):
                                    # one 61-bit prime rarely suffices and a failed try costs a full basis
        N = _reconstruct(acc, mod, pivots, free, n)
        if N is not None and N.left_mul(a).is_zero():
            return len(pivots), N
    if k * n <= MAX_FALLBACK_ENTRIES:
        X, nullity = flint.fmpz_mat(k, n, a.ravel().tolist()).nullspace()
        cols = [[int(X[i, j]) for i in range(n)] for j in range(nullity)]
        dense = flint.fmpz_mat(n, nullity, [cols[j][i] for i in range(n) for j in range(nullity)])
        return n - nullity, KernelBasis(n, dense=dense)
    raise KernelUndecided(f"the kernel of a {k}x{n} system could not be certified with {len(PRIMES)} primes")


def _crt(a, m, b, p, inv_m_mod_p):
    """x = a mod m, x = b mod p."""
    return a + m * (((b - a) * inv_m_mod_p) % p)


def _reconstruct(acc, mod, pivots, free, n):
    """Kernel basis from the reduced echelon form's free columns: column f is
    e_f - sum_i R[i, f] e_{pivot_i}, scaled to integers (an echelon-form KernelBasis)."""
    d = len(free)
    col_of = {f: j for j, f in enumerate(free)}
    per_col: dict = {}
    for (i, f), e in acc.items():
        if e == 0:
            continue
        rr = _ratrecon(e % mod, mod)          # R[i, f] itself
        if rr is None:
            return None
        per_col.setdefault(f, []).append((i, rr))
    r = len(pivots)
    den = [1] * d
    R = np.zeros((r, d), dtype=object)
    for f, j in col_of.items():
        vals = per_col.get(f, ())
        dj = 1
        for _, (_, y) in vals:
            dj = dj * y // math.gcd(dj, y)
        den[j] = dj
        for i, (x, y) in vals:
            R[i, j] = x * (dj // y)
    return KernelBasis(n, pivots, free, den, flint.fmpz_mat(r, d, R.ravel().tolist()))


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
