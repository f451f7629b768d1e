"""The checker catches deliberately wrong backward rules (custom autograd Functions),
and passes the correct ones."""

import pytest
import torch

import mtcheck
from mtcheck import Verdict
from planted_models import MaxBoth   # max whose backward gives every tied entry the full gradient

f64 = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731


class GoodRelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x > 0).to(g.dtype)


class ReluConstAtZero(GoodRelu):
    """Ignores its incoming gradient at the kink: writes 1 there."""

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return torch.where(x == 0, torch.ones_like(g), g * (x > 0).to(g.dtype))


class ReluHalfEverywhere(GoodRelu):
    """Wrong everywhere: half the derivative on the positive side."""

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 0.5 * g * (x > 0).to(g.dtype)


class ReluNanAtZero(GoodRelu):
    """Wrong only at ties: NaN at the kink."""

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return torch.where(x == 0, torch.full_like(g, float("nan")), g * (x > 0).to(g.dtype))


class ReluSquaresGrad(GoodRelu):
    """Nonlinear in the cotangent: g * |g| on the positive side."""

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * g.abs() * (x > 0).to(g.dtype)


class MaxSplitThird(MaxBoth):
    """At a tie gives each tied entry half of the gradient, whatever the size of the tie."""

    @staticmethod
    def backward(ctx, g):
        x, m = ctx.saved_tensors
        tied = (x == m).to(g.dtype)
        k = tied.sum(-1, keepdim=True)
        w = torch.where(k > 1, 0.5 * tied, tied)
        return g.unsqueeze(-1) * w


class GoodMax(MaxBoth):
    @staticmethod
    def backward(ctx, g):
        x, m = ctx.saved_tensors
        tied = (x == m).to(g.dtype)
        return g.unsqueeze(-1) * tied / tied.sum(-1, keepdim=True)


class LinearTransposedWrong(torch.autograd.Function):
    """y = W x with a backward that uses W instead of W^T (square W): wrong everywhere."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(w)
        return w @ x

    @staticmethod
    def backward(ctx, g):
        (w,) = ctx.saved_tensors
        return w @ g, None


class ClampMinBoth(torch.autograd.Function):
    """clamp(x, min=lo) with a tensor bound whose backward, at x == lo, passes the
    gradient to both x and lo (it should choose one of them)."""

    @staticmethod
    def forward(ctx, x, lo):
        ctx.save_for_backward(x, lo)
        return torch.clamp(x, min=lo)

    @staticmethod
    def backward(ctx, g):
        x, lo = ctx.saved_tensors
        return g * (x >= lo).to(g.dtype), g * (x <= lo).to(g.dtype)


W = torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=torch.float64)


CASES = [
    # (name, program, inputs, expected verdict)
    ("relu ignores grad at 0", lambda x: ReluConstAtZero.apply(x).sum(), (f64(0.0, 1.0),), Verdict.NONLINEAR_VJP),
    ("relu half everywhere", lambda x: ReluHalfEverywhere.apply(x).sum(), (f64(0.5, 1.0),), Verdict.SMOOTH_WRONG),
    ("relu NaN at 0", lambda x: ReluNanAtZero.apply(x).sum(), (f64(0.0, 1.0),), Verdict.NOT_ASSOCIATED),
    ("relu g*|g|", lambda x: ReluSquaresGrad.apply(x).sum(), (f64(0.5, 1.0),), Verdict.NONLINEAR_VJP),
    ("max both at tie (x, x)", lambda x: MaxBoth.apply(torch.stack([x, x], -1)), (f64(0.5),), Verdict.SMOOTH_WRONG),
    ("max both at tie (a, b)", lambda x: MaxBoth.apply(x), (f64(1.0, 1.0, 0.0),), Verdict.NOT_ASSOCIATED),
    ("max half to each of 3", lambda x: MaxSplitThird.apply(x), (f64(2.0, 2.0, 2.0),), Verdict.NOT_ASSOCIATED),
    ("linear with W for W^T", lambda x: LinearTransposedWrong.apply(x, W).sum(), (f64(1.0, 3.0),),
     Verdict.SMOOTH_WRONG),
    ("clamp(x, min=x) both at the bound", lambda x: ClampMinBoth.apply(x, x), (f64(0.25, 0.5),),
     Verdict.SMOOTH_WRONG),
    ("clamp(x, min=y) both at the bound", lambda x, y: ClampMinBoth.apply(x, y).sum(), (f64(1.0), f64(1.0)),
     Verdict.NOT_ASSOCIATED),
]


@pytest.mark.parametrize("name,fn,inputs,expected", CASES, ids=[c[0] for c in CASES])
def test_mutant_is_caught(name, fn, inputs, expected):
    rep = mtcheck.check(fn, *inputs, neighbours=False)
    assert rep.verdict is expected, rep.explain()
    assert not rep.verdict.passed
    with pytest.raises(mtcheck.MtcheckError) as err:
        mtcheck.assert_gradient_ok(fn, *inputs, neighbours=False)
    assert str(expected) in str(err.value)
    assert err.value.report.verdict is expected


def test_not_associated_has_an_exact_witness():
    rep = mtcheck.check(lambda x: MaxBoth.apply(x), f64(1.0, 1.0, 0.0), neighbours=False)
    w = rep.witness
    assert w is not None
    assert w.framework_rate != w.stratum_rate
    # the witness direction stays in the stratum (x1 = x2 tie): its first two coordinates agree
    assert w.direction[0] == w.direction[1]
    # and the exact values along it show the program's rate
    assert w.h is not None and (w.f_x_plus_ht - w.f_x) / w.h == w.stratum_rate


@pytest.mark.parametrize("fn,inputs", [
    (lambda x: GoodRelu.apply(x).sum(), (f64(0.0, 1.0, -1.0),)),
    (lambda x: GoodMax.apply(x), (f64(2.0, 2.0, 2.0),)),
    (lambda x: GoodMax.apply(torch.stack([x, x], -1)), (f64(0.5),)),
])
def test_correct_custom_functions_pass(fn, inputs):
    rep = mtcheck.check(fn, *inputs, neighbours=False)
    assert rep.verdict.passed, rep.explain()


def test_failure_message_reads_like_assert_close():
    with pytest.raises(mtcheck.MtcheckError) as err:
        mtcheck.assert_gradient_ok(lambda x: ReluHalfEverywhere.apply(x).sum(), f64(0.5, 1.0), neighbours=False)
    msg = str(err.value)
    assert "SMOOTH_WRONG" in msg
    assert "Mismatched elements: 2 / 2 (100.0%)" in msg
    assert "Greatest absolute difference: 0.5" in msg
    assert "exact comparison, no tolerance" in msg
    assert "Replay:" in msg and "mtcheck.check(" in msg and "0x1.0000000000000p-1" in msg
