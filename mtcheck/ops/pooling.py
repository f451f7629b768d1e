"""Max-pooling (a max over each window: its case is the window's tie set) and
average pooling (linear)."""

from __future__ import annotations

import numpy as np

from . import Rule, register
from .._exact import Q0, q, zeros
from ._util import tan
from ._windows import adaptive, sliding
from ._util import arg_grads, obj, zeros_like_cot
from .nonsmooth import select_windows, window_disc, winner_jvp, winner_vjp


def _layout(x, nsp):
    """(lead shape, spatial shape, x as (R, S)) for an input with ``nsp`` spatial dims."""
    lead = x.shape[: x.ndim - nsp]
    sp = x.shape[x.ndim - nsp:]
    R = int(np.prod(lead, dtype=np.int64))
    S = int(np.prod(sp, dtype=np.int64))
    return lead, sp, x.reshape(R, S), R, S


class _MaxPool(Rule):
    balls = True
    nonsmooth = True
    nsp = 2
    with_indices = True

    def windows(self, sp, args, kwargs):
        raise NotImplementedError

    def forward(self, ctx, args, kwargs):
        x = args[0]
        lead, sp, x2, R, S = _layout(x, self.nsp)
        out_sp, idx = self.windows(sp, args, kwargs)
        O, K = int(np.prod(out_sp, dtype=np.int64)), idx.shape[-1]
        idx = idx.reshape(O, K)
        valid = np.broadcast_to(idx >= 0, (R, O, K)).reshape(R * O, K)
        safe = np.where(idx >= 0, idx, 0)
        vals = x2[:, safe].reshape(R * O, K)
        fidx = (np.arange(R)[:, None, None] * S + safe[None]).reshape(R * O, K)
        prefer = None
        if self.with_indices and ctx.recorded is not None and isinstance(ctx.recorded, (tuple, list)):
            # follow the framework's choice of index where exact arithmetic allows it
            rec = ctx.recorded[1].reshape(R * O, 1).numpy()
            match = (np.broadcast_to(safe, (R, O, K)).reshape(R * O, K) == rec) & valid
            prefer = np.where(match.any(axis=1), np.argmax(match, axis=1), -1)
        best, winner, ties = select_windows(vals, valid, False, None)
        if prefer is not None:
            ok = prefer >= 0
            p = np.where(ok, prefer, 0)
            tied = ties[np.arange(R * O), p]           # decided by select_windows (enclosures too)
            winner = np.where(ok & tied, p, winner)
        ctx.aux.update(fidx=fidx, winner=winner, vals=vals, valid=valid)
        shape = lead + tuple(out_sp)
        y = obj(best).reshape(shape)
        if self.with_indices:
            spatial_idx = np.broadcast_to(safe, (R, O, K)).reshape(R * O, K)[np.arange(R * O), winner]
            return y, spatial_idx.reshape(shape).astype(np.int64)
        return y

    def discs(self, ctx, args, kwargs, out):
        a = ctx.aux
        return [window_disc("window", 0, a["fidx"], a["vals"], a["valid"], a["winner"], False)]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return winner_jvp(ctx, out, targs[0])

    def vjp(self, ctx, args, kwargs, out, cot):
        return arg_grads(args, {0: winner_vjp(ctx, args[0], cot)})


def _pool_args(args, kwargs, nsp):
    k = args[1] if len(args) > 1 else kwargs["kernel_size"]
    s = args[2] if len(args) > 2 else kwargs.get("stride", [])
    p = args[3] if len(args) > 3 else kwargs.get("padding", 0)
    d = args[4] if len(args) > 4 else kwargs.get("dilation", 1)
    c = args[5] if len(args) > 5 else kwargs.get("ceil_mode", False)
    if not s:
        s = k
    return k, s, p, d, c


@register("aten.max_pool2d_with_indices.default")
class MaxPool2dIdx(_MaxPool):
    nsp = 2

    def windows(self, sp, args, kwargs):
        k, s, p, d, c = _pool_args(args, kwargs, self.nsp)
        return sliding(sp, k, s, p, d, c)


@register("aten.max_pool3d_with_indices.default")
class MaxPool3dIdx(MaxPool2dIdx):
    nsp = 3


@register("aten.max_pool2d.default")
class MaxPool2d(MaxPool2dIdx):
    with_indices = False


@register("aten.max_pool1d.default")
class MaxPool1d(MaxPool2dIdx):
    nsp = 1
    with_indices = False


@register("aten.max_pool3d.default")
class MaxPool3d(MaxPool2dIdx):
    nsp = 3
    with_indices = False


@register("aten.max_pool1d_with_indices.default")
class MaxPool1dIdx(MaxPool2dIdx):
    nsp = 1


@register("aten.adaptive_max_pool2d.default")
class AdaptiveMaxPool2d(_MaxPool):
    nsp = 2

    def windows(self, sp, args, kwargs):
        return adaptive(sp, args[1])


@register("aten.adaptive_max_pool1d.default")
class AdaptiveMaxPool1d(AdaptiveMaxPool2d):
    nsp = 1


@register("aten.adaptive_max_pool3d.default")
class AdaptiveMaxPool3d(AdaptiveMaxPool2d):
    nsp = 3


# ---------------------------------------------------------------- average pooling

