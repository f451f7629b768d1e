"""Order statistics: sort, topk, kthvalue, median/nanmedian, cummax/cummin.

The case of an order statistic is the *order with its ties*: which element holds
each selected rank, and which unselected elements lie between two selected ranks
(their order among themselves does not matter). With a fixed order ``perm`` of a
row (``perm[0]`` first in output order) and selected ranks ``R``, the
discriminants are

* for consecutive selected ranks ``r < r'``: ``s * (x[perm[r']] - x[perm[r]]) >= 0``;
* for an unselected element ``e`` between the selected ranks ``r < rank(e) < r'``:
  ``s * (x[e] - x[perm[r]]) >= 0`` and ``s * (x[perm[r']] - x[e]) >= 0``,

with ``s = 1`` for ascending and ``s = -1`` for descending order. A zero is a tie.
Sorting all ranks gives the consecutive differences of the sorted row. Where the
exact values allow it the model follows the framework's own order (its recorded
indices), so that the index outputs agree with the framework's.

cummax/cummin are a max/min over every prefix window: their case is the tie set
of each window, as for max-pooling.
"""

from __future__ import annotations

import numpy as np

from . import Disc, NotModelled, Rule, register
from .._exact import as_exact
from ._util import add_t, bcast_tangent, exact_scalar, shape_of
from .nonsmooth import _reduce_layout, select_windows, window_disc


def _row_layout(x, dim):
    """(flat index (G, n), kept shape, normalised dim, ndim) for a reduction along ``dim``."""
    if x.ndim == 0:
        return np.zeros((1, 1), dtype=np.int64), (), 0, 0
    d = dim % x.ndim
    fidx, kept, _ = _reduce_layout(x, [d])
    return fidx, kept, d, x.ndim


def _stable_order(row, descending):
    n = len(row)
    if descending:
        return sorted(range(n), key=lambda i: (-row[i], i))
    return sorted(range(n), key=lambda i: (row[i], i))


def order_rows(vals, descending, ranks, prefer=None):
    """A valid order of every row of ``vals`` (G, n), as positions (G, n).

    ``ranks`` are the selected ranks (positions in output order); ``prefer`` (G, len(ranks))
    the framework's recorded elements at those ranks: kept for a row when the exact values
    allow them there (same values as the exact order statistics, all distinct).
    """
    G, n = vals.shape
    perm = np.zeros((G, n), dtype=np.int64)
    for g in range(G):
        row = vals[g].tolist()
        base = _stable_order(row, descending)
        order = base
        if prefer is not None:
            p = [int(v) for v in prefer[g]]
            ok = (len(set(p)) == len(p) and all(0 <= v < n for v in p)
                  and all(row[p[j]] == row[base[r]] for j, r in enumerate(ranks)))
            if ok:
                chosen = set(p)
                rest = iter([i for i in base if i not in chosen])
                at = dict(zip(ranks, p))
                order = [at[r] if r in at else next(rest) for r in range(n)]
        perm[g] = order
    return perm


def order_disc(fidx, perm, ranks):
    """Index pairs (later, earlier, group) of the discriminants of the order statistics at
    ``ranks``: ``s * (x[later] - x[earlier]) >= 0``, zero at a tie."""
    G, n = perm.shape
    ranks = sorted(ranks)
    later, earlier, group = [], [], []
    for g in range(G):
        p = perm[g]
        for r0, r1 in zip(ranks, ranks[1:]):
            later.append(fidx[g, p[r1]]); earlier.append(fidx[g, p[r0]]); group.append(g)
        sel = set(ranks)
        j = 0   # index into ranks of the first selected rank above pos
        for pos in range(n):
            while j < len(ranks) and ranks[j] < pos:
                j += 1
            if pos in sel:
                continue
            e = fidx[g, p[pos]]
            if j > 0:                      # a selected rank below
                later.append(e); earlier.append(fidx[g, p[ranks[j - 1]]]); group.append(g)
            if j < len(ranks):             # a selected rank above
                later.append(fidx[g, p[ranks[j]]]); earlier.append(e); group.append(g)
    ia = np.asarray(later, dtype=np.int64)
    ib = np.asarray(earlier, dtype=np.int64)
    return ia, ib, np.asarray(group, dtype=np.int64)


