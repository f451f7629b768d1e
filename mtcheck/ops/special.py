"""Smooth special functions: trigonometric and hyperbolic functions and their inverses, the
gamma family, error functions, Bessel and Airy functions, and smooth binary ops (atan2, hypot,
logaddexp, pow with a tensor exponent, xlogy), each value and derivative a rigorous enclosure.

Every value and derivative is evaluated element by element with FLINT's Arb and held as a
:class:`~mtcheck._ball.Ball` (converted with outward rounding), or as exact rationals where Arb
returns an exact value for every element (``sin(0) = 0``, ``cos(0) = 1``, ``lgamma(1) = 0``,
``atan2(0, 1) = 0``, ``hypot(3, 4) = 5``, ``4 ** 0.5 = 2``). Where an evaluation from exact
inputs loses relative accuracy (cancellation, e.g. ``(cos x - sinc x) / x`` at a tiny ``x``), it
is redone at a higher working precision; nothing is decided by a float tolerance.

Each op is modelled on the open set where it is C^1 and finite in the framework; elsewhere it is
refused with the reason: ``NotModelled`` (an :class:`~mtcheck.errors.UnsupportedOpError`) where
the framework gives NaN or an infinity or the op's variant has no model here, ``NotLipschitz``
(an :class:`~mtcheck.errors.OutsideTheoryError`) where the function is discontinuous or its
derivative is unbounded (``asin`` at +-1, ``entr`` at 0, ``atan2`` on its branch cut).

``special_i0e`` = exp(-|x|) I0(x) has a kink at 0 (one-sided derivatives -1 and +1): the case of
``x`` is its discriminant, as for ``abs``.
"""

from __future__ import annotations

import flint
import numpy as np

from . import _RULES, Disc, NotLipschitz, NotModelled, Rule, register
from .._ball import _arb_of, _from_arb, ball, exactify, is_ball
from .._exact import Q0, as_exact, q
from ._util import arg_grads, bcast_tangent, exact_scalar, unbroadcast
from .smooth import Elementwise, times

arb = flint.arb
acb = flint.acb

_PRECS = (96, 256, 1024, 4096)   # working precisions (bits), tried in turn for exact inputs
_GOOD = 64                       # relative accuracy (bits) that ends the escalation


def _reg(*names):
    """``register`` for the names no other module models (another module's rule wins)."""

    def ok(n):
        old = _RULES.get(n)
        if old is None:
            return True
        base = getattr(old, "base", old)
        return type(base).__module__ == __name__      # this module imported again

    return register(*[n for n in names if ok(n)])


# ---------------------------------------------------------------- enclosures

def _lift(v):
    """A tensor operand as exact objects (or its Ball), unchanged otherwise."""
    if isinstance(v, np.ndarray) and not is_ball(v) and v.dtype != object:
        return as_exact(v)
    return v


def _sources(x):
    """Per element: ('b', mid, rad) for an enclosure, ('q', value) for an exact value."""
    if is_ball(x):
        return [("b", m, r) for m, r in zip(x.mid.ravel().tolist(), x.rad.ravel().tolist())]
    xa = np.asarray(x)
    return [("q", v) for v in xa.ravel().tolist()]


def _to_arb(src):
    """The element as an arb at the current working precision (exact for dyadic values)."""
    if src[0] == "b":
        return _arb_of(src[1], src[2])
    v = src[1]
    if isinstance(v, flint.fmpq):
        d = int(v.q)
        if d & (d - 1) == 0:
            return arb(flint.fmpz(int(v.p))) / arb(flint.fmpz(d))      # exact: a power of 2
        return arb(v)
    if isinstance(v, (bool, np.bool_)):
        return arb(int(v))
    if isinstance(v, (int, np.integer, flint.fmpz)):
        return arb(flint.fmpz(int(v)))
    return arb(float(v))


def _eval(fn, srcs):
    """``fn(*arbs)`` with escalating precision while exact inputs give a poor result."""
    exact = all(s[0] == "q" for s in srcs) or not any(s[0] == "b" and s[2] > 0 for s in srcs)
    old = flint.ctx.prec
    try:
        for prec in _PRECS:
            flint.ctx.prec = prec
            v = fn(*[_to_arb(s) for s in srcs])
            if not exact:
                return v
            if v.is_finite() and (v.is_exact() or v.rel_accuracy_bits() >= _GOOD):
                return v
        return v
    finally:
        flint.ctx.prec = old


