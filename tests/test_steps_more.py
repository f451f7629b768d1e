"""More step functions (mtcheck/ops/steps_more.py): checked away from their jumps, refused exactly on one.

heaviside, bucketize, searchsorted, histc, histogram, histogramdd, frexp, signbit, unique,
unique_consecutive and mode are locally constant or locally linear off a closed set of measure zero
(decided exactly); on it the check is OutsideTheoryError naming the op. nextafter and hash_tensor stay
refused. A wrong backward (a custom autograd.Function) is caught off the jumps.
"""

import pytest
import torch

import mtcheck
from mtcheck import OutsideTheoryError, UnsupportedOpError, Verdict

F64 = torch.float64


def T(*v):
    return torch.tensor(v, dtype=F64)


X = T(0.375, -1.5, 3.0, -0.75)           # no 0, no power of two, no repeat, no boundary below
EDGES = T(-1.0, 0.0, 1.0, 2.5)


def check(fn, *xs):
    return mtcheck.check(fn, *xs, neighbours=False)


class _Zero(torch.autograd.Function):
    """``op(x)`` with the true gradient off the jumps (0): PyTorch itself has no backward for some."""

    @staticmethod
    def forward(ctx, x, op):
        ctx.shape = x.shape
        return op(x)

    @staticmethod
    def backward(ctx, g):
        return torch.zeros(ctx.shape, dtype=g.dtype), None


def zero_grad(op):
    return lambda x: _Zero.apply(x, op)


# ---------------------------------------------------------------- off the jumps: checked

OFF = [
    ("heaviside", zero_grad(lambda x: torch.heaviside(x, T(0.5))), (X,)),
    ("heaviside_values", lambda x: torch.heaviside(x.detach(), T(0.5)) * 3 + x, (X,)),
    ("bucketize", lambda x: torch.bucketize(x, EDGES).to(F64) * x, (X,)),
    ("bucketize_right", lambda x: torch.bucketize(x, EDGES, right=True).to(F64) * x, (X,)),
    ("bucketize_boundaries", lambda b: torch.bucketize(X, b).to(F64) + 2 * b.sum(), (EDGES,)),
    ("bucketize_scalar", lambda b: torch.bucketize(0.5, b).to(F64) * b, (EDGES,)),
    ("bucketize_tied_boundaries", lambda b: torch.bucketize(X, b).to(F64) * 2 + b, (T(-1.0, 0.5, 0.5, 2.5),)),
    ("searchsorted", lambda x: torch.searchsorted(EDGES, x).to(F64) * x, (X,)),
    ("searchsorted_right", lambda x: torch.searchsorted(EDGES, x, side="right").to(F64) * x, (X,)),
    ("searchsorted_sorter", lambda x: torch.searchsorted(T(2.5, -1.0, 1.0, 0.0), x,
                                                         sorter=torch.tensor([1, 3, 2, 0])).to(F64) * x, (X,)),
    ("searchsorted_rows", lambda s: torch.searchsorted(s, T(0.5, 1.5, 2.5, 3.5).reshape(2, 2)).to(F64) * s,
     (T(0.0, 1.0, 2.0, 3.0).reshape(2, 2),)),
    ("searchsorted_scalar", lambda s: torch.searchsorted(s, 0.25).to(F64) + s, (EDGES,)),
    ("histc", lambda x: torch.histc(x, bins=3) + x.sum(), (X,)),
    ("histc_range", lambda x: torch.histc(x, bins=4, min=-2, max=4) + x.sum(), (X,)),
    ("histc_tied_min_max", lambda x: torch.histc(x, bins=3) + x.sum(), (T(0.0, 0.0, 3.0, 0.5, 3.0),)),
    ("histc_one_element", lambda x: torch.histc(x, bins=4) + x, (T(0.5),)),
    ("histogram", zero_grad(lambda x: torch.histogram(x, 3).hist), (X,)),
    ("histogram_edges", zero_grad(lambda x: torch.histogram(x, EDGES).hist), (X,)),
    ("histogramdd", zero_grad(lambda x: torch.histogramdd(x.reshape(2, 2), [2, 2]).hist.reshape(-1)), (X,)),
    ("histogramdd_range", zero_grad(lambda x: torch.histogramdd(x.reshape(2, 2), [2, 3],
                                                                 range=[-2.0, 4.0, -2.0, 4.0]).hist.reshape(-1)),
     (X,)),
    ("frexp", lambda x: torch.frexp(x).mantissa * 2 + torch.frexp(x).exponent.to(F64), (X,)),
    ("signbit", lambda x: torch.signbit(x).to(F64) * x, (X,)),
    ("unique", zero_grad(lambda x: torch.unique(x) * 0), (X,)),
    ("unique_consecutive_inverse", lambda x: torch.unique_consecutive(
        x.detach(), return_inverse=True)[1].to(F64) * x, (T(1.0, 2.0, 1.0, 3.0),)),
    ("mode", lambda x: torch.mode(x).values * 3, (X,)),
    ("mode_dim", lambda x: torch.mode(x, 0, True).values, (T(3.0, 1.0, 2.0, 5.0, 0.5, 7.0).reshape(3, 2),)),
]


