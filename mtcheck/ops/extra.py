"""Rational and piecewise-affine ops refused before issue 11, one rule per op.

Products and quotients (addcmul, addcdiv, addr, cumprod, prod, reciprocal, cross, var,
mse_loss, det/inv/solve, triangular and LU solves, the Cholesky solves), reductions with cases
(aminmax, scatter_reduce/index_reduce with sum/prod/mean/amax/amin, multilabel_margin_loss),
transposed convolution, copies (copy_, nan_to_num), boolean outcomes whose cases are
comparisons with 0 or between elements (nonzero, count_nonzero, isin, equal, in-place logical
ops), and the ops that are discontinuous (hardshrink, mode, frexp, pivoted factorizations, ...),
random, or irrational (the transcendental functions OpInfo lists) refused with the reason a
user needs. Where another module already models other variants of an op (scatter_reduce's
amax/amin, embedding_bag's max mode, the non-transposed convolution), :class:`_Variants`
routes each call to the right rule.

Tangents have a leading batch dimension B; on the verified-float fast path they are
:class:`~mtcheck._fastfloat.FT` arrays, and the rules below only use the operations that
class verifies (products, sums, movement). A rule that needs more raises ``Inexact`` or
leaves the fast path, and the model redoes the pass in rationals.
"""

from __future__ import annotations

import flint
import numpy as np

from . import Ctx, Disc, NotLipschitz, NotModelled, Rule, reject
from .._exact import Q0, Q1, as_exact, from_tensor, matmul, q, zeros
from ._util import add_t, arg_grads, bcast_tangent, exact_scalar, shape_of, tan, unbroadcast


def register_new(*names):
    """``register`` for the names no other module models yet (another module's rule wins)."""
    from . import _RULES, register

    return register(*[n for n in dict.fromkeys(names) if n not in _RULES])


def _reject_new(kind, why, *names):
    """``reject`` for the names that no rule models (a rule added elsewhere wins)."""
    from . import _RULES

    reject(kind, why, *[n for n in names if n not in _RULES])


def _obj(v):
    return v if v.dtype == object else as_exact(v)


def _lift(v, ctx):
    if isinstance(v, np.ndarray):
        return _obj(v)
    return exact_scalar(v, ctx.dtype)


def _t(targs, i):
    return targs[i] if i < len(targs) and isinstance(targs[i], np.ndarray) else None


def _shape(v):
    return shape_of(v) if isinstance(v, np.ndarray) else ()


def _recip(x):
    """Elementwise 1/x of an exact array (ZeroDivisionError at an exact zero: refused by the model)."""
    x = np.asarray(x, dtype=object)
    if x.size and (x == 0).any():
        raise ZeroDivisionError("division by an exact zero")
    return np.asarray(np.vectorize(lambda v: Q1 / v, otypes=[object])(x), dtype=object) if x.size else x


# ---------------------------------------------------------------- pointwise products

@register_new("aten.addcmul.default", "aten.addcmul_.default", "aten.addcdiv.default", "aten.addcdiv_.default")
class AddCMulDiv(Rule):
    """addcmul(s, a, b, value) = s + value * a * b;  addcdiv(s, a, b, value) = s + value * a / b."""

    def _parts(self, ctx, args, kwargs):
        s, a, b = (_lift(v, ctx) for v in args[:3])
        value = exact_scalar(args[3] if len(args) > 3 else kwargs.get("value", 1), ctx.dtype)
        div = ctx.op.startswith("aten.addcdiv")
        return s, a, b, value, div

    def forward(self, ctx, args, kwargs):
        s, a, b, value, div = self._parts(ctx, args, kwargs)
        r = b if not div else _recip(b)
        return np.asarray(s + value * (a * r), dtype=object)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        s, a, b, value, div = self._parts(ctx, args, kwargs)
        shp = out.shape
        ts, ta, tb = (bcast_tangent(_t(targs, i), _shape(args[i]), shp) for i in range(3))
        rb = _recip(b) if div else b
        res = ts
        if ta is not None:
            res = add_t(res, ta * np.broadcast_to(rb * value, shp))
        if tb is not None:
            coef = -(a * rb * rb) * value if div else a * value
            res = add_t(res, tb * np.broadcast_to(np.asarray(coef, dtype=object), shp))
        return tan(res)


@register_new("aten.addr.default", "aten.addr_.default")
class Addr(Rule):
    """addr(s, v1, v2, beta, alpha) = beta * s + alpha * outer(v1, v2) (s ignored when beta = 0)."""

    def _ab(self, ctx, kwargs):
        return exact_scalar(kwargs.get("beta", 1), ctx.dtype), exact_scalar(kwargs.get("alpha", 1), ctx.dtype)

    def forward(self, ctx, args, kwargs):
        s, v1, v2 = (_lift(v, ctx) for v in args[:3])
        beta, alpha = self._ab(ctx, kwargs)
        p = v1[:, None] * v2[None, :] * alpha
        if beta == 0:
            return np.asarray(np.broadcast_to(p, np.broadcast_shapes(p.shape, _shape(s))), dtype=object).copy()
        return np.asarray(s * beta + p, dtype=object)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        s, v1, v2 = (_lift(v, ctx) for v in args[:3])
        beta, alpha = self._ab(ctx, kwargs)
        ts, t1, t2 = _t(targs, 0), _t(targs, 1), _t(targs, 2)
        res = None
        if ts is not None and beta != 0:
            res = bcast_tangent(ts, _shape(args[0]), out.shape) * beta
        if t1 is not None:
            res = add_t(res, t1[:, :, None] * (v2[None, None, :] * alpha))
        if t2 is not None:
            res = add_t(res, t2[:, None, :] * (v1[None, :, None] * alpha))
        return tan(res)


@register_new("aten.reciprocal.default", "aten.reciprocal_.default")
class Reciprocal(Rule):
    def forward(self, ctx, args, kwargs):
        return _recip(_obj(args[0]))

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return tan(targs[0] * np.asarray(-(out * out), dtype=object))


@register_new("aten.nan_to_num.default", "aten.nan_to_num_.default")
class NanToNum(Rule):
    """The identity on finite values (mtcheck's exact values are never NaN or infinite)."""

    def forward(self, ctx, args, kwargs):
        return _obj(args[0])

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return targs[0]


@register_new("aten.copy_.default", "aten.copy.default")
class Copy(Rule):
    """copy_(self, src): the values of ``src`` broadcast to ``self``'s shape (a float-to-integer
    copy truncates: outside the theory)."""

    def forward(self, ctx, args, kwargs):
        dst, src = args[0], args[1]
        if dst.dtype != object and isinstance(src, np.ndarray) and src.dtype == object \
                and not (ctx.dtype is not None and ctx.dtype.is_floating_point):
            raise NotLipschitz("a float-to-integer copy truncates (a step function)")
        if ctx.dtype is not None and not ctx.dtype.is_floating_point:
            return np.array(np.broadcast_to(np.asarray(src), dst.shape)).astype(
                bool if str(ctx.dtype) == "torch.bool" else np.int64)
        v = _obj(src) if isinstance(src, np.ndarray) else np.asarray(exact_scalar(src, ctx.dtype), dtype=object)
        return np.array(np.broadcast_to(v, dst.shape), dtype=object)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        t = _t(targs, 1)
        if t is None:
            return None
        return bcast_tangent(t, _shape(args[1]), out.shape)


# ---------------------------------------------------------------- products along a dimension

