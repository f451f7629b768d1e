"""Smooth arithmetic: add/sub/mul/div, reductions, dtype casts, where, batch_norm in eval."""

from __future__ import annotations

import numpy as np

from . import NotLipschitz, NotModelled, Rule, register
from .._exact import Q0, Q1, as_exact, q
from ._util import add_t, arg_grads, bcast_tangent, exact_scalar, obj, scale_t, shape_of, tan, unbroadcast


def _is_float_out(ctx):
    return ctx.dtype is not None and ctx.dtype.is_floating_point


def _lift(v, ctx):
    """An operand as an exact object array (floats) or a scalar fmpq."""
    if isinstance(v, np.ndarray):
        return v if v.dtype == object else as_exact(v)
    return exact_scalar(v, ctx.dtype)


def _raw(v):
    return v


def _live(ctx, pos):
    """Whether tensor argument ``pos`` depends on the inputs (set by the model before a vjp)."""
    live = ctx.aux.get("live")
    return True if live is None or pos >= len(live) else bool(live[pos])


def _t(targs, i):
    return targs[i] if i < len(targs) else None


class _Binary(Rule):
    """Elementwise binary op on (tensor|scalar, tensor|scalar), numpy broadcasting."""
    balls = True


    def operands(self, ctx, args, kwargs):
        a, b = args[0], args[1]
        return a, b

    def forward(self, ctx, args, kwargs):
        a, b = self.operands(ctx, args, kwargs)
        if not _is_float_out(ctx):
            return np.asarray(self.int_op(np.asarray(a), np.asarray(b), kwargs))
        return obj(self.op(_lift(a, ctx), _lift(b, ctx), kwargs))

    def int_op(self, a, b, kwargs):
        return self.op(a, b, kwargs)


def _shape(v):
    return shape_of(v) if isinstance(v, np.ndarray) else ()


@register("aten.add.Tensor", "aten.add.Scalar", "aten.add_.Tensor", "aten.add_.Scalar")
class Add(_Binary):
    def op(self, a, b, kwargs):
        alpha = kwargs.get("alpha", 1)
        return a + b * (q(alpha) if not isinstance(b, np.ndarray) or b.dtype == object else alpha)

    def int_op(self, a, b, kwargs):
        return a + b * kwargs.get("alpha", 1)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        alpha = exact_scalar(kwargs.get("alpha", 1), ctx.dtype)
        ta = bcast_tangent(_t(targs, 0), _shape(args[0]), out.shape)
        tb = bcast_tangent(_t(targs, 1), _shape(args[1]), out.shape)
        return add_t(ta, scale_t(tb, alpha) if alpha != Q1 else tb)

    sign = 1

    def vjp(self, ctx, args, kwargs, out, cot):
        alpha = exact_scalar(kwargs.get("alpha", 1), ctx.dtype) * self.sign
        g = {}
        if isinstance(args[0], np.ndarray) and _live(ctx, 0):
            g[0] = unbroadcast(cot, args[0].shape)
        if isinstance(args[1], np.ndarray) and _live(ctx, 1):
            g[1] = unbroadcast(cot * alpha if alpha != Q1 else cot, args[1].shape)
        return arg_grads(args, g)


@register("aten.sub.Tensor", "aten.sub.Scalar", "aten.sub_.Tensor", "aten.sub_.Scalar")
class Sub(Add):
    def op(self, a, b, kwargs):
        return super().op(a, -b, kwargs)

    def int_op(self, a, b, kwargs):
        return a - b * kwargs.get("alpha", 1)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        alpha = exact_scalar(kwargs.get("alpha", 1), ctx.dtype)
        ta = bcast_tangent(_t(targs, 0), _shape(args[0]), out.shape)
        tb = bcast_tangent(_t(targs, 1), _shape(args[1]), out.shape)
        return add_t(ta, scale_t(tb, -alpha))

    sign = -1


