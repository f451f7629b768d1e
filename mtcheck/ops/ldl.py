"""Solves with a Bunch-Kaufman LDL^T factorisation given as inputs (``aten.linalg_ldl_solve``).

``LD`` and ``pivots`` are what ``torch.linalg.ldl_factor`` returns: LAPACK ``sytrf``'s compact
form, lower triangle (PyTorch factors with ``uplo = 'L'``), 1-based pivots, a negative pair of
pivots for a 2x2 block of ``D``. The solution is LAPACK ``sytrs``'s algorithm run exactly:
row interchanges, unit lower triangular eliminations with the columns of ``L``, division by the
1x1 and 2x2 blocks of ``D``. Every step is a rational operation, so the result is a rational
function of ``(LD, B)``; the upper triangle of ``LD`` is never read (its derivative is 0). Its
derivative (``jvp``) is the same algorithm on dual numbers (value, tangents). A zero pivot block
is a division by an exact zero: refused.

PyTorch 2.13 has no derivative for this op (its backward raises), so a check of a program using
it ends with "PyTorch has no derivative for it"; the model still gives the program's exact
values and derivatives (for a program that differentiates around it, e.g. with the solve's
result detached, or for other frameworks' gradients).
"""

from __future__ import annotations

import numpy as np

from . import NotModelled, Rule, register
from .._exact import Q0, as_exact


class _D:
    """A dual number: exact value ``v`` and tangents ``t`` (an object array (Bt,), or None for 0)."""

    __slots__ = ("v", "t")

    def __init__(self, v, t=None):
        self.v, self.t = v, t

    def __sub__(self, o):
        t = self.t if o.t is None else (-o.t if self.t is None else self.t - o.t)
        return _D(self.v - o.v, t)

    def __mul__(self, o):
        t = None
        if self.t is not None:
            t = self.t * o.v
        if o.t is not None:
            t = o.t * self.v if t is None else t + o.t * self.v
        return _D(self.v * o.v, t)

    def __truediv__(self, o):
        if o.v == 0:
            raise ZeroDivisionError("a zero pivot block of D (a division by an exact zero)")
        q = self.v / o.v
        t = self.t
        if o.t is not None:
            t = -(o.t * q) if t is None else t - o.t * q
        if t is not None:
            t = t * (1 / o.v)
        return _D(q, t)


def _sytrs_lower(A, piv, X):
    """LAPACK dsytrs (uplo = 'L') on duals: ``A`` (n, n) and ``X`` (n, k) lists of lists of _D,
    ``piv`` 1-based ints. Solves A_factored @ Y = X in place."""
    n = len(A)
    k_rhs = len(X[0]) if n else 0

    def swap(i, j):
        if i != j:
            X[i], X[j] = X[j], X[i]

    def elim(rows_from, col, src):
        """X[r] -= A[r][col] * X[src] for r >= rows_from."""
        for r in range(rows_from, n):
            a = A[r][col]
            for j in range(k_rhs):
                X[r][j] = X[r][j] - a * X[src][j]

    # L D Y = X
    k = 0
    while k < n:
        p = int(piv[k])
        if p > 0:
            swap(k, p - 1)
            elim(k + 1, k, k)
            d = A[k][k]
            for j in range(k_rhs):
                X[k][j] = X[k][j] / d
            k += 1
        else:
            if k + 1 >= n or int(piv[k + 1]) != p:
                raise NotModelled("ldl_solve with malformed pivots (a 2x2 block must be a pair of equal negative pivots)")
            swap(k + 1, -p - 1)
            elim(k + 2, k, k)
            elim(k + 2, k + 1, k + 1)
            akm1k = A[k + 1][k]
            akm1 = A[k][k] / akm1k
            ak = A[k + 1][k + 1] / akm1k
            denom = akm1 * ak - _D(1)
            for j in range(k_rhs):
                bkm1 = X[k][j] / akm1k
                bk = X[k + 1][j] / akm1k
                X[k][j] = (ak * bkm1 - bk) / denom
                X[k + 1][j] = (akm1 * bk - bkm1) / denom
            k += 2

    def dot_sub(target, col):
        """X[target] -= A[col + 1:, col]^T X[col + 1:] (rows below ``col``)."""
        for j in range(k_rhs):
            acc = X[target][j]
            for r in range(col + 1, n):
                acc = acc - A[r][col] * X[r][j]
            X[target][j] = acc

    # L^T Y = X
    k = n - 1
    while k >= 0:
        p = int(piv[k])
        if p > 0:
            dot_sub(k, k)
            swap(k, p - 1)
            k -= 1
        else:
            # rows k - 1, k form a 2x2 block: both are updated with the rows below k
            for j in range(k_rhs):
                acc, acc1 = X[k][j], X[k - 1][j]
                for r in range(k + 1, n):
                    acc = acc - A[r][k] * X[r][j]
                    acc1 = acc1 - A[r][k - 1] * X[r][j]
                X[k][j], X[k - 1][j] = acc, acc1
            swap(k, -p - 1)
            k -= 2
    return X


