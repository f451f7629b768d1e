"""More step functions away from their jumps: heaviside, bucketize, searchsorted, histc, histogram,
histogramdd, frexp, signbit, unique, unique_consecutive, mode.

Like :mod:`mtcheck.ops.steps`: each op is discontinuous on a closed set of measure zero; whether an
input lies on it is decided exactly (rational arithmetic), and exactly on it the check stops with
:class:`~mtcheck.errors.OutsideTheoryError` naming the op and the element (``NotLipschitz``). Off it
the op is locally constant or locally linear, so the program is Lipschitz and piecewise C^1 *near
the point checked* and is checked there. The local structure of each op:

* ``heaviside(x, values)``: 0 for x < 0, 1 for x > 0 and ``values`` at x = 0. The one-sided limits
  at 0 are 0 and 1, so every x = 0 is a jump whatever ``values`` is; off 0 the output is locally
  constant and ``values`` is not read: derivative 0 in both arguments.
* ``bucketize`` / ``searchsorted``: the number of boundaries ``b`` with ``b < x`` (``right=False``,
  ``side='left'``) or ``b <= x`` (``right=True``): an integer that jumps exactly where ``x`` equals
  a boundary, either of them moving (the boundaries may be inputs). Off that set every comparison
  of the binary search is strict, so the result is locally constant even where boundaries are tied
  among themselves (and a perturbation unsorts them). The result is PyTorch's own binary search
  (``cus_lower_bound`` / ``cus_upper_bound`` in ATen's Bucketization.cpp), which on a sorted row is
  the count above and on an unsorted one is still a fixed answer.
* ``histc`` / ``histogram`` / ``histogramdd``: counts (sums of weights) of the elements in each bin.
  With fixed edges (``range``, histc's ``min < max``, a tensor of edges) a count jumps where an
  element equals any edge, the outer ones included (an element on the outer edge leaves the range
  when it moves out). With edges from the data's min and max (no range; histc with ``min == max``)
  the edges move with the data: the min (max) elements sit on the outer edges by construction and
  stay in the first (last) bin when they move, even when tied (a tied min that moves up stays within
  the first bin); only an element on an *interior* edge is a jump. All elements equal (min = max)
  makes the range ``[v - c, v + c]``; with two or more elements and two or more bins a perturbation
  splits them into the outer bins: a jump; one element, or one bin, stays put. The counts are the
  real function's, with the exact edges ``lo + k (hi - lo) / bins`` (the framework's float bin
  computation may round an element near an edge into the neighbouring bin: its business).
  Locally: constant in the data, linear in the weights; ``density`` divides by the total weight and
  the bin volume; ``bin_edges`` are affine in the data's min and max, whose ties are cases (max-type
  discriminants, as ``amin``/``amax``, in the rules that return edges: ``histogram`` and
  ``_histogramdd_bin_edges``; a density of ``_histogramdd_from_bin_cts`` with a tied min or max is
  refused as not modelled). Where the edges or a density are outputs, all elements equal (two or
  more) is a jump of the edges themselves (the widened range collapses when they split).
  PyTorch has no derivative for ``histogram``/``histogramdd`` (its backward raises) and none for
  ``histc`` (a constant to autograd, which is the true derivative off the jumps).
* ``frexp(x) = (m, e)``, ``x = m 2^e``, ``1/2 <= |m| < 1``: ``e`` jumps at every power of two
  (``+-2^k``) and at 0 (``|m| >= 1/2`` near 0, ``m(0) = 0``); off them ``e`` is locally constant and
  ``m = x 2^-e`` is linear, derivative ``2^-e``.
* ``signbit(x)``: the real function is ``x < 0``, a jump at 0 (``-0.0`` and ``+0.0`` are both the
  real 0 and sit on it); off 0 locally constant.
* ``unique`` (sorted: the CPU and CUDA implementations always sort): merges equal values, so its
  output length changes wherever a tie is broken: any repeated value is a jump. With all values
  distinct it is locally ``sort`` (a fixed permutation), the inverse indices are the ranks and the
  counts are ones, all locally constant. ``unique(dim=d)`` sorts the slices lexicographically: the
  order of two slices is locally constant only when their first entries differ, so slices with
  equal first entries (identical or not) are a jump.
* ``unique_consecutive``: merges runs of equal neighbours (elements, or slices along ``dim``): two
  equal neighbours are a jump; without them the values are the input itself (the identity).
* ``mode``: the smallest of the most frequent values of a row. Near a row whose values are all
  distinct every count is 1 and the mode is the row's min. It is continuous at a row exactly when no
  value other than the row's min repeats (a repeated larger value wins or loses a frequency tie when
  a tie breaks); it is Lipschitz near the row only when the min is also repeated at most twice (three
  tied minima ``(a, a, a)`` near ``(a - e, a, a)`` give a jump at points arbitrarily close). On those
  rows the mode is locally the row's min (a tie of the two minima is a kink, as ``min``), and it is
  modelled as ``min(dim)``; every other row is refused.

The rules that are nonsmooth (``mode``, ``histogram``, histogramdd's edges) are also run on the
framework's float values of their arguments (to compare the cases): where those floats sit on a
jump that the exact values miss (a rounding), the check is refused there too, never passed.

Kept refused: ``nextafter`` (a float operation with no real-function model: as a map of the reals
"the next float after x" jumps at every float, so every input sits on a jump) and ``hash_tensor``
(a hash of the bits: discontinuous everywhere).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

import numpy as np

from . import NotLipschitz, NotModelled, Rule, register, reject
from .._exact import Q0, Q1, as_exact, q, zeros
from ._util import arg_grads, exact_scalar, obj, zeros_like_cot, zeros_t
from .nonsmooth import MinDim
from .steps import _float_out, _jump


def _is_float(v) -> bool:
    """A float (exact rational) tensor argument: one that can move continuously."""
    return isinstance(v, np.ndarray) and v.dtype == object


def _ex(v, ctx, dtype=None):
    """An argument as exact values (a scalar rounded to ``dtype``, by default the node's)."""
    if isinstance(v, np.ndarray):
        return v if v.dtype == object else as_exact(v)
    return np.asarray(exact_scalar(v, dtype if dtype is not None else ctx.dtype), dtype=object)


def _kw(args, kwargs, i, name, default):
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def _zero_jvp(targs, shape):
    like = next((t for t in targs if t is not None), None)
    return None if like is None else zeros_t(like.shape[0], shape, like)


def _zero_vjp(args, cot):
    c = cot[0] if isinstance(cot, tuple) else cot
    g = {i: zeros_like_cot(c.shape[:1] + a.shape, c) for i, a in enumerate(args)
         if isinstance(a, np.ndarray) and a.dtype == object}
    return arg_grads(args, g)


def _int_out(a, int32=False):
    return np.asarray(a, dtype=np.int32 if int32 else np.int64)


# ---------------------------------------------------------------- heaviside, signbit

@register("aten.heaviside.default", "aten.heaviside_.default")
class Heaviside(Rule):
    """heaviside(x, values): 0 below 0, 1 above, ``values`` at 0 (a jump there for any values)."""

    def forward(self, ctx, args, kwargs):
        x, v = args[0], args[1]
        shape = np.broadcast_shapes(np.shape(x), np.shape(v))
        xb = np.broadcast_to(_ex(x, ctx), shape)
        vb = np.broadcast_to(_ex(v, ctx), shape)
        if _is_float(x) and xb.size:
            _jump(ctx.op, "x = 0 (0 below, 1 above, `values` at 0)", xb, np.asarray(xb == 0, dtype=bool))
        pos = np.asarray(xb > 0, dtype=bool)
        neg = np.asarray(xb < 0, dtype=bool)
        out = np.where(pos, Q1, np.where(neg, Q0, vb)).astype(object).reshape(shape)
        if _float_out(ctx):
            return obj(out)
        return np.asarray([int(e) for e in out.ravel()], dtype=np.int64).reshape(shape)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return _zero_jvp(targs, out.shape)

    def vjp(self, ctx, args, kwargs, out, cot):
        return _zero_vjp(args, cot)


@register("aten.signbit.default")
class Signbit(Rule):
    """signbit(x): the real function is ``x < 0`` (a jump at 0, where -0.0 and +0.0 both sit)."""

    def forward(self, ctx, args, kwargs):
        x = args[0]
        xe = _ex(x, ctx)
        if _is_float(x) and xe.size:
            _jump(ctx.op, "0 (-0.0 and +0.0 are the real 0)", xe, np.asarray(xe == 0, dtype=bool))
        return np.asarray(xe < 0, dtype=bool).reshape(np.shape(xe))

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return None

    def vjp(self, ctx, args, kwargs, out, cot):   # pragma: no cover - a boolean output has no cotangent
        return _zero_vjp(args, cot)


# ---------------------------------------------------------------- bucketize, searchsorted

def _binary_search(row, v, right):
    """PyTorch's CPU search (``cus_lower_bound`` / ``cus_upper_bound``): on a sorted row the number
    of entries ``< v`` (``<= v`` when ``right``), and a fixed, deterministic answer on any row."""
    start, end = 0, len(row)
    while start < end:
        mid = start + ((end - start) >> 1)
        if (row[mid] <= v) if right else (row[mid] < v):
            start = mid + 1
        else:
            end = mid
    return start


def _count_rows(op, seq, vals, right, check):
    """``seq`` (G, n) rows, ``vals`` (G, k): per value the binary search's answer in its row. Raises
    NotLipschitz where a value equals an entry of its row (when ``check``): off those points every
    comparison of the search is strict, so the answer is locally constant, sorted row or not."""
    G, k = vals.shape
    out = np.zeros((G, k), dtype=np.int64)
    for g in range(G):
        row = seq[g].tolist()
        for j, v in enumerate(vals[g].tolist()):
            if check:
                hit = next((i for i, b in enumerate(row) if b == v), None)
                if hit is not None:
                    raise NotLipschitz(f"{op} jumps where a value equals a boundary and value {g * k + j} ({v}) "
                                       f"equals boundary {hit}; away from the boundaries it is locally constant "
                                       "and is checked")
            out[g, j] = _binary_search(row, v, right)
    return out


class _Search(Rule):
    """bucketize / searchsorted: an integer count of boundaries below each value."""

    def parts(self, ctx, args, kwargs):
        """(sequence, values, sequence is a float tensor, values are floats, values shape)."""
        raise NotImplementedError

    def forward(self, ctx, args, kwargs):
        seq, vals, fs, fv = self.parts(ctx, args, kwargs)
        side = kwargs.get("side")
        right = bool(kwargs.get("right", False)) if side is None else side == "right"
        int32 = bool(kwargs.get("out_int32", False))
        sorter = kwargs.get("sorter")
        S = np.asarray(seq, dtype=object)
        V = np.asarray(vals, dtype=object)
        if sorter is not None:
            S = np.take_along_axis(S, np.asarray(sorter, dtype=np.int64), axis=-1)
        if S.ndim == 0:
            raise NotModelled(f"{ctx.op} with a 0-d sequence")
        n = S.shape[-1]
        if S.ndim == 1:
            S2 = S.reshape(1, n)
            V2 = V.reshape(1, -1)
        else:
            if V.ndim == 0 or S.shape[:-1] != V.shape[:-1]:
                raise NotModelled(f"{ctx.op}: the sequence's leading dims must match the values'")
            S2 = S.reshape(-1, n)
            V2 = V.reshape(S2.shape[0], -1)
        res = _count_rows(ctx.op, S2, V2, right, fs or fv)
        return _int_out(res.reshape(V.shape), int32)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return None

    def vjp(self, ctx, args, kwargs, out, cot):   # pragma: no cover - an integer output has no cotangent
        return _zero_vjp(args, cot)


@register("aten.bucketize.Tensor", "aten.bucketize.Scalar")
class Bucketize(_Search):
    """bucketize(x, boundaries, right): i with b[i-1] < x <= b[i] (right: b[i-1] <= x < b[i])."""

    def parts(self, ctx, args, kwargs):
        x, b = args[0], args[1]
        if np.ndim(b) != 1:
            raise NotModelled("bucketize with boundaries that are not 1-D")
        dt = ctx.aux.get("arg_dtype")
        return _ex(b, ctx), _ex(x, ctx, dt), _is_float(b), _is_float(x)


@register("aten.searchsorted.Tensor", "aten.searchsorted.Scalar")
class Searchsorted(_Search):
    """searchsorted(seq, x, right | side, sorter): the insertion index of x in each sorted row."""

    def parts(self, ctx, args, kwargs):
        s, x = args[0], args[1]
        dt = ctx.aux.get("arg_dtype")
        return _ex(s, ctx), _ex(x, ctx, dt), _is_float(s), _is_float(x)


# ---------------------------------------------------------------- histograms

class _Dim:
    """The edges of one dimension of a histogram: exact values and how they move.

    kind ``fixed`` (constants), ``tensor`` (an argument: tangent from ``targ``), ``data``
    (``lo + k (hi - lo) / bins`` with lo, hi the column's min and max: ``imin``/``imax``)."""

    def __init__(self, edges, kind, col=None, degenerate=False, leaf=None):
        self.edges = list(edges)
        self.kind = kind
        self.col = col              # data: the column's exact values (M,)
        self.degenerate = degenerate
        self.leaf = leaf            # tensor: (argument position, index in a list argument or None)
        if col is not None:         # data: the first min and the first max (any tied one will do)
            lo, hi = min(col), max(col)
            self.winners = (next(i for i, v in enumerate(col) if v == lo),
                            next(i for i, v in enumerate(col) if v == hi))

    @property
    def bins(self):
        return len(self.edges) - 1


def _data_edges(col, bins, pad):
    """Edges from a column's min and max; (edges, degenerate) with ``pad`` the half-width of an
    empty range."""
    lo, hi = min(col), max(col)
    degenerate = lo == hi
    if degenerate:
        lo, hi = lo - pad, hi + pad
    step = (hi - lo) / bins
    return [lo + step * k for k in range(bins)] + [hi], degenerate


def _bin_of(op, dims, X, elem_what):
    """Bin of every element (M, D) -> (M, D) int (a row of -1: outside the range), deciding the jumps.

    An element strictly outside the range in some dimension stays out when it moves: it is not
    counted, and where its other coordinates lie does not matter."""
    M, D = X.shape
    pos = np.zeros((M, D), dtype=np.int64)
    out = np.zeros(M, dtype=bool)
    for d, dm in enumerate(dims):
        e = dm.edges
        if dm.kind == "data" and dm.degenerate and M >= 2 and dm.bins >= 2:
            raise NotLipschitz(f"{op}: the bin edges come from the data's min and max, and all {M} values "
                               f"of dimension {d} are equal (min = max): any perturbation splits them into the "
                               "outer bins (a jump)")
        if any(e[j] < e[j - 1] for j in range(1, len(e))):
            raise NotModelled(f"{op} with bin edges that are not increasing (dimension {d})")
        out |= np.asarray([X[i, d] < e[0] or X[i, d] > e[-1] for i in range(M)], dtype=bool)
    for d, dm in enumerate(dims):
        e, n = dm.edges, dm.bins
        for i in range(M):
            if out[i]:
                pos[i, :] = -1
                continue
            v = X[i, d]
            pos[i, d] = min(bisect_right(e, v) - 1, n - 1)   # the last bin holds its right edge
            if dm.kind == "data" and dm.degenerate:
                continue        # one element (or one bin): it moves with the edges
            at = bisect_left(e, v)
            if e[at] == v and (dm.kind != "data" or 0 < at < n):
                where = "an interior bin edge" if dm.kind == "data" else "a bin edge (the outer ones included)"
                raise NotLipschitz(f"{op}: a count jumps where an element crosses a bin edge, and {elem_what(i, d)} "
                                   f"({v}) sits on edge {at}, {where}; away from the edges the counts are "
                                   "locally constant and are checked")
    return pos


class _Hist(Rule):
    """Shared machinery: subclasses say how the input is laid out and where the edges come from."""

    # edges from the data are affine in its min and max: max-type discriminants (a tied min is a kink),
    # for the ops that return their edges (histogram, histogramdd's edges); the others are not
    # nonsmooth (their counts are locally constant), and a density of theirs needs a unique min and max
    nonsmooth = False
    returns_edges = "none"   # "none", "tensor" (one edges tensor), "list" (a list of edges tensors)
    counts = True            # False: the op returns the edges only (_histogramdd_bin_edges)

    def _moving_edges(self, density):
        """Whether a value of the op depends on where the edges are (the edges, or a density)."""
        return self.returns_edges != "none" or not self.counts or density

    def discs(self, ctx, args, kwargs, out):
        from .nonsmooth import window_disc

        X, dims, w, density, shape = self._prep(ctx, args, kwargs)
        if not self._moving_edges(density):
            return []
        M, D = X.shape
        res = []
        for d, dm in enumerate(dims):
            if dm.kind != "data" or M < 2:
                continue
            fidx = (np.arange(M, dtype=np.int64) * D + d).reshape(1, M)
            vals = obj(X[:, d].reshape(1, M))
            imin, imax = dm.winners
            res.append(window_disc("min", 0, fidx, vals, None, np.asarray([imin]), True))
            res.append(window_disc("max", 0, fidx, vals, None, np.asarray([imax]), False))
        return res

    def layout(self, ctx, args, kwargs):
        """(X (M, D) exact, list of _Dim, weight (M,) exact or None, density, hist shape)."""
        raise NotImplementedError

    def _prep(self, ctx, args, kwargs):
        if "prep" not in ctx.aux:
            X, dims, w, density, shape = self.layout(ctx, args, kwargs)
            ctx.aux["prep"] = (X, dims, w, density, shape)
        return ctx.aux["prep"]

    def _elem(self, ctx, args):
        D = ctx.aux["prep"][0].shape[1]
        if D == 1:
            return lambda i, d: f"element {i}"
        return lambda i, d: f"element {i * D + d} (point {i}, coordinate {d})"

    def forward(self, ctx, args, kwargs):
        if not _float_out(ctx):
            raise NotModelled(f"{ctx.op} with a non-float input")
        X, dims, w, density, shape = self._prep(ctx, args, kwargs)
        edges_out = tuple(obj(np.asarray(dm.edges, dtype=object)) for dm in dims)
        if self._moving_edges(density):
            for d, dm in enumerate(dims):
                if dm.kind == "data" and dm.degenerate and X.shape[0] >= 2:
                    raise NotLipschitz(f"{ctx.op}: the bin edges come from the data's min and max, and all "
                                       f"{X.shape[0]} values of dimension {d} are equal (min = max, so the range "
                                       "is widened): the edges (and a density) jump when they split")
        if not self.counts:
            return edges_out
        pos = _bin_of(ctx.op, dims, X, self._elem(ctx, args))
        ctx.aux["pos"] = pos
        H = zeros(shape)
        for i in range(X.shape[0]):
            if (pos[i] < 0).any():
                continue
            H[tuple(pos[i])] += Q1 if w is None else w[i]
        if density:
            S = sum(H.ravel().tolist(), Q0)
            if S == 0:
                raise NotModelled(f"{ctx.op}(density=True) with a total weight of 0 in the range (NaN)")
            V = self._volumes(dims, shape)
            if any(v == 0 for v in V.ravel().tolist()):
                raise NotModelled(f"{ctx.op}(density=True) with an empty bin (width 0): a division by 0")
            ctx.aux.update(W=H, S=S, V=V)
            H = np.asarray(H / (V * S), dtype=object).reshape(shape)
        if self.returns_edges == "tensor":
            return obj(H), edges_out[0]
        if self.returns_edges == "list":
            return (obj(H),) + edges_out
        return obj(H)

    @staticmethod
    def _volumes(dims, shape):
        V = np.full(shape, Q1, dtype=object)
        for d, dm in enumerate(dims):
            wd = np.asarray([dm.edges[j + 1] - dm.edges[j] for j in range(dm.bins)], dtype=object)
            V = V * wd.reshape((1,) * d + (-1,) + (1,) * (len(dims) - d - 1))
        return np.asarray(V, dtype=object).reshape(shape)

    # ------------------------------------------------------------ derivatives
    def _edge_tangents(self, ctx, dims, tx, targs, B):
        """Per dimension the tangent of its edges (B, n + 1), or None where they do not move."""
        res = []
        for d, dm in enumerate(dims):
            if dm.kind == "fixed":
                res.append(None)
            elif dm.kind == "tensor":
                p, j = dm.leaf
                t = targs[p] if p < len(targs) else None
                if j is not None and t is not None:
                    t = t[j]
                res.append(None if t is None else np.asarray(t, dtype=object).reshape(B, -1))
            else:
                if tx is None:
                    res.append(None)
                    continue
                imin, imax = dm.winners      # a tied min or max: the tie is a case (the discriminants)
                col = dm.col
                if not self.nonsmooth and (col.count(col[imin]) > 1 or col.count(col[imax]) > 1):
                    raise NotModelled(f"{ctx.op}(density=True): the bin widths come from the data's min and "
                                      f"max, and the min or max of dimension {d} is tied (a kink, not modelled "
                                      "here; histogram's own rule models it)")
                n = dm.bins
                tl = np.asarray(tx[:, imin, d], dtype=object)
                th = np.asarray(tx[:, imax, d], dtype=object)
                te = np.empty((B, n + 1), dtype=object)
                for k in range(n + 1):
                    a = q(k) / q(n)
                    te[:, k] = tl * (Q1 - a) + th * a
                res.append(te)
        return res

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        X, dims, w, density, shape = self._prep(ctx, args, kwargs)
        like = next((t for t in list(targs) + list(tkwargs.values()) if t is not None and not isinstance(t, list)),
                    None)
        if like is None:
            lst = next((t for t in targs if isinstance(t, list)), None)
            like = next((t for t in lst if t is not None), None) if lst else None
        if like is None:
            return None
        B = like.shape[0]
        tw = tkwargs.get("weight")
        need_edges = self._moving_edges(density)
        moving = any(dm.kind != "fixed" for dm in dims)
        if self.counts and tw is None and not density and not (need_edges and moving):
            z = zeros_t(B, shape, like)     # the counts are locally constant in the data
            if self.returns_edges == "tensor":
                return z, zeros_t(B, (dims[0].bins + 1,), like)
            if self.returns_edges == "list":
                return (z,) + tuple(zeros_t(B, (dm.bins + 1,), like) for dm in dims)
            return z
        _exact_tangents_only(like, ctx.op)
        tx = targs[0] if targs and targs[0] is not None else None
        if tx is not None:
            tx = np.asarray(tx, dtype=object).reshape(B, X.shape[0], X.shape[1])
        te = self._edge_tangents(ctx, dims, tx, targs, B) if need_edges else [None] * len(dims)
        te_out = tuple(zeros((B, dm.bins + 1)) if t is None else obj(t) for dm, t in zip(dims, te))
        if not self.counts:
            return te_out
        pos = ctx.aux["pos"]
        TW = zeros((B,) + tuple(shape))
        if tw is not None:
            tw = np.asarray(tw, dtype=object).reshape(B, -1)
            for i in range(X.shape[0]):
                if not (pos[i] < 0).any():
                    TW[(slice(None),) + tuple(pos[i])] += tw[:, i]
        if density:
            W, S, V = ctx.aux["W"], ctx.aux["S"], ctx.aux["V"]
            TS = np.asarray(TW.reshape(B, -1).sum(axis=1), dtype=object).reshape((B,) + (1,) * len(shape))
            res = TW / (V * S)[None] - (W / (V * S * S))[None] * TS
            for d, (dm, t) in enumerate(zip(dims, te)):
                if t is None:
                    continue
                wd = np.asarray([dm.edges[j + 1] - dm.edges[j] for j in range(dm.bins)], dtype=object)
                twd = t[:, 1:] - t[:, :-1]
                r = (twd / wd[None]).reshape((B,) + (1,) * d + (-1,) + (1,) * (len(dims) - d - 1))
                res = res - (W / (V * S))[None] * r
            TH = obj(np.asarray(res, dtype=object).reshape((B,) + tuple(shape)))
        else:
            TH = TW
        if self.returns_edges == "tensor":
            return TH, te_out[0]
        if self.returns_edges == "list":
            return (TH,) + te_out
        return TH


def _exact_tangents_only(like, op):
    """Weights, densities and moving edges are computed in rationals: a tangent of another kind
    (structural flags, verified floats, fixed point) leaves its path, which then redoes it exactly."""
    from .._support import Dep, NotStructural

    if isinstance(like, Dep):
        raise NotStructural(f"{op}: weights, densities and moving edges are computed exactly")
    from .._fastfloat import FT, Inexact

    if isinstance(like, FT):
        raise Inexact(f"{op}: weights, densities and moving edges are computed exactly")
    from .._fixed import Fx, Mod, NotDyadic, NotModular

    if isinstance(like, Mod):
        raise NotModular(f"{op}: weights, densities and moving edges are computed exactly")
    if isinstance(like, Fx):
        raise NotDyadic(f"{op}: weights, densities and moving edges are computed exactly")


def _opt_weight(ctx, kwargs, M):
    w = kwargs.get("weight")
    if w is None:
        return None
    return np.asarray(_ex(w, ctx), dtype=object).reshape(M)


@register("aten.histc.default")
class Histc(_Hist):
    """histc(x, bins=100, min=0, max=0): counts in ``bins`` equal bins of [min, max]; with min = max the
    data's min and max (widened by 1 each way when equal)."""

    def layout(self, ctx, args, kwargs):
        x = _ex(args[0], ctx)
        bins = int(_kw(args, kwargs, 1, "bins", 100))
        lo = _kw(args, kwargs, 2, "min", 0)
        hi = _kw(args, kwargs, 3, "max", 0)
        X = x.reshape(-1, 1)
        if X.shape[0] == 0:
            raise NotModelled("histc of an empty tensor")
        lo_e, hi_e = exact_scalar(lo, ctx.dtype), exact_scalar(hi, ctx.dtype)
        if q(float(lo)) == q(float(hi)):
            edges, deg = _data_edges(X[:, 0].tolist(), bins, Q1)
            dm = _Dim(edges, "data", X[:, 0].tolist(), deg)
        else:
            if lo_e > hi_e:
                raise NotModelled("histc with min > max")
            step = (hi_e - lo_e) / bins
            dm = _Dim([lo_e + step * k for k in range(bins)] + [hi_e], "fixed")
        return X, [dm], None, False, (bins,)


@register("aten.histogram.bin_ct", "aten.histogram.bins_tensor")
class Histogram(_Hist):
    """histogram(x, bins, range, weight, density) -> (hist, bin_edges), numpy's semantics."""

    nonsmooth = True
    returns_edges = "tensor"

    def layout(self, ctx, args, kwargs):
        x = _ex(args[0], ctx)
        X = x.reshape(-1, 1)
        M = X.shape[0]
        if M == 0:
            raise NotModelled("histogram of an empty tensor")
        w = _opt_weight(ctx, kwargs, M)
        density = bool(kwargs.get("density", False))
        if ctx.op.endswith("bins_tensor"):
            b = args[1]
            dm = _Dim(_ex(b, ctx).reshape(-1).tolist(), "tensor" if _is_float(b) else "fixed", leaf=(1, None))
            if dm.bins < 1:
                raise NotModelled("histogram with fewer than 2 bin edges")
            return X, [dm], w, density, (dm.bins,)
        bins = int(_kw(args, kwargs, 1, "bins", 100))
        rng = kwargs.get("range")
        return X, [_range_dim(ctx, X[:, 0].tolist(), bins, rng, 0)], w, density, (bins,)


def _range_dim(ctx, col, bins, rng, d):
    """One dimension of histogram/histogramdd with ``bins`` equal bins: of ``range`` or of the data."""
    if rng is not None:
        lo, hi = exact_scalar(rng[2 * d], ctx.dtype), exact_scalar(rng[2 * d + 1], ctx.dtype)
        if lo == hi:
            lo, hi = exact_scalar(float(lo) - 0.5, ctx.dtype), exact_scalar(float(hi) + 0.5, ctx.dtype)
        step = (hi - lo) / bins
        return _Dim([lo + step * k for k in range(bins)] + [hi], "fixed")
    edges, deg = _data_edges(col, bins, Q1 / 2)
    return _Dim(edges, "data", col, deg)


class _HistDD(_Hist):
    def _points(self, ctx, args, kwargs):
        x = _ex(args[0], ctx)
        if x.ndim < 2:
            raise NotModelled(f"{ctx.op} of an input with fewer than 2 dims")
        D = x.shape[-1]
        X = x.reshape(-1, D)
        if X.shape[0] == 0:
            raise NotModelled(f"{ctx.op} of an empty input")
        return X, _opt_weight(ctx, kwargs, X.shape[0]), bool(kwargs.get("density", False))

    def _ct_dims(self, ctx, args, kwargs, X):
        bins = [int(b) for b in _kw(args, kwargs, 1, "bins", None)]
        rng = kwargs.get("range")
        return [_range_dim(ctx, X[:, d].tolist(), b, rng, d) for d, b in enumerate(bins)]


@register("aten._histogramdd_from_bin_cts.default")
class HistogramddCts(_HistDD):
    def layout(self, ctx, args, kwargs):
        X, w, density = self._points(ctx, args, kwargs)
        dims = self._ct_dims(ctx, args, kwargs, X)
        return X, dims, w, density, tuple(dm.bins for dm in dims)


@register("aten._histogramdd_bin_edges.default")
class HistogramddEdges(HistogramddCts):
    """The edges histogramdd uses (the same bins as from counts): a list of tensors, affine in each
    column's min and max."""

    nonsmooth = True
    counts = False


@register("aten._histogramdd_from_bin_tensors.default")
class HistogramddTensors(_HistDD):
    def layout(self, ctx, args, kwargs):
        X, w, density = self._points(ctx, args, kwargs)
        dims = []
        for j, b in enumerate(args[1]):
            dm = _Dim(_ex(b, ctx).reshape(-1).tolist(), "tensor" if _is_float(b) else "fixed", leaf=(1, j))
            if dm.bins < 1:
                raise NotModelled(f"{ctx.op} with fewer than 2 bin edges")
            dims.append(dm)
        return X, dims, w, density, tuple(dm.bins for dm in dims)


# ---------------------------------------------------------------- frexp

def _exponent(v) -> int:
    """e with 2^(e-1) <= |v| < 2^e, for a nonzero rational v."""
    n, d = abs(int(v.p)), int(v.q)
    e = n.bit_length() - d.bit_length()       # |v| in (2^(e-1), 2^(e+1))
    ge = (n << max(0, -e)) >= (d << max(0, e))  # |v| >= 2^e
    return e + 1 if ge else e


def _pow2(v) -> bool:
    n, d = abs(int(v.p)), int(v.q)
    return n & (n - 1) == 0 and d & (d - 1) == 0


@register("aten.frexp.Tensor")
class Frexp(Rule):
    """frexp(x) = (x 2^-e, e): e jumps at 0 and at every +-2^k; off them m is linear, slope 2^-e."""

    def _scale(self, ctx, x):
        s = ctx.aux.get("scale")
        if s is None:
            flat = x.ravel().tolist()
            bad = np.asarray([v == 0 or _pow2(v) for v in flat], dtype=bool).reshape(x.shape)
            if x.size:
                _jump(ctx.op, "0 and every power of two +-2^k (the exponent steps)", x, bad)
            es = [_exponent(v) for v in flat]
            ctx.aux["exp"] = np.asarray(es, dtype=np.int64).reshape(x.shape)
            s = ctx.aux["scale"] = np.asarray([q(2) ** (-e) if e <= 0 else Q1 / q(2) ** e for e in es],
                                              dtype=object).reshape(x.shape)
        return s

    def forward(self, ctx, args, kwargs):
        if not _float_out(ctx):
            raise NotModelled("frexp of a non-float tensor")
        x = _ex(args[0], ctx)
        s = self._scale(ctx, x)
        return obj(np.asarray(x * s, dtype=object).reshape(x.shape)), ctx.aux["exp"].astype(np.int32)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        t = targs[0]
        if t is None:
            return None
        return t * self._scale(ctx, _ex(args[0], ctx))[None], None

    def vjp(self, ctx, args, kwargs, out, cot):
        c = cot[0] if isinstance(cot, tuple) else cot
        x = _ex(args[0], ctx)
        if c is None:
            return arg_grads(args, {})
        return arg_grads(args, {0: c * self._scale(ctx, x)[None]})


# ---------------------------------------------------------------- unique, unique_consecutive

def _slices(x, dim):
    """x with ``dim`` moved first, as (n, rest) rows (the order torch compares slices in)."""
    d = dim % x.ndim
    xm = np.moveaxis(x, d, 0)
    return xm.reshape(xm.shape[0], -1), d


def _empty_like_rec(ctx, j):
    rec = ctx.recorded[j] if ctx.recorded is not None else None
    shape = tuple(rec.shape) if rec is not None else (0,)
    return np.zeros(shape, dtype=np.int64)


class _Unique(Rule):
    """Shared: the values output is a fixed rearrangement of the input (``ctx.aux['src']``, flat
    indices, shaped as the output); inverse and counts are locally constant."""

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        t = targs[0]
        if t is None:
            return None
        B = t.shape[0]
        src = ctx.aux["src"]
        return (t.reshape(B, -1)[:, src.ravel()].reshape((B,) + src.shape), None, None)

    def vjp(self, ctx, args, kwargs, out, cot):
        c = cot[0] if isinstance(cot, tuple) else cot
        if c is None:
            return _zero_vjp(args, cot[1] if isinstance(cot, tuple) and cot[1] is not None else cot)
        B = c.shape[0]
        src = ctx.aux["src"].ravel()
        g = zeros_like_cot((B, args[0].size), c)
        from .._fixed import Fx

        if type(c) is np.ndarray or isinstance(c, Fx):
            g[:, src] = c.reshape(B, -1)    # distinct positions: placed, not added
        else:                               # residues modulo a prime: as winner_vjp does
            np.add.at(g, (slice(None), src), c.reshape(B, -1))
        return arg_grads(args, {0: g.reshape((B,) + args[0].shape)})


def _tie(op, merged, what, i, j, v):
    raise NotLipschitz(f"{op} jumps where {merged} are equal (its output changes length or order when the tie "
                       f"is broken), and {what} {i} and {j} are ({v}); with no such tie it is locally a fixed "
                       "rearrangement of its input and is checked")


@register("aten._unique2.default", "aten.unique_dim.default")
class Unique(_Unique):
    """unique: with distinct values, ``sort`` (a fixed permutation); any repeat is a jump. With dim:
    slices sorted lexicographically, a fixed order only when their first entries differ."""

    def forward(self, ctx, args, kwargs):
        x = args[0]
        if not _is_float(x):
            raise NotModelled(f"{ctx.op} of a non-float tensor")
        if ctx.op == "aten.unique_dim.default":
            dim = _kw(args, kwargs, 1, "dim", 0)
            ret_inv = _kw(args, kwargs, 3, "return_inverse", False)
            ret_cnt = _kw(args, kwargs, 4, "return_counts", False)
            if x.ndim == 0:
                raise NotModelled("unique(dim=...) of a 0-d tensor")
            rows, d = _slices(x, dim)
            if rows.shape[1] == 0:
                raise NotModelled("unique(dim=...) of empty slices")
            keys = rows[:, 0].tolist()
            order = sorted(range(len(keys)), key=lambda i: keys[i])
            for a, b in zip(order, order[1:]):
                if keys[a] == keys[b]:
                    _tie(ctx.op, f"the first entries of two slices along dim {d}", "slices", a, b, keys[a])
            idx = np.arange(x.size, dtype=np.int64).reshape(x.shape)
            im, _ = _slices(idx, dim)
            src_rows = im[np.asarray(order, dtype=np.int64)]
            mshape = (len(order),) + tuple(np.moveaxis(x, d, 0).shape[1:])
            src = np.moveaxis(src_rows.reshape(mshape), 0, d)
            n = len(order)
        else:
            ret_inv = _kw(args, kwargs, 2, "return_inverse", False)
            ret_cnt = _kw(args, kwargs, 3, "return_counts", False)
            flat = x.ravel().tolist()
            order = sorted(range(len(flat)), key=lambda i: flat[i])
            for a, b in zip(order, order[1:]):
                if flat[a] == flat[b]:
                    _tie(ctx.op, "two values", "elements", a, b, flat[a])
            src = np.asarray(order, dtype=np.int64)
            n = len(order)
        ctx.aux["src"] = src
        vals = obj(x.ravel()[src.ravel()].reshape(src.shape))
        rank = np.empty(n, dtype=np.int64)
        rank[np.asarray(order, dtype=np.int64)] = np.arange(n)
        if ret_inv:
            inv = rank if ctx.op == "aten.unique_dim.default" else rank.reshape(x.shape)
        else:
            inv = _empty_like_rec(ctx, 1)
        cnt = np.ones(n, dtype=np.int64) if ret_cnt else _empty_like_rec(ctx, 2)
        return vals, inv, cnt


@register("aten.unique_consecutive.default", "aten.unique_dim_consecutive.default")
class UniqueConsecutive(_Unique):
    """unique_consecutive: with no two equal neighbours the identity; two equal neighbours are a jump."""

    def forward(self, ctx, args, kwargs):
        x = args[0]
        if not _is_float(x):
            raise NotModelled(f"{ctx.op} of a non-float tensor")
        if ctx.op == "aten.unique_dim_consecutive.default":
            dim = _kw(args, kwargs, 1, "dim", 0)
            ret_inv = _kw(args, kwargs, 2, "return_inverse", False)
            ret_cnt = _kw(args, kwargs, 3, "return_counts", False)
        else:
            ret_inv = _kw(args, kwargs, 1, "return_inverse", False)
            ret_cnt = _kw(args, kwargs, 2, "return_counts", False)
            dim = _kw(args, kwargs, 3, "dim", None)
        idx = np.arange(x.size, dtype=np.int64).reshape(x.shape)
        if dim is None:
            rows = x.reshape(-1, 1)
            src = idx.ravel()
            inv_shape = x.shape
        else:
            if x.ndim == 0:
                raise NotModelled("unique_consecutive(dim=...) of a 0-d tensor")
            rows, d = _slices(x, dim)
            src = idx
            inv_shape = (rows.shape[0],)
        for i in range(rows.shape[0] - 1):
            if all(a == b for a, b in zip(rows[i].tolist(), rows[i + 1].tolist())):
                _tie(ctx.op, "two neighbours" if dim is None else f"two neighbouring slices along dim {d}",
                     "elements" if dim is None else "slices", i, i + 1,
                     rows[i].tolist()[0] if rows.shape[1] else "empty")
        ctx.aux["src"] = src
        n = rows.shape[0]
        vals = obj(x.ravel()[src.ravel()].reshape(src.shape))
        inv = np.arange(n, dtype=np.int64).reshape(inv_shape) if ret_inv else _empty_like_rec(ctx, 1)
        cnt = np.ones(n, dtype=np.int64) if ret_cnt else _empty_like_rec(ctx, 2)
        return vals, inv, cnt


# ---------------------------------------------------------------- mode

@register("aten.mode.default")
class Mode(MinDim):
    """mode(x, dim=-1, keepdim=False): on rows where no value but the min repeats and the min repeats at
    most twice, locally the row's min (``min(dim)``, a tie of the two minima a kink); else refused."""

    def dims_keep(self, ctx, args, kwargs, x):
        return [_kw(args, kwargs, 1, "dim", -1)], bool(_kw(args, kwargs, 2, "keepdim", False))

    def forward(self, ctx, args, kwargs):
        x = args[0]
        if not _is_float(x):
            raise NotModelled("mode of a non-float tensor")
        if x.size == 0:
            raise NotModelled("mode of an empty tensor")
        from .nonsmooth import _reduce_layout

        dims, _ = self.dims_keep(ctx, args, kwargs, x)
        fidx, _, _ = _reduce_layout(x, dims)
        flat = x.ravel()
        for g in range(fidx.shape[0]):
            row = flat[fidx[g]].tolist()
            counts: dict = {}
            for v in row:
                counts[v] = counts.get(v, 0) + 1
            m = min(row)
            rep = sorted(v for v, c in counts.items() if c > 1 and v != m)
            if rep:
                raise NotLipschitz(f"mode is discontinuous where a value other than the row's min repeats (the "
                                   f"most frequent value jumps when a frequency tie breaks): row {g} repeats {rep[0]} "
                                   f"above its min {m}")
            if counts[m] > 2:
                raise NotLipschitz(f"mode is not Lipschitz near a row whose min repeats {counts[m]} times "
                                   f"(row {g}, min {m}): breaking one tie among them leaves a frequency tie that "
                                   "jumps at points arbitrarily close")
        return super().forward(ctx, args, kwargs)


# ---------------------------------------------------------------- kept refused

reject("outside", "it is a float operation with no real-function model: as a map of the reals, 'the next float "
       "after x' jumps at every float, so every input sits on a jump", "aten.nextafter.default",
       "aten.nextafter_.default")
reject("outside", "it hashes the bits of its input: discontinuous everywhere", "aten.hash_tensor.default")