def _make_disc(label, x, ia, ib, group, descending):
    xf = x.ravel() if x.ndim else x.reshape(1)
    v = xf[ia] - xf[ib] if ia.size else np.empty(0, dtype=object)
    if descending:
        v = -v
    return Disc(label, 0, ia, 0, ib, None, np.asarray(v, dtype=object), group, negate=descending)


class _OrderStat(Rule):
    """Shared machinery: subclasses say which ranks are selected and how outputs are shaped."""

    nonsmooth = True
    label = "order"

    def params(self, ctx, args, kwargs, x):
        """(dim or None for all, descending, ranks(n) -> list, keepdim, with_indices)."""
        raise NotImplementedError

    def forward(self, ctx, args, kwargs):
        x = args[0]
        dim, desc, ranks_fn, keep, with_idx = self.params(ctx, args, kwargs, x)
        if dim is None:
            fidx = np.arange(max(x.size, 1), dtype=np.int64).reshape(1, -1)
            kept, d, nd = (), None, x.ndim
        else:
            fidx, kept, d, nd = _row_layout(x, dim)
        G, n = fidx.shape
        if n == 0:
            raise NotModelled("an order statistic of an empty row")
        ranks = ranks_fn(n)
        xf = x.ravel() if x.ndim else x.reshape(1)
        vals = xf[fidx]
        prefer = None
        if with_idx and dim is not None and ctx.recorded is not None:
            rec_idx = ctx.recorded[1].numpy()
            # move the reduced dim last, as the rows are laid out
            if nd and rec_idx.ndim == nd:
                rec_idx = np.moveaxis(rec_idx, d, -1)
            prefer = rec_idx.reshape(G, len(ranks))
        perm = order_rows(vals, desc, ranks, prefer)
        ctx.aux.update(fidx=fidx, perm=perm, ranks=ranks, desc=desc, place=(d, nd, keep))
        sel = perm[:, ranks]                                   # (G, r) positions along the row
        src = fidx[np.arange(G)[:, None], sel]                 # (G, r) flat indices into x
        ctx.aux["src"] = src
        out_vals = xf[src]
        shape = self.out_shape(x, kept, d, nd, len(ranks), keep)
        ctx.aux["shape"] = shape
        y = self._place(out_vals, shape, d, nd, keep)
        if not with_idx:
            return np.asarray(y, dtype=object)
        return np.asarray(y, dtype=object), self._place(sel.astype(np.int64), shape, d, nd, keep)

    def out_shape(self, x, kept, d, nd, r, keep):
        """Output shape: the row dim replaced by ``r`` values (kept last, then moved back)."""
        raise NotImplementedError

    def _place(self, rows, shape, d, nd, keep):
        """Rows (G, r) -> output of ``shape`` (the row dim at ``d``)."""
        if d is None or nd == 0:
            return rows.reshape(shape)
        if len(shape) == nd:   # the row dim is present in the output at position d
            moved = list(shape)
            r = moved.pop(d)
            return np.moveaxis(rows.reshape(tuple(moved) + (r,)), -1, d)
        return rows.reshape(shape)

    def discs(self, ctx, args, kwargs, out):
        a = ctx.aux
        ia, ib, group = order_disc(a["fidx"], a["perm"], a["ranks"])
        return [_make_disc(self.label, args[0], ia, ib, group, a["desc"])]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        a = ctx.aux
        t = targs[0]
        B = t.shape[0]
        src = a["src"]
        G, r = src.shape
        rows = t.reshape(B, -1)[:, src.ravel()].reshape(B, G, r)
        y = out[0] if isinstance(out, tuple) else out
        d, nd, keep = a["place"]
        res = np.empty((B, y.size), dtype=object)
        for b in range(B):
            res[b, :] = self._place(rows[b], y.shape, d, nd, keep).ravel()
        res = res.reshape((B,) + y.shape)
        return (res, None) if isinstance(out, tuple) else res