def _excl_products(x):
    """For x (..., K): C (..., K, K) with C[..., k, i] = prod_{j <= k, j != i} x_j for i <= k, else 0."""
    K = x.shape[-1]
    C = zeros(x.shape + (K,))
    for idx in np.ndindex(*x.shape[:-1]):
        row = x[idx]
        for k in range(K):
            for i in range(k + 1):
                p = Q1
                for j in range(k + 1):
                    if j != i:
                        p = p * row[j]
                C[idx + (k, i)] = p
    return C


@register_new("aten.cumprod.default", "aten.cumprod_.default")
class CumProd(Rule):
    def _dim(self, args, kwargs):
        x = args[0]
        d = args[1] if len(args) > 1 else kwargs["dim"]
        return d % x.ndim if x.ndim else 0

    def forward(self, ctx, args, kwargs):
        x = _obj(args[0])
        if x.ndim == 0:
            return x.copy()
        d = self._dim(args, kwargs)
        xm = np.moveaxis(x, d, -1)
        out = np.empty(xm.shape, dtype=object)
        for idx in np.ndindex(*xm.shape[:-1]):
            p = Q1
            for k in range(xm.shape[-1]):
                p = p * xm[idx + (k,)]
                out[idx + (k,)] = p
        return np.moveaxis(out, -1, d)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        x = _obj(args[0])
        t = targs[0]
        if x.ndim == 0:
            return t
        d = self._dim(args, kwargs)
        C = _excl_products(np.moveaxis(x, d, -1))               # (..., K, K)
        tm = np.moveaxis(t, d + 1, -1)                           # (B, ..., K)
        r = (tm[..., None, :] * C[None]).sum(axis=-1)            # (B, ..., K)
        return tan(np.moveaxis(r, -1, d + 1))


@register_new("aten.prod.default", "aten.prod.dim_int")
class Prod(Rule):
    def _dims(self, ctx, args, kwargs):
        x = args[0]
        if ctx.op == "aten.prod.default" or x.ndim == 0:
            return list(range(x.ndim)), False, ctx.op == "aten.prod.default"
        d = args[1] if len(args) > 1 else kwargs["dim"]
        keep = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
        return [d % x.ndim], keep, False

    def _layout(self, x, dims):
        keep = [i for i in range(x.ndim) if i not in dims]
        xm = np.transpose(x, keep + dims)
        K = int(np.prod([x.shape[i] for i in dims], dtype=np.int64)) if dims else 1
        return xm.reshape(xm.shape[:len(keep)] + (K,)), keep

    def _out_shape(self, x, dims, keepdim):
        if keepdim:
            return tuple(1 if i in dims else s for i, s in enumerate(x.shape))
        return tuple(s for i, s in enumerate(x.shape) if i not in dims)

    def forward(self, ctx, args, kwargs):
        x = _obj(args[0])
        dims, keepdim, _ = self._dims(ctx, args, kwargs)
        if x.ndim == 0:
            return x.copy()
        xm, _ = self._layout(x, dims)
        out = np.empty(xm.shape[:-1], dtype=object)
        for idx in np.ndindex(*xm.shape[:-1]):
            p = Q1
            for v in xm[idx]:
                p = p * v
            out[idx] = p
        return out.reshape(self._out_shape(x, dims, keepdim))

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        x = _obj(args[0])
        t = targs[0]
        if x.ndim == 0:
            return t
        dims, keepdim, _ = self._dims(ctx, args, kwargs)
        xm, keep = self._layout(x, dims)
        K = xm.shape[-1]
        C = _excl_products(xm)[..., K - 1, :]                   # (..., K): product of the others
        B = t.shape[0]
        tm = np.transpose(t, [0] + [i + 1 for i in keep] + [i + 1 for i in dims])
        tm = tm.reshape((B,) + xm.shape)
        r = (tm * C[None]).sum(axis=-1)
        return tan(r.reshape((B,) + self._out_shape(x, dims, keepdim)))


@register_new("aten.linalg_cross.default")
class Cross(Rule):
    def _dim(self, args, kwargs, ndim):
        d = args[2] if len(args) > 2 else kwargs.get("dim", -1)
        return d % ndim

    @staticmethod
    def _cross(a, b, axis):
        a0, a1, a2 = (np.take(a, i, axis=axis) for i in range(3))
        b0, b1, b2 = (np.take(b, i, axis=axis) for i in range(3))
        return np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=axis)

    def forward(self, ctx, args, kwargs):
        a, b = _obj(args[0]), _obj(args[1])
        shp = np.broadcast_shapes(a.shape, b.shape)
        d = self._dim(args, kwargs, len(shp))
        return np.asarray(self._cross(np.broadcast_to(a, shp), np.broadcast_to(b, shp), d), dtype=object)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        a, b = _obj(args[0]), _obj(args[1])
        shp = out.shape
        d = self._dim(args, kwargs, len(shp)) + 1
        ta = bcast_tangent(_t(targs, 0), a.shape, shp)
        tb = bcast_tangent(_t(targs, 1), b.shape, shp)
        res = None
        if ta is not None:
            res = self._cross(ta, np.broadcast_to(b, shp)[None], d)
        if tb is not None:
            res = add_t(res, self._cross(np.broadcast_to(a, shp)[None], tb, d))
        return tan(res)


# ---------------------------------------------------------------- variance, mse

def _red_dims(dim, ndim):
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
        return list(range(ndim))
    if isinstance(dim, int):
        dim = [dim]
    return sorted(d % ndim for d in dim) if ndim else []


@register_new("aten.var.correction", "aten.var_mean.correction")
class Var(Rule):
    """var(x, dim, correction, keepdim) = sum((x - mean)^2) / (N - correction); var_mean adds the mean."""

    def _params(self, args, kwargs):
        x = _obj(args[0])
        dim = args[1] if len(args) > 1 else kwargs.get("dim")
        corr = kwargs.get("correction")
        corr = 1 if corr is None else corr
        keep = kwargs.get("keepdim", False)
        dims = _red_dims(dim, x.ndim)
        n = int(np.prod([x.shape[d] for d in dims], dtype=np.int64)) if x.ndim else 1
        den = q(n) - q(corr)
        if den <= 0:
            raise NotModelled(f"var with {n} elements and correction {corr} (a division by {den})")
        return x, tuple(dims), keep, q(1) / n, Q1 / den

    def forward(self, ctx, args, kwargs):
        x, dims, keep, inv_n, inv_den = self._params(args, kwargs)
        if x.ndim == 0:
            v, m = np.asarray(Q0 * inv_den, dtype=object), x.copy()
        else:
            m = np.asarray(np.asarray(np.sum(x, axis=dims, keepdims=True), dtype=object) * inv_n, dtype=object)
            dev = x - m
            v = np.asarray(np.asarray(np.sum(dev * dev, axis=dims, keepdims=keep), dtype=object) * inv_den,
                           dtype=object)
            if not keep:
                m = m.reshape(v.shape)
        if ctx.op.startswith("aten.var_mean"):
            return np.asarray(v, dtype=object), np.asarray(m, dtype=object)
        return np.asarray(v, dtype=object)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        x, dims, keep, inv_n, inv_den = self._params(args, kwargs)
        t = targs[0]
        if x.ndim == 0:
            tv, tm = None, t
        else:
            m = np.asarray(np.sum(x, axis=dims, keepdims=True), dtype=object) * inv_n
            dev = np.asarray((x - m) * (2 * inv_den), dtype=object)
            tdims = tuple(d + 1 for d in dims)
            tv = tan((t * dev[None]).sum(axis=tdims, keepdims=keep))
            tm = tan(np.sum(t, axis=tdims, keepdims=keep) * inv_n)
        if ctx.op.startswith("aten.var_mean"):
            return tv, tm
        return tv


