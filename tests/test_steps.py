"""Step functions (mtcheck/ops/steps.py): checked away from their jumps, refused exactly on one."""

import pytest
import torch

import mtcheck
from mtcheck import OutsideTheoryError, Verdict

F64 = torch.float64
OFF = torch.tensor([0.25, -1.75, 2.5 + 2 ** -10, -0.375, 7.125], dtype=F64)   # no integer, no half-integer


@pytest.mark.parametrize("fn", [torch.floor, torch.ceil, torch.round, torch.trunc, torch.frac, torch.sign,
                                torch.sgn, lambda x: torch.round(x + 1 / 64, decimals=1), lambda x: torch.angle(x)],
                         ids=["floor", "ceil", "round", "trunc", "frac", "sign", "sgn", "round1", "angle"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_off_the_jumps_the_gradient_is_the_true_one(fn, dtype):
    rep = mtcheck.check(lambda x: fn(x) * 3 + x, OFF.to(dtype))
    assert rep.verdict is Verdict.SMOOTH_OK, rep


@pytest.mark.parametrize("fn,x,what", [
    (torch.floor, 2.0, "every integer"), (torch.ceil, -3.0, "every integer"), (torch.round, 0.5, "half-integer"),
    (torch.trunc, 1.0, "nonzero integer"), (torch.frac, -2.0, "nonzero integer"), (torch.sign, 0.0, "jumps at 0"),
    (lambda x: torch.remainder(x, 0.5), 1.5, "integer quotient"), (lambda x: torch.fmod(x, 2.0), 4.0, "quotient"),
    (lambda x: torch.div(x, 4.0, rounding_mode="floor"), 8.0, "integer quotient")])
def test_on_a_jump_it_is_outside_the_theory_naming_the_op(fn, x, what):
    with pytest.raises(OutsideTheoryError) as e:
        mtcheck.check(fn, torch.tensor([0.25, x], dtype=F64))
    assert what in str(e.value) and "element 1" in str(e.value)


def test_trunc_and_fmod_are_continuous_at_zero():
    """trunc does not jump at 0 (trunc(-0.5) = trunc(0.5) = 0), so fmod(0, b) is checked."""
    assert mtcheck.check(torch.trunc, torch.tensor([0.0, 0.5], dtype=F64)).verdict is Verdict.SMOOTH_OK
    rep = mtcheck.check(lambda a: torch.fmod(a, 3.0), torch.tensor([0.0, -4.5], dtype=F64))
    assert rep.verdict is Verdict.SMOOTH_OK


def test_remainder_derivatives_in_both_operands():
    a = torch.tensor([5.5, -2.25, 7.0], dtype=F64)
    b = torch.tensor([2.0, 1.5, -3.0], dtype=F64)
    rep = mtcheck.check(torch.remainder, a, b)
    assert rep.verdict is Verdict.SMOOTH_OK
    # d/db remainder(a, b) = -floor(a / b): [-2, 2, 3]
    assert rep.stratum_jacobian[:, 3:].diagonal().tolist() == [-2.0, 2.0, 3.0]


def test_copysign_kink_at_zero_is_a_tie():
    a = torch.tensor([0.0, 1.5, -2.0], dtype=F64)
    b = torch.tensor([-1.0, 2.0, -0.5], dtype=F64)
    rep = mtcheck.check(lambda a: torch.copysign(a, b), a)
    assert rep.verdict is Verdict.ASSOCIATED and rep.pattern.n_ties == 1
    with pytest.raises(OutsideTheoryError, match="sign of b"):
        mtcheck.check(lambda b: torch.copysign(a, b), torch.tensor([1.0, 0.0, 2.0], dtype=F64))


def test_sgn_zero_tensor_gradient_is_not_a_crash():
    """sgn's backward returns PyTorch's symbolic ZeroTensor, which has no numpy view (was a RuntimeError)."""
    rep = mtcheck.check(torch.sgn, torch.tensor([1.5, -2.0], dtype=F64))
    assert rep.verdict is Verdict.SMOOTH_OK


class _RemainderNoDivisorGrad(torch.autograd.Function):
    """remainder(a, b) with the divisor's gradient dropped (a plausible kernel bug: -floor(a/b) omitted)."""

    @staticmethod
    def forward(ctx, a, b):
        return torch.remainder(a, b)

    @staticmethod
    def backward(ctx, g):
        return g, torch.zeros(()).to(g)


class _FracBad(torch.autograd.Function):
    """frac with the gradient of trunc (0) instead of 1."""

    @staticmethod
    def forward(ctx, x):
        return torch.frac(x)

    @staticmethod
    def backward(ctx, g):
        return torch.zeros_like(g)


def test_mutants_are_caught():
    a = torch.tensor([5.5, -2.25], dtype=F64)
    b = torch.tensor(2.0, dtype=F64)
    rep = mtcheck.check(_RemainderNoDivisorGrad.apply, a, b)
    assert rep.verdict is Verdict.SMOOTH_WRONG, rep
    assert mtcheck.check(_FracBad.apply, OFF).verdict is Verdict.SMOOTH_WRONG


def test_mutant_inside_a_default_init_float32_model():
    torch.manual_seed(0)
    lin1, lin2 = torch.nn.Linear(8, 16), torch.nn.Linear(16, 3)
    x = torch.randn(2, 8)

    def good(x):
        h = lin1(x)
        return lin2(torch.relu(h) + torch.frac(4 * h))

    def bad(x):
        h = lin1(x)
        return lin2(torch.relu(h) + _FracBad.apply(4 * h))

    assert mtcheck.check(good, x).verdict.passed
    assert mtcheck.check(bad, x).verdict is Verdict.SMOOTH_WRONG


def test_float_to_int_conversions_off_their_jumps():
    """x.int(), x.bool(): locally constant off the nonzero integers (0 for bool); on a jump,
    outside the theory; the float part of the program is checked."""
    x = torch.tensor([0.5, -1.25, 2.75], dtype=F64)
    rep = mtcheck.check(lambda x: x * x.long().to(F64), x)
    assert rep.verdict is Verdict.SMOOTH_OK
    assert mtcheck.check(lambda x: x * x.bool().to(F64), x).verdict is Verdict.SMOOTH_OK
    with pytest.raises(OutsideTheoryError, match="nonzero integer"):
        mtcheck.check(lambda x: x * x.int().to(F64), torch.tensor([0.5, 2.0], dtype=F64))
    with pytest.raises(OutsideTheoryError, match="jumps at 0"):
        mtcheck.check(lambda x: x * x.bool().to(F64), torch.tensor([0.5, 0.0], dtype=F64))
