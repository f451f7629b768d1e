"""Smooth ops with irrational values: their values and derivatives as rigorous enclosures.

Every value ``f(x)`` and derivative ``f'(x)`` is evaluated element by element with FLINT's Arb
(:func:`mtcheck._ball.apply`) and held as a :class:`~mtcheck._ball.Ball`; where every radius is 0
(``exp(0) = 1``, ``tanh(0) = 0``, ``sigmoid(0) = 1/2``) the result is turned back into exact
rationals. The forward-mode derivative is ``f'(x) * t`` and the reverse one ``f'(x) * g``
(elementwise, so the transpose is the same product). Softmax-like ops (softmax, log_softmax,
logsumexp) use ``s * (t - sum(s * t))`` with Ball arithmetic over the reduced dimension.

Scalar parameters (alpha, beta, threshold, an exponent) are rounded to the tensor's dtype as
PyTorch does (:func:`._util.exact_scalar`); the function modelled is the mathematical one PyTorch
documents, computed exactly (the framework's float rounding is the tolerance's business).
"""

from __future__ import annotations

import flint
import numpy as np

from . import Disc, NotLipschitz, NotModelled, Rule, register
from .._ball import Ball, apply, exactify, is_ball, sign
from .._exact import Q0, Q1, q
from ._util import arg_grads, exact_scalar

_PREC = 96          # bits Arb works with: results are converted to float64 balls of ~1 ulp
arb = flint.arb


def enclose(fn, x):
    """``fn`` (arb -> arb) applied elementwise to ``x`` at ``_PREC`` bits: a Ball, or exact
    rationals where every element is exact."""
    old = flint.ctx.prec
    flint.ctx.prec = _PREC
    try:
        return exactify(apply(fn, x))
    finally:
        flint.ctx.prec = old


def times(d, t):
    """``d * t`` for a derivative ``d`` (exact or Ball) and a tangent/cotangent ``t`` of any
    kind (exact, fixed point, Ball, structural flags); the Ball goes first so that it decides."""
    if t is None:
        return None
    from .._support import Dep

    if isinstance(t, Dep):
        nz = (~((d.mid == 0) & (d.rad == 0))) if is_ball(d) else np.asarray(d != 0)
        return t * nz.astype(np.float64)
    return d * t


def _signs_of(x):
    """Decided signs of an exact or enclosed array (raises Undecided)."""
    return np.asarray(sign(x))


# ---------------------------------------------------------------- elementwise smooth functions

class Elementwise(Rule):
    """``y = f(x)`` elementwise with ``f`` C^1 on the inputs allowed by :meth:`domain`.

    Subclasses give ``f(a, p)`` and ``df(a, p)`` on ``flint.arb`` values (``p``: the op's scalar
    parameters from :meth:`params`); the value and the derivative are enclosed by Arb."""

    balls = True

    def params(self, ctx, args, kwargs):
        return None

    def domain(self, x, p):
        """Raise NotModelled / NotLipschitz for inputs outside the smooth domain."""

    def f(self, a, p):   # pragma: no cover - abstract
        raise NotImplementedError

    def df(self, a, p):   # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, ctx, args, kwargs):
        x, p = args[0], self.params(ctx, args, kwargs)
        self.domain(x, p)
        y = enclose(lambda a: self.f(a, p), x)
        ctx.aux["d"] = d = enclose(lambda a: self.df(a, p), x)
        if is_ball(d):
            ctx.aux["balls"] = True     # exact values may still have an enclosed derivative
        return y

    def _d(self, ctx, args, kwargs):
        d = ctx.aux.get("d")
        if d is None:
            self.forward(ctx, args, kwargs)
            d = ctx.aux["d"]
        return d

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return times(self._d(ctx, args, kwargs), targs[0])

    def vjp(self, ctx, args, kwargs, out, cot):
        return arg_grads(args, {0: times(self._d(ctx, args, kwargs), cot)})


def _positive(x, what, zero_lipschitz=False):
    s = _signs_of(x)
    if (s < 0).any():
        raise NotModelled(f"{what} of a negative number (NaN in the framework)")
    if (s == 0).any():
        if zero_lipschitz:
            return
        raise NotLipschitz(f"{what} at 0: the derivative is unbounded there")


