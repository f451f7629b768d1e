"""Smooth ops of mtcheck/ops/misc_smooth.py (_safe_softmax, _softmax_backward_data, logcumsumexp,
glu, soft_margin_loss), batch norm in training mode (mtcheck/ops/arith.py) and Ball.ones_like:
enclosures against mpmath, end-to-end verdicts in float64 and float32, mutants."""

from fractions import Fraction

import mpmath
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mtcheck
from mtcheck import Verdict
from mtcheck._ball import Ball, ball, is_ball, to_ball
from mtcheck._exact import q
from mtcheck.ops import Ctx, lookup

mpmath.mp.prec = 200
F64, F32 = torch.float64, torch.float32
DECIDED = (Verdict.SMOOTH_OK, Verdict.ASSOCIATED)


def _mp(v):
    return mpmath.mpf(int(v.p)) / int(v.q)


def _contains(b, v):
    """Whether the enclosure ``b`` (a Ball element or an exact value) contains the mpmath ``v``."""
    if isinstance(b, (complex, np.complexfloating)):
        mid, rad = float(b.real), float(b.imag)
    else:
        b = to_ball(np.asarray(b, dtype=object)) if not is_ball(b) else b
        mid, rad = float(b.mid), float(b.rad)
    return abs(mpmath.mpf(mid) - v) <= mpmath.mpf(rad) * (1 + 1e-12)


def _all_contain(B, V):
    B = to_ball(B) if not is_ball(B) else B
    flatb = B.reshape(-1)
    return all(_contains(flatb[i], v) for i, v in enumerate(V))


def _run(name, args, kwargs=None, tangent_shape=None):
    kwargs = kwargs or {}
    rule, ctx = lookup(name), Ctx(name, F64)
    out = rule.forward(ctx, args, kwargs)
    return rule, ctx, out


def _x(*v, dtype=F64):
    return torch.tensor(v, dtype=dtype)


XS = [q(0), q(1), q(-3) / 2, q(7), q(1) / 3, q(-25)]


# ---------------------------------------------------------------- Ball.ones_like

def test_ball_ones_like_is_exact_ones():
    b = ball(np.array([0.5, -2.0]), np.array([1e-3, 0.0]))
    o = np.ones_like(b)
    assert isinstance(o, Ball) and (o.mid == 1).all() and (o.rad == 0).all()
    assert np.ones_like(b, dtype=bool).dtype == bool and np.ones_like(b, dtype=bool).all()


# ---------------------------------------------------------------- enclosures vs mpmath

def test_logcumsumexp_enclosures():
    x = np.array(XS, dtype=object)
    name = "aten.logcumsumexp.default"
    rule, ctx, y = _run(name, (x, 0))
    xm = [_mp(v) for v in XS]
    n = len(xm)
    ys = [mpmath.log(mpmath.fsum(mpmath.exp(xm[j]) for j in range(i + 1))) for i in range(n)]
    assert _all_contain(y, ys)
    t = np.eye(n, dtype=object) * q(1)
    J = rule.jvp(ctx, (x, 0), {}, y, (t,), {})          # J[k, i] = d y_i / d x_k
    (G,) = rule.vjp(ctx, (x, 0), {}, y, t)                # G[i, k] = d y_i / d x_k
    want = [[mpmath.exp(xm[k] - ys[i]) if k <= i else mpmath.mpf(0) for i in range(n)] for k in range(n)]
    assert _all_contain(J, [w for row in want for w in row])
    assert _all_contain(np.swapaxes(to_ball(G), 0, 1), [w for row in want for w in row])


def test_logcumsumexp_far_apart_values_stay_enclosed():
    x = np.array([q(-1000), q(0), q(3), q(-2000)], dtype=object)
    rule, ctx, y = _run("aten.logcumsumexp.default", (x, 0))
    xm = [_mp(v) for v in x]
    ys = [mpmath.log(mpmath.fsum(mpmath.exp(xm[j]) for j in range(i + 1))) for i in range(4)]
    assert _all_contain(y, ys)


