"""deep_ties: synthesized ties are exact, dyadic, and happen in PyTorch's own float forward pass."""

import flint
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings

import mtcheck
from mtcheck import zoo
from mtcheck._synth import Program, Target, lattice_point, reset_synthesis_stats, synthesis_stats, synthesize
from mtcheck.strategies import deep_ties

Q = flint.fmpq
OPTS = dict(neighbours=False, forward_mode=False)


class _MLP(torch.nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        return self.pre_activations(x)[-1]

    def pre_activations(self, x):
        out = []
        for i, lay in enumerate(self.layers):
            x = lay(x)
            out.append(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return out


def _mlp(dtype=torch.float64, sizes=(8, 32, 32, 32, 4)):
    return zoo.dyadic_(_MLP(sizes), seed=3, bits=3, scale=0.5).to(dtype).eval()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_deep_ties_are_real_in_the_float_forward_pass(dtype):
    model = _mlp(dtype)
    seen = set()

    @settings(max_examples=6, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(deep_ties(model, shape=(1, 8), dtype=dtype, with_result=True))
    def run(case):
        x, r = case
        assert x.dtype == dtype and r.ok and all(r.exact) and all(r.in_float)
        (t,) = r.targets
        depth = Program(model, x).depth_of(t.node)
        seen.add(depth)
        # independently of mtcheck: the relu's float input is exactly 0.0 at the target unit
        with torch.no_grad():
            pre = model.pre_activations(x)[depth - 1]
        assert pre.reshape(-1)[t.group].item() == 0.0
        # and the checker sees the tie in exact arithmetic, with no rounding-induced branch
        rep = mtcheck.check(model, x, **OPTS)
        assert rep.verdict.passed and rep.verdict != mtcheck.Verdict.ROUNDING_BRANCH, rep.explain()
        assert rep.tangent_dim < 8 or rep.verdict == mtcheck.Verdict.SMOOTH_OK

    run()
    assert len(seen) >= 2


def test_deep_ties_at_a_chosen_depth_in_lenet():
    model, (ex,) = zoo.lenet()
    prog = Program(model, ex)
    g = torch.Generator().manual_seed(5)
    x = torch.randint(-256, 257, ex.shape, generator=g).double() / 256     # generic: no tie by accident
    node = prog.nonsmooth[-1]                                                # the last relu (fc layer)
    assert not any((d.signs() == 0).any() for d in prog.evaluate(_exact(x)).discs[node])
    r = synthesize(prog, x, [Target(node)], seed=0)
    assert r.ok, r.reason
    with torch.no_grad():
        h = model.f2(torch.relu(model.f1(torch.flatten(
            torch.nn.functional.max_pool2d(torch.relu(model.c2(torch.nn.functional.max_pool2d(
                torch.relu(model.c1(r.input)), 2))), 2), 1))))
    assert (h == 0).any()


def _exact(x):
    from mtcheck._exact import from_tensor

    return from_tensor(x).ravel()


def test_a_chosen_unit_and_the_every_layer_mode():
    model = _mlp()
    prog = Program(model, torch.zeros(1, 8, dtype=torch.float64))
    x = torch.arange(8, dtype=torch.float64).reshape(1, 8) / 8 - 0.4375
    r = synthesize(prog, x, [Target(prog.nonsmooth[1], "relu", 7)], seed=1)
    assert r.ok and r.targets == [Target(prog.nonsmooth[1], "relu", 7)]
    with torch.no_grad():
        assert model.pre_activations(r.input)[1][0, 7].item() == 0.0
    r2 = synthesize(prog, x, every_layer=True, seed=2)
    assert r2.ok and all(r2.exact) and all(r2.in_float) and len(r2.exact) == 3


def test_lattice_point_is_exact_or_none():
    rows = [[Q(3), Q(5), Q(-2)], [Q(1, 4), Q(0), Q(1)]]
    target = [Q(1, 3), Q(2, 7), Q(1, 5)]
    rhs = [sum((a * b for a, b in zip(r, target)), Q(0)) for r in rows]
    for k in (4, 10, 20):
        z = lattice_point(rows, rhs, target, k)
        if z is None:
            continue
        xs = [Q(int(v), 1 << k) for v in z]
        assert [sum((a * b for a, b in zip(r, xs)), Q(0)) for r in rows] == rhs
        assert max(abs(float(a - b)) for a, b in zip(xs, target)) < 2.0 ** (4 - k) * 8
    # 3 x = 1 has no dyadic solution at any lattice exponent
    assert all(lattice_point([[Q(3)]], [Q(1)], [Q(1, 3)], k) is None for k in (0, 5, 30))


def test_misses_are_counted():
    reset_synthesis_stats()
    model = _mlp()
    prog = Program(model, torch.zeros(1, 8, dtype=torch.float64))
    x = torch.full((1, 8), 0.25, dtype=torch.float64)
    synthesize(prog, x, [Target(prog.nonsmooth[0])], seed=0)
    st = synthesis_stats()
    assert st["requested"] == 1 and st.get("hit", 0) + st.get("miss", 0) == 1 and "median_s" in st


def test_deep_ties_on_a_program_with_enclosed_values_returns_the_input_with_the_reason():
    """Eval batch norm makes values irrational: deep_ties does not solve there (it needs exact
    tie rows); it returns the input unmoved and says why, instead of an internal TypeError."""
    import torch.nn as nn

    from mtcheck._synth import Program, Target, synthesize

    torch.manual_seed(0)
    bn = nn.BatchNorm1d(4).eval()
    bn.running_var.fill_(3.0)
    m = nn.Sequential(nn.Linear(4, 4), bn, nn.ReLU(), nn.Linear(4, 2)).eval()
    x = torch.randn(1, 4)
    prog = Program(m, x)
    r = synthesize(prog, x, [Target(prog.nonsmooth[0])])
    assert not r.ok and "enclosed" in r.reason


def test_enclosed_values_downstream_of_the_target_do_not_stop_the_synthesis():
    """Only values upstream of a tie enter its rows: a sigmoid head after the tied relu leaves
    the tie rows exact, so the float32 path synthesizes it (it used to refuse the whole program,
    saying the enclosures were upstream)."""
    import torch.nn as nn

    from mtcheck.model import has_balls

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2), nn.Sigmoid()).eval()
    x = torch.randn(1, 4)
    prog = Program(m, x)
    assert has_balls(prog.evaluate(_exact(x)))          # the head's values are enclosures
    r = synthesize(prog, x, [Target(prog.nonsmooth[0])], seed=0)
    assert r.ok, r.reason
    with torch.no_grad():
        assert (m[0](r.input) == 0).any()


def test_values_that_become_enclosed_while_the_synthesis_moves_the_input_stop_it_with_the_reason():
    """elu is exact above 0 (elu(1/4) = 1/4) but its derivative there is an enclosure of radius 0
    (exp(min(x, 0))): the exact synthesis used to crash on it (``NotEnclosed: tolist() on
    enclosures`` out of a tie row). It now reads such a row exactly and solves (elu(x) = 0 at
    x = 0); an irrational row or value upstream of a target stops it with the reason."""
    import torch.nn as nn

    m = nn.Sequential(nn.ELU(), nn.ReLU()).double()
    x = torch.full((1, 1), 0.25, dtype=torch.float64)
    prog = Program(m, x)
    r = synthesize(prog, x, [Target(prog.nonsmooth[0])], seed=0)
    assert r.ok or "enclosed" in r.reason
    assert mtcheck.check(m, r.input).verdict is not None


def test_an_enclosed_head_downstream_of_the_target_does_not_stop_the_exact_synthesis():
    """float64 (the exact path): a log-softmax head after the tied relu leaves the tie rows
    exact, as in float32; the synthesis used to refuse the whole program at the seed."""
    import torch.nn as nn

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3), nn.LogSoftmax(dim=1)).double().eval()
    with torch.no_grad():                     # dyadic weights, as the generated networks have
        for p in m.parameters():
            p.copy_(torch.randint(-4, 5, p.shape, dtype=torch.float64) / 4)
    x = torch.randint(-4, 5, (1, 4), dtype=torch.float64) / 4
    prog = Program(m, x)
    r = synthesize(prog, x, [Target(prog.nonsmooth[0])], seed=0)
    assert r.ok, r.reason
    with torch.no_grad():
        assert (m[0](r.input) == 0).any()
    assert mtcheck.check(m, r.input).verdict.name in ("ASSOCIATED", "SMOOTH_OK")


