"""Grid sampling (mtcheck/ops/grid_sample.py): grid_sampler_2d / grid_sampler_3d modelled exactly
as piecewise polynomials of the input and the grid (bilinear: kinks at integer source
coordinates, ties; bicubic: C^1, no case; nearest: locally constant, a jump at half-integers)."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mtcheck
from mtcheck import OutsideTheoryError, Verdict
from mtcheck._exact import from_tensor, identity
from mtcheck.ops import Ctx, lookup

F64 = torch.float64
DECIDED = (Verdict.SMOOTH_OK, Verdict.ASSOCIATED)
MODES_2D = list(itertools.product((0, 1, 2), (0, 1, 2), (False, True)))
MODES_3D = list(itertools.product((0, 1), (0, 1, 2), (False, True)))


def _sampler(nsp):
    return torch.grid_sampler_2d if nsp == 2 else torch.grid_sampler_3d


def _grid_on(values, align, size):
    """Grid values whose source coordinate is ``values`` (exact dyadics for these sizes)."""
    v = torch.tensor(values, dtype=F64)
    return 2 * v / (size - 1) - 1 if align else (2 * v + 1) / size - 1


def _size(align, k):
    """A size for which the grid values of integer coordinates are dyadic (exact floats)."""
    return 2 ** k + 1 if align else 2 ** k


def _exact_forward(nsp, x, g, mode, pad, align):
    name = f"aten.grid_sampler_{nsp}d.default"
    rule, ctx = lookup(name), Ctx(name, F64)
    args = (from_tensor(x), from_tensor(g), mode, pad, align)
    return rule, ctx, args, rule.forward(ctx, args, {})


def _dyadic(shape, lo, hi, gen, bits=6):
    return torch.round((torch.rand(shape, dtype=F64, generator=gen) * (hi - lo) + lo) * 2 ** bits) / 2 ** bits


@pytest.mark.parametrize("mode,pad,align", MODES_2D)
def test_forward_2d_matches_torch(mode, pad, align):
    gen = torch.Generator().manual_seed(mode * 6 + pad * 2 + align)
    for sz in ((1, 1), (2, 5), (4, 3)):
        x = torch.randn((2, 3) + sz, dtype=F64, generator=gen)
        g = _dyadic((2, 4, 3, 2), -2.5, 2.5, gen, bits=8) + 2 ** -12    # off the half-integers
        _, _, _, out = _exact_forward(2, x, g, mode, pad, align)
        ref = torch.grid_sampler_2d(x, g, mode, pad, align).numpy()
        got = np.array([float(v) for v in out.ravel()]).reshape(out.shape)
        assert np.abs(got - ref).max() <= 1e-12


@pytest.mark.parametrize("mode,pad,align", MODES_3D)
def test_forward_3d_matches_torch(mode, pad, align):
    gen = torch.Generator().manual_seed(mode * 6 + pad * 2 + align)
    for sz in ((1, 1, 1), (2, 3, 4)):
        x = torch.randn((1, 2) + sz, dtype=F64, generator=gen)
        g = _dyadic((1, 2, 3, 2, 3), -2.5, 2.5, gen, bits=8) + 2 ** -12
        _, _, _, out = _exact_forward(3, x, g, mode, pad, align)
        ref = torch.grid_sampler_3d(x, g, mode, pad, align).numpy()
        got = np.array([float(v) for v in out.ravel()]).reshape(out.shape)
        assert np.abs(got - ref).max() <= 1e-12


@pytest.mark.parametrize("nsp,mode,pad,align", [(2,) + m for m in MODES_2D] + [(3,) + m for m in MODES_3D])
def test_jvp_and_vjp_are_transposes_and_match_torch_off_ties(nsp, mode, pad, align):
    gen = torch.Generator().manual_seed(7)
    sz = (3, 4) if nsp == 2 else (2, 3, 2)
    x = torch.randn((1, 2) + sz, dtype=F64, generator=gen)
    gs = (1, 2, 2, 2) if nsp == 2 else (1, 2, 1, 2, 3)
    g = _dyadic(gs, -1.6, 1.6, gen, bits=8) + 2 ** -11
    rule, ctx, args, out = _exact_forward(nsp, x, g, mode, pad, align)
    n1, n2, m = x.numel(), g.numel(), out.size
    eye = identity(n1 + n2)
    tx = eye[:, :n1].reshape((n1 + n2,) + tuple(x.shape))
    tg = eye[:, n1:].reshape((n1 + n2,) + tuple(g.shape))
    J = np.asarray(rule.jvp(ctx, args, {}, out, (tx, tg), {}), dtype=object).reshape(n1 + n2, m).T
    cot = identity(m).reshape((m,) + out.shape)
    gx, gg = rule.vjp(ctx, args, {}, out, cot)
    Jv = np.concatenate([np.asarray(gx, dtype=object).reshape(m, n1), np.asarray(gg, dtype=object).reshape(m, n2)], 1)
    assert (J == Jv).all()
    ref = torch.autograd.functional.jacobian(lambda a, b: _sampler(nsp)(a, b, mode, pad, align), (x, g))
    Jt = torch.cat([r.reshape(m, -1) for r in ref], 1).numpy()
    assert np.abs(J.astype(float) - Jt).max() <= 1e-10


@pytest.mark.parametrize("pad", [0, 1, 2])
@pytest.mark.parametrize("align", [False, True])
def test_bilinear_on_integer_cells_is_a_tie_and_torch_is_associated(pad, align):
    gen = torch.Generator().manual_seed(1)
    W, H = _size(align, 2), _size(align, 1)
    x = torch.round(torch.randn(1, 2, H, W, dtype=F64, generator=gen) * 8) / 8     # exact products
    gx = _grid_on([0.0, 1.0, 2.0, 3.0, -1.0, 1.5], align, W)      # source x coordinates, mostly integers
    gy = _grid_on([0.5, 1.0, 0.25, 2.0, 0.75, 1.0], align, H)
    g = torch.stack([gx, gy], -1).reshape(1, 2, 3, 2)
    rep = mtcheck.check(lambda a, b: torch.grid_sampler_2d(a, b, 0, pad, align), x, g)
    assert rep.verdict is Verdict.ASSOCIATED, rep.explain()
    assert rep.pattern.n_ties > 0 and rep.tangent_dim < rep.n_inputs
    assert rep.exact_mode


@pytest.mark.parametrize("pad", [0, 1, 2])
@pytest.mark.parametrize("align", [False, True])
def test_trilinear_on_integer_cells_is_associated(pad, align):
    gen = torch.Generator().manual_seed(2)
    D, H, W = _size(align, 1), _size(align, 1), _size(align, 2)
    x = torch.randn(1, 1, D, H, W, dtype=F64, generator=gen)
    g = torch.stack([_grid_on([1.0, 0.5], align, W), _grid_on([1.0, 0.75], align, H),
                     _grid_on([0.0, 0.25], align, D)], -1).reshape(1, 1, 1, 2, 3)
    rep = mtcheck.check(lambda a, b: torch.grid_sampler_3d(a, b, 0, pad, align), x, g)
    assert rep.verdict is Verdict.ASSOCIATED and rep.pattern.n_ties > 0, rep.explain()


@pytest.mark.parametrize("pad", [0, 1, 2])
@pytest.mark.parametrize("align", [False, True])
def test_bicubic_is_c1_on_integer_cells(pad, align):
    """The cubic convolution kernel is C^1: integer source coordinates are no case at all."""
    gen = torch.Generator().manual_seed(3)
    n = _size(align, 2)
    x = torch.randn(1, 2, n, n, dtype=F64, generator=gen)
    g = torch.stack([_grid_on([0.0, 1.0, 3.0, -1.0], align, n), _grid_on([2.0, 0.5, 1.0, 4.0], align, n)],
                    -1).reshape(1, 2, 2, 2)
    rep = mtcheck.check(lambda a, b: torch.grid_sampler_2d(a, b, 2, pad, align), x, g)
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()


@pytest.mark.parametrize("pad", [0, 1, 2])
@pytest.mark.parametrize("align", [False, True])
def test_nearest_off_half_integers_is_locally_constant(pad, align):
    gen = torch.Generator().manual_seed(4)
    W, H = _size(align, 2), _size(align, 1)
    x = torch.randn(1, 2, H, W, dtype=F64, generator=gen)
    g = torch.stack([_grid_on([0.25, 1.0, 2.75, 3.125], align, W), _grid_on([1.0, 0.375, 1.25, 0.0], align, H)],
                    -1).reshape(1, 2, 2, 2)
    rep = mtcheck.check(lambda a, b: torch.grid_sampler_2d(a, b, 1, pad, align), x, g)
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()


def test_nearest_on_a_half_integer_is_outside_the_theory_naming_the_op():
    x = torch.randn(1, 1, 2, 4, dtype=F64)
    g = torch.stack([_grid_on([0.25, 1.5], False, 4), _grid_on([1.0, 1.0], False, 2)], -1).reshape(1, 1, 2, 2)
    with pytest.raises(OutsideTheoryError) as e:
        mtcheck.check(lambda a, b: torch.grid_sampler_2d(a, b, 1, 0, False), x, g)
    assert "grid_sampler_2d" in str(e.value) and "half-integer" in str(e.value)
    with pytest.raises(OutsideTheoryError, match="grid_sampler_3d"):
        g3 = torch.tensor([[[[[0.0, 0.0, 0.0]]]]], dtype=F64)          # size 2 without align: u = 1/2
        mtcheck.check(lambda a, b: torch.grid_sampler_3d(a, b, 1, 1, False), torch.randn(1, 1, 2, 2, 2, dtype=F64), g3)


def test_nearest_half_integer_with_a_constant_grid_is_a_fixed_gather():
    """A grid that does not depend on the inputs: x -> x[nearbyint(u)] is linear in x even at a
    half-integer (PyTorch rounds half to even, and so does the model)."""
    G = torch.stack([_grid_on([0.5, 1.5, 2.5, 3.25], False, 4), _grid_on([0.5, 1.0, 0.5, 1.5], False, 2)],
                    -1).reshape(1, 2, 2, 2)
    x = torch.round(torch.randn(1, 2, 2, 4, dtype=F64) * 8) / 8
    for pad in (0, 1, 2):
        rep = mtcheck.check(lambda a: torch.grid_sampler_2d(a, G, 1, pad, False), x)
        assert rep.verdict is Verdict.SMOOTH_OK and rep.exact_mode, rep.explain()


def test_nearest_half_integer_between_two_zero_taps_is_no_jump():
    """With zero padding, u = -3/2 reads 0 from either candidate tap: continuous, checked."""
    x = torch.randn(1, 1, 2, 4, dtype=F64)
    g = torch.stack([_grid_on([-1.5, 1.25], False, 4), _grid_on([1.0, 1.0], False, 2)], -1).reshape(1, 1, 2, 2)
    rep = mtcheck.check(lambda a, b: torch.grid_sampler_2d(a, b, 1, 0, False), x, g)
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()


def test_grid_sample_of_an_affine_grid_wrt_theta():
    """F.grid_sample of an affine grid (built with matmul): the identity transform puts every
    sample on a pixel centre (integer source coordinates: ties, moving with theta)."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 2, 2, 4, dtype=F64, generator=gen)
    xs, ys = (torch.arange(4, dtype=F64) * 2 + 1) / 4 - 1, (torch.arange(2, dtype=F64) * 2 + 1) / 2 - 1
    base = torch.stack([xs.repeat(2), ys.repeat_interleave(4), torch.ones(8, dtype=F64)], -1)   # (8, 3)
    theta = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=F64)
    fn = lambda t: F.grid_sample(x, (base @ t.T).reshape(1, 2, 4, 2), mode="bilinear",  # noqa: E731
                                 padding_mode="zeros", align_corners=False)
    rep = mtcheck.check(fn, theta)
    assert rep.verdict is Verdict.ASSOCIATED and rep.pattern.n_ties > 0, rep.explain()


