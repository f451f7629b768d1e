"""A planted bug at ties is found, and hypothesis shrinks it to a network of at most three layers."""

import pytest
import torch
from hypothesis import HealthCheck, find, settings, strategies as st

import mtcheck
from mtcheck.nets import register_op
from mtcheck.strategies import networks, tie_inputs


class ConstantAtZeroRelu(torch.autograd.Function):
    """relu whose backward writes 0.5 at x == 0 whatever the incoming gradient (a nonlinear 'VJP')."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.relu(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return torch.where(x == 0, torch.full_like(g, 0.5), g * (x > 0).to(g.dtype))


class ScaledAtTieRelu(torch.autograd.Function):
    """relu whose backward halves the whole gradient as soon as one element is exactly 0:
    linear, but wrong off the tie too (NOT_ASSOCIATED)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.relu(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        gi = g * (x > 0).to(g.dtype)
        return gi * 0.5 if bool((x == 0).any()) else gi


register_op("planted_const_relu", ConstantAtZeroRelu.apply)
register_op("planted_scaled_relu", ScaledAtTieRelu.apply)

SETTINGS = settings(max_examples=200, derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck))


@st.composite
def _case(draw, nets):
    spec = draw(nets)
    x = draw(tie_inputs(spec, deep=False))
    return spec, x


def _cases(planted):
    return _case(networks(families=("mlp",), activations=("relu", planted), max_layers=5, max_width=6))


def _fails(case):
    spec, x = case
    return not mtcheck.check(spec.build(), x, neighbours=False, forward_mode=False).verdict.passed


@pytest.mark.parametrize("planted, verdict", [("planted_const_relu", mtcheck.Verdict.NONLINEAR_VJP),
                                              ("planted_scaled_relu", mtcheck.Verdict.NOT_ASSOCIATED)])
def test_planted_bug_shrinks_to_at_most_three_layers(planted, verdict):
    spec, x = find(_cases(planted), _fails, settings=SETTINGS)
    rep = mtcheck.check(spec.build(), x, neighbours=False, forward_mode=False)
    assert rep.verdict in (verdict, mtcheck.Verdict.SMOOTH_WRONG), rep.explain()
    print(planted, "->", spec.describe(), x.tolist())
    assert len(spec.layers) <= 3, spec.describe()
    assert any(lay.params.get("name") == planted for lay in spec.layers), spec.describe()
    # the shrunk case replays from its JSON form
    from mtcheck.nets import NetSpec
    again = NetSpec.from_json(spec.to_json())
    assert not mtcheck.check(again.build(), x, neighbours=False, forward_mode=False).verdict.passed


def test_the_correct_relu_at_ties_passes():
    # the same search with only the framework's relu finds nothing
    from hypothesis.errors import NoSuchExample

    with pytest.raises(NoSuchExample):
        find(_cases("relu"), _fails, settings=settings(max_examples=15, derandomize=True, database=None,
                                                       deadline=None, suppress_health_check=list(HealthCheck)))