def test_glu_enclosures():
    a, b = XS[:3], XS[3:]
    x = np.array(a + b, dtype=object).reshape(1, 6)
    rule, ctx, y = _run("aten.glu.default", (x, -1))
    s = lambda v: 1 / (1 + mpmath.exp(-v))  # noqa: E731
    assert _all_contain(y, [_mp(u) * s(_mp(v)) for u, v in zip(a, b)])
    t = np.eye(6, dtype=object).reshape(6, 1, 6) * q(1)
    J = to_ball(rule.jvp(ctx, (x, -1), {}, y, (t,), {})).reshape(6, 3)
    (G,) = rule.vjp(ctx, (x, -1), {}, y, np.eye(3, dtype=object).reshape(3, 1, 3) * q(1))
    G = to_ball(G).reshape(3, 6)
    for i in range(3):
        da = s(_mp(b[i]))
        db = _mp(a[i]) * s(_mp(b[i])) * (1 - s(_mp(b[i])))
        assert _contains(J[i, i], da) and _contains(J[3 + i, i], db)
        assert _contains(G[i, i], da) and _contains(G[i, 3 + i], db)
        assert float(J.mid[(i + 1) % 3, i]) == 0


@pytest.mark.parametrize("reduction", [0, 1, 2])
def test_soft_margin_loss_enclosures(reduction):
    x = np.array(XS, dtype=object)
    y = np.array([q(1), q(-1), q(1), q(-1), q(1) / 2, q(1)], dtype=object)
    rule, ctx, out = _run("aten.soft_margin_loss.default", (x, y, reduction))
    ls = [mpmath.log1p(mpmath.exp(-_mp(u) * _mp(v))) for u, v in zip(x, y)]
    dx = [-_mp(v) / (1 + mpmath.exp(_mp(u) * _mp(v))) for u, v in zip(x, y)]
    dy = [-_mp(u) / (1 + mpmath.exp(_mp(u) * _mp(v))) for u, v in zip(x, y)]
    n = len(ls)
    scale = {0: 1, 1: mpmath.mpf(1) / n, 2: 1}[reduction]
    if reduction == 0:
        assert _all_contain(out, ls)
    else:
        assert _contains(out, mpmath.fsum(ls) * scale)
    cot = np.eye(n, dtype=object) * q(1) if reduction == 0 else np.ones(1, dtype=object) * q(1)
    ctx.aux["live"] = [True, True]
    gx, gy = rule.vjp(ctx, (x, y, reduction), {}, out, cot)
    gx, gy = to_ball(gx).reshape(-1, n), to_ball(gy).reshape(-1, n)
    for i in range(n):
        r = i if reduction == 0 else 0
        assert _contains(gx[r, i], dx[i] * scale) and _contains(gy[r, i], dy[i] * scale)


def test_softmax_backward_data_is_exact():
    g = np.array([q(1), q(-2), q(1) / 3, q(5)], dtype=object)
    yv = [q(1) / 2, q(1) / 4, q(1) / 8, q(1) / 8]
    y = np.array(yv, dtype=object)
    rule, ctx, out = _run("aten._softmax_backward_data.default", (g, y, 0, F64))
    S = sum(Fraction(int(a.p), int(a.q)) * Fraction(int(b.p), int(b.q)) for a, b in zip(g, y))
    fr = lambda v: Fraction(int(v.p), int(v.q))  # noqa: E731
    assert [fr(v) for v in out] == [fr(b) * (fr(a) - S) for a, b in zip(g, y)]
    # the Jacobian in (g, y) is the exact polynomial derivative; vjp is its transpose
    n = 4
    eye = np.eye(n, dtype=object) * q(1)
    Jg = rule.jvp(ctx, (g, y, 0, F64), {}, out, (eye, None), {})
    Jy = rule.jvp(ctx, (g, y, 0, F64), {}, out, (None, eye), {})
    ctx.aux["live"] = [True, True]
    Gg, Gy = rule.vjp(ctx, (g, y, 0, F64), {}, out, eye)
    for k in range(n):
        for i in range(n):
            dg = fr(y[i]) * ((i == k) - fr(y[k]))
            dy = (i == k) * (fr(g[i]) - S) - fr(y[i]) * fr(g[k])
            assert fr(Jg[k, i]) == dg == fr(Gg[i, k])
            assert fr(Jy[k, i]) == dy == fr(Gy[i, k])