def test_a_coordinate_within_rounding_of_a_cell_boundary_is_unknown_not_a_pass():
    """-1/3 rounds in float64; PyTorch's coordinate (g + 1) * 3 / 2 then rounds onto the cell
    boundary 1 while the exact one is just below it: which cell the framework used is undecided."""
    x = torch.randn(1, 1, 2, 4, dtype=F64)
    g = torch.tensor([[[[-1 / 3, 0.0]]]], dtype=F64)
    rep = mtcheck.check(lambda a, b: torch.grid_sampler_2d(a, b, 0, 0, True), x, g)
    assert rep.verdict is Verdict.UNKNOWN and "rounding error" in rep.explain()


class _NoGridGrad(torch.autograd.Function):
    """grid_sampler_2d whose backward drops the gradient with respect to the grid."""

    @staticmethod
    def forward(ctx, x, g):
        ctx.save_for_backward(x, g)
        return torch.grid_sampler_2d(x, g, 0, 0, False)

    @staticmethod
    def backward(ctx, go):
        x, g = ctx.saved_tensors
        with torch.enable_grad():
            xx = x.detach().requires_grad_()
            out = torch.grid_sampler_2d(xx, g.detach(), 0, 0, False)
            (gx,) = torch.autograd.grad(out, xx, go)
        return gx, torch.zeros_like(g)