def _exact_t(t):
    from .._fastfloat import FT, to_exact
    from .._fixed import Fx, to_exact as fx_exact

    if t is None:
        return None
    if isinstance(t, Fx):
        return np.asarray(fx_exact(t), dtype=object)
    if isinstance(t, FT):
        return np.asarray(to_exact(t), dtype=object)
    return np.asarray(t, dtype=object)


@register("aten.linalg_ldl_solve.default")
class LdlSolve(Rule):
    def _solve(self, ctx, args, kwargs, tLD=None, tB=None):
        LD, piv, B = args[0], args[1], args[2]
        if not isinstance(LD, np.ndarray) or not isinstance(B, np.ndarray) or LD.ndim < 2 or B.ndim < 2:
            raise NotModelled("ldl_solve without matrix LD and B")
        n = LD.shape[-1]
        if LD.shape[-2] != n or B.shape[-2] != n or tuple(np.shape(piv))[-1:] != (n,):
            raise NotModelled(f"ldl_solve with LD {LD.shape}, pivots {np.shape(piv)} and B {B.shape}")
        LD = LD if LD.dtype == object else as_exact(LD)
        B = B if B.dtype == object else as_exact(B)
        piv = np.asarray(piv).astype(np.int64)
        batch = np.broadcast_shapes(LD.shape[:-2], piv.shape[:-1], B.shape[:-2])
        k = B.shape[-1]
        LDb = np.broadcast_to(LD, batch + (n, n))
        Bb = np.broadcast_to(B, batch + (n, k))
        pb = np.broadcast_to(piv, batch + (n,))
        Bt = None

        def lift_t(t, shape):
            """A tangent (Bt,) + arg shape broadcast to (Bt,) + batch + shape (batch dims after Bt)."""
            t = _exact_t(t)
            extra = len(batch) + 2 - (t.ndim - 1)
            t = t.reshape((t.shape[0],) + (1,) * extra + t.shape[1:])
            return np.broadcast_to(t, (t.shape[0],) + batch + shape)

        if tLD is not None:
            Bt = tLD.shape[0]
            tLD = lift_t(tLD, (n, n))
        if tB is not None:
            Bt = tB.shape[0]
            tB = lift_t(tB, (n, k))
        out = np.empty(batch + (n, k), dtype=object)
        tout = None if Bt is None else np.empty((Bt,) + batch + (n, k), dtype=object)
        for bi in np.ndindex(*batch) if batch else [()]:
            A = [[_D(LDb[bi + (r, c)], None if tLD is None else tLD[(slice(None),) + bi + (r, c)])
                  for c in range(n)] for r in range(n)]
            X = [[_D(Bb[bi + (r, c)], None if tB is None else tB[(slice(None),) + bi + (r, c)])
                  for c in range(k)] for r in range(n)]
            X = _sytrs_lower(A, pb[bi], X)
            for r in range(n):
                for c in range(k):
                    out[bi + (r, c)] = X[r][c].v
                    if tout is not None:
                        t = X[r][c].t
                        tout[(slice(None),) + bi + (r, c)] = Q0 if t is None else t
        return out, tout

    def forward(self, ctx, args, kwargs):
        if kwargs.get("hermitian", False) and ctx.dtype is not None and ctx.dtype.is_complex:
            raise NotModelled("ldl_solve of a complex Hermitian factorisation")
        return self._solve(ctx, args, kwargs)[0]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        tLD = targs[0] if len(targs) > 0 else None
        tB = targs[2] if len(targs) > 2 else None
        if tLD is None and tB is None:
            return None
        return self._solve(ctx, args, kwargs, tLD, tB)[1]
