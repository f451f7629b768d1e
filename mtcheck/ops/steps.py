"""Step functions away from their jumps: floor, ceil, round, trunc, frac, sign, fmod, remainder,
division with rounding, copysign, angle.

These ops jump on a closed set of measure zero (integers, half-integers, the points where a
quotient is an integer, 0). Away from it they are locally constant (floor, sign, ...) or locally
affine (frac, fmod, remainder), so a program using them is Lipschitz and piecewise C^1 *near the
point checked*: the verdict is about that point. Whether an input lies on a jump is decided
exactly (rational arithmetic); exactly on one the op is discontinuous there and the check stops
with :class:`~mtcheck.errors.OutsideTheoryError` naming the op and the value, as before.

``copysign(a, b) = |a| sign(b)`` also has a kink (not a jump) at ``a = 0``: a tie, with ``a`` as
its discriminant (like ``abs``). Enclosed (irrational) operands are refused by the model (the
rules do not take Balls): an integer test on an enclosure is rarely decidable.
"""

from __future__ import annotations

import math

import numpy as np

from . import Disc, NotLipschitz, NotModelled, Rule, register
from .._exact import Q0, Q1, as_exact, q
from ._util import arg_grads, bcast_index, bcast_tangent, exact_scalar, obj, unbroadcast, zeros_like_cot, zeros_t


def _lift(v, ctx):
    if isinstance(v, np.ndarray):
        return v if v.dtype == object else as_exact(v)
    return exact_scalar(v, ctx.dtype)


def _float_out(ctx):
    return ctx.dtype is not None and ctx.dtype.is_floating_point


def _vec(fn):
    return np.vectorize(fn, otypes=[object])


def _floor(v):
    return q(int(math.floor(v)))


def _trunc(v):
    f = math.floor(v)
    return q(int(f if v >= 0 or f == v else f + 1))


def _is_int(v) -> bool:
    return v == math.floor(v)


def _half_int(v) -> bool:
    return _is_int(v - Q1 / 2)


def _round_half_even(v):
    f = q(int(math.floor(v)))
    d = v - f
    if d > Q1 / 2 or (d == Q1 / 2 and int(f) % 2 == 1):
        return f + 1
    return f


def _sgn(v):
    return Q1 if v > 0 else (-Q1 if v < 0 else Q0)


def _neg(a):
    """``-a`` for an object array, kept an array of the same shape (0-d included)."""
    a = np.asarray(a, dtype=object)
    return np.asarray(-a, dtype=object).reshape(a.shape)


def _jump(op, what, vals, bad):
    """Raise NotLipschitz when some element sits on a jump (``bad`` a boolean array)."""
    bad = np.asarray(bad, dtype=bool)
    if bad.any():
        i = int(np.flatnonzero(bad.ravel())[0])
        v = np.asarray(vals).ravel()[i]
        raise NotLipschitz(f"{op} jumps at {what} and the input sits on a jump (element {i}: {v}); "
                           "away from its jumps it is locally constant or affine and is checked")


class _Unary(Rule):
    """A locally constant elementwise step function: the value from ``value``, jumps where ``on_jump``."""

    what = ""

    def value(self, v):   # pragma: no cover - abstract
        raise NotImplementedError

    def on_jump(self, v) -> bool:   # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, ctx, args, kwargs):
        x = _lift(args[0], ctx)
        if not _float_out(ctx):
            raise NotModelled(f"{ctx.op} with an integer or boolean result")
        xa = np.asarray(x, dtype=object)
        if xa.size:
            _jump(ctx.op, self.what, xa, _vec(self.on_jump)(xa).astype(bool))
        return obj(_vec(self.value)(xa)) if xa.size else obj(xa)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        t = targs[0]
        return None if t is None else zeros_t(t.shape[0], out.shape, t)

    def vjp(self, ctx, args, kwargs, out, cot):
        return arg_grads(args, {0: zeros_like_cot(cot.shape[:1] + tuple(np.shape(args[0])), cot)})


@register("aten.floor.default", "aten.floor_.default")
class Floor(_Unary):
    what = "every integer"
    value = staticmethod(_floor)
    on_jump = staticmethod(_is_int)


@register("aten.ceil.default", "aten.ceil_.default")
class Ceil(_Unary):
    what = "every integer"
    on_jump = staticmethod(_is_int)

    @staticmethod
    def value(v):
        return -_floor(-v)


@register("aten.trunc.default", "aten.trunc_.default", "aten.fix.default")
class Trunc(_Unary):
    what = "every nonzero integer"
    value = staticmethod(_trunc)

    @staticmethod
    def on_jump(v):
        return v != 0 and _is_int(v)


@register("aten.round.default", "aten.round_.default")
class Round(_Unary):
    what = "every half-integer (round half to even)"
    value = staticmethod(_round_half_even)
    on_jump = staticmethod(_half_int)


