"""Smooth ops without a rule elsewhere: the safe softmax, softmax's backward, logcumsumexp, glu,
soft_margin_loss (values enclosed with Arb where irrational, see :mod:`.smooth`).

* ``_safe_softmax(x, dim)``: softmax, with 0 for a row that is entirely ``-inf``. mtcheck's exact
  values are finite, so the model is the softmax (the fully masked row cannot occur).
* ``_softmax_backward_data(g, y, dim)``: ``y * (g - sum(g y))``, a polynomial in ``(g, y)`` (exact
  where both are; linear in ``g``); its derivative in ``y`` is ``ty (g - S) - y sum(g ty)``.
* ``logcumsumexp(x, dim)``: ``y_i = log sum_{j <= i} exp(x_j)``; ``dy_i = sum_{j<=i} W_ij t_j``
  with ``W_ij = exp(x_j - y_i)`` (a softmax over the prefix), enclosed.
* ``glu(x, dim)``: ``a sigmoid(b)`` for the halves ``a, b`` of ``x`` along ``dim``.
* ``soft_margin_loss(x, y, reduction)``: ``log(1 + exp(-y x))``, then none / mean / sum;
  ``dl/dx = -y sigmoid(-y x)``, ``dl/dy = -x sigmoid(-y x)``.
"""

from __future__ import annotations

import numpy as np

from . import NotModelled, Rule, register
from .._ball import Ball, is_ball, to_ball
from .._exact import Q0, q
from ._util import arg_grads
from .smooth import Softmax, _BCEBase, _dim, _fin, _reduce, _sigmoid, enclose, times


def _is_dep(t):
    from .._support import Dep

    return isinstance(t, Dep)


def _cat(parts, axis):
    """Concatenate results of one kind (a Ball if any part is one, structural flags stay flags)."""
    if any(is_ball(p) for p in parts) and not any(_is_dep(p) for p in parts):
        parts = [to_ball(p) for p in parts]
        return np.concatenate(parts, axis=axis).view(Ball)
    return np.concatenate(parts, axis=axis)


# ---------------------------------------------------------------- _safe_softmax

@register("aten._safe_softmax.default")
class SafeSoftmax(Softmax):
    """_safe_softmax(x, dim, dtype): softmax over ``dim``; PyTorch gives 0 for a row of all
    ``-inf``, which exact (finite) values never form, so the model is the softmax."""


# ---------------------------------------------------------------- _softmax_backward_data

@register("aten._softmax_backward_data.default")
class SoftmaxBackwardData(Rule):
    """_softmax_backward_data(g, y, dim, input_dtype) = y * (g - sum(g * y, dim)).

    jvp: ``y (tg - sum(y tg)) + ty (g - S) - y sum(g ty)`` with ``S = sum(g y)``;
    vjp: ``c_g = y c - y sum(c y)``, ``c_y = c (g - S) - g sum(c y)``."""

    balls = True

    def _axes(self, args):
        g = args[0]
        return (_dim(args[2], g.ndim),) if g.ndim else ()

    def forward(self, ctx, args, kwargs):
        g, y = args[0], args[1]
        ax = self._axes(args)
        if np.shape(g) != np.shape(y):
            raise NotModelled("_softmax_backward_data with grad_output and output of different shapes")
        if not ax:
            S = g * y
        else:
            S = np.sum(g * y, axis=ax, keepdims=True)
        ctx.aux["S"] = S
        return _fin(y * (g - S))

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        g, y = args[0], args[1]
        ax = self._axes(args)
        tax = tuple(a + 1 for a in ax)
        S = ctx.aux["S"]
        tg = targs[0] if len(targs) > 0 else None
        ty = targs[1] if len(targs) > 1 else None

        def rsum(v):
            return np.sum(v, axis=tax, keepdims=True) if tax else v

        res = None
        if tg is not None:
            r = times(y, tg - rsum(times(y, tg)))
            res = r
        if ty is not None:
            r = times(g - S, ty) - times(y, rsum(times(g, ty)))
            res = r if res is None else res + r
        return None if res is None else _fin(res)

    def vjp(self, ctx, args, kwargs, out, cot):
        g, y = args[0], args[1]
        ax = self._axes(args)
        tax = tuple(a + 1 for a in ax)
        S = ctx.aux["S"]
        live = ctx.aux.get("live") or [True, True]

        def rsum(v):
            return np.sum(v, axis=tax, keepdims=True) if tax else v

        cy = rsum(times(y, cot))
        by = {}
        if live[0]:
            by[0] = _fin(times(y, cot) - times(y, cy))
        if len(live) < 2 or live[1]:
            by[1] = _fin(times(g - S, cot) - times(g, cy))
        return arg_grads(args, by)


# ---------------------------------------------------------------- logcumsumexp

