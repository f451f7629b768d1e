"""Floats: exact mode is verified, rounding-induced branches are findings of their own,
low-precision models are compared with a stated tolerance."""

import torch
import torch.nn as nn

import mtcheck
from mtcheck import Verdict

F32 = torch.float32


def test_rounding_induced_tie_is_a_rounding_branch():
    c = torch.tensor(1 + 2 ** -22, dtype=F32)

    def prog(x):
        # exactly x*x - c = 2^-46 > 0, but float32 rounds x*x to c: the relu sees a tie
        return torch.relu(x * x - c)

    x = torch.tensor([1 + 2 ** -23], dtype=F32)
    rep = mtcheck.check(prog, x)
    assert rep.verdict is Verdict.ROUNDING_BRANCH, rep.explain()
    assert any("relu" in n for n in rep.rounding_nodes)
    assert not rep.exact_mode
    assert "another branch" in rep.explain()


def test_float64_small_dyadics_run_in_exact_mode():
    rep = mtcheck.check(lambda x: torch.relu(x - 0.5).sum(), torch.tensor([0.5, 1.0], dtype=torch.float64))
    assert rep.exact_mode and rep.tolerance is None
    assert "no tolerance" in rep.explain()


def test_float32_model_with_real_initialisation_uses_a_stated_tolerance():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.zeros(1, 6)           # all zeros: every first-layer unit sits at its bias
    rep = mtcheck.check(m, x, neighbours=False)
    assert rep.verdict in (Verdict.SMOOTH_OK, Verdict.ASSOCIATED), rep.explain()
    if not rep.exact_mode:
        assert rep.tolerance == (1.3e-6, 1e-5)
        assert "rtol=1.3e-06" in rep.explain()


def test_backward_rounding_is_not_called_exact():
    # a three-way tie: torch.max gives each entry 1/3, which float64 rounds
    rep = mtcheck.check(lambda x: torch.max(x), torch.tensor([2.0, 2.0, 2.0], dtype=torch.float64))
    assert rep.verdict is Verdict.ASSOCIATED
    assert not rep.exact_mode and rep.tolerance is not None
    assert any("rounds" in n for n in rep.notes)


class FwdWrongRelu(torch.autograd.Function):
    """Correct backward, forward-mode rule that doubles the tangent."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        ctx.x = x
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x > 0).to(g.dtype)

    @staticmethod
    def jvp(ctx, t):
        return 2 * t * (ctx.x > 0).to(t.dtype)


def test_forward_mode_disagreeing_with_reverse_mode_is_reported():
    rep = mtcheck.check(lambda x: FwdWrongRelu.apply(x).sum(), torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert rep.verdict is Verdict.SMOOTH_OK          # the reverse-mode gradient is right
    assert rep.forward_matches_reverse is False


def test_forward_mode_unavailable_says_why():
    class NoJvp(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * 2

    rep = mtcheck.check(lambda x: NoJvp.apply(x).sum(), torch.tensor([1.0], dtype=torch.float64))
    assert rep.forward_matches_reverse is None
    assert "forward mode unavailable" in rep.reasons["forward = reverse"]