class _DoubledGridGrad(torch.autograd.Function):
    """bilinear grid_sampler_2d whose grid gradient is twice PyTorch's (a scale factor counted twice)."""

    @staticmethod
    def forward(ctx, x, g):
        ctx.save_for_backward(x, g)
        return torch.grid_sampler_2d(x, g, 0, 0, False)

    @staticmethod
    def backward(ctx, go):
        x, g = ctx.saved_tensors
        with torch.enable_grad():
            xx, gg = x.detach().requires_grad_(), g.detach().requires_grad_()
            out = torch.grid_sampler_2d(xx, gg, 0, 0, False)
            gx, ggr = torch.autograd.grad(out, (xx, gg), go)
        return gx, ggr * 2


@pytest.mark.parametrize("on_ties", [False, True])
def test_planted_wrong_grid_backward_is_caught(on_ties):
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(1, 2, 2, 4, dtype=F64, generator=gen)
    xs = [1.0, 2.0, 0.5] if on_ties else [0.25, 1.75, 2.5]
    ys = [1.0, 0.5, 0.0] if on_ties else [0.375, 1.25, 0.625]
    g = torch.stack([_grid_on(xs, False, 4), _grid_on(ys, False, 2)], -1).reshape(1, 1, 3, 2)
    for bad in (_NoGridGrad, _DoubledGridGrad):
        rep = mtcheck.check(lambda a, b: bad.apply(a, b), x, g)
        assert rep.verdict in (Verdict.SMOOTH_WRONG, Verdict.NOT_ASSOCIATED), (bad, rep.explain())
    rep = mtcheck.check(lambda a, b: torch.grid_sampler_2d(a, b, 0, 0, False), x, g)
    assert rep.verdict in DECIDED, rep.explain()


