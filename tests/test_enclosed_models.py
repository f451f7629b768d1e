"""Real-weight models together with their loss (issue 10): the smooth tail is enclosed (balls),
the tie rows stay exact, and the verdict carries a certificate with the enclosure's radius."""

import pytest
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
    # two equal exact inputs of one channel: batch norm's outputs are proven equal (structural
    # keys), so the window's tie is decided; the tie row is enclosed (the channel's 1/sqrt(var+eps)
    # times an exact row), which the tangent-space step does not take yet: UNKNOWN, with that reason
    tied = torch.tensor([[[[2.0, 1.0], [2.0, -1.0]]]], dtype=torch.float64)
    rep = mtcheck.check(prog, tied)
    assert rep.verdict is mtcheck.Verdict.UNKNOWN and "undecided" not in rep.reasons
    assert rep.pattern.n_ties == 1 and "enclosed tie rows" in rep.reasons["budget"]


def test_structural_keys_move_with_values_and_never_go_stale():
    import numpy as np

    from mtcheck._ball import ball, keys_of, new_keys, with_keys

    b = with_keys(ball(np.array([[1.0, 2.0], [1.0, 3.0]]), 1e-3), new_keys([1, 2, 1, 3]).reshape(2, 2))
    k = keys_of(b)
    assert k[0, 0] == k[1, 0] and k[0, 1] != k[1, 1]
    assert bool((b[0] == b[1])[0])                        # proven equal, although the balls overlap
    d = b[0] - b[1]
    assert d.mid[0] == 0 and d.rad[0] == 0 and d.rad[1] > 0
    assert keys_of(b.T) is None                           # a view numpy makes without the keys: none
    t = np.transpose(b)
    assert (keys_of(t) == k.T).all() and (keys_of(b.reshape(4)) == k.ravel()).all()
    w = np.where(np.array([[True, False], [True, True]]), b, 0.0)
    assert keys_of(w)[0, 1] == -1 and keys_of(w)[1, 0] == k[1, 0]
    c = b.copy()
    c[0, 0] = ball(5.0)
    assert keys_of(c) is None                             # written in place: keys dropped
    s = b + b
    assert keys_of(s) is None                             # arithmetic drops keys
    with pytest.raises(ValueError):                       # a write through a view cannot leave keys stale
        b.T[0, 0] = 7.0
    assert b.mid[0, 0] == 1.0


def test_equal_inputs_of_different_channels_are_not_proven_equal():
    """Keys are per channel: the same exact input in two channels of eval batch norm gives two
    different irrational values, whose comparison stays undecided unless the enclosures separate."""
    from mtcheck.ops.arith import _keyed
    import numpy as np

    from mtcheck._ball import ball, keys_of
    from mtcheck._exact import q

    x = np.array([[[q(2)], [q(2)]]], dtype=object)          # (N=1, C=2, 1)
    y = _keyed(ball(np.array([[[1.0], [1.0]]]), 1e-3), x, 2)
    k = keys_of(y)
    assert k[0, 0, 0] != k[0, 1, 0]