@register("aten.rsub.Tensor", "aten.rsub.Scalar")
class RSub(Rule):
    balls = True
    def forward(self, ctx, args, kwargs):
        return Sub().forward(ctx, (args[1], args[0]), kwargs)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return Sub().jvp(ctx, (args[1], args[0]), kwargs, out, (_t(targs, 1), _t(targs, 0)), tkwargs)

    def vjp(self, ctx, args, kwargs, out, cot):
        alpha = exact_scalar(kwargs.get("alpha", 1), ctx.dtype)
        g = {}
        if isinstance(args[0], np.ndarray):       # rsub(a, b) = b - alpha * a
            g[0] = unbroadcast(cot * (-alpha), args[0].shape)
        if isinstance(args[1], np.ndarray):
            g[1] = unbroadcast(cot, args[1].shape)
        return arg_grads(args, g)


@register("aten.neg.default", "aten.neg_.default")
class Neg(Rule):
    balls = True
    def forward(self, ctx, args, kwargs):
        return -args[0]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return scale_t(targs[0], -1)

    def vjp(self, ctx, args, kwargs, out, cot):
        return arg_grads(args, {0: -cot})


@register("aten.positive.default")
class Positive(Rule):
    balls = True
    def forward(self, ctx, args, kwargs):
        return args[0]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return targs[0]

    def vjp(self, ctx, args, kwargs, out, cot):
        return arg_grads(args, {0: cot})


@register("aten.mul.Tensor", "aten.mul.Scalar", "aten.mul_.Tensor", "aten.mul_.Scalar")
class Mul(_Binary):
    def op(self, a, b, kwargs):
        return a * b

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        a, b = _lift(args[0], ctx), _lift(args[1], ctx)
        ta = bcast_tangent(_t(targs, 0), _shape(args[0]), out.shape)
        tb = bcast_tangent(_t(targs, 1), _shape(args[1]), out.shape)
        return add_t(None if ta is None else ta * b, None if tb is None else tb * a)

    def vjp(self, ctx, args, kwargs, out, cot):
        a, b = _lift(args[0], ctx), _lift(args[1], ctx)
        g = {}
        if isinstance(args[0], np.ndarray) and _live(ctx, 0):
            g[0] = unbroadcast(cot * b, args[0].shape)
        if isinstance(args[1], np.ndarray) and _live(ctx, 1):
            g[1] = unbroadcast(cot * a, args[1].shape)
        return arg_grads(args, g)


@register("aten.div.Tensor", "aten.div.Scalar", "aten.div_.Tensor", "aten.div_.Scalar")
class Div(_Binary):
    def op(self, a, b, kwargs):
        from .._ball import Ball

        if isinstance(b, Ball):
            return a / b                      # an enclosure of the quotient (b's ball excludes 0)
        if isinstance(b, np.ndarray):
            if (b == 0).any():
                raise ZeroDivisionError("division by an exact zero")
            return a * np.vectorize(lambda v: Q1 / v, otypes=[object])(b) if b.size else a * b
        if b == 0:
            raise ZeroDivisionError("division by an exact zero")
        return a * (Q1 / b)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        b = _lift(args[1], ctx)
        ta = bcast_tangent(_t(targs, 0), _shape(args[0]), out.shape)
        tb = bcast_tangent(_t(targs, 1), _shape(args[1]), out.shape)
        inv = self.op(Q1, b, {}) if not isinstance(b, np.ndarray) else self.op(np.ones_like(b) * Q1, b, {})
        res = None if ta is None else ta * inv
        if tb is not None:
            res = add_t(res, -(tb * (out * inv)))
        return res

    def vjp(self, ctx, args, kwargs, out, cot):
        b = _lift(args[1], ctx)
        inv = self.op(Q1, b, {}) if not isinstance(b, np.ndarray) else self.op(np.ones_like(b) * Q1, b, {})
        g = {}
        if isinstance(args[0], np.ndarray) and _live(ctx, 0):
            g[0] = unbroadcast(cot * inv, args[0].shape)
        if isinstance(args[1], np.ndarray) and _live(ctx, 1):
            g[1] = unbroadcast(-(cot * (out * inv)), args[1].shape)
        return arg_grads(args, g)


