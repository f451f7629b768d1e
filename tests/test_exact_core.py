"""The exact engine's own guarantees: verified float64 tangents and fixed point never round
silently, structural zeros are sound, reverse mode agrees with forward mode, and an exhausted
budget is UNKNOWN."""

import flint
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mtcheck
from mtcheck import zoo
from mtcheck._exact import from_tensor
from mtcheck._fastfloat import Inexact, granularity, to_exact, wrap
from mtcheck.model import ExactModel
from mtcheck.trace import prepare_inputs, trace


def test_granularity():
    assert granularity(np.array([0.5, 3.0, 0.0])) == -1
    assert granularity(np.array([2.0 ** -60, 1.0])) == -60
    assert granularity(np.zeros(3)) is None


def test_verified_floats_refuse_what_they_cannot_compute_exactly():
    a = wrap(np.array([1.0, 2.0 ** 52]))
    with pytest.raises(Inexact):
        a + wrap(np.array([2.0 ** -3, 0.0]))           # would need 56 bits
    with pytest.raises(Inexact):
        a * flint.fmpq(1, 3)                            # a non-dyadic coefficient
    with pytest.raises(Inexact):
        np.exp(a)                                       # not on the whitelist
    with pytest.raises(Inexact):
        np.add(a, a, out=np.zeros(2))                   # in place


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-2 ** 20, 2 ** 20), min_size=6, max_size=6),
       st.lists(st.integers(-2 ** 10, 2 ** 10), min_size=6, max_size=6), st.integers(0, 30))
def test_verified_floats_agree_with_rationals(xs, ws, e):
    x = np.array(xs, dtype=np.float64).reshape(2, 3) * 2.0 ** -e
    w = np.array(ws, dtype=np.float64).reshape(3, 2) / 8
    fx = wrap(x)
    from mtcheck._exact import from_floats, matmul

    try:
        got = to_exact(matmul(fx, from_floats(w)))
    except Inexact:
        return                                           # refusing is always allowed
    assert (got == matmul(from_floats(x), from_floats(w))).all()
    s = to_exact((fx + fx) * flint.fmpq(1, 4))
    assert (s == from_floats(x) * 2 * flint.fmpq(1, 4)).all()


def test_fixed_point_is_exact_and_refuses_non_dyadic():
    from mtcheck import _fixed

    a = _fixed.from_floats(np.array([0.375, -2.0 ** -70, 3.0]))
    b = _fixed.from_floats(np.array([2.0 ** 40, 0.5, -1.25]))
    exact = lambda v: flint.fmpq(*float(v).as_integer_ratio())  # noqa: E731
    # the sum needs 110 bits (no float holds it): fixed point keeps it exact
    assert list(_fixed.to_exact(a + b)) == [exact(0.375) + exact(2.0 ** 40), exact(-2.0 ** -70) + exact(0.5),
                                            exact(3.0) + exact(-1.25)]
    want = [exact(0.375) * exact(2.0 ** 40), exact(-2.0 ** -70) * exact(0.5), exact(3.0) * exact(-1.25)]
    assert list(_fixed.to_exact(a * b)) == want
    s = a - b
    assert list(_fixed.to_exact(s)) == [exact(0.375) - exact(2.0 ** 40), exact(-2.0 ** -70) - exact(0.5),
                                        exact(3.0) - exact(-1.25)]
    M = _fixed.matmul2d(a.reshape(3, 1), b.reshape(1, 3))
    assert _fixed.to_exact(M)[1, 2] == exact(-2.0 ** -70) * exact(-1.25)
    with pytest.raises(_fixed.NotDyadic):
        a * flint.fmpq(1, 3)
    with pytest.raises(_fixed.NotDyadic):
        np.exp(a)


def test_structural_zeros_are_sound():
    from mtcheck._support import Dep, ones

    d = ones((1, 3))
    z = np.where(np.array([True, False, True])[None], d, flint.fmpq(0))
    assert isinstance(z, Dep) and z.tolist() == [[1.0, 0.0, 1.0]]
    # a sum that cancels numerically is still flagged "may be nonzero": no cancellation is assumed
    assert (z - z).tolist() == [[1.0, 0.0, 1.0]]


def _exact_model(name):
    """A zoo model's exact model evaluated at its example input: (model, evaluation, wrt, n)."""
    prog, inputs = zoo.ZOO[name]()
    leaves, wrt = prepare_inputs(inputs, None)
    m = ExactModel(trace(prog, leaves))
    ev = m.evaluate([from_tensor(t) for t in leaves])
    return m, ev, wrt, sum(leaves[i].numel() for i in wrt)


@pytest.mark.parametrize("name", ["mlp-small", "lenet", "residual-cnn", "paper-boustany", "lenet-f32"])
def test_reverse_mode_equals_forward_mode(name):
    m, ev, wrt, n = _exact_model(name)
    seeds, k = m.output_seeds(ev)
    rev = m.reverse(ev, wrt, seeds, k)
    fwd = m.output_jacobian(ev, m.linearize(ev, wrt), n)
    assert (rev == fwd).all()


def test_budget_gives_unknown_never_a_pass(monkeypatch):
    from mtcheck import certify

    def out_of_budget(*a, **k):
        raise certify.Budget("the exact witness needs a 9x9 solve (budget: 1)")

    from planted_models import MaxBoth

    def model(x):                        # a tie whose backward gives both entries the gradient
        return MaxBoth.apply(x.reshape(1, 2)).sum()

    x = torch.zeros(2, dtype=torch.float64)
    assert mtcheck.check(model, x, neighbours=False).verdict is mtcheck.Verdict.NOT_ASSOCIATED
    monkeypatch.setattr(certify, "exact_kernel_vector", out_of_budget)
    monkeypatch.setattr(certify, "exact_y", out_of_budget)
    rep = mtcheck.check(model, x, neighbours=False)
    assert rep.verdict is mtcheck.Verdict.UNKNOWN
    assert "budget" in rep.reasons["budget"]


@pytest.mark.parametrize("name", ["mlp-small", "residual-cnn", "paper-boustany"])
def test_fast_path_equals_rational_path(name):
    m, ev, wrt, n = _exact_model(name)
    fast = m.output_jacobian(ev, m.linearize(ev, wrt, fast=True), n)
    slow = m.output_jacobian(ev, m.linearize(ev, wrt, fast=False), n)
    assert (fast == slow).all()