@register("aten.round.decimals", "aten.round_.decimals")
class RoundDecimals(_Unary):
    """round(x * 10**d) / 10**d, half to even: jumps at the half-steps (k + 1/2) 10**-d."""

    what = "every half-step (k + 1/2) * 10**-decimals"

    def forward(self, ctx, args, kwargs):
        d = int(kwargs.get("decimals", args[1] if len(args) > 1 else 0))
        s = q(10) ** d if d >= 0 else Q1 / q(10) ** (-d)
        x = np.asarray(_lift(args[0], ctx), dtype=object)
        if not _float_out(ctx):
            raise NotModelled(f"{ctx.op} with an integer result")
        if not x.size:
            return obj(x)
        _jump(ctx.op, self.what, x, _vec(lambda v: _half_int(v * s))(x).astype(bool))
        return obj(_vec(lambda v: _round_half_even(v * s) / s)(x))


@register("aten.sign.default", "aten.sign_.default", "aten.sgn.default", "aten.sgn_.default")
class Sign(_Unary):
    what = "0"
    value = staticmethod(_sgn)

    @staticmethod
    def on_jump(v):
        return v == 0


@register("aten.angle.default")
class Angle(_Unary):
    """angle of a real number: 0 for x > 0, pi for x < 0 (enclosed), a jump at 0."""

    what = "0"

    @staticmethod
    def on_jump(v):
        return v == 0

    def forward(self, ctx, args, kwargs):
        x = np.asarray(_lift(args[0], ctx), dtype=object)
        if not _float_out(ctx):
            raise NotModelled("angle with a complex or integer argument")
        if not x.size:
            return obj(x)
        _jump(ctx.op, self.what, x, x == 0)
        neg = np.asarray(x < 0, dtype=bool)
        if not neg.any():
            return obj(np.full(x.shape, Q0, dtype=object))
        from .._ball import ball

        import flint

        pi = flint.arb.pi()
        from .._ball import _from_arb

        m, r = _from_arb(pi)
        return ball(np.where(neg, m, 0.0), np.where(neg, r, 0.0))

    balls = True     # the output may be an enclosure (pi); its inputs are exact


@register("aten.frac.default", "aten.frac_.default")
class Frac(Rule):
    """frac(x) = x - trunc(x): derivative 1, jumps at every nonzero integer."""

    def forward(self, ctx, args, kwargs):
        x = np.asarray(_lift(args[0], ctx), dtype=object)
        if not x.size:
            return obj(x)
        _jump(ctx.op, "every nonzero integer", x, _vec(lambda v: v != 0 and _is_int(v))(x).astype(bool))
        return obj(x - _vec(_trunc)(x))

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return targs[0]

    def vjp(self, ctx, args, kwargs, out, cot):
        return arg_grads(args, {0: cot})


# ---------------------------------------------------------------- quotients with rounding

class _Quot(Rule):
    """``a - b * R(a / b)`` (fmod: R = trunc, remainder: R = floor) and the rounded quotient
    ``R(a / b)`` itself (div with rounding_mode, floor_divide). Jumps where ``a / b`` is an integer
    (for trunc: a nonzero one); b = 0 is refused (NaN or an error in the framework)."""

    mode = "floor"          # floor or trunc
    quotient = False        # True: the rounded quotient (locally constant), else the remainder

    def operands(self, args, kwargs):
        return args[0], args[1]

    def _mode(self, kwargs):
        return self.mode

    def _parts(self, ctx, args, kwargs):
        a, b = self.operands(args, kwargs)
        A, B = _lift(a, ctx), _lift(b, ctx)
        shape = np.broadcast_shapes(np.shape(A), np.shape(B))
        Ab = np.broadcast_to(np.asarray(A, dtype=object), shape)
        Bb = np.broadcast_to(np.asarray(B, dtype=object), shape)
        if (Bb == 0).any():
            raise NotModelled(f"{ctx.op} by 0 (NaN or an error in the framework)")
        Q = np.asarray(Ab / Bb, dtype=object) if Ab.size else np.zeros(shape, dtype=object)
        return Ab, Bb, Q, shape

    def forward(self, ctx, args, kwargs):
        if not _float_out(ctx):
            raise NotModelled(f"{ctx.op} with an integer result")
        A, B, Q, shape = self._parts(ctx, args, kwargs)
        if not Q.size:
            return obj(Q)
        mode = self._mode(kwargs)
        rnd = _floor if mode == "floor" else _trunc
        if mode == "floor":
            bad = _vec(_is_int)(Q).astype(bool)
        else:
            bad = _vec(lambda v: v != 0 and _is_int(v))(Q).astype(bool)
        what = "every integer quotient a / b" if mode == "floor" else "every nonzero integer quotient a / b"
        _jump(ctx.op, what, Q, bad)
        R = np.asarray(_vec(rnd)(Q), dtype=object).reshape(Q.shape)
        ctx.aux["R"] = R
        return obj(R) if self.quotient else obj(A - B * R)

    def _R(self, ctx, args, kwargs):
        if "R" not in ctx.aux:
            self.forward(ctx, args, kwargs)
        return ctx.aux["R"]

    def _which(self, args):
        """Positions (in ``args``) of the dividend and the divisor."""
        return 0, 1

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        ia, ib = self._which(args)
        ta = bcast_tangent(targs[ia] if ia < len(targs) else None, np.shape(args[ia]), out.shape)
        tb = bcast_tangent(targs[ib] if ib < len(targs) else None, np.shape(args[ib]), out.shape)
        like = ta if ta is not None else tb
        if like is None:
            return None
        if self.quotient:
            return zeros_t(like.shape[0], out.shape, like)
        R = self._R(ctx, args, kwargs)
        res = None if ta is None else ta
        if tb is not None:
            d = tb * _neg(R)[None]
            res = d if res is None else res + d
        return res

    def vjp(self, ctx, args, kwargs, out, cot):
        ia, ib = self._which(args)
        g = {}
        for i, coeff in ((ia, None), (ib, "R")):
            a = args[i]
            if not isinstance(a, np.ndarray):
                continue
            if self.quotient:
                g[i] = zeros_like_cot(cot.shape[:1] + a.shape, cot)
            elif coeff is None:
                g[i] = unbroadcast(cot, a.shape)
            else:
                g[i] = unbroadcast(cot * _neg(self._R(ctx, args, kwargs))[None], a.shape)
        return arg_grads(args, g)