def _sigmoid(a):
    return 1 / (1 + (-a).exp())


def _ln2():
    return arb(2).log()


def _log_base(a, base: int):
    """log_base(a), exact where a is an exact power of the base 2 (log2(8) = 3)."""
    if base == 2 and a.is_exact() and a > 0:
        m, e = a.man_exp()
        if m == 1:
            return arb(e)
    if a == 1:
        return arb(0)
    return a.log() / arb(base).log()


@register("aten.exp.default", "aten.exp_.default")
class Exp(Elementwise):
    """exp(x), derivative exp(x)."""

    def f(self, a, p):
        return a.exp()

    df = f


@register("aten.exp2.default", "aten.exp2_.default")
class Exp2(Elementwise):
    """2**x, derivative ln(2) 2**x."""

    def f(self, a, p):
        return arb(2) ** a

    def df(self, a, p):
        return _ln2() * arb(2) ** a


@register("aten.expm1.default", "aten.expm1_.default")
class Expm1(Elementwise):
    """exp(x) - 1, derivative exp(x)."""

    def f(self, a, p):
        return a.expm1()

    def df(self, a, p):
        return a.exp()


@register("aten.log.default", "aten.log_.default")
class Log(Elementwise):
    """log(x) for x > 0, derivative 1/x (x <= 0: refused, -inf or NaN in the framework)."""

    base = None

    def domain(self, x, p):
        s = _signs_of(x)
        if (s <= 0).any():
            raise NotModelled("a logarithm of a number <= 0 (-inf or NaN in the framework)")

    def f(self, a, p):
        return a.log() if self.base is None else _log_base(a, self.base)

    def df(self, a, p):
        return 1 / a if self.base is None else 1 / (a * arb(self.base).log())


@register("aten.log2.default", "aten.log2_.default")
class Log2(Log):
    base = 2


@register("aten.log10.default", "aten.log10_.default")
class Log10(Log):
    base = 10


@register("aten.log1p.default", "aten.log1p_.default")
class Log1p(Elementwise):
    """log(1 + x) for x > -1, derivative 1/(1 + x)."""

    def domain(self, x, p):
        if (_signs_of(x + q(1)) <= 0).any():
            raise NotModelled("log1p of a number <= -1 (-inf or NaN in the framework)")

    def f(self, a, p):
        return a.log1p()

    def df(self, a, p):
        return 1 / (1 + a)


@register("aten.sqrt.default", "aten.sqrt_.default")
class Sqrt(Elementwise):
    """sqrt(x) for x > 0, derivative 1/(2 sqrt(x)); at 0 it is not Lipschitz."""

    def domain(self, x, p):
        _positive(x, "sqrt")

    def f(self, a, p):
        return a.sqrt()

    def df(self, a, p):
        return a.rsqrt() / 2


@register("aten.rsqrt.default", "aten.rsqrt_.default")
class Rsqrt(Elementwise):
    """1/sqrt(x) for x > 0, derivative -1/(2 x sqrt(x))."""

    def domain(self, x, p):
        if (_signs_of(x) <= 0).any():
            raise NotModelled("rsqrt of a number <= 0 (inf or NaN in the framework)")

    def f(self, a, p):
        return a.rsqrt()

    def df(self, a, p):
        return -a.rsqrt() / (2 * a)


@register("aten.tanh.default", "aten.tanh_.default")
class Tanh(Elementwise):
    """tanh(x), derivative 1 - tanh(x)^2."""

    def f(self, a, p):
        return a.tanh()

    def df(self, a, p):
        return 1 - a.tanh() ** 2


@register("aten.sigmoid.default", "aten.sigmoid_.default")
class Sigmoid(Elementwise):
    """1/(1 + exp(-x)), derivative s(1 - s)."""

    def f(self, a, p):
        return _sigmoid(a)

    def df(self, a, p):
        s = _sigmoid(a)
        return s * (1 - s)