def _dims(dim, ndim):
    if ndim == 0:
        return ()          # a 0-d tensor: dim 0 (or -1) names the tensor itself, nothing is reduced
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
        return tuple(range(ndim))
    if isinstance(dim, int):
        dim = [dim]
    return tuple(sorted(d % ndim if ndim else 0 for d in dim))


def _reduce_sum(x, dims, keepdim):
    if x.ndim == 0:
        return x
    s = np.sum(x, axis=dims, keepdims=keepdim) if dims else x
    s = obj(s)
    if s.ndim == 0 and getattr(s, "rad", None) is None and not isinstance(s.item(), type(Q0)):  # not a Ball
        s = obj(q(s.item()))
    return s


@register("aten.sum.default", "aten.sum.dim_IntList")
class Sum(Rule):
    balls = True
    def _params(self, args, kwargs):
        x = args[0]
        dim = args[1] if len(args) > 1 else kwargs.get("dim")
        keep = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
        return x, _dims(dim, x.ndim), keep

    def forward(self, ctx, args, kwargs):
        x, dims, keep = self._params(args, kwargs)
        if x.dtype != object:
            return np.asarray(np.sum(x, axis=dims, keepdims=keep))
        s = _reduce_sum(x, dims, keep)
        c = self.scale(x, dims)
        return s * c if c != Q1 else s

    def scale(self, x, dims):
        return Q1

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        x, dims, keep = self._params(args, kwargs)
        t = targs[0]
        if x.ndim == 0:
            return t
        tdims = tuple(d + 1 for d in dims)
        s = tan(np.sum(t, axis=tdims, keepdims=keep))
        c = self.scale(x, dims)
        return s * c if c != Q1 else s

    def vjp(self, ctx, args, kwargs, out, cot):
        x, dims, keep = self._params(args, kwargs)
        B = cot.shape[0]
        if x.ndim == 0:
            return arg_grads(args, {0: cot})
        kept = tuple(1 if d in dims else n for d, n in enumerate(x.shape))
        g = np.broadcast_to(cot.reshape((B,) + kept), (B,) + x.shape)
        c = self.scale(x, dims)
        return arg_grads(args, {0: obj(g * c if c != Q1 else g.copy())})


@register("aten.mean.default", "aten.mean.dim")
class Mean(Sum):
    def scale(self, x, dims):
        n = 1
        for d in dims if x.ndim else ():     # a 0-d tensor: its mean is itself
            n *= x.shape[d]
        return q(1) / n if n else Q1


@register("aten.cumsum.default")
class CumSum(Rule):
    def forward(self, ctx, args, kwargs):
        x, dim = args[0], args[1]
        return np.cumsum(x, axis=dim % max(x.ndim, 1)) if x.ndim else x

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        x, dim = args[0], args[1]
        return np.cumsum(targs[0], axis=dim % max(x.ndim, 1) + 1) if x.ndim else targs[0]

    def vjp(self, ctx, args, kwargs, out, cot):
        x, dim = args[0], args[1]
        if not x.ndim:
            return arg_grads(args, {0: cot})
        ax = dim % x.ndim + 1
        return arg_grads(args, {0: np.flip(np.cumsum(np.flip(cot, axis=ax), axis=ax), axis=ax)})


def _float_to_int(ctx, x):
    """A float -> integer or bool conversion: a step function (truncation toward 0; x != 0),
    locally constant away from its jumps (the nonzero integers; 0 for bool), where the integer
    result has no derivative to check. On a jump it is outside the theory."""
    import math

    import torch

    from .._ball import Ball

    if isinstance(x, Ball):
        raise NotModelled("a float-to-integer conversion of an enclosed value")
    flat = x.ravel().tolist()
    if ctx.dtype == torch.bool:
        if any(v == 0 for v in flat):
            raise NotLipschitz("a float-to-bool conversion jumps at 0 and the input sits on it (a step function)")
        return np.ones(x.shape, dtype=bool)
    if any(v != 0 and v == math.floor(v) for v in flat):
        raise NotLipschitz("a float-to-integer conversion truncates: it jumps at every nonzero integer and the "
                           "input sits on one (a step function)")
    vals = [int(math.floor(v)) if v >= 0 else -int(math.floor(-v)) for v in flat]
    info = torch.iinfo(ctx.dtype)
    if any(v < info.min or v > info.max for v in vals):
        raise NotModelled(f"a float-to-integer conversion out of the range of {ctx.dtype} (the result is undefined)")
    return np.array(vals, dtype=np.int64).reshape(x.shape)