def encl(fn, *xs):
    """``fn`` (arbs -> arb) applied elementwise to the equally shaped operands ``xs``: a Ball, or
    exact rationals where every element is exact."""
    cols = [_sources(x) for x in xs]
    shape = np.shape(xs[0])
    n = len(cols[0])
    mids, rads = np.empty(n), np.empty(n)
    for i in range(n):
        mids[i], rads[i] = _from_arb(_eval(fn, [c[i] for c in cols]))
    return exactify(ball(mids.reshape(shape), rads.reshape(shape)))


def _signs(x):
    from .._ball import sign

    return np.asarray(sign(x))


def _exact_values(x):
    """The exact elements of ``x`` (a list of fmpq), or None for an enclosure."""
    if is_ball(x):
        return None
    return [q(v) if not isinstance(v, flint.fmpq) else v for v in np.asarray(x).ravel().tolist()]


def _interval(x, what, lo=None, hi=None, edge="lipschitz"):
    """Refuse inputs outside the open interval (lo, hi): outside is NaN in the framework
    (NotModelled); at an end, ``edge`` says why: 'lipschitz' (an unbounded derivative:
    NotLipschitz) or 'inf' (an infinite value: NotModelled)."""
    for bound, side in ((lo, 1), (hi, -1)):
        if bound is None:
            continue
        s = _signs((x - q(bound)) * side)
        if (s < 0).any():
            raise NotModelled(f"{what} of a number {'below' if side > 0 else 'above'} {bound} "
                              "(NaN in the framework)")
        if (s == 0).any():
            if edge == "inf":
                raise NotModelled(f"{what} at {bound}: an infinite value in the framework")
            raise NotLipschitz(f"{what} at {bound}: the derivative is unbounded there")


def _no_poles(x, what):
    """Refuse the poles of the gamma family (the integers <= 0): inf or NaN in the framework.
    An enclosure containing a pole is refused by its non-finite Arb value."""
    vals = _exact_values(x)
    if vals is not None and any(v.q == 1 and v <= 0 for v in vals):
        raise NotModelled(f"{what} at a non-positive integer (a pole: inf or NaN in the framework)")


def _pi():
    return arb.pi()


# ---------------------------------------------------------------- unary functions

class _Unary(Elementwise):
    """An :class:`~mtcheck.ops.smooth.Elementwise` op whose tensor may be any argument (``polygamma``
    takes ``(n, self)``), enclosed with :func:`encl` (escalating precision)."""

    def _pos(self, args):
        for i, a in enumerate(args):
            if isinstance(a, np.ndarray):
                return i
        raise NotModelled("no tensor argument")  # pragma: no cover - ATen always passes one

    def forward(self, ctx, args, kwargs):
        pos = self._pos(args)
        x, p = _lift(args[pos]), self.params(ctx, args, kwargs)
        self.domain(x, p)
        y = encl(lambda a: self.f(a, p), x)
        ctx.aux["d"] = d = encl(lambda a: self.df(a, p), x)
        if is_ball(d):
            ctx.aux["balls"] = True
        return y

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return times(self._d(ctx, args, kwargs), targs[self._pos(args)])

    def vjp(self, ctx, args, kwargs, out, cot):
        return arg_grads(args, {self._pos(args): times(self._d(ctx, args, kwargs), cot)})


def _unary(cls_name, names, f, df, domain=None, doc=""):
    """Register a :class:`_Unary` with value ``f(a)``, derivative ``df(a)`` (arb -> arb) and a
    domain check ``domain(x)``."""
    body = {"f": lambda self, a, p: f(a), "df": lambda self, a, p: df(a), "__doc__": doc,
            "__module__": __name__, "__qualname__": cls_name}
    if domain is not None:
        body["domain"] = lambda self, x, p: domain(x)
    cls = type(cls_name, (_Unary,), body)
    _reg(*names)(cls)
    globals()[cls_name] = cls
    return cls


def _names(op, inplace=True):
    return (f"aten.{op}.default",) + ((f"aten.{op}_.default",) if inplace else ())


def _sqrt_pi():
    return _pi().sqrt()


# trigonometric and hyperbolic
_unary("Sin", _names("sin"), lambda a: a.sin(), lambda a: a.cos(), doc="sin(x), derivative cos(x).")
_unary("Cos", _names("cos"), lambda a: a.cos(), lambda a: -a.sin(), doc="cos(x), derivative -sin(x).")
_unary("Tan", _names("tan"), lambda a: a.tan(), lambda a: 1 + a.tan() ** 2,
       doc="tan(x), derivative 1 + tan(x)^2 (a rational x is never a pole; an enclosure of a pole "
           "is refused by its non-finite value).")