@register_new("aten.mse_loss.default")
class MseLoss(Rule):
    """mse_loss(x, y, reduction): (x - y)^2, then none (0), mean (1) or sum (2)."""

    def _red(self, args, kwargs):
        return args[2] if len(args) > 2 else kwargs.get("reduction", 1)

    def forward(self, ctx, args, kwargs):
        x, y = _lift(args[0], ctx), _lift(args[1], ctx)
        d = np.asarray(x - y, dtype=object)
        sq = np.asarray(d * d, dtype=object)
        red = self._red(args, kwargs)
        if red == 0:
            return sq
        s = np.asarray(np.sum(sq), dtype=object) if sq.size else np.asarray(Q0, dtype=object)
        return s * (q(1) / sq.size) if red == 1 and sq.size else s

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        x, y = _lift(args[0], ctx), _lift(args[1], ctx)
        d = np.asarray(x - y, dtype=object)
        shp = d.shape
        tx = bcast_tangent(_t(targs, 0), _shape(args[0]), shp)
        ty = bcast_tangent(_t(targs, 1), _shape(args[1]), shp)
        td = tx if ty is None else (ty * -1 if tx is None else tx - ty)
        g = td * np.asarray(d * 2, dtype=object)[None]
        red = self._red(args, kwargs)
        if red == 0:
            return tan(g)
        B = g.shape[0]
        s = g.reshape(B, -1).sum(axis=1)
        return tan(s * (q(1) / d.size) if red == 1 and d.size else s)

    def vjp(self, ctx, args, kwargs, out, cot):
        x, y = _lift(args[0], ctx), _lift(args[1], ctx)
        d = np.asarray(x - y, dtype=object)
        B = cot.shape[0]
        red = self._red(args, kwargs)
        c = cot if red == 0 else np.broadcast_to(cot.reshape((B,) + (1,) * d.ndim), (B,) + d.shape)
        g = c * np.asarray(d * 2 if red != 1 or not d.size else d * (q(2) / d.size), dtype=object)[None]
        out_g = {}
        if isinstance(args[0], np.ndarray):
            out_g[0] = unbroadcast(g, _shape(args[0]))
        if isinstance(args[1], np.ndarray):
            out_g[1] = unbroadcast(-g, _shape(args[1]))
        return arg_grads(args, out_g)


# ---------------------------------------------------------------- reductions with cases

@register_new("aten.aminmax.default")
class Aminmax(Rule):
    """aminmax(x, dim, keepdim) = (amin, amax): two max-type reductions over the same windows."""

    nonsmooth = True

    def forward(self, ctx, args, kwargs):
        from .nonsmooth import _reduce_layout, select_windows

        x = _obj(args[0])
        if x.size == 0:
            raise ValueError("aminmax of an empty tensor")
        dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
        keep = kwargs.get("keepdim", args[2] if len(args) > 2 else False)
        dims = list(range(x.ndim)) if dim is None else [dim]
        fidx, kept, dims = _reduce_layout(x, dims)
        vals = x.ravel()[fidx]
        bmin, wmin, _ = select_windows(vals, None, True)
        bmax, wmax, _ = select_windows(vals, None, False)
        ctx.aux.update(fidx=fidx, vals=vals, wmin=wmin, wmax=wmax)
        shape = kept
        if keep:
            shape = tuple(1 if d in dims else s for d, s in enumerate(x.shape))
        return bmin.reshape(shape), bmax.reshape(shape)

    def discs(self, ctx, args, kwargs, out):
        from .nonsmooth import window_disc

        a = ctx.aux
        return [window_disc("min", 0, a["fidx"], a["vals"], None, a["wmin"], True),
                window_disc("max", 0, a["fidx"], a["vals"], None, a["wmax"], False)]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        a = ctx.aux
        t = targs[0]
        B = t.shape[0]
        G = a["fidx"].shape[0]
        res = []
        for w, y in ((a["wmin"], out[0]), (a["wmax"], out[1])):
            src = a["fidx"][np.arange(G), w]
            res.append(t.reshape(B, -1)[:, src].reshape((B,) + y.shape))
        return tuple(res)


# ---------------------------------------------------------------- linear algebra (rational)

def _mat(a):
    n, m = a.shape
    return flint.fmpq_mat(n, m, [q(v) for v in a.ravel().tolist()])


def _arr(M):
    from .._exact import objects

    return objects(M.entries(), (M.nrows(), M.ncols()))


def _inv(a):
    """Exact inverse of (..., n, n); ZeroDivisionError for a singular matrix."""
    out = np.empty(a.shape, dtype=object)
    for idx in np.ndindex(*a.shape[:-2]):
        M = _mat(a[idx])
        if M.det() == 0:
            raise ZeroDivisionError("the matrix is singular (exactly)")
        out[idx] = _arr(M.inv())
    return out


def _recorded(ctx, i, like_shape=None, dtype=None):
    rec = ctx.recorded
    if isinstance(rec, (tuple, list)) and i < len(rec):
        return from_tensor(rec[i])
    return np.zeros(like_shape or (), dtype=dtype or np.int64)


@register_new("aten._linalg_det.default")
class Det(Rule):
    """_linalg_det(A) = (det, LU, pivots). det is a polynomial; its tangent is tr(adj(A) T).
    LU and pivots are the framework's own values (constants: mtcheck models det only)."""

    def forward(self, ctx, args, kwargs):
        a = _obj(args[0])
        d = np.empty(a.shape[:-2], dtype=object)
        for idx in np.ndindex(*a.shape[:-2]):
            d[idx] = _mat(a[idx]).det() if a.shape[-1] else Q1
        return d, _recorded(ctx, 1), _recorded(ctx, 2)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        a = _obj(args[0])
        t = targs[0]
        if t is None:
            return None
        n = a.shape[-1]
        cof = zeros(a.shape)
        for idx in np.ndindex(*a.shape[:-2]):
            m = a[idx]
            for i in range(n):
                for j in range(n):
                    if n == 1:
                        cof[idx + (i, j)] = Q1
                        continue
                    minor = np.delete(np.delete(m, i, axis=0), j, axis=1)
                    c = _mat(minor).det()
                    cof[idx + (i, j)] = c if (i + j) % 2 == 0 else -c
        return tan((t * cof[None]).sum(axis=(-2, -1))), None, None


@register_new("aten.linalg_inv_ex.default")
class InvEx(Rule):
    def forward(self, ctx, args, kwargs):
        a = _obj(args[0])
        return _inv(a), np.zeros(a.shape[:-2], dtype=np.int32)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        t = targs[0]
        if t is None:
            return None
        ai = out[0]
        return tan(-matmul(matmul(np.broadcast_to(ai, t.shape), t), np.broadcast_to(ai, t.shape))), None


def _vector_rhs(a, b):
    return b.ndim == 1 or (b.ndim == a.ndim - 1 and b.shape == a.shape[:-1])


