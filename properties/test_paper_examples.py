"""The paper's examples (sections 2 and 5) and Bolte-Pauwels style programs: one function
computed several ways, each gradient associated, with different values at the kink."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mtcheck import Verdict, zoo

from _mtprops import PASSING, PROPS, check, explain, f64


def scalar(v):
    return torch.tensor(v, dtype=torch.float64)


def test_boustany_is_associated_with_minus_one_and_a_half():
    rep = check(zoo.boustany, scalar(0.0), neighbours=True)
    assert rep.verdict is Verdict.ASSOCIATED, explain(rep)
    assert rep.framework_jacobian.tolist() == [[-1.5]]
    assert rep.differentiable is True and rep.true_gradient_match is False   # the null function: derivative 0
    assert rep.exact_mode


def test_maxpool_pair_is_associated_with_minus_three():
    rep = check(zoo.maxpool_pair, scalar(0.0))
    assert rep.verdict is Verdict.ASSOCIATED, explain(rep)
    assert rep.framework_jacobian.tolist() == [[-3.0]]


@given(st.sampled_from([-2.0, -0.5, 0.0, 0.25, 3.0]))
@PROPS
def test_max_x_x_is_the_identity(x):
    rep = check(zoo.max_xx, scalar(x))
    assert rep.verdict is Verdict.SMOOTH_OK, explain(rep)
    assert rep.framework_jacobian.tolist() == [[1.0]]


def test_relu_w0():
    rep = check(zoo.relu_w0, scalar(0.0))
    assert rep.verdict is Verdict.SMOOTH_OK and rep.framework_jacobian.tolist() == [[0.0]]


# ---- Bolte-Pauwels: relu written three ways (the same function, three different derivatives at 0)

RELU_WAYS = {
    "relu(t)": (lambda t: torch.relu(t), 0.0),
    "relu(-t) + t": (lambda t: torch.relu(-t) + t, 1.0),
    "(relu(t) + relu(-t) + t) / 2": (lambda t: (torch.relu(t) + torch.relu(-t) + t) / 2, 0.5),
}


@pytest.mark.parametrize("name", list(RELU_WAYS))
def test_relu_three_ways_associated_at_zero(name):
    fn, expected = RELU_WAYS[name]
    rep = check(fn, scalar(0.0), neighbours=True, forward_mode=True)
    assert rep.verdict is Verdict.ASSOCIATED, explain(rep)
    assert rep.framework_jacobian.tolist() == [[expected]]
    assert rep.differentiable is False
    assert rep.clarke is True                          # every one of them is a Clarke subgradient of relu at 0
    assert rep.forward_matches_reverse is True


def test_relu_three_ways_differ_at_zero():
    vals = {check(fn, scalar(0.0)).framework_jacobian[0, 0] for fn, _ in RELU_WAYS.values()}
    assert len(vals) == 3


@given(st.sampled_from([-1.0, -0.25, 0.0, 0.5, 2.0]), st.sampled_from(list(RELU_WAYS)))
@PROPS
def test_relu_ways_agree_off_the_kink(t, name):
    fn, at0 = RELU_WAYS[name]
    rep = check(fn, scalar(t))
    assert rep.verdict in PASSING, explain(rep)
    want = at0 if t == 0 else (1.0 if t > 0 else 0.0)
    assert rep.framework_jacobian.tolist() == [[want]]


@given(st.lists(st.sampled_from([-1.0, 0.0, 0.0, 1.0, 2.0]), min_size=2, max_size=5))
@PROPS
def test_boustany_family_max1_minus_max(a):
    """t -> max1(t a) - max(t a) at t = 0: associated, whatever the ties in a."""
    av = f64(*a)

    def fn(t):
        return zoo.max1(t * av) - torch.max(t * av)

    rep = check(fn, scalar(0.0))
    assert rep.verdict in PASSING, explain(rep)