_unary("Asin", _names("asin"), lambda a: a.asin(), lambda a: (1 - a * a).rsqrt(),
       lambda x: _interval(x, "asin", -1, 1), doc="asin(x) for |x| < 1, derivative 1/sqrt(1 - x^2).")
_unary("Acos", _names("acos"), lambda a: a.acos(), lambda a: -(1 - a * a).rsqrt(),
       lambda x: _interval(x, "acos", -1, 1), doc="acos(x) for |x| < 1, derivative -1/sqrt(1 - x^2).")
_unary("Atan", _names("atan"), lambda a: a.atan(), lambda a: 1 / (1 + a * a), doc="atan(x), derivative 1/(1 + x^2).")
_unary("Sinh", _names("sinh"), lambda a: a.sinh(), lambda a: a.cosh(), doc="sinh(x), derivative cosh(x).")
_unary("Cosh", _names("cosh"), lambda a: a.cosh(), lambda a: a.sinh(), doc="cosh(x), derivative sinh(x).")
_unary("Asinh", _names("asinh"), lambda a: a.asinh(), lambda a: (1 + a * a).rsqrt(),
       doc="asinh(x), derivative 1/sqrt(1 + x^2).")
_unary("Acosh", _names("acosh"), lambda a: a.acosh(), lambda a: ((a - 1) * (a + 1)).rsqrt(),
       lambda x: _interval(x, "acosh", 1), doc="acosh(x) for x > 1, derivative 1/sqrt(x^2 - 1).")
_unary("Atanh", _names("atanh"), lambda a: a.atanh(), lambda a: 1 / ((1 - a) * (1 + a)),
       lambda x: _interval(x, "atanh", -1, 1, edge="inf"), doc="atanh(x) for |x| < 1, derivative 1/(1 - x^2).")

# error functions
_unary("Erfc", _names("erfc"), lambda a: a.erfc(), lambda a: -2 / _sqrt_pi() * (-a * a).exp(),
       doc="erfc(x), derivative -2/sqrt(pi) exp(-x^2).")
_unary("Erfinv", _names("erfinv"), lambda a: a.erfinv(), lambda a: _sqrt_pi() / 2 * (a.erfinv() ** 2).exp(),
       lambda x: _interval(x, "erfinv", -1, 1, edge="inf"),
       doc="erfinv(x) for |x| < 1, derivative sqrt(pi)/2 exp(erfinv(x)^2).")


def _ndtri(a):
    return -arb(2).sqrt() * (2 * a).erfcinv()


_unary("Ndtri", ("aten.special_ndtri.default",), _ndtri,
       lambda a: (2 * _pi()).sqrt() * (_ndtri(a) ** 2 / 2).exp(),
       lambda x: _interval(x, "special_ndtri", 0, 1, edge="inf"),
       doc="the inverse of the normal CDF, -sqrt(2) erfcinv(2p) for 0 < p < 1, derivative "
           "sqrt(2 pi) exp(ndtri(p)^2 / 2).")


def _log_ndtr(a):
    if a > 0:
        return (-(a / arb(2).sqrt()).erfc() / 2).log1p()      # keeps its relative accuracy
    return ((-a / arb(2).sqrt()).erfc() / 2).log()


_unary("LogNdtr", ("aten.special_log_ndtr.default",), _log_ndtr,
       lambda a: (-a * a / 2).exp() / (2 * _pi()).sqrt() / ((-a / arb(2).sqrt()).erfc() / 2),
       doc="log Phi(x) (Phi the normal CDF), derivative phi(x) / Phi(x).")


def _erfcx(a):
    return (a * a).exp() * a.erfc()


_unary("Erfcx", ("aten.special_erfcx.default",), _erfcx, lambda a: 2 * a * _erfcx(a) - 2 / _sqrt_pi(),
       doc="exp(x^2) erfc(x), derivative 2 x erfcx(x) - 2/sqrt(pi).")


def _entr_domain(x):
    s = _signs(x)
    if (s < 0).any():
        raise NotModelled("special_entr of a negative number (-inf in the framework)")
    if (s == 0).any():
        raise NotLipschitz("special_entr at 0: the derivative -(1 + log x) is unbounded there")


_unary("Entr", ("aten.special_entr.default",), lambda a: -a * a.log(), lambda a: -(a.log() + 1), _entr_domain,
       doc="-x log x for x > 0, derivative -(1 + log x).")


