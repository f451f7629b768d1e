"""Special functions and smooth binary ops (mtcheck/ops/special.py): enclosures against mpmath,
exactness at rational points, jvp/vjp (with broadcasting), domain refusals, end-to-end verdicts
and mutants."""

import mpmath
import numpy as np
import pytest
import torch
import torch.nn as nn

import mtcheck
from mtcheck import Verdict
from mtcheck._ball import is_ball, to_ball
from mtcheck._exact import q
from mtcheck.ops import Ctx, NotLipschitz, NotModelled, lookup

mpmath.mp.prec = 200
F64 = torch.float64
S = torch.special

mp = mpmath
_SQ2 = mp.sqrt(2)


def _i0e(v):
    return mp.exp(-abs(v)) * mp.besseli(0, v)


def _i1e(v):
    return mp.exp(-abs(v)) * mp.besseli(1, v)


def _di1(v):
    return mp.diff(lambda u: mp.besseli(1, u), v)


def _ndtri(p):
    return _SQ2 * mp.erfinv(2 * p - 1)


def _lgamma(v):
    return mp.log(abs(mp.gamma(v)))


def _mvl(p):
    return lambda v: p * (p - 1) / mp.mpf(4) * mp.log(mp.pi) + sum(_lgamma(v - mp.mpf(j) / 2) for j in range(p))


def _dmvl(p):
    return lambda v: sum(mp.digamma(v - mp.mpf(j) / 2) for j in range(p))


def _sj0(v):
    return mp.sin(v) / v if v else mp.mpf(1)


def _dsj0(v):
    with mp.workprec(4000):          # the difference cancels to ~v^3 / 3 at a tiny v
        return +((v * mp.cos(v) - mp.sin(v)) / v ** 2) if v else mp.mpf(0)


def _dsinc(v):
    with mp.workprec(4000):
        return +((mp.cos(mp.pi * v) - mp.sincpi(v)) / v) if v else mp.mpf(0)


ALL = [q(0), q(1), q(-3) / 2, q(7), q(-25) / 4, q(1) / 3, q(2) ** -40]
UNIT = [q(0), q(1) / 2, q(-3) / 4, q(1) / 3, q(-1) + q(2) ** -30, q(2) ** -40]     # |x| < 1
PROB = [q(1) / 2, q(1) / 3, q(3) / 4, q(2) ** -30, q(1) - q(2) ** -30]           # 0 < p < 1
POS = [q(1), q(4), q(1) / 3, q(1000), q(3) / 1024, q(2)]
GAMMA = [q(1), q(2), q(1) / 2, q(7) / 3, q(-1) / 2, q(-5) / 2 + q(1) / 7, q(30)]  # away from the poles
ABOVE1 = [q(2), q(5) / 4, q(1) + q(2) ** -20, q(100)]
BESSEL = [q(0), q(1), q(-3) / 2, q(7), q(-25) / 4, q(1) / 3, q(40)]