def _arg(args, kwargs, i, name, default):
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


@register("aten.sort.default", "aten.sort.stable")
class Sort(_OrderStat):
    label = "sort"

    def params(self, ctx, args, kwargs, x):
        if ctx.op == "aten.sort.stable":
            dim = kwargs.get("dim", -1)
            desc = kwargs.get("descending", False)
        else:
            dim = _arg(args, kwargs, 1, "dim", -1)
            desc = _arg(args, kwargs, 2, "descending", False)
        return dim, bool(desc), lambda n: list(range(n)), True, True

    def out_shape(self, x, kept, d, nd, r, keep):
        return x.shape


@register("aten.topk.default")
class TopK(_OrderStat):
    label = "topk"

    def params(self, ctx, args, kwargs, x):
        k = _arg(args, kwargs, 1, "k", None)
        dim = _arg(args, kwargs, 2, "dim", -1)
        largest = _arg(args, kwargs, 3, "largest", True)
        srt = _arg(args, kwargs, 4, "sorted", True)
        n = x.shape[dim % x.ndim] if x.ndim else 1
        if not srt and k not in (0, 1) and k < n:
            raise NotModelled("topk(sorted=False): the order of its output is implementation-defined")
        if k == 0:
            raise NotModelled("topk with k = 0 (empty output)")
        return dim, bool(largest), lambda n: list(range(k)), True, True

    def out_shape(self, x, kept, d, nd, r, keep):
        if nd == 0:
            return x.shape
        s = list(x.shape)
        s[d] = r
        return tuple(s)


@register("aten.kthvalue.default")
class KthValue(_OrderStat):
    label = "kthvalue"

    def params(self, ctx, args, kwargs, x):
        k = _arg(args, kwargs, 1, "k", None)
        dim = _arg(args, kwargs, 2, "dim", -1)
        keep = _arg(args, kwargs, 3, "keepdim", False)
        return dim, False, lambda n: [k - 1], bool(keep), True

    def out_shape(self, x, kept, d, nd, r, keep):
        if nd == 0:
            return x.shape
        if keep:
            s = list(x.shape)
            s[d] = 1
            return tuple(s)
        return kept


