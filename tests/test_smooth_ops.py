"""Smooth ops with irrational values (mtcheck/ops/smooth.py): enclosures, exactness, jvp/vjp,
end-to-end verdicts and mutants."""

import mpmath
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mtcheck
from mtcheck import Verdict
from mtcheck._ball import is_ball, to_ball
from mtcheck._exact import q
from mtcheck.ops import Ctx, lookup

mpmath.mp.prec = 200
F64 = torch.float64

# op -> (args after x, kwargs, mpmath value, mpmath derivative, domain: 'all' or 'pos')
_S = lambda v: 1 / (1 + mpmath.exp(-v))  # noqa: E731
_PHI = lambda v: mpmath.erfc(-v / mpmath.sqrt(2)) / 2  # noqa: E731
_K = mpmath.mpf(0.044715)
_C = mpmath.sqrt(2 / mpmath.pi)
_GT = lambda v: v / 2 * (1 + mpmath.tanh(_C * (v + _K * v ** 3)))  # noqa: E731
OPS = {
    "aten.exp.default": ((), {}, mpmath.exp, mpmath.exp, "all"),
    "aten.exp2.default": ((), {}, lambda v: 2 ** v, lambda v: mpmath.log(2) * 2 ** v, "all"),
    "aten.expm1.default": ((), {}, mpmath.expm1, mpmath.exp, "all"),
    "aten.log.default": ((), {}, mpmath.log, lambda v: 1 / v, "pos"),
    "aten.log2.default": ((), {}, lambda v: mpmath.log(v, 2), lambda v: 1 / (v * mpmath.log(2)), "pos"),
    "aten.log10.default": ((), {}, mpmath.log10, lambda v: 1 / (v * mpmath.log(10)), "pos"),
    "aten.log1p.default": ((), {}, mpmath.log1p, lambda v: 1 / (1 + v), "pos"),
    "aten.sqrt.default": ((), {}, mpmath.sqrt, lambda v: 1 / (2 * mpmath.sqrt(v)), "pos"),
    "aten.rsqrt.default": ((), {}, lambda v: 1 / mpmath.sqrt(v), lambda v: -v ** -1.5 / 2, "pos"),
    "aten.tanh.default": ((), {}, mpmath.tanh, lambda v: 1 - mpmath.tanh(v) ** 2, "all"),
    "aten.sigmoid.default": ((), {}, _S, lambda v: _S(v) * (1 - _S(v)), "all"),
    "aten.erf.default": ((), {}, mpmath.erf, lambda v: 2 / mpmath.sqrt(mpmath.pi) * mpmath.exp(-v * v), "all"),
    "aten.gelu.default": ((), {}, lambda v: v * _PHI(v), lambda v: mpmath.diff(lambda u: u * _PHI(u), v), "all"),
    "gelu_tanh": ((), {"approximate": "tanh"}, _GT, lambda v: mpmath.diff(_GT, v), "all"),
    "aten.silu.default": ((), {}, lambda v: v * _S(v), lambda v: mpmath.diff(lambda u: u * _S(u), v), "all"),
    "aten.mish.default": ((), {}, lambda v: v * mpmath.tanh(mpmath.log1p(mpmath.exp(v))),
                          lambda v: mpmath.diff(lambda u: u * mpmath.tanh(mpmath.log1p(mpmath.exp(u))), v), "all"),
    "aten.pow.Tensor_Scalar": ((1.5,), {}, lambda v: v ** 1.5, lambda v: 1.5 * v ** 0.5, "pos"),
}
INPUTS = {"all": [q(0), q(1), q(-3) / 2, q(7), q(-25), q(1) / 3], "pos": [q(1), q(4), q(1) / 3, q(1000), q(3) / 1024]}


from enclosure_helpers import contains as _contains  # noqa: E402


def _name(k):
    return "aten.gelu.default" if k == "gelu_tanh" else k


