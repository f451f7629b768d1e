"""Matrix functions with irrational values (mtcheck/ops/linalg_enclosed.py): slogdet, matrix_exp,
cholesky; enclosures against mpmath, verdicts against PyTorch, and mutants."""

import mpmath
import pytest
import torch

import mtcheck
from mtcheck import Verdict

mpmath.mp.prec = 200
F64 = torch.float64
A = torch.tensor([[2.0, 0.5, -1.0], [0.25, 3.0, 0.5], [1.0, -0.5, 1.5]], dtype=F64)
SPD = torch.tensor([[4.0, 1.0, 0.5], [1.0, 3.0, -0.25], [0.5, -0.25, 2.0]], dtype=F64)


from enclosure_helpers import contains as _contains  # noqa: E402


def _model_value(fn, x):
    from mtcheck.model import ExactModel
    from mtcheck.trace import prepare_inputs, trace
    from mtcheck._exact import from_tensor

    leaves, _ = prepare_inputs((x,), None)
    tr = trace(fn, leaves)
    m = ExactModel(tr)
    ev = m.evaluate([from_tensor(leaves[0])])
    return ev.value(tr.outputs[0])


def test_enclosures_contain_the_true_values():
    M = mpmath.matrix(A.tolist())
    v = _model_value(lambda a: torch.linalg.slogdet(a)[1], A)
    assert _contains(v, mpmath.log(abs(mpmath.det(M))))
    E = mpmath.expm(M)
    ex = _model_value(torch.linalg.matrix_exp, A)
    for i in range(3):
        for j in range(3):
            assert _contains(ex[i, j], E[i, j])
    L = mpmath.cholesky(mpmath.matrix(SPD.tolist()))
    lv = _model_value(torch.linalg.cholesky, SPD)
    for i in range(3):
        for j in range(3):
            assert _contains(lv[i, j], L[i, j])


@pytest.mark.parametrize("fn,x", [
    (lambda a: torch.linalg.slogdet(a)[1], A), (lambda a: torch.linalg.slogdet(a)[1], SPD), (torch.linalg.matrix_exp, A),
    (lambda a: torch.linalg.cholesky(a + a.mT), SPD), (lambda a: torch.linalg.cholesky(a + a.mT, upper=True), SPD),
    (lambda a: torch.linalg.cholesky_ex(a + a.mT)[0], SPD)], ids=["slogdet", "slogdet_spd", "matrix_exp", "chol", "chol_upper",
                                                           "chol_ex"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_pytorch_gradients_are_the_true_ones(fn, x, dtype):
    rep = mtcheck.check(fn, x.to(dtype))
    assert rep.verdict is Verdict.SMOOTH_OK, rep


@pytest.mark.parametrize("upper", [False, True])
def test_cholesky_of_a_symmetric_input_as_pytorch_tests_it(upper):
    """PyTorch's own gradcheck feeds cholesky A + A^T (its gradient is defined for symmetric use)."""
    x = torch.tensor([[2.0, 0.5, 0.25], [0.0, 1.5, -0.25], [0.0, 0.0, 1.0]], dtype=F64)
    rep = mtcheck.check(lambda a: torch.linalg.cholesky(a + a.mT, upper=upper), x)
    assert rep.verdict is Verdict.SMOOTH_OK, rep


def test_refusals():
    sing = torch.tensor([[1.0, 2.0], [2.0, 4.0]], dtype=F64)
    with pytest.raises(mtcheck.UnsupportedOpError, match="singular"):
        mtcheck.check(lambda a: torch.linalg.slogdet(a)[0] * a, sing)
    # (cholesky of a matrix that is not positive definite: PyTorch itself raises, before mtcheck)


class _LogdetNoTranspose(torch.autograd.Function):
    """log|det| with A^-1 as its gradient instead of A^-T (right only for symmetric A)."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return torch.linalg.slogdet(a)[1]

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * torch.linalg.inv(a)


class _ExpmElementwise(torch.autograd.Function):
    """matrix_exp with the backward of the elementwise exp (a plausible mix-up)."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return torch.linalg.matrix_exp(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * torch.exp(a)


def test_mutants_are_caught():
    pos = torch.tensor([[2.0, 0.5, -1.0], [0.25, 3.0, 0.5], [1.0, -0.5, 2.5]], dtype=F64)   # det > 0
    assert torch.det(pos) > 0
    assert mtcheck.check(_LogdetNoTranspose.apply, pos).verdict is Verdict.SMOOTH_WRONG
    assert mtcheck.check(_ExpmElementwise.apply, A).verdict is Verdict.SMOOTH_WRONG


def test_default_init_float32_model_with_a_matrix_exponential():
    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 9)
    x = torch.randn(2, 6)

    def good(x):
        return torch.linalg.matrix_exp(torch.relu(lin(x)).reshape(2, 3, 3) * 0.5).sum(dim=-1)

    def bad(x):
        return _ExpmElementwise.apply(torch.relu(lin(x)).reshape(2, 3, 3) * 0.5).sum(dim=-1)

    assert mtcheck.check(good, x).verdict.passed
    assert mtcheck.check(bad, x).verdict in (Verdict.SMOOTH_WRONG, Verdict.NOT_ASSOCIATED)
