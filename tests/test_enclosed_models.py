"""Real-weight models together with their loss (issue 10): the smooth tail is enclosed (balls),
the tie rows stay exact, and the verdict carries a certificate with the enclosure's radius."""

import copy

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
    # keys), so the window's tie is decided; its tie row is enclosed (the channel's
    # 1/sqrt(var+eps) times an exact row) and an entry of it excludes 0: T(x) != R^n, and PyTorch
    # follows the exact model's winner, so Y = 0 certifies ASSOCIATED
    tied = torch.tensor([[[[2.0, 1.0], [2.0, -1.0]]]], dtype=torch.float64)
    rep = mtcheck.check(prog, tied)
    assert rep.verdict is mtcheck.Verdict.ASSOCIATED, rep.explain()
    assert rep.pattern.n_ties == 1 and "nonzero_tie_row_radius" in rep.certificate
    assert verify(rep.certificate).ok
    # a max-pool whose backward picks the *last* tied entry: D = J_fw - J_S is minus the enclosed tie
    # row, so a float Y = -1 with its rigorous residual bound |D - Y mid| + |Y| rad certifies it
    last = lambda x: _LastMaxPool.apply(bn(x))       # noqa: E731
    rep = mtcheck.check(last, tied)
    assert rep.verdict is mtcheck.Verdict.ASSOCIATED, rep.explain()
    assert rep.certificate["tie_rows"]["A_radius"] is not None and verify(rep.certificate).ok
    # the full gradient to both tied entries is not associated, but its witness would be an exact
    # kernel vector of an irrational row: not built, so UNKNOWN with that reason, never a pass
    rep = mtcheck.check(lambda x: zoo.MaxPool2dAllTies.apply(bn(x)), tied)
    assert rep.verdict is mtcheck.Verdict.UNKNOWN, rep.explain()
    assert "exact kernel vector" in rep.reasons["budget"]


def test_certificate_of_enclosed_tie_rows_is_checked():
    """The checker's side of enclosed tie rows: the nonzero row must have an entry whose enclosure
    excludes 0, radii are nonnegative, and A_radius widens the residual (never in exact mode, never
    in a kernel claim)."""
    import torch.nn as nn

    bn = nn.BatchNorm2d(1).double().eval()
    bn.running_var.fill_(3.0)
    tied = torch.tensor([[[[2.0, 1.0], [2.0, -1.0]]]], dtype=torch.float64)
    cert = mtcheck.check(lambda x: _LastMaxPool.apply(bn(x)), tied).certificate
    assert verify(cert).ok
    wide = copy.deepcopy(cert)
    r = wide["nonzero_tie_row_radius"]
    m = wide["nonzero_tie_row"]
    r["den"], r["num"] = m["den"], [abs(v) for v in m["num"]]          # |mid| <= rad everywhere
    assert not verify(wide).ok and "excludes 0" in verify(wide).reason
    neg = copy.deepcopy(cert)
    neg["tie_rows"]["A_radius"]["num"][0] = -1
    assert not verify(neg).ok
    big = copy.deepcopy(cert)
    big["tie_rows"]["A_radius"]["num"] = [v * (1 << 80) + 1 for v in big["tie_rows"]["A"]["num"]]
    assert not verify(big).ok                                         # the residual bound now exceeds tol
    exact = copy.deepcopy(cert)
    exact["tolerance"] = None
    assert not verify(exact).ok
    forged = copy.deepcopy(cert)
    forged["verdict"], forged["witness"] = "NOT_ASSOCIATED", {"output": 0, "t": {"den": 1, "num": [1, 0, 1, 0]},
                                                              "columns": None}
    assert not verify(forged).ok and "A_radius" in verify(forged).reason


