"""Norms and distances with p in {1, inf, -inf}: linalg.vector_norm, norm, dist, cdist, pdist
(matrix norms and pairwise_distance decompose into these plus amax/amin, abs, sub).

Every such op reduces groups of *differences* ``d = A[i] - B[j]`` (for a vector norm
``B`` is absent and ``d = A[i]``):

* ``p = 1``: ``sum |d|``; its case is the sign of every ``d`` (a zero is a tie);
* ``p = inf`` / ``-inf``: ``max`` / ``min`` of ``|d|``; its case is the sign of the
  winner ``d_w`` and, for every other entry, the sign of ``|d_k| - |d_w|``.

What the discriminant type of the core can express: a discriminant is
``+-(A[i] - B[j])`` (plus a constant), one row ``e_i - e_j``. ``|d_k| - |d_w|`` is
``s_k d_k - s_w d_w``: a difference of two entries of one argument only when ``d`` is
a single argument entry and ``s_k = s_w``. So, for ``p = +-inf``:

* at the traced input, a group (of more than one entry) whose entries are not all of one
  strict sign is refused (:class:`NotModelled`): a tie between entries of opposite signs
  has the row ``e_k + e_w``; the neighbour probes test adjacency with the rows of the
  strict inequalities as well, and a zero entry can take either sign nearby;
* at the checker's neighbour probes (every later evaluation of the same trace) nothing is
  refused: every entry gets a sign discriminant and only same-sign pairs get window
  discriminants. Since the input's group had one strict sign, a probe point whose signs
  differ is never taken as adjacent (a sign discriminant flips), and a probe with a zero
  entry sits on a kink (the core then tries another). Every other tie is exact;
* with a second argument (dist, cdist), the rows are written on the first argument;
  the derivative refuses a tangent on the second one rather than give a wrong row
  (pdist: on the first row of each pair; a tangent on a second row is refused).
"""

from __future__ import annotations

import math
import weakref

import numpy as np

from . import Disc, NotLipschitz, NotModelled, Rule, register
from .._exact import Q0, q
from ._util import bcast_index
from .nonsmooth import _reduce_layout

_ONE = q(1)


def _p_of(p):
    if p is None:
        return 2.0
    p = float(p)
    if p in (1.0, math.inf, -math.inf):
        return p
    if p == 0.0:
        raise NotLipschitz("the 0-'norm' counts nonzero entries (a step function)")
    raise NotModelled(f"a {p:g}-norm: only p in {{1, inf, -inf}} have rational values and an exact model")


def _sgn(v):
    return 1 if v > 0 else (-1 if v < 0 else 0)


class _Groups:
    """Groups of differences: d[g, k] = A[ia[g, k]] - (B[ib[g, k]] if ib is not None else 0)."""

    def __init__(self, A, ia, B=None, ib=None, a_pos=0, b_pos=None):
        self.A, self.ia, self.B, self.ib, self.a_pos, self.b_pos = A, ia, B, ib, a_pos, b_pos
        Af = A.ravel() if A.ndim else A.reshape(1)
        d = Af[ia]
        if B is not None:
            Bf = B.ravel() if B.ndim else B.reshape(1)
            d = d - Bf[ib]
        self.d = np.asarray(d, dtype=object)

    def tangent(self, ta, tb):
        B_ = (ta if ta is not None else tb).shape[0]
        G, K = self.ia.shape
        res = None
        if ta is not None:
            res = ta.reshape(B_, -1)[:, self.ia.ravel()].reshape(B_, G, K)
        if tb is not None and self.ib is not None:
            part = tb.reshape(B_, -1)[:, self.ib.ravel()].reshape(B_, G, K)
            res = -part if res is None else res - part
        return res


