"""The rules added for issue 11 (mtcheck/ops/extra.py, extra_index.py): for every op, the exact
forward equals PyTorch's float64 forward on dyadic data, the op is really in the trace (so the
new rule is what is tested), and the gradient at a tie gets a passing verdict. Ops that are
discontinuous come out as OutsideTheoryError."""

import pytest
import torch
import torch.nn.functional as F

import mtcheck
from mtcheck import Verdict

D = torch.float64


def T(*vals, shape=None):
    t = torch.tensor(vals, dtype=D)
    return t.reshape(shape) if shape is not None else t


def ties(*shape, seed=0, lo=-1, hi=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(lo, hi + 1, shape, generator=g).to(D)


IDX = torch.tensor([0, 2, 0])
R = torch.relu

# name -> (ATen op expected in the trace, program, inputs)
CASES = {
    "addcmul": ("aten.addcmul.default", lambda s, a, b: R(torch.addcmul(s, a, b, value=0.5)),
                (ties(2, 3), ties(2, 3, seed=1), ties(3, seed=2))),
    "addcdiv": ("aten.addcdiv.default", lambda s, a, b: R(torch.addcdiv(s, a, b, value=2.0)),
                (ties(4), ties(4, seed=1), T(1.0, 2.0, -4.0, 0.5))),
    "addr": ("aten.addr.default", lambda s, u, v: R(torch.addr(s, u, v, beta=0.5, alpha=2.0)),
             (ties(2, 3), ties(2, seed=1), ties(3, seed=2))),
    "cumprod": ("aten.cumprod.default", lambda x: R(torch.cumprod(x, dim=1)), (T(1, 0, 2, -1, 2, 0.5, 0, 0, shape=(2, 4)),)),
    "prod": ("aten.prod.default", lambda x: R(x.prod()), (T(1.0, 0.0, 2.0, -1.0),)),
    "prod-dim": ("aten.prod.dim_int", lambda x: R(x.prod(dim=0, keepdim=True)), (T(1, 0, 2, -1, 2, 0.5, shape=(2, 3)),)),
    "cross": ("aten.linalg_cross.default", lambda a, b: R(torch.linalg.cross(a, b)), (ties(2, 3), ties(2, 3, seed=3))),
    "reciprocal": ("aten.reciprocal.default", lambda x: R(torch.reciprocal(x) - 1), (T(1.0, 2.0, -4.0, 0.5),)),
    "nan_to_num": ("aten.nan_to_num.default", lambda x: R(torch.nan_to_num(x)), (ties(5),)),
    "mse_loss": ("aten.mse_loss.default", lambda x, y: F.mse_loss(R(x), y), (ties(2, 3), ties(2, 3, seed=1))),
    "mse_loss-none": ("aten.mse_loss.default", lambda x, y: F.mse_loss(R(x), y, reduction="none"),
                      (ties(2, 3), ties(2, 3, seed=1))),
    "var": ("aten.var.correction", lambda x: R(torch.var(x, dim=1) - 1), (T(0, 1, 2, 1, 1, 1, shape=(2, 3)),)),
    "var_mean": ("aten.var_mean.correction", lambda x: torch.stack(torch.var_mean(R(x), dim=0, correction=0)),
                 (ties(3, 2),)),
    "aminmax": ("aten.aminmax.default", lambda x: torch.stack(torch.aminmax(x, dim=1)), (T(1, 1, 0, 2, 2, 2, shape=(2, 3)),)),
    "aminmax-all": ("aten.aminmax.default", lambda x: torch.stack(torch.aminmax(x)), (T(1, 1, 0, 0),)),
    "copy_": ("aten.copy_.default", lambda x: R(torch.zeros(2, 3, dtype=D).copy_(x)), (ties(3),)),
    "det": ("aten._linalg_det.default", lambda a: R(torch.linalg.det(a)), (T(1, 2, 2, 4, shape=(2, 2)),)),
    "inv": ("aten.linalg_inv_ex.default", lambda a: R(torch.linalg.inv(a) - 0.5), (T(2, 0, 0, 4, shape=(2, 2)),)),
    "solve": ("aten._linalg_solve_ex.default", lambda a, b: R(torch.linalg.solve(a, b)),
              (T(2, 0, 1, 4, shape=(2, 2)), T(0, 4, 2, 1, shape=(2, 2)))),
    "solve-vector": ("aten._linalg_solve_ex.default", lambda a, b: R(torch.linalg.solve(a, b)),
                     (T(2, 0, 1, 4, shape=(2, 2)), T(0.0, 4.0))),
    "cholesky_inverse": ("aten.cholesky_inverse.default", lambda l: R(torch.cholesky_inverse(torch.tril(l)) - 0.25),
                         (T(2, 0, 1, 2, shape=(2, 2)),)),
    "cholesky_solve": ("aten.cholesky_solve.default", lambda b, l: R(torch.cholesky_solve(b, l)),
                       (T(1, 0, 0, 1, shape=(2, 2)), T(2, 0, 0, 2, shape=(2, 2)))),
    "solve_triangular": ("aten.linalg_solve_triangular.default",
                         lambda a, b: R(torch.linalg.solve_triangular(a, b, upper=True)),
                         (T(2, 3, 9, 4, shape=(2, 2)), T(0, 4, 2, 1, shape=(2, 2)))),
    "triangular_solve": ("aten.triangular_solve.default",
                         lambda b, a: R(torch.triangular_solve(b, a, upper=False).solution),
                         (T(0, 4, 2, 1, shape=(2, 2)), T(2, 3, 1, 4, shape=(2, 2)))),
    "lu_solve": ("aten.linalg_lu_solve.default",
                 lambda lu, b: R(torch.linalg.lu_solve(lu, torch.tensor([2, 2], dtype=torch.int32), b)),
                 (T(2, 1, 0.5, 4, shape=(2, 2)), T(0, 4, 2, 1, shape=(2, 2)))),
    "lu_solve-adjoint": ("aten.linalg_lu_solve.default",
                         lambda lu, b: R(torch.linalg.lu_solve(lu, torch.tensor([2, 2], dtype=torch.int32), b,
                                                               adjoint=True)),
                         (T(2, 1, 0.5, 4, shape=(2, 2)), T(0, 4, 2, 1, shape=(2, 2)))),
    # movement with constants (FilledIndexMap)
    "tril": ("aten.tril.default", lambda x: R(torch.tril(x, diagonal=-1) + torch.triu(x)), (ties(3, 3),)),
    "diag_embed": ("aten.diag_embed.default", lambda x: R(torch.diag_embed(x, offset=1)), (ties(2, 3),)),
    "diagflat": ("aten.diag_embed.default", lambda x: R(torch.diagflat(x)), (ties(3),)),
    "diagonal_copy": ("aten.diagonal_copy.default", lambda x: R(torch.diagonal_copy(x)), (ties(3, 3),)),
    "diagonal_scatter": ("aten.diagonal_scatter.default", lambda x, s: R(torch.diagonal_scatter(x, s)),
                         (ties(3, 3), ties(3, seed=1))),
    "select_scatter": ("aten.select_scatter.default", lambda x, s: R(torch.select_scatter(x, s, 0, 1)),
                       (ties(3, 2), ties(2, seed=1))),
    "slice_scatter": ("aten.slice_scatter.default", lambda x, s: R(torch.slice_scatter(x, s, 0, 0, 2)),
                      (ties(3, 2), ties(2, 2, seed=1))),
    "rot90": ("aten.rot90.default", lambda x: R(torch.rot90(x, 1, (0, 1))), (ties(2, 3),)),
    "block_diag": ("aten.block_diag.default", lambda a, b: R(torch.block_diag(a, b)), (ties(2, 2), ties(1, 3, seed=1))),
    "index_copy": ("aten.index_copy.default", lambda x, s: R(x.index_copy(0, torch.tensor([2, 0]), s)),
                   (ties(3, 2), ties(2, 2, seed=1))),
    "index_fill": ("aten.index_fill.int_Scalar", lambda x: R(x.index_fill(1, torch.tensor([1]), -0.5)), (ties(2, 3),)),
    "index_put": ("aten.index_put.default", lambda x, v: R(x.index_put((torch.tensor([0, 2]),), v)),
                  (ties(4), ties(2, seed=1))),
    "masked_scatter": ("aten.masked_scatter.default",
                       lambda x, s: R(x.masked_scatter(torch.tensor([True, False, True]), s)), (ties(3), ties(4, seed=1))),
    "scatter-src": ("aten.scatter.src", lambda x, s: R(x.scatter(0, IDX[:2].reshape(2, 1), s)), (ties(3, 1), ties(2, 1))),
    "scatter-value": ("aten.scatter.value", lambda x: R(x.scatter(0, IDX[:2], 0.5)), (ties(3),)),
    "pad-reflect": ("aten.reflection_pad1d.default", lambda x: R(F.pad(x, (2, 1), mode="reflect")), (ties(1, 2, 4),)),
    "pad-replicate": ("aten.replication_pad2d.default", lambda x: R(F.pad(x, (1, 1, 0, 1), mode="replicate")),
                      (ties(1, 1, 2, 3),)),
    "interpolate-nearest": ("aten.upsample_nearest1d.default", lambda x: R(F.interpolate(x, scale_factor=2)),
                            (ties(1, 2, 3),)),
    "embedding": ("aten.embedding.default", lambda w: R(F.embedding(torch.tensor([[0, 2], [2, 1]]), w)), (ties(3, 2),)),
    "max_unpool1d": ("aten.max_unpool2d.default",
                     lambda x: R(F.max_unpool1d(x, torch.tensor([[[1, 2]]]), 2, output_size=(4,))), (ties(1, 1, 2),)),
    # linear ops read off the framework (LinearByBasis)
    "index_add": ("aten.index_add.default", lambda x, s: R(x.index_add(0, IDX, s, alpha=2)), (ties(3, 2), ties(3, 2, seed=1))),
    "scatter_add": ("aten.scatter_add.default", lambda x, s: R(x.scatter_add(0, IDX.reshape(3, 1), s)),
                    (ties(3, 1), ties(3, 1, seed=1))),
    "index_put-accumulate": ("aten.index_put.default",
                             lambda x, v: R(x.index_put((torch.tensor([0, 0]),), v, accumulate=True)),
                             (ties(3), ties(2, seed=1))),
    "trace": ("aten.trace.default", lambda x: R(torch.trace(x)), (T(1, 2, 3, -1, shape=(2, 2)),)),
    "interpolate-linear": ("aten.upsample_linear1d.default",
                           lambda x: R(F.interpolate(x, scale_factor=2, mode="linear", align_corners=False)),
                           (ties(1, 1, 3),)),
    "interpolate-bilinear": ("aten.upsample_bilinear2d.default",
                             lambda x: R(F.interpolate(x, size=(3, 3), mode="bilinear", align_corners=True)),
                             (ties(1, 1, 2, 2),)),
    "scatter_reduce-sum": ("aten.scatter_reduce.two",
                           lambda x, s: R(x.scatter_reduce(0, IDX, s, "sum")), (ties(3), ties(3, seed=1))),
    "scatter_reduce-mean": ("aten.scatter_reduce.two",
                            lambda x, s: R(x.scatter_reduce(0, IDX, s, "mean", include_self=False)),
                            (ties(3), ties(3, seed=1))),
    "scatter_reduce-prod": ("aten.scatter_reduce.two",
                            lambda x, s: R(x.scatter_reduce(0, IDX, s, "prod")), (ties(3), ties(3, seed=1))),
    "embedding_bag-sum": ("aten._embedding_bag.default",
                          lambda w: R(F.embedding_bag(torch.tensor([0, 2, 1, 1]), w, torch.tensor([0, 2]), mode="sum")),
                          (ties(3, 2),)),
    "index_reduce-prod": ("aten.index_reduce.default",
                          lambda x, s: R(x.index_reduce(0, IDX, s, "prod")), (ties(3, 2), ties(3, 2, seed=1))),
    "index_reduce-amax": ("aten.index_reduce.default",
                          lambda x, s: x.index_reduce(0, IDX, s, "amax", include_self=False),
                          (T(3, 3, 0, 0, 3, 3, shape=(3, 2)), T(1, 0, 2, 1, 1, 0, shape=(3, 2)))),
    "multilabel_margin_loss-repeated-target": ("aten.multilabel_margin_loss_forward.default",
                                               lambda x: F.multilabel_margin_loss(x, torch.tensor([1, 1, 0, 1, 4])),
                                               (T(-5, -8, -1, -2, -2),)),
    "hardshrink-negative-lambda": ("aten.hardshrink.default", lambda x: R(F.hardshrink(x, -0.5)), (ties(4),)),
    "multilabel_margin_loss": ("aten.multilabel_margin_loss_forward.default",
                               lambda x: F.multilabel_margin_loss(x, torch.tensor([[2, 0, -1, 1], [1, -1, 0, 0]]),
                                                                  reduction="none"),
                               (T(0, 1, 1, 0, 0.5, 1.5, 0, 1, shape=(2, 4)),)),
    "conv_transpose1d": ("aten.convolution.default",
                         lambda x, w: R(F.conv_transpose1d(x, w, stride=2, padding=1, output_padding=1)),
                         (ties(1, 2, 3), ties(2, 3, 2, seed=1))),
    "conv_transpose2d-groups": ("aten.convolution.default",
                                lambda x: R(F.conv_transpose2d(x, T(1, 0.5, -1, 2, 0, 1, 1, 1, shape=(2, 1, 2, 2)),
                                                               groups=2)),
                                (ties(1, 2, 2, 3),)),
    "nll_loss": ("aten.nll_loss_forward.default",
                 lambda x: F.nll_loss(R(x), torch.tensor([1, 0, 2]), weight=T(1.0, 2.0, 0.5)), (ties(3, 3),)),
    "bilinear": ("aten._trilinear.default", lambda a, b, w: R(F.bilinear(a, b, w)),
                 (ties(2, 2), ties(2, 3, seed=1), ties(2, 2, 3, seed=2))),
    "logical_xor-float": ("aten.logical_xor.default", lambda x, y: torch.where(torch.logical_xor(x, y), x, y),
                          (ties(5), ties(5, seed=1))),
    "eq-inf": ("aten.eq.Scalar", lambda x: torch.where(x.abs() == float("inf"), x, 2 * x), (ties(4),)),
    "nonzero": ("aten.nonzero.default", lambda x: x[torch.nonzero(x, as_tuple=True)], (T(0.0, 1.0, 0.0, -2.0),)),
    "count_nonzero": ("aten.count_nonzero.default", lambda x: x * torch.count_nonzero(x, dim=0),
                      (T(0, 1, 2, 0, shape=(2, 2)),)),
}

OUTSIDE = {
    "hardshrink": (lambda x: F.hardshrink(x, 0.5), (ties(4),)),
    # on their jumps (off them they are checked: tests/test_steps_more.py)
    "mode": (lambda x: torch.mode(x).values, (T(1.0, 2.0, 2.0),)),
    "frexp": (lambda x: torch.frexp(x).mantissa, (T(1.0, 3.0),)),
    "signbit": (lambda x: x * torch.signbit(x), (T(1.0, 0.0),)),
}


def _trace_ops(fn, inputs):
    from mtcheck.trace import prepare_inputs, trace

    leaves, _ = prepare_inputs(inputs, None)
    return {n.op for n in trace(fn, leaves).nodes}


def _exact_vs_float(fn, inputs):
    """(exact outputs, the framework's float64 outputs as exact numbers) of ``fn(*inputs)``."""
    from mtcheck._exact import from_tensor
    from mtcheck.model import ExactModel
    from mtcheck.trace import prepare_inputs, trace

    leaves, _ = prepare_inputs(inputs, None)
    tr = trace(fn, leaves)
    model = ExactModel(tr)
    ev = model.evaluate([from_tensor(t) for t in leaves])
    exact = model.output_values(ev)
    got = torch.cat([t.detach().reshape(-1).to(D) for t in tr.out_tensors if t is not None and t.is_floating_point()])
    return exact.tolist(), from_tensor(got).tolist()


@pytest.mark.parametrize("name", sorted(CASES))
def test_new_rule_forward_matches_float64(name):
    aten, fn, inputs = CASES[name]
    assert aten in _trace_ops(fn, inputs), f"{name}: {aten} is not in the trace"
    exact, fl = _exact_vs_float(fn, inputs)
    assert len(exact) == len(fl)
    for e, f in zip(exact, fl):
        if int(e.q) & (int(e.q) - 1) == 0:       # dyadic: float64 must give it exactly
            assert e == f, (name, exact, fl)
        else:                                    # 1/3 and the like: within float64 rounding
            assert abs(float(e) - float(f)) <= 1e-12 * max(1.0, abs(float(e))), (name, exact, fl)


@pytest.mark.parametrize("name", sorted(CASES))
def test_new_rule_verdict_at_a_tie(name):
    aten, fn, inputs = CASES[name]
    rep = mtcheck.check(fn, *inputs, neighbours=False)
    assert rep.verdict in (Verdict.SMOOTH_OK, Verdict.ASSOCIATED), rep.explain()


def test_the_cases_sit_on_ties():
    """Most programs above are built so that the input lies on a kink (the verdict is ASSOCIATED)."""
    tied = 0
    for name, (_, fn, inputs) in CASES.items():
        rep = mtcheck.check(fn, *inputs, neighbours=False, forward_mode=False)
        tied += rep.verdict is Verdict.ASSOCIATED
    assert tied >= 0.6 * len(CASES)


@pytest.mark.parametrize("name", sorted(OUTSIDE))
def test_discontinuous_ops_are_outside_the_theory(name):
    fn, inputs = OUTSIDE[name]
    with pytest.raises(mtcheck.OutsideTheoryError) as e:
        mtcheck.check(fn, *inputs)
    assert "test_ops_extra.py" in str(e.value)


def test_index_reduce_amax_excluded_self_is_a_pytorch_finding():
    """index_reduce(amax, include_self=False) where the excluded self equals the result: PyTorch
    splits the gradient with the excluded entry (like scatter_reduce's recorded finding), so along
    the stratum's direction that moves both tied sources the framework's rate is 2/3, not 1."""
    rep = mtcheck.check(lambda x, s: x.index_reduce(0, IDX, s, "amax", include_self=False),
                        T(1, -1, 1, -1, 0, -1, shape=(3, 2)), T(1, 0, 2, 1, 1, 0, shape=(3, 2)), neighbours=False)
    assert rep.verdict is Verdict.NOT_ASSOCIATED, rep.explain()
    assert rep.witness is not None


def test_cholesky_inverse_reads_one_triangle_a_pytorch_finding():
    """The kernel reads only the lower triangle of L (the exact model too: its forward replays
    float64), but PyTorch's gradient is nonzero on the upper entries, which the output does not
    depend on."""
    prog, L = (lambda l: torch.cholesky_inverse(l)), T(2, 1, 1, 2, shape=(2, 2))
    exact, fl = _exact_vs_float(prog, (L,))
    assert all(abs(float(e) - float(f)) <= 1e-12 for e, f in zip(exact, fl))
    rep = mtcheck.check(prog, L, neighbours=False)
    assert rep.verdict.is_bug, rep.explain()


def test_det_at_a_singular_matrix_a_pytorch_finding():
    """det at a matrix of rank n - 1: the derivative is the adjugate (nonzero), PyTorch returns 0."""
    A = T(-1, -1, 0, 0, 0, 0, -1, -1, -1, -1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, -1, -1, -1, shape=(5, 5))
    rep = mtcheck.check(torch.linalg.det, A, neighbours=False)
    assert rep.verdict is Verdict.SMOOTH_WRONG, rep.explain()
    B = A.clone()
    B[0, 3] += 1.0
    assert float(torch.linalg.det(B)) == -1.0          # PyTorch's own forward: the rate is -1, not 0


def test_hardshrink_with_zero_lambda_is_the_identity():
    rep = mtcheck.check(lambda x: R(F.hardshrink(x, 0.0)), ties(4), neighbours=False)
    assert rep.verdict in (Verdict.SMOOTH_OK, Verdict.ASSOCIATED)


def test_writes_into_views_of_a_fresh_buffer_are_followed():
    """Circular padding copies slices of its input into an empty tensor, then reads that tensor.
    Each write through a view is now a new value of the buffer (as_strided_scatter, recorded after
    the write), so the read sees it; it was refused before ("changed in place through an alias"),
    and before that it read the stale buffer and reported a wrong gradient."""
    rep = mtcheck.check(lambda x: F.pad(x, (1, 2), mode="circular"), ties(1, 2, 4))
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()


def test_linear_by_basis_is_not_fooled_at_zero_and_one():
    """square(x) = x at x in {0, 1}: the check at the actual values alone would pass."""
    from mtcheck._exact import from_tensor
    from mtcheck.ops import Ctx, NotModelled
    from mtcheck.ops.extra_index import LinearByBasis

    ctx = Ctx("aten.square.default", D)
    ctx.aux["func"] = torch.ops.aten.square.default
    with pytest.raises(NotModelled, match="not linear"):
        LinearByBasis().forward(ctx, (from_tensor(T(0.0, 1.0, 1.0)),), {})


def test_linear_by_basis_refuses_a_nonlinear_use():
    """The safety net: an op that is not affine in its float argument is refused."""
    from mtcheck._exact import from_tensor
    from mtcheck.ops import Ctx, NotModelled
    from mtcheck.ops.extra_index import LinearByBasis

    ctx = Ctx("aten.square.default", D)
    ctx.aux["func"] = torch.ops.aten.square.default
    with pytest.raises(NotModelled, match="not linear"):
        LinearByBasis().forward(ctx, (from_tensor(T(1.0, 2.0)),), {})


def test_multilinear_ops_read_off_per_argument():
    """embedding_bag with per-sample weights is bilinear (table x weights): linear in each argument
    with the other fixed, so its derivative is the sum of the two partial maps."""
    idx, offs = torch.tensor([0, 2, 1, 1]), torch.tensor([0, 2])
    psw = T(0.5, 2.0, 1.0, -1.0)
    rep = mtcheck.check(lambda w: R(F.embedding_bag(idx, w, offs, mode="sum", per_sample_weights=psw)), ties(3, 2),
                        neighbours=False)
    assert rep.verdict in (Verdict.SMOOTH_OK, Verdict.ASSOCIATED), rep.explain()
    rep = mtcheck.check(lambda w, p: R(F.embedding_bag(idx, w, offs, mode="sum", per_sample_weights=p)), ties(3, 2),
                        psw, neighbours=False)
    assert rep.verdict in (Verdict.SMOOTH_OK, Verdict.ASSOCIATED), rep.explain()


def test_ldexp_exponent_derivative_and_pytorch_negative_exponent_gradient():
    """ldexp(x, e) = x 2**e: a float exponent is differentiated (x 2**e ln 2, enclosed); with an
    integer exponent tensor PyTorch 2.13 returns the gradient 0 for every negative exponent
    (its backward computes 2**e in integers), which mtcheck reports as SMOOTH_WRONG."""
    x = torch.tensor([1.5, -0.75, 2.0], dtype=torch.float64)
    e = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    rep = mtcheck.check(torch.ldexp, x, e)
    assert rep.verdict is mtcheck.Verdict.SMOOTH_OK, rep
    rep = mtcheck.check(lambda x: torch.ldexp(x, torch.tensor([1, -2, 3])), x)
    J = rep.stratum_jacobian
    assert J.diagonal().tolist() == [2.0, 0.25, 8.0]
    fw = rep.framework_jacobian.diagonal().tolist()
    if fw[1] == 0.0:
        assert rep.verdict is mtcheck.Verdict.SMOOTH_WRONG
    else:   # a torch where it is fixed
        assert rep.verdict is mtcheck.Verdict.SMOOTH_OK


def test_in_place_writes_to_disjoint_slices_leave_the_other_slices_readable():
    """An in-place op on one slice makes stale only the views that share an element with it: GRU's
    gates are in-place sigmoid/tanh on disjoint slices of one product (it was refused as a read of
    a tensor changed through an alias); a view overlapping the written slice is still refused."""
    def disjoint(x):
        y = x * 2
        a, b = y[:2], y[2:]
        a.sigmoid_()
        return a + b                       # b does not share an element with a

    def overlapping(x):
        y = x * 2
        a, b = y[:3], y[2:]
        a.sigmoid_()
        return b * 1                       # b[0] is a[2]: stale

    x = torch.tensor([0.5, -1.0, 0.25, 2.0], dtype=torch.float64)
    assert mtcheck.check(disjoint, x).verdict is mtcheck.Verdict.SMOOTH_OK
    with pytest.raises(mtcheck.UnsupportedOpError, match="changed in place through an alias"):
        mtcheck.check(overlapping, x)


@pytest.mark.parametrize("layers", [1, 2])
def test_gru_is_decided(layers):
    from mtcheck.certificate import verify

    torch.manual_seed(0)
    rep = mtcheck.check(torch.nn.GRU(4, 3, num_layers=layers, batch_first=True), torch.randn(2, 3, 4))
    assert rep.verdict is mtcheck.Verdict.SMOOTH_OK, rep.explain()
    assert verify(rep.certificate).ok


def test_scatter_reduce_prod_forward_mode_a_pytorch_finding():
    """torch 2.13's forward-mode AD gives scatter_reduce(reduce='prod') no tangent at all (a zero
    Jacobian) while reverse mode is right: the report says forward != reverse at a smooth point, with
    no internal exception text in its notes (a smooth point needs no structural-zero pass)."""
    idx = torch.tensor([0, 0, 1])
    f = lambda s, x: s.scatter_reduce(0, idx, x, "prod", include_self=True)
    s, x = torch.tensor([5.0, 1.0], dtype=torch.float64), torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64)
    rep = mtcheck.check(f, s, x, forward_mode=True)
    assert rep.verdict is Verdict.SMOOTH_OK and rep.certificate_ok, rep.explain()
    assert rep.forward_matches_reverse is False, rep.explain()
    assert "forward 0.0, reverse 15.0" in rep.explain() and "no tangent propagated" in rep.explain()
    assert not any("Error" in n for n in rep.notes), rep.notes