def test_a_float64_seed_on_a_finer_grid_than_the_lattice_gets_an_answer_not_an_index_error():
    """randn in float64 has 52-bit fractions, beyond the exact path's lattice (2^-kmax): the list
    of lattice exponents was empty (``IndexError: list index out of range``); the seed is now
    rounded onto the lattice first, and the answer is a tie or a reason."""
    import torch.nn as nn

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).double().eval()
    x = torch.randn(1, 4, dtype=torch.float64)
    prog = Program(m, x)
    r = synthesize(prog, x, [Target(prog.nonsmooth[0])], seed=0)
    assert r.ok or r.reason


def test_the_float64_stand_in_for_the_seed_evaluation_has_the_exact_layout_and_signs():
    """The float path reads a seed's discriminants from the float64 replay (no exact evaluation of
    the seed): every nonsmooth node's elements, windows and winners are laid out as the exact
    model lays them out, and at a generic dyadic point their signs are the exact signs."""
    from mtcheck._synth import _seed_discs64

    model, (ex,) = zoo.lenet()
    model = model.float()
    prog = Program(model, ex.float())
    g = torch.Generator().manual_seed(3)
    x = (torch.randint(-256, 257, ex.shape, generator=g).double() / 256).float()
    ev = prog.evaluate(_exact(x))
    sd = _seed_discs64(prog, _exact(x), prog.nonsmooth[-1])
    assert sd is not None
    for nd in prog.nonsmooth:
        (d_ex,), (d64,) = ev.discs[nd], sd.discs[nd]
        assert d64.label == d_ex.label and d64.max_type == d_ex.max_type
        if d_ex.max_type:
            # the same windows with the same winners: compare (window, entry, winner) triples
            key_ex = sorted(zip(d_ex.group.tolist(), d_ex.idx_a.tolist(), d_ex.idx_b.tolist()))
            key64 = sorted(zip(d64.group.tolist(), d64.idx_a.tolist(), d64.idx_b.tolist()))
            assert key_ex == key64
        else:
            assert np.array_equal(d64.idx_a, d_ex.idx_a)
        order_ex = np.lexsort((d_ex.idx_a, d_ex.group))
        order64 = np.lexsort((d64.idx_a, d64.group))
        assert np.array_equal(d64.signs()[order64], d_ex.signs()[order_ex])