def norm_forward(ctx, grp: _Groups, p):
    d = grp.d
    G, K = d.shape
    sg = np.vectorize(_sgn, otypes=[np.int64])(d) if d.size else np.zeros((G, K), dtype=np.int64)
    ad = np.where(sg < 0, -d, d)
    ctx.aux.update(p=p, sg=sg)
    if p == 1.0:
        out = np.asarray(ad.sum(axis=1), dtype=object) if K else np.full(G, Q0, dtype=object)
        return np.asarray([v if not isinstance(v, int) else q(v) for v in out.tolist()], dtype=object)
    take_min = p < 0
    best = ad.min(axis=1) if take_min else ad.max(axis=1)
    ties = ad == best[:, None]
    winner = np.argmax(ties, axis=1)
    ctx.aux["winner"] = winner
    # refuse the groups whose discriminants cannot be written (see the module docstring)
    at_input = _at_traced_input(ctx, grp) if K > 1 else True   # always called: it records the first evaluation
    if at_input:
        for g in range(G):
            tied = np.nonzero(ties[g])[0]
            if len(tied) > 1 and (best[g] == 0 or (sg[g, tied] != sg[g, winner[g]]).any()):
                raise NotModelled("a tie |d_k| = |d_w| in an inf-norm between entries of opposite signs or between "
                                  "zeros: its tangent row e_k + e_w cannot be written as a discriminant")
            if K > 1 and not ((sg[g] > 0).all() or (sg[g] < 0).all()):
                raise NotModelled("an inf-norm over entries that are not all of one strict sign: |d_k| - |d_w| for "
                                  "entries of opposite signs (or a zero entry, which a neighbouring point can flip) "
                                  "has the row e_k + e_w, which a discriminant cannot write")
    return np.asarray(best, dtype=object)


_FIRST_SEEN: dict = {}   # id(recorded tensor) -> (weak reference to it, the group values first seen)


def _at_traced_input(ctx, grp: _Groups) -> bool:
    """Is this evaluation at the input the trace was taken at (the first one the checker makes)?

    The checker evaluates a trace at its input first, then at its neighbour probes (the node's
    recorded output tensor is the same object in every evaluation of one trace). A group with
    entries of both signs is refused at the traced input; at a probe point it is modelled with a
    sign discriminant for every entry, so that a probe whose signs differ from the (one-signed)
    input's is never taken as adjacent.
    """
    rec = ctx.recorded
    key = rec[0] if isinstance(rec, (tuple, list)) else rec
    if key is None:
        return True
    sig = tuple(grp.d.ravel().tolist())
    k = id(key)
    ent = _FIRST_SEEN.get(k)
    if ent is None or ent[0]() is not key:
        def drop(_ref, k=k):
            cur = _FIRST_SEEN.get(k)
            if cur is not None and cur[0] is _ref:
                del _FIRST_SEEN[k]

        try:
            _FIRST_SEEN[k] = (weakref.ref(key, drop), sig)
        except TypeError:   # pragma: no cover - a recorded value that cannot be weakly referenced
            return True
        return True
    return ent[1] == sig


def norm_discs(ctx, grp: _Groups, label):
    a = ctx.aux
    p, sg, d = a["p"], a["sg"], grp.d
    G, K = d.shape
    ia, ib = grp.ia, grp.ib
    out = []
    b_pos = grp.b_pos if grp.B is not None else None

    def abs_disc(rows, cols):
        n = rows.size
        vals = np.asarray(d[rows, cols], dtype=object)
        if b_pos is None:
            return Disc("abs", grp.a_pos, ia[rows, cols], None, None, np.full(n, Q0, dtype=object), vals, rows)
        return Disc("abs", grp.a_pos, ia[rows, cols], b_pos, ib[rows, cols], None, vals, rows)

    if p == 1.0:
        r, c = np.nonzero(np.ones((G, K), dtype=bool))
        return [abs_disc(r, c)]
    w = a["winner"]
    if K > 1:
        # the sign of every entry (strict at a one-signed input; it guards adjacency at probe points)
        r, c = np.nonzero(np.ones((G, K), dtype=bool))
        out.append(abs_disc(r, c))
    else:
        out.append(abs_disc(np.arange(G), w))
    take_min = p < 0
    for s in (1, -1):
        later, earlier, grp_, vals = [], [], [], []
        for g in range(G):
            if sg[g, w[g]] != s:
                continue
            for k in range(K):
                if k == w[g] or sg[g, k] != s:
                    continue   # an opposite-sign pair: only at probe points, guarded by the sign discriminants
                later.append(ia[g, k]); earlier.append(ia[g, w[g]]); grp_.append(g)
                vals.append(abs(d[g, k]) - abs(d[g, w[g]]))
        if not later:
            continue
        v = np.asarray(vals, dtype=object)
        if take_min:
            out.append(Disc(label, grp.a_pos, np.asarray(later), grp.a_pos, np.asarray(earlier), None, v,
                            np.asarray(grp_), False, negate=(s < 0)))
        else:
            out.append(Disc(label, grp.a_pos, np.asarray(later), grp.a_pos, np.asarray(earlier), None, v,
                            np.asarray(grp_), True, negate=(s < 0)))
    return out


