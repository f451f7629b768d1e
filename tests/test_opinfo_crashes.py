"""Internal crashes the OpInfo sweep found (issue 11): each program made mtcheck.check raise an
exception that is not one of mtcheck's documented errors. Now each gets a verdict, or a
documented error (mtcheck/errors.py) that names the op and the user's line."""

import pytest
import torch
import torch.nn.functional as F

import mtcheck
from mtcheck import Verdict

D = torch.float64
PASSING = (Verdict.SMOOTH_OK, Verdict.ASSOCIATED)


def v(*vals, shape=None):
    t = torch.tensor(vals, dtype=D)
    return t.reshape(shape) if shape is not None else t


# AxisError in the verified-float matrix product: a 1-D right operand (dot, vdot, inner, mv,
# matmul and __rmatmul__ with 1-D operands, addmv, linalg.vecdot)
ONE_D = {
    "dot": (torch.dot, (v(1, 2, 0), v(0, 1, 1))),
    "vdot": (torch.vdot, (v(1, 2, 0), v(0, 1, 1))),
    "inner": (torch.inner, (v(1, 2, 0), v(0, 1, 1))),
    "mv": (torch.mv, (v(1, 2, 0, 1, 1, 1, shape=(2, 3)), v(0, 1, 1))),
    "matmul-1d-1d": (torch.matmul, (v(1, 2, 0), v(0, 1, 1))),
    "matmul-2d-1d": (torch.matmul, (v(1, 2, 0, 1, 1, 1, shape=(2, 3)), v(0, 1, 1))),
    "rmatmul": (lambda a, b: b.__rmatmul__(a), (v(1, 2, 0, 1, 1, 1, shape=(2, 3)), v(0, 1, 1))),
    "addmv": (lambda c, a, b: torch.addmv(c, a, b), (v(1, 0), v(1, 2, 0, 1, 1, 1, shape=(2, 3)), v(0, 1, 1))),
    "vecdot": (lambda a, b: torch.linalg.vecdot(a, b), (v(1, 2, 0), v(0, 1, 1))),
}


@pytest.mark.parametrize("name", sorted(ONE_D))
def test_products_with_1d_operands(name):
    fn, xs = ONE_D[name]
    rep = mtcheck.check(fn, *xs, neighbours=False)
    assert rep.verdict in PASSING, rep.explain()


def test_mean_of_a_0d_tensor():
    """IndexError: the mean over dim 0 (or -1) of a 0-d tensor."""
    for f in (lambda x: torch.mean(x, dim=0), lambda x: torch.mean(x, dim=-1, keepdim=True), torch.mean):
        rep = mtcheck.check(f, torch.tensor(0.5, dtype=D), neighbours=False)
        assert rep.verdict in PASSING, rep.explain()


def test_multi_margin_loss_of_a_0d_input():
    """ValueError: multi_margin_loss with a 0-d input (one sample of one class)."""
    rep = mtcheck.check(lambda x: F.multi_margin_loss(x, torch.tensor(0)), torch.tensor(0.5, dtype=D),
                        neighbours=False)
    assert rep.verdict in PASSING, rep.explain()


def test_as_strided_of_a_partial_view():
    """RuntimeError: as_strided on an input that is a view into a larger storage (OpInfo's
    partial_views). mtcheck checks a copy of each input, so the strides address another memory:
    refused, naming the op and the line."""
    base = torch.arange(20, dtype=D)
    x = base[5:15]
    with pytest.raises(mtcheck.UnsupportedOpError) as e:
        mtcheck.check(lambda t: torch.as_strided(t, (2, 2), (1, 2), 10), x)
    assert e.value.op == "aten.as_strided.default" and "test_opinfo_crashes.py" in e.value.where
    # a contiguous input is fine
    rep = mtcheck.check(lambda t: torch.as_strided(t, (2, 2), (1, 2), 1), base[:10].clone(), neighbours=False)
    assert rep.verdict in PASSING


def test_in_place_random_op_on_an_input():
    """RuntimeError from autograd (an in-place op on a leaf that requires grad): a documented error."""
    with pytest.raises(mtcheck.CheckInputError) as e:
        mtcheck.check(lambda t: t.exponential_(), v(1, 2))
    assert "in place" in str(e.value) and "test_opinfo_crashes.py" in str(e.value)


def test_resize_of_an_input():
    with pytest.raises(mtcheck.CheckInputError) as e:
        mtcheck.check(lambda t: t.resize_(1), v(1, 2))
    assert "resize" in str(e.value)


def test_input_passed_where_torch_has_no_derivative():
    """RuntimeError: batch_norm's running mean is an input mtcheck differentiates."""
    with pytest.raises(mtcheck.CheckInputError) as e:
        mtcheck.check(lambda x, rm: F.batch_norm(x, rm, rm.abs() + 1), v(1, 2, 0, 1, shape=(2, 2)), v(0, 1))
    assert "native_batch_norm" in str(e.value) and "wrt" in str(e.value)
    rep = mtcheck.check(lambda x, rm: F.batch_norm(x, rm, rm.abs() + 1), v(1, 2, 0, 1, shape=(2, 2)), v(0, 1),
                        wrt=[0], neighbours=False)
    assert rep.verdict in PASSING


def test_logical_ops_on_float_operands():
    """AttributeError: logical_xor of two float tensors (their cases are x != 0)."""
    rep = mtcheck.check(lambda a, b: torch.where(torch.logical_xor(a, b), a, 2 * b), v(0, 1, 2), v(1, 0, 2),
                        neighbours=False)
    assert rep.verdict in PASSING, rep.explain()
    assert rep.pattern.n_ties >= 2      # a = 0 and b = 0 are cases of the pattern


def test_comparison_with_an_infinite_scalar():
    """ValueError: x == inf (torch.isfinite's decomposition) had no exact scalar."""
    rep = mtcheck.check(lambda x: torch.where(x.abs() != float("inf"), x, -x) + torch.isfinite(x) * x,
                        v(0, 1, 2), neighbours=False)
    assert rep.verdict in PASSING, rep.explain()


def test_clamp_with_an_infinite_bound_is_a_documented_refusal():
    with pytest.raises(mtcheck.UnsupportedOpError) as e:
        mtcheck.check(lambda x: torch.clamp(x, max=float("inf")), v(0, 1, 2))
    assert "non-finite scalar" in str(e.value)


def test_empty_output_is_a_documented_error():
    """ValueError in the reverse pass: a program whose output has no element (mm with an empty
    second operand, repeat(0)), found by the sweep on mm, nn.functional.linear, repeat."""
    for f in (lambda a: torch.mm(a, torch.empty(3, 0, dtype=D)), lambda a: a.repeat(0, 1)):
        with pytest.raises(mtcheck.CheckInputError, match="output is empty"):
            mtcheck.check(f, v(1, 2, 0, 1, 1, 1, shape=(2, 3)))


def test_nanmean_of_a_zero_dim_tensor_along_dim_0():
    """A reduction over dim 0 of a 0-d tensor (PyTorch allows it) crashed in the integer count
    of nanmean with numpy's AxisError."""
    import torch

    import mtcheck

    rep = mtcheck.check(lambda x: torch.nanmean(x, dim=0), torch.tensor(1.5, dtype=torch.float64))
    assert rep.verdict is mtcheck.Verdict.SMOOTH_OK