# the gamma family

def _lgamma(a):
    """log |Gamma(x)|, by the reflection formula for x < 0."""
    if a > 0:
        return a.lgamma()
    if a < 0:
        return _pi().log() - abs(a.sin_pi()).log() - (1 - a).lgamma()
    return arb.nan()


def _polygamma(n, a):
    if n == 0:
        return a.digamma()
    return acb(a).polygamma(n).real       # the real part of an enclosure of a real value


_unary("Lgamma", _names("lgamma"), _lgamma, lambda a: a.digamma(), lambda x: _no_poles(x, "lgamma"),
       doc="log|Gamma(x)| away from the poles (the integers <= 0), derivative digamma(x).")
_unary("Digamma", _names("digamma"), lambda a: a.digamma(), lambda a: _polygamma(1, a),
       lambda x: _no_poles(x, "digamma"), doc="digamma(x) away from the poles, derivative polygamma(1, x).")


@_reg("aten.polygamma.default", "aten.polygamma_.default")
class Polygamma(_Unary):
    """polygamma(n, x) (``polygamma_`` takes ``(self, n)``), an integer n >= 0, away from the poles;
    derivative polygamma(n + 1, x)."""

    def params(self, ctx, args, kwargs):
        n = args[1 - self._pos(args)] if len(args) > 1 else kwargs["n"]
        if int(n) != n or n < 0:
            raise NotModelled(f"polygamma of order {n!r} (the order must be an integer >= 0)")
        return int(n)

    def domain(self, x, p):
        _no_poles(x, f"polygamma({p}, x)")

    def f(self, a, p):
        return _polygamma(p, a)

    def df(self, a, p):
        return _polygamma(p + 1, a)


@_reg("aten.mvlgamma.default", "aten.mvlgamma_.default")
class Mvlgamma(_Unary):
    """The multivariate log-gamma function of dimension p: p(p - 1)/4 log(pi) +
    sum_{j < p} lgamma(x - j/2), for x > (p - 1)/2 (the framework refuses smaller x);
    derivative sum_{j < p} digamma(x - j/2)."""

    def params(self, ctx, args, kwargs):
        p = args[1] if len(args) > 1 else kwargs["p"]
        if int(p) != p or p < 1:
            raise NotModelled(f"mvlgamma of dimension {p!r} (it must be an integer >= 1)")
        return int(p)

    def domain(self, x, p):
        s = _signs(x - q(p - 1) / 2)
        if (s <= 0).any():
            raise NotModelled(f"mvlgamma(x, {p}) with x <= {(p - 1) / 2} (the framework refuses it)")

    def f(self, a, p):
        return arb(p * (p - 1)) / 4 * _pi().log() + sum((a - arb(j) / 2).lgamma() for j in range(p))

    def df(self, a, p):
        return sum((a - arb(j) / 2).digamma() for j in range(p))


# Bessel and Airy functions

def _i(n, a):
    return a.bessel_i(n)


def _j(n, a):
    return a.bessel_j(n)


def _di1(a):
    return (_i(0, a) + _i(2, a)) / 2          # I1' = (I0 + I2)/2, also at 0


_unary("I0", _names("i0"), lambda a: _i(0, a), lambda a: _i(1, a), doc="I0(x), derivative I1(x).")
_unary("ModifiedBesselI0", ("aten.special_modified_bessel_i0.default",), lambda a: _i(0, a), lambda a: _i(1, a),
       doc="I0(x), derivative I1(x).")
_unary("I1", ("aten.special_i1.default",), lambda a: _i(1, a), _di1, doc="I1(x), derivative (I0(x) + I2(x))/2.")
_unary("ModifiedBesselI1", ("aten.special_modified_bessel_i1.default",), lambda a: _i(1, a), _di1,
       doc="I1(x), derivative (I0(x) + I2(x))/2.")
_unary("I1e", ("aten.special_i1e.default",), lambda a: (-abs(a)).exp() * _i(1, a),
       lambda a: (-abs(a)).exp() * (_di1(a) - _i(1, abs(a))),
       doc="exp(-|x|) I1(x), C^1 (I1(0) = 0), derivative exp(-|x|) (I1'(x) - I1(|x|)).")
_unary("BesselJ0", ("aten.special_bessel_j0.default",), lambda a: _j(0, a), lambda a: -_j(1, a),
       doc="J0(x), derivative -J1(x).")
