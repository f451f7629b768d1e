"""Nonsmooth primitives: their exact forward, their cases (discriminants) and their
derivative inside a stratum (any selection among tied branches gives the same
product with every tangent direction, so the first tied branch is used)."""

from __future__ import annotations

import numpy as np

from . import Disc, NotLipschitz, Rule, register
from .._exact import Q0, as_exact
from ._util import arg_grads, bcast_index, bcast_tangent, exact_scalar, obj, shape_of, tan, unbroadcast, zeros_like_cot


def _lift(v, ctx, dtype=None):
    if isinstance(v, np.ndarray):
        return v if v.dtype == object else as_exact(v)
    return exact_scalar(v, dtype if dtype is not None else ctx.dtype)


def _mask(ctx, key, fn):
    """A case mask of the forward values, computed once per evaluation (derivative passes reuse it)."""
    m = ctx.aux.get(key)
    if m is None:
        m = ctx.aux[key] = np.asarray(fn())
    return m


def _elem_disc(label, x, a_pos, other, b_pos, out_shape, ctx):
    """Discriminants ``x - other`` elementwise (broadcast to ``out_shape``)."""
    xv = np.broadcast_to(x, out_shape).ravel()
    ia = bcast_index(x.shape, out_shape)
    if isinstance(other, np.ndarray) and b_pos is not None:
        ov = np.broadcast_to(other, out_shape).ravel()
        ib = bcast_index(other.shape, out_shape)
        const = None
    else:
        ov = other if not isinstance(other, np.ndarray) else np.broadcast_to(other, out_shape).ravel()
        ib = None
        const = ov
        b_pos = None
    vals = obj(xv - ov)
    return Disc(label, a_pos, ia, b_pos, ib, const, vals, np.arange(vals.size))


def _pos(x):
    """``x > 0`` elementwise, decided exactly (through :func:`mtcheck._exact.sign` for a large
    array of rationals, which is 5x faster than comparing each rational)."""
    if type(x) is np.ndarray and x.dtype == object and x.size >= 256:
        from .._exact import sign

        return sign(x) > 0
    return x > 0


# ---------------------------------------------------------------- relu family

@register("aten.relu.default", "aten.relu_.default")
class Relu(Rule):
    balls = True
    nonsmooth = True

    def forward(self, ctx, args, kwargs):
        x = args[0]
        return np.where(_mask(ctx, "pos", lambda: _pos(x)), x, Q0)

    def discs(self, ctx, args, kwargs, out):
        return [_elem_disc("relu", args[0], 0, Q0, None, args[0].shape, ctx)]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return np.where(_mask(ctx, "pos", lambda: _pos(args[0]))[None], targs[0], Q0)

    def vjp(self, ctx, args, kwargs, out, cot):
        return arg_grads(args, {0: np.where(_mask(ctx, "pos", lambda: _pos(args[0]))[None], cot, Q0)})


@register("aten.leaky_relu.default", "aten.leaky_relu_.default")
class LeakyRelu(Rule):
    balls = True
    nonsmooth = True

    def _slope(self, ctx, args, kwargs):
        return exact_scalar(args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01), ctx.dtype)

    def forward(self, ctx, args, kwargs):
        x = args[0]
        return np.where(x > 0, x, x * self._slope(ctx, args, kwargs))

    def discs(self, ctx, args, kwargs, out):
        return [_elem_disc("leaky_relu", args[0], 0, Q0, None, args[0].shape, ctx)]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        s = self._slope(ctx, args, kwargs)
        return np.where(_mask(ctx, "pos", lambda: args[0] > 0)[None], targs[0], targs[0] * s)

    def vjp(self, ctx, args, kwargs, out, cot):
        s = self._slope(ctx, args, kwargs)
        return arg_grads(args, {0: np.where(_mask(ctx, "pos", lambda: args[0] > 0)[None], cot, cot * s)})