@pytest.mark.parametrize("fn,xs", [o[1:] for o in OFF], ids=[o[0] for o in OFF])
def test_off_the_jumps_the_gradient_is_the_true_one(fn, xs):
    rep = check(fn, *xs)
    assert rep.verdict is Verdict.SMOOTH_OK, rep


def test_frexp_mantissa_derivative_is_two_to_minus_e():
    rep = check(lambda x: torch.frexp(x).mantissa, X)
    assert rep.verdict is Verdict.SMOOTH_OK
    # 0.375 = 0.75 * 2^-1, -1.5 = -0.75 * 2^1, 3 = 0.75 * 2^2, -0.75 = -0.75 * 2^0
    assert rep.stratum_jacobian.diagonal().tolist() == [2.0, 0.5, 0.25, 1.0]


def test_mode_is_the_min_and_a_tie_of_two_minima_is_a_kink():
    rep = check(lambda x: torch.mode(x).values, T(1.0, 3.0, 1.0, 2.0))
    assert rep.verdict is Verdict.ASSOCIATED and rep.pattern.n_ties >= 1


def test_unique_values_follow_the_sort_permutation():
    class _UniqueGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            v, inv = torch.unique(x, return_inverse=True)
            ctx.save_for_backward(inv)
            return v

        @staticmethod
        def backward(ctx, g):
            (inv,) = ctx.saved_tensors
            return g[inv]

    rep = check(_UniqueGrad.apply, X)
    assert rep.verdict is Verdict.SMOOTH_OK
    assert rep.stratum_jacobian.tolist() == [[0, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0], [0, 0, 1, 0]]


def test_histogram_is_linear_in_its_weights():
    class _Weighted(torch.autograd.Function):
        """histogram(x, 3, weight=w) with the true backward: d/dw = the bin of each element, d/dx = 0."""

        @staticmethod
        def forward(ctx, x, w):
            h, e = torch.histogram(x, 3, weight=w)
            ctx.save_for_backward(x, e)
            return h

        @staticmethod
        def backward(ctx, g):
            x, e = ctx.saved_tensors
            idx = torch.bucketize(x, e, right=True).clamp(max=3) - 1    # in the backward: not traced
            return torch.zeros_like(x), g[idx]

    w = T(0.5, 2.0, -1.0, 4.0)
    rep = check(_Weighted.apply, X, w)
    assert rep.verdict is Verdict.SMOOTH_OK
    assert rep.stratum_jacobian[:, 4:].tolist() == [[0, 1, 0, 1], [1, 0, 0, 0], [0, 0, 1, 0]]