def test_deep_ties_on_the_first_relu_of_default_init_lenet_in_float32(monkeypatch):
    """oneDNN's convolution on LeNet's layers accumulates with fused multiply-adds, bias first: it
    returns 0.0 only when the exact partial sum at its last rounding is a float, which the 2^-22
    lattice of exact solutions almost never gives (2/10 requests of the bench). The coarser
    lattices tried after a fine search without a float tie find one (9/10)."""
    import mtcheck._synth as synth

    # the search's candidate count, not its time budget, bounds it here (the outcome does not
    # depend on the machine's load)
    monkeypatch.setattr(synth, "FLOAT_SEARCH_SECONDS", 30.0)
    # the lattice path itself (the short-last-term construction of mtcheck._fma_ties, tried first
    # where PyTorch's convolution is the FMA chain it models, is tested below)
    monkeypatch.setattr(synth, "_fma_first", lambda *a, **k: False)
    model, (ex,) = zoo.ZOO["lenet-f32"]()
    model = model.eval()
    prog = Program(model, torch.zeros_like(ex))
    node = prog.nonsmooth[0]
    for i in (0, 3):
        g = torch.Generator().manual_seed(10 + i)
        x = (torch.randint(-8, 9, ex.shape, generator=g) / 4).float()
        r = synthesize(prog, x, [Target(node)], seed=i)
        assert r.ok and all(r.exact) and all(r.in_float), r.reason
        assert r.bits < 22            # found on a coarse lattice
        with torch.no_grad():
            assert (model.c1(r.input) == 0).any()


