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


# ---------------------------------------------------------------- residues modulo word-size primes

@pytest.mark.parametrize("name", ["lenet", "residual-cnn", "paper-boustany", "lenet-f32", "lenet-f32-bad-maxpool"])
def test_residue_passes_reconstruct_the_exact_tie_rows(name):
    """Tie rows from numpy residues + CRT equal the fixed-point rows, and the propagated bound
    is a true bound of every integer (so the number of primes is enough)."""
    from mtcheck import certify
    from mtcheck._fixed import crt, from_exact

    m, ev, wrt, n = _exact_model(name)
    ties = certify.find_ties(m, ev, wrt)
    k = min(ties.k, 40)
    if not k:
        pytest.skip("no live tie")
    seeds = certify._seeds_one_hot(ties, 0, k)
    parts = m.reverse_parts(ev, wrt, {}, k, seeds)
    fx = crt(parts)
    assert max(abs(int(v)).bit_length() for v in fx.view(np.ndarray).ravel().tolist()) <= parts[0].bits
    exact = m._reverse(ev, wrt, {}, k, [(i, d, from_exact(np.asarray(w, dtype=object))) for i, d, w in seeds],
                       fixed=True)
    from mtcheck._fixed import to_exact

    assert (to_exact(fx) == to_exact(exact)).all()
    # and the lazy matrix gives the same rows and columns exactly
    T = certify.tie_matrix(m, ev, wrt, ties, n, 0, k)
    full = T.full().exact()
    assert (full == to_exact(exact)).all()
    assert (T.rows([0, k - 1]).exact() == full[[0, k - 1]]).all()
    cols = sorted({0, n // 2, n - 1})
    assert (T.columns(cols).exact() == full[:, cols]).all()


def test_residues_refuse_what_they_cannot_do():
    from mtcheck._fixed import NotDyadic, NotModular, mod_wrap

    a = mod_wrap(np.array([1, 2, 3]), 1048573, 0, 2)
    with pytest.raises(NotModular):
        a > 0                                           # residues have no order
    with pytest.raises(NotModular):
        np.exp(a)
    with pytest.raises(NotDyadic):
        a * flint.fmpq(1, 3)                            # a non-dyadic coefficient (fixed point refuses it too)
    leaked = np.array([1, 2, 3], dtype=object)          # plain numpy ints in an object array
    leaked[0] = np.int64(1)
    with pytest.raises(NotModular):
        a + leaked


@pytest.mark.parametrize("name", ["lenet", "lenet-f32", "residual-cnn", "paper-boustany"])
def test_one_sided_rates_equal_exact_difference_quotients(name):
    """f'(x; t) from the directional linearization equals (f(x + h t) - f(x)) / h exactly for two
    tiny dyadic steps (the program is affine on the first piece along the ray)."""
    m, ev, wrt, n = _exact_model(name)
    rng = np.random.default_rng(3)
    t = np.array([flint.fmpq(int(v)) for v in rng.integers(-8, 9, size=n)], dtype=object)
    rate = m.output_jacobian(ev, m.directional(ev, wrt, t), 1)[:, 0]
    f0 = m.output_values(ev)
    for k in (90, 120):
        h = flint.fmpq(1, 1 << k)
        x = [np.asarray(ev.inputs[i].ravel() + t * h, dtype=object).reshape(ev.inputs[i].shape) for i in wrt]
        f1 = m.output_values(m.evaluate(x))
        assert ((f1 - f0) / h == rate).all(), k


def test_forward_mode_past_its_budget_is_unknown_not_a_memory_error(monkeypatch):
    """A program without reverse rules falls back to forward mode; a Jacobian too large for it is
    UNKNOWN with the budget named (a user once saw numpy's _ArrayMemoryError here)."""
    from mtcheck import checker
    from mtcheck.model import NoReverse

    def no_reverse(*a, **k):
        raise NoReverse("aten.some_op has no reverse-mode rule")

    monkeypatch.setattr(ExactModel, "reverse", no_reverse)
    monkeypatch.setattr(checker, "FORWARD_ENTRIES", 100)
    rep = mtcheck.check(lambda x: torch.relu(x).sum(), torch.zeros(64, dtype=torch.float64))
    assert rep.verdict is mtcheck.Verdict.UNKNOWN
    assert "forward-mode Jacobian" in rep.reasons["budget"] and "some_op" in rep.reasons["budget"]


def test_mse_loss_has_a_reverse_rule():
    import torch.nn.functional as F

    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 2)
    x, y = torch.tensor([[0.0, 1.0, 2.0]]), torch.zeros(1, 2)
    for red in ("mean", "sum", "none"):
        fn = (lambda x, red=red: F.mse_loss(torch.relu(lin(x)), y, reduction=red))
        prog_leaves, wrt = prepare_inputs((x,), None)
        m = ExactModel(trace(fn, prog_leaves))
        ev = m.evaluate([from_tensor(t) for t in prog_leaves])
        seeds, k = m.output_seeds(ev)
        rev = m.reverse(ev, wrt, seeds, k)
        fwd = m.output_jacobian(ev, m.linearize(ev, wrt), 3)
        assert (rev == fwd).all(), red


def test_residues_of_scalar_values():
    """0-d values (a loss of scalars) go through residues too (margin_ranking_loss crashed here)."""
    import torch.nn.functional as F

    a, b = torch.tensor(0.5, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64)
    y = torch.tensor(1.0, dtype=torch.float64)
    rep = mtcheck.check(lambda a, b: F.margin_ranking_loss(a, b, y), a, b)
    assert rep.verdict in (mtcheck.Verdict.ASSOCIATED, mtcheck.Verdict.SMOOTH_OK), rep.explain()


def test_residues_of_0d_arrays():
    from mtcheck import _fixed

    p = _fixed.MOD_PRIMES[0]
    o = np.empty((), dtype=object)
    o[()] = flint.fmpq(-3, 2)
    for x in (_fixed.from_floats(np.array(-1.5)), o):
        res, e, bits = _fixed.to_mod(x, p)
        assert int(res) == (-3) % p and e == 1 and bits == 2


def test_sign_of_large_arrays_is_exact_at_underflow_and_overflow():
    """sign() of a large object array goes through floats; a rational that underflows to 0.0 or
    overflows float64 keeps its exact sign."""
    import flint
    import numpy as np

    from mtcheck._exact import sign

    tiny, huge = flint.fmpq(1, 1 << 3000), flint.fmpq(1 << 3000, 3)
    a = np.array([flint.fmpq(0)] * 300 + [tiny, -tiny, flint.fmpq(-1, 3), 3], dtype=object)
    assert sign(a)[:300].tolist() == [0] * 300 and sign(a)[300:].tolist() == [1, -1, -1, 1]
    b = np.array([huge, -huge] + [flint.fmpq(1, 7)] * 300, dtype=object)
    assert sign(b)[:3].tolist() == [1, -1, 1]


def test_float_pruned_window_max_equals_the_exact_one():
    """select_windows prunes with floats on large exact arrays: the same winners and ties as
    exact comparisons, also for entries that differ below float64 resolution."""
    import random

    import flint
    import numpy as np

    from mtcheck.ops.nonsmooth import select_windows

    random.seed(3)
    base = [flint.fmpq(random.randint(-5, 5), 4) for _ in range(8)]
    rows = []
    for _ in range(200):
        r = [random.choice(base) + (flint.fmpq(random.choice([-1, 0, 1]), 1 << 70) if random.random() < 0.3 else 0)
             for _ in range(9)]
        rows.append(r)
    v = np.array(rows, dtype=object)
    valid = np.random.default_rng(0).random(v.shape) < 0.9
    valid[:, 0] = True
    for take_min in (False, True):
        best, win, ties = select_windows(v, valid, take_min)
        for g in range(v.shape[0]):
            vals = [v[g, k] for k in range(9) if valid[g, k]]
            b = min(vals) if take_min else max(vals)
            assert best[g] == b
            assert [bool(t) for t in ties[g]] == [bool(valid[g, k] and v[g, k] == b) for k in range(9)]
            assert v[g, win[g]] == b
