"""Fused loss kernels: smooth_l1_loss, huber_loss, multi_margin_loss.

(l1_loss, margin_ranking_loss and hinge_embedding_loss decompose into ops modelled
elsewhere: sub/abs/mean, clamp_min, where.)

smooth_l1 (beta > 0) and huber are C^1: their pieces join with equal derivatives,
so the side of ``|x - y| = beta`` is recorded as a case (the formula changes there)
but no selection at it can be wrong. With ``beta = 0`` smooth_l1 is the l1 loss:
a kink at ``x = y``.

A discriminant here may be ``x[i] - y[j] - c`` with a constant ``c`` (a margin):
its value carries the constant, its row (``d/dt``) is that of ``x[i] - y[j]``. The
core reads only the sign of ``values`` and takes rows from ``idx_a``/``idx_b``, so
such an affine discriminant is exact.
"""

from __future__ import annotations

import numpy as np

from . import Disc, NotModelled, Rule, register
from .._exact import Q0, q
from ._util import bcast_index, bcast_tangent, exact_scalar, shape_of


def _reduce(v, reduction):
    """reduction: 0 none, 1 mean, 2 sum (ATen's enum)."""
    if reduction == 0:
        return np.asarray(v, dtype=object)
    s = np.sum(v) if v.size else Q0
    if not isinstance(s, type(Q0)):
        s = q(s)
    if reduction == 1:
        s = s / v.size if v.size else s
    return np.asarray(s, dtype=object)


def _reduce_t(t, reduction):
    if reduction == 0:
        return t
    B = t.shape[0]
    n = int(np.prod(t.shape[1:], dtype=np.int64))
    s = t.reshape(B, -1).sum(axis=1)
    if reduction == 1:
        s = s * (q(1) / n) if n else s
    return np.asarray(s, dtype=object)


def diff_disc(label, x, y, shape, offset=Q0, negate=False):
    """Discriminants ``x - y - offset`` elementwise (``y`` argument 1), negated when asked."""
    xb = np.broadcast_to(x, shape).ravel()
    yb = np.broadcast_to(y, shape).ravel()
    v = np.asarray(xb - yb - offset, dtype=object)
    if negate:
        v = -v
    n = v.size
    return Disc(label, 0, bcast_index(x.shape, shape), 1, bcast_index(y.shape, shape), None, v, np.arange(n),
                negate=negate)


class _PointLoss(Rule):
    """Elementwise loss of d = x - y, then a reduction."""

    nonsmooth = True

    def params(self, ctx, args, kwargs):
        raise NotImplementedError

    def piece(self, d, par):
        """(value, slope) arrays of the loss at d."""
        raise NotImplementedError

    def forward(self, ctx, args, kwargs):
        x, y = args[0], args[1]
        red, par = self.params(ctx, args, kwargs)
        shape = np.broadcast_shapes(x.shape, y.shape)
        d = np.asarray(np.broadcast_to(x, shape) - np.broadcast_to(y, shape), dtype=object)
        val, slope = self.piece(d, par)
        ctx.aux.update(shape=shape, slope=slope, red=red)
        return _reduce(val, red)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        a = ctx.aux
        shape = a["shape"]
        tx = bcast_tangent(targs[0], args[0].shape, shape)
        ty = bcast_tangent(targs[1] if len(targs) > 1 else None, shape_of(args[1]), shape)
        td = tx if ty is None else (ty * -1 if tx is None else tx - ty)
        if td is None:
            return None
        return _reduce_t(np.asarray(td * a["slope"][None], dtype=object), a["red"])


@register("aten.smooth_l1_loss.default")
class SmoothL1(_PointLoss):
    def params(self, ctx, args, kwargs):
        red = args[2] if len(args) > 2 else kwargs.get("reduction", 1)
        beta = exact_scalar(args[3] if len(args) > 3 else kwargs.get("beta", 1.0), ctx.dtype)
        if beta < 0:
            raise NotModelled("smooth_l1_loss with a negative beta")
        return red, beta

    def piece(self, d, beta):
        ad = np.where(d < 0, -d, d)
        sgn = np.where(d > 0, q(1), np.where(d < 0, q(-1), Q0))
        if beta == 0:
            return ad, sgn
        inside = ad < beta
        val = np.where(inside, d * d * (q(1) / 2) / beta, ad - beta / 2)
        slope = np.where(inside, d / beta, sgn)
        return np.asarray(val, dtype=object), np.asarray(slope, dtype=object)

    def discs(self, ctx, args, kwargs, out):
        red, beta = self.params(ctx, args, kwargs)
        shape = ctx.aux["shape"]
        if beta == 0:
            return [diff_disc("abs", args[0], args[1], shape)]
        # the formula changes at d = -beta and d = beta (C^1 there)
        return [diff_disc("lo", args[0], args[1], shape, -beta), diff_disc("hi", args[0], args[1], shape, beta)]