@register("aten.median.dim", "aten.nanmedian.dim")
class MedianDim(KthValue):
    label = "median"

    def params(self, ctx, args, kwargs, x):
        dim = _arg(args, kwargs, 1, "dim", -1)
        keep = _arg(args, kwargs, 2, "keepdim", False)
        return dim, False, lambda n: [(n - 1) // 2], bool(keep), True


@register("aten.median.default", "aten.nanmedian.default")
class MedianAll(_OrderStat):
    label = "median"

    def params(self, ctx, args, kwargs, x):
        return None, False, lambda n: [(n - 1) // 2], False, False

    def out_shape(self, x, kept, d, nd, r, keep):
        return ()


# ---------------------------------------------------------------- cummax / cummin

@register("aten.cummax.default", "aten.cummin.default")
class CumMax(Rule):
    """cummax(x, dim)[j] = max(x[0..j]): a max over each prefix window."""

    nonsmooth = True

    def forward(self, ctx, args, kwargs):
        x = args[0]
        dim = _arg(args, kwargs, 1, "dim", 0)
        take_min = ctx.op.startswith("aten.cummin")
        fidx, kept, d, nd = _row_layout(x, dim)
        G, n = fidx.shape
        # windows: row g, prefix j -> entries fidx[g, 0..j]
        W = np.broadcast_to(fidx[:, None, :], (G, n, n)).reshape(G * n, n)
        valid = np.broadcast_to(np.tril(np.ones((n, n), dtype=bool))[None], (G, n, n)).reshape(G * n, n)
        xf = x.ravel() if x.ndim else x.reshape(1)
        vals = xf[W]
        prefer = None
        if ctx.recorded is not None and isinstance(ctx.recorded, (tuple, list)):
            rec = ctx.recorded[1].numpy()
            if nd and rec.ndim == nd:
                rec = np.moveaxis(rec, d, -1)
            prefer = rec.reshape(G * n)
        best, winner, _ = select_windows(vals, valid, take_min, None)
        if prefer is not None:
            p = np.clip(prefer, 0, n - 1)
            ok = valid[np.arange(G * n), p] & (vals[np.arange(G * n), p] == best)
            winner = np.where(ok, p, winner)
        ctx.aux.update(W=W, valid=valid, vals=vals, winner=winner, take_min=take_min, d=d, nd=nd)
        src = W[np.arange(G * n), winner]
        ctx.aux["src"] = src
        y = self._place(np.asarray(best, dtype=object).reshape(G, n), x.shape, d, nd)
        idx = self._place(winner.reshape(G, n).astype(np.int64), x.shape, d, nd)
        return np.asarray(y, dtype=object), idx

    @staticmethod
    def _place(rows, shape, d, nd):
        if nd == 0:
            return rows.reshape(shape)
        moved = list(shape)
        r = moved.pop(d)
        return np.moveaxis(rows.reshape(tuple(moved) + (r,)), -1, d)

    def discs(self, ctx, args, kwargs, out):
        a = ctx.aux
        return [window_disc("cummin" if a["take_min"] else "cummax", 0, a["W"], a["vals"], a["valid"], a["winner"],
                            a["take_min"])]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        a = ctx.aux
        t = targs[0]
        B = t.shape[0]
        y = out[0]
        G = a["src"].size // max(y.shape[a["d"]] if a["nd"] else 1, 1)
        rows = t.reshape(B, -1)[:, a["src"]]
        n = rows.shape[1] // G if G else 0
        res = np.empty((B, y.size), dtype=object)
        for b in range(B):
            res[b, :] = self._place(rows[b].reshape(G, n), y.shape, a["d"], a["nd"]).ravel()
        res = res.reshape((B,) + y.shape)
        return res, None


# ---------------------------------------------------------------- helpers quantile dispatches to

@register("aten.isnan.default")
class IsNan(Rule):
    """Exact values are finite rationals: never NaN (no case, no derivative)."""

    def forward(self, ctx, args, kwargs):
        return np.zeros(np.shape(args[0]), dtype=bool)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return None


@register("aten.lerp.Scalar", "aten.lerp.Tensor", "aten.lerp_.Scalar", "aten.lerp_.Tensor")
class Lerp(Rule):
    """lerp(a, b, w) = a + w (b - a): quantile's interpolation between two order statistics."""

    def _w(self, ctx, args):
        w = args[2]
        if isinstance(w, np.ndarray):
            return w if w.dtype == object else as_exact(w)
        return exact_scalar(w, ctx.dtype)

    def forward(self, ctx, args, kwargs):
        a, b = args[0], args[1]
        w = self._w(ctx, args)
        return np.asarray(a + w * (b - a), dtype=object)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        a, b = args[0], args[1]
        w = self._w(ctx, args)
        shp = out.shape
        ta = bcast_tangent(targs[0] if len(targs) > 0 else None, shape_of(a), shp)
        tb = bcast_tangent(targs[1] if len(targs) > 1 else None, shape_of(b), shp)
        tw = bcast_tangent(targs[2] if len(targs) > 2 and isinstance(args[2], np.ndarray) else None,
                           shape_of(args[2]) if isinstance(args[2], np.ndarray) else (), shp)
        res = None
        if ta is not None:
            res = ta * (1 - w)
        if tb is not None:
            res = add_t(res, tb * w)
        if tw is not None:
            res = add_t(res, tw * (np.broadcast_to(b, shp) - np.broadcast_to(a, shp)))
        return res