@register("aten.threshold.default", "aten.threshold_.default")
class Threshold(Rule):
    """threshold(x, th, value): continuous (a shifted relu, with a kink at th) when value == th;
    otherwise it jumps at th, and is checked only where no element sits on the jump."""
    balls = True
    nonsmooth = True

    def forward(self, ctx, args, kwargs):
        x, th, val = args[0], exact_scalar(args[1], ctx.dtype), exact_scalar(args[2], ctx.dtype)
        if th != val and bool(np.any(x == th)):
            raise NotLipschitz("threshold with value != threshold jumps at the threshold, and an input sits on it")
        return np.where(x > th, x, val)

    def discs(self, ctx, args, kwargs, out):
        th, val = exact_scalar(args[1], ctx.dtype), exact_scalar(args[2], ctx.dtype)
        if th != val:
            return []       # a jump (away from every input element), not a kink: no tie
        return [_elem_disc("threshold", args[0], 0, th, None, args[0].shape, ctx)]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        th = exact_scalar(args[1], ctx.dtype)
        return np.where(_mask(ctx, "above", lambda: args[0] > th)[None], targs[0], Q0)

    def vjp(self, ctx, args, kwargs, out, cot):
        th = exact_scalar(args[1], ctx.dtype)
        return arg_grads(args, {0: np.where(_mask(ctx, "above", lambda: args[0] > th)[None], cot, Q0)})



@register("aten.abs.default", "aten.abs_.default")
class Abs(Rule):
    # enclosed values: the case (the sign) is decided by the enclosure or Undecided (UNKNOWN naming
    # the node), as for relu; OpInfo's eigh wrapper takes |V| of the eigenvectors
    balls = True
    nonsmooth = True

    def forward(self, ctx, args, kwargs):
        x = args[0]
        return np.where(x < 0, -x, x)

    def discs(self, ctx, args, kwargs, out):
        return [_elem_disc("abs", args[0], 0, Q0, None, args[0].shape, ctx)]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return np.where(_mask(ctx, "neg", lambda: args[0] < 0)[None], -targs[0], targs[0])

    def vjp(self, ctx, args, kwargs, out, cot):
        return arg_grads(args, {0: np.where(_mask(ctx, "neg", lambda: args[0] < 0)[None], -cot, cot)})


# ---------------------------------------------------------------- clamp family

class _ClampBase(Rule):
    """clamp(x, lo, hi) = min(max(x, lo), hi) with scalar or tensor bounds.

    Enclosed values (Balls: the norm in cosine_similarity, a log or exp upstream) are accepted: the
    case is the sign of ``x - bound``, decided by the enclosure or raised as ``Undecided`` (the model
    turns it into an UNKNOWN verdict naming the node), never by a tolerance."""

    nonsmooth = True
    balls = True

    def bounds(self, ctx, args, kwargs):
        """Returns (lo, lo_pos, hi, hi_pos): values (or None) and tensor-arg positions."""
        raise NotImplementedError

    def _steps(self, ctx, args, kwargs):
        x = args[0]
        lo, lo_pos, hi, hi_pos = self.bounds(ctx, args, kwargs)
        shape = np.broadcast_shapes(x.shape, *(shape_of(b) for b in (lo, hi) if isinstance(b, np.ndarray)))
        xb = np.broadcast_to(x, shape)
        if lo is not None:
            lob = np.broadcast_to(lo, shape) if isinstance(lo, np.ndarray) else lo
            m1 = xb >= lob
            m = np.where(m1, xb, lob)
        else:
            m1 = np.ones(shape, dtype=bool)
            m = xb
        if hi is not None:
            hib = np.broadcast_to(hi, shape) if isinstance(hi, np.ndarray) else hi
            m2 = m <= hib
            y = np.where(m2, m, hib)
        else:
            m2 = np.ones(shape, dtype=bool)
            y = m
        return shape, m1, m2, obj(y)

    def forward(self, ctx, args, kwargs):
        shape, m1, m2, y = self._steps(ctx, args, kwargs)
        ctx.aux["masks"] = (shape, m1, m2)
        return y

    def discs(self, ctx, args, kwargs, out):
        x = args[0]
        lo, lo_pos, hi, hi_pos = self.bounds(ctx, args, kwargs)
        shape, m1, _ = ctx.aux["masks"]
        res = []
        if lo is not None:
            res.append(_elem_disc("lo", x, 0, lo, lo_pos, shape, ctx))
        if hi is not None:
            d_x = _elem_disc("hi", x, 0, hi, hi_pos, shape, ctx)
            flat1 = m1.ravel()
            if lo is not None and not flat1.all():
                # where x < lo the value reaching the upper bound is lo itself
                d_lo = (_elem_disc("hi", lo, lo_pos, hi, hi_pos, shape, ctx) if isinstance(lo, np.ndarray)
                        else _const_vs(lo, hi, hi_pos, shape))
                keep = np.nonzero(flat1)[0]
                other = np.nonzero(~flat1)[0]
                res.append(_subset(d_x, keep))
                res.append(_subset(d_lo, other))
            else:
                res.append(d_x)
        return res

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        lo, lo_pos, hi, hi_pos = self.bounds(ctx, args, kwargs)
        shape, m1, m2 = ctx.aux["masks"]
        tx = bcast_tangent(targs[0], args[0].shape, shape)
        tlo = bcast_tangent(targs[lo_pos], lo.shape, shape) if lo_pos is not None and lo_pos < len(targs) else None
        thi = bcast_tangent(targs[hi_pos], hi.shape, shape) if hi_pos is not None and hi_pos < len(targs) else None
        z = obj(Q0)
        tm = np.where(m1[None], tx if tx is not None else z, tlo if tlo is not None else z)
        return tan(np.where(m2[None], tm, thi if thi is not None else z))

    def vjp(self, ctx, args, kwargs, out, cot):
        lo, lo_pos, hi, hi_pos = self.bounds(ctx, args, kwargs)
        shape, m1, m2 = ctx.aux["masks"]
        g_m = np.where(m2[None], cot, Q0)
        g = {0: unbroadcast(np.where(m1[None], g_m, Q0), args[0].shape)}
        if lo_pos is not None:
            g[lo_pos] = unbroadcast(np.where(m1[None], Q0, g_m), lo.shape)
        if hi_pos is not None:
            g[hi_pos] = unbroadcast(np.where(m2[None], Q0, cot), hi.shape)
        return arg_grads(args, g)