_unary("BesselJ1", ("aten.special_bessel_j1.default",), lambda a: _j(1, a), lambda a: (_j(0, a) - _j(2, a)) / 2,
       doc="J1(x), derivative (J0(x) - J2(x))/2.")
_unary("AiryAi", ("aten.special_airy_ai.default",), lambda a: a.airy_ai(), lambda a: a.airy_ai(derivative=1),
       doc="Ai(x), derivative Ai'(x).")

_THIRD = arb(0, 0.3334)       # a ball containing [-1/3, 1/3]


def _dsinc(a):
    """d/dx sin(x)/x: 0 at 0; -x g(x) with |g| <= 1/3 on an enclosure of 0
    (sin x - x cos x = int_0^x t sin t dt, so |g(x)| = |j1(x)/x| <= 1/3)."""
    if a.is_zero():
        return arb(0)
    if a.contains(0):
        return -a * _THIRD
    return (a.cos() - a.sinc()) / a


def _dsinc_pi(a):
    """d/dx sin(pi x)/(pi x) = pi sinc'(pi x)."""
    if a.is_zero():
        return arb(0)
    if a.contains(0):
        return -_pi() ** 2 * a * _THIRD
    return (a.cos_pi() - a.sinc_pi()) / a


_unary("SphericalBesselJ0", ("aten.special_spherical_bessel_j0.default",), lambda a: a.sinc(), _dsinc,
       doc="sin(x)/x (1 at 0), derivative (cos x - sin(x)/x)/x (0 at 0).")
_unary("Sinc", _names("sinc"), lambda a: a.sinc_pi(), _dsinc_pi,
       doc="sin(pi x)/(pi x) (1 at 0), derivative (cos(pi x) - sinc(x))/x (0 at 0).")


@_reg("aten.logit.default", "aten.logit_.default")
class Logit(_Unary):
    """log(x/(1 - x)) for 0 < x < 1, derivative 1/(x(1 - x)). With ``eps`` >= 0 the framework
    clamps the input to [lo, hi] first, lo = eps and hi = 1 - lo (both rounded to the dtype, as its
    kernel does), derivative 0 outside [lo, hi]: the cases of x - lo and x - hi are discriminants
    (as for clamp); at a tie the interior derivative is taken (the framework's choice; every
    selection gives the same product with a tangent of the stratum). A negative eps is no clamp;
    eps > 1/2 (lo > hi: the clamp jumps) is refused."""

    nonsmooth = True

    def params(self, ctx, args, kwargs):
        eps = args[1] if len(args) > 1 else kwargs.get("eps")
        if eps is None or eps < 0:
            return None
        if eps > 0.5:
            raise NotModelled(f"logit with eps={eps!r} > 1/2 (its clamp to [eps, 1 - eps] jumps)")
        import torch

        dt = ctx.dtype if ctx.dtype is not None and ctx.dtype.is_floating_point else torch.float64
        lo = torch.tensor(float(eps), dtype=dt)
        return q(lo.item()), q((torch.tensor(1.0, dtype=dt) - lo).item())

    def forward(self, ctx, args, kwargs):
        p = self.params(ctx, args, kwargs)
        if p is None:
            return super().forward(ctx, args, kwargs)
        from .smooth import _select

        x = _lift(args[0])
        lo, hi = p
        below, above = _signs(x - lo) < 0, _signs(x - hi) > 0
        xc = _select(below, lo, _select(above, hi, x))
        _interval(xc, "logit", 0, 1, edge="inf")
        y = encl(lambda a: self.f(a, None), xc)
        d = encl(lambda a: self.df(a, None), xc)
        ctx.aux["d"] = d = exactify(_select(below | above, Q0, d))
        if is_ball(d):
            ctx.aux["balls"] = True
        return y

    def discs(self, ctx, args, kwargs, out):
        p = self.params(ctx, args, kwargs)
        if p is None:
            return []
        from .nonsmooth import _elem_disc

        x = _lift(args[0])
        return [_elem_disc("lo", x, 0, p[0], None, x.shape, ctx), _elem_disc("hi", x, 0, p[1], None, x.shape, ctx)]

    def domain(self, x, p):
        _interval(x, "logit", 0, 1, edge="inf")

    def f(self, a, p):
        return (a / (1 - a)).log()

    def df(self, a, p):
        return 1 / (a * (1 - a))