@pytest.mark.parametrize("key", list(OPS))
def test_enclosures_contain_the_true_value_and_derivative(key):
    extra, kw, f, df, dom = OPS[key]
    x = np.array(INPUTS[dom], dtype=object)
    rule, ctx = lookup(_name(key)), Ctx(_name(key), F64)
    y = rule.forward(ctx, (x,) + extra, kw)
    t = np.eye(x.size, dtype=object) * q(1)
    J = rule.jvp(ctx, (x,) + extra, kw, y, (t,), {})
    (G,) = rule.vjp(ctx, (x,) + extra, kw, y, t)
    for i, v in enumerate(x):
        mv = mpmath.mpf(int(v.p)) / int(v.q)
        assert _contains(y[i], f(mv)), (key, v)
        assert _contains(J[i, i], df(mv)), (key, v)
        # jvp and vjp agree (an elementwise Jacobian is its own transpose)
        assert to_ball(J).mid[i, i] == to_ball(G).mid[i, i]
    Jb = to_ball(J)
    assert (Jb.mid[~np.eye(x.size, dtype=bool)] == 0).all()


@pytest.mark.parametrize("op,val", [("aten.exp.default", 1), ("aten.gelu.default", 0), ("aten.sigmoid.default", q(1) / 2),
                                    ("aten.tanh.default", 0), ("aten.erf.default", 0), ("aten.silu.default", 0),
                                    ("aten.expm1.default", 0), ("aten.exp2.default", 1)])
def test_exact_at_special_points(op, val):
    rule, ctx = lookup(op), Ctx(op, F64)
    y = rule.forward(ctx, (np.array([q(0)], dtype=object),), {})
    assert not is_ball(y) and y[0] == val


def test_exact_at_other_rational_points():
    for op, x, val in [("aten.sqrt.default", q(9) / 4, q(3) / 2), ("aten.log.default", q(1), 0),
                       ("aten.log2.default", q(8), 3), ("aten.rsqrt.default", q(4), q(1) / 2),
                       ("aten.exp2.default", q(-3), q(1) / 8)]:
        y = lookup(op).forward(Ctx(op, F64), (np.array([x], dtype=object),), {})
        assert not is_ball(y) and y[0] == val, op


def test_large_inputs_stay_enclosed():
    x = np.array([q(-700), q(700), q(-10 ** 5)], dtype=object)
    y = lookup("aten.sigmoid.default").forward(Ctx("aten.sigmoid.default", F64), (x,), {})
    assert _contains(y[0], _S(mpmath.mpf(-700))) and _contains(y[1], _S(mpmath.mpf(700)))
    y = lookup("aten.tanh.default").forward(Ctx("aten.tanh.default", F64), (x,), {})
    assert _contains(y[2], -1)


def test_domain_refusals():
    from mtcheck.ops import NotLipschitz, NotModelled

    z = np.array([q(0)], dtype=object)
    with pytest.raises(NotLipschitz):
        lookup("aten.sqrt.default").forward(Ctx("aten.sqrt.default", F64), (z,), {})
    with pytest.raises(NotModelled):
        lookup("aten.log.default").forward(Ctx("aten.log.default", F64), (z,), {})
    with pytest.raises(NotLipschitz):
        lookup("aten.pow.Tensor_Scalar").forward(Ctx("aten.pow.Tensor_Scalar", F64), (z, 0.5), {})
    with pytest.raises(NotModelled):
        lookup("aten.pow.Tensor_Scalar").forward(Ctx("aten.pow.Tensor_Scalar", F64), (-z - 1, 0.5), {})


def _mp_softmax(row):
    e = [mpmath.exp(v) for v in row]
    s = sum(e)
    return [v / s for v in e]


