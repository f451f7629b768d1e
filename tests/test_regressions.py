"""Regression tests for core bugs found while building the plugin and the property suite."""

import torch
import torch.nn as nn
import torch.nn.functional as F

import mtcheck
from mtcheck import Verdict

f64 = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731


def test_constant_changed_in_place_is_seen():
    def prog(x):
        m = torch.zeros_like(x)
        m.add_(1.0)                      # a constant, changed after it was first seen
        return torch.relu(m - x).sum()

    rep = mtcheck.check(prog, f64(0.0, 1.0))
    assert rep.verdict is Verdict.ASSOCIATED, rep.explain()


def test_integer_index_reshaped_from_an_input_dependent_argmax():
    rep = mtcheck.check(lambda x: x.gather(0, torch.argmax(x).reshape(1)), f64(1.0, 2.0, 2.0, 0.0))
    assert rep.verdict.passed, rep.explain()


def test_quantile_is_traced():
    rep = mtcheck.check(lambda x: torch.quantile(x, 0.5), f64(1.0, 2.0, 2.0, 0.0))
    assert rep.verdict is Verdict.ASSOCIATED, rep.explain()


def test_clarke_allows_the_framework_rounding_of_a_three_way_split():
    rep = mtcheck.check(lambda x: torch.amax(x), f64(1.0, 1.0, 1.0))
    assert rep.clarke is True, rep.explain()


def test_products_of_inputs_do_not_claim_nondifferentiability():
    rep = mtcheck.check(lambda x: (torch.relu(x) * x).sum(), f64(0.0, 2.0))   # C^1: x |-> x*relu(x)
    assert rep.differentiable is None
    assert "not piecewise affine" in rep.reasons["differentiable"]


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.b1 = nn.Conv2d(4, 4, 3, padding=1)
        self.b2 = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.stem(x)), 2)
        x = F.relu(x + self.b2(F.relu(self.b1(x))))
        return self.head(F.max_pool2d(x, 2).flatten(1))


def test_real_initialised_weights_do_not_overflow_the_tolerance_path():
    torch.manual_seed(0)
    m = _Net().eval().double()
    rep = mtcheck.check(m, torch.full((1, 1, 8, 8), -0.5, dtype=torch.float64), neighbours=False,
                        forward_mode=False)
    assert rep.verdict in (Verdict.SMOOTH_OK, Verdict.ASSOCIATED, Verdict.UNKNOWN), rep.explain()


def test_witness_finds_a_step_along_a_direction_with_huge_entries():
    """The kernel direction of a real-initialised float32 net has entries of hundreds of
    digits; the step search must start from their size (it stopped at 2^-63 before)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples" / "user_project"))
    try:
        import tinynet
    finally:
        sys.path.pop(0)
    torch.manual_seed(0)
    rep = mtcheck.check(tinynet.TinyNet().eval(), torch.full((1, 1, 8, 8), 0.5), neighbours=False,
                        forward_mode=False)
    assert rep.verdict is Verdict.NOT_ASSOCIATED
    w = rep.witness
    assert w.h is not None, w.note
    assert (w.f_x_plus_ht - w.f_x) / w.h == w.stratum_rate


def test_forward_and_reverse_are_compared_at_the_tolerance_when_the_backward_rounds():
    """A 5-way tie splits the gradient into fifths: both modes round, by different last bits. Once
    the check falls back to the float64 tolerance, forward = reverse is judged at it too (it was
    compared exactly before, a false forward != reverse finding)."""
    import torch

    import mtcheck

    x = torch.ones(5, dtype=torch.float64)
    rep = mtcheck.check(lambda x: torch.amax(x * 3), x)
    assert rep.verdict is mtcheck.Verdict.ASSOCIATED
    assert rep.exact_mode is False
    assert rep.forward_matches_reverse is True


def test_weight_and_bias_together_are_affine_not_a_product():
    """conv(x, w) + b is affine in (w, b) for a fixed x: the differentiability fields are decided for
    wrt=[weight, bias] (they were left undecided, as if w and b were multiplied)."""
    import torch

    import mtcheck

    torch.manual_seed(0)

    class C(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return torch.relu(self.conv(x)).amax()

    m = C().double()
    with torch.no_grad():
        m.conv.bias.zero_()
    x = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    x[0, 0, 1, 1] = 1
    rep = mtcheck.check(m, x, wrt=["conv.weight", "conv.bias"])
    assert rep.differentiable is not None, rep.reasons


def test_framework_jacobian_rows_equal_one_vjp_each():
    """reverse_jacobian reuses one cotangent buffer per output, setting and resetting entry i
    around each reverse pass; a gradient that is a view of the cotangent (sum's backward expands
    it) must be copied before the reset (it read back as zeros once)."""
    import numpy as np

    from mtcheck import framework
    from mtcheck.trace import prepare_inputs, trace

    def prog(x):
        return (x.sum() * 1, torch.relu(x) * 3, x.expand(2, 3))

    x = torch.tensor([0.5, -1.5, 2.0], dtype=torch.float64)
    leaves, _ = prepare_inputs((x,), None)
    tr = trace(prog, leaves)
    J = framework.reverse_jacobian(tr, [0])
    m = J.shape[0]
    rows = np.array([framework.vjp(tr, [0], np.eye(m)[i]) for i in range(m)])
    assert m == 10 and np.array_equal(J, rows) and J[0].tolist() == [1.0, 1.0, 1.0]