@_reg("aten.special_i0e.default")
class I0e(_Unary):
    """exp(-|x|) I0(x): C^1 away from 0, where its one-sided derivatives are -1 (right) and +1
    (left): the case of x is a discriminant (as for abs). Derivative exp(-|x|) (I1(x) - sgn(x) I0(x)),
    0 at a tie (every selection gives the same product with a tangent of the stratum)."""

    nonsmooth = True

    def f(self, a, p):
        return (-abs(a)).exp() * _i(0, a)

    def df(self, a, p):
        if a.is_zero():
            return arb(0)
        e = (-abs(a)).exp()
        if a > 0:
            return e * (_i(1, a) - _i(0, a))
        if a < 0:
            return e * (_i(1, a) + _i(0, a))
        # an enclosure of 0: both pieces (its discriminant's case is undecided, reported as such)
        return (e * (_i(1, a) - _i(0, a))).union(e * (_i(1, a) + _i(0, a)))

    def discs(self, ctx, args, kwargs, out):
        x = _lift(args[0])
        n = x.size
        vals = x.ravel() if is_ball(x) else np.asarray(x, dtype=object).ravel()
        return [Disc("i0e", 0, np.arange(n, dtype=np.int64), None, None, np.full(n, Q0, dtype=object),
                     vals, np.arange(n))]


# ---------------------------------------------------------------- binary functions

class _Binary(Rule):
    """``z = f(a, b)`` elementwise with numpy broadcasting; each of ``a``, ``b`` a tensor or a
    Python scalar (rounded to the output dtype, as the framework does). Subclasses give ``f``,
    ``da``, ``db`` on arbs and ``domain(a, b)`` on the broadcast operands."""

    balls = True

    def domain(self, a, b, ctx, args):
        """Raise NotModelled / NotLipschitz outside the smooth domain."""

    def f(self, a, b):   # pragma: no cover - abstract
        raise NotImplementedError

    def da(self, a, b):   # pragma: no cover - abstract
        raise NotImplementedError

    def db(self, a, b):   # pragma: no cover - abstract
        raise NotImplementedError

    def _operands(self, ctx, args):
        ops = []
        for v in args[:2]:
            if isinstance(v, np.ndarray):
                ops.append(_lift(v))
            else:
                ops.append(exact_scalar(v, ctx.dtype))
        shape = np.broadcast_shapes(*[np.shape(v) if isinstance(v, np.ndarray) else () for v in ops])
        full = []
        for v in ops:
            if isinstance(v, np.ndarray):
                full.append(np.broadcast_to(v, shape))
            else:
                full.append(np.full(shape, v, dtype=object))
        return full, shape

    def forward(self, ctx, args, kwargs):
        if ctx.dtype is not None and not ctx.dtype.is_floating_point:
            raise NotModelled(f"{ctx.op} with a {ctx.dtype} result (only floating-point results are modelled)")
        (A, B), shape = self._operands(ctx, args)
        self.domain(A, B, ctx, args)
        y = encl(self.f, A, B)
        d = {}
        for i, fn in ((0, self.da), (1, self.db)):
            if isinstance(args[i], np.ndarray):
                d[i] = encl(fn, A, B)
                if is_ball(d[i]):
                    ctx.aux["balls"] = True
        ctx.aux["d2"] = d
        ctx.aux["shape"] = shape
        return y

    def _ds(self, ctx, args, kwargs):
        if "d2" not in ctx.aux:
            self.forward(ctx, args, kwargs)
        return ctx.aux["d2"], ctx.aux["shape"]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        d, shape = self._ds(ctx, args, kwargs)
        res = None
        for i in (0, 1):
            t = targs[i] if i < len(targs) else None
            if t is None or i not in d:
                continue
            r = times(d[i], bcast_tangent(t, np.shape(args[i]), shape))
            res = r if res is None else res + r
        return res

    def vjp(self, ctx, args, kwargs, out, cot):
        d, shape = self._ds(ctx, args, kwargs)
        live = ctx.aux.get("live")
        g = {}
        for i in (0, 1):
            if i in d and (live is None or i >= len(live) or live[i]):
                g[i] = unbroadcast(times(d[i], cot), np.shape(args[i]))
        return arg_grads(args, g)