def norm_jvp(ctx, grp: _Groups, ta, tb):
    a = ctx.aux
    p, sg = a["p"], a["sg"]
    if p != 1.0 and tb is not None:
        raise NotModelled("an inf-distance whose two operands both depend on the input: "
                          "|x_k - y_k| = |x_w - y_w| has a four-term row the discriminants cannot write")
    if ta is None and tb is None:
        return None
    td = grp.tangent(ta, tb)
    sgo = np.asarray(sg, dtype=object)
    if p == 1.0:
        return np.asarray((td * sgo[None]).sum(axis=2), dtype=object)
    G = sg.shape[0]
    w = a["winner"]
    s_w = sgo[np.arange(G), w]
    s_w = np.where(s_w == 0, 1, s_w)
    return np.asarray(td[:, np.arange(G), w] * s_w[None], dtype=object)


# ---------------------------------------------------------------- the ops

def _vn_params(ctx, args, kwargs):
    x = args[0]
    if ctx.op.startswith("aten.linalg_vector_norm"):
        p = args[1] if len(args) > 1 else kwargs.get("ord", 2)
        dim = args[2] if len(args) > 2 else kwargs.get("dim")
        keep = args[3] if len(args) > 3 else kwargs.get("keepdim", False)
    elif ctx.op == "aten.norm.Scalar":
        p = args[1] if len(args) > 1 else kwargs.get("p", 2)
        dim, keep = None, False
    else:   # norm.ScalarOpt_dim(self, p, dim, keepdim)
        p = args[1] if len(args) > 1 else kwargs.get("p", 2)
        dim = args[2] if len(args) > 2 else kwargs.get("dim")
        keep = args[3] if len(args) > 3 else kwargs.get("keepdim", False)
    return x, _p_of(p), dim, bool(keep)


@register("aten.linalg_vector_norm.default", "aten.norm.ScalarOpt_dim", "aten.norm.Scalar")
class VectorNorm(Rule):
    nonsmooth = True

    def _grp(self, ctx, args, kwargs):
        x, p, dim, keep = _vn_params(ctx, args, kwargs)
        if x.ndim == 0:
            return _Groups(x, np.zeros((1, 1), dtype=np.int64)), p, (), ()
        dims = list(range(x.ndim)) if dim is None or (isinstance(dim, (list, tuple)) and not dim) else \
            ([dim] if isinstance(dim, int) else list(dim))
        fidx, kept, dd = _reduce_layout(x, dims)
        shape = tuple(1 if d in dd else s for d, s in enumerate(x.shape)) if keep else kept
        return _Groups(x, fidx), p, shape, dd

    def forward(self, ctx, args, kwargs):
        grp, p, shape, _ = self._grp(ctx, args, kwargs)
        ctx.aux["grp"] = grp
        return norm_forward(ctx, grp, p).reshape(shape)

    def discs(self, ctx, args, kwargs, out):
        return norm_discs(ctx, ctx.aux["grp"], "max|.|" if ctx.aux["p"] > 0 else "min|.|")

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        r = norm_jvp(ctx, ctx.aux["grp"], targs[0], None)
        return None if r is None else r.reshape((r.shape[0],) + out.shape)


@register("aten.dist.default")
class Dist(Rule):
    nonsmooth = True

    def forward(self, ctx, args, kwargs):
        x, y = args[0], args[1]
        p = _p_of(args[2] if len(args) > 2 else kwargs.get("p", 2))
        if p < 0:
            raise NotModelled("dist with p = -inf")
        shape = np.broadcast_shapes(x.shape, y.shape)
        n = int(np.prod(shape, dtype=np.int64))
        grp = _Groups(x, bcast_index(x.shape, shape).reshape(1, n), y, bcast_index(y.shape, shape).reshape(1, n),
                      0, 1)
        ctx.aux["grp"] = grp
        return norm_forward(ctx, grp, p).reshape(())

    def discs(self, ctx, args, kwargs, out):
        return norm_discs(ctx, ctx.aux["grp"], "max|.|")

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        r = norm_jvp(ctx, ctx.aux["grp"], targs[0], targs[1] if len(targs) > 1 else None)
        return None if r is None else r.reshape((r.shape[0],))