def _const_vs(lo, hi, hi_pos, shape):
    """Discriminant ``lo - hi`` for a scalar lower bound against a bound ``hi``."""
    n = int(np.prod(shape, dtype=np.int64))
    if isinstance(hi, np.ndarray) and hi_pos is not None:
        # lo - hi = -(hi - lo): the argument is hi, negated
        hv = np.broadcast_to(hi, shape).ravel()
        return Disc("hi", hi_pos, bcast_index(hi.shape, shape), None, None, np.full(n, lo, dtype=object),
                    obj(lo - hv), np.arange(n), negate=True)
    vals = np.full(n, lo - hi, dtype=object)
    return Disc("hi", None, None, None, None, vals, vals, np.arange(n))


def _subset(d: Disc, keep: np.ndarray) -> Disc:
    return Disc(d.label, d.a, None if d.idx_a is None else d.idx_a[keep], d.b,
                None if d.idx_b is None else d.idx_b[keep],
                d.const[keep] if isinstance(d.const, np.ndarray) else d.const,
                d.values[keep], d.group[keep], d.max_type, negate=d.negate)


@register("aten.clamp.default", "aten.clamp_.default", "aten.clip.default")
class ClampScalar(_ClampBase):
    def bounds(self, ctx, args, kwargs):
        lo = args[1] if len(args) > 1 else kwargs.get("min")
        hi = args[2] if len(args) > 2 else kwargs.get("max")
        return (None if lo is None else exact_scalar(lo, ctx.dtype), None,
                None if hi is None else exact_scalar(hi, ctx.dtype), None)


@register("aten.clamp.Tensor", "aten.clamp_.Tensor", "aten.clip.Tensor")
class ClampTensor(_ClampBase):
    def bounds(self, ctx, args, kwargs):
        lo = args[1] if len(args) > 1 else kwargs.get("min")
        hi = args[2] if len(args) > 2 else kwargs.get("max")
        pos = 1
        lo_pos = hi_pos = None
        if lo is not None:
            lo_pos, pos = pos, pos + 1
            lo = _lift(lo, ctx)
        if hi is not None:
            hi_pos = pos
            hi = _lift(hi, ctx)
        return lo, lo_pos, hi, hi_pos


