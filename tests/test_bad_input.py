"""Bad input gets a clear error (or a defined verdict), never a silent pass."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mtcheck
from mtcheck import Verdict

f64 = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731


def test_op_without_exact_model_names_the_op_and_the_line():
    def prog(x):
        return torch.special.zeta(x, 2.0).sum()  # the line the error must name

    with pytest.raises(mtcheck.UnsupportedOpError) as err:
        mtcheck.check(prog, f64(2.0, 3.0))
    msg = str(err.value)
    assert "aten.special_zeta" in msg
    assert "test_bad_input.py:" in msg and "in prog" in msg
    assert err.value.op.startswith("aten.special_zeta")


@pytest.mark.parametrize("op,x", [(torch.floor, 1.0), (torch.round, 0.5), (torch.sign, 0.0), (torch.ceil, -2.0)])
def test_step_function_on_a_jump_is_outside_the_theory(op, x):
    with pytest.raises(mtcheck.OutsideTheoryError) as err:
        mtcheck.check(lambda x: op(x).sum(), f64(0.25, x))
    assert "outside the theory" in str(err.value)
    assert "jumps at" in str(err.value) and "element 1" in str(err.value)
    # off its jumps the same op is locally constant: checked
    assert mtcheck.check(lambda x: op(x).sum() + x.sum(), f64(0.25, 1.25)).verdict is Verdict.SMOOTH_OK


def test_discontinuous_threshold_is_outside_the_theory_on_its_jump():
    with pytest.raises(mtcheck.OutsideTheoryError, match="jumps at the threshold"):
        mtcheck.check(lambda x: torch.threshold(x, 0.0, 5.0).sum(), f64(0.0, -1.0))
    # off the jump it is locally x or the constant value: checked
    rep = mtcheck.check(lambda x: torch.threshold(x, 0.0, 5.0).sum(), f64(0.5, -1.0))
    assert rep.verdict is Verdict.SMOOTH_OK


def test_continuous_threshold_is_a_shifted_relu():
    rep = mtcheck.check(lambda x: torch.threshold(x, 1.0, 1.0).sum(), f64(1.0, 2.0, 0.0))
    assert rep.verdict is Verdict.ASSOCIATED


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_input(bad):
    with pytest.raises(mtcheck.NonFiniteError, match="non-finite"):
        mtcheck.check(lambda x: torch.relu(x).sum(), f64(0.0, bad))


def test_non_finite_weight():
    lin = nn.Linear(2, 1).double()
    with torch.no_grad():
        lin.weight[0, 0] = float("nan")
    with pytest.raises(mtcheck.NonFiniteError, match="weight"):
        mtcheck.check(lin, f64(1.0, 2.0))


def test_empty_tensor():
    with pytest.raises(mtcheck.CheckInputError, match="empty"):
        mtcheck.check(lambda x: torch.relu(x).sum(), torch.zeros(0, dtype=torch.float64))


def test_input_that_does_not_require_grad_is_a_constant_when_another_does():
    x = f64(0.0, 1.0).requires_grad_()
    y = f64(2.0, 3.0)          # no requires_grad: held fixed
    rep = mtcheck.check(lambda a, b: torch.relu(a * b).sum(), x, y)
    assert rep.n_inputs == 2   # only x's coordinates are differentiated
    assert rep.verdict is Verdict.ASSOCIATED


def test_no_input_requires_grad_means_all_float_inputs():
    rep = mtcheck.check(lambda a, b: torch.relu(a - b).sum(), f64(1.0), f64(1.0))
    assert rep.n_inputs == 2
    assert rep.verdict is Verdict.ASSOCIATED


def test_integer_inputs_are_constants_and_cannot_be_differentiated():
    idx = torch.tensor([1, 0])
    rep = mtcheck.check(lambda x, i: x[i].relu().sum(), f64(0.0, 2.0), idx)
    assert rep.n_inputs == 2
    with pytest.raises(mtcheck.CheckInputError, match="not a floating-point"):
        mtcheck.check(lambda x, i: x[i].sum(), f64(0.0, 2.0), idx, wrt=[1])


def test_non_tensor_input():
    with pytest.raises(mtcheck.CheckInputError, match="not a torch.Tensor"):
        mtcheck.check(lambda x: x, [1.0, 2.0])


def test_solver_limit_gives_unknown_never_a_pass():
    # z3 decides the neighbouring strata: at its limit those fields stay undecided, never a guess
    rep = mtcheck.check(lambda x: torch.relu(x).sum(), f64(0.0, 1.0, -1.0), rlimit=1)
    assert rep.differentiable is None or rep.differentiable is False
    assert rep.clarke is None
    assert "unknown" in rep.reasons["Clarke"] or "unknown" in rep.reasons.get("differentiable", "")


def test_value_escaping_to_python_is_refused():
    def prog(x):
        s = float(x.sum())      # the dependence on x escapes the trace
        return x * s

    with pytest.raises(mtcheck.UnsupportedOpError, match="escapes to Python"):
        mtcheck.check(prog, f64(1.0, 2.0))


def test_dropout_in_training_mode_is_refused_with_remedy():
    m = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).double().train()
    with pytest.raises(mtcheck.UnsupportedOpError, match="eval"):
        mtcheck.check(m, f64(1.0, 2.0))


def test_in_place_update_through_a_view_is_followed_and_a_stale_alias_refused():
    """A write through a view of a contiguous tensor (``y[0:1].relu_()``; PyTorch's circular pad
    copies into slices of a fresh buffer) is a new value of the tensor: as_strided_scatter of the
    written view, recorded after the write. A view taken *before* the write and read after it is
    stale: refused, naming the write."""
    def prog(x):
        y = x * 1
        v = y[0:1]
        v.relu_()              # changes y through the view
        return y.sum()

    assert mtcheck.check(prog, f64(-1.0, 2.0)).verdict is Verdict.SMOOTH_OK
    assert mtcheck.check(prog, f64(0.0, 2.0)).verdict is Verdict.ASSOCIATED

    def stale(x):
        out = torch.zeros(2, 5, dtype=x.dtype)
        before = out[:, 0:2]
        out[:, 1:4].copy_(x)
        return before * 2

    with pytest.raises(mtcheck.UnsupportedOpError, match="in place"):
        mtcheck.check(stale, torch.ones(2, 3, dtype=torch.float64))

    class Bad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return F.pad(x, (1, 1), mode="circular")

        @staticmethod
        def backward(ctx, g):
            return g[..., 1:-1] * 1.5

    x3 = torch.arange(12, dtype=torch.float64).reshape(1, 3, 4) / 4
    assert mtcheck.check(lambda x: F.pad(x, (1, 2, 1, 1), mode="circular"), x3.reshape(1, 1, 3, 4)).verdict \
        is Verdict.SMOOTH_OK
    assert mtcheck.check(Bad.apply, x3).verdict is Verdict.SMOOTH_WRONG


def test_in_place_relu_on_a_fresh_tensor_is_fine():
    m = nn.Sequential(nn.Linear(2, 3), nn.ReLU(inplace=True), nn.Linear(3, 1)).double().eval()
    from mtcheck import zoo

    zoo.dyadic_(m)
    rep = mtcheck.check(m, f64(0.0, 0.0))
    assert rep.verdict.passed


def test_op_pytorch_does_not_differentiate_is_named():
    """special.bessel_j0's output does not require grad: autograd's gradient through it is
    silently 0. mtcheck judges the function computed (the gradient is wrong) and names the op."""
    def prog(x):
        return torch.special.bessel_j0(x * 2).sum() + x.sum()

    rep = mtcheck.check(prog, f64(0.5, 1.5))
    assert rep.verdict is Verdict.SMOOTH_WRONG
    note = next(n for n in rep.notes if n.startswith("PyTorch does not differentiate"))
    assert "aten.special_bessel_j0.default" in note and "test_bad_input.py:" in note
    assert note in rep.explain()


def test_an_output_pytorch_does_not_differentiate_matters_only_when_used():
    """native_layer_norm's mean and rstd are constants to autograd: a program returning them
    gets the note (naming the output), one that ignores them (F.layer_norm) does not."""
    x = torch.tensor([[0.5, -1.0, 2.0], [1.0, 1.0, 3.0]], dtype=torch.float64)
    rep = mtcheck.check(lambda x: torch.native_layer_norm(x, [3], None, None, 1e-5)[1], x)
    assert rep.verdict is Verdict.SMOOTH_WRONG and any("output 1 is a constant to autograd" in n for n in rep.notes)
    rep = mtcheck.check(lambda x: torch.nn.functional.layer_norm(x, [3]), x)
    assert rep.verdict is Verdict.SMOOTH_OK and not any("autograd" in n for n in rep.notes)


def test_a_backward_that_raises_in_pytorch_is_a_documented_error():
    """PyTorch refuses some derivatives with its own RuntimeError (linalg.qr with mode='r': "the
    derivative depends on Q"): the user gets a CheckInputError saying so, not a raw RuntimeError."""
    import torch

    import mtcheck

    a = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(mtcheck.CheckInputError, match="PyTorch's backward pass raised RuntimeError"):
        mtcheck.check(lambda x: torch.linalg.qr(x, mode="r")[1], a)


def test_a_non_finite_constant_that_no_value_uses_is_no_obstacle():
    """logdet is where(sign == -1, nan, logabsdet): its NaN constant used to stop every check
    ("a weight or constant ... holds a non-finite value"). A NaN or infinity of a constant is now
    carried exactly where it is only selected away; selected, or met by arithmetic, it is a
    NonFiniteError naming the op."""
    A = torch.tensor([[2.0, 1.0, 0.0], [1.0, 3.0, 0.5], [0.0, 0.5, 1.0]], dtype=torch.float64)
    assert mtcheck.check(torch.logdet, A).verdict is Verdict.SMOOTH_OK
    inf = torch.tensor(float("inf"), dtype=torch.float64)
    assert mtcheck.check(lambda x: torch.where(x > 0, x, inf), f64(1.0, 2.0)).verdict is Verdict.SMOOTH_OK
    with pytest.raises(mtcheck.NonFiniteError, match="non-finite"):
        mtcheck.check(lambda x: torch.where(x > 0, x, inf), f64(-1.0, 2.0))
    with pytest.raises(mtcheck.NonFiniteError, match="aten.mul"):
        # the float output is finite (0 * inf is masked away by where in float too), the exact
        # model multiplies the constant: refused there, naming the op
        mtcheck.check(lambda x: torch.where(x > 0, x, x * inf * 0).nan_to_num(0.0), f64(1.0, 2.0))


def test_a_write_through_a_view_of_enclosed_values_is_followed_and_a_wrong_backward_caught():
    """The write-back moves enclosures (exp's values) as it moves exact values; a backward that
    forgets the in-place factor 3 on one column is caught."""
    def f(x):
        out = torch.exp(x) * 1
        out[:, 1:2].mul_(3)
        return out

    x = torch.tensor([[0.5, -0.25, 1.0], [0.0, 2.0, -1.0]], dtype=torch.float64)
    rep = mtcheck.check(f, x)
    assert rep.verdict is Verdict.SMOOTH_OK and rep.certificate_ok

    class Bad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return f(x)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * torch.exp(x)

    assert mtcheck.check(Bad.apply, x).verdict is Verdict.SMOOTH_WRONG


def test_allclose_is_decided_off_its_jumps():
    x = torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert mtcheck.check(lambda a, b: torch.allclose(a, b), x, x + 0.5).verdict is Verdict.SMOOTH_OK
    with pytest.raises(mtcheck.OutsideTheoryError, match="allclose"):
        # |a - b| = atol + rtol |b| exactly: allclose jumps there
        mtcheck.check(lambda a, b: torch.allclose(a, b, rtol=0.0, atol=0.5), x, x + 0.5)


def test_a_node_whose_float_value_is_nan_is_no_internal_error_in_the_exactness_test():
    """new_empty's uninitialised memory (PyTorch's circular pad, then overwritten everywhere) can
    hold NaN: the test of whether the float forward is exact converted it and raised ``ValueError:
    cannot convert NaN to integer ratio`` (seen once in CI). A non-finite float value is simply
    not exact."""
    from mtcheck._exact import from_tensor
    from mtcheck.checker import _forward_is_exact
    from mtcheck.model import ExactModel
    from mtcheck.trace import prepare_inputs, trace

    x = torch.ones(2, 3, dtype=torch.float64)
    leaves, _ = prepare_inputs((x,), None)
    tr = trace(lambda x: (x * 2) * 3, leaves)
    model = ExactModel(tr)
    ev = model.evaluate([from_tensor(x)])
    assert _forward_is_exact(model, ev)[0]
    tr.nodes[0].recorded = torch.full((2, 3), float("nan"), dtype=torch.float64)
    ok, where = _forward_is_exact(model, ev)
    assert not ok and "non-finite" in where


def test_out_of_memory_in_the_exact_model_is_unknown(monkeypatch):
    """A program whose exact model does not fit in memory gets UNKNOWN with the reason, not numpy's
    MemoryError."""
    from mtcheck.model import ExactModel

    def boom(self, *a, **k):
        raise MemoryError("Unable to allocate 62.4 GiB for an array")

    monkeypatch.setattr(ExactModel, "evaluate", boom)
    rep = mtcheck.check(torch.relu, torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert rep.verdict is mtcheck.Verdict.UNKNOWN and not rep.verdict.passed
    assert "out of memory" in rep.reasons["budget"] and "62.4 GiB" in rep.reasons["budget"]