@register_new("aten._linalg_solve_ex.default")
class SolveEx(Rule):
    """_linalg_solve_ex(A, B, left) = (X, LU, pivots, info): X = A^-1 B (left) or B A^-1."""

    def _left(self, args, kwargs):
        return args[2] if len(args) > 2 else kwargs.get("left", True)

    def forward(self, ctx, args, kwargs):
        a, b = _obj(args[0]), _obj(args[1])
        ai = _inv(a)
        ctx.aux["ainv"] = ai
        left = self._left(args, kwargs)
        if _vector_rhs(a, b):
            if not left:
                raise NotModelled("solve with left=False and a vector right-hand side")
            x = matmul(ai, b[..., None])[..., 0]
        else:
            x = matmul(ai, b) if left else matmul(b, ai)
        x = np.asarray(x, dtype=object)
        return x, _recorded(ctx, 1), _recorded(ctx, 2), np.zeros(a.shape[:-2], dtype=np.int32)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        a, b = _obj(args[0]), _obj(args[1])
        ta, tb = _t(targs, 0), _t(targs, 1)
        x = out[0]
        ai = ctx.aux.get("ainv")
        if ai is None:
            ai = _inv(a)
        left = self._left(args, kwargs)
        vec = _vector_rhs(a, b)
        xm = x[..., None] if vec else x
        res = None
        if tb is not None:
            tbm = tb[..., None] if vec else tb
            B = tb.shape[0]
            r = matmul(np.broadcast_to(ai, (B,) + ai.shape) if ai.ndim < tbm.ndim else ai, tbm) if left else \
                matmul(tbm, np.broadcast_to(ai, (B,) + ai.shape))
            res = r
        if ta is not None:
            B = ta.shape[0]
            aib = np.broadcast_to(ai, (B,) + ai.shape)
            xb = np.broadcast_to(xm, (B,) + xm.shape)
            r = -matmul(aib, matmul(ta, xb)) if left else -matmul(matmul(xb, ta), aib)
            res = add_t(res, r)
        if res is not None and vec:
            res = res[..., 0]
        return tan(res), None, None, None


@register_new("aten.cholesky_inverse.default")
class CholeskyInverse(Rule):
    """cholesky_inverse(L, upper) = (L L^T)^-1 (or (U^T U)^-1): rational in L."""

    @staticmethod
    def _tri(l, upper):
        """The triangle the kernel reads (LAPACK's potri/potrs ignore the other one)."""
        n = l.shape[-1]
        m = np.triu(np.ones((n, n), dtype=bool)) if upper else np.tril(np.ones((n, n), dtype=bool))
        return np.asarray(np.where(m, l, np.asarray(Q0, dtype=object)), dtype=object)

    def _g(self, l, upper):
        l = self._tri(l, upper)
        lt = np.swapaxes(l, -1, -2)
        return matmul(lt, l) if upper else matmul(l, lt)

    def forward(self, ctx, args, kwargs):
        upper = args[1] if len(args) > 1 else kwargs.get("upper", False)
        return _inv(np.asarray(self._g(_obj(args[0]), upper), dtype=object))

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        t = targs[0]
        if t is None:
            return None
        upper = args[1] if len(args) > 1 else kwargs.get("upper", False)
        l = self._tri(_obj(args[0]), upper)
        t = self._tri(t, upper)
        B = t.shape[0]
        lb = np.broadcast_to(l, (B,) + l.shape)
        tt, lt = np.swapaxes(t, -1, -2), np.swapaxes(lb, -1, -2)
        dg = add_t(matmul(tt, lb), matmul(lt, t)) if upper else add_t(matmul(t, lt), matmul(lb, tt))
        gi = np.broadcast_to(out, (B,) + out.shape)
        return tan(-matmul(matmul(gi, dg), gi))


@register_new("aten.cholesky_solve.default")
class CholeskySolve(Rule):
    """cholesky_solve(B, L, upper) = (L L^T)^-1 B."""

    def forward(self, ctx, args, kwargs):
        upper = args[2] if len(args) > 2 else kwargs.get("upper", False)
        gi = CholeskyInverse().forward(ctx, (args[1], upper), {})
        ctx.aux["gi"] = gi
        return np.asarray(matmul(gi, _obj(args[0])), dtype=object)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        upper = args[2] if len(args) > 2 else kwargs.get("upper", False)
        b, gi = _obj(args[0]), ctx.aux["gi"]
        tb, tl = _t(targs, 0), _t(targs, 1)
        res = None
        if tb is not None:
            B = tb.shape[0]
            res = matmul(np.broadcast_to(gi, (B,) + gi.shape), tb)
        if tl is not None:
            B = tl.shape[0]
            dgi = CholeskyInverse().jvp(ctx, (args[1], upper), {}, gi, (tl,), {})
            res = add_t(res, matmul(dgi, np.broadcast_to(b, (B,) + b.shape)))
        return tan(res)


@register_new("aten.linalg_solve_triangular.default")
class SolveTriangular(Rule):
    """linalg_solve_triangular(A, B, upper, left, unitriangular): X = T^-1 B (or B T^-1), T the
    triangle of A that ``upper`` names (with a unit diagonal when ``unitriangular``)."""

    def _params(self, args, kwargs):
        upper = kwargs.get("upper", args[2] if len(args) > 2 else None)
        left = kwargs.get("left", True)
        unit = kwargs.get("unitriangular", False)
        return upper, left, unit

    def _tri_mask(self, n, upper, unit):
        m = np.triu(np.ones((n, n), dtype=bool), 1 if unit else 0) if upper else \
            np.tril(np.ones((n, n), dtype=bool), -1 if unit else 0)
        return m

    def _tri(self, a, upper, unit):
        n = a.shape[-1]
        t = np.where(self._tri_mask(n, upper, unit), a, Q0)
        if unit:
            t = np.asarray(t, dtype=object).copy()
            for i in range(n):
                t[..., i, i] = Q1
        return np.asarray(t, dtype=object)

    def forward(self, ctx, args, kwargs):
        upper, left, unit = self._params(args, kwargs)
        a, b = _obj(args[0]), _obj(args[1])
        ti = _inv(self._tri(a, upper, unit))
        ctx.aux["ti"] = ti
        return np.asarray(matmul(ti, b) if left else matmul(b, ti), dtype=object)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        upper, left, unit = self._params(args, kwargs)
        ti = ctx.aux["ti"]
        ta, tb = _t(targs, 0), _t(targs, 1)
        res = None
        if tb is not None:
            B = tb.shape[0]
            tib = np.broadcast_to(ti, (B,) + ti.shape)
            res = matmul(tib, tb) if left else matmul(tb, tib)
        if ta is not None:
            B = ta.shape[0]
            n = ti.shape[-1]
            mask = self._tri_mask(n, upper, unit)
            tt = np.where(mask, ta, np.asarray(Q0, dtype=object))
            tib = np.broadcast_to(ti, (B,) + ti.shape)
            xb = np.broadcast_to(out, (B,) + out.shape)
            r = -matmul(tib, matmul(tt, xb)) if left else -matmul(matmul(xb, tt), tib)
            res = add_t(res, r)
        return tan(res)


# ---------------------------------------------------------------- boolean outcomes (cases)

def _zero_discs(args, ctx, label="cmp"):
    from .nonsmooth import _elem_disc

    return [_elem_disc(label, v, i, Q0, None, v.shape, ctx) for i, v in enumerate(args[:1])
            if isinstance(v, np.ndarray) and v.dtype == object and v.size]


@register_new("aten.nonzero.default", "aten.argwhere.default", "aten.nonzero_static.default")
class Nonzero(Rule):
    nonsmooth = True

    def forward(self, ctx, args, kwargs):
        x = np.asarray(args[0])
        nz = np.argwhere(x != 0).astype(np.int64)
        if ctx.op.startswith("aten.nonzero_static"):
            size = kwargs.get("size", args[1] if len(args) > 1 else 0)
            fill = kwargs.get("fill_value", -1)
            res = np.full((size, x.ndim), fill, dtype=np.int64)
            res[:min(size, len(nz))] = nz[:size]
            return res
        return nz

    def discs(self, ctx, args, kwargs, out):
        return _zero_discs(args, ctx)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return None