@register("aten.clamp_min.default", "aten.clamp_min_.default")
class ClampMin(_ClampBase):
    def bounds(self, ctx, args, kwargs):
        return exact_scalar(args[1], ctx.dtype), None, None, None


@register("aten.clamp_max.default", "aten.clamp_max_.default")
class ClampMax(_ClampBase):
    def bounds(self, ctx, args, kwargs):
        return None, None, exact_scalar(args[1], ctx.dtype), None


@register("aten.clamp_min.Tensor", "aten.clamp_min_.Tensor")
class ClampMinT(_ClampBase):
    def bounds(self, ctx, args, kwargs):
        return _lift(args[1], ctx), 1, None, None


@register("aten.clamp_max.Tensor", "aten.clamp_max_.Tensor")
class ClampMaxT(_ClampBase):
    def bounds(self, ctx, args, kwargs):
        return None, None, _lift(args[1], ctx), 1


@register("aten.hardtanh.default", "aten.hardtanh_.default")
class Hardtanh(_ClampBase):
    def bounds(self, ctx, args, kwargs):
        lo = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
        hi = args[2] if len(args) > 2 else kwargs.get("max_val", 1.0)
        return exact_scalar(lo, ctx.dtype), None, exact_scalar(hi, ctx.dtype), None


# ---------------------------------------------------------------- binary max/min

@register("aten.maximum.default", "aten.minimum.default", "aten.fmax.default", "aten.fmin.default",
          "aten.max.other", "aten.min.other")
class BinaryMax(Rule):
    """maximum/minimum/fmax/fmin of two operands; enclosed operands are compared by their
    enclosures (a tie of two irrational values is Undecided: UNKNOWN)."""

    nonsmooth = True
    balls = True

    def _is_min(self, ctx):
        return "min" in ctx.op.split(".")[1]

    def forward(self, ctx, args, kwargs):
        a, b = _lift(args[0], ctx), _lift(args[1], ctx)
        shape = np.broadcast_shapes(a.shape, b.shape)
        ab, bb = np.broadcast_to(a, shape), np.broadcast_to(b, shape)
        pick_a = (ab <= bb) if self._is_min(ctx) else (ab >= bb)
        ctx.aux["pick_a"] = pick_a
        return obj(np.where(pick_a, ab, bb))

    def discs(self, ctx, args, kwargs, out):
        a, b = _lift(args[0], ctx), _lift(args[1], ctx)
        return [_elem_disc("max" if not self._is_min(ctx) else "min", a, 0, b, 1, out.shape, ctx)]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        ta = bcast_tangent(targs[0], shape_of(args[0]), out.shape)
        tb = bcast_tangent(targs[1] if len(targs) > 1 else None, shape_of(args[1]), out.shape)
        z = obj(Q0)
        return tan(np.where(ctx.aux["pick_a"][None], ta if ta is not None else z,
                            tb if tb is not None else z))

    def vjp(self, ctx, args, kwargs, out, cot):
        pick = ctx.aux["pick_a"][None]
        g = {}
        if isinstance(args[0], np.ndarray):
            g[0] = unbroadcast(np.where(pick, cot, Q0), args[0].shape)
        if isinstance(args[1], np.ndarray):
            g[1] = unbroadcast(np.where(pick, Q0, cot), args[1].shape)
        return arg_grads(args, g)


# ---------------------------------------------------------------- reductions