@register("aten._to_copy.default", "aten.to.dtype", "aten.to.dtype_layout", "aten._to_copy.out")
class ToCopy(Rule):
    """A dtype/device copy. Exact semantics keep the value; the exactness check sees any rounding."""
    balls = True


    def forward(self, ctx, args, kwargs):
        x = args[0]
        if _is_float_out(ctx):
            return x if x.dtype == object else as_exact(x)
        if x.dtype == object:
            return _float_to_int(ctx, x)
        return x.astype(bool) if ctx.dtype.__repr__() == "torch.bool" else x.astype(np.int64)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return targs[0] if _is_float_out(ctx) else None

    def vjp(self, ctx, args, kwargs, out, cot):
        return arg_grads(args, {0: cot})



@register("aten.detach.default", "aten.detach_.default")
class Detach(Rule):
    """detach() is modelled by its value: mtcheck judges the function the program
    computes, so a gradient cut by detach() shows up as a difference (autograd's own
    internal detaches produce tensors the program never reads)."""
    balls = True


    def forward(self, ctx, args, kwargs):
        return args[0]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return targs[0]

    def vjp(self, ctx, args, kwargs, out, cot):
        return arg_grads(args, {0: cot})


def _unselected_nonfinite(v, cond, where_true):
    from .._exact import NonFinite, NonFiniteValue

    from .._ball import Ball

    if isinstance(v, Ball) or not (isinstance(v, np.ndarray) and v.dtype == object):
        return v
    bad = np.array([isinstance(e, NonFinite) for e in v.ravel().tolist()], dtype=bool).reshape(v.shape)
    if not bad.any():
        return v
    shape = np.broadcast_shapes(np.shape(cond), v.shape)
    sel = np.broadcast_to(np.asarray(cond, dtype=bool), shape)
    if not where_true:
        sel = ~sel
    if (np.broadcast_to(bad, shape) & sel).any():
        raise NonFiniteValue("a non-finite constant selected by where()")
    return np.where(bad, Q0, v)


@register("aten.where.self", "aten.where.ScalarOther", "aten.where.ScalarSelf", "aten.where.Scalar")
class Where(Rule):
    balls = True
    def forward(self, ctx, args, kwargs):
        cond, a, b = args[0], args[1], args[2]
        if _is_float_out(ctx):
            a, b = _lift(a, ctx), _lift(b, ctx)
            # a NaN or infinity of a constant (logdet's where(sign == -1, nan, logabsdet)) where the
            # condition never selects it does not reach the output; selected, it is refused
            a, b = _unselected_nonfinite(a, cond, True), _unselected_nonfinite(b, cond, False)
        r = np.where(cond, a, b)
        return obj(r) if _is_float_out(ctx) else np.asarray(r)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        cond = np.broadcast_to(args[0], out.shape)
        ta = bcast_tangent(_t(targs, 1), _shape(args[1]), out.shape)
        tb = bcast_tangent(_t(targs, 2), _shape(args[2]), out.shape)
        if ta is None and tb is None:
            return None
        z = obj(Q0)
        return np.where(cond[None], ta if ta is not None else z, tb if tb is not None else z)

    def vjp(self, ctx, args, kwargs, out, cot):
        cond = np.broadcast_to(args[0], out.shape)[None]
        g = {}
        if isinstance(args[1], np.ndarray) and args[1].dtype == object:
            g[1] = unbroadcast(np.where(cond, cot, Q0), args[1].shape)
        if isinstance(args[2], np.ndarray) and args[2].dtype == object:
            g[2] = unbroadcast(np.where(cond, Q0, cot), args[2].shape)
        return arg_grads(args, g)


