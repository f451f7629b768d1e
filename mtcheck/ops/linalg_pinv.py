"""The pseudo-inverse of a matrix of full rank, exact: ``torch.linalg.pinv`` / ``torch.pinverse``
(``aten.linalg_pinv.atol_rtol_tensor``, ``hermitian=False``).

PyTorch computes ``pinv`` from an SVD and drops the singular values ``s_i <= max(atol, rtol * s_max)``
(``rtol = eps * max(m, n)`` when neither is given). Where every singular value is kept, the result is
the rational function ``A+ = (A^T A)^-1 A^T`` (``m >= n``) or ``A^T (A A^T)^-1`` (``m < n``), exact
here. That every singular value is kept is decided exactly: with ``G`` the smaller Gram matrix and
``c = max(atol^2, rtol^2 * sum |G_ij|) >= max(atol, rtol * s_max)^2`` (as ``s_max^2 <= ||G||_F``),
``G - c I`` positive definite (exact leading minors) proves ``s_min^2 > c``. Otherwise (a singular
value at or below the cutoff: ``pinv.singular``, where pinv is not continuous as a singular value
crosses the cutoff) the op is refused with the reason, as is ``hermitian=True`` (an eigendecomposition
of one triangle) and complex input.

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

        a = np.asarray(args[0], dtype=object)
        if kwargs.get("hermitian", args[3] if len(args) > 3 else False):
            raise NotModelled("pinv with hermitian=True (an eigendecomposition of one triangle)")
        m, n = a.shape[-2], a.shape[-1]
        if min(m, n) == 0:
            raise NotModelled("pinv of an empty matrix")
        eps = Fraction(float(torch.finfo(ctx.dtype or torch.float64).eps))
        atol_t = kwargs.get("atol", args[1] if len(args) > 1 else None)
        rtol_t = kwargs.get("rtol", args[2] if len(args) > 2 else None)
        atol = _scalar(atol_t, Fraction(0))
        rtol = _scalar(rtol_t, eps * max(m, n) if atol_t is None else Fraction(0))
        tall = m >= n
        out = np.empty(a.shape[:-2] + (n, m), dtype=object)
        ginv = np.empty(a.shape[:-2] + ((n, n) if tall else (m, m)), dtype=object)
        for idx in np.ndindex(*a.shape[:-2]):
            ai = a[idx] if idx else a
            g = matmul(ai.T, ai) if tall else matmul(ai, ai.T)
            if not _kept_all(np.asarray(g, dtype=object), atol, rtol):
                raise NotModelled("a singular value at or below pinv's cutoff max(atol, rtol * s_max) (or not "
                                  "shown above it): pinv jumps where a singular value crosses the cutoff")
            gi = _inv(np.asarray(g, dtype=object)[None])[0]
            ginv[idx] = gi
            out[idx] = matmul(gi, ai.T) if tall else matmul(ai.T, gi)
        ctx.aux["pinv"] = (ginv, tall)
        return out

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        t = targs[0]
        if t is None:
            return None
        if "pinv" not in ctx.aux:
            self.forward(ctx, args, kwargs)
        gi, tall = ctx.aux["pinv"]
        a = np.asarray(args[0], dtype=object)
        P = np.asarray(out, dtype=object)
        t = np.asarray(t, dtype=object)
        tT = np.swapaxes(t, -1, -2)
        aT = np.swapaxes(a, -1, -2)
        B = t.shape[0]
        gib = np.broadcast_to(gi, (B,) + gi.shape)
        Pb = np.broadcast_to(P, (B,) + P.shape)
        if tall:
            dG = matmul(tT, np.broadcast_to(a, t.shape)) + matmul(np.broadcast_to(aT, tT.shape), t)
            res = matmul(gib, tT) - matmul(matmul(gib, dG), Pb)
        else:
            dH = matmul(t, np.broadcast_to(aT, tT.shape)) + matmul(np.broadcast_to(a, t.shape), tT)
            res = matmul(tT, gib) - matmul(matmul(Pb, dH), gib)
        return tan(res)