def select_windows(vals2d, valid, take_min=False, prefer=None):
    """Winner of each row of a (G, K) exact array among valid entries.

    Returns (best values (G,), winner column (G,), tie mask (G, K)). ``prefer`` is
    an optional (G,) column that is kept when it is among the tied entries (so the
    model follows the framework's own choice of index where it is allowed).
    """
    G, K = vals2d.shape
    if valid is None:
        valid = np.ones((G, K), dtype=bool)
    if G == 0 or K == 0:
        return np.empty(G, dtype=object), np.zeros(G, dtype=np.int64), np.zeros((G, K), dtype=bool)
    first = np.argmax(valid, axis=1)
    filler = vals2d[np.arange(G), first][:, None]
    v = np.where(valid, vals2d, filler)
    from .._ball import Ball

    pruned = _float_pruned(v, valid, take_min) if type(v) is np.ndarray and v.dtype == object and v.size >= 256 \
        else _ball_windows(v, valid, take_min) if isinstance(v, Ball) else None
    if pruned is not None:
        best, ties = pruned
    else:
        best = v.min(axis=1) if take_min else v.max(axis=1)
        ties = valid & (v == best[:, None])
    winner = np.argmax(ties, axis=1)
    if prefer is not None:
        p = np.clip(np.asarray(prefer, dtype=np.int64), 0, K - 1)
        ok = ties[np.arange(G), p]
        winner = np.where(ok, p, winner)
    return obj(best), winner, ties


def _ball_windows(v, valid, take_min):
    """(best, ties) of :func:`select_windows` for enclosures: the entry with the largest midpoint
    is the candidate, and every comparison with it is decided by the enclosures (a tie only
    between equal exact values), or Undecided is raised (an UNKNOWN verdict naming the node)."""
    G = v.shape[0]
    m = v.mid if not take_min else -v.mid
    cand = np.argmax(np.where(valid, m, -np.inf), axis=1)
    best = v[np.arange(G), cand]
    ties = np.zeros(v.shape, dtype=bool)
    ties[np.arange(G), cand] = True
    for k in range(v.shape[1]):
        sel = np.flatnonzero((cand != k) & valid[:, k])     # (the candidate is not compared with itself)
        if not sel.size:
            continue
        col, b = v[sel, k], best[sel]
        beyond = (col < b) if take_min else (col > b)      # decided, or Undecided
        if np.any(beyond):   # pragma: no cover - the largest midpoint is never surely below another
            raise AssertionError("window maximum")
        ties[sel, k] = np.asarray(col == b, dtype=bool)
    return best, ties


def _float_pruned(v, valid, take_min):
    """(best, ties) of :func:`select_windows` for exact rationals: floats near the values
    (:func:`mtcheck._exact.near_floats`) leave as candidates only the entries within their slack
    of each row's float maximum, the exact maximum among them; only the candidates are
    compared exactly. None when the floats are not available (overflow)."""
    from .._exact import FLOAT_SLACK, near_floats

    G, K = v.shape
    f = near_floats(v.reshape(-1))
    if f is None:
        return None
    f = f.reshape(G, K)
    if take_min:
        f = -f
    f = np.where(valid, f, -np.inf)
    fb = f.max(axis=1, keepdims=True)
    cand = valid & (f >= fb - (np.abs(fb) * (4 * FLOAT_SLACK) + 2.0 ** -1060))
    best = np.empty(G, dtype=object)
    ties = cand.copy()
    single = cand.sum(axis=1) == 1
    rows = np.arange(G)
    best[single] = v[rows[single], np.argmax(cand[single], axis=1)] if single.any() else best[single]
    multi = np.flatnonzero(~single)
    if multi.size:
        # the rows with several candidates (tied windows: most are all-zero relu outputs), all at
        # once: non-candidates take a candidate's value, so the exact max over the row is the max
        # over its candidates, and the ties are the candidates equal to it (exact comparisons)
        sub, cm = v[multi], cand[multi]
        sub = np.where(cm, sub, sub[np.arange(multi.size), np.argmax(cm, axis=1)][:, None])
        b = sub.min(axis=1) if take_min else sub.max(axis=1)
        best[multi] = b
        ties[multi] = cm & np.asarray(sub == b[:, None], dtype=bool)
    return best, ties


def winner_jvp(ctx, out, t):
    """Derivative of a max/min over windows with the pattern fixed: each output follows
    its window's winner (``ctx.aux['fidx']`` flat indices, ``ctx.aux['winner']`` columns).
    A second output (indices) has no derivative."""
    a = ctx.aux
    B = t.shape[0]
    src = a["fidx"][np.arange(a["fidx"].shape[0]), a["winner"]]
    y = out[0] if isinstance(out, tuple) else out
    res = t.reshape(B, -1)[:, src].reshape((B,) + y.shape)
    return (res, None) if isinstance(out, tuple) else res