@_reg("aten.atan2.default", "aten.atan2_.default")
class Atan2(_Binary):
    """atan2(y, x), derivatives x/(x^2 + y^2) (in y) and -y/(x^2 + y^2) (in x). Discontinuous at
    (0, 0) and on its branch cut y = 0, x < 0 (it jumps by 2 pi; the framework's value there
    depends on the sign of the zero): refused as outside the theory."""

    def domain(self, a, b, ctx, args):
        sy, sx = _signs(a), _signs(b)
        if ((sy == 0) & (sx == 0)).any():
            raise NotLipschitz("atan2 at (0, 0): it is discontinuous there")
        if ((sy == 0) & (sx < 0)).any():
            raise NotLipschitz("atan2 on its branch cut (y = 0, x < 0): it jumps by 2 pi there")

    def f(self, a, b):
        return arb.atan2(a, b)

    def da(self, a, b):
        return b / (a * a + b * b)

    def db(self, a, b):
        return -a / (a * a + b * b)


@_reg("aten.hypot.default", "aten.hypot_.default")
class Hypot(_Binary):
    """sqrt(a^2 + b^2), derivatives a/h and b/h; at (0, 0) (a norm's kink) refused."""

    def domain(self, a, b, ctx, args):
        if ((_signs(a) == 0) & (_signs(b) == 0)).any():
            raise NotModelled("hypot at (0, 0): the kink of a norm is not modelled")

    def f(self, a, b):
        return (a * a + b * b).sqrt()

    def da(self, a, b):
        return a / (a * a + b * b).sqrt()

    def db(self, a, b):
        return b / (a * a + b * b).sqrt()


def _sig(d):
    """1/(1 + exp(d))."""
    return 1 / (1 + d.exp())


@_reg("aten.logaddexp.default")
class Logaddexp(_Binary):
    """log(exp(a) + exp(b)), derivatives 1/(1 + exp(b - a)) and 1/(1 + exp(a - b))."""

    def f(self, a, b):
        if a >= b:
            return a + (b - a).exp().log1p()
        if b > a:
            return b + (a - b).exp().log1p()
        return (a.exp() + b.exp()).log()

    def da(self, a, b):
        return _sig(b - a)

    def db(self, a, b):
        return _sig(a - b)


@_reg("aten.logaddexp2.default")
class Logaddexp2(_Binary):
    """log2(2^a + 2^b) (a + 1 where a = b, exactly), derivatives 1/(1 + 2^(b - a)) and
    1/(1 + 2^(a - b))."""

    def f(self, a, b):
        if a.is_exact() and b.is_exact() and a == b:
            return a + 1
        ln2 = arb(2).log()
        if a >= b:
            return a + (arb(2) ** (b - a)).log1p() / ln2
        if b > a:
            return b + (arb(2) ** (a - b)).log1p() / ln2
        return (arb(2) ** a + arb(2) ** b).log() / ln2

    def da(self, a, b):
        return 1 / (1 + arb(2) ** (b - a))

    def db(self, a, b):
        return 1 / (1 + arb(2) ** (a - b))


@_reg("aten.pow.Tensor_Tensor", "aten.pow_.Tensor")
class PowTensor(_Binary):
    """x ** y with a tensor exponent: derivatives y x^(y - 1) and x^y log x, for x > 0.

    Where x <= 0 the exponent must be an exact integer (NaN otherwise; x = 0 also needs y >= 0:
    inf otherwise): there the value and the derivative in x (0 for y = 0) are modelled, and the
    derivative in y is not defined (x**y is not real for nearby non-integer y), so a program that
    differentiates with respect to that exponent is refused (a constant exponent is fine)."""

    def domain(self, a, b, ctx, args):
        s = _signs(a)
        bad = s <= 0
        ctx.aux["no_dy"] = bool(bad.any())
        if not bad.any():
            return
        ys = _exact_values(b)
        if ys is None:
            raise NotModelled("pow(x, y) at x <= 0 with an enclosed (irrational) exponent")
        for k in np.flatnonzero(bad.ravel()):
            y = ys[k]
            if y.q != 1:
                raise NotModelled("pow(x, y) with a non-integer exponent at x <= 0 (NaN in the framework, "
                                  "or the edge of its domain at x = 0)")
            if s.ravel()[k] == 0 and y < 0:
                raise NotModelled("pow(0, y) with y < 0 (inf in the framework)")

    def _no_dy(self, ctx):
        if ctx.aux.get("no_dy"):
            raise NotModelled("the derivative of pow(x, y) in its exponent at x <= 0 (x**y log x is not "
                              "finite; only x > 0 is modelled for a differentiated exponent)")

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        d, _ = self._ds(ctx, args, kwargs)
        if len(targs) > 1 and targs[1] is not None:
            self._no_dy(ctx)
        return super().jvp(ctx, args, kwargs, out, targs, tkwargs)

    def vjp(self, ctx, args, kwargs, out, cot):
        self._ds(ctx, args, kwargs)
        live = ctx.aux.get("live")
        if isinstance(args[1], np.ndarray) and (live is None or len(live) < 2 or live[1]):
            self._no_dy(ctx)
        return super().vjp(ctx, args, kwargs, out, cot)

    def f(self, a, b):
        if a.is_zero():
            return arb(1) if b.is_zero() else arb(0)
        return a ** b

    def da(self, a, b):
        if b.is_zero():
            return arb(0)
        if a.is_zero():
            return arb(1) if b == 1 else arb(0)
        return b * a ** (b - 1)

    def db(self, a, b):
        if not a > 0:
            return arb(0)          # not used: refused by _no_dy where differentiated
        return a ** b * a.log()


