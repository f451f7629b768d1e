"""torch.linalg.svd / svdvals enclosed (mtcheck/ops/linalg_svd.py): decided at matrices with simple
nonzero singular values, a wrong backward caught, the cases with no continuous answer refused."""

import pytest
import torch

import mtcheck
from mtcheck import Verdict
from mtcheck.certificate import verify


def _m(rows, cols, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return torch.randn(rows, cols, dtype=dtype)


PROGRAMS = {
    "svdvals, tall": (lambda a: torch.linalg.svdvals(a), (4, 3)),
    "svdvals, wide": (lambda a: torch.linalg.svdvals(a), (3, 5)),
    "U, tall, thin": (lambda a: torch.linalg.svd(a, full_matrices=False)[0], (4, 3)),
    "Vh, tall, thin": (lambda a: torch.linalg.svd(a, full_matrices=False)[2], (4, 3)),
    "U, wide": (lambda a: torch.linalg.svd(a, full_matrices=False)[0], (3, 5)),
    "Vh, wide": (lambda a: torch.linalg.svd(a, full_matrices=False)[2], (3, 5)),
    "square, full": (lambda a: torch.linalg.svd(a)[0] * torch.linalg.svd(a)[1], (3, 3)),
    "nuclear norm": (lambda a: torch.linalg.matrix_norm(a, "nuc"), (4, 3)),
}


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_svd_is_decided_and_certified(name):
    f, shape = PROGRAMS[name]
    rep = mtcheck.check(f, _m(*shape))
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()
    assert rep.certificate_ok and verify(rep.certificate).ok


def test_svd_in_float32():
    rep = mtcheck.check(lambda a: torch.linalg.svd(a, full_matrices=False)[0], _m(4, 3, torch.float32))
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()


class _SvdUNoProjection(torch.autograd.Function):
    """Thin U of a tall matrix whose backward forgets the (I - U U^T) term (right only when square)."""

    @staticmethod
    def forward(ctx, a):
        U, S, Vh = torch.linalg.svd(a, full_matrices=False)
        ctx.save_for_backward(U, S, Vh)
        return U

    @staticmethod
    def backward(ctx, gU):
        U, S, Vh = ctx.saved_tensors
        V = Vh.mT
        s2 = S * S
        F = 1.0 / (s2[None, :] - s2[:, None])
        F.fill_diagonal_(0)
        J = F * (U.mT @ gU)
        return U @ ((J + J.mT) * S[None, :]) @ Vh


def test_a_svd_backward_without_the_projection_term_is_caught():
    rep = mtcheck.check(_SvdUNoProjection.apply, _m(4, 3))
    assert rep.verdict is Verdict.SMOOTH_WRONG, rep.explain()
    assert verify(rep.certificate).ok


def test_svd_cases_without_a_continuous_answer_are_refused():
    with pytest.raises(mtcheck.UnsupportedOpError, match="completion"):
        mtcheck.check(lambda a: torch.linalg.svd(a)[0], _m(4, 3))
    with pytest.raises(mtcheck.UnsupportedOpError, match="zero"):
        mtcheck.check(lambda a: torch.linalg.svdvals(a), torch.tensor([[1.0, 2.0], [2.0, 4.0]], dtype=torch.float64))
    with pytest.raises(mtcheck.UnsupportedOpError, match="repeated"):
        mtcheck.check(lambda a: torch.linalg.svdvals(a), torch.eye(3, dtype=torch.float64))