@register("aten.huber_loss.default")
class Huber(_PointLoss):
    def params(self, ctx, args, kwargs):
        red = args[2] if len(args) > 2 else kwargs.get("reduction", 1)
        delta = exact_scalar(args[3] if len(args) > 3 else kwargs.get("delta", 1.0), ctx.dtype)
        if delta <= 0:
            raise NotModelled("huber_loss with delta <= 0")
        return red, delta

    def piece(self, d, delta):
        ad = np.where(d < 0, -d, d)
        sgn = np.where(d > 0, q(1), np.where(d < 0, q(-1), Q0))
        inside = ad <= delta
        val = np.where(inside, d * d * (q(1) / 2), delta * (ad - delta / 2))
        slope = np.where(inside, d, delta * sgn)
        return np.asarray(val, dtype=object), np.asarray(slope, dtype=object)

    def discs(self, ctx, args, kwargs, out):
        red, delta = self.params(ctx, args, kwargs)
        shape = ctx.aux["shape"]
        return [diff_disc("lo", args[0], args[1], shape, -delta), diff_disc("hi", args[0], args[1], shape, delta)]


@register("aten.multi_margin_loss.default")
class MultiMargin(Rule):
    """loss_i = sum_{j != y_i} w[y_i] max(0, margin - x[i, y_i] + x[i, j])^p / C, then a reduction.

    Its case: the sign of ``x[i, j] - x[i, y_i] + margin`` for every ``j != y_i``."""

    nonsmooth = True

    def _params(self, ctx, args, kwargs):
        x, y = args[0], np.asarray(args[1])
        p = args[2] if len(args) > 2 else kwargs.get("p", 1)
        margin = exact_scalar(args[3] if len(args) > 3 else kwargs.get("margin", 1), ctx.dtype)
        w = args[4] if len(args) > 4 else kwargs.get("weight")
        red = args[5] if len(args) > 5 else kwargs.get("reduction", 1)
        if int(p) not in (1, 2):
            raise NotModelled(f"multi_margin_loss with p = {p}")
        if w is not None and isinstance(w, np.ndarray) and w.dtype != object:
            from .._exact import as_exact

            w = as_exact(w)
        return x, y, int(p), margin, w, red

    def _layout(self, x, y):
        x2 = x.reshape(1, -1) if x.ndim <= 1 else x      # 0-d: one sample of one class
        N, C = x2.shape
        yy = y.reshape(-1)
        return x2, N, C, yy

    def forward(self, ctx, args, kwargs):
        x, y, p, margin, w, red = self._params(ctx, args, kwargs)
        x2, N, C, yy = self._layout(x, y)
        z = np.asarray(margin - x2[np.arange(N), yy][:, None] + x2, dtype=object)    # (N, C)
        mask = np.ones((N, C), dtype=bool)
        mask[np.arange(N), yy] = False
        pos = (z > 0) & mask
        h = np.where(pos, z, Q0)
        val = h if p == 1 else h * h
        if w is not None:
            val = val * w[yy][:, None]
        per = np.asarray(val.sum(axis=1) * (q(1) / C), dtype=object)
        ctx.aux.update(z=z, pos=pos, N=N, C=C, yy=yy)
        if x.ndim == 1 and red == 0:
            per = per.reshape(())
        return _reduce(per, red) if red else per

    def discs(self, ctx, args, kwargs, out):
        x, y, p, margin, w, red = self._params(ctx, args, kwargs)
        a = ctx.aux
        N, C, yy = a["N"], a["C"], a["yy"]
        rows, cols = np.nonzero(~np.eye(C, dtype=bool)[yy])   # j != y_i
        ia = rows * C + cols
        ib = rows * C + yy[rows]
        v = np.asarray(a["z"][rows, cols], dtype=object)   # x[i,j] - x[i,y_i] + margin
        return [Disc("margin", 0, ia.astype(np.int64), 0, ib.astype(np.int64), None, v, rows.astype(np.int64))]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        x, y, p, margin, w, red = self._params(ctx, args, kwargs)
        a = ctx.aux
        N, C, yy, z, pos = a["N"], a["C"], a["yy"], a["z"], a["pos"]
        t = targs[0]
        B = t.shape[0]
        t2 = t.reshape(B, N, C)
        tz = t2 - t2[:, np.arange(N), yy][:, :, None]
        coef = np.where(pos, q(1) if p == 1 else Q0, Q0)
        if p == 2:
            coef = np.where(pos, 2 * z, Q0)
        coef = np.asarray(coef, dtype=object)
        if w is not None:
            coef = coef * w[yy][:, None]
        per = (tz * coef[None]).sum(axis=2) * (q(1) / C)
        per = np.asarray(per, dtype=object)
        if red == 0:
            return per.reshape((B,) + out.shape)
        s = per.sum(axis=1)
        if red == 1:
            s = s * (q(1) / N)
        return np.asarray(s, dtype=object)