def test_batch_norm_training_enclosures():
    vals = [q(1), q(2), q(0), q(0), q(1) / 2, q(-1), q(0), q(3), q(-7) / 4, q(5), q(1) / 3, q(0)]
    x = np.array(vals, dtype=object).reshape(3, 2, 2)        # N=3, C=2, L=2
    w = np.array([q(3) / 2, q(-1)], dtype=object)
    b = np.array([q(1) / 4, q(2)], dtype=object)
    rm, rv = np.zeros(2, dtype=object) * q(1), np.ones(2, dtype=object) * q(1)
    eps = 1e-5
    args = (x, w, b, rm, rv, True, 0.1, eps)
    rule, ctx, (y, mean, invstd) = _run("aten.native_batch_norm.default", args)
    X = [[[_mp(x[n, c, l]) for l in range(2)] for c in range(2)] for n in range(3)]
    for c in range(2):
        xs = [X[n][c][l] for n in range(3) for l in range(2)]
        mu = mpmath.fsum(xs) / 6
        var = mpmath.fsum((v - mu) ** 2 for v in xs) / 6
        r = 1 / mpmath.sqrt(var + mpmath.mpf(eps))
        assert _contains(mean[c], mu) and _contains(invstd[c], r)
        for n in range(3):
            for l in range(2):
                xh = (X[n][c][l] - mu) * r
                assert _contains(y[n, c, l], xh * _mp(w[c]) + _mp(b[c]))
        # d y / d x along the channel: w r (delta - 1/n - xhat_i xhat_k / n)
        t = np.zeros((1, 3, 2, 2), dtype=object) * q(1)
        t[0, 1, c, 0] = q(1)                                 # x[1, c, 0]
        d, dmu, dr = rule.jvp(ctx, args, {}, (y, mean, invstd), (t, None, None, None, None), {})
        assert dmu is None and dr is None                    # non-differentiable outputs in PyTorch
        xk = (X[1][c][0] - mu) * r
        for n in range(3):
            for l in range(2):
                xi = (X[n][c][l] - mu) * r
                want = _mp(w[c]) * r * (((n, l) == (1, 0)) - mpmath.mpf(1) / 6 - xi * xk / 6)
                assert _contains(to_ball(d)[0, n, c, l], want)
            assert float(to_ball(d).mid[0, n, 1 - c].max()) == 0.0


# ---------------------------------------------------------------- end to end