# op -> (args before x, args after x, value, derivative, points)
OPS = {
    "aten.sin.default": ((), (), mp.sin, mp.cos, ALL),
    "aten.cos.default": ((), (), mp.cos, lambda v: -mp.sin(v), ALL),
    "aten.tan.default": ((), (), mp.tan, lambda v: 1 / mp.cos(v) ** 2, ALL),
    "aten.asin.default": ((), (), mp.asin, lambda v: 1 / mp.sqrt(1 - v * v), UNIT),
    "aten.acos.default": ((), (), mp.acos, lambda v: -1 / mp.sqrt(1 - v * v), UNIT),
    "aten.atan.default": ((), (), mp.atan, lambda v: 1 / (1 + v * v), ALL),
    "aten.sinh.default": ((), (), mp.sinh, mp.cosh, ALL),
    "aten.cosh.default": ((), (), mp.cosh, mp.sinh, ALL),
    "aten.asinh.default": ((), (), mp.asinh, lambda v: 1 / mp.sqrt(1 + v * v), ALL),
    "aten.acosh.default": ((), (), mp.acosh, lambda v: 1 / mp.sqrt(v * v - 1), ABOVE1),
    "aten.atanh.default": ((), (), mp.atanh, lambda v: 1 / (1 - v * v), UNIT),
    "aten.erfc.default": ((), (), mp.erfc, lambda v: -2 / mp.sqrt(mp.pi) * mp.exp(-v * v), ALL),
    "aten.erfinv.default": ((), (), mp.erfinv, lambda v: mp.sqrt(mp.pi) / 2 * mp.exp(mp.erfinv(v) ** 2), UNIT),
    "aten.lgamma.default": ((), (), _lgamma, mp.digamma, GAMMA),
    "aten.digamma.default": ((), (), mp.digamma, lambda v: mp.polygamma(1, v), GAMMA),
    "polygamma2": ((2,), (), lambda v: mp.polygamma(2, v), lambda v: mp.polygamma(3, v), GAMMA),
    "polygamma0": ((0,), (), mp.digamma, lambda v: mp.polygamma(1, v), GAMMA),
    "polygamma_": ((), (1,), lambda v: mp.polygamma(1, v), lambda v: mp.polygamma(2, v), GAMMA),
    "aten.mvlgamma.default": ((), (3,), _mvl(3), _dmvl(3), [q(3), q(5) / 4, q(10), q(1) + q(2) ** -20]),
    "aten.i0.default": ((), (), lambda v: mp.besseli(0, v), lambda v: mp.besseli(1, v), BESSEL),
    "aten.special_i0e.default": ((), (), _i0e, lambda v: mp.diff(_i0e, v), [v for v in BESSEL if v]),
    "aten.special_i1.default": ((), (), lambda v: mp.besseli(1, v), _di1, BESSEL),
    "aten.special_i1e.default": ((), (), _i1e, lambda v: mp.diff(_i1e, v) if v else mp.mpf(1) / 2, BESSEL),
    "aten.special_ndtri.default": ((), (), _ndtri, lambda p: mp.sqrt(2 * mp.pi) * mp.exp(_ndtri(p) ** 2 / 2), PROB),
    "aten.special_log_ndtr.default": ((), (), lambda v: mp.log(mp.ncdf(v)), lambda v: mp.npdf(v) / mp.ncdf(v),
                                      ALL + [q(40), q(-40)]),
    "aten.special_erfcx.default": ((), (), lambda v: mp.exp(v * v) * mp.erfc(v),
                                   lambda v: 2 * v * mp.exp(v * v) * mp.erfc(v) - 2 / mp.sqrt(mp.pi), ALL + [q(1000)]),
    "aten.special_entr.default": ((), (), lambda v: -v * mp.log(v), lambda v: -(1 + mp.log(v)), POS),
    "aten.special_bessel_j0.default": ((), (), lambda v: mp.besselj(0, v), lambda v: -mp.besselj(1, v), BESSEL),
    "aten.special_bessel_j1.default": ((), (), lambda v: mp.besselj(1, v), lambda v: mp.besselj(1, v, derivative=1),
                                       BESSEL),
    "aten.special_modified_bessel_i0.default": ((), (), lambda v: mp.besseli(0, v), lambda v: mp.besseli(1, v), BESSEL),
    "aten.special_modified_bessel_i1.default": ((), (), lambda v: mp.besseli(1, v),
                                                _di1, BESSEL),
    "aten.special_spherical_bessel_j0.default": ((), (), _sj0, _dsj0, BESSEL + [q(2) ** -1000]),
    "aten.special_airy_ai.default": ((), (), mp.airyai, lambda v: mp.airyai(v, derivative=1), BESSEL),
    "aten.logit.default": ((), (), lambda v: mp.log(v / (1 - v)), lambda v: 1 / (v * (1 - v)), PROB),
    "aten.sinc.default": ((), (), mp.sincpi, _dsinc, ALL + [q(2), q(-3), q(1) / 2, q(2) ** -1000]),
}


def _name(key):
    return {"polygamma2": "aten.polygamma.default", "polygamma0": "aten.polygamma.default",
            "polygamma_": "aten.polygamma_.default"}.get(key, key)


from enclosure_helpers import contains as _contains  # noqa: E402


def _mpf(v):
    return mpmath.mpf(int(v.p)) / int(v.q)


def _tight(b, v):
    """The enclosure is useful: its radius is within a few ulps of the value (or tiny)."""
    r = b.imag if isinstance(b, (complex, np.complexfloating)) else float(to_ball(b).rad)
    return r <= 1e-13 * abs(float(v)) + 1e-300