@pytest.mark.parametrize("op", ["aten._softmax.default", "aten._log_softmax.default"])
def test_softmax_rules(op):
    rng = np.random.default_rng(0)
    xf = rng.standard_normal((2, 3)) * 3
    x = np.vectorize(q, otypes=[object])(xf)
    rule, ctx = lookup(op), Ctx(op, F64)
    y = rule.forward(ctx, (x, 1, False), {})
    t = np.vectorize(q, otypes=[object])(rng.standard_normal((4, 2, 3)))
    g = np.vectorize(q, otypes=[object])(rng.standard_normal((4, 2, 3)))
    J = to_ball(rule.jvp(ctx, (x, 1, False), {}, y, (t,), {}))
    (G,) = rule.vjp(ctx, (x, 1, False), {}, y, g)
    G = to_ball(G)
    for r in range(2):
        row = [mpmath.mpf(float(v)) for v in xf[r]]
        s = _mp_softmax(row)
        ref = [mpmath.log(v) for v in s] if "log" in op else s
        for j in range(3):
            assert _contains(to_ball(y)[r, j], ref[j])
        # reference Jacobian at high precision
        Jm = [[(s[i] * ((i == j) - s[j]) if "log" not in op else (i == j) - s[j]) for j in range(3)] for i in range(3)]
        for b in range(4):
            for i in range(3):
                v = sum(Jm[i][j] * mpmath.mpf(float(t[b, r, j])) for j in range(3))
                assert _contains(J[b, r, i], v)
                w = sum(Jm[j][i] * mpmath.mpf(float(g[b, r, j])) for j in range(3))
                assert _contains(G[b, r, i], w)
    # transpose: <g, J t> == <J^T g, t> (enclosures overlap)
    lhs = (to_ball(g) * J).sum()
    rhs = (G * to_ball(t)).sum()
    assert abs(float(lhs.mid) - float(rhs.mid)) <= float(lhs.rad) + float(rhs.rad) + 1e-15


def test_softmax_of_equal_entries_is_exact():
    x = np.array([[q(3), q(3)]], dtype=object)
    y = lookup("aten._softmax.default").forward(Ctx("aten._softmax.default", F64), (x, 1, False), {})
    assert not is_ball(y) and (y == q(1) / 2).all()


def test_logsumexp_rule():
    x = np.array([[q(1), q(2)], [q(-1), q(5)]], dtype=object)
    rule, ctx = lookup("aten.logsumexp.default"), Ctx("aten.logsumexp.default", F64)
    y = rule.forward(ctx, (x, [1]), {})
    assert _contains(y[0], mpmath.log(mpmath.e + mpmath.e ** 2))
    assert _contains(y[1], mpmath.log(mpmath.e ** -1 + mpmath.e ** 5))


# ---------------------------------------------------------------- end to end

def _x(*v, dtype=F64):
    return torch.tensor(v, dtype=dtype)


_P = torch.tensor([0.25, 0.375, 0.375], dtype=F64)
SMOOTH_PROGRAMS = {
    "exp": lambda x: torch.exp(x), "exp2": torch.exp2, "expm1": torch.expm1, "log": lambda x: torch.log(x * x + 1),
    "log2": lambda x: torch.log2(x * x + 1), "log10": lambda x: torch.log10(x * x + 1),
    "log1p": lambda x: torch.log1p(x * x), "sqrt": lambda x: torch.sqrt(x * x + 1),
    "rsqrt": lambda x: torch.rsqrt(x * x + 1), "tanh": torch.tanh, "sigmoid": torch.sigmoid, "erf": torch.erf,
    "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "silu": F.silu,
    "softplus": lambda x: F.softplus(x, beta=2.0, threshold=3.0), "mish": F.mish, "logsigmoid": F.logsigmoid,
    "elu": lambda x: F.elu(x, 0.5), "celu": lambda x: F.celu(x, 0.5), "selu": F.selu,
    "pow": lambda x: (x * x + 1) ** 1.5, "softmax": lambda x: F.softmax(x, -1),
    "log_softmax": lambda x: F.log_softmax(x, -1), "logsumexp": lambda x: torch.logsumexp(x, 0),
    "cross_entropy": lambda x: F.cross_entropy(x.reshape(1, -1), torch.tensor([1])),
    "softmin": lambda x: F.softmin(x, -1),
    "chain": lambda x: torch.sigmoid(torch.exp(x)) * torch.tanh(x),
    "pow_of_ball": lambda x: torch.exp(x) ** 0.5,
    "softplus_of_ball": lambda x: F.softplus(torch.exp(x), beta=2.0, threshold=4.0),
    "elu_of_ball": lambda x: F.elu(torch.tanh(x), 0.5),
    "softmax_f32": lambda x: F.softmax(x.float() * 3, -1),
    "bce": lambda x: F.binary_cross_entropy(torch.sigmoid(x), _P),
    "bce_logits": lambda x: F.binary_cross_entropy_with_logits(x, _P, pos_weight=_P * 4, reduction="sum"),
    "bce_target": lambda x: F.binary_cross_entropy_with_logits(_P, torch.sigmoid(x)),
    "kl_div": lambda x: F.kl_div(F.log_softmax(x, -1), _P, reduction="batchmean"),
    "poisson_nll": lambda x: F.poisson_nll_loss(x, _P),
}