def test_histogram_density_and_moving_edges():
    """density divides by the total weight and by the bin width, which moves with the data's min and max."""
    def f(x, w):
        h, e = torch.histogram(x.detach(), 2, weight=w.detach(), density=True)
        return h

    # the exact model: h_k = W_k * bins / (S (max - min)); its derivative exists off the jumps; the framework's is 0
    # (detach), so the verdict is a wrong derivative: it is computed, not refused
    rep = check(f, X, T(0.5, 2.0, 1.0, 4.0))
    assert rep.verdict is Verdict.SMOOTH_WRONG
    # edges [-1.5, 0.75, 3]: x_0, x_1, x_3 in bin 0, x_2 in bin 1; S = 7.5, width 2.25,
    # h_0 = (w_0 + w_1 + w_3) / (S * 2.25); d h_0 / d w_0 = 1 / (S * 2.25) - h_0 / S
    S, wd = 7.5, 2.25
    h0 = 6.5 / (S * wd)
    assert rep.stratum_jacobian[0, 4] == pytest.approx(1 / (S * wd) - h0 / S, rel=1e-12)
    # d h_0 / d x_1 (x_1 = -1.5 is the unique min): width = (max - min) / 2, d width / d x_1 = -1/2
    assert rep.stratum_jacobian[0, 1] == pytest.approx(h0 / (2 * wd), rel=1e-12)


# ---------------------------------------------------------------- on a jump: outside the theory, naming the op

ON = [
    ("heaviside", lambda x: torch.heaviside(x, T(0.5)), T(0.5, 0.0), "aten.heaviside", "x = 0"),
    ("bucketize", lambda x: torch.bucketize(x, EDGES), T(0.5, 1.0), "aten.bucketize", "equals boundary 2"),
    ("bucketize_boundary", lambda b: torch.bucketize(X, b), T(-1.0, 0.375, 1.0, 2.5), "aten.bucketize",
     "equals boundary 1"),
    ("searchsorted", lambda x: torch.searchsorted(EDGES, x, right=True), T(2.5), "aten.searchsorted",
     "equals boundary 3"),
    ("histc_interior", lambda x: torch.histc(x, bins=3), T(0.0, 1.0, 3.0), "aten.histc", "interior bin edge"),
    ("histc_outer_fixed", lambda x: torch.histc(x, bins=2, min=0, max=4), T(0.0, 1.0), "aten.histc",
     "outer ones included"),
    ("histc_all_equal", lambda x: torch.histc(x, bins=3), T(2.0, 2.0), "aten.histc", "min = max"),
    ("histogram", lambda x: torch.histogram(x, EDGES).hist, T(0.5, 1.0), "aten.histogram", "bin edge"),
    ("histogramdd", lambda x: torch.histogramdd(x.reshape(3, 1), [2]).hist, T(0.0, 1.0, 2.0),
     "aten._histogramdd", "interior bin edge"),
    ("frexp_pow2", lambda x: torch.frexp(x).mantissa, T(3.0, -0.5), "aten.frexp", "power of two"),
    ("frexp_zero", lambda x: torch.frexp(x).mantissa, T(0.0), "aten.frexp", "element 0"),
    ("signbit", lambda x: torch.signbit(x).to(F64) * x, T(1.0, -0.0), "aten.signbit", "jumps at 0"),
    ("unique", lambda x: torch.unique(x.detach()) + 0 * x.sum(), T(2.0, 1.0, 2.0), "aten._unique2",
     "elements 0 and 2"),
    ("unique_dim", lambda x: torch.unique(x.detach(), dim=0) + 0 * x.sum(), T(1.0, 5.0, 1.0, 3.0).reshape(2, 2),
     "aten.unique_dim", "first entries"),
    ("unique_consecutive", lambda x: torch.unique_consecutive(x.detach()) + 0 * x.sum(), T(1.0, 1.0, 2.0),
     "aten.unique_consecutive", "elements 0 and 1"),
    ("mode_repeat", lambda x: torch.mode(x).values, T(1.0, 2.0, 2.0), "aten.mode", "repeats 2"),
    ("mode_three_minima", lambda x: torch.mode(x).values, T(1.0, 1.0, 1.0, 4.0), "aten.mode", "3 times"),
    ("nextafter", lambda x: torch.nextafter(x, T(0.0)), X, "aten.nextafter", "every float"),
    ("hash_tensor", lambda x: torch.hash_tensor(x).to(F64) * x, X, "aten.hash_tensor", "discontinuous"),
]


