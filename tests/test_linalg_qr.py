"""torch.linalg.qr enclosed (mtcheck/ops/linalg_qr.py): decided for full-rank tall or square
matrices with PyTorch's signs, a wrong backward caught, the undetermined cases refused."""

import pytest
import torch

import mtcheck
from mtcheck import Verdict
from mtcheck.certificate import verify


def _m(rows, cols, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return torch.randn(rows, cols, dtype=dtype)


@pytest.mark.parametrize("name, fn, shape", [
    ("Q", lambda a: torch.linalg.qr(a)[0], (4, 3)),
    ("R", lambda a: torch.linalg.qr(a)[1], (4, 3)),
    ("square, complete", lambda a: torch.linalg.qr(a, mode="complete")[0], (3, 3)),
    ("torch.qr", lambda a: torch.qr(a)[1], (5, 2)),
    ("batched", lambda a: torch.linalg.qr(torch.stack([a, 2 * a]))[0], (4, 3)),
])
def test_qr_is_decided_and_certified(name, fn, shape):
    rep = mtcheck.check(fn, _m(*shape))
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()
    assert rep.certificate_ok and verify(rep.certificate).ok


def test_qr_in_float32():
    rep = mtcheck.check(lambda a: torch.linalg.qr(a)[0], _m(4, 3, torch.float32))
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()


class _QrRIgnoresQ(torch.autograd.Function):
    """R of a QR whose backward treats Q as constant: gA = Q gR (misses the dependence through Q)."""

    @staticmethod
    def forward(ctx, a):
        Q, R = torch.linalg.qr(a)
        ctx.save_for_backward(Q)
        return R

    @staticmethod
    def backward(ctx, gR):
        (Q,) = ctx.saved_tensors
        return Q @ gR


def test_a_qr_backward_that_ignores_q_is_caught():
    rep = mtcheck.check(_QrRIgnoresQ.apply, _m(4, 3))
    assert rep.verdict is Verdict.SMOOTH_WRONG, rep.explain()
    assert verify(rep.certificate).ok


def test_qr_cases_without_a_smooth_answer_are_refused():
    with pytest.raises(mtcheck.UnsupportedOpError, match="wide"):
        mtcheck.check(lambda a: torch.linalg.qr(a)[1], _m(2, 3))
    with pytest.raises(mtcheck.UnsupportedOpError, match="complete"):
        mtcheck.check(lambda a: torch.linalg.qr(a, mode="complete")[0], _m(4, 3))
    rank1 = torch.tensor([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]], dtype=torch.float64)
    with pytest.raises(mtcheck.CheckInputError):
        mtcheck.check(lambda a: torch.linalg.qr(a)[0], rank1)