@register_new("aten.count_nonzero.default", "aten.count_nonzero.dim_IntList")
class CountNonzero(Nonzero):
    def forward(self, ctx, args, kwargs):
        x = np.asarray(args[0])
        dim = args[1] if len(args) > 1 else kwargs.get("dim")
        dims = tuple(_red_dims(dim, x.ndim))
        return np.asarray(np.sum(x != 0, axis=dims) if x.ndim else int(x != 0), dtype=np.int64)


@register_new("aten.isin.Tensor_Tensor", "aten.isin.Tensor_Scalar")
class IsIn(Rule):
    """isin(elements, test): the case of each (element, test element) pair is their order."""

    nonsmooth = True

    def _pairs(self, ctx, args):
        e = _lift(args[0], ctx)
        t = _lift(args[1], ctx)
        t = np.asarray(t, dtype=object).reshape(-1)
        return e, t

    def forward(self, ctx, args, kwargs):
        e, t = self._pairs(ctx, args)
        invert = kwargs.get("invert", args[3] if len(args) > 3 else False)
        r = np.zeros(e.shape, dtype=bool)
        for v in t:
            r |= (e == v)
        return ~r if invert else r

    def discs(self, ctx, args, kwargs, out):
        e, t = self._pairs(ctx, args)
        n, k = e.size, t.size
        if not (isinstance(args[0], np.ndarray) and args[0].dtype == object):
            return []
        ia = np.repeat(np.arange(n, dtype=np.int64), k)
        ib = np.tile(np.arange(k, dtype=np.int64), n)
        vals = np.asarray(e.ravel()[ia] - t[ib], dtype=object)
        b_pos = 1 if isinstance(args[1], np.ndarray) else None
        return [Disc("cmp", 0, ia, b_pos, ib if b_pos is not None else None, None if b_pos is not None else t[ib],
                     vals, ia)]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return None


@register_new("aten.equal.default")
class Equal(Rule):
    """torch.equal(a, b): one Python bool, whose case is the order of every pair of elements."""

    nonsmooth = True

    def forward(self, ctx, args, kwargs):
        a, b = _lift(args[0], ctx), _lift(args[1], ctx)
        return np.asarray(a.shape == b.shape and bool(np.all(a == b)), dtype=bool)

    def discs(self, ctx, args, kwargs, out):
        from .nonsmooth import _elem_disc

        a, b = _lift(args[0], ctx), _lift(args[1], ctx)
        if a.shape != b.shape or not a.size:
            return []
        return [_elem_disc("cmp", a, 0, b, 1, a.shape, ctx)]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return None


class _InPlaceLogical(Rule):
    """In-place boolean ops (``logical_not_``, ``bitwise_and_``, ...): the out-of-place rule."""

    nonsmooth = True

    def _base(self, ctx):
        from . import lookup

        name = ctx.op.replace("_.", ".", 1)
        return lookup(name), Ctx(name, ctx.dtype, ctx.recorded, ctx.aux)

    def forward(self, ctx, args, kwargs):
        r, c = self._base(ctx)
        return r.forward(c, args, kwargs)

    def discs(self, ctx, args, kwargs, out):
        r, c = self._base(ctx)
        return r.discs(c, args, kwargs, out) if r.nonsmooth else []

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return None


register_new("aten.logical_not_.default", "aten.logical_and_.default", "aten.logical_or_.default",
         "aten.logical_xor_.default", "aten.bitwise_and_.Tensor", "aten.bitwise_or_.Tensor",
         "aten.bitwise_xor_.Tensor", "aten.bitwise_not_.default")(_InPlaceLogical)


@register_new("aten.ldexp.Tensor")
class Ldexp(Rule):
    """ldexp(x, e) = x * 2**e: exact for integer exponents, enclosed (Arb) otherwise; the
    derivative in x is 2**e and in e (a float exponent tensor) x * 2**e * ln 2."""

    balls = True

    def _scale(self, ctx, args):
        s = ctx.aux.get("scale")
        if s is None:
            e = args[1]
            if not isinstance(e, np.ndarray):
                raise NotModelled("ldexp with a scalar exponent")
            from .._ball import Ball

            if not isinstance(e, Ball) and e.dtype != object:
                e = as_exact(e)
            if not isinstance(e, Ball) and all(int(v.q) == 1 for v in e.ravel().tolist()):
                s = np.asarray(np.vectorize(lambda k: q(2) ** int(k.p), otypes=[object])(e), dtype=object) \
                    if e.size else e
            else:
                from .smooth import enclose

                s = enclose(lambda a: flint.arb(2) ** a, e)
            s = ctx.aux["scale"] = s
        return s

    def forward(self, ctx, args, kwargs):
        return _fin_obj(_obj(args[0]) * self._scale(ctx, args))

    def _de(self, ctx, args, out):
        from .smooth import enclose

        return out * enclose(lambda a: flint.arb(2).log() * a, np.asarray(Q1, dtype=object))   # x 2**e ln 2

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        from .smooth import times

        tx = bcast_tangent(_t(targs, 0), _shape(args[0]), out.shape)
        te = bcast_tangent(_t(targs, 1), _shape(args[1]), out.shape)
        res = None if tx is None else times(np.broadcast_to(self._scale(ctx, args), out.shape), tx)
        if te is not None:
            d = times(self._de(ctx, args, out), te)
            res = d if res is None else res + d
        return res

    def vjp(self, ctx, args, kwargs, out, cot):
        from .smooth import times

        g = {}
        if isinstance(args[0], np.ndarray):
            g[0] = unbroadcast(times(np.broadcast_to(self._scale(ctx, args), out.shape)[None], cot),
                               args[0].shape)
        if isinstance(args[1], np.ndarray) and np.asarray(args[1]).dtype != np.int64 and \
                (args[1].dtype == object or np.issubdtype(args[1].dtype, np.floating)):
            g[1] = unbroadcast(times(self._de(ctx, args, out)[None], cot), args[1].shape)
        return arg_grads(args, g)


def _fin_obj(v):
    from .._ball import exactify, is_ball

    return exactify(v) if is_ball(v) else np.asarray(v, dtype=object)


# ---------------------------------------------------------------- refused, with the reason

@register_new("aten.hardshrink.default")
class Hardshrink(Rule):
    """hardshrink(x, l) = x where |x| > l, else 0: it jumps by l at +-l; for l <= 0 it is the identity."""

    nonsmooth = True

    def forward(self, ctx, args, kwargs):
        lam = exact_scalar(args[1] if len(args) > 1 else kwargs.get("lambd", 0.5), ctx.dtype)
        if lam > 0:             # lambda <= 0: |x| > lambda wherever x != 0, so the identity
            raise NotLipschitz(f"hardshrink jumps by {float(lam):g} at +-{float(lam):g} (a discontinuity)")
        return _obj(args[0]).copy()

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return targs[0]


# mode, frexp, signbit, histograms, unique, searchsorted/bucketize (off their jumps), and the refusals of
# nextafter and hash_tensor, with their reasons: mtcheck/ops/steps_more.py
_reject_new("irrational", "its values are irrational and mtcheck has no enclosure rule for it yet",
       "aten.linalg_eig.default",
       "aten.geqrf.default",
       "aten.special_bessel_y0.default", "aten.special_bessel_y1.default",
       "aten.special_modified_bessel_k0.default", "aten.special_modified_bessel_k1.default",
       "aten.special_scaled_modified_bessel_k0.default", "aten.special_scaled_modified_bessel_k1.default",
       "aten.special_zeta.default",
       "aten.logdet.default")