@pytest.mark.parametrize("key", list(OPS))
def test_enclosures_contain_the_true_value_and_derivative(key):
    before, after, f, df, pts = OPS[key]
    x = np.array(pts, dtype=object)
    args = before + (x,) + after
    rule, ctx = lookup(_name(key)), Ctx(_name(key), F64)
    y = rule.forward(ctx, args, {})
    t = np.eye(x.size, dtype=object) * q(1)
    targs = tuple(t if a is x else None for a in args)
    J = rule.jvp(ctx, args, {}, y, targs, {})
    (G,) = rule.vjp(ctx, args, {}, y, t)
    for i, v in enumerate(x):
        mv = _mpf(v)
        assert _contains(y[i], f(mv)), (key, v)
        assert _contains(J[i, i], df(mv)), (key, v)
        assert _tight(y[i], f(mv)) and _tight(J[i, i], df(mv)), (key, v, to_ball(y)[i], to_ball(J)[i, i])
        assert to_ball(J).mid[i, i] == to_ball(G).mid[i, i]      # an elementwise Jacobian is symmetric
    assert (to_ball(J).mid[~np.eye(x.size, dtype=bool)] == 0).all()


def test_inplace_variants_are_registered():
    for op in ("sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "erfc",
               "erfinv", "lgamma", "digamma", "i0", "logit", "sinc"):
        assert lookup(f"aten.{op}_.default") is lookup(f"aten.{op}.default"), op
    for op in ("aten.atan2_.default", "aten.hypot_.default", "aten.pow_.Tensor", "aten.xlogy_.Tensor",
               "aten.xlogy_.Scalar_Other", "aten.polygamma_.default", "aten.mvlgamma_.default"):
        assert lookup(op) is not None and lookup(op).balls, op


@pytest.mark.parametrize("op,x,val,dval", [
    ("aten.sin.default", 0, 0, 1), ("aten.cos.default", 0, 1, 0), ("aten.tan.default", 0, 0, 1),
    ("aten.asin.default", 0, 0, 1), ("aten.atan.default", 0, 0, 1), ("aten.sinh.default", 0, 0, 1),
    ("aten.cosh.default", 0, 1, 0), ("aten.asinh.default", 0, 0, 1), ("aten.atanh.default", 0, 0, 1),
    ("aten.erfinv.default", 0, 0, None), ("aten.erfc.default", 0, 1, None), ("aten.lgamma.default", 1, 0, None),
    ("aten.lgamma.default", 2, 0, None), ("aten.i0.default", 0, 1, 0), ("aten.special_i1.default", 0, 0, q(1) / 2),
    ("aten.special_i1e.default", 0, 0, q(1) / 2), ("aten.special_i0e.default", 0, 1, 0),
    ("aten.special_bessel_j0.default", 0, 1, 0), ("aten.special_bessel_j1.default", 0, 0, q(1) / 2),
    ("aten.special_modified_bessel_i0.default", 0, 1, 0), ("aten.special_spherical_bessel_j0.default", 0, 1, 0),
    ("aten.special_ndtri.default", q(1) / 2, 0, None), ("aten.special_erfcx.default", 0, 1, None),
    ("aten.special_entr.default", 1, 0, -1), ("aten.logit.default", q(1) / 2, 0, 4), ("aten.sinc.default", 0, 1, 0),
    ("aten.sinc.default", 2, 0, q(1) / 2), ("aten.sinc.default", -2, 0, q(-1) / 2),
    ("aten.sinc.default", 4, 0, q(1) / 4), ("aten.sinc.default", 1, 0, -1),
])
def test_exact_at_rational_points(op, x, val, dval):
    rule, ctx = lookup(op), Ctx(op, F64)
    xs = np.array([q(x)], dtype=object)
    y = rule.forward(ctx, (xs,), {})
    assert not is_ball(y) and y[0] == val, (op, y)
    if dval is not None:
        d = rule.jvp(ctx, (xs,), {}, y, (np.array([[q(1)]], dtype=object),), {})
        assert not is_ball(d) and d[0, 0] == dval, (op, d)


# ---------------------------------------------------------------- binary ops

def _lae2(a, b):
    return mp.log(2 ** a + 2 ** b, 2)