@register("aten.erf.default", "aten.erf_.default")
class Erf(Elementwise):
    """erf(x), derivative 2/sqrt(pi) exp(-x^2)."""

    def f(self, a, p):
        return a.erf()

    def df(self, a, p):
        return 2 / arb.pi().sqrt() * (-a * a).exp()


@register("aten.silu.default", "aten.silu_.default")
class Silu(Elementwise):
    """x sigmoid(x), derivative s (1 + x (1 - s))."""

    def f(self, a, p):
        return a * _sigmoid(a)

    def df(self, a, p):
        s = _sigmoid(a)
        return s * (1 + a * (1 - s))


@register("aten.mish.default", "aten.mish_.default")
class Mish(Elementwise):
    """x tanh(log(1 + exp(x))) (no threshold, as PyTorch's kernel), derivative
    tanh(sp) + x sech(sp)^2 sigmoid(x)."""

    def f(self, a, p):
        return a * a.exp().log1p().tanh()

    def df(self, a, p):
        th = a.exp().log1p().tanh()
        return th + a * (1 - th * th) * _sigmoid(a)


_KAPPA = 0.044715   # the float literal PyTorch's tanh-GELU uses


@register("aten.gelu.default", "aten.gelu_.default")
class Gelu(Elementwise):
    """approximate='none': x Phi(x) = x/2 (1 + erf(x/sqrt 2)), derivative Phi(x) + x phi(x);
    approximate='tanh': x/2 (1 + tanh(sqrt(2/pi) (x + k x^3))), k = 0.044715 (the float64
    literal), and its exact derivative."""

    def params(self, ctx, args, kwargs):
        mode = kwargs.get("approximate", args[1] if len(args) > 1 else "none")
        if mode not in ("none", "tanh"):
            raise NotModelled(f"gelu with approximate={mode!r}")
        return mode

    def f(self, a, p):
        if p == "none":
            return a * (1 + (a / arb(2).sqrt()).erf()) / 2
        c = (2 / arb.pi()).sqrt()
        return a * (1 + (c * (a + arb(_KAPPA) * a ** 3)).tanh()) / 2

    def df(self, a, p):
        if p == "none":
            cdf = (1 + (a / arb(2).sqrt()).erf()) / 2
            pdf = (-a * a / 2).exp() / (2 * arb.pi()).sqrt()
            return cdf + a * pdf
        c = (2 / arb.pi()).sqrt()
        k = arb(_KAPPA)
        th = (c * (a + k * a ** 3)).tanh()
        return (1 + th) / 2 + a / 2 * (1 - th * th) * c * (1 + 3 * k * a * a)


class PowReal(Elementwise):
    """x**p for a non-integer (or negative integer) exponent p, x > 0 (x = 0 with p < 1 is not
    Lipschitz; x < 0 is NaN in the framework), derivative p x**(p - 1). Routed here from
    ``aten.pow.Tensor_Scalar`` (see :func:`_route_pow`)."""

    def params(self, ctx, args, kwargs):
        return exact_scalar(args[1], ctx.dtype)

    def domain(self, x, p):
        s = _signs_of(x)
        integer = p.q == 1
        if integer:
            if (s == 0).any() and p < 0:
                raise NotModelled("a negative power of 0 (inf in the framework)")
            return
        if (s < 0).any():
            raise NotModelled("a non-integer power of a negative number (NaN in the framework)")
        if (s == 0).any():
            if p < 1:
                raise NotLipschitz(f"x**{p} at 0: the derivative is unbounded there")
            raise NotModelled(f"x**{p} at 0: the edge of its domain (NaN for x < 0)")

    def f(self, a, p):
        return a ** _parb(p)

    def df(self, a, p):
        if p == 0:
            return arb(0)
        return _parb(p) * a ** (_parb(p) - 1)


def _parb(p):
    return arb(flint.fmpz(int(p.p))) / arb(flint.fmpz(int(p.q)))