def winner_vjp(ctx, x, cot):
    """Transpose of :func:`winner_jvp`: each output's cotangent goes to its window's winner."""
    a = ctx.aux
    c = cot[0] if isinstance(cot, tuple) else cot
    B = c.shape[0]
    src = a["fidx"][np.arange(a["fidx"].shape[0]), a["winner"]]
    g = zeros_like_cot((B, x.size), c)
    from .._fixed import Fx

    if (type(c) is np.ndarray or isinstance(c, Fx)) and np.bincount(src, minlength=1).max(initial=0) <= 1:
        # distinct winners (windows that do not overlap, the usual max-pool): each cotangent is
        # placed, not added to a zero (the same values, without a Python addition per entry)
        g[:, src] = c.reshape(B, -1)
    else:
        np.add.at(g, (slice(None), src), c.reshape(B, -1))
    return g.reshape((B,) + x.shape)


def window_disc(label, pos, flat_idx, vals2d, valid, winner, take_min):
    """Max-type discriminants (each valid entry minus its window's winner, <= 0)."""
    G, K = vals2d.shape
    if valid is None:
        valid = np.ones((G, K), dtype=bool)
    mask = valid.copy()
    mask[np.arange(G), winner] = False
    gi, ki = np.nonzero(mask)
    other = flat_idx[gi, ki]
    win = flat_idx[gi, winner[gi]]
    vo, vw = vals2d[gi, ki], vals2d[gi, winner[gi]]
    if take_min:   # winner - other <= 0
        return Disc(label, pos, win, pos, other, None, obj(vw - vo), gi, True)
    return Disc(label, pos, other, pos, win, None, obj(vo - vw), gi, True)


def _reduce_layout(x, dims):
    """Move ``dims`` last; return (flat index array (G, K), kept shape)."""
    nd = x.ndim
    dims = sorted(d % nd for d in dims) if nd else []
    keep = [d for d in range(nd) if d not in dims]
    idx = np.arange(x.size, dtype=np.int64).reshape(x.shape).transpose(keep + dims)
    kept_shape = tuple(x.shape[d] for d in keep)
    K = int(np.prod([x.shape[d] for d in dims], dtype=np.int64)) if dims else 1
    return idx.reshape(-1, K), kept_shape, dims


class _Reduce(Rule):
    balls = True            # the window helpers decide enclosed comparisons (as max-pool's do)
    nonsmooth = True
    take_min = False
    with_indices = False

    def dims_keep(self, ctx, args, kwargs, x):
        raise NotImplementedError

    def forward(self, ctx, args, kwargs):
        x = args[0]
        if x.size == 0:
            raise ValueError("max/min of an empty tensor")
        dims, keep = self.dims_keep(ctx, args, kwargs, x)
        fidx, kept, dims = _reduce_layout(x, dims)
        vals = x.ravel()[fidx]
        prefer = None
        if self.with_indices and ctx.recorded is not None:
            prefer = ctx.recorded[1].reshape(-1).numpy()
        best, winner, _ = select_windows(vals, None, self.take_min, prefer)
        ctx.aux.update(fidx=fidx, winner=winner, vals=vals)
        out_shape = kept
        if keep:
            out_shape = tuple(1 if d in dims else s for d, s in enumerate(x.shape))
        y = best.reshape(out_shape)
        if self.with_indices:
            return (y, winner.reshape(out_shape).astype(np.int64))
        return y

    def discs(self, ctx, args, kwargs, out):
        a = ctx.aux
        return [window_disc("min" if self.take_min else "max", 0, a["fidx"], a["vals"], None, a["winner"],
                            self.take_min)]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return winner_jvp(ctx, out, targs[0])

    def vjp(self, ctx, args, kwargs, out, cot):
        return arg_grads(args, {0: winner_vjp(ctx, args[0], cot)})


