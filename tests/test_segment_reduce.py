"""Segmented reductions (mtcheck/ops/segment.py): aten.segment_reduce with sum/mean/prod/max/min,
lengths or offsets, with and without an initial value (which takes part in every segment)."""

import itertools

import numpy as np
import pytest
import torch

import mtcheck
from mtcheck import Verdict
from mtcheck._exact import from_tensor, identity
from mtcheck.ops import Ctx, lookup

F64 = torch.float64
NAME = "aten.segment_reduce.default"
REDS = ("sum", "mean", "prod", "max", "min")


def _exact(data, red, **kw):
    rule, ctx = lookup(NAME), Ctx(NAME, F64)
    kw = {k: (from_tensor(v) if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    args = (from_tensor(data), red)
    return rule, ctx, args, kw, rule.forward(ctx, args, kw)


def _floats(a):
    return np.array([float(v) for v in a.ravel()]).reshape(a.shape)


CASES = [  # (data shape, axis, lengths, offsets)
    ((5,), 0, [0, 1, 2, 2], [0, 0, 1, 3, 5]),
    ((5, 3), 0, [2, 0, 3], [0, 2, 2, 5]),
    ((2, 5, 3), 1, [[2, 0, 3], [1, 1, 3]], [[0, 2, 2, 5], [0, 1, 2, 5]]),
]


@pytest.mark.parametrize("red,init,kind", list(itertools.product(REDS, (None, 1, 2.5), ("lengths", "offsets"))))
def test_forward_matches_torch(red, init, kind):
    gen = torch.Generator().manual_seed(0)
    for shape, axis, lengths, offsets in CASES:
        data = torch.round(torch.randn(shape, dtype=F64, generator=gen) * 8) / 8
        kw = {kind: torch.tensor(lengths if kind == "lengths" else offsets), "axis": axis}
        if init is not None:
            kw["initial"] = init
        ref = torch.segment_reduce(data, red, **kw)
        if not torch.isfinite(ref).all():
            continue              # an empty segment without initial: NaN / inf, refused by the rule
        *_, out = _exact(data, red, **kw)
        assert np.array_equal(_floats(out), ref.numpy())          # exact: dyadic data, exact float ops


@pytest.mark.parametrize("red", REDS)
def test_jvp_and_vjp_are_transposes_and_match_torch_off_ties(red):
    gen = torch.Generator().manual_seed(1)
    data = torch.randn(2, 5, 3, dtype=F64, generator=gen)
    kw = {"lengths": torch.tensor([[2, 0, 3], [1, 1, 3]]), "axis": 1, "initial": 0.25}
    rule, ctx, args, ekw, out = _exact(data, red, **kw)
    n, m = data.numel(), out.size
    J = np.asarray(rule.jvp(ctx, args, ekw, out, (identity(n).reshape((n,) + tuple(data.shape)),), {}),
                   dtype=object).reshape(n, m).T
    (g,) = rule.vjp(ctx, args, ekw, out, identity(m).reshape((m,) + out.shape))
    assert (J == np.asarray(g, dtype=object).reshape(m, n)).all()
    Jt = torch.autograd.functional.jacobian(lambda d: torch.segment_reduce(d, red, **kw), data).reshape(m, n)
    assert np.abs(J.astype(float) - Jt.numpy()).max() <= 1e-12


@pytest.mark.parametrize("red", REDS)
@pytest.mark.parametrize("kind", ["lengths", "offsets"])
def test_end_to_end_off_ties_is_smooth_ok(red, kind):
    x = torch.tensor([1.0, 3.0, -2.5, 2.0, 0.75, -1.0, 0.5], dtype=F64)
    seg = torch.tensor([2, 3, 0, 2]) if kind == "lengths" else torch.tensor([0, 2, 5, 5, 7])
    rep = mtcheck.check(lambda d: torch.segment_reduce(d, red, **{kind: seg}, initial=-3.0), x)
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()


@pytest.mark.parametrize("red", ["max", "min"])
def test_a_tie_with_the_initial_value_is_associated(red):
    """The segment's extreme equals ``initial``: a tie (the output is clamp(max(segment), initial))."""
    sg = 1 if red == "max" else -1
    x = torch.tensor([1.0, 3.0, 2.0, -1.0, 0.5, -4.0], dtype=F64) * sg
    rep = mtcheck.check(lambda d: torch.segment_reduce(d, red, lengths=torch.tensor([2, 2, 2]), initial=0.5 * sg), x)
    assert rep.verdict is Verdict.ASSOCIATED and rep.pattern.n_ties == 1, rep.explain()
    assert rep.tangent_dim == rep.n_inputs - 1


@pytest.mark.parametrize("red", ["max", "min"])
def test_initial_winning_makes_the_output_locally_constant(red):
    x = torch.tensor([1.0, 3.0, -2.0, 0.25], dtype=F64)
    init = 10.0 if red == "max" else -10.0
    rep = mtcheck.check(lambda d: torch.segment_reduce(d, red, lengths=torch.tensor([2, 2]), initial=init), x)
    assert rep.verdict is Verdict.SMOOTH_OK and not rep.stratum_jacobian.any(), rep.explain()


@pytest.mark.parametrize("red", ["max", "min"])
def test_tied_segment_extreme_finds_pytorchs_nonlinear_backward(red):
    """A tie inside a max/min segment. PyTorch 2.13's CPU backward averages the gradient over the
    tied entries only where it is positive (cotangent 1 gives 1/2 each, -1 gives -1 each), so its
    reverse pass is not linear: NONLINEAR_VJP is the right verdict, a real finding."""
    x = torch.tensor([1.0, 3.0, 3.0, 2.0, -1.0], dtype=F64) * (1 if red == "max" else -1)
    fn = lambda d: torch.segment_reduce(d, red, lengths=torch.tensor([3, 2]))  # noqa: E731
    xr = x.clone().requires_grad_()
    y = fn(xr)
    up = torch.autograd.grad(y, xr, torch.tensor([1.0, 0.0], dtype=F64), retain_graph=True)[0]
    down = torch.autograd.grad(y, xr, torch.tensor([-1.0, 0.0], dtype=F64))[0]
    if not torch.equal(up, -down):
        rep = mtcheck.check(fn, x)
        assert rep.verdict is Verdict.NONLINEAR_VJP, rep.explain()
    else:       # a PyTorch whose backward is linear here: a tie, and an associated gradient
        rep = mtcheck.check(fn, x)
        assert rep.verdict is Verdict.ASSOCIATED and rep.pattern.n_ties == 1, rep.explain()


class _MeanNoDivide(torch.autograd.Function):
    """segment mean whose backward forgets the division by the segment length."""

    @staticmethod
    def forward(ctx, d):
        return torch.segment_reduce(d, "mean", lengths=torch.tensor([2, 3]), initial=1.0)

    @staticmethod
    def backward(ctx, g):
        return torch.repeat_interleave(g, torch.tensor([2, 3]))


class _MaxGradToWinner(torch.autograd.Function):
    """segment max with initial whose backward sends the gradient to the segment's largest entry
    even where ``initial`` is larger (the output does not depend on the data there)."""

    @staticmethod
    def forward(ctx, d):
        ctx.save_for_backward(d)
        return torch.segment_reduce(d, "max", lengths=torch.tensor([2, 3]), initial=2.0)

    @staticmethod
    def backward(ctx, g):
        (d,) = ctx.saved_tensors
        out = torch.zeros_like(d)
        out[int(torch.argmax(d[:2]))] = g[0]
        out[2 + int(torch.argmax(d[2:]))] = g[1]
        return out


def test_planted_wrong_backwards_are_caught():
    x = torch.tensor([1.0, 3.0, 0.5, -1.0, 1.5], dtype=F64)      # segment 2's max 1.5 < initial 2
    rep = mtcheck.check(lambda d: _MeanNoDivide.apply(d), x)
    assert rep.verdict is Verdict.SMOOTH_WRONG, rep.explain()
    rep = mtcheck.check(lambda d: _MaxGradToWinner.apply(d), x)
    assert rep.verdict is Verdict.SMOOTH_WRONG, rep.explain()
    # at a tie with initial (segment 2's max = 2 = initial) the wrong gradient lies in the tie row's
    # span only for that segment; segment 1 (3 > 2) is right, so it is associated there ...
    xt = torch.tensor([1.0, 3.0, 0.5, -1.0, 2.0], dtype=F64)
    rep = mtcheck.check(lambda d: _MaxGradToWinner.apply(d), xt)
    assert rep.verdict is Verdict.ASSOCIATED, rep.explain()
    # ... but with segment 1 won by initial too, its wrong gradient is caught at the tie
    xw = torch.tensor([1.0, 1.5, 0.5, -1.0, 2.0], dtype=F64)
    rep = mtcheck.check(lambda d: _MaxGradToWinner.apply(d), xw)
    assert rep.verdict is Verdict.NOT_ASSOCIATED, rep.explain()
    for fn in (lambda d: torch.segment_reduce(d, "mean", lengths=torch.tensor([2, 3]), initial=1.0),
               lambda d: torch.segment_reduce(d, "max", lengths=torch.tensor([2, 3]), initial=2.0)):
        assert mtcheck.check(fn, xw).verdict in (Verdict.SMOOTH_OK, Verdict.ASSOCIATED)


# ---------------------------------------------------------------- linalg_ldl_solve (mtcheck/ops/ldl.py)

LDL = "aten.linalg_ldl_solve.default"


def _ldl_case(n, seed, definite):
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, dtype=F64, generator=gen)
    A = A @ A.T + torch.eye(n, dtype=F64) if definite else A + A.T
    LD, piv, info = torch.linalg.ldl_factor_ex(A)
    assert int(info) == 0
    return A, LD, piv, torch.randn(n, 3, dtype=F64, generator=gen)


def test_ldl_solve_forward_matches_torch_with_1x1_and_2x2_pivots():
    blocks = 0
    for seed in range(30):
        A, LD, piv, B = _ldl_case(1 + seed % 6, seed, definite=seed % 3 == 0)
        blocks += int((piv < 0).any())
        rule, ctx = lookup(LDL), Ctx(LDL, F64)
        out = rule.forward(ctx, (from_tensor(LD), piv.numpy(), from_tensor(B)), {})
        ref = torch.linalg.ldl_solve(LD, piv, B).numpy()
        assert np.abs(_floats(out) - ref).max() <= 1e-11 * max(1.0, np.abs(ref).max())
    assert blocks > 0          # some of the indefinite matrices have 2x2 blocks of D


def test_ldl_solve_batched_factors_broadcast_against_b():
    gen = torch.Generator().manual_seed(3)
    A = torch.randn(2, 4, 4, dtype=F64, generator=gen)
    A = A + A.transpose(-1, -2)
    LD, piv, _ = torch.linalg.ldl_factor_ex(A)
    B = torch.randn(4, 2, dtype=F64, generator=gen)
    rule, ctx = lookup(LDL), Ctx(LDL, F64)
    args = (from_tensor(LD), piv.numpy(), from_tensor(B))
    out = rule.forward(ctx, args, {})
    ref = torch.linalg.ldl_solve(LD, piv, B).numpy()
    assert out.shape == ref.shape and np.abs(_floats(out) - ref).max() <= 1e-11 * max(1.0, np.abs(ref).max())
    tB = identity(8).reshape(8, 4, 2)
    J = rule.jvp(ctx, args, {}, out, (None, None, tB), {})
    assert J.shape == (8, 2, 4, 2)


@pytest.mark.parametrize("seed", [0, 1, 2, 4])
def test_ldl_solve_derivatives(seed):
    """d/dB is A^-1 (compared with torch.linalg.solve's Jacobian); d/dLD with central differences of
    PyTorch's own ldl_solve (both for testing only: the rule never calls PyTorch)."""
    n = 4
    A, LD, piv, B = _ldl_case(n, seed, definite=False)
    rule, ctx = lookup(LDL), Ctx(LDL, F64)
    args = (from_tensor(LD), piv.numpy(), from_tensor(B))
    out = rule.forward(ctx, args, {})
    N = n * 3
    JB = np.asarray(rule.jvp(ctx, args, {}, out, (None, None, identity(N).reshape(N, n, 3)), {}),
                    dtype=object).reshape(N, N).T.astype(float)
    Jt = torch.autograd.functional.jacobian(lambda b: torch.linalg.solve(A, b), B).reshape(N, N).numpy()
    assert np.abs(JB - Jt).max() <= 1e-9 * max(1.0, np.abs(Jt).max())
    JL = np.asarray(rule.jvp(ctx, args, {}, out, (identity(n * n).reshape(n * n, n, n), None, None), {}),
                    dtype=object).reshape(n * n, N).T.astype(float)
    h = 1e-6
    for i in range(n * n):
        E = torch.zeros(n * n, dtype=F64)
        E[i] = h
        E = E.reshape(n, n)
        fd = ((torch.linalg.ldl_solve(LD + E, piv, B) - torch.linalg.ldl_solve(LD - E, piv, B)) / (2 * h)).reshape(-1)
        assert np.abs(JL[:, i] - fd.numpy()).max() <= 1e-5 * max(1.0, float(fd.abs().max()))
    # the upper triangle of LD is never read
    upper = [r * n + c for r in range(n) for c in range(n) if c > r]
    assert not JL[:, upper].any()


def test_ldl_solve_check_says_pytorch_has_no_derivative():
    from mtcheck.errors import UnsupportedOpError

    A, LD, piv, B = _ldl_case(3, 0, definite=True)
    with pytest.raises(UnsupportedOpError, match="PyTorch has no derivative"):
        mtcheck.check(lambda b: torch.linalg.ldl_solve(LD, piv, b), B)