@register("aten.masked_fill.Scalar", "aten.masked_fill_.Scalar", "aten.masked_fill.Tensor",
          "aten.masked_fill_.Tensor")
class MaskedFill(Rule):
    balls = True
    def forward(self, ctx, args, kwargs):
        x, mask, val = args[0], args[1], args[2]
        v = _lift(val, ctx)
        if isinstance(v, np.ndarray) and v.ndim == 0:
            v = v.item()
        return obj(np.where(mask, v, x))

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        mask = np.broadcast_to(args[1], out.shape)
        t = targs[0]
        tv = bcast_tangent(_t(targs, 2), _shape(args[2]), out.shape) if isinstance(args[2], np.ndarray) else None
        z = obj(Q0)
        if t is None and tv is None:
            return None
        return np.where(mask[None], tv if tv is not None else z, t if t is not None else z)

    def vjp(self, ctx, args, kwargs, out, cot):
        mask = np.broadcast_to(args[1], out.shape)[None]
        g = {0: unbroadcast(np.where(mask, Q0, cot), args[0].shape)}
        if isinstance(args[2], np.ndarray) and args[2].dtype == object:
            g[2] = unbroadcast(np.where(mask, cot, Q0), args[2].shape)
        return arg_grads(args, g)


@register("aten.pow.Tensor_Scalar", "aten.square.default")
class PowInt(Rule):
    """Integer powers are polynomials, so their values stay rational."""

    def _exp(self, ctx, args):
        e = 2 if ctx.op.startswith("aten.square") else args[1]
        if float(e) != int(e) or int(e) < 0:
            raise NotModelled(f"pow with exponent {e!r}: only non-negative integer powers have rational values")
        return int(e)

    def forward(self, ctx, args, kwargs):
        e = self._exp(ctx, args)
        x = args[0]
        return obj(np.vectorize(lambda v: v ** e, otypes=[object])(x) if x.size else x)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        e = self._exp(ctx, args)
        x = args[0]
        if e == 0:
            return None
        d = np.vectorize(lambda v: e * v ** (e - 1), otypes=[object])(x) if x.size else x
        return targs[0] * d

    def vjp(self, ctx, args, kwargs, out, cot):
        e = self._exp(ctx, args)
        x = args[0]
        if e == 0:
            return arg_grads(args, {})
        d = np.vectorize(lambda v: e * v ** (e - 1), otypes=[object])(x) if x.size else x
        return arg_grads(args, {0: cot * d})



def _bn(ctx, x, weight, bias, mean, var, eps):
    """Eval batch norm: y = (x - running_mean) * weight / sqrt(running_var + eps) + bias, the
    mathematical function with ``eps`` the exact double PyTorch passes; ``1/sqrt(var + eps)`` is
    enclosed with Arb (a Ball, radius 0 where it is exact)."""
    from .norms import _rsqrt

    C = x.shape[1]
    shape = (1, C) + (1,) * (x.ndim - 2)
    inv = _rsqrt(var + q(float(eps))).reshape(shape)
    xc = x - mean.reshape(shape)
    ctx.aux["inv"] = inv
    ctx.aux["xn"] = xc * inv
    ctx.aux["alpha"] = inv * weight.reshape(shape) if weight is not None else inv
    ctx.aux["wshape"] = shape
    y = ctx.aux["alpha"] * xc
    y = y + bias.reshape(shape) if bias is not None else y
    return _keyed(y, x, C)


def _keyed(y, x, C):
    """Eval batch norm's output is the same enclosed affine map of each channel: two elements of
    one channel with equal exact inputs (or inputs proven equal) are equal. Their keys say so
    (:func:`mtcheck._ball.new_keys`), so a max-pool over them decides the tie."""
    from .._ball import Ball, keys_of, new_keys, with_keys

    if not isinstance(y, Ball) or y.shape != np.shape(x) or x.ndim < 2 or y.size > 1 << 22:
        return y
    ch = np.broadcast_to(np.arange(C).reshape((1, C) + (1,) * (x.ndim - 2)), x.shape).ravel().tolist()
    if isinstance(x, Ball):
        kx = keys_of(x)
        if kx is None:
            return y
        groups = [(c, -1, k) if k >= 0 else (c, i) for i, (c, k) in enumerate(zip(ch, kx.ravel().tolist()))]
    elif x.dtype == object:
        groups = list(zip(ch, x.ravel().tolist()))
    else:
        return y
    return with_keys(y, new_keys(groups).reshape(y.shape))