class _PowRoute(Rule):
    """aten.pow.Tensor_Scalar: non-negative integer powers of exact values stay with the exact
    polynomial rule; other exponents, and enclosed inputs, go to :class:`PowReal`."""

    balls = True

    def __init__(self, base, alt):
        self.base, self.alt = base, alt
        self.names = getattr(base, "names", ())
        self.nonsmooth = base.nonsmooth

    def _pick(self, ctx, args):
        e = args[1] if len(args) > 1 else None
        if ctx.op.startswith("aten.square"):
            return self.base if not is_ball(args[0]) else self.alt
        exact_int = e is not None and float(e) == int(e) and int(e) >= 0
        return self.base if exact_int and not is_ball(args[0]) else self.alt

    def forward(self, ctx, args, kwargs):
        return self._pick(ctx, args).forward(ctx, args, kwargs)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return self._pick(ctx, args).jvp(ctx, args, kwargs, out, targs, tkwargs)

    def vjp(self, ctx, args, kwargs, out, cot):
        return self._pick(ctx, args).vjp(ctx, args, kwargs, out, cot)


def _route_pow():
    from . import _RULES

    name = "aten.pow.Tensor_Scalar"
    base = _RULES.get(name)
    if base is not None and not isinstance(base, _PowRoute):
        _RULES[name] = _PowRoute(base, PowReal())


_route_pow()


# ---------------------------------------------------------------- softplus (two pieces)

@register("aten.softplus.default")
class Softplus(Rule):
    """PyTorch's softplus: x where x*beta > threshold, else log(1 + exp(beta x)) / beta.

    The pieces meet with a jump of log(1 + exp(-threshold)) / beta (about 2e-9 for the default
    threshold 20), so the case ``x*beta - threshold`` (sign) is a discriminant; at an exact tie the
    function is discontinuous: refused as outside the theory."""

    balls = True
    nonsmooth = True

    def _p(self, ctx, args, kwargs):
        beta = exact_scalar(args[1] if len(args) > 1 else kwargs.get("beta", 1), ctx.dtype)
        th = exact_scalar(args[2] if len(args) > 2 else kwargs.get("threshold", 20), ctx.dtype)
        if beta == 0:
            raise NotModelled("softplus with beta = 0")
        return beta, th

    def _cases(self, ctx, args, kwargs):
        c = ctx.aux.get("case")
        if c is None:
            beta, th = self._p(ctx, args, kwargs)
            c = ctx.aux["case"] = _signs_of(args[0] * beta - th)
        return c

    def forward(self, ctx, args, kwargs):
        x = args[0]
        beta, th = self._p(ctx, args, kwargs)
        c = self._cases(ctx, args, kwargs)
        if (c == 0).any():
            raise NotLipschitz("softplus jumps where x*beta == threshold (its two pieces differ there)")
        b = _parb(beta)
        inner = enclose(lambda a: (b * a).exp().log1p() / b, x)
        d = enclose(lambda a: _sigmoid(b * a), x)
        above = c > 0
        ctx.aux["d"] = _select(above, Q1, d)
        return exactify(_select(above, x, inner))

    def discs(self, ctx, args, kwargs, out):
        x = args[0]
        beta, th = self._p(ctx, args, kwargs)
        n = x.size
        v = x * beta - th
        vals = v.ravel() if is_ball(v) else np.asarray(v, dtype=object).ravel()
        return [Disc("softplus", 0, np.arange(n, dtype=np.int64), None, None, np.full(n, th, dtype=object),
                     vals, np.arange(n), negate=bool(beta < 0))]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return times(ctx.aux["d"], targs[0])

    def vjp(self, ctx, args, kwargs, out, cot):
        return arg_grads(args, {0: times(ctx.aux["d"], cot)})


def _select(mask, a, b):
    """``where(mask, a, b)`` that keeps exact values exact and Balls as Balls."""
    if is_ball(a) or is_ball(b):
        from .._ball import to_ball

        a = to_ball(np.broadcast_to(np.asarray(a, dtype=object), mask.shape) if not is_ball(a) else a)
        b = to_ball(np.broadcast_to(np.asarray(b, dtype=object), mask.shape) if not is_ball(b) else b)
        return np.where(mask, a, b).view(Ball)
    return np.asarray(np.where(mask, a, b), dtype=object)