# op -> (value(a, b), d/da, d/db, A points (2, 3), B points (3,))
BIN = {
    "aten.atan2.default": (mp.atan2, lambda a, b: b / (a * a + b * b), lambda a, b: -a / (a * a + b * b),
                           [[0, 1, -2], [q(1) / 3, -5, 7]], [1, q(-3) / 4, 2]),
    "aten.hypot.default": (lambda a, b: mp.sqrt(a * a + b * b), lambda a, b: a / mp.sqrt(a * a + b * b),
                           lambda a, b: b / mp.sqrt(a * a + b * b), [[3, 0, -2], [q(1) / 3, -5, 7]], [4, q(-3) / 4, 0]),
    "aten.logaddexp.default": (lambda a, b: mp.log(mp.exp(a) + mp.exp(b)), lambda a, b: 1 / (1 + mp.exp(b - a)),
                               lambda a, b: 1 / (1 + mp.exp(a - b)), [[0, 1, -2], [q(1) / 3, 500, 7]],
                               [0, q(-3) / 4, -600]),
    "aten.logaddexp2.default": (_lae2, lambda a, b: 1 / (1 + 2 ** (b - a)), lambda a, b: 1 / (1 + 2 ** (a - b)),
                                [[0, 1, -2], [q(1) / 3, 500, 7]], [0, q(-3) / 4, -600]),
    "aten.pow.Tensor_Tensor": (lambda a, b: a ** b, lambda a, b: b * a ** (b - 1), lambda a, b: a ** b * mp.log(a),
                               [[4, 1, 2], [q(1) / 3, 5, 7]], [q(1) / 2, q(-3) / 4, 3]),
    "aten.xlogy.Tensor": (lambda a, b: a * mp.log(b) if a else mp.mpf(0), lambda a, b: mp.log(b),
                          lambda a, b: a / b, [[0, 1, -2], [q(1) / 3, -5, 7]], [1, q(3) / 4, 2]),
    "aten.special_xlog1py.default": (lambda a, b: a * mp.log1p(b) if a else mp.mpf(0), lambda a, b: mp.log1p(b),
                                     lambda a, b: a / (1 + b), [[0, 1, -2], [q(1) / 3, -5, 7]], [0, q(-3) / 4, 2]),
}


def _arr(v):
    return np.vectorize(q, otypes=[object])(np.array(v, dtype=object))


@pytest.mark.parametrize("op", list(BIN))
def test_binary_enclosures_with_broadcasting(op):
    f, da, db, av, bv = BIN[op]
    A, B = _arr(av), _arr(bv)
    rule, ctx = lookup(op), Ctx(op, F64)
    y = rule.forward(ctx, (A, B), {})
    assert np.shape(y) == (2, 3)
    ta = np.eye(6, dtype=object).reshape(6, 2, 3) * q(1)
    tb = np.eye(3, dtype=object).reshape(3, 3) * q(1)
    Ja = to_ball(rule.jvp(ctx, (A, B), {}, y, (ta, None), {}))       # (6, 2, 3)
    Jb = to_ball(rule.jvp(ctx, (A, B), {}, y, (None, tb), {}))       # (3, 2, 3)
    g = np.eye(6, dtype=object).reshape(6, 2, 3) * q(1)
    Ga, Gb = (to_ball(v) for v in rule.vjp(ctx, (A, B), {}, y, g))  # (6, 2, 3), (6, 3)
    for i in range(2):
        for j in range(3):
            a, b = _mpf(A[i, j]), _mpf(B[j])
            assert _contains(to_ball(y)[i, j], f(a, b)), (op, i, j)
            k = 3 * i + j
            assert _contains(Ja[k, i, j], da(a, b)), (op, i, j)
            assert _contains(Jb[j, i, j], db(a, b)), (op, i, j)
            assert _contains(Ga[k, i, j], da(a, b)) and _contains(Gb[k, j], db(a, b)), (op, i, j)
    # the cotangent of the broadcast argument sums over the broadcast rows
    for j in range(3):
        tot = sum(db(_mpf(A[i, j]), _mpf(B[j])) for i in range(2))
        assert _contains(Gb[[j, 3 + j], j].sum(), tot)