class _WrongInputGradAtTies(torch.autograd.Function):
    """bilinear sampling whose input gradient, on an exact cell boundary, goes to the tap before
    the boundary instead of the one on it (weights of a cell evaluated at the wrong end)."""

    @staticmethod
    def forward(ctx, x, g):
        ctx.save_for_backward(x, g)
        return torch.grid_sampler_2d(x, g, 0, 1, True)

    @staticmethod
    def backward(ctx, go):
        x, g = ctx.saved_tensors
        W = x.shape[-1]
        u = (g[..., 0] + 1) * (W - 1) / 2
        on = (u == torch.floor(u)) & (u > 0)
        shifted = g.clone()
        shifted[..., 0] = torch.where(on, g[..., 0] - 2 / (W - 1), g[..., 0])   # one pixel to the left
        with torch.enable_grad():
            xx, gg = x.detach().requires_grad_(), g.detach().requires_grad_()
            gx = torch.autograd.grad(torch.grid_sampler_2d(xx, shifted, 0, 1, True), xx, go)[0]
            ggr = torch.autograd.grad(torch.grid_sampler_2d(x, gg, 0, 1, True), gg, go)[0]
        return gx, ggr


def test_planted_wrong_input_backward_on_a_tie_is_caught():
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(1, 1, 3, 5, dtype=F64, generator=gen)
    g = torch.stack([_grid_on([2.0, 0.25], True, 5), _grid_on([0.5, 0.5], True, 3)], -1).reshape(1, 1, 2, 2)
    rep = mtcheck.check(lambda a, b: _WrongInputGradAtTies.apply(a, b), x, g)
    assert rep.verdict is Verdict.NOT_ASSOCIATED, rep.explain()
    rep = mtcheck.check(lambda a, b: torch.grid_sampler_2d(a, b, 0, 1, True), x, g)
    assert rep.verdict is Verdict.ASSOCIATED, rep.explain()