@register("aten.logcumsumexp.default")
class LogCumSumExp(Rule):
    """logcumsumexp(x, dim): y_i = log sum_{j<=i} exp(x_j) along ``dim``.

    With ``E_ij = exp(x_j - c_i)`` (j <= i; ``c_i`` the largest float midpoint of ``x_0..x_i``, an
    exact dyadic: any shift gives the same value) and ``P_i = sum_j E_ij``: ``y_i = log P_i + c_i``
    and ``W_ij = E_ij / P_i`` (j <= i, else 0) is the Jacobian along ``dim``, used by jvp
    (``sum_j W_ij t_j``) and vjp (``sum_i W_ij c_i``)."""

    balls = True

    def _d(self, args):
        x = args[0]
        return _dim(args[1], x.ndim) if x.ndim else 0

    def forward(self, ctx, args, kwargs):
        x = args[0]
        if np.ndim(x) == 0:
            ctx.aux["W"] = None
            return x
        d = self._d(args)
        xm = np.moveaxis(x, d, -1)                 # (..., n)
        n = xm.shape[-1]
        # prefix i is shifted by c_i, the largest float midpoint of x_0..x_i (an exact dyadic), so
        # that no prefix sum underflows: E_ij = exp(x_j - c_i) for j <= i (else 0), P_i = sum_j E_ij
        mids = to_ball(xm).mid
        cm = np.maximum.accumulate(mids, axis=-1)
        cq = np.vectorize(q, otypes=[object])(cm) if cm.ndim else np.asarray(q(float(cm)), dtype=object)
        tri = np.tril(np.ones((n, n), dtype=bool))
        D = xm[..., None, :] - cq[..., :, None]
        D = np.where(tri, D, 0.0).view(Ball) if is_ball(D) else np.where(tri, D, Q0)
        E = enclose(lambda a: a.exp(), D)
        E = np.where(tri, E, 0.0).view(Ball) if is_ball(E) else np.where(tri, E, Q0)
        P = np.sum(E, axis=-1)
        y = enclose(lambda a: a.log(), P) + cq
        W = E / P[..., :, None]                    # W[..., i, j] = exp(x_j - y_i), j <= i
        ctx.aux["W"] = _fin(W)
        return _fin(np.moveaxis(_fin(y), -1, d))

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        t = targs[0]
        W = ctx.aux["W"]
        if t is None or W is None:
            return t
        d = self._d(args) + 1
        tm = np.moveaxis(t, d, -1)                 # (B, ..., n)
        r = np.sum(times(W[None], tm[..., None, :]), axis=-1)
        return _fin(np.moveaxis(r, -1, d))

    def vjp(self, ctx, args, kwargs, out, cot):
        W = ctx.aux["W"]
        if W is None:
            return arg_grads(args, {0: cot})
        d = self._d(args) + 1
        cm = np.moveaxis(cot, d, -1)               # (B, ..., n) indexed by i
        r = np.sum(times(W[None], cm[..., :, None]), axis=-2)
        return arg_grads(args, {0: _fin(np.moveaxis(r, -1, d))})


# ---------------------------------------------------------------- glu

@register("aten.glu.default")
class Glu(Rule):
    """glu(x, dim) = a * sigmoid(b), ``a, b`` the first and second halves of ``x`` along ``dim``;
    d = (s ta + a s (1 - s) tb)."""

    balls = True

    def _split(self, args, kwargs):
        x = args[0]
        dim = args[1] if len(args) > 1 else kwargs.get("dim", -1)
        if np.ndim(x) == 0:
            raise NotModelled("glu of a 0-d tensor")
        d = dim % x.ndim
        n = x.shape[d]
        if n % 2:
            raise NotModelled("glu along a dimension of odd size")
        h = n // 2
        idx_a = [slice(None)] * x.ndim
        idx_b = [slice(None)] * x.ndim
        idx_a[d], idx_b[d] = slice(0, h), slice(h, n)
        return x, d, tuple(idx_a), tuple(idx_b)

    def forward(self, ctx, args, kwargs):
        x, d, ia, ib = self._split(args, kwargs)
        a, b = x[ia], x[ib]
        s = enclose(_sigmoid, b)
        ds = enclose(lambda v: _sigmoid(v) * (1 - _sigmoid(v)), b)
        ctx.aux["s"] = s
        ctx.aux["dsa"] = _fin(times(ds, a))
        return _fin(times(s, a))

    def _tb(self, t, d, ia, ib):
        B = (slice(None),)
        return t[B + ia], t[B + ib]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        t = targs[0]
        if t is None:
            return None
        x, d, ia, ib = self._split(args, kwargs)
        ta, tb = self._tb(t, d, ia, ib)
        return _fin(times(ctx.aux["s"], ta) + times(ctx.aux["dsa"], tb))

    def vjp(self, ctx, args, kwargs, out, cot):
        x, d, ia, ib = self._split(args, kwargs)
        ga = times(ctx.aux["s"], cot)
        gb = times(ctx.aux["dsa"], cot)
        return arg_grads(args, {0: _fin(_cat([ga, gb], d + 1))})


# ---------------------------------------------------------------- soft_margin_loss

@register("aten.soft_margin_loss.default")
class SoftMarginLoss(_BCEBase):
    """soft_margin_loss(x, y, reduction) = log(1 + exp(-y x)) (reduction 0 none, 1 mean, 2 sum);
    dl/dx = -y sigmoid(-y x), dl/dy = -x sigmoid(-y x)."""

    def forward(self, ctx, args, kwargs):
        x, y = args[0], args[1]
        red = args[2] if len(args) > 2 else kwargs.get("reduction", 1)
        if np.shape(x) != np.shape(y):
            raise NotModelled("soft_margin_loss with input and target of different shapes")
        m = y * x
        loss = enclose(lambda a: (-a).exp().log1p(), m)
        sg = enclose(lambda a: _sigmoid(-a), m)
        ctx.aux["dx"] = _fin(-times(sg, y))
        ctx.aux["dy"] = _fin(-times(sg, x))
        ctx.aux["red"] = red
        return _fin(_reduce(_fin(loss), red))



__all__ = ["SafeSoftmax", "SoftmaxBackwardData", "LogCumSumExp", "Glu", "SoftMarginLoss"]