def test_binary_exact_values():
    def fw(op, a, b):
        return lookup(op).forward(Ctx(op, F64), (a, b), {})

    y = fw("aten.hypot.default", _arr([3, 5]), _arr([4, 12]))
    assert not is_ball(y) and list(y) == [5, 13]
    y = fw("aten.atan2.default", _arr([0]), _arr([2]))
    assert not is_ball(y) and y[0] == 0
    y = fw("aten.pow.Tensor_Tensor", _arr([4, 2]), _arr([q(1) / 2, 3]))
    assert not is_ball(y) and list(y) == [2, 8]
    y = fw("aten.xlogy.Tensor", _arr([0, 5]), _arr([3, 1]))
    assert not is_ball(y) and list(y) == [0, 0]
    y = fw("aten.logaddexp2.default", _arr([3]), _arr([3]))
    assert not is_ball(y) and y[0] == 4


def test_scalar_operands():
    x = _arr([1, q(1) / 2, 3])
    cases = [
        ("aten.pow.Scalar", (2.0, x), lambda v: 2 ** v, lambda v: 2 ** v * mp.log(2)),
        ("aten.pow.Scalar", (0.0, x), lambda v: mp.mpf(0), lambda v: mp.mpf(0)),
        ("aten.pow.Scalar", (1, x), lambda v: mp.mpf(1), lambda v: mp.mpf(0)),
        ("aten.xlogy.Scalar_Self", (2.0, x), lambda v: 2 * mp.log(v), lambda v: 2 / v),
        ("aten.xlogy.Scalar_Other", (x, 3.0), lambda v: v * mp.log(3), lambda v: mp.log(3)),
        ("aten.special_xlog1py.self_scalar", (2.0, x), lambda v: 2 * mp.log1p(v), lambda v: 2 / (1 + v)),
        ("aten.special_xlog1py.other_scalar", (x, 3.0), lambda v: v * mp.log1p(3), lambda v: mp.log1p(3)),
    ]
    for op, args, f, df in cases:
        rule, ctx = lookup(op), Ctx(op, F64)
        y = rule.forward(ctx, args, {})
        t = np.eye(3, dtype=object) * q(1)
        targs = tuple(t if a is x else None for a in args)
        J = to_ball(rule.jvp(ctx, args, {}, y, targs, {}))
        grads = rule.vjp(ctx, args, {}, y, t)
        assert len(grads) == 1
        G = to_ball(grads[0])
        for i, v in enumerate(x):
            assert _contains(to_ball(y)[i], f(_mpf(v))), (op, v)
            assert _contains(J[i, i], df(_mpf(v))) and _contains(G[i, i], df(_mpf(v))), (op, v)


# ---------------------------------------------------------------- domains

def _fw(op, *args, **kw):
    return lookup(op).forward(Ctx(op, F64), args, kw)


def _x1(*v):
    return _arr(list(v))


@pytest.mark.parametrize("op,args,exc,words", [
    ("aten.asin.default", (_x1(1),), NotLipschitz, "asin at 1"),
    ("aten.acos.default", (_x1(-1),), NotLipschitz, "acos at -1"),
    ("aten.asin.default", (_x1(2),), NotModelled, "NaN"),
    ("aten.acosh.default", (_x1(1),), NotLipschitz, "acosh at 1"),
    ("aten.acosh.default", (_x1(0),), NotModelled, "NaN"),
    ("aten.atanh.default", (_x1(1),), NotModelled, "infinite"),
    ("aten.erfinv.default", (_x1(-1),), NotModelled, "infinite"),
    ("aten.lgamma.default", (_x1(0),), NotModelled, "pole"),
    ("aten.lgamma.default", (_x1(-3),), NotModelled, "pole"),
    ("aten.digamma.default", (_x1(-1),), NotModelled, "pole"),
    ("aten.polygamma.default", (1, _x1(0)), NotModelled, "pole"),
    ("aten.polygamma.default", (-1, _x1(1)), NotModelled, "order"),
    ("aten.mvlgamma.default", (_x1(1), 3), NotModelled, "mvlgamma"),
    ("aten.special_ndtri.default", (_x1(0),), NotModelled, "infinite"),
    ("aten.special_entr.default", (_x1(0),), NotLipschitz, "unbounded"),
    ("aten.special_entr.default", (_x1(-1),), NotModelled, "negative"),
    ("aten.logit.default", (_x1(1),), NotModelled, "infinite"),
    ("aten.logit.default", (_x1(q(1) / 2), 0.75), NotModelled, "eps"),
    ("aten.logit.default", (_x1(-1), 0.0), NotModelled, "infinite"),
    ("aten.atan2.default", (_x1(0), _x1(0)), NotLipschitz, "(0, 0)"),
    ("aten.atan2.default", (_x1(0), _x1(-1)), NotLipschitz, "branch cut"),
    ("aten.hypot.default", (_x1(0, 1), _x1(0, 1)), NotModelled, "hypot at (0, 0)"),
    ("aten.pow.Tensor_Tensor", (_x1(-1), _x1(q(1) / 2)), NotModelled, "non-integer exponent at x <= 0"),
    ("aten.pow.Tensor_Tensor", (_x1(0), _x1(q(5) / 2)), NotModelled, "non-integer exponent at x <= 0"),
    ("aten.pow.Tensor_Tensor", (_x1(0), _x1(-1)), NotModelled, "inf"),
    ("aten.pow.Scalar", (-2.0, _x1(2)), NotModelled, "negative"),
    ("aten.pow.Scalar", (0.0, _x1(0)), NotLipschitz, "jumps"),
    ("aten.pow.Scalar", (0.0, _x1(-1)), NotModelled, "inf"),
    ("aten.xlogy.Tensor", (_x1(1), _x1(-1)), NotModelled, "NaN"),
    ("aten.xlogy.Tensor", (_x1(1), _x1(0)), NotModelled, "infinite"),
    ("aten.xlogy.Tensor", (_x1(0), _x1(-1)), NotModelled, "derivative in x"),
    ("aten.xlogy.Scalar_Self", (0.0, _x1(0)), NotModelled, "0/0"),
    ("aten.special_xlog1py.default", (_x1(1), _x1(-2)), NotModelled, "NaN"),
])
def test_domain_refusals(op, args, exc, words):
    with pytest.raises(exc, match=None) as e:
        _fw(op, *args)
    assert words in str(e.value), str(e.value)


