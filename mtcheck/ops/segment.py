"""Segmented reductions (``aten.segment_reduce``, behind ``torch.segment_reduce``), exactly.

The data is cut along ``axis`` into consecutive segments given by ``lengths`` or ``offsets`` (per
index of the dimensions before ``axis``). PyTorch starts every segment's reduction from
``initial`` when it is given (so ``initial`` takes part in every segment, empty or not) and
otherwise from the reduction's identity (0, 1, -inf, +inf):

* ``sum``: ``initial + sum``; ``mean``: ``(initial + sum) / length`` (an empty segment gives
  ``initial``, or NaN without one: refused); ``prod``: ``initial * prod`` -- polynomials.
* ``max`` / ``min``: ``max(initial, max(segment))``, i.e. ``clamp_min(max(segment), initial)``.
  Its case is the tie set of the segment (max-type discriminants, as for amax) and the sign of
  ``max(segment) - initial`` (a comparison with a constant: ``initial`` wins, the output is
  locally constant; a zero is a tie). Where ``initial`` wins strictly the segment's own ties do
  not matter and are not cases. An empty segment without ``initial`` is +-inf: refused.
"""

from __future__ import annotations

import numpy as np

from . import Disc, NotModelled, Rule, register
from .._exact import Q0, Q1, as_exact, objects
from ._util import arg_grads, exact_scalar, obj, zeros_like_cot, zeros_t
from .nonsmooth import select_windows, window_disc

_REDUCTIONS = ("sum", "mean", "prod", "max", "min")


def _ints(v):
    if v is None:
        return None
    a = np.asarray(v)
    if a.dtype == object:
        a = np.array([int(e) for e in a.ravel()], dtype=np.int64).reshape(a.shape)
    return a.astype(np.int64)


class _Layout:
    """Windows of the segmented reduction: group g = (l, s, t) of the output (L, S, T), its
    entries ``idx`` (G, K) as flat data indices, ``valid`` (G, K) and ``length`` (G,)."""

    def __init__(self, reduce, init, out_shape, idx, valid, length):
        self.reduce, self.init, self.out_shape = reduce, init, out_shape
        self.idx, self.valid, self.length = idx, valid, length


def _layout(ctx, args, kwargs) -> _Layout:
    data = args[0]
    reduce = args[1] if len(args) > 1 else kwargs.get("reduce")
    if reduce not in _REDUCTIONS:
        raise NotModelled(f"segment_reduce with reduce={reduce!r}")
    if kwargs.get("indices") is not None:
        raise NotModelled("segment_reduce with indices (PyTorch supports only lengths and offsets)")
    axis = int(kwargs.get("axis", 0))
    nd = data.ndim
    if nd == 0:
        raise NotModelled("segment_reduce of a 0-d tensor")
    axis %= nd
    lengths, offsets = _ints(kwargs.get("lengths")), _ints(kwargs.get("offsets"))
    lead = tuple(data.shape[:axis])
    A = int(data.shape[axis])
    T = int(np.prod(data.shape[axis + 1:], dtype=np.int64))
    L = int(np.prod(lead, dtype=np.int64))
    if lengths is not None:
        if lengths.ndim != axis + 1 or tuple(lengths.shape[:axis]) != lead:
            raise NotModelled(f"segment_reduce with lengths of shape {lengths.shape} for data {data.shape}")
        lens = lengths.reshape(L, -1)
        if (lens < 0).any():
            raise NotModelled("segment_reduce with a negative length")
        starts = np.concatenate([np.zeros((L, 1), dtype=np.int64), np.cumsum(lens, axis=1)[:, :-1]], axis=1)
        ends = starts + lens
    elif offsets is not None:
        if offsets.ndim != axis + 1 or tuple(offsets.shape[:axis]) != lead or offsets.shape[-1] < 1:
            raise NotModelled(f"segment_reduce with offsets of shape {offsets.shape} for data {data.shape}")
        off = offsets.reshape(L, -1)
        starts, ends = off[:, :-1], off[:, 1:]
        if (ends < starts).any():
            raise NotModelled("segment_reduce with decreasing offsets")
    else:
        raise NotModelled("segment_reduce without lengths or offsets")
    if (starts < 0).any() or (ends > A).any():
        raise NotModelled(f"segment_reduce with segments beyond the {A} entries along axis {axis}")
    S = starts.shape[1]
    init = kwargs.get("initial")
    init = None if init is None else exact_scalar(init, ctx.dtype)
    length = np.broadcast_to((ends - starts)[:, :, None], (L, S, T)).reshape(-1)
    K = int(length.max(initial=0))
    ar = np.arange(K)
    pos = starts[:, :, None] + ar[None, None, :]                      # (L, S, K) positions along axis
    ok = pos < ends[:, :, None]
    flat = ((np.arange(L)[:, None, None, None] * A + np.where(ok, pos, 0)[:, :, None, :]) * T
            + np.arange(T)[None, None, :, None])                        # (L, S, T, K)
    idx = flat.reshape(-1, K)
    valid = np.broadcast_to(ok[:, :, None, :], (L, S, T, K)).reshape(-1, K)
    return _Layout(reduce, init, lead + (S,) + tuple(data.shape[axis + 1:]), idx, valid, length)