@_reg("aten.pow.Scalar")
class PowScalar(_Binary):
    """base ** y for a scalar base and a tensor exponent: for base > 0 derivative base^y log(base);
    for base = 0 the function is 0 where y > 0 (derivative 0), 1 at y = 0 (discontinuous: refused)
    and infinite where y < 0 (refused); a negative base (NaN for non-integer y) is refused."""

    def domain(self, a, b, ctx, args):
        base = exact_scalar(args[0], ctx.dtype)
        if base < 0:
            raise NotModelled("pow(base, y) with a negative scalar base (NaN for non-integer y)")
        if base == 0:
            s = _signs(b)
            if (s < 0).any():
                raise NotModelled("pow(0, y) with y < 0 (inf in the framework)")
            if (s == 0).any():
                raise NotLipschitz("pow(0, y) at y = 0: it jumps from 1 to 0 there")

    def f(self, a, b):
        if a.is_zero():
            return arb(0)
        return a ** b

    def da(self, a, b):   # pragma: no cover - the base is a scalar
        return arb.nan()

    def db(self, a, b):
        if a.is_zero():
            return arb(0)
        return a ** b * a.log()


class _XLogBase(_Binary):
    """x * g(y) with g = log (xlogy) or log1p (xlog1py), 0 where x = 0 for any y (the framework's
    definition). g needs y > y0 (0 or -1) where x != 0 (NaN or -inf otherwise); at x = 0 the
    derivative in x is g(y), finite only for y > y0, so y <= y0 is refused there too unless x is a
    scalar (then the derivative in y, 0/y, is what remains, and y = y0 is still refused)."""

    y0 = 0
    name = "xlogy"

    def domain(self, a, b, ctx, args):
        sx = _signs(a)
        sy = _signs(b - q(self.y0))
        if ((sx != 0) & (sy < 0)).any():
            raise NotModelled(f"{self.name}(x, y) with y < {self.y0} and x != 0 (NaN in the framework)")
        if ((sx != 0) & (sy == 0)).any():
            raise NotModelled(f"{self.name}(x, {self.y0}) with x != 0 (an infinite value in the framework)")
        zero = sx == 0
        if isinstance(args[0], np.ndarray) and (zero & (sy <= 0)).any():
            raise NotModelled(f"{self.name}(0, y) with y <= {self.y0}: its derivative in x is not finite")
        if (zero & (sy == 0)).any():
            raise NotModelled(f"{self.name}(0, {self.y0}): its derivative in y is 0/0 (NaN in the framework)")

    def g(self, b):   # pragma: no cover - abstract
        raise NotImplementedError

    def dg(self, b):   # pragma: no cover - abstract
        raise NotImplementedError

    def f(self, a, b):
        if a.is_zero():
            return arb(0)
        return a * self.g(b)

    def da(self, a, b):
        return self.g(b)

    def db(self, a, b):
        if a.is_zero():
            return arb(0)
        return a * self.dg(b)


@_reg("aten.xlogy.Tensor", "aten.xlogy.Scalar_Self", "aten.xlogy.Scalar_Other",
      "aten.xlogy_.Tensor", "aten.xlogy_.Scalar_Other")
class Xlogy(_XLogBase):
    """x log y (0 where x = 0), derivatives log y and x/y."""

    def g(self, b):
        return b.log()

    def dg(self, b):
        return 1 / b


@_reg("aten.special_xlog1py.default", "aten.special_xlog1py.self_scalar", "aten.special_xlog1py.other_scalar")
class Xlog1py(_XLogBase):
    """x log(1 + y) (0 where x = 0), derivatives log(1 + y) and x/(1 + y)."""

    y0 = -1
    name = "special_xlog1py"

    def g(self, b):
        return b.log1p()

    def dg(self, b):
        return 1 / (1 + b)