def test_pow_of_a_nonpositive_base_needs_a_constant_integer_exponent():
    op = "aten.pow.Tensor_Tensor"
    x, y = _x1(-2, 0, 0, 3), _x1(3, 1, 0, q(1) / 2)
    rule, ctx = lookup(op), Ctx(op, F64)
    out = rule.forward(ctx, (x, y), {})
    ob = to_ball(out)
    assert list(ob.mid[:3]) == [-8, 0, 1] and not ob.rad[:3].any()
    t = np.eye(4, dtype=object) * q(1)
    J = to_ball(rule.jvp(ctx, (x, y), {}, out, (t, None), {}))
    for i, d in enumerate([12, 1, 0, 1 / (2 * mp.sqrt(3))]):
        assert _contains(J[i, i], d), i
    with pytest.raises(NotModelled, match="exponent"):
        rule.jvp(ctx, (x, y), {}, out, (None, t), {})
    with pytest.raises(NotModelled, match="exponent"):
        rule.vjp(ctx, (x, y), {}, out, t)
    ctx.aux["live"] = [True, False]
    assert rule.vjp(ctx, (x, y), {}, out, t)[1] is None
    # end to end: a constant integer exponent tensor on negative inputs is checked
    p = torch.tensor([2.0, 3.0, 1.0], dtype=F64)
    assert mtcheck.check(lambda v: torch.pow(v, p), _x(-1.5, -2.0, 0.0)).verdict is Verdict.SMOOTH_OK


def test_xlogy_with_a_zero_scalar_self_and_negative_y_is_modelled():
    # xlogy(0, y) = 0 for every y; with a scalar 0 only the derivative in y (0) remains
    y = _fw("aten.xlogy.Scalar_Self", 0.0, _x1(-1, 2))
    assert not is_ball(y) and list(y) == [0, 0]


def _x(*v, dtype=F64):
    return torch.tensor(v, dtype=dtype)


@pytest.mark.parametrize("fn,x,err", [
    (torch.asin, _x(1.0, 0.5), mtcheck.OutsideTheoryError),
    (lambda v: torch.atan2(v, v), _x(0.0, 1.0), mtcheck.OutsideTheoryError),
    (lambda v: torch.atan2(v * 0, v), _x(-1.0, 1.0), mtcheck.OutsideTheoryError),
    (lambda v: torch.hypot(v, v), _x(0.0, 1.0), mtcheck.UnsupportedOpError),
    (lambda v: torch.pow(v, v), _x(-1.0), mtcheck.UnsupportedOpError),
    (lambda v: torch.logit(v, 0.75), _x(0.5), mtcheck.UnsupportedOpError),
    (S.entr, _x(0.0, 1.0), mtcheck.OutsideTheoryError),
    (lambda v: torch.polygamma(1, v), _x(-1.0), mtcheck.UnsupportedOpError),
    (lambda v: torch.xlogy(v, v), _x(0.0), mtcheck.UnsupportedOpError),
    (lambda v: torch.exp(-torch.lgamma(v)), _x(0.0), mtcheck.CheckInputError),
])
def test_refusals_end_to_end_are_documented_errors(fn, x, err):
    with pytest.raises(err) as e:
        mtcheck.check(fn, x)
    assert isinstance(e.value, mtcheck.CheckInputError)