def _avg_vjp(cot, x_shape, nsp, idx, inv):
    lead = tuple(x_shape[: len(x_shape) - nsp])
    sp = tuple(x_shape[len(x_shape) - nsp:])
    B = cot.shape[0]
    R = B * int(np.prod(lead, dtype=np.int64))
    S = int(np.prod(sp, dtype=np.int64))
    O, K = idx.shape
    c = cot.reshape(R, O) * inv[None, :]
    g = zeros_like_cot((R, S), c)
    for k in range(K):
        pos = idx[:, k]
        ok = pos >= 0
        if ok.any():
            p = pos[ok]                     # distinct positions for a fixed offset k
            g[:, p] = g[:, p] + c[:, ok]
    return g.reshape((B,) + lead + sp)

def _avg_weights(sp, out_sp, idx, k, s, p, count_include_pad, divisor_override):
    """Divisor of each window, as PyTorch's avg_pool kernels compute it."""
    O = idx.reshape(-1, idx.shape[-1]).shape[0]
    if divisor_override:
        return np.full(O, divisor_override, dtype=np.int64)
    if not count_include_pad:
        return (idx.reshape(O, -1) >= 0).sum(axis=1)
    n = len(sp)
    sizes = np.ones(out_sp, dtype=np.int64)
    for i in range(n):
        o = np.arange(out_sp[i])
        start = o * s[i] - p[i]
        end = np.minimum(start + k[i], sp[i] + p[i])
        shape = [1] * n
        shape[i] = out_sp[i]
        sizes = sizes * (end - start).reshape(shape)
    return sizes.reshape(O)


class _AvgPool(Rule):
    balls = True
    nsp = 2

    def _windows(self, sp, args, kwargs):
        n = self.nsp
        from ._windows import _tup

        k = _tup(args[1], n)
        s = _tup(args[2] if len(args) > 2 and args[2] else k, n)
        p = _tup(args[3] if len(args) > 3 else 0, n)
        c = args[4] if len(args) > 4 else False
        cip = args[5] if len(args) > 5 else True
        div = args[6] if len(args) > 6 else None
        out_sp, idx = sliding(sp, k, s, p, 1, c)
        w = _avg_weights(sp, out_sp, idx, k, s, p, cip, div)
        return out_sp, idx, w

    def _apply(self, x, args, kwargs, lead_extra=()):
        lead, sp, x2, R, S = _layout(x, self.nsp)
        out_sp, idx, w = self._windows(sp, args, kwargs)
        O, K = int(np.prod(out_sp, dtype=np.int64)), idx.shape[-1]
        idx = idx.reshape(O, K)
        safe = np.where(idx >= 0, idx, 0)
        vals = x2[:, safe]
        vals = np.where((idx < 0)[None], Q0, vals)
        sums = vals.sum(axis=2) if K else zeros((R, O))
        inv = np.array([q(1) / int(v) for v in w], dtype=object)
        return tan(sums * inv[None, :]).reshape(lead + tuple(out_sp))

    def forward(self, ctx, args, kwargs):
        return self._apply(args[0], args, kwargs)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return self._apply(targs[0], args, kwargs)

    def vjp(self, ctx, args, kwargs, out, cot):
        x = args[0]
        sp = x.shape[x.ndim - self.nsp:]
        out_sp, idx, w = self._windows(sp, args, kwargs)
        idx = idx.reshape(-1, idx.shape[-1])
        inv = np.array([q(1) / int(v) for v in w], dtype=object)
        return arg_grads(args, {0: _avg_vjp(cot, x.shape, self.nsp, idx, inv)})


@register("aten.avg_pool2d.default")
class AvgPool2d(_AvgPool):
    nsp = 2


@register("aten.avg_pool1d.default")
class AvgPool1d(_AvgPool):
    nsp = 1


@register("aten.avg_pool3d.default")
class AvgPool3d(_AvgPool):
    nsp = 3


class _AdaptiveAvg(Rule):
    balls = True
    nsp = 2

    def _apply(self, x, out_size):
        lead, sp, x2, R, S = _layout(x, self.nsp)
        out_sp, idx = adaptive(sp, out_size)
        O, K = int(np.prod(out_sp, dtype=np.int64)), idx.shape[-1]
        idx = idx.reshape(O, K)
        safe = np.where(idx >= 0, idx, 0)
        vals = np.where((idx < 0)[None], Q0, x2[:, safe])
        cnt = (idx >= 0).sum(axis=1)
        inv = np.array([q(1) / int(c) for c in cnt], dtype=object)
        return tan(vals.sum(axis=2) * inv[None]).reshape(lead + tuple(out_sp))

    def forward(self, ctx, args, kwargs):
        return self._apply(args[0], args[1])

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return self._apply(targs[0], args[1])

    def vjp(self, ctx, args, kwargs, out, cot):
        x = args[0]
        sp = x.shape[x.ndim - self.nsp:]
        out_sp, idx = adaptive(sp, args[1])
        idx = idx.reshape(-1, idx.shape[-1])
        cnt = (idx >= 0).sum(axis=1)
        inv = np.array([q(1) / int(c) for c in cnt], dtype=object)
        return arg_grads(args, {0: _avg_vjp(cot, x.shape, self.nsp, idx, inv)})


@register("aten._adaptive_avg_pool2d.default", "aten.adaptive_avg_pool2d.default")
class AdaptiveAvg2d(_AdaptiveAvg):
    nsp = 2


@register("aten._adaptive_avg_pool3d.default", "aten.adaptive_avg_pool3d.default")
class AdaptiveAvg3d(_AdaptiveAvg):
    nsp = 3


@register("aten.adaptive_avg_pool1d.default")
class AdaptiveAvg1d(_AdaptiveAvg):
    nsp = 1