# ---------------------------------------------------------------- reductions over index-defined groups

def _group_candidates(ctx, args, kwargs):
    """For scatter_reduce / index_reduce: per output element the list of (tensor leaf position,
    flat index) it reduces (self first when include_self), and the reduction."""
    x = args[0]
    if ctx.op.startswith("aten.scatter_reduce"):
        dim, index, src = args[1], np.asarray(args[2]), args[3]
        reduce = args[4] if len(args) > 4 else kwargs["reduce"]
        include_self = args[5] if len(args) > 5 else kwargs.get("include_self", True)
    else:
        dim, index, src = args[1], np.asarray(args[2]).reshape(-1), args[3]
        reduce = args[4] if len(args) > 4 else kwargs["reduce"]
        include_self = kwargs.get("include_self", args[5] if len(args) > 5 else True)
    nd = max(x.ndim, 1)
    d = dim % nd
    xs = x.shape if x.ndim else (1,)
    ss = src.shape if src.ndim else (1,)
    cands = [[] for _ in range(x.size)]
    if include_self:
        for i in range(x.size):
            cands[i].append((0, i))
    src_idx = np.arange(src.size).reshape(ss)
    if ctx.op.startswith("aten.scatter_reduce"):
        ind = index.reshape(index.shape if index.ndim else (1,))
        for pos in np.ndindex(*ind.shape):
            tgt = list(pos)
            tgt[d] = int(ind[pos])
            cands[int(np.ravel_multi_index(tuple(tgt), xs))].append((2, int(src_idx[pos])))
    else:
        for pos in np.ndindex(*ss):
            tgt = list(pos)
            tgt[d] = int(index[pos[d]])
            cands[int(np.ravel_multi_index(tuple(tgt), xs))].append((2, int(src_idx[pos])))
    return cands, reduce, include_self


class GroupReduce(Rule):
    """scatter_reduce / index_reduce with reduce in sum, prod, mean, amax, amin: each output element
    reduces the entries of ``self`` and ``src`` that the index assigns to it (an output no entry
    reaches keeps ``self``). amax/amin are max-type windows, as for scatter_reduce's own rule."""

    nonsmooth = True

    def _vals(self, args, cands):
        leaves = {0: _obj(args[0]).ravel(), 2: _obj(args[3]).ravel()}
        return [[leaves[p][i] for p, i in cs] for cs in cands]

    def forward(self, ctx, args, kwargs):
        from .scatter import _select

        cands, reduce, include_self = _group_candidates(ctx, args, kwargs)
        if reduce not in ("sum", "prod", "mean", "amax", "amin"):
            raise NotModelled(f"reduce={reduce!r}")
        vals = self._vals(args, cands)
        x = _obj(args[0])
        out = np.array(x.ravel(), dtype=object)
        winner = None
        if reduce in ("amax", "amin"):
            winner = _select(vals, reduce == "amin")
        for o, vs in enumerate(vals):
            if not vs:
                continue
            if reduce in ("sum", "mean"):
                s = Q0
                for v in vs:
                    s = s + v
                out[o] = s * (q(1) / len(vs)) if reduce == "mean" else s
            elif reduce == "prod":
                p = Q1
                for v in vs:
                    p = p * v
                out[o] = p
            else:
                out[o] = vs[winner[o]]
        ctx.aux.update(cands=cands, vals=vals, reduce=reduce, winner=winner)
        return out.reshape(x.shape)

    def discs(self, ctx, args, kwargs, out):
        from .scatter import _window_discs

        a = ctx.aux
        if a["reduce"] not in ("amax", "amin"):
            return []
        return _window_discs(a["reduce"], a["cands"], a["vals"], a["winner"], a["reduce"] == "amin")

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        a = ctx.aux
        tx, ts = _t(targs, 0), _t(targs, 3)
        live = tx if tx is not None else ts
        if live is None:
            return None
        B = live.shape[0]
        tl = {0: None if tx is None else np.asarray(tx, dtype=object).reshape(B, -1),
              2: None if ts is None else np.asarray(ts, dtype=object).reshape(B, -1)}
        res = zeros((B, out.size))
        for o, (cs, vs) in enumerate(zip(a["cands"], a["vals"])):
            if not cs:
                if tl[0] is not None:
                    res[:, o] = tl[0][:, o]
                continue
            red = a["reduce"]
            if red in ("amax", "amin"):
                p, i = cs[a["winner"][o]]
                if tl[p] is not None:
                    res[:, o] = tl[p][:, i]
                continue
            acc = zeros(B)
            for k, (p, i) in enumerate(cs):
                if tl[p] is None:
                    continue
                if red == "prod":
                    c = Q1
                    for j, v in enumerate(vs):
                        if j != k:
                            c = c * v
                else:
                    c = q(1) / len(cs) if red == "mean" else Q1
                acc = acc + tl[p][:, i] * c
            res[:, o] = acc
        return res.reshape((B,) + out.shape)


@register_new("aten.multilabel_margin_loss_forward.default")
class MultilabelMarginLoss(Rule):
    """multilabel_margin_loss: per sample, sum over targets j and non-targets i of
    max(0, 1 - (x[j] - x[i])) / C. Each hinge's case is the sign of 1 - x[j] + x[i]."""

    nonsmooth = True

    def _pairs(self, args):
        x, y = _obj(args[0]), np.asarray(args[1])
        x2 = x.reshape(1, -1) if x.ndim <= 1 else x
        y2 = y.reshape(1, -1) if y.ndim <= 1 else y
        N, C = x2.shape
        ia, ib, g, is_t = [], [], [], np.zeros((N, C), dtype=np.int64)
        for n in range(N):
            tg = []
            for v in y2[n]:
                if v < 0:
                    break
                tg.append(int(v))
            is_t[n, tg] = 1
            for j in tg:                # a repeated target counts once per occurrence, as in the kernel
                for i in range(C):
                    if i not in tg:
                        ia.append(n * C + i)
                        ib.append(n * C + j)
                        g.append(n)
        return x, x2, N, C, np.asarray(ia, dtype=np.int64), np.asarray(ib, dtype=np.int64), \
            np.asarray(g, dtype=np.int64), is_t

    def _red(self, args, kwargs):
        return args[2] if len(args) > 2 else kwargs.get("reduction", 1)

    def forward(self, ctx, args, kwargs):
        x, x2, N, C, ia, ib, g, is_t = self._pairs(args)
        xf = x2.ravel()
        z = np.asarray(Q1 + xf[ia] - xf[ib], dtype=object) if ia.size else np.zeros(0, dtype=object)
        per = zeros(N)
        for k in range(z.size):
            if z[k] > 0:
                per[g[k]] = per[g[k]] + z[k]
        per = per * (q(1) / C)
        red = self._red(args, kwargs)
        if red == 0:
            loss = per if x.ndim > 1 else per.reshape(())
        else:
            s = Q0
            for v in per:
                s = s + v
            loss = np.asarray(s * (q(1) / N) if red == 1 else s, dtype=object)
        ist = np.asarray(np.vectorize(q, otypes=[object])(is_t.reshape(x.shape)), dtype=object)
        return np.asarray(loss, dtype=object), ist

    def discs(self, ctx, args, kwargs, out):
        x, x2, N, C, ia, ib, g, is_t = self._pairs(args)
        xf = x2.ravel()
        vals = np.asarray(Q1 + xf[ia] - xf[ib], dtype=object) if ia.size else np.zeros(0, dtype=object)
        return [Disc("hinge", 0, ia, 0, ib, None, vals, g)]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        t = targs[0]
        if t is None:
            return None
        x, x2, N, C, ia, ib, g, is_t = self._pairs(args)
        xf = x2.ravel()
        B = t.shape[0]
        tf = np.asarray(t, dtype=object).reshape(B, -1)
        per = zeros((B, N))
        for k in range(ia.size):
            if Q1 + xf[ia[k]] - xf[ib[k]] > 0:
                per[:, g[k]] = per[:, g[k]] + tf[:, ia[k]] - tf[:, ib[k]]
        per = per * (q(1) / C)
        red = self._red(args, kwargs)
        if red == 0:
            res = per if x.ndim > 1 else per.reshape(B)
        else:
            s = per.sum(axis=1)
            res = s * (q(1) / N) if red == 1 else s
        return np.asarray(res, dtype=object), None