@pytest.mark.parametrize("name", list(SMOOTH_PROGRAMS))
def test_smooth_programs_pass(name):
    rep = mtcheck.check(SMOOTH_PROGRAMS[name], _x(0.5, -1.25, 2.0))
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()


def test_elu_kink_is_associated_and_alpha_one_is_smooth():
    x = _x(0.0, 1.0, -0.5)
    assert mtcheck.check(nn.ELU(alpha=0.5), x).verdict is Verdict.ASSOCIATED
    assert mtcheck.check(lambda v: F.elu(v, 1.0), x).verdict is Verdict.SMOOTH_OK


def test_softplus_at_its_threshold_is_outside_the_theory():
    # PyTorch's softplus jumps by log(1 + exp(-threshold)) / beta where x * beta == threshold
    with pytest.raises(mtcheck.OutsideTheoryError):
        mtcheck.check(lambda v: F.softplus(v, beta=2.0, threshold=1.0), _x(0.5, 0.0))
    rep = mtcheck.check(lambda v: F.softplus(v, beta=1.0, threshold=0.25), _x(0.5, 0.0))
    assert rep.verdict is Verdict.SMOOTH_OK


def test_log_softmax_of_a_tied_max_pool_is_associated():
    x = _x(1.0, 1.0, 0.5, -2.0).reshape(1, 1, 4)
    rep = mtcheck.check(lambda v: F.log_softmax(F.max_pool1d(v, 2), -1), x)
    assert rep.verdict is Verdict.ASSOCIATED, rep.explain()


def test_mlp_with_relu_tie_and_gelu_float32_is_decided():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 2)).eval()
    with torch.no_grad():
        m[0].bias.zero_()
    rep = mtcheck.check(m, torch.zeros(3))
    assert rep.verdict is not Verdict.UNKNOWN, rep.explain()
    assert rep.verdict.passed, rep.explain()


# ---------------------------------------------------------------- mutants

class _BadSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        s = torch.softmax(x, -1)
        ctx.save_for_backward(s)
        return s

    @staticmethod
    def backward(ctx, g):
        (s,) = ctx.saved_tensors
        return s * g          # forgets the - s s^T term


def test_softmax_mutant_is_caught():
    rep = mtcheck.check(lambda x: _BadSoftmax.apply(x), _x(0.5, -1.25, 2.0))
    assert rep.verdict is Verdict.SMOOTH_WRONG, rep.explain()