@register("aten.remainder.Tensor", "aten.remainder.Scalar", "aten.remainder_.Tensor", "aten.remainder_.Scalar",
          "aten.remainder.Scalar_Tensor")
class Remainder(_Quot):
    mode = "floor"


@register("aten.fmod.Tensor", "aten.fmod.Scalar", "aten.fmod_.Tensor", "aten.fmod_.Scalar")
class Fmod(_Quot):
    mode = "trunc"


@register("aten.floor_divide.default", "aten.floor_divide.Scalar", "aten.floor_divide_.Tensor")
class FloorDivide(_Quot):
    mode = "floor"
    quotient = True


@register("aten.div.Tensor_mode", "aten.div.Scalar_mode", "aten.div_.Tensor_mode", "aten.div_.Scalar_mode")
class DivMode(_Quot):
    """div(a, b, rounding_mode=None | 'trunc' | 'floor'): None is the true quotient (smooth)."""

    quotient = True

    def _mode(self, kwargs):
        mode = kwargs.get("rounding_mode")
        if mode not in ("trunc", "floor"):
            raise NotModelled(f"div with rounding_mode={mode!r} through the *_mode overload")
        return mode


# ---------------------------------------------------------------- copysign

@register("aten.copysign.Tensor", "aten.copysign.Scalar", "aten.copysign_.Tensor", "aten.copysign_.Scalar")
class Copysign(Rule):
    """copysign(a, b) = |a| sign(b): jumps where b = 0 (the sign of a zero is a float's business:
    refused), a kink at a = 0 (a tie, discriminant a, like abs). Derivative in a: sign(a) sign(b)
    (the first tied branch, +, at a = 0); in b: 0."""

    nonsmooth = True

    def _sb(self, ctx, args):
        b = _lift(args[1], ctx)
        a = _lift(args[0], ctx)
        shape = np.broadcast_shapes(np.shape(a), np.shape(b))
        bb = np.broadcast_to(np.asarray(b, dtype=object), shape)
        if bb.size:
            _jump(ctx.op, "b = 0 (the sign of b)", bb, bb == 0)
        return np.asarray(bb > 0, dtype=bool), np.broadcast_to(np.asarray(a, dtype=object), shape)

    def forward(self, ctx, args, kwargs):
        if not _float_out(ctx):
            raise NotModelled("copysign with an integer result")
        pos, a = self._sb(ctx, args)
        absa = np.where(np.asarray(a < 0, dtype=bool), -a, a) if a.size else a
        return obj(np.where(pos, absa, -absa) if a.size else absa)

    def discs(self, ctx, args, kwargs, out):
        if not isinstance(args[0], np.ndarray):
            return []
        a = _lift(args[0], ctx)
        shape = out.shape
        vals = obj(np.broadcast_to(a, shape).ravel().copy())
        return [Disc("copysign", 0, bcast_index(a.shape, shape), None, None, Q0, vals, np.arange(vals.size))]

    def _coeff(self, ctx, args, shape):
        c = ctx.aux.get("coeff")
        if c is None:
            pos, a = self._sb(ctx, args)
            neg_a = np.asarray(a < 0, dtype=bool) if a.size else np.zeros(shape, dtype=bool)
            c = ctx.aux["coeff"] = np.where(pos != neg_a, Q1, -Q1).astype(object)
        return c

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        ta = bcast_tangent(targs[0] if targs else None, np.shape(args[0]), out.shape)
        tb = targs[1] if len(targs) > 1 else None
        if ta is None:
            return None if tb is None else zeros_t(tb.shape[0], out.shape, tb)
        return ta * self._coeff(ctx, args, out.shape)[None]

    def vjp(self, ctx, args, kwargs, out, cot):
        g = {}
        if isinstance(args[0], np.ndarray):
            g[0] = unbroadcast(cot * self._coeff(ctx, args, out.shape)[None], args[0].shape)
        if len(args) > 1 and isinstance(args[1], np.ndarray):
            g[1] = zeros_like_cot(cot.shape[:1] + args[1].shape, cot)
        return arg_grads(args, g)
