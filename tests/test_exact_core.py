"""The exact engine's own guarantees: verified float64 tangents never round silently,
the modular kernel is certified, and the fast path agrees with rational arithmetic."""

import flint
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mtcheck
from mtcheck import _kernel, zoo
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


def test_kernel_is_certified_and_matches_flint():
    rng = np.random.default_rng(0)
    for _ in range(20):
        k, n = rng.integers(1, 8), rng.integers(1, 10)
        A = rng.integers(-4, 5, size=(k, n))
        A[rng.random(A.shape) < 0.5] = 0
        if k > 1:
            A[-1] = A[0] * 3                       # a dependent row
        r, N = _kernel.kernel(A.astype(object))
        M = flint.fmpz_mat(int(k), int(n), A.ravel().tolist())
        assert r == M.rank()
        assert N.ncols() == n - r
        assert (M * N).is_zero()


def test_kernel_gives_up_rather_than_guess(monkeypatch):
    rng = np.random.default_rng(1)
    A = rng.integers(-2 ** 40, 2 ** 40, size=(30, 40)).astype(object)
    monkeypatch.setattr(_kernel, "PRIMES", _kernel.PRIMES[:1])
    monkeypatch.setattr(_kernel, "MAX_FALLBACK_ENTRIES", 0)
    with pytest.raises(_kernel.KernelUndecided):
        _kernel.kernel(A)


def test_undecided_tangent_space_is_unknown(monkeypatch):
    import mtcheck.checker as ch     # imported before patching: it binds `kernel` at import

    def undecided(A):
        raise _kernel.KernelUndecided("budget")

    monkeypatch.setattr(ch, "kernel", undecided)
    rep = mtcheck.check(lambda x: torch.relu(x).sum(), torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert rep.verdict is mtcheck.Verdict.UNKNOWN
    assert "budget" in rep.reasons["tangent space"]


@pytest.mark.parametrize("name", ["mlp-small", "residual-cnn", "paper-boustany"])
def test_fast_path_equals_rational_path(name):
    prog, inputs = zoo.ZOO[name]()
    leaves, wrt = prepare_inputs(inputs, None)
    tr = trace(prog, leaves)
    m = ExactModel(tr)
    ev = m.evaluate([from_tensor(t) for t in leaves])
    n = sum(leaves[i].numel() for i in wrt)
    fast = m.output_jacobian(ev, m.linearize(ev, wrt, fast=True), n)
    slow = m.output_jacobian(ev, m.linearize(ev, wrt, fast=False), n)
    assert (fast == slow).all()
