"""Piecewise activations with kinks: hardsigmoid, hardswish (piecewise quadratic, so its
values stay rational), prelu, softshrink.

Their cases are the side of each kink: ``x - k`` for every kink ``k`` (hardsigmoid and
hardswish at -3 and 3, prelu at 0, softshrink at -lambda and lambda).
"""

from __future__ import annotations

import numpy as np

from . import Disc, NotLipschitz, Rule, register
from .._exact import Q0, q
from ._util import bcast_index, bcast_tangent, exact_scalar

_THREE = q(3)
_SIXTH = q(1) / 6
_HALF = q(1) / 2


def kink_disc(label, x, pos, k):
    """Discriminants ``x - k`` for a scalar kink ``k`` (one per element of ``x``)."""
    xv = x.ravel()
    n = xv.size
    return Disc(label, pos, np.arange(n, dtype=np.int64), None, None, np.full(n, k, dtype=object),
                np.asarray(xv - k, dtype=object), np.arange(n))


@register("aten.hardsigmoid.default", "aten.hardsigmoid_.default")
class Hardsigmoid(Rule):
    """hardsigmoid(x) = 0 (x <= -3), x/6 + 1/2 (-3 < x < 3), 1 (x >= 3)."""

    nonsmooth = True

    def forward(self, ctx, args, kwargs):
        x = args[0]
        mid = x * _SIXTH + _HALF
        return np.asarray(np.where(x <= -_THREE, Q0, np.where(x >= _THREE, q(1), mid)), dtype=object)

    def discs(self, ctx, args, kwargs, out):
        x = args[0]
        return [kink_disc("lo", x, 0, -_THREE), kink_disc("hi", x, 0, _THREE)]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        x = args[0]
        inside = (x > -_THREE) & (x < _THREE)
        return np.asarray(np.where(inside[None], targs[0] * _SIXTH, Q0), dtype=object)


@register("aten.hardswish.default", "aten.hardswish_.default")
class Hardswish(Rule):
    """hardswish(x) = 0 (x <= -3), x (x + 3) / 6 (-3 < x < 3), x (x >= 3)."""

    nonsmooth = True

    def forward(self, ctx, args, kwargs):
        x = args[0]
        mid = x * (x + _THREE) * _SIXTH
        return np.asarray(np.where(x <= -_THREE, Q0, np.where(x >= _THREE, x, mid)), dtype=object)

    def discs(self, ctx, args, kwargs, out):
        x = args[0]
        return [kink_disc("lo", x, 0, -_THREE), kink_disc("hi", x, 0, _THREE)]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        x = args[0]
        slope = np.where(x <= -_THREE, Q0, np.where(x >= _THREE, q(1), (2 * x + _THREE) * _SIXTH))
        return np.asarray(targs[0] * np.asarray(slope, dtype=object)[None], dtype=object)


@register("aten._prelu_kernel.default", "aten.prelu.default")
class Prelu(Rule):
    """prelu(x, w) = x (x > 0), w x (x <= 0), with w broadcast against x."""

    nonsmooth = True

    def _w(self, x, w):
        if w.ndim == 1 and x.ndim >= 2 and w.size not in (1,) and w.shape[0] == x.shape[1]:
            w = w.reshape((1, w.shape[0]) + (1,) * (x.ndim - 2))   # prelu.default: one slope per channel
        return w

    def forward(self, ctx, args, kwargs):
        x, w = args[0], self._w(args[0], args[1])
        return np.asarray(np.where(x > 0, x, w * x), dtype=object)

    def discs(self, ctx, args, kwargs, out):
        x = args[0]
        xb = np.broadcast_to(x, out.shape)
        ia = bcast_index(x.shape, out.shape)
        n = xb.size
        return [Disc("prelu", 0, ia, None, None, np.full(n, Q0, dtype=object),
                     np.asarray(xb.ravel(), dtype=object), np.arange(n))]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        x, w = args[0], self._w(args[0], args[1])
        shp = out.shape
        tx = bcast_tangent(targs[0], x.shape, shp)
        tw = bcast_tangent(targs[1] if len(targs) > 1 else None, w.shape, shp) if len(targs) > 1 else None
        pos = (np.broadcast_to(x, shp) > 0)[None]
        xb, wb = np.broadcast_to(x, shp), np.broadcast_to(w, shp)
        res = None
        if tx is not None:
            res = np.where(pos, tx, tx * wb)
        if tw is not None:
            extra = np.where(pos, Q0, tw * xb)
            res = extra if res is None else res + extra
        return None if res is None else np.asarray(res, dtype=object)


@register("aten.softshrink.default")
class Softshrink(Rule):
    """softshrink(x, l) = x - l (x > l), x + l (x < -l), 0 otherwise (continuous)."""

    nonsmooth = True

    def _l(self, ctx, args, kwargs):
        return exact_scalar(args[1] if len(args) > 1 else kwargs.get("lambd", 0.5), ctx.dtype)

    def forward(self, ctx, args, kwargs):
        x, lam = args[0], self._l(ctx, args, kwargs)
        if lam < 0:
            raise NotLipschitz("softshrink with a negative lambda")
        return np.asarray(np.where(x > lam, x - lam, np.where(x < -lam, x + lam, Q0)), dtype=object)

    def discs(self, ctx, args, kwargs, out):
        lam = self._l(ctx, args, kwargs)
        return [kink_disc("lo", args[0], 0, -lam), kink_disc("hi", args[0], 0, lam)]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        x, lam = args[0], self._l(ctx, args, kwargs)
        return np.asarray(np.where(((x > lam) | (x < -lam))[None], targs[0], Q0), dtype=object)