@pytest.mark.parametrize("fn,x,op,what", [o[1:] for o in ON], ids=[o[0] for o in ON])
def test_on_a_jump_it_is_outside_the_theory_naming_the_op(fn, x, op, what):
    with pytest.raises(OutsideTheoryError) as e:
        check(fn, x)
    assert e.value.op.startswith(op) and what in str(e.value), str(e.value)
    assert "test_steps_more.py" in str(e.value)     # the user's line


@pytest.mark.parametrize("right", [False, True])
def test_unsorted_boundaries_give_pytorchs_own_binary_search(right):
    """Off the boundaries the answer is locally constant sorted or not; its value is PyTorch's search
    (the derivative d/dx (bucketize(x) * x) = bucketize(x) shows a wrong value as SMOOTH_WRONG)."""
    b = T(1.0, 0.0, 3.0, 2.0, -2.0, 5.0, 4.0)
    x = T(0.5, 2.5, -1.0, 4.5, 6.0, -3.0, 1.5, 3.5)
    rep = check(lambda x: torch.bucketize(x, b, right=right).to(F64) * x, x)
    assert rep.verdict is Verdict.SMOOTH_OK
    assert rep.stratum_jacobian.diagonal().tolist() == torch.bucketize(x, b, right=right).tolist()


# ---------------------------------------------------------------- a planted wrong backward is caught

class _FrexpBadSlope(torch.autograd.Function):
    """frexp's mantissa with the slope 2^(1-e) (twice the true 2^-e)."""

    @staticmethod
    def forward(ctx, x):
        m, e = torch.frexp(x)
        ctx.save_for_backward(e)
        return m

    @staticmethod
    def backward(ctx, g):
        (e,) = ctx.saved_tensors
        return g * torch.exp2(1 - e.to(g.dtype))


class _FrexpRight(_FrexpBadSlope):
    @staticmethod
    def backward(ctx, g):
        (e,) = ctx.saved_tensors
        return g * torch.exp2(-e.to(g.dtype))


def test_frexp_with_a_wrong_slope_is_caught():
    assert check(_FrexpRight.apply, X).verdict is Verdict.SMOOTH_OK
    assert check(_FrexpBadSlope.apply, X).verdict is Verdict.SMOOTH_WRONG