# ---------------------------------------------------------------- elu family (a kink at 0)

@register("aten.elu.default", "aten.elu_.default", "aten.celu.default", "aten.celu_.default")
class Elu(Rule):
    """elu(x; alpha, scale, input_scale) = scale x (x > 0), scale alpha (exp(input_scale x) - 1)
    (x <= 0); celu(x, alpha) = elu(x; alpha, 1, 1/alpha). The left derivative at 0 is
    scale alpha input_scale, the right one scale: when they differ, the case of x (relu-like,
    <0 | =0 | >0) is a discriminant; when they agree the op is C^1 and has none."""

    balls = True
    nonsmooth = True

    def _p(self, ctx, args, kwargs):
        g = lambda i, k, dflt: args[i] if len(args) > i else kwargs.get(k, dflt)  # noqa: E731
        alpha = exact_scalar(g(1, "alpha", 1.0), ctx.dtype)
        if ctx.op.startswith("aten.celu"):
            if alpha == 0:
                raise NotModelled("celu with alpha = 0")
            return alpha, Q1, exact_scalar(1.0 / float(g(1, "alpha", 1.0)), ctx.dtype)
        return alpha, exact_scalar(g(2, "scale", 1.0), ctx.dtype), exact_scalar(g(3, "input_scale", 1.0), ctx.dtype)

    def forward(self, ctx, args, kwargs):
        x = args[0]
        alpha, scale, ins = self._p(ctx, args, kwargs)
        pos = _signs_of(x) > 0
        sa, isa = _parb(scale * alpha), _parb(ins)
        neg = enclose(lambda a: sa * (isa * a).expm1(), x)
        dneg = enclose(lambda a: sa * isa * (isa * a).exp(), x)
        ctx.aux["d"] = _select(pos, scale, dneg)
        return exactify(_select(pos, x * scale, neg))

    def discs(self, ctx, args, kwargs, out):
        alpha, scale, ins = self._p(ctx, args, kwargs)
        if alpha * ins == 1:
            return []        # C^1: both one-sided derivatives at 0 equal scale
        x = args[0]
        n = x.size
        vals = x.ravel() if is_ball(x) else np.asarray(x, dtype=object).ravel()
        return [Disc("elu", 0, np.arange(n, dtype=np.int64), None, None, np.full(n, Q0, dtype=object),
                     vals, np.arange(n))]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return times(ctx.aux["d"], targs[0])

    def vjp(self, ctx, args, kwargs, out, cot):
        return arg_grads(args, {0: times(ctx.aux["d"], cot)})


# ---------------------------------------------------------------- log_sigmoid_forward

@register("aten.log_sigmoid_forward.default")
class LogSigmoidForward(Rule):
    """(log sigmoid(x), buffer): log sigmoid(x) = -log(1 + exp(-x)), derivative 1 - sigmoid(x).
    The buffer (exp(-|x|) on CPU) is the framework backward's scratch: its value is enclosed,
    and a program that differentiates through it is refused."""

    balls = True

    def forward(self, ctx, args, kwargs):
        x = args[0]
        y = enclose(lambda a: -(-a).exp().log1p(), x)
        ctx.aux["d"] = enclose(lambda a: 1 - _sigmoid(a), x)
        rec = ctx.recorded
        buf = rec[1] if isinstance(rec, tuple) else None
        if buf is not None and tuple(buf.shape) == tuple(np.shape(x)):
            b = enclose(lambda a: (-abs(a)).exp(), x)
        else:
            b = np.empty((0,), dtype=object)
        return (y, b)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return (times(ctx.aux["d"], targs[0]), None)

    def vjp(self, ctx, args, kwargs, out, cot):
        c = cot[0] if isinstance(cot, tuple) else cot
        if isinstance(cot, tuple) and len(cot) > 1 and cot[1] is not None:
            raise NotModelled("a program that differentiates log_sigmoid_forward's buffer")
        return arg_grads(args, {0: times(ctx.aux["d"], c)})


# ---------------------------------------------------------------- softmax family