class _GeluTanhBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return F.gelu(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            xx = x.detach().requires_grad_()
            (d,) = torch.autograd.grad(F.gelu(xx, approximate="tanh").sum(), xx)
        return g * d


def test_gelu_mutant_caught_in_float64():
    rep = mtcheck.check(lambda x: _GeluTanhBackward.apply(x), _x(0.5, -1.25, 2.0))
    assert rep.verdict is Verdict.SMOOTH_WRONG, rep.explain()


def test_gelu_mutant_in_float32():
    rep = mtcheck.check(lambda x: _GeluTanhBackward.apply(x), _x(0.5, -1.25, 2.0, dtype=torch.float32))
    # Caught in float32 too: the tanh approximation's derivative differs from the exact one by
    # 1.3e-4 .. 8.7e-4 per row here (relative 1.4e-3), far beyond float32's stated tolerance
    # (rtol 1.3e-6, atol 1e-5 per row, L1), while the enclosure radii of J_S are ~5e-17.
    assert rep.verdict is Verdict.SMOOTH_WRONG, rep.explain()


def test_bce_with_logits_jvp_keeps_the_fixed_point_scale():
    """A fixed-point tangent (an Fx: integers and a scale) through a smooth loss keeps its scale
    (_fin once turned it into plain objects, dropping 2**-e)."""
    from mtcheck._fixed import Fx, from_exact, to_exact

    name = "aten.binary_cross_entropy_with_logits.default"
    rule = lookup(name)
    ctx = Ctx(name, torch.float64)
    x = np.array([q(0), q(0)], dtype=object)
    y = np.array([q(0), q(1)], dtype=object)
    kw = {"reduction": 0}
    out = rule.forward(ctx, (x, y), kw)
    t = from_exact(np.array([[q(1) / 4, q(1) / 4]], dtype=object))
    res = rule.jvp(ctx, (x, y), kw, out, (t, None), {})
    vals = to_exact(res) if isinstance(res, Fx) else np.asarray(res, dtype=object)
    assert vals.ravel().tolist() == [q(1) / 8, -q(1) / 8]


def test_ball_matmul_skips_zero_rows_and_add_fast_paths_stay_rigorous():
    """Large Ball products skip exactly-zero rows (one-hot cotangents), and large sums with every
    radius positive bound the rounding by u|z|: both still enclose the exact results."""
    from fractions import Fraction

    from mtcheck._ball import ball, matmul

    rng = np.random.default_rng(0)
    am = rng.standard_normal((600, 128))
    am[rng.random(600) < 0.8] = 0.0
    a = ball(am, np.where(am != 0, 1e-12, 0.0))
    bm = rng.standard_normal((128, 5))
    b = ball(bm)
    c = matmul(a, b)
    zero = ~am.any(axis=1)
    assert (c.mid[zero] == 0).all() and (c.rad[zero] == 0).all()
    for i in np.flatnonzero(~zero)[:5]:
        for j in range(5):
            exact = sum(Fraction(x) * Fraction(y) for x, y in zip(am[i], bm[:, j]))
            bound = sum(abs(Fraction(y)) * Fraction(1e-12) for y in bm[:, j])
            assert abs(Fraction(c.mid[i, j]) - exact) <= Fraction(c.rad[i, j]) - bound
    x = ball(rng.standard_normal(5000), np.full(5000, 1e-15))
    y = ball(rng.standard_normal(5000) * 1e3, np.full(5000, 1e-13))
    s = x + y
    for i in range(0, 5000, 997):
        exact = Fraction(x.mid[i]) + Fraction(y.mid[i])
        assert abs(Fraction(s.mid[i]) - exact) <= Fraction(s.rad[i]) - Fraction(1e-15) - Fraction(1e-13)
    z = ball(np.zeros(5000))
    assert ((z + y).mid == y.mid).all() and ((y - z).rad == y.rad).all() and ((z - y).mid == -y.mid).all()


def test_large_ball_products_are_enclosed_and_exact_where_they_were():
    """_mul on large arrays (its fast path) keeps exact products exact (a factor 0 or 2**k) and
    encloses the others, as the small-array path does."""
    from fractions import Fraction

    from mtcheck._ball import _mul, ball

    rng = np.random.default_rng(1)
    n = 70000
    am = rng.standard_normal(n)
    am[::3] = 0.0
    bm = np.where(rng.random(n) < 0.5, 0.25, rng.standard_normal(n))
    ar = np.where(rng.random(n) < 0.5, 0.0, 1e-14)
    a, b = ball(am, ar), ball(bm)
    big, small = _mul(a, b), _mul(a[:1000], b[:1000])
    exact = (ar == 0) & ((am == 0) | (bm == 0.25))
    assert (big.rad[exact] == 0).all() and (small.rad[exact[:1000]] == 0).all()
    for i in range(0, n, 6007):
        t = Fraction(am[i]) * Fraction(bm[i])
        assert abs(Fraction(big.mid[i]) - t) + abs(Fraction(bm[i])) * Fraction(ar[i]) <= Fraction(big.rad[i])