@pytest.mark.parametrize("op", [
    lambda x: torch.heaviside(x, T(0.5)),
    lambda x: torch.signbit(x).to(F64),
    lambda x: torch.bucketize(x, EDGES).to(F64),
    lambda x: torch.histc(x, bins=4),
    lambda x: torch.mode(x).values.reshape(1),
], ids=["heaviside", "signbit", "bucketize", "histc", "mode"])
def test_a_pass_through_backward_is_caught(op):
    """The incoming gradient sent to every input: wrong where the true one is 0 (mode: e_argmin)."""
    class _PassThrough(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.n = x.numel()
            return op(x)

        @staticmethod
        def backward(ctx, g):
            return g.sum() * torch.ones(ctx.n, dtype=g.dtype)

    rep = check(_PassThrough.apply, X)
    assert rep.verdict is Verdict.SMOOTH_WRONG, rep


class _Edges(torch.autograd.Function):
    """histogram(x, n).bin_edges with the true backward: edge k = (1 - k/n) min + (k/n) max, the gradient
    sent to the first argmin and argmax (a valid choice where the min or max is tied)."""

    @staticmethod
    def forward(ctx, x, n):
        ctx.save_for_backward(x)
        ctx.n = n
        return torch.histogram(x, n).bin_edges

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        a = torch.arange(ctx.n + 1, dtype=g.dtype) / ctx.n
        gx = torch.zeros_like(x)
        gx[torch.argmin(x)] += (g * (1 - a)).sum()
        gx[torch.argmax(x)] += (g * a).sum()
        return gx, None


def test_histogram_edges_follow_the_data_min_and_max_whose_tie_is_a_kink():
    assert check(lambda x: _Edges.apply(x, 3), X).verdict is Verdict.SMOOTH_OK
    rep = check(lambda x: _Edges.apply(x, 3), T(0.375, -1.5, 3.0, -1.5))
    assert rep.verdict is Verdict.ASSOCIATED and rep.pattern.n_ties >= 1


def test_histogram_edges_of_equal_values_jump():
    with pytest.raises(OutsideTheoryError, match="widened"):
        check(lambda x: _Edges.apply(x, 1), T(2.0, 2.0))
    assert check(lambda x: _Edges.apply(x, 2), T(2.0)).verdict is Verdict.SMOOTH_OK   # one value: v +- 1/2


def test_unique_dim_sorts_slices_by_their_first_entries():
    class _UniqueRows(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            v, inv = torch.unique(x, dim=0, return_inverse=True)
            ctx.save_for_backward(inv)
            return v

        @staticmethod
        def backward(ctx, g):
            (inv,) = ctx.saved_tensors
            return g[inv]

    x = T(3.0, 1.0, -1.0, 5.0, 2.0, 2.0).reshape(3, 2)      # rows sorted: 1, 2, 0
    rep = check(_UniqueRows.apply, x)
    assert rep.verdict is Verdict.SMOOTH_OK
    assert rep.stratum_jacobian[:2].tolist() == [[0, 0, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0]]


def test_unique_consecutive_without_equal_neighbours_is_the_identity():
    class _Consecutive(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return torch.unique_consecutive(x)

        @staticmethod
        def backward(ctx, g):
            return g

    rep = check(_Consecutive.apply, T(1.0, 2.0, 1.0, 3.0))   # 1 repeats, but not as neighbours
    assert rep.verdict is Verdict.SMOOTH_OK and rep.stratum_jacobian.tolist() == torch.eye(4).tolist()


def test_mode_of_a_single_value_is_the_value():
    assert check(lambda x: torch.mode(x).values * 2, torch.tensor(1.5, dtype=F64)).verdict is Verdict.SMOOTH_OK


def test_a_point_outside_the_range_is_not_counted_wherever_its_other_coordinates_are():
    """(0, 9): on an edge in dimension 0, but strictly outside [-2, 4] in dimension 1: it stays out."""
    f = zero_grad(lambda x: torch.histogramdd(x.reshape(2, 2), [2, 3], range=[-2.0, 4.0, -2.0, 4.0]).hist.reshape(-1))
    assert check(f, T(1.0, 9.0, 0.5, 0.5)).verdict is Verdict.SMOOTH_OK
    with pytest.raises(OutsideTheoryError, match="point 0, coordinate 0"):
        check(f, T(1.0, 3.0, 0.5, 0.5))


def test_histogramdd_density_with_a_tied_min_is_not_modelled():
    """The bin widths follow the data's min, tied here: a kink that _histogramdd_from_bin_cts does not model."""
    f = lambda x: torch.histogramdd(x.detach().reshape(3, 2), [2, 2], density=True).hist.reshape(-1) + 0 * x.sum()
    with pytest.raises(UnsupportedOpError, match="tied"):
        check(f, T(0.375, -1.5, 3.0, -1.5, 1.0, 2.0))


def test_neighbour_probes_do_not_stop_at_another_pieces_jump():
    y = T(0.0, 1.0, -2.0, 0.0)
    f = lambda x, y: torch.frexp(x).mantissa * 3 + torch.relu(y)
    assert mtcheck.check(f, X, y, neighbours=False).verdict is Verdict.ASSOCIATED
    assert mtcheck.check(f, X, y).verdict is Verdict.ASSOCIATED