def _dim(d, ndim):
    return d % ndim if ndim else 0


def _shifted_exp(x, axes):
    """exp(x - c) with c the largest float midpoint along ``axes`` (an exact dyadic: any shift
    gives the same softmax), and c."""
    from .._ball import to_ball

    xb = to_ball(x)
    m = xb.mid
    c = np.max(m, axis=axes, keepdims=True) if m.ndim else m
    cq = np.vectorize(q, otypes=[object])(c) if np.ndim(c) else np.asarray(q(float(c)), dtype=object)
    sh = x - cq
    return enclose(lambda a: a.exp(), sh), cq


def _softmax(x, axes):
    e, c = _shifted_exp(x, axes)
    s = e / np.sum(e, axis=axes, keepdims=True)
    return exactify(s) if is_ball(s) else np.asarray(s, dtype=object), e, c


def _lse(x, axes, keepdims=True):
    e, c = _shifted_exp(x, axes)
    tot = np.sum(e, axis=axes, keepdims=True)
    lg = enclose(lambda a: a.log(), tot)
    r = lg + c
    r = exactify(r) if is_ball(r) else np.asarray(r, dtype=object)
    if not keepdims:
        r = np.squeeze(r, axis=axes) if np.ndim(r) else r
    return r


def _sm_jvp(s, t, axes):
    """s * (t - sum(s t)) along ``axes`` (of t, shifted by the batch dimension)."""
    from .._support import Dep

    if t is None:
        return None
    tax = tuple(a + 1 for a in axes)
    if isinstance(t, Dep):
        return t + np.sum(t, axis=tax, keepdims=True)
    return times(s, t - np.sum(times(s, t), axis=tax, keepdims=True))


def _sm_vjp(s, g, axes):
    return _sm_jvp(s, g, axes)     # the Jacobian diag(s) - s s^T is symmetric


def _lsm_jvp(s, t, axes):
    """t - sum(s t) (log_softmax; its transpose is g - s sum(g))."""
    from .._support import Dep

    if t is None:
        return None
    tax = tuple(a + 1 for a in axes)
    if isinstance(t, Dep):
        return t + np.sum(t, axis=tax, keepdims=True)
    return t - np.sum(times(s, t), axis=tax, keepdims=True)


def _lsm_vjp(s, g, axes):
    from .._support import Dep

    tax = tuple(a + 1 for a in axes)
    if isinstance(g, Dep):
        return g + np.sum(g, axis=tax, keepdims=True)
    return g - times(s, np.sum(g, axis=tax, keepdims=True))


class _SoftmaxBase(Rule):
    balls = True
    log = False

    def _axes(self, args, kwargs):
        x = args[0]
        return (_dim(args[1] if len(args) > 1 else kwargs["dim"], x.ndim),) if x.ndim else ()

    def _s(self, ctx, args, kwargs):
        s = ctx.aux.get("s")
        if s is None:
            self.forward(ctx, args, kwargs)
            s = ctx.aux["s"]
        return s

    def forward(self, ctx, args, kwargs):
        x = args[0]
        axes = self._axes(args, kwargs)
        if not axes:   # a 0-d tensor: softmax = 1, log_softmax = 0
            ctx.aux["s"] = np.asarray(Q1, dtype=object)
            return np.asarray(Q0 if self.log else Q1, dtype=object)
        s, e, c = _softmax(x, axes)
        ctx.aux["s"] = s
        if not self.log:
            return s
        r = x - _lse(x, axes)
        return exactify(r) if is_ball(r) else np.asarray(r, dtype=object)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        axes = self._axes(args, kwargs)
        s = self._s(ctx, args, kwargs)
        if not axes:
            return None if targs[0] is None else targs[0] * Q0
        return (_lsm_jvp if self.log else _sm_jvp)(s, targs[0], axes)

    def vjp(self, ctx, args, kwargs, out, cot):
        axes = self._axes(args, kwargs)
        s = self._s(ctx, args, kwargs)
        if not axes:
            return arg_grads(args, {0: cot * Q0})
        return arg_grads(args, {0: (_lsm_vjp if self.log else _sm_vjp)(s, cot, axes)})