class ConvTranspose(Rule):
    """Transposed convolution: the adjoint of the convolution with the same weights (whose
    transpose mtcheck.ops.linalg computes exactly), plus the bias."""

    def _params(self, args):
        x, w, b = args[0], args[1], args[2] if len(args) > 2 else None
        stride, padding, dilation, transposed, out_pad, groups = args[3:9]
        return x, w, b, list(stride), list(padding), list(dilation), list(out_pad), groups

    def _out_sp(self, x_sp, w, stride, padding, dilation, out_pad):
        ks = w.shape[2:]
        return tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1
                     for n, k, s, p, d, op in zip(x_sp, ks, stride, padding, dilation, out_pad))

    def _apply(self, xb, w, stride, padding, dilation, out_pad, groups, cot_batch=False):
        """conv_transpose of xb (N, C_in, *sp) or, with cot_batch, of (B, N, C_in, *sp) -> (B, N, C_out, *sp')."""
        from .linalg import _conv_vjp

        c = xb if cot_batch else xb[None]
        N = c.shape[1]
        sp = self._out_sp(c.shape[3:], w, stride, padding, dilation, out_pad)
        c_out = w.shape[1] * groups
        dummy = np.empty((N, c_out) + sp, dtype=object)
        gx, _ = _conv_vjp(dummy, w, np.asarray(c, dtype=object), stride, padding, dilation, groups)
        return gx if cot_batch else gx[0]

    def forward(self, ctx, args, kwargs):
        x, w, b, stride, padding, dilation, out_pad, groups = self._params(args)
        x, w = _obj(x), _obj(w)
        unb = x.ndim == w.ndim - 1
        xb = x[None] if unb else x
        y = self._apply(xb, w, stride, padding, dilation, out_pad, groups)
        if b is not None:
            y = y + _obj(b).reshape((1, -1) + (1,) * (y.ndim - 2))
        y = np.asarray(y, dtype=object)
        return y[0] if unb else y

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        x, w, b, stride, padding, dilation, out_pad, groups = self._params(args)
        x, w = _obj(x), _obj(w)
        tx, tw, tb = _t(targs, 0), _t(targs, 1), _t(targs, 2)
        unb = x.ndim == w.ndim - 1
        res = None
        if tx is not None:
            B = tx.shape[0]
            txb = np.asarray(tx, dtype=object)
            txb = txb[:, None] if unb else txb
            r = self._apply(txb, w, stride, padding, dilation, out_pad, groups, cot_batch=True)
            res = r[:, 0] if unb else r
        if tw is not None:
            xb = x[None] if unb else x
            parts = [self._apply(xb, np.asarray(tw[i], dtype=object), stride, padding, dilation, out_pad, groups)
                     for i in range(tw.shape[0])]
            r = np.stack([p[0] if unb else p for p in parts])
            res = add_t(res, r)
        if tb is not None:
            B = tb.shape[0]
            shape = (B,) + ((1,) if not unb else ()) + (tb.shape[1],) + (1,) * (out.ndim - (1 if not unb else 0) - 1)
            res = add_t(res, np.broadcast_to(np.asarray(tb, dtype=object).reshape(shape), (B,) + out.shape))
        return None if res is None else np.asarray(res, dtype=object)


# ---------------------------------------------------------------- variants of ops modelled elsewhere

class _Variants(Rule):
    """An op whose other variants another module models: ``pick`` chooses the rule per call.
    Reverse mode (``vjp``) is the chosen rule's, where it has one."""

    def __init__(self, base, alt, use_alt, nonsmooth=True):
        self.base, self.alt, self.use_alt = base, alt, use_alt
        self.nonsmooth = nonsmooth
        self.names = getattr(base, "names", ())

    @property
    def balls(self):
        return getattr(self.base, "balls", False)

    def _pick(self, ctx, args, kwargs):
        r = self.alt if self.use_alt(ctx, args, kwargs) else self.base
        if not getattr(r, "balls", False):
            from .._ball import NotEnclosed, any_ball

            if any_ball(args, kwargs):
                raise NotEnclosed(f"this variant of {ctx.op} has no enclosure rule")
        ctx.aux["variant"] = r
        return r

    def forward(self, ctx, args, kwargs):
        return self._pick(ctx, args, kwargs).forward(ctx, args, kwargs)

    def discs(self, ctx, args, kwargs, out):
        r = self._pick(ctx, args, kwargs)
        return r.discs(ctx, args, kwargs, out) if r.nonsmooth else []

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return self._pick(ctx, args, kwargs).jvp(ctx, args, kwargs, out, targs, tkwargs)

    def vjp(self, ctx, args, kwargs, out, cot):
        r = self._pick(ctx, args, kwargs)
        if getattr(r, "vjp", None) is None:
            from ..model import NoReverse

            raise NoReverse(f"{ctx.op}: this variant has no reverse-mode rule")
        return r.vjp(ctx, args, kwargs, out, cot)


def _override(name, use_alt, alt):
    """Route the variants ``use_alt`` selects of an op another module registered to ``alt``."""
    from . import _RULES

    base = _RULES.get(name)
    if base is None:
        _RULES[name] = alt
    elif not isinstance(base, _Variants):
        _RULES[name] = _Variants(base, alt, use_alt, nonsmooth=base.nonsmooth or alt.nonsmooth)


def _scatter_reduce_linear(ctx, args, kwargs):
    reduce = args[4] if len(args) > 4 else kwargs.get("reduce")
    return reduce not in ("amax", "amin")


def _embedding_bag_not_max(ctx, args, kwargs):
    mode = args[4] if len(args) > 4 else kwargs.get("mode", 0)
    return mode != 2


def _transposed(ctx, args, kwargs):
    return ctx.op.startswith("aten.convolution") and len(args) > 6 and bool(args[6])


def _register_variants():
    from .extra_index import LinearByBasis

    group = GroupReduce()
    for n in ("aten.scatter_reduce.two", "aten.scatter_reduce_.two"):
        _override(n, _scatter_reduce_linear, group)
    register_new("aten.index_reduce.default", "aten.index_reduce_.default")(GroupReduce)
    lin = LinearByBasis()
    for n in ("aten._embedding_bag.default", "aten._embedding_bag_forward_only.default"):
        _override(n, _embedding_bag_not_max, lin)
    _override("aten.convolution.default", _transposed, ConvTranspose())


_register_variants()


@register_new("aten._linalg_check_errors.default")
class LinalgCheckErrors(Rule):
    """_linalg_check_errors(info, api_name, is_matrix): raises in the framework on a failed
    factorization, returns nothing. The exact rules refuse singular matrices themselves."""

    def forward(self, ctx, args, kwargs):
        return np.asarray(True)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return None