# ---------------------------------------------------------------- end to end

_Y = torch.tensor([0.75, 2.0, 1.0], dtype=F64)
PROGRAMS = {
    "sin": torch.sin, "cos": torch.cos, "tan": torch.tan, "asin": lambda v: torch.asin(v / 4),
    "acos": lambda v: torch.acos(v / 4), "atan": torch.atan, "sinh": torch.sinh, "cosh": torch.cosh,
    "asinh": torch.asinh, "acosh": lambda v: torch.acosh(v * v + 2), "atanh": lambda v: torch.atanh(v / 4),
    "erfc": torch.erfc, "erfinv": lambda v: torch.erfinv(v / 4), "lgamma": lambda v: torch.lgamma(v + 0.125),
    "digamma": lambda v: torch.digamma(v + 3), "polygamma": lambda v: torch.polygamma(2, v + 3),
    "mvlgamma": lambda v: torch.mvlgamma(v + 3, 3), "i0": torch.i0, "i1": S.i1, "i1e": S.i1e,
    "ndtri": lambda v: S.ndtri(torch.sigmoid(v)), "log_ndtr": S.log_ndtr, "erfcx": S.erfcx,
    "entr": lambda v: S.entr(v * v + 1), "logit": lambda v: torch.logit(torch.sigmoid(v)), "sinc": torch.sinc,
    "atan2": lambda v: torch.atan2(v, _Y), "hypot": lambda v: torch.hypot(v, _Y),
    "logaddexp": lambda v: torch.logaddexp(v, _Y), "logaddexp2": lambda v: torch.logaddexp2(_Y, v),
    "pow_tensor": lambda v: torch.pow(_Y, v), "pow_base": lambda v: torch.pow(v * v + 1, _Y),
    "pow_scalar": lambda v: 2.0 ** v, "xlogy": lambda v: torch.xlogy(v, _Y),
    "xlogy_self": lambda v: torch.xlogy(2.0, v * v + 1),
    "xlog1py": lambda v: S.xlog1py(v, _Y), "inplace": lambda v: (v * 1).sin_().cos_(),
    "chain": lambda v: torch.atan2(torch.sin(torch.exp(v)), torch.cosh(v)) + torch.lgamma(torch.sigmoid(v)),
}


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_smooth_programs_pass(name):
    rep = mtcheck.check(PROGRAMS[name], _x(0.5, -1.25, 0.0))
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sin_is_smooth_ok(dtype):
    rep = mtcheck.check(lambda x: torch.sin(x), _x(0.5, -1.25, 0.0, 3.0, dtype=dtype))
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()


def test_float32_programs():
    x = _x(0.5, -1.25, 0.0, dtype=torch.float32)
    for fn in (torch.cos, torch.atan, lambda v: torch.atan2(v, v * v + 1), lambda v: torch.logaddexp(v, -v)):
        rep = mtcheck.check(fn, x)
        assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()


def test_ties_after_exact_special_values():
    # sin(0) = 0 and tan(0) = 0 exactly: relu sees a tie there
    for fn in (lambda v: torch.relu(torch.sin(v)), lambda v: torch.relu(torch.tan(v)),
               lambda v: torch.relu(torch.atan2(v, v * 0 + 1))):
        rep = mtcheck.check(fn, _x(0.0, 1.0))
        assert rep.verdict is Verdict.ASSOCIATED, rep.explain()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_logit_with_eps_is_a_clamp(dtype):
    eps = 0.125
    # inside, below and above the clamp: smooth (the derivative is 0 outside)
    rep = mtcheck.check(lambda v: torch.logit(v, eps), _x(0.5, 0.0625, 0.9375, 0.25, dtype=dtype))
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()
    # at the bounds: ties, the framework takes the interior derivative
    hi = (torch.tensor(1.0, dtype=dtype) - torch.tensor(eps, dtype=dtype)).item()
    rep = mtcheck.check(lambda v: torch.logit(v, eps), _x(eps, hi, 0.5, dtype=dtype))
    assert rep.verdict is Verdict.ASSOCIATED, rep.explain()
    # a negative eps is no clamp
    assert mtcheck.check(lambda v: torch.logit(v, -1.0), _x(0.5, 0.25, dtype=dtype)).verdict is Verdict.SMOOTH_OK