@register("aten._softmax.default", "aten.softmax.int")
class Softmax(_SoftmaxBase):
    """softmax(x, dim) = exp(x) / sum exp(x); jvp s (t - sum(s t))."""


@register("aten._log_softmax.default", "aten.log_softmax.int")
class LogSoftmax(_SoftmaxBase):
    """log_softmax(x, dim) = x - logsumexp(x); jvp t - sum(s t), vjp g - s sum(g)."""

    log = True


@register("aten.logsumexp.default")
class LogSumExp(Rule):
    """logsumexp(x, dims, keepdim) = log sum exp(x); jvp sum(s t), vjp s g (broadcast)."""

    balls = True

    def _p(self, args, kwargs):
        x = args[0]
        dims = args[1] if len(args) > 1 else kwargs.get("dim", ())
        keep = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
        dims = [dims] if isinstance(dims, int) else list(dims)
        axes = tuple(sorted({_dim(d, x.ndim) for d in dims})) if x.ndim else ()
        return x, axes, bool(keep)

    def forward(self, ctx, args, kwargs):
        x, axes, keep = self._p(args, kwargs)
        if not axes:
            ctx.aux["s"] = np.asarray(Q1, dtype=object)
            return x
        s, _, _ = _softmax(x, axes)
        ctx.aux["s"] = s
        return _lse(x, axes, keep)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        x, axes, keep = self._p(args, kwargs)
        t = targs[0]
        if t is None or not axes:
            return t
        from .._support import Dep

        tax = tuple(a + 1 for a in axes)
        if isinstance(t, Dep):
            return np.sum(t, axis=tax, keepdims=keep)
        return np.sum(times(ctx.aux["s"], t), axis=tax, keepdims=keep)

    def vjp(self, ctx, args, kwargs, out, cot):
        x, axes, keep = self._p(args, kwargs)
        if not axes:
            return arg_grads(args, {0: cot})
        B = cot.shape[0]
        kept = (B,) + tuple(1 if d in axes else n for d, n in enumerate(x.shape))
        g = np.broadcast_to(cot.reshape(kept), (B,) + x.shape)
        return arg_grads(args, {0: times(ctx.aux["s"], g)})


# ---------------------------------------------------------------- binary cross-entropy losses

def _reduce(v, reduction, batch=False):
    """A per-element loss (or its tangent, with ``batch``) reduced: 0 none, 1 mean, 2 sum."""
    if reduction == 0:
        return v
    axes = tuple(range(1 if batch else 0, np.ndim(v)))
    s = np.sum(v, axis=axes) if axes else v
    if reduction == 1:
        n = int(np.prod(np.shape(v)[1 if batch else 0:], dtype=np.int64))
        s = s * (Q1 / n) if n else s
    return s


def _expand_cot(cot, reduction, shape):
    """The cotangent of a reduced loss spread back over the elements, shape (B,) + shape."""
    if reduction == 0:
        return cot
    B = cot.shape[0]
    g = np.broadcast_to(cot.reshape((B,) + (1,) * len(shape)), (B,) + tuple(shape))
    if reduction == 1:
        n = int(np.prod(shape, dtype=np.int64))
        g = g * (Q1 / n) if n else g
    return g


def _fin(v):
    """A Ball with every radius 0 as exact rationals; a plain array as objects; other kinds
    (fixed point, residues, structural flags, verified floats) unchanged (an Fx as objects
    would lose its scale 2**-e)."""
    if is_ball(v):
        return exactify(v)
    if type(v) is np.ndarray and v.dtype != object:
        from .._exact import as_exact, from_floats

        return from_floats(v) if np.issubdtype(v.dtype, np.floating) else as_exact(v)
    if isinstance(v, np.ndarray) or not hasattr(v, "shape"):
        return v if isinstance(v, np.ndarray) else np.asarray(v, dtype=object)
    return v