@register("aten._cdist_forward.default")
class CDist(Rule):
    """out[..., i, j] = || x1[..., i, :] - x2[..., j, :] ||_p."""

    nonsmooth = True

    def forward(self, ctx, args, kwargs):
        x1, x2 = args[0], args[1]
        p = _p_of(args[2] if len(args) > 2 else kwargs.get("p", 2))
        if p < 0:
            raise NotModelled("cdist with p = -inf")
        if x1.shape[:-2] != x2.shape[:-2]:
            raise NotModelled("cdist with broadcast batch dimensions")
        batch = x1.shape[:-2]
        Bt = int(np.prod(batch, dtype=np.int64))
        P, M = x1.shape[-2:]
        R = x2.shape[-2]
        b = np.arange(Bt)[:, None, None, None]
        i = np.arange(P)[None, :, None, None]
        j = np.arange(R)[None, None, :, None]
        k = np.arange(M)[None, None, None, :]
        ia = np.broadcast_to((b * P + i) * M + k, (Bt, P, R, M)).reshape(-1, M)
        ib = np.broadcast_to((b * R + j) * M + k, (Bt, P, R, M)).reshape(-1, M)
        grp = _Groups(x1, ia, x2, ib, 0, 1)
        ctx.aux["grp"] = grp
        return norm_forward(ctx, grp, p).reshape(batch + (P, R))

    def discs(self, ctx, args, kwargs, out):
        return norm_discs(ctx, ctx.aux["grp"], "max|.|")

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        r = norm_jvp(ctx, ctx.aux["grp"], targs[0], targs[1] if len(targs) > 1 else None)
        return None if r is None else r.reshape((r.shape[0],) + out.shape)