@register_new("aten.triangular_solve.default")
class TriangularSolve(Rule):
    """triangular_solve(b, A, upper, transpose, unitriangular) = (X, A's copy): op(T) X = b with T
    the triangle of A (transposed when ``transpose``)."""

    def _params(self, args, kwargs):
        get = lambda i, k, d: args[i] if len(args) > i else kwargs.get(k, d)  # noqa: E731
        return get(2, "upper", True), get(3, "transpose", False), get(4, "unitriangular", False)

    def _tri(self, a, upper, unit, transpose):
        t = SolveTriangular()._tri(a, upper, unit)
        return np.swapaxes(t, -1, -2) if transpose else t

    def forward(self, ctx, args, kwargs):
        upper, transpose, unit = self._params(args, kwargs)
        b, a = _obj(args[0]), _obj(args[1])
        ti = _inv(self._tri(a, upper, unit, transpose))
        ctx.aux["ti"] = ti
        return np.asarray(matmul(ti, b), dtype=object), a.copy()

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        upper, transpose, unit = self._params(args, kwargs)
        ti, x = ctx.aux["ti"], out[0]
        tb, ta = _t(targs, 0), _t(targs, 1)
        res = None
        if tb is not None:
            res = matmul(np.broadcast_to(ti, (tb.shape[0],) + ti.shape), tb)
        if ta is not None:
            B = ta.shape[0]
            n = ti.shape[-1]
            mask = SolveTriangular()._tri_mask(n, upper, unit)
            tt = np.where(mask, ta, np.asarray(Q0, dtype=object))
            tt = np.swapaxes(tt, -1, -2) if transpose else tt
            r = -matmul(np.broadcast_to(ti, (B,) + ti.shape), matmul(tt, np.broadcast_to(x, (B,) + x.shape)))
            res = add_t(res, r)
        return (None if res is None else tan(res)), (None if ta is None else ta)


def _perm_from_pivots(piv, n):
    """The permutation matrix P (A = P L U) of LAPACK's 1-based sequential row swaps."""
    perm = list(range(n))
    for i, p in enumerate(np.asarray(piv).reshape(-1).tolist()):
        p = int(p) - 1
        perm[i], perm[p] = perm[p], perm[i]
    P = zeros((n, n))
    for i, r in enumerate(perm):
        P[r, i] = Q1
    return P


def _lu_parts(lu, piv):
    """(P, L, U) of packed LU factors (batched over leading dimensions)."""
    n = lu.shape[-1]
    low = np.tril(np.ones((n, n), dtype=bool), -1)
    L = np.asarray(np.where(low, lu, np.asarray(Q0, dtype=object)), dtype=object).copy()
    for i in range(n):
        L[..., i, i] = Q1
    U = np.asarray(np.where(np.triu(np.ones((n, n), dtype=bool)), lu, np.asarray(Q0, dtype=object)), dtype=object)
    P = np.empty(lu.shape, dtype=object)
    pv = np.asarray(piv)
    for idx in np.ndindex(*lu.shape[:-2]):
        P[idx] = _perm_from_pivots(pv[idx], n)
    return P, L, U, low


@register_new("aten.linalg_lu_solve.default")
class LuSolve(Rule):
    """linalg_lu_solve(LU, pivots, B, left, adjoint): solves A X = B (or X A = B; A^T for adjoint)
    with A = P L U rebuilt exactly from the packed factors."""

    def _params(self, args, kwargs):
        return kwargs.get("left", args[3] if len(args) > 3 else True), \
            kwargs.get("adjoint", args[4] if len(args) > 4 else False)

    def _a(self, lu, piv):
        P, L, U, low = _lu_parts(lu, piv)
        return np.asarray(matmul(P, matmul(L, U)), dtype=object), P, L, U, low

    def forward(self, ctx, args, kwargs):
        left, adjoint = self._params(args, kwargs)
        lu, piv, b = _obj(args[0]), args[1], _obj(args[2])
        a, *_ = self._a(lu, piv)
        if adjoint:
            a = np.swapaxes(a, -1, -2)
        ai = _inv(a)
        ctx.aux["ai"] = ai
        return np.asarray(matmul(ai, b) if left else matmul(b, ai), dtype=object)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        left, adjoint = self._params(args, kwargs)
        lu, piv = _obj(args[0]), args[1]
        tl, tb = _t(targs, 0), _t(targs, 2)
        ai = ctx.aux["ai"]
        res = None
        if tb is not None:
            aib = np.broadcast_to(ai, (tb.shape[0],) + ai.shape)
            res = matmul(aib, tb) if left else matmul(tb, aib)
        if tl is not None:
            B = tl.shape[0]
            _, P, L, U, low = self._a(lu, piv)
            z = np.asarray(Q0, dtype=object)
            dL = np.where(low, tl, z)
            dU = np.where(np.triu(np.ones(low.shape, dtype=bool)), tl, z)
            Pb, Lb, Ub = (np.broadcast_to(m, (B,) + m.shape) for m in (P, L, U))
            da = matmul(Pb, add_t(matmul(dL, Ub), matmul(Lb, dU)))
            if adjoint:
                da = np.swapaxes(da, -1, -2)
            aib = np.broadcast_to(ai, (B,) + ai.shape)
            xb = np.broadcast_to(out, (B,) + out.shape)
            r = -matmul(aib, matmul(da, xb)) if left else -matmul(matmul(xb, da), aib)
            res = add_t(res, r)
        return None if res is None else tan(res)


@register_new("aten.lu_unpack.default")
class LuUnpack(Rule):
    """lu_unpack(LU, pivots) = (P, L, U): P a constant permutation, L unit lower, U upper."""

    def forward(self, ctx, args, kwargs):
        lu = _obj(args[0])
        m, n = lu.shape[-2:]
        if m != n:
            raise NotModelled("lu_unpack of a rectangular LU")
        P, L, U, _ = _lu_parts(lu, args[1])
        return P, L, U

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        t = targs[0]
        if t is None:
            return None
        n = t.shape[-1]
        z = np.asarray(Q0, dtype=object)
        return None, tan(np.where(np.tril(np.ones((n, n), dtype=bool), -1), t, z)), \
            tan(np.where(np.triu(np.ones((n, n), dtype=bool)), t, z))


_reject_new("random", "it is random; put the model in eval mode (model.eval()), remove the randomness, or pass "
            "torch_seed=<int> to mtcheck.check to check it with its random draws fixed",
            "aten.randint_like.default", "aten.randint_like.low_dtype", "aten.multinomial.default",
            "aten.normal.Tensor_Tensor", "aten.normal.Tensor_float", "aten.normal.float_Tensor",
            "aten.poisson.default", "aten.exponential_.default", "aten.cauchy_.default", "aten.geometric_.default",
            "aten.log_normal_.default", "aten.random_.default", "aten.random_.from", "aten.random_.to",
            "aten.normal.float_float", "aten.randperm.default", "aten.bernoulli.p", "aten.bernoulli_.Tensor")
_reject_new("outside", "a factorization with pivoting: its factors jump where the pivot choice changes "
            "(discontinuous, although their product is not)",
            "aten.linalg_lu_factor_ex.default", "aten.linalg_lu.default", "aten.linalg_ldl_factor_ex.default",
            "aten.lu_factor_ex.default", "aten._lu_with_info.default")
_reject_new("irrational", "its values are irrational and mtcheck has no enclosure rule for it yet",
            "aten.special_zeta.default",
            "aten.igamma.default", "aten.igammac.default")