def test_logit_with_eps_enclosures():
    x = _x1(q(1) / 16, q(1) / 2, q(15) / 16, q(1) / 8)
    rule, ctx = lookup("aten.logit.default"), Ctx("aten.logit.default", F64)
    y = rule.forward(ctx, (x, 0.125), {})
    J = to_ball(rule.jvp(ctx, (x, 0.125), {}, y, (np.eye(4, dtype=object) * q(1),), {}))
    lg = lambda v: mp.log(v / (1 - v))  # noqa: E731
    for i, (c, d) in enumerate([(mp.mpf(1) / 8, 0), (mp.mpf(1) / 2, 4), (mp.mpf(7) / 8, 0),
                                (mp.mpf(1) / 8, 1 / (mp.mpf(1) / 8 * 7 / 8))]):
        assert _contains(to_ball(y)[i], lg(c)) and _contains(J[i, i], d), i
    assert len(rule.discs(ctx, (x, 0.125), {}, y)) == 2


def test_i0e_kink_is_associated():
    assert mtcheck.check(S.i0e, _x(0.0, 1.0, -2.0)).verdict is Verdict.ASSOCIATED
    assert mtcheck.check(S.i0e, _x(0.5, 1.0, -2.0)).verdict is Verdict.SMOOTH_OK


@pytest.mark.parametrize("fn", [S.bessel_j0, S.bessel_j1, S.modified_bessel_i0, S.modified_bessel_i1,
                                S.spherical_bessel_j0, S.airy_ai])
def test_ops_that_torch_does_not_differentiate_are_named(fn):
    # PyTorch marks these non-differentiable (the output has no grad_fn): its gradient through
    # them is silently 0, which differs from the true one; the report's note names the op
    rep = mtcheck.check(fn, _x(0.5, -1.25, 2.0))
    assert rep.verdict is Verdict.SMOOTH_WRONG
    assert any(n.startswith("PyTorch does not differentiate") for n in rep.notes)


# ---------------------------------------------------------------- mutants

class _CosWrongSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.cos(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.sin(x)        # should be -sin(x)


class _Net(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.l1, self.l2 = nn.Linear(3, 4), nn.Linear(4, 2)
        self.act = act

    def forward(self, x):
        return self.l2(self.act(self.l1(x)))


def test_cos_mutant_in_a_float32_model_is_caught():
    torch.manual_seed(0)
    m = _Net(_CosWrongSign.apply)
    rep = mtcheck.check(m, torch.tensor([0.5, -1.0, 0.25]))
    assert rep.verdict in (Verdict.SMOOTH_WRONG, Verdict.NOT_ASSOCIATED), rep.explain()
    torch.manual_seed(0)
    rep = mtcheck.check(_Net(torch.cos), torch.tensor([0.5, -1.0, 0.25]))
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()


class _Atan2Swapped(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, x):
        ctx.save_for_backward(y, x)
        return torch.atan2(y, x)

    @staticmethod
    def backward(ctx, g):
        y, x = ctx.saved_tensors
        r = x * x + y * y
        return g * (-y) / r, g * x / r      # the two partials swapped


def test_atan2_mutant_is_caught():
    rep = mtcheck.check(lambda v: _Atan2Swapped.apply(v, v * v + 1), _x(0.5, -1.25, 2.0))
    assert rep.verdict is Verdict.SMOOTH_WRONG, rep.explain()


class _LgammaAsDigammaOfNext(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.lgamma(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.digamma(x + 1)       # psi(x + 1) = psi(x) + 1/x: off by 1/x


def test_lgamma_mutant_is_caught():
    rep = mtcheck.check(lambda v: _LgammaAsDigammaOfNext.apply(v + 3), _x(0.5, -1.25, 2.0))
    assert rep.verdict is Verdict.SMOOTH_WRONG, rep.explain()