# ---------------------------------------------------------------- affine grids (aten.affine_grid_generator)

AG = "aten.affine_grid_generator.default"


@pytest.mark.parametrize("size", [[2, 3, 4, 5], [1, 1, 1, 3], [2, 1, 3, 4, 2], [1, 2, 2, 1, 1]])
@pytest.mark.parametrize("align", [False, True])
def test_affine_grid_matches_torch_and_is_linear(size, align):
    gen = torch.Generator().manual_seed(9)
    nsp = len(size) - 2
    th = torch.randn(size[0], nsp, nsp + 1, dtype=F64, generator=gen)
    rule, ctx = lookup(AG), Ctx(AG, F64)
    args = (from_tensor(th), size, align)
    out = rule.forward(ctx, args, {})
    ref = torch.affine_grid_generator(th, size, align).numpy()
    assert np.abs(np.array([float(v) for v in out.ravel()]).reshape(out.shape) - ref).max() <= 1e-14
    n, m = th.numel(), out.size
    J = np.asarray(rule.jvp(ctx, args, {}, out, (identity(n).reshape((n,) + tuple(th.shape)),), {}),
                   dtype=object).reshape(n, m).T
    (g,) = rule.vjp(ctx, args, {}, out, identity(m).reshape((m,) + out.shape))
    assert (J == np.asarray(g, dtype=object).reshape(m, n)).all()
    Jt = torch.autograd.functional.jacobian(lambda t: torch.affine_grid_generator(t, size, align), th)
    assert np.abs(J.astype(float) - Jt.reshape(m, n).numpy()).max() <= 1e-15


def test_spatial_transformer_identity_theta_is_a_tie_wrt_theta():
    """F.grid_sample(x, F.affine_grid(theta)) at the identity, align_corners with sizes whose
    base points are exact floats: every sample sits on a pixel (ties moving with theta)."""
    gen = torch.Generator().manual_seed(10)
    x = torch.round(torch.randn(1, 2, 3, 5, dtype=F64, generator=gen) * 8) / 8
    theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], dtype=F64)
    fn = lambda t: F.grid_sample(x, F.affine_grid(t, (1, 2, 3, 5), align_corners=True),  # noqa: E731
                                 align_corners=True)
    rep = mtcheck.check(fn, theta)
    assert rep.verdict is Verdict.ASSOCIATED and rep.pattern.n_ties > 0, rep.explain()


def test_rounded_affine_base_points_off_the_exact_ties_is_a_rounding_branch():
    """With 4 columns and align_corners, PyTorch's base points -1/3, 1/3 are rounded floats: its
    samples miss the pixels that the exact ones hit, a rounding-induced branch (never a pass or
    a false alarm)."""
    x = torch.randn(1, 1, 3, 4, dtype=F64)
    theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], dtype=F64)
    fn = lambda t: F.grid_sample(x, F.affine_grid(t, (1, 1, 3, 4), align_corners=True),  # noqa: E731
                                 align_corners=True)
    assert mtcheck.check(fn, theta).verdict is Verdict.ROUNDING_BRANCH
