"""Real-weight models together with their loss (issue 10): the smooth tail is enclosed (balls),
the tie rows stay exact, and the verdict carries a certificate with the enclosure's radius."""

import torch
import torch.nn.functional as F

import mtcheck
from mtcheck import Verdict, zoo
from mtcheck.certificate import verify


class WithLoss(torch.nn.Module):
    def __init__(self, model, label):
        super().__init__()
        self.model, self.label = model, label

    def forward(self, x):
        return F.cross_entropy(self.model(x), self.label)


def test_lenet_f32_with_cross_entropy_is_associated_with_a_certificate():
    m, (x,) = zoo.lenet_f32()
    rep = mtcheck.check(WithLoss(m, torch.tensor([3])), x)
    assert rep.verdict is Verdict.ASSOCIATED, rep.explain()
    assert rep.pattern.n_ties > 100
    assert rep.enclosure_radius is not None and 0 < rep.enclosure_radius < 1e-9
    cert = rep.certificate
    assert cert["J_S_radius"] is not None and verify(cert).ok
    assert "enclosure radius" in rep.explain()


def test_planted_maxpool_backward_is_caught_under_cross_entropy():
    m, (x,) = zoo.lenet_f32_bad_maxpool()
    rep = mtcheck.check(WithLoss(m, torch.tensor([3])), x)
    assert rep.verdict is Verdict.NOT_ASSOCIATED, rep.explain()
    assert rep.certificate_ok


def test_certificate_radius_is_checked():
    m, (x,) = zoo.lenet_f32()
    rep = mtcheck.check(WithLoss(m, torch.tensor([3])), x)
    cert = dict(rep.certificate)
    bad = dict(cert, J_S_radius={"den": 1, "num": [-1]})
    assert not verify(bad).ok
    exact = dict(cert, tolerance=None)
    assert not verify(exact).ok


def test_max_pool_over_enclosed_values():
    """A max-pool window of enclosed values (after eval batch norm) is decided by the enclosures;
    two equal irrational values in one window are not (UNKNOWN naming the node, never a tolerance)."""
    import torch.nn as nn

    torch.manual_seed(0)
    bn = nn.BatchNorm2d(1).double().eval()
    bn.running_var.fill_(3.0)
    prog = lambda x: torch.nn.functional.max_pool2d(bn(x), 2)      # noqa: E731
    x = torch.tensor([[[[0.5, 1.0], [2.0, -1.0]]]], dtype=torch.float64)
    assert mtcheck.check(prog, x).verdict is mtcheck.Verdict.SMOOTH_OK
    tied = torch.tensor([[[[2.0, 1.0], [2.0, -1.0]]]], dtype=torch.float64)
    rep = mtcheck.check(prog, tied)
    assert rep.verdict is mtcheck.Verdict.UNKNOWN and "max_pool2d" in rep.reasons["undecided"]
