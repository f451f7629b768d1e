"""linalg.householder_product and ormqr, exact polynomials (mtcheck/ops/householder.py)."""

import pytest
import torch

import mtcheck
from mtcheck import Verdict
from mtcheck.certificate import verify


def _r(*shape, seed=0):
    torch.manual_seed(seed)
    return torch.randn(*shape, dtype=torch.float64)


@pytest.mark.parametrize("name, fn, args", [
    ("householder_product", torch.linalg.householder_product, ((5, 4), (3,))),
    ("householder_product, square", torch.linalg.householder_product, ((4, 4), (4,))),
    ("ormqr", lambda a, t, c: torch.ormqr(a, t, c), ((5, 4), (4,), (5, 2))),
    ("ormqr, transposed", lambda a, t, c: torch.ormqr(a, t, c, transpose=True), ((5, 4), (4,), (5, 2))),
    ("ormqr, right", lambda a, t, c: torch.ormqr(a, t, c, left=False), ((5, 4), (4,), (2, 5))),
])
def test_householder_products_are_exact_and_decided(name, fn, args):
    rep = mtcheck.check(fn, *[_r(*s, seed=i) for i, s in enumerate(args)])
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()
    assert verify(rep.certificate).ok


class _HHNoTau(torch.autograd.Function):
    """householder_product whose backward gives tau no gradient."""

    @staticmethod
    def forward(ctx, a, tau):
        ctx.save_for_backward(a, tau)
        return torch.linalg.householder_product(a, tau)

    @staticmethod
    def backward(ctx, g):
        a, tau = ctx.saved_tensors
        with torch.enable_grad():
            x = a.detach().requires_grad_()
            (ga,) = torch.autograd.grad(torch.linalg.householder_product(x, tau), x, g)
        return ga, torch.zeros_like(tau)


def test_a_householder_backward_that_drops_tau_is_caught():
    rep = mtcheck.check(_HHNoTau.apply, _r(5, 4), _r(3, seed=1))
    assert rep.verdict is Verdict.SMOOTH_WRONG, rep.explain()


@pytest.mark.parametrize("fn", [torch.linalg.householder_product,
                                lambda a, t: torch.ormqr(a, t, torch.eye(3, dtype=torch.float64))])
def test_pytorch_finding_nan_gradient_at_a_singular_reflector(fn):
    """A PyTorch finding (torch 2.13): householder_product and ormqr are polynomials in (A, tau), yet
    their backward inverts each reflector H_i = I - tau_i v_i v_i^T, which is singular when
    tau_i v_i^T v_i = 1 (here v_1 = e_1, tau_1 = 1): the gradient is NaN. mtcheck says SMOOTH_WRONG
    with the non-finite entry as its proof. (The OpInfo sweep met it on ormqr's grid samples.)"""
    a = torch.zeros(3, 3, dtype=torch.float64)
    tau = torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64)
    rep = mtcheck.check(fn, a, tau)
    assert rep.verdict is Verdict.SMOOTH_WRONG, rep.explain()
    assert "non-finite" in rep.mismatch