class _BCEBase(Rule):
    """Shared shape: an elementwise loss l(x, y) with partial derivatives dx, dy, then a
    reduction; a weight (a constant tensor) multiplies the elements."""

    balls = True

    def _args(self, args, kwargs):
        x, y = args[0], args[1]
        w = args[2] if len(args) > 2 else kwargs.get("weight")
        red = args[-1] if len(args) > 2 and isinstance(args[-1], int) else kwargs.get("reduction", 1)
        return x, y, w, red

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        red = ctx.aux["red"]
        res = None
        for i, key in ((0, "dx"), (1, "dy")):
            t = targs[i] if i < len(targs) else None
            if t is not None:
                r = times(ctx.aux[key], t)
                res = r if res is None else res + r
        return None if res is None else _fin(_reduce(res, red, batch=True))

    def vjp(self, ctx, args, kwargs, out, cot):
        g = _expand_cot(cot, ctx.aux["red"], np.shape(args[0]))
        live = ctx.aux.get("live") or [True, True]
        by = {0: _fin(times(ctx.aux["dx"], g))} if live[0] else {}
        if len(live) > 1 and live[1] and isinstance(args[1], np.ndarray):
            by[1] = _fin(times(ctx.aux["dy"], g))
        return arg_grads(args, by)


@register("aten.binary_cross_entropy_with_logits.default")
class BCEWithLogits(_BCEBase):
    """l = w ((1 - y) x + (1 + (pw - 1) y) log(1 + exp(-x))) (PyTorch's formula, pos_weight pw,
    default 1); dl/dx = w ((1 - y) - (1 + (pw - 1) y) sigmoid(-x)),
    dl/dy = w (-x + (pw - 1) log(1 + exp(-x)))."""

    def _args(self, args, kwargs):
        x, y = args[0], args[1]
        w = args[2] if len(args) > 2 else kwargs.get("weight")
        pw = args[3] if len(args) > 3 else kwargs.get("pos_weight")
        red = args[4] if len(args) > 4 else kwargs.get("reduction", 1)
        return x, y, w, pw, red

    def forward(self, ctx, args, kwargs):
        x, y, w, pw, red = self._args(args, kwargs)
        sp = enclose(lambda a: (-a).exp().log1p(), x)          # log(1 + exp(-x))
        sg = enclose(lambda a: _sigmoid(-a), x)
        c = 1 + (pw - 1) * y if pw is not None else Q1
        ww = w if w is not None else Q1
        loss = ww * ((1 - y) * x + c * sp)
        ctx.aux["dx"] = _fin(ww * ((1 - y) - c * sg))
        ctx.aux["dy"] = _fin(ww * (-x + ((pw - 1) * sp if pw is not None else Q0)))
        ctx.aux["red"] = red
        return _fin(_reduce(_fin(loss), red))


@register("aten.binary_cross_entropy.default")
class BCE(_BCEBase):
    """l = -w (y log x + (1 - y) log(1 - x)) for 0 < x < 1 (PyTorch clamps each log at -100: at
    x = 0 or 1 the op is refused); dl/dx = w (x - y) / (x (1 - x)), dl/dy = w (log(1 - x) - log x)."""

    def _args(self, args, kwargs):
        x, y = args[0], args[1]
        w = args[2] if len(args) > 2 else kwargs.get("weight")
        red = args[3] if len(args) > 3 else kwargs.get("reduction", 1)
        return x, y, w, red

    def forward(self, ctx, args, kwargs):
        x, y, w, red = self._args(args, kwargs)
        if (_signs_of(x) <= 0).any() or (_signs_of(1 - x) <= 0).any():
            raise NotModelled("binary_cross_entropy at an input 0 or 1 (PyTorch clamps the log at -100 there)")
        lx = enclose(lambda a: a.log(), x)
        l1 = enclose(lambda a: (1 - a).log(), x)
        ww = w if w is not None else Q1
        loss = -(ww * (y * lx + (1 - y) * l1))
        inv = enclose(lambda a: 1 / (a * (1 - a)), x)
        ctx.aux["dx"] = _fin(ww * ((x - y) * inv))
        ctx.aux["dy"] = _fin(ww * (l1 - lx))
        ctx.aux["red"] = red
        return _fin(_reduce(_fin(loss), red))