def _qarr(vals):
    return objects(list(vals)) if len(vals) else np.empty(0, dtype=object)


@register("aten.segment_reduce.default")
class SegmentReduce(Rule):
    nonsmooth = True

    def _plan(self, ctx, args, kwargs):
        p = ctx.aux.get("seg")
        if p is not None:
            return p
        data = args[0]
        if not isinstance(data, np.ndarray):
            raise NotModelled("segment_reduce of a non-tensor")
        lay = _layout(ctx, args, kwargs)
        x = (data if data.dtype == object else as_exact(data)).reshape(-1)
        G, K = lay.idx.shape
        vals = x[lay.idx] if K else np.empty((G, 0), dtype=object)
        r, init = lay.reduce, lay.init
        empty = lay.length == 0
        coef = np.empty((G, K), dtype=object)                   # d out[g] / d x[idx[g, k]]
        coef[...] = Q0
        out = np.empty(G, dtype=object)
        p = {"lay": lay, "coef": coef, "out": out}
        if r in ("sum", "mean", "prod"):
            if r == "mean" and init is None and empty.any():
                raise NotModelled("segment_reduce mean of an empty segment without initial (NaN)")
            for g in range(G):
                n = int(lay.length[g])
                v = list(vals[g, :n])
                if r == "prod":
                    acc = Q1 if init is None else init
                    for k in range(n):
                        other = Q1 if init is None else init
                        for j in range(n):
                            if j != k:
                                other = other * v[j]
                        coef[g, k] = other
                        acc = acc * v[k]
                    out[g] = acc
                    continue
                acc = Q0 if init is None else init
                for e in v:
                    acc = acc + e
                if r == "mean" and n:
                    out[g] = acc / n
                    for k in range(n):
                        coef[g, k] = Q1 / n
                else:
                    out[g] = acc
                    for k in range(n):
                        coef[g, k] = Q1
            return ctx.aux.setdefault("seg", p)
        take_min = r == "min"
        if init is None and empty.any():
            raise NotModelled(f"segment_reduce {r} of an empty segment without initial ({'+' if take_min else '-'}inf)")
        full = ~empty
        winner = np.zeros(G, dtype=np.int64)
        best = np.empty(G, dtype=object)
        if full.any():
            b, w, _ties = select_windows(vals[full], lay.valid[full], take_min, None)
            best[full], winner[full] = b, w
        data_wins = full.copy()
        cmp_vals = np.empty(G, dtype=object)
        if init is not None:
            for g in np.flatnonzero(full):
                d = best[g] - init
                cmp_vals[g] = d
                data_wins[g] = (d <= 0) if take_min else (d >= 0)     # a tie: the segment's winner
        for g in range(G):
            if data_wins[g]:
                out[g] = best[g]
                coef[g, winner[g]] = Q1
            else:
                out[g] = init
        p.update(winner=winner, vals=vals, data_wins=data_wins, cmp=cmp_vals, full=full, take_min=take_min)
        return ctx.aux.setdefault("seg", p)

    def forward(self, ctx, args, kwargs):
        p = self._plan(ctx, args, kwargs)
        return obj(p["out"]).reshape(p["lay"].out_shape)

    def discs(self, ctx, args, kwargs, out):
        p = self._plan(ctx, args, kwargs)
        lay = p["lay"]
        if lay.reduce not in ("max", "min"):
            return []
        res = []
        # the segment's tie set, where the segment decides the output (len >= 2)
        sel = np.flatnonzero(p["data_wins"] & (lay.length >= 2))
        if sel.size:
            d = window_disc("window", 0, lay.idx[sel], p["vals"][sel], lay.valid[sel], p["winner"][sel],
                            p["take_min"])
            d.group = sel[d.group]
            res.append(d)
        if lay.init is not None:
            g = np.flatnonzero(p["full"])
            if g.size:
                widx = lay.idx[g, p["winner"][g]]
                res.append(Disc("initial", 0, widx, None, None, lay.init, _qarr(p["cmp"][g]), g))
        return res

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        t = targs[0] if targs else None
        if t is None:
            return None
        p = self._plan(ctx, args, kwargs)
        lay, coef = p["lay"], p["coef"]
        B = t.shape[0]
        G, K = lay.idx.shape
        if G == 0 or K == 0:
            return zeros_t(B, lay.out_shape, t)
        t2 = t.reshape(B, -1)
        res = None
        for k in range(K):
            term = t2[:, lay.idx[:, k]] * coef[:, k][None, :]
            res = term if res is None else res + term
        return res.reshape((B,) + lay.out_shape)

    def vjp(self, ctx, args, kwargs, out, cot):
        p = self._plan(ctx, args, kwargs)
        lay, coef = p["lay"], p["coef"]
        data = args[0]
        B = cot.shape[0]
        c2 = cot.reshape(B, -1)
        g = zeros_like_cot((B, data.size), cot)
        for k in range(lay.idx.shape[1]):
            ok = lay.valid[:, k]
            if ok.any():
                np.add.at(g, (slice(None), lay.idx[ok, k]), c2[:, ok] * coef[ok, k][None, :])
        return arg_grads(args, {0: g.reshape((B,) + data.shape)})
