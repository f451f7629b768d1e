"""The pseudo-inverse of a matrix of full rank, exact: ``torch.linalg.pinv`` / ``torch.pinverse``
(``aten.linalg_pinv.atol_rtol_tensor``, ``hermitian=False``), and ``torch.linalg.lstsq`` (below).

PyTorch computes ``pinv`` from an SVD and drops the singular values ``s_i <= max(atol, rtol * s_max)``
(``rtol = eps * max(m, n)`` when neither is given). Where every singular value is kept, the result is
the rational function ``A+ = (A^T A)^-1 A^T`` (``m >= n``) or ``A^T (A A^T)^-1`` (``m < n``), exact
here. That every singular value is kept is decided exactly: with ``G`` the smaller Gram matrix and
``c = max(atol^2, rtol^2 * sum |G_ij|) >= max(atol, rtol * s_max)^2`` (as ``s_max^2 <= ||G||_F``),
``G - c I`` positive definite (exact leading minors) proves ``s_min^2 > c``. Otherwise (a singular
value at or below the cutoff: ``pinv.singular``, where pinv is not continuous as a singular value
crosses the cutoff) the op is refused with the reason, as is complex input. ``hermitian=True``
(PyTorch's eigendecomposition of the lower triangle) is the pseudo-inverse of
``tril(A) + tril(A, -1)^T``, whose singular values are its |eigenvalues|: the same test and formulas.

Derivatives (forward mode), with ``G = A^T A``, ``P = A+``::

    dP = G^-1 dA^T - G^-1 (dA^T A + A^T dA) P                  (m >= n)
    dP = dA^T H^-1 - P (dA A^T + A dA^T) H^-1,  H = A A^T       (m < n)
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from . import NotModelled, Rule, register
from .._exact import matmul, q
from ._util import tan
from .extra import _inv


def _scalar(v, default):
    if v is None:
        return default
    a = np.asarray(v.detach().cpu().double().numpy() if hasattr(v, "detach") else v, dtype=object)
    if a.size != 1:
        raise NotModelled("pinv with a tensor atol/rtol of more than one element")
    x = a.ravel()[0]
    return Fraction(float(x)) if isinstance(x, float) else Fraction(str(q(x)))


def _kept_all(g, atol, rtol) -> bool:
    """Whether every singular value exceeds max(atol, rtol * s_max), decided exactly on the Gram matrix."""
    import flint

    k = g.shape[0]
    vals = [[q(v) for v in row] for row in g.tolist()]
    l1 = sum((abs(v) for row in vals for v in row), flint.fmpq(0))
    c = max(flint.fmpq(atol.numerator, atol.denominator) ** 2,
            flint.fmpq(rtol.numerator, rtol.denominator) ** 2 * l1)
    shifted = [[v - c if i == j else v for j, v in enumerate(row)] for i, row in enumerate(vals)]
    # Sylvester's criterion: G - c I is positive definite iff every leading minor is positive
    return all(flint.fmpq_mat([row[:j] for row in shifted[:j]]).det() > 0 for j in range(1, k + 1))


@register("aten.linalg_pinv.atol_rtol_tensor")
class Pinv(Rule):
    def forward(self, ctx, args, kwargs):
        import torch

        a = _sym_lower(np.asarray(args[0], dtype=object)) if self._hermitian(args, kwargs) else \
            np.asarray(args[0], dtype=object)
        m, n = a.shape[-2], a.shape[-1]
        if min(m, n) == 0:
            raise NotModelled("pinv of an empty matrix")
        eps = Fraction(float(torch.finfo(ctx.dtype or torch.float64).eps))
        atol_t = kwargs.get("atol", args[1] if len(args) > 1 else None)
        rtol_t = kwargs.get("rtol", args[2] if len(args) > 2 else None)
        atol = _scalar(atol_t, Fraction(0))
        rtol = _scalar(rtol_t, eps * max(m, n) if atol_t is None else Fraction(0))
        out, ginv, tall = _full_rank_pinv(a, atol, rtol, "a singular value at or below pinv's cutoff max(atol, "
                                          "rtol * s_max) (or not shown above it): pinv jumps where a singular "
                                          "value crosses the cutoff")
        ctx.aux["pinv"] = (ginv, tall)
        return out

    @staticmethod
    def _hermitian(args, kwargs) -> bool:
        return bool(kwargs.get("hermitian", args[3] if len(args) > 3 else False))

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        t = targs[0]
        if t is None:
            return None
        if "pinv" not in ctx.aux:
            self.forward(ctx, args, kwargs)
        gi, tall = ctx.aux["pinv"]
        a = np.asarray(args[0], dtype=object)
        if self._hermitian(args, kwargs):
            # hermitian=True reads the lower triangle only (LAPACK's eigh, UPLO="L"): the function of
            # the input is pinv(tril(a) + tril(a, -1)^T); singular values of that symmetric matrix
            # are its |eigenvalues|, so the cutoff and the full-rank formulas are pinv's
            a, t = _sym_lower(a), _sym_lower(np.asarray(t, dtype=object))
        return tan(_dpinv(a, np.asarray(out, dtype=object), gi, tall, t))


def _sym_lower(a):
    """``tril(a) + tril(a, -1)^T`` over the last two axes (square), exact."""
    if a.shape[-1] != a.shape[-2]:
        raise NotModelled("pinv with hermitian=True of a non-square matrix")
    n = a.shape[-1]
    low = np.tril(np.ones((n, n), dtype=bool))
    aT = np.swapaxes(a, -1, -2)
    return np.where(low, a, aT)


def _dpinv(a, P, gi, tall, t):
    """The derivative of pinv at a full-rank ``a`` along ``t`` (B, ..., m, n), exact."""
    t = np.asarray(t, dtype=object)
    tT = np.swapaxes(t, -1, -2)
    aT = np.swapaxes(a, -1, -2)
    B = t.shape[0]
    gib = np.broadcast_to(gi, (B,) + gi.shape)
    Pb = np.broadcast_to(P, (B,) + P.shape)
    if tall:
        dG = matmul(tT, np.broadcast_to(a, t.shape)) + matmul(np.broadcast_to(aT, tT.shape), t)
        return matmul(gib, tT) - matmul(matmul(gib, dG), Pb)
    dH = matmul(t, np.broadcast_to(aT, tT.shape)) + matmul(np.broadcast_to(a, t.shape), tT)
    return matmul(tT, gib) - matmul(matmul(Pb, dH), gib)


def _full_rank_pinv(a, atol, rtol, what):
    """(pinv, Gram inverse, tall) of (..., m, n) exact ``a``, every singular value shown above the cutoff."""
    m, n = a.shape[-2], a.shape[-1]
    tall = m >= n
    out = np.empty(a.shape[:-2] + (n, m), dtype=object)
    ginv = np.empty(a.shape[:-2] + ((n, n) if tall else (m, m)), dtype=object)
    for idx in np.ndindex(*a.shape[:-2]):
        ai = a[idx] if idx else a
        g = np.asarray(matmul(ai.T, ai) if tall else matmul(ai, ai.T), dtype=object)
        if not _kept_all(g, atol, rtol):
            raise NotModelled(what)
        gi = _inv(g[None])[0]
        ginv[idx] = gi
        out[idx] = matmul(gi, ai.T) if tall else matmul(ai.T, gi)
    return out, ginv, tall


@register("aten.linalg_lstsq.default")
class Lstsq(Rule):
    """linalg_lstsq(A, B, rcond, driver) = (solution, residuals, rank, singular_values) for A of full
    rank: the solution is pinv(A) B (least squares for m >= n, the minimum-norm one for m < n), exact;
    the residuals are ``sum_i (A x - B)_ij^2``. The rank-revealing drivers (gelsy, gelsd, gelss) must
    keep every singular value: decided exactly with a margin of 100 over their cutoff ``rcond * s_max``;
    the singular values output (gelsd, gelss) is not modelled. Rank deficiency is refused."""

    def _parts(self, ctx, args, kwargs):
        import torch

        if "lstsq" in ctx.aux:
            return ctx.aux["lstsq"]
        a, b = np.asarray(args[0], dtype=object), np.asarray(args[1], dtype=object)
        driver = kwargs.get("driver", args[3] if len(args) > 3 else None) or "gelsy"
        rcond = kwargs.get("rcond", args[2] if len(args) > 2 else None)
        m, n = a.shape[-2], a.shape[-1]
        eps = Fraction(float(torch.finfo(ctx.dtype or torch.float64).eps))
        r = Fraction(float(rcond)) if rcond is not None and rcond >= 0 else eps * max(m, n)
        margin = Fraction(0) if driver == "gels" else r * 100
        P, gi, tall = _full_rank_pinv(a, Fraction(0), margin,
                                      "lstsq of a matrix without full rank (or with a singular value near the "
                                      f"driver's cutoff): the solution is not continuous there (driver {driver})")
        vec = b.ndim == a.ndim - 1
        bm = b[..., None] if vec else b
        x = matmul(P, bm)
        ctx.aux["lstsq"] = (a, bm, P, gi, tall, x, vec)
        return ctx.aux["lstsq"]

    def forward(self, ctx, args, kwargs):
        a, bm, P, gi, tall, x, vec = self._parts(ctx, args, kwargs)
        rec = ctx.recorded
        if isinstance(rec, (tuple, list)) and rec[3].numel():
            raise NotModelled("lstsq's singular values output (drivers gelsd, gelss)")
        res = np.zeros((0,), dtype=object)
        if isinstance(rec, (tuple, list)) and rec[1].numel():
            d = np.asarray(matmul(a, x), dtype=object) - bm
            res = (d * d).sum(axis=-2)
            res = res[..., 0] if vec else res
        rank = rec[2].numpy() if isinstance(rec, (tuple, list)) else np.array(min(a.shape[-2:]))
        sol = x[..., 0] if vec else x
        return np.asarray(sol, dtype=object), res, rank, np.zeros((0,), dtype=object)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        a, bm, P, gi, tall, x, vec = self._parts(ctx, args, kwargs)
        ta = targs[0] if isinstance(targs[0], np.ndarray) else None
        tb = targs[1] if len(targs) > 1 and isinstance(targs[1], np.ndarray) else None
        if ta is None and tb is None:
            return None, None, None, None
        B = (ta if ta is not None else tb).shape[0]
        dx = None
        if ta is not None:
            dx = matmul(_dpinv(a, P, gi, tall, ta), np.broadcast_to(bm, (B,) + bm.shape))
        if tb is not None:
            tbm = np.asarray(tb, dtype=object)
            tbm = tbm[..., None] if vec else tbm
            term = matmul(np.broadcast_to(P, (B,) + P.shape), tbm)
            dx = term if dx is None else dx + term
        dres = None
        if np.size(out[1]):
            d = np.asarray(matmul(a, x), dtype=object) - bm
            dd = matmul(np.broadcast_to(a, (B,) + a.shape), dx)
            if ta is not None:
                dd = dd + matmul(np.asarray(ta, dtype=object), np.broadcast_to(x, (B,) + x.shape))
            if tb is not None:
                dd = dd - tbm
            dres = (2 * d[None] * dd).sum(axis=-2)
            dres = tan(dres[..., 0] if vec else dres)
        return tan(dx[..., 0] if vec else dx), dres, None, None