@register("aten._pdist_forward.default")
class PDist(Rule):
    """out = [ || x[i] - x[j] ||_p for i < j ] (row-major)."""

    nonsmooth = True

    def forward(self, ctx, args, kwargs):
        x = args[0]
        p = _p_of(args[1] if len(args) > 1 else kwargs.get("p", 2))
        N, M = x.shape
        pairs = [(i, j) for i in range(N) for j in range(i + 1, N)]
        if not pairs:
            raise NotModelled("pdist of fewer than two rows (empty output)")
        ia = np.array([[i * M + k for k in range(M)] for i, _ in pairs], dtype=np.int64)
        ib = np.array([[j * M + k for k in range(M)] for _, j in pairs], dtype=np.int64)
        grp = _Groups(x, ia, x, ib, 0, 0)
        ctx.aux["grp"] = grp
        return norm_forward(ctx, grp, p)

    def discs(self, ctx, args, kwargs, out):
        return norm_discs(ctx, ctx.aux["grp"], "max|.|")

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        grp = ctx.aux["grp"]
        # both sides of every difference are the same argument
        t = targs[0]
        if t is None:
            return None
        a = ctx.aux
        if a["p"] != 1.0 and grp.ia.shape[1] > 1:
            # the rows of |x_ik - x_jk| - |x_il - x_jl| are written on row i: exact only where row j is constant
            B, M = t.shape[0], grp.ia.shape[1]
            tf = t.reshape(B, -1)
            seconds = np.unique(grp.ib[:, 0] // M)
            if any((tf[:, j * M:(j + 1) * M] != 0).any() for j in seconds):
                raise NotModelled("pdist with p = inf where the second row of a pair depends on the input: "
                                  "|x_ik - x_jk| = |x_il - x_jl| has a four-term row the discriminants cannot write")
        td = grp.tangent(t, t)
        sgo = np.asarray(a["sg"], dtype=object)
        if a["p"] == 1.0:
            return np.asarray((td * sgo[None]).sum(axis=2), dtype=object)
        G = sgo.shape[0]
        s_w = sgo[np.arange(G), a["winner"]]
        s_w = np.where(s_w == 0, 1, s_w)
        return np.asarray(td[:, np.arange(G), a["winner"]] * s_w[None], dtype=object)


# ---------------------------------------------------------------- normalisation layers (enclosures)
#
# The mean and the (biased) variance of exact values are exact rationals; ``rstd = 1/sqrt(var + eps)``
# is irrational in general and enclosed (a Ball) with Arb. ``eps`` is modelled as the exact value of
# the Python float PyTorch passes (a double): the model is the mathematical function
# ``(x - mean) / sqrt(var + eps)`` with that eps, not the float32 rounding of it (the CPU kernels add
# eps in their accumulation type; for float64 this is exact, for float32 the difference is below
# the float32 resolution of the result and is covered by the checker's tolerance).

def _rsqrt(v):
    """Enclosure of 1/sqrt(v), elementwise (v exact or a Ball, positive)."""
    from .._ball import apply

    return apply(lambda a: 1 / a.sqrt(), v)


def _nmean(a, axes, n):
    return a.sum(axis=axes, keepdims=True) / n if not isinstance(a, np.ndarray) or a.dtype != object \
        else np.sum(a, axis=axes, keepdims=True) * q(1) / n


class _Norm:
    """Normalisation of ``x`` over ``axes`` (of the array as laid out): xhat = (x - mu) * r."""

    def __init__(self, x, axes, eps):
        self.axes = axes
        self.n = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
        mu = _nmean(x, axes, self.n)
        c = x - mu
        var = _nmean(c * c, axes, self.n)
        self.mu, self.r = mu, _rsqrt(var + q(eps) if not hasattr(var, "mid") else var + float(eps))
        self.xhat = c * self.r

    def tangent(self, t, ax_off=1):
        """d xhat for the tangent t (shape (B,) + x.shape)."""
        axes = tuple(a + ax_off for a in self.axes)
        xh = self.xhat[None]
        return self.r[None] * (t - _nmean(t, axes, self.n) - xh * _nmean(xh * t, axes, self.n))

    def tangent_stats(self, t, dxhat_unused=None):
        axes = tuple(a + 1 for a in self.axes)
        dmu = _nmean(t, axes, self.n)
        dr = -(self.r[None] * self.r[None]) * _nmean(self.xhat[None] * t, axes, self.n)
        return dmu, dr

    # the map t -> d xhat is self-adjoint, so the cotangent is the same formula
    adjoint = tangent


def _is_none(t):
    return t is None


@register("aten.native_layer_norm.default")
class LayerNorm(Rule):
    """native_layer_norm(x, normalized_shape, weight, bias, eps) -> (out, mean, rstd).

    out = (x - mean) * rstd * weight + bias over the last ``len(normalized_shape)`` dims, with
    ``rstd = 1/sqrt(var + eps)`` (biased variance) enclosed; ``eps`` as the exact double passed."""

    balls = True

    def _setup(self, ctx, args):
        x, ns = args[0], args[1]
        w = args[2] if len(args) > 2 else None
        b = args[3] if len(args) > 3 else None
        eps = args[4] if len(args) > 4 else 1e-5
        k = len(ns)
        axes = tuple(range(x.ndim - k, x.ndim))
        nrm = _Norm(x, axes, eps)
        ctx.aux["nrm"] = nrm
        return x, w, b, nrm

    def forward(self, ctx, args, kwargs):
        x, w, b, nrm = self._setup(ctx, args)
        y = nrm.xhat
        if w is not None:
            y = y * w
        if b is not None:
            y = y + b
        return (y, nrm.mu, nrm.r)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        nrm = ctx.aux["nrm"]
        tx = targs[0]
        tw = targs[2] if len(targs) > 2 else None
        tb = targs[3] if len(targs) > 3 else None
        w = args[2] if len(args) > 2 else None
        res = dmu = dr = None
        if tx is not None:
            d = nrm.tangent(tx)
            res = d * w if w is not None else d
            dmu, dr = nrm.tangent_stats(tx)
        if tw is not None:
            p = nrm.xhat[None] * tw.reshape((tw.shape[0],) + (1,) * (nrm.xhat.ndim - tw.ndim + 1) + tw.shape[1:])
            res = p if res is None else res + p
        if tb is not None:
            p = tb.reshape((tb.shape[0],) + (1,) * (nrm.xhat.ndim - tb.ndim + 1) + tb.shape[1:])
            p = np.broadcast_to(p, (tb.shape[0],) + nrm.xhat.shape)
            res = p if res is None else res + p
        return (res, dmu, dr)

    def vjp(self, ctx, args, kwargs, out, cot):
        from ._util import arg_grads

        nrm = ctx.aux["nrm"]
        g, gmu, gr = (tuple(cot) + (None, None))[:3] if isinstance(cot, tuple) else (cot, None, None)
        x = args[0]
        w = args[2] if len(args) > 2 else None
        by = {}
        axes1 = tuple(a + 1 for a in nrm.axes)
        lead = tuple(range(1, 1 + x.ndim - len(nrm.axes)))
        gx = None
        if g is not None:
            gy = g * w if w is not None else g
            gx = nrm.adjoint(gy)
            if w is not None:
                by[2] = np.sum(g * nrm.xhat[None], axis=lead) if lead else g * nrm.xhat[None]
            if len(args) > 3 and args[3] is not None:
                by[3] = np.sum(g, axis=lead) if lead else g
        if gmu is not None:
            t = np.broadcast_to(gmu, (gmu.shape[0],) + x.shape) / nrm.n
            gx = t if gx is None else gx + t
        if gr is not None:
            t = -(gr * nrm.r[None] * nrm.r[None]) * nrm.xhat[None] / nrm.n
            gx = t if gx is None else gx + t
        if gx is not None:
            by[0] = gx
        return arg_grads(args, by)


@register("aten.native_group_norm.default")
class GroupNorm(Rule):
    """native_group_norm(x, weight, bias, N, C, HxW, group, eps) -> (out, mean, rstd), mean and rstd
    of shape (N, group). Same model as layer norm over each group of C/group channels."""

    balls = True

    def _setup(self, ctx, args):
        x, w, b, N, C, HW, G, eps = args[:8]
        xs = x.reshape(N, G, -1)
        nrm = _Norm(xs, (2,), eps)
        ctx.aux.update(nrm=nrm, shape=x.shape, N=N, C=C, G=G)
        return x, w, b, nrm

    def _wshape(self, ctx):
        s = ctx.aux["shape"]
        return (1, s[1]) + (1,) * (len(s) - 2)

    def forward(self, ctx, args, kwargs):
        x, w, b, nrm = self._setup(ctx, args)
        y = nrm.xhat.reshape(x.shape)
        ws = self._wshape(ctx)
        if w is not None:
            y = y * w.reshape(ws)
        if b is not None:
            y = y + b.reshape(ws)
        N, G = ctx.aux["N"], ctx.aux["G"]
        return (y, nrm.mu.reshape(N, G), nrm.r.reshape(N, G))

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        a = ctx.aux
        nrm, shape, N, G = a["nrm"], a["shape"], a["N"], a["G"]
        tx, tw, tb = (tuple(targs) + (None,) * 3)[:3]
        w = args[1]
        ws = self._wshape(ctx)
        res = dmu = dr = None
        if tx is not None:
            B = tx.shape[0]
            d = nrm.tangent(tx.reshape(B, N, G, -1)).reshape((B,) + shape)
            res = d * w.reshape(ws) if w is not None else d
            dmu, dr = nrm.tangent_stats(tx.reshape(B, N, G, -1))
            dmu, dr = dmu.reshape(B, N, G), dr.reshape(B, N, G)
        xh = nrm.xhat.reshape(shape)
        if tw is not None:
            p = xh[None] * tw.reshape((tw.shape[0],) + ws)
            res = p if res is None else res + p
        if tb is not None:
            p = np.broadcast_to(tb.reshape((tb.shape[0],) + ws), (tb.shape[0],) + shape)
            res = p if res is None else res + p
        return (res, dmu, dr)

    def vjp(self, ctx, args, kwargs, out, cot):
        from ._util import arg_grads

        a = ctx.aux
        nrm, shape, N, G = a["nrm"], a["shape"], a["N"], a["G"]
        g, gmu, gr = (tuple(cot) + (None, None))[:3] if isinstance(cot, tuple) else (cot, None, None)
        w = args[1]
        ws = self._wshape(ctx)
        by = {}
        gx = None
        xh = nrm.xhat.reshape(shape)
        red = (1,) + tuple(range(3, 1 + len(shape)))
        if g is not None:
            B = g.shape[0]
            gy = g * w.reshape(ws) if w is not None else g
            gx = nrm.adjoint(gy.reshape(B, N, G, -1))
            if w is not None:
                by[1] = np.sum(g * xh[None], axis=red)
            if args[2] is not None:
                by[2] = np.sum(g, axis=red)
        if gmu is not None:
            B = gmu.shape[0]
            t = np.broadcast_to(gmu.reshape(B, N, G, 1), (B,) + nrm.xhat.shape) / nrm.n
            gx = t if gx is None else gx + t
        if gr is not None:
            B = gr.shape[0]
            t = -(gr.reshape(B, N, G, 1) * nrm.r[None] * nrm.r[None]) * nrm.xhat[None] / nrm.n
            gx = t if gx is None else gx + t
        if gx is not None:
            by[0] = gx.reshape((gx.shape[0],) + shape)
        return arg_grads(args, by)