def _exact_lenet_conv2_unit(model, x, o, i, j):
    """LeNet's second-convolution pre-activation at unit (o, i, j), in exact rationals (Fractions of the
    float32 weights and input), independently of mtcheck."""
    from fractions import Fraction as Fr

    W1, b1 = model.c1.weight.detach().double().numpy(), model.c1.bias.detach().double().numpy()
    W2, b2 = model.c2.weight.detach().double().numpy(), model.c2.bias.detach().double().numpy()
    xn = x.detach().double().numpy()[0, 0]

    def conv1(c, y, z):
        return Fr(b1[c]) + sum(Fr(xn[y + a, z + b]) * Fr(W1[c, 0, a, b]) for a in range(5) for b in range(5))

    def pool1(c, y, z):
        return max(max(conv1(c, 2 * y + a, 2 * z + b), Fr(0)) for a in range(2) for b in range(2))

    return Fr(b2[o]) + sum(pool1(c, i + a, j + b) * Fr(W2[o, c, a, b])
                           for c in range(6) for a in range(5) for b in range(5))


def _exact_lenet_conv1_unit(model, x, o, i, j):
    from fractions import Fraction as Fr

    W1, b1 = model.c1.weight.detach().double().numpy(), model.c1.bias.detach().double().numpy()
    xn = x.detach().double().numpy()[0, 0]
    return Fr(b1[o]) + sum(Fr(xn[i + a, j + b]) * Fr(W1[o, 0, a, b]) for a in range(5) for b in range(5))


@pytest.mark.parametrize("depth", [1, 3])
def test_deep_ties_on_the_conv_relus_of_default_init_lenet_in_float32(monkeypatch, depth):
    """The relus after LeNet's convolutions (depth 3: after the second one). oneDNN's FMA chain returns
    0.0 only when the last nonzero term's product a_T * w_T is a float, which a full-mantissa pool
    activation never gives; the short-last-term construction (mtcheck._fma_ties) sets a_T to a short
    float first (at depth 1, a_T is an input pixel). The tie is exact (checked here in Fractions,
    independently of mtcheck) and PyTorch's float forward sees it (0.0 in the module's own forward)."""
    import torch.nn.functional as F

    import mtcheck._fma_ties as fma

    monkeypatch.setattr(fma, "FMA_SECONDS", 30.0)       # bounded by its candidates, not the machine's load
    model, (ex,) = zoo.ZOO["lenet-f32"]()
    model = model.eval()
    prog = Program(model, torch.zeros_like(ex))
    node = prog.nonsmooth[depth - 1]
    side = 8 if depth == 3 else 24
    for i in (0, 1):
        g = torch.Generator().manual_seed(20 + i)
        x = (torch.randint(-8, 9, ex.shape, generator=g) / 4).float()
        r = synthesize(prog, x, [Target(node)], seed=i)
        assert r.ok and all(r.exact) and all(r.in_float), r.reason
        assert r.method == "fma-short-last"
        (t,) = r.targets
        o, rem = divmod(t.group, side * side)
        ii, jj = divmod(rem, side)
        with torch.no_grad():
            h = model.c1(r.input)
            pre = h if depth == 1 else model.c2(F.max_pool2d(torch.relu(h), 2))
        assert pre[0, o, ii, jj].item() == 0.0
        exact = (_exact_lenet_conv1_unit if depth == 1 else _exact_lenet_conv2_unit)(model, r.input, o, ii, jj)
        assert exact == 0
