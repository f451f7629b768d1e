"""torch.linalg.eigh / eigvalsh enclosed (mtcheck/ops/linalg_eigh.py): decided at symmetric inputs
with simple eigenvalues, mutants caught, repeated eigenvalues refused with the reason."""

import pytest
import torch

import mtcheck
from mtcheck import Verdict
from mtcheck.certificate import verify


def _sym_input(dtype=torch.float64, n=4, seed=0):
    torch.manual_seed(seed)
    return torch.randn(n, n, dtype=dtype)


# PyTorch reads one triangle but takes its gradient in the space of symmetric matrices; as OpInfo's
# gradcheck does, the input is symmetrised first (X + X^T), where both conventions agree
PROGRAMS = {
    "eigvalsh": lambda a: torch.linalg.eigvalsh(a + a.T),
    "eigh values": lambda a: torch.linalg.eigh(a + a.T)[0],
    "eigh vectors": lambda a: torch.linalg.eigh(a + a.T)[1],
    "eigh vectors, UPLO=U": lambda a: torch.linalg.eigh(a + a.T, UPLO="U")[1],
    "eigh of a batch": lambda a: torch.linalg.eigh(torch.stack([a + a.T, a @ a.T]))[1],
    "eigh composed": lambda a: torch.relu(torch.linalg.eigh(a + a.T)[1] @ torch.linalg.eigvalsh(a + a.T)),
}


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_eigh_is_decided_and_certified(name):
    rep = mtcheck.check(PROGRAMS[name], _sym_input())
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()
    assert rep.certificate_ok and verify(rep.certificate).ok


@pytest.mark.parametrize("name", ["eigvalsh", "eigh vectors", "eigh vectors, UPLO=U"])
def test_eigh_in_float32(name):
    # (LAPACK's float32 eigenvectors are accurate to about eps * ||A|| / gap: of A A^T, whose
    # eigenvalues spread, the gradient is off by 5e-6 relative, beyond assert_close's float32 rtol
    # 1.3e-6, and the check says so; a user sets rtol= for such matrices)
    rep = mtcheck.check(PROGRAMS[name], _sym_input(torch.float32))
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()
    assert rep.certificate_ok and verify(rep.certificate).ok


def test_the_one_triangle_pytorch_reads_is_the_function_checked():
    """Without the symmetrisation the function is eigh(lower triangle of A): PyTorch's gradient (a
    symmetric matrix, half to each triangle) is not its derivative, and mtcheck says so."""
    rep = mtcheck.check(lambda a: torch.linalg.eigvalsh(a), _sym_input())
    assert rep.verdict is Verdict.SMOOTH_WRONG, rep.explain()
    assert verify(rep.certificate).ok


class _EighNoVectorTerm(torch.autograd.Function):
    """eigh's eigenvectors with a backward that forgets the eigenvector derivative (F o V^T gV)."""

    @staticmethod
    def forward(ctx, a):
        L, V = torch.linalg.eigh(a)
        ctx.save_for_backward(V)
        return V

    @staticmethod
    def backward(ctx, gV):
        (V,) = ctx.saved_tensors
        return V @ torch.diag_embed(torch.diagonal(V.mT @ gV, dim1=-2, dim2=-1)) @ V.mT


def test_an_eigh_backward_without_the_eigenvector_term_is_caught():
    rep = mtcheck.check(lambda a: _EighNoVectorTerm.apply(a + a.T), _sym_input())
    assert rep.verdict is Verdict.SMOOTH_WRONG, rep.explain()
    assert verify(rep.certificate).ok


def test_a_repeated_eigenvalue_is_refused_with_the_reason():
    with pytest.raises(mtcheck.UnsupportedOpError, match="repeated eigenvalue"):
        mtcheck.check(lambda a: torch.linalg.eigvalsh(a + a.T), torch.eye(3, dtype=torch.float64))