@register("aten.native_batch_norm.default", "aten._native_batch_norm_legit_no_training.default",
          "aten._native_batch_norm_legit.default", "aten.batch_norm.default",
          "aten._batch_norm_impl_index.default", "aten._native_batch_norm_legit.no_stats",
          "aten._batch_norm_with_update.default", "aten._batch_norm_no_update.default")
class BatchNormEval(Rule):
    """Batch norm, both modes.

    Eval (running statistics): ``y = (x - running_mean) / sqrt(running_var + eps) * w + b``, an
    affine map of ``x``. Training (batch statistics): the mean and the
    biased variance over the batch and spatial axes (every axis but 1) are deterministic functions
    of the input, modelled like layer norm over those axes (:func:`_bn_train`); ``save_mean``
    and ``save_invstd`` (per channel) are outputs whose values are modelled, but PyTorch declares
    them non-differentiable (they never require grad), so they are constants to the derivative,
    like a detached tensor. The running-statistics update is a side effect on buffers that no
    output depends on, so it is not part of the function."""

    balls = True

    def _unpack(self, ctx, args, kwargs):
        """(x, weight, bias, running_mean, running_var, training, eps)."""
        op = ctx.op
        x, weight, bias = args[:3]
        if op.startswith("aten._native_batch_norm_legit.no_stats"):
            return x, weight, bias, None, None, bool(args[3]), args[5]
        rmean, rvar = args[3], args[4]
        if op.startswith("aten._native_batch_norm_legit_no_training") or op.startswith("aten._batch_norm_no_update"):
            training, eps = False, args[6]
        elif op.startswith("aten._batch_norm_with_update"):
            training, eps = True, args[6]
        else:
            training, eps = args[5], args[7]
        if not training and (rmean is None or rvar is None):
            raise NotModelled("batch_norm in eval mode without running statistics")
        return x, weight, bias, rmean, rvar, bool(training), eps

    def _outs(self, ctx, y, mean, invstd):
        if ctx.op == "aten.batch_norm.default":
            return y
        empty = np.empty((0,), dtype=object)
        if ctx.op.startswith("aten._batch_norm_impl_index"):
            return (y, mean, invstd, empty, np.zeros((), dtype=np.int64))
        if ctx.op.startswith("aten._batch_norm_with_update") or ctx.op.startswith("aten._batch_norm_no_update"):
            return (y, mean, invstd, empty)
        return (y, mean, invstd)

    def forward(self, ctx, args, kwargs):
        x, w, b, m, v, training, eps = self._unpack(ctx, args, kwargs)
        ctx.aux["training"] = training
        if training:
            y, mean, invstd = _bn_train(ctx, x, w, b, eps)
            return self._outs(ctx, y, mean, invstd)
        y = _bn(ctx, x, w, b, m, v, eps)
        empty = np.empty((0,), dtype=object)
        return self._outs(ctx, y, empty, empty)

    def _wb_tangents(self, ctx, targs):
        tw = targs[1] if len(targs) > 1 else None
        tb = targs[2] if len(targs) > 2 else None
        return tw, tb

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        a = ctx.aux
        if a.get("training"):
            return self._outs_t(ctx, out, *_bn_train_jvp(ctx, args, targs))
        if not ctx.op.startswith("aten._native_batch_norm_legit.no_stats") \
                and any(t is not None for t in targs[3:5]):
            raise NotModelled("batch_norm whose running statistics depend on the input")
        t = targs[0] * a["alpha"] if targs[0] is not None else None
        tw, tb = self._wb_tangents(ctx, targs)
        ws = a["wshape"]
        if tw is not None:
            p = a["xn"][None] * tw.reshape((tw.shape[0],) + ws)
            t = p if t is None else t + p
        if tb is not None:
            p = np.broadcast_to(tb.reshape((tb.shape[0],) + ws), (tb.shape[0],) + tuple(a["xn"].shape))
            t = p if t is None else t + p
        return self._outs_t(ctx, out, t, None, None)

    @staticmethod
    def _outs_t(ctx, out, t, tmean, tinv):
        if isinstance(out, tuple):
            return (t, tmean, tinv) + (None,) * (len(out) - 3)
        return t

    def vjp(self, ctx, args, kwargs, out, cot):
        a = ctx.aux
        if a.get("training"):
            return _bn_train_vjp(ctx, args, cot)
        c = cot[0] if isinstance(cot, tuple) else cot
        by = {}
        if c is None:
            return arg_grads(args, by)
        by[0] = obj(c * a["alpha"])
        red = (1,) + tuple(range(3, c.ndim))
        if args[1] is not None:
            by[1] = np.sum(c * a["xn"][None], axis=red)
        if args[2] is not None:
            by[2] = np.sum(c, axis=red)
        return arg_grads(args, by)