class _LastMaxPool(torch.autograd.Function):
    """2x2 max-pool of one 2x2 window whose backward gives the gradient to the last maximal entry."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return F.max_pool2d(x, 2)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        flat = x.flatten(-2)
        hit = flat == flat.amax(dim=-1, keepdim=True)
        last = hit.shape[-1] - 1 - hit.flip(-1).int().argmax(dim=-1, keepdim=True)
        out = torch.zeros_like(flat).scatter(-1, last, 1.0)
        return (g.flatten(-2) * out).reshape(x.shape)



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


def test_a_view_of_a_float_sourced_constant_becomes_a_ball_by_its_floats():
    """``w.T`` and slices of a weight converted from floats take the same view of those floats
    (no element-by-element conversion); the values are the exact ones, radius 0."""
    import numpy as np

    from mtcheck import _ball
    from mtcheck._exact import from_floats
    from mtcheck._fixed import _FLOAT_SOURCE

    f = np.random.default_rng(0).standard_normal((64, 48)).astype(np.float32).astype(np.float64)
    ex = from_floats(f)
    _FLOAT_SOURCE[id(ex)] = (ex, f)
    for v in (ex.T, ex[3:40], ex[:, 5:30], ex.T[2:10], ex[::2]):
        assert _ball._float_view_of_constant(v, _FLOAT_SOURCE) is not None, v.shape
        b = _ball.to_ball(v)
        ref = np.array([float(t) for t in v.ravel().tolist()]).reshape(v.shape)
        assert np.array_equal(b.mid, ref) and not b.rad.any(), v.shape
    other = from_floats(f)                                   # not registered: the slow path, same values
    assert _ball._float_view_of_constant(other.T, _FLOAT_SOURCE) is None


def test_reverse_mode_on_enclosures_in_row_chunks_gives_the_same_jacobian(monkeypatch):
    """The enclosed reverse pass runs in row chunks (rows are independent) so large cotangents reuse
    memory; any chunk size gives the same enclosed J_S and verdict."""
    from mtcheck.model import ExactModel

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.GELU(), torch.nn.Linear(16, 5),
                              torch.nn.Softmax(dim=-1))
    x = torch.tensor([[0.5, -1.0, 0.0, 0.25, 2.0, -0.5]])
    whole = mtcheck.check(net, x)
    monkeypatch.setattr(ExactModel, "_CHUNK_ENTRIES", 16)          # one or two rows per chunk
    chunked = mtcheck.check(net, x)
    assert whole.verdict is chunked.verdict is Verdict.SMOOTH_OK
    assert whole.certificate["J_S"] == chunked.certificate["J_S"]
    assert whole.certificate["J_S_radius"] == chunked.certificate["J_S_radius"]


def test_forward_mode_through_an_exact_max_before_a_log_softmax():
    """Forward mode with enclosed values anywhere made every tangent an enclosure from the start,
    so a rule without enclosures upstream of them (amax) refused the program (a generated network
    ``amax | cat | log_softmax`` raised UnsupportedOpError). Tangents now stay exact until they
    meet an enclosed value."""
    from mtcheck.nets import Layer, NetSpec

    spec = NetSpec((1, 2), [Layer("amax", {"dim": 1, "keepdim": True}), Layer("cat", {"dim": 1}, [-1, 0]),
                            Layer("log_softmax", {"dim": 1})], "float64")
    net = spec.build()
    assert mtcheck.check(net, torch.tensor([[0.0, 0.0]], dtype=torch.float64)).verdict == Verdict.ASSOCIATED
    assert mtcheck.check(net, torch.tensor([[1.0, 0.0]], dtype=torch.float64)).verdict == Verdict.SMOOTH_OK


def test_comparisons_of_enclosed_values_are_cases_decided_by_their_balls():
    """gt/ge/eq on irrational values (matrix_rank compares singular values with its cutoff): decided
    where the ball of the difference excludes 0; exp(0) >= 1 is an exact tie (ASSOCIATED); an
    overlap that no proof settles is UNKNOWN, never a tolerance."""
    x = torch.tensor([[0.5, -0.25], [1.0, 2.0]], dtype=torch.float64)
    assert mtcheck.check(lambda x: torch.exp(x) * (torch.exp(x) > 1.5), x).verdict == Verdict.SMOOTH_OK
    assert mtcheck.check(lambda x: torch.linalg.matrix_rank(x).to(x.dtype) * x, x).verdict == Verdict.SMOOTH_OK
    x0 = torch.tensor([[0.0, -0.25], [1.0, 2.0]], dtype=torch.float64)
    assert mtcheck.check(lambda x: torch.exp(x) * (torch.exp(x) >= 1.0), x0).verdict == Verdict.ASSOCIATED
    # tanh(x) > tanh(y) at x == y: equal irrational values are not proven equal
    t = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    rep = mtcheck.check(lambda x: x * (torch.tanh(x[:, :1]) > torch.tanh(x[:, 1:])), t)
    assert rep.verdict == Verdict.UNKNOWN