_P3 = torch.tensor([1.0, -1.0, 1.0])
_M = torch.tensor([[0.5, 1.0], [1.0, 0.5]])
E2E = {
    "safe_softmax": (lambda v: torch.ops.aten._safe_softmax(v.reshape(2, 3), -1), (0.5, 0.0, -1.0, 1.0, 1.0, 2.0)),
    "safe_softmax_tie": (lambda v: torch.ops.aten._safe_softmax(torch.relu(v).reshape(2, 3), 0), (0.5, 0.0, -1.0, 0.0, 1.0, 2.0)),
    "softmax_backward_data": (lambda v: torch.ops.aten._softmax_backward_data(v[:3], torch.softmax(v[3:], 0), 0, v.dtype),
                              (0.5, 0.0, -1.0, 1.0, 2.0, 0.0)),
    "softmax_backward_data_exact": (lambda v: torch.ops.aten._softmax_backward_data(v[:2], v[2:] * 0.25 + 0.5, 0, v.dtype),
                                    (0.5, -1.0, 1.0, 0.0)),
    "glu": (lambda v: F.glu(v.reshape(2, 2), -1), (0.5, 0.0, -1.0, 0.0)),
    "glu_tie": (lambda v: F.glu(torch.relu(v).reshape(2, 2), 0), (0.5, 0.0, -1.0, 0.0)),
    "soft_margin_mean": (lambda v: F.soft_margin_loss(v, _P3.to(v.dtype)), (0.5, 0.0, -1.0)),
    "soft_margin_none_tie": (lambda v: F.soft_margin_loss(torch.relu(v), _P3.to(v.dtype), reduction="none"), (0.5, 0.0, -1.0)),
    "soft_margin_sum": (lambda v: F.soft_margin_loss(v * 2, -_P3.to(v.dtype), reduction="sum"), (0.5, 0.0, -1.0)),
    "bce_interior": (lambda v: F.binary_cross_entropy(v, torch.tensor([1.0, 0.0, 0.5], dtype=v.dtype)), (0.5, 0.25, 0.75)),
    "local_response_norm": (lambda v: F.local_response_norm(v.reshape(1, 4, 1), 2), (0.5, 0.0, -1.0, 1.0)),
    "local_response_norm_tie": (lambda v: F.local_response_norm(torch.relu(v).reshape(1, 4, 1), 3), (0.5, 0.0, -1.0, 1.0)),
    "instance_norm": (lambda v: F.instance_norm(v.reshape(2, 2, 2)), (1.0, 2.0, 0.0, 0.0, 0.5, -1.0, 0.0, 3.0)),
    "batch_norm_train": (lambda v: torch.relu(F.batch_norm(v.reshape(2, 2, 2), None, None, _M[0].to(v.dtype),
                                                              _M[1].to(v.dtype), training=True)),
                         (1.0, -1.0, 2.0, 0.0, 0.0, 0.0, -1.0, -1.0)),
    "batch_norm_train_input_tie": (lambda v: F.batch_norm(torch.relu(v).reshape(2, 2, 2), torch.zeros(2, dtype=v.dtype),
                                                          torch.ones(2, dtype=v.dtype), training=True),
                                   (1.0, -1.0, 2.0, 0.0, 0.0, 0.0, -1.0, -1.0)),
    "batch_norm_with_update": (lambda v: torch.ops.aten._batch_norm_with_update(
        v.reshape(2, 2, 2), _M[0].to(v.dtype), _M[1].to(v.dtype), torch.zeros(2, dtype=v.dtype),
        torch.ones(2, dtype=v.dtype), 0.1, 1e-5)[0], (1.0, 2.0, 0.0, 0.0, 0.5, -1.0, 0.0, 3.0)),
    "batch_norm_no_stats": (lambda v: torch.ops.aten._native_batch_norm_legit.no_stats(
        v.reshape(2, 2, 2), _M[0].to(v.dtype), None, True, 0.1, 1e-5)[0], (1.0, 2.0, 0.0, 0.0, 0.5, -1.0, 0.0, 3.0)),
    "batch_norm_no_update_eval": (lambda v: torch.ops.aten._batch_norm_no_update(
        v.reshape(2, 2, 2), _M[0].to(v.dtype), _M[1].to(v.dtype), _M[1].to(v.dtype), _M[0].to(v.dtype) * 2, 0.1,
        1e-5)[0], (1.0, 2.0, 0.0, 0.0, 0.5, -1.0, 0.0, 3.0)),
    "sdpa_math": (lambda v: F.scaled_dot_product_attention(v[:8].reshape(1, 2, 4), v[8:].reshape(1, 3, 4),
                                                           v[8:].reshape(1, 3, 4)),
                  (0.5, 0.0, -1.0, 1.0, 1.0, 2.0, 0.0, 0.5, 1.0, -0.5, 0.0, 2.0, 0.0, 1.0, 1.0, -1.0, 0.5, 0.5, 0.0, 0.25)),
}


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("name", list(E2E))
def test_end_to_end_decided(name, dtype):
    fn, vals = E2E[name]
    rep = mtcheck.check(fn, _x(*vals, dtype=dtype))
    assert rep.verdict in DECIDED, rep.explain()
    if name.endswith("_tie"):
        assert rep.pattern.n_ties > 0, rep.explain()


def test_logcumsumexp_end_to_end():
    x = _x(0.5, 0.0, -1.0, 0.0, 2.0, 2.0)
    assert mtcheck.check(lambda v: torch.logcumsumexp(v.reshape(2, 3), 1), x.float()).verdict is Verdict.SMOOTH_OK
    rep = mtcheck.check(lambda v: torch.logcumsumexp(torch.relu(v).reshape(2, 3), 0), x.float())
    assert rep.verdict is Verdict.ASSOCIATED and rep.tangent_dim < rep.n_inputs, rep.explain()
    # float64: PyTorch's logcumsumexp backward works in log space (log|grad|), so doubling the
    # cotangent does not double its result to the last bit; the linearity test compares scaling
    # exactly and reports NONLINEAR_VJP on a one-ulp difference (see the report of this change)
    rep = mtcheck.check(lambda v: torch.logcumsumexp(v.reshape(2, 3), 1), x)
    assert rep.verdict in (Verdict.SMOOTH_OK, Verdict.NONLINEAR_VJP), rep.explain()
    if rep.verdict is Verdict.NONLINEAR_VJP:
        assert "vjp(2*u)" in rep.mismatch or "vjp(-1*u)" in rep.mismatch, rep.mismatch


