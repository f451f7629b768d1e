"""The paper's examples through the public API (SPEC.md, last section)."""

import pytest
import torch
import torch.nn.functional as F

import mtcheck
from mtcheck import Verdict, zoo


def scalar(v):
    return torch.tensor(v, dtype=torch.float64)


MAX_XX = {
    "torch.max": lambda x: torch.max(torch.stack([x, x])),
    "amax": lambda x: torch.amax(torch.stack([x, x])),
    "max(dim)": lambda x: torch.stack([x, x]).max(dim=0).values,
    "max_pool1d": lambda x: F.max_pool1d(torch.stack([x, x]).reshape(1, 1, 2), 2).reshape(()),
    "maximum": lambda x: torch.maximum(x, x),
}


@pytest.mark.parametrize("name", sorted(MAX_XX))
@pytest.mark.parametrize("x", [0.0, 0.5, -3.0])
def test_max_x_x_is_smooth_with_derivative_one(name, x):
    rep = mtcheck.check(MAX_XX[name], scalar(x))
    assert rep.verdict is Verdict.SMOOTH_OK
    assert rep.framework_jacobian.tolist() == [[1.0]]
    assert rep.tangent_dim == 1            # the tie holds on the whole line: the stratum is all of it
    assert rep.differentiable and rep.true_gradient_match
    assert rep.exact_mode


def test_relu_of_zero_weight_is_smooth_with_zero_derivative():
    rep = mtcheck.check(zoo.relu_w0, scalar(0.0))
    assert rep.verdict is Verdict.SMOOTH_OK
    assert rep.framework_jacobian.tolist() == [[0.0]]
    assert rep.pattern.n_ties == 1          # relu(0 * x) sits on its kink for every x


def test_boustany_at_zero_is_associated_but_not_the_true_derivative():
    rep = mtcheck.check(zoo.boustany, scalar(0.0))
    assert rep.framework_jacobian.tolist() == [[-1.5]]
    assert rep.verdict is Verdict.ASSOCIATED
    assert rep.tangent_dim == 0
    assert rep.differentiable is True
    assert rep.true_gradient.tolist() == [[0.0]]
    assert rep.true_gradient_match is False
    assert rep.clarke is False              # the function is 0: its Clarke gradient is {0}
    assert any(e.branch for e in rep.pattern)   # max1's `if x[i] > res` is part of the pattern


@pytest.mark.parametrize("t", [1.0, -1.0, 0.25])
def test_boustany_off_zero_is_smooth(t):
    rep = mtcheck.check(zoo.boustany, scalar(t))
    assert rep.verdict is Verdict.SMOOTH_OK
    assert rep.framework_jacobian.tolist() == [[0.0]]


def test_maxpool_pair_at_zero_is_associated_minus_three():
    rep = mtcheck.check(zoo.maxpool_pair, scalar(0.0))
    assert rep.framework_jacobian.tolist() == [[-3.0]]
    assert rep.verdict is Verdict.ASSOCIATED
    assert rep.differentiable is True and rep.true_gradient_match is False


def test_boustany_pattern_is_readable():
    rep = mtcheck.check(zoo.boustany, scalar(0.0), neighbours=False)
    text = str(rep.pattern)
    assert "gt.Tensor" in text and "feeds Python control flow" in text
    assert "zoo.py" in text                 # the user's source line of the comparison