@register("aten.max.default", "aten.amax.default")
class MaxAll(_Reduce):
    def dims_keep(self, ctx, args, kwargs, x):
        if ctx.op.startswith("aten.amax"):
            dim = args[1] if len(args) > 1 else kwargs.get("dim", [])
            keep = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
            dims = list(range(x.ndim)) if not dim else ([dim] if isinstance(dim, int) else list(dim))
            return dims, keep
        return list(range(x.ndim)), False


@register("aten.min.default", "aten.amin.default")
class MinAll(MaxAll):
    take_min = True

    def dims_keep(self, ctx, args, kwargs, x):
        if ctx.op.startswith("aten.amin"):
            dim = args[1] if len(args) > 1 else kwargs.get("dim", [])
            keep = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
            dims = list(range(x.ndim)) if not dim else ([dim] if isinstance(dim, int) else list(dim))
            return dims, keep
        return list(range(x.ndim)), False


@register("aten.max.dim")
class MaxDim(_Reduce):
    with_indices = True

    def dims_keep(self, ctx, args, kwargs, x):
        dim = args[1] if len(args) > 1 else kwargs["dim"]
        keep = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
        return [dim], keep


@register("aten.min.dim")
class MinDim(MaxDim):
    take_min = True


@register("aten.argmax.default", "aten.argmin.default")
class ArgMax(Rule):
    nonsmooth = True

    def forward(self, ctx, args, kwargs):
        x = args[0]
        take_min = ctx.op.startswith("aten.argmin")
        dim = args[1] if len(args) > 1 else kwargs.get("dim")
        keep = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
        dims = list(range(x.ndim)) if dim is None else [dim]
        fidx, kept, _ = _reduce_layout(x, dims)
        vals = x.ravel()[fidx]
        prefer = ctx.recorded.reshape(-1).numpy() if ctx.recorded is not None else None
        _, winner, _ = select_windows(vals, None, take_min, prefer)
        ctx.aux.update(fidx=fidx, winner=winner, vals=vals, take_min=take_min)
        shape = kept if dim is None or not keep else tuple(1 if d == dim % x.ndim else s for d, s in enumerate(x.shape))
        return winner.reshape(() if dim is None and not keep else shape).astype(np.int64)

    def discs(self, ctx, args, kwargs, out):
        a = ctx.aux
        return [window_disc("argmin" if a["take_min"] else "argmax", 0, a["fidx"], a["vals"], None, a["winner"],
                            a["take_min"])]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return None


# ---------------------------------------------------------------- comparisons

@register("aten.gt.Tensor", "aten.gt.Scalar", "aten.lt.Tensor", "aten.lt.Scalar", "aten.ge.Tensor",
          "aten.ge.Scalar", "aten.le.Tensor", "aten.le.Scalar", "aten.eq.Tensor", "aten.eq.Scalar",
          "aten.ne.Tensor", "aten.ne.Scalar")
class Compare(Rule):
    """A comparison's outcome is a case: the sign of (a - b) at each element (of enclosures too:
    decided where the balls of a - b exclude 0, else undecided, never by a tolerance)."""

    balls = True
    nonsmooth = True
    _ops = {"gt": np.greater, "lt": np.less, "ge": np.greater_equal, "le": np.less_equal,
            "eq": np.equal, "ne": np.not_equal}

    def _operands(self, ctx, args):
        a = args[0]
        dt = None
        if ctx.recorded is not None:
            dt = ctx.aux.get("arg_dtype")
        a = _lift(a, ctx, dt)
        b = args[1]
        b = _lift(b, ctx, dt) if not isinstance(b, np.ndarray) else _lift(b, ctx)
        return a, b

    def forward(self, ctx, args, kwargs):
        fn = self._ops[ctx.op.split(".")[1]]
        if _nonfinite(args[1]):
            # a finite value against inf, -inf or nan: the outcome is the same for every input
            return np.asarray(fn(np.zeros(np.shape(args[0])), float(args[1])), dtype=bool)
        a, b = self._operands(ctx, args)
        return np.asarray(fn(a, b), dtype=bool)

    def discs(self, ctx, args, kwargs, out):
        if _nonfinite(args[1]):
            return []
        a, b = self._operands(ctx, args)
        shape = np.broadcast_shapes(np.shape(a), np.shape(b))
        if not isinstance(args[0], np.ndarray) or args[0].dtype != object:
            if not (isinstance(args[1], np.ndarray) and args[1].dtype == object):
                return []
        b_pos = 1 if isinstance(args[1], np.ndarray) else None
        return [_elem_disc("cmp", obj(a), 0, b, b_pos, shape, ctx)]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return None