def test_logcumsumexp_jacobian_matches_torch_float64():
    x = torch.tensor([[0.5, 0.0, -1.0], [0.0, 2.0, 2.0]], dtype=F64)
    Jt = torch.autograd.functional.jacobian(lambda v: torch.logcumsumexp(v, 1), x).reshape(6, 6).numpy()
    xe = np.array([q(float(v)) for v in x.reshape(-1).tolist()], dtype=object).reshape(2, 3)
    rule, ctx, y = _run("aten.logcumsumexp.default", (xe, 1))
    J = to_ball(rule.jvp(ctx, (xe, 1), {}, y, (np.eye(6, dtype=object).reshape(6, 2, 3) * q(1),), {}))
    assert np.abs(J.mid.reshape(6, 6).T - Jt).max() < 1e-14


def _bn2d_input():
    torch.manual_seed(0)
    x = torch.round(torch.randn(4, 3, 8, 8) * 4) / 4
    x[:, :, 0, :4] = 0.0                  # tied zeros
    return x.float()


def test_batchnorm2d_training_float32_with_relu_ties_is_decided():
    torch.manual_seed(0)
    model = nn.Sequential(nn.ReLU(), nn.BatchNorm2d(3), nn.ReLU()).float().train()
    x = _bn2d_input()
    rep = mtcheck.check(model, x)
    assert rep.verdict in DECIDED, rep.explain()
    assert rep.pattern.n_ties > 0, rep.explain()              # the zeros tie at the first ReLU


def test_batchnorm_training_ties_after_the_norm_are_decided_from_enclosed_rows():
    # a ReLU tie right after the norm (x equal to its channel's batch mean) has the derivative row
    # rstd * (e_i - 1/n): irrational; its enclosure excludes 0 at column i, which proves
    # T(x) != R^n, and PyTorch's relu'(0) = 0 is the exact model's choice (Y = 0)
    from mtcheck.certificate import verify

    model = nn.Sequential(nn.BatchNorm1d(2), nn.ReLU()).float().train()
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.0], [0.0, -1.0], [0.0, -1.0]])   # channel means 0
    rep = mtcheck.check(model, x)
    assert rep.verdict is Verdict.ASSOCIATED, rep.explain()
    assert "nonzero_tie_row_radius" in rep.certificate and verify(rep.certificate).ok


# ---------------------------------------------------------------- mutants

class _BadGlu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return F.glu(x, -1)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        a, b = x.chunk(2, -1)
        s = torch.sigmoid(b)
        return torch.cat([g * s, g * s], -1)        # the gate's derivative is a s (1 - s), not s


class _BadBatchNorm(torch.autograd.Function):
    """Training batch norm whose backward treats the batch statistics as constants."""

    @staticmethod
    def forward(ctx, x):
        c = x - x.mean(0, keepdim=True)
        r = torch.rsqrt((c * c).mean(0, keepdim=True) + 1e-5)
        ctx.save_for_backward(r)
        return c * r

    @staticmethod
    def backward(ctx, g):
        (r,) = ctx.saved_tensors
        return g * r


def test_glu_mutant_is_caught():
    torch.manual_seed(0)
    lin1, lin2 = nn.Linear(3, 4), nn.Linear(2, 2)
    model = lambda v: lin2(_BadGlu.apply(torch.relu(lin1(v))))  # noqa: E731
    rep = mtcheck.check(model, torch.tensor([0.5, 0.0, -1.0]))
    assert rep.verdict in (Verdict.SMOOTH_WRONG, Verdict.NOT_ASSOCIATED), rep.explain()


def test_training_batch_norm_mutant_is_caught():
    torch.manual_seed(0)
    lin1, lin2 = nn.Linear(3, 4), nn.Linear(4, 2)
    model = lambda v: lin2(torch.relu(_BadBatchNorm.apply(lin1(v))))  # noqa: E731
    rep = mtcheck.check(model, torch.tensor([[0.5, 0.0, -1.0], [1.0, 2.0, 0.0], [0.0, 0.0, 0.25]]))
    assert rep.verdict in (Verdict.SMOOTH_WRONG, Verdict.NOT_ASSOCIATED), rep.explain()
    # the same model with PyTorch's batch norm is decided correct
    bn = nn.BatchNorm1d(4).train()
    rep = mtcheck.check(lambda v: lin2(torch.relu(bn(lin1(v)))),
                        torch.tensor([[0.5, 0.0, -1.0], [1.0, 2.0, 0.0], [0.0, 0.0, 0.25]]))
    assert rep.verdict in DECIDED, rep.explain()
