"""torch.linalg.pinv of full-rank matrices, exact (mtcheck/ops/linalg_pinv.py)."""

import pytest
import torch

import mtcheck
from mtcheck import Verdict
from mtcheck.certificate import verify


def _m(rows, cols, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return torch.randn(rows, cols, dtype=dtype)


@pytest.mark.parametrize("name, fn, shape", [
    ("tall", torch.linalg.pinv, (4, 3)),
    ("wide", torch.linalg.pinv, (2, 5)),
    ("pinverse", torch.pinverse, (4, 3)),
    ("batched", lambda a: torch.linalg.pinv(torch.stack([a, 2 * a])), (4, 3)),
    ("relu after it", lambda a: torch.relu(torch.linalg.pinv(a)), (4, 3)),
])
def test_pinv_is_decided_and_certified(name, fn, shape):
    rep = mtcheck.check(fn, _m(*shape))
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()
    assert rep.certificate_ok and verify(rep.certificate).ok


class _PinvScaled(torch.autograd.Function):
    """pinv whose backward scales the right gradient by 1.001 (a wrong backward, off by 0.1%)."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return torch.linalg.pinv(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        with torch.enable_grad():
            x = a.detach().requires_grad_()
            (gx,) = torch.autograd.grad(torch.linalg.pinv(x), x, g)
        return gx * 1.001


def test_a_wrong_pinv_backward_is_caught():
    rep = mtcheck.check(_PinvScaled.apply, _m(4, 3))
    assert rep.verdict is Verdict.SMOOTH_WRONG, rep.explain()


def test_pinv_below_its_cutoff_is_refused():
    with pytest.raises(mtcheck.UnsupportedOpError, match="cutoff"):
        mtcheck.check(torch.linalg.pinv, torch.tensor([[1.0, 2.0], [2.0, 4.0]], dtype=torch.float64))
    with pytest.raises(mtcheck.UnsupportedOpError, match="cutoff"):
        mtcheck.check(lambda a: torch.linalg.pinv(a, hermitian=True),
                      torch.tensor([[1.0, 2.0], [2.0, 4.0]], dtype=torch.float64))


@pytest.mark.parametrize("name, fn, shapes", [
    ("least squares, default driver", lambda a, b: torch.linalg.lstsq(a, b).solution, ((4, 3), (4, 2))),
    ("least squares, gels", lambda a, b: torch.linalg.lstsq(a, b, driver="gels").solution, ((4, 3), (4, 2))),
    ("residuals", lambda a, b: torch.linalg.lstsq(a, b, driver="gels").residuals, ((4, 3), (4, 2))),
    ("minimum norm", lambda a, b: torch.linalg.lstsq(a, b, driver="gels").solution, ((2, 3), (2, 2))),
])
def test_lstsq_of_full_rank_matrices_is_decided(name, fn, shapes):
    rep = mtcheck.check(fn, _m(*shapes[0]), _m(*shapes[1], seed=1))
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()
    assert verify(rep.certificate).ok


def test_lstsq_of_a_rank_deficient_matrix_is_refused():
    a = torch.tensor([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]], dtype=torch.float64)
    with pytest.raises(mtcheck.UnsupportedOpError, match="full rank"):
        mtcheck.check(lambda a, b: torch.linalg.lstsq(a, b).solution, a, _m(3, 1))


def test_pinv_hermitian_is_the_pseudo_inverse_of_the_lower_triangle_symmetrised():
    """hermitian=True: the function of the input is pinv(tril(A) + tril(A, -1)^T). At a symmetric
    input (as PyTorch's gradcheck wrapper makes it) PyTorch's gradient is right; a planted wrong
    backward is caught. At a non-symmetric input PyTorch returns the symmetric-matrix gradient (as
    for eigh), not the gradient of the function of the lower triangle: SMOOTH_WRONG, as eigh."""
    import torch

    import mtcheck

    torch.manual_seed(0)
    A = torch.randint(-4, 5, (3, 3), dtype=torch.float64) / 4
    assert mtcheck.check(lambda a: torch.linalg.pinv(a + a.mT, hermitian=True), A).verdict.name == "SMOOTH_OK"

    class Bad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            return torch.linalg.pinv(a, hermitian=True)

        @staticmethod
        def backward(ctx, g):
            return g * 2

    assert mtcheck.check(lambda a: Bad.apply(a + a.mT), A).verdict.name == "SMOOTH_WRONG"
    assert mtcheck.check(lambda a: torch.linalg.pinv(a, hermitian=True), A).verdict.name == \
        mtcheck.check(lambda a: torch.linalg.eigh(a)[0], A).verdict.name == "SMOOTH_WRONG"