def _nonfinite(v) -> bool:
    return isinstance(v, (float, np.floating)) and not np.isfinite(v)


@register("aten.is_nonzero.default")
class IsNonzero(Rule):
    nonsmooth = True

    def forward(self, ctx, args, kwargs):
        return np.asarray(args[0] != 0, dtype=bool)

    def discs(self, ctx, args, kwargs, out):
        if args[0].dtype != object:
            return []
        return [_elem_disc("cmp", args[0], 0, Q0, None, args[0].shape, ctx)]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return None


@register("aten.allclose.default")
class AllClose(Rule):
    """``allclose(a, b, rtol, atol)``: every ``|a - b| <= atol + rtol |b|``, a Python bool. Decided
    exactly (rtol and atol as the float64 values PyTorch uses); the output jumps where some
    ``atol + rtol |b| - |a - b|`` is 0, so an input there is outside the theory (no gradient flows
    through a bool anyway: off the jumps the program is locally constant in it)."""

    def forward(self, ctx, args, kwargs):
        from fractions import Fraction

        a = np.asarray(_lift(args[0], ctx), dtype=object)
        b = np.asarray(_lift(args[1], ctx), dtype=object)
        rtol = Fraction(float(args[2] if len(args) > 2 else kwargs.get("rtol", 1e-5)))
        atol = Fraction(float(args[3] if len(args) > 3 else kwargs.get("atol", 1e-8)))
        a, b = np.broadcast_arrays(a, b)
        ok = True
        for x, y in zip(a.ravel().tolist(), b.ravel().tolist()):
            x, y = Fraction(str(x)), Fraction(str(y))
            margin = atol + rtol * abs(y) - abs(x - y)
            if margin == 0:
                raise NotLipschitz(f"allclose jumps where |a - b| = atol + rtol |b| (here a = {x}, b = {y})")
            ok = ok and margin > 0
        return bool(ok)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return None


@register("aten.logical_and.default", "aten.logical_or.default", "aten.logical_not.default",
          "aten.logical_xor.default", "aten.bitwise_and.Tensor", "aten.bitwise_or.Tensor",
          "aten.bitwise_not.default", "aten.bitwise_xor.Tensor", "aten.__and__.Tensor", "aten.__or__.Tensor",
          "aten.any.default", "aten.all.default", "aten.any.dim", "aten.all.dim")
class Logical(Rule):
    """Boolean algebra on cases: exact, no derivative. A float operand counts as ``x != 0``,
    a case of its own (a ``cmp`` discriminant against 0)."""

    nonsmooth = True

    def discs(self, ctx, args, kwargs, out):
        return [_elem_disc("cmp", v, i, Q0, None, v.shape, ctx) for i, v in enumerate(args[:2])
                if isinstance(v, np.ndarray) and v.dtype == object and v.size]

    def forward(self, ctx, args, kwargs):
        name = ctx.op.split(".")[1]
        a = np.asarray(args[0]).astype(bool) if np.asarray(args[0]).dtype == object else np.asarray(args[0])
        if name in ("logical_not", "bitwise_not"):
            return np.logical_not(a) if a.dtype == bool else ~a
        if name in ("any", "all"):
            fn = np.any if name == "any" else np.all
            if len(args) > 1:
                return np.asarray(fn(a, axis=args[1], keepdims=args[2] if len(args) > 2 else False))
            return np.asarray(fn(a))
        b = np.asarray(args[1])
        b = b.astype(bool) if b.dtype == object else b
        fn = {"logical_and": np.logical_and, "logical_or": np.logical_or, "logical_xor": np.logical_xor,
              "bitwise_and": np.bitwise_and, "bitwise_or": np.bitwise_or, "bitwise_xor": np.bitwise_xor,
              "__and__": np.bitwise_and, "__or__": np.bitwise_or}[name]
        return np.asarray(fn(a, b))

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return None