# ---------------------------------------------------------------- batch norm, training mode

def _bn_axes(x):
    if x.ndim < 2:
        raise NotModelled("batch_norm of an input with fewer than 2 dimensions")
    return (0,) + tuple(range(2, x.ndim))


def _bn_train(ctx, x, weight, bias, eps):
    """Training batch norm: xhat = (x - mean) / sqrt(var + eps) with the batch mean and the biased
    batch variance over every axis but 1 (exact rationals; 1/sqrt enclosed), y = xhat w + b.
    Returns (y, save_mean, save_invstd), the last two of shape (C,)."""
    from .norms import _Norm

    axes = _bn_axes(x)
    if int(np.prod([x.shape[i] for i in axes], dtype=np.int64)) == 0:
        raise NotModelled("batch_norm in training mode over an empty batch")
    nrm = _Norm(x, axes, float(eps))
    C = x.shape[1]
    shape = (1, C) + (1,) * (x.ndim - 2)
    ctx.aux.update(nrm=nrm, wshape=shape, C=C)
    y = nrm.xhat
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y, nrm.mu.reshape(C), nrm.r.reshape(C)


def _bn_train_jvp(ctx, args, targs):
    a = ctx.aux
    nrm, ws = a["nrm"], a["wshape"]
    tx = targs[0] if targs else None
    tw = targs[1] if len(targs) > 1 else None
    tb = targs[2] if len(targs) > 2 else None
    w = args[1]
    res = None
    if tx is not None:
        d = nrm.tangent(tx)
        res = d * w.reshape(ws) if w is not None else d
    if tw is not None:
        p = nrm.xhat[None] * tw.reshape((tw.shape[0],) + ws)
        res = p if res is None else res + p
    if tb is not None:
        p = np.broadcast_to(tb.reshape((tb.shape[0],) + ws), (tb.shape[0],) + tuple(nrm.xhat.shape))
        res = p if res is None else res + p
    # save_mean and save_invstd are non-differentiable outputs in PyTorch (requires_grad False,
    # no derivative formula): modelled as constants, like a detached tensor
    return res, None, None


def _bn_train_vjp(ctx, args, cot):
    a = ctx.aux
    nrm, ws = a["nrm"], a["wshape"]
    # only y is differentiable (save_mean / save_invstd: constants to autograd, see the jvp)
    g = cot[0] if isinstance(cot, tuple) else cot
    x, w = args[0], args[1]
    by = {}
    gx = None
    red = (1,) + tuple(range(3, 1 + x.ndim))
    if g is not None:
        gy = g * w.reshape(ws) if w is not None else g
        gx = nrm.adjoint(gy)
        if w is not None:
            by[1] = np.sum(g * nrm.xhat[None], axis=red)
        if args[2] is not None:
            by[2] = np.sum(g, axis=red)
    if gx is not None:
        by[0] = gx
    return arg_grads(args, by)
