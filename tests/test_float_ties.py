"""Ties on real float weights: exact ties that survive PyTorch's float forward, and float-only
(rounding-induced) ties, told apart and reported."""

from fractions import Fraction

import pytest
import torch
from hypothesis import HealthCheck, given, settings

import mtcheck
from mtcheck import zoo
from mtcheck._fuzz import Outcome, Stats as FixtureStats
from mtcheck._synth import Program, Target, synthesize
from mtcheck.campaign import Stats as CampaignStats, _layer_kinds
from mtcheck.float_ties import LayerTieCounter, float_tie, layer_tie_kinds
from mtcheck.strategies import deep_ties, float_ties

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


def _mlp(dtype=torch.float32, sizes=(8, 32, 32, 4), seed=0):
    torch.manual_seed(seed)                      # PyTorch's default init, weights not rounded
    return _MLP(sizes).to(dtype).eval()


def _seed_input(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(-8, 9, shape, generator=g).double() / 4).to(dtype)


def _exact_first_layer(model, x):
    """The first layer's pre-activations in exact rationals, independently of mtcheck."""
    lay = model.layers[0]
    W = [[Fraction(float(v)) for v in row] for row in lay.weight.detach().double().tolist()]
    b = [Fraction(float(v)) for v in lay.bias.detach().double().tolist()]
    xs = [Fraction(float(v)) for v in x.detach().double().reshape(-1).tolist()]
    return [sum((w * xv for w, xv in zip(row, xs)), Fraction(0)) + bi for row, bi in zip(W, b)]


def _depth_of(prog, node):
    return prog.nonsmooth.index(node) + 1


# ------------------------------------------------------------------ exact ties on real weights

@pytest.mark.parametrize("depth", [1, 2])
def test_exact_tie_on_default_init_float32_weights(depth):
    model = _mlp()
    prog = Program(model, torch.zeros(1, 8))
    x0 = _seed_input((1, 8), torch.float32, depth)
    r = synthesize(prog, x0, [Target(prog.nonsmooth[depth - 1])], seed=depth)
    assert r.ok and all(r.exact) and all(r.in_float), r.reason
    (t,) = r.targets
    with torch.no_grad():
        pre = model.pre_activations(r.input)[depth - 1]
    assert pre.reshape(-1)[t.group].item() == 0.0          # PyTorch's own float forward: exactly 0.0
    if depth == 1:
        assert _exact_first_layer(model, r.input)[t.group] == 0   # and exactly 0 in rationals
    rep = mtcheck.check(model, r.input, **OPTS)
    assert rep.verdict != mtcheck.Verdict.ROUNDING_BRANCH, rep.explain()
    kinds = layer_tie_kinds(rep)
    assert kinds[depth - 1]["tie"] == "exact"


# ------------------------------------------------------------------ float-only (rounding-induced) ties

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_float_only_tie_is_reported_as_rounding_branch(dtype):
    model = _mlp(dtype)
    prog = Program(model, torch.zeros(1, 8, dtype=dtype))
    for seed in range(4):
        r = float_tie(prog, _seed_input((1, 8), dtype, 10 + seed), depth=1, seed=seed)
        if r.ok:
            break
    assert r.ok, r.reason
    t = r.target
    with torch.no_grad():
        pre = model.pre_activations(r.input)[0]
    assert pre.reshape(-1)[t.group].item() == 0.0            # the float forward ties...
    exact = _exact_first_layer(model, r.input)[t.group]
    assert exact != 0 and exact == Fraction(int(r.exact_value.p), int(r.exact_value.q))   # ...exact does not
    # float16: the reverse pass itself rounds at 2^-11, beyond the checker's default float16 linearity
    # tolerance (rtol 1e-3), which would report NONLINEAR_VJP first; state a float16-sized one
    tol = dict(rtol=2e-2, atol=1e-3) if dtype == torch.float16 else {}
    rep = mtcheck.check(model, r.input, **OPTS, **tol)
    assert rep.verdict == mtcheck.Verdict.ROUNDING_BRANCH, rep.explain()
    assert any(n.startswith(r.node_label) for n in rep.rounding_nodes)
    entries = [e for e in rep.certificate["rounding"] if e["node"].startswith(r.node_label)]
    assert any(e["framework"] == "0" and e["exact"] != "0" for e in entries)
    kinds = layer_tie_kinds(rep)
    assert kinds[0]["tie"] == "float" and kinds[0]["rounding"]


def test_float_only_tie_deeper_and_in_a_max_pool_window():
    model = _mlp(sizes=(8, 32, 32, 32, 4))
    prog = Program(model, torch.zeros(1, 8))
    r = float_tie(prog, _seed_input((1, 8), torch.float32, 3), depth=3, seed=0)
    assert r.ok, r.reason
    with torch.no_grad():
        assert model.pre_activations(r.input)[2].reshape(-1)[r.target.group].item() == 0.0
    assert r.exact_value != 0

    # a window of LeNet's first max-pool: two equal float entries whose exact values differ
    lenet, (ex,) = zoo.ZOO["lenet-f32"]()
    lp = Program(lenet, ex)
    r = float_tie(lp, ex, depth=2, seed=0)
    assert r.ok, r.reason
    assert r.target.label == "window" and r.exact_value != 0
    ev_fw, ev_ex = lp.float_eval(r.input)
    from mtcheck._synth import _tied

    assert _tied(ev_fw, r.target) and not _tied(ev_ex, r.target)
    with torch.no_grad():
        h = torch.relu(lenet.c1(r.input)).reshape(-1)
    disc = [d for d in ev_ex.discs[r.target.node] if d.label == "window"][0]
    sel = disc.group == r.target.group
    idx = sorted(set(disc.idx_a[sel].tolist()) | set(disc.idx_b[sel].tolist()))
    w = sorted((h[i].item() for i in idx), reverse=True)
    assert w[0] == w[1]                                      # the float window ties


# ------------------------------------------------------------------ the strategies

def test_float_ties_and_deep_ties_strategies_give_the_two_kinds():
    model = _mlp()
    got = {"exact": 0, "float": 0}

    @settings(max_examples=3, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(float_ties(model, shape=(1, 8), dtype=torch.float32, with_result=True))
    def run_float(case):
        x, r = case
        assert r.ok and r.exact_value != 0 and r.float_value == 0.0
        rep = mtcheck.check(model, x, **OPTS)
        assert rep.verdict == mtcheck.Verdict.ROUNDING_BRANCH
        got["float"] += layer_tie_kinds(rep)[_depth_of(Program(model, x), r.target.node) - 1]["tie"] == "float"

    @settings(max_examples=3, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(deep_ties(model, shape=(1, 8), dtype=torch.float32, with_result=True))
    def run_exact(case):
        x, r = case
        assert r.ok and all(r.exact) and all(r.in_float)
        rep = mtcheck.check(model, x, **OPTS)
        assert rep.verdict != mtcheck.Verdict.ROUNDING_BRANCH
        got["exact"] += layer_tie_kinds(rep)[_depth_of(Program(model, x), r.targets[0].node) - 1]["tie"] == "exact"

    run_float()
    run_exact()
    assert got["float"] >= 1 and got["exact"] >= 1


# ------------------------------------------------------------------ statistics: counted apart

def test_fixture_and_campaign_statistics_count_the_kinds_apart():
    model = _mlp()
    prog = Program(model, torch.zeros(1, 8))
    exact = synthesize(prog, _seed_input((1, 8), torch.float32, 1), [Target(prog.nonsmooth[0])], seed=1)
    fl = float_tie(prog, _seed_input((1, 8), torch.float32, 2), depth=1, seed=0)
    assert exact.ok and fl.ok
    reports = {"exact": mtcheck.check(model, exact.input, **OPTS), "float": mtcheck.check(model, fl.input, **OPTS),
               "none": mtcheck.check(model, _seed_input((1, 8), torch.float32, 5) + 1e-3, **OPTS)}
    assert [layer_tie_kinds(reports[k])[0]["tie"] for k in ("exact", "float", "none")] == ["exact", "float", "none"]

    st = FixtureStats(test="t", program="mlp")
    for k, rep in reports.items():
        st.add(Outcome((), f"input 0 float32[1, 8]: {k}", rep, 0.1))
    layers = st.as_dict()["layer_ties"]
    first = [e for e in layers if e["depth"] == 1][0]
    assert (first["exact"], first["float"], first["none"]) == (1, 1, 1)

    cs = CampaignStats()
    for rep in reports.values():
        cs.add_layers("mlp", _layer_kinds(rep))
    js = cs.as_json()["layer_ties"]["mlp"]
    first = [e for e in js if e["depth"] == 1][0]
    assert (first["exact"], first["float"], first["none"]) == (1, 1, 1)
    assert any("float-only 1" in line for line in cs.layer_lines())

    c = LayerTieCounter()
    for rep in reports.values():
        c.add(rep)
    assert c.as_dict()[0]["float"] == 1 and "float-only 1" in c.lines()[0]


def test_exact_tie_in_a_real_weight_cnn_max_pool_is_effective():
    # LeNet-5, default init, float32: an exact tie in the 2nd max-pool that PyTorch's float forward
    # also sees, between two live entries (not two dead relu zeros), and no rounding branch elsewhere
    model, (ex,) = zoo.ZOO["lenet-f32"]()
    prog = Program(model, ex)
    node = prog.nonsmooth[3]
    r = synthesize(prog, _seed_input(tuple(ex.shape), torch.float32, 7), [Target(node)], seed=0)
    assert r.ok and all(r.exact) and all(r.in_float), r.reason
    rep = mtcheck.check(model, r.input, **OPTS)
    assert rep.verdict == mtcheck.Verdict.ASSOCIATED, rep.explain()
    assert rep.tangent_dim < rep.n_inputs                  # an effective tie: it constrains the input
    assert layer_tie_kinds(rep)[3]["tie"] == "exact" and not rep.rounding_nodes


def test_both_tie_kinds_yields_the_kind_asked_for():
    from mtcheck.strategies import both_tie_kinds

    model = _mlp()
    seen = []

    @settings(max_examples=4, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(both_tie_kinds(model, shape=(1, 8), dtype=torch.float32, kinds=("float-only tie",)))
    def run(case):
        x, kind = case
        assert kind in ("float-only tie", "structured")     # a miss keeps the structured seed
        if kind == "float-only tie":
            assert mtcheck.check(model, x, **OPTS).verdict == mtcheck.Verdict.ROUNDING_BRANCH
        seen.append(kind)

    run()
    assert "float-only tie" in seen


def test_both_tie_kinds_bounds_each_float_search_and_the_campaign_uses_a_short_bound(monkeypatch):
    """A float-only search that misses costs its whole time budget: 20 s by default, which on the
    residual BN model was a third of the demo's minute; the campaign passes a short bound."""
    import mtcheck.float_ties as ft
    from mtcheck import campaign

    with pytest.raises(ValueError, match="max_seconds"):
        ft.both_tie_kinds(_mlp(), shape=(1, 8), dtype=torch.float32, max_seconds=0)
    asked = []
    real = ft.float_tie
    monkeypatch.setattr(ft, "float_tie", lambda *a, **k: asked.append(k["max_seconds"]) or real(*a, **k))

    @settings(max_examples=3, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(campaign.case_strategy("zoo:lenet-f32", campaign.Config(targets=["zoo:lenet-f32"], corpus="unused")))
    def run(case):
        pass

    run()
    assert asked and set(asked) == {campaign.FLOAT_TIE_SECONDS} and campaign.FLOAT_TIE_SECONDS <= 5


def test_both_tie_kinds_on_a_program_with_python_branches_draws_structured_inputs():
    """Deep-tie synthesis needs a branch-free program; on one that branches in Python (the zoo's
    paper-boustany) the strategy falls back to its structured inputs instead of raising (a
    campaign showed the raw ValueError as an error of the target)."""
    from hypothesis import HealthCheck, given, settings

    from mtcheck import zoo
    from mtcheck.float_ties import both_tie_kinds

    prog, (x,) = zoo.ZOO["paper-boustany"]()
    seen = []

    @settings(max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(both_tie_kinds(prog, shape=tuple(x.shape), dtype=x.dtype, kinds=("exact tie",)))
    def draw(pair):
        seen.append(pair[1])

    draw()
    assert seen and set(seen) == {"structured"}


def test_rounding_induced_ties_in_parameter_space():
    """A bias moved until PyTorch's float forward gives exactly 0 at a hidden unit, whose exact
    pre-activation is not 0: wrt="parameters" reports ROUNDING_BRANCH (a float-only tie); the strategy
    draws such copies and never touches the original model."""
    from hypothesis import HealthCheck, given, settings

    import mtcheck
    from mtcheck import zoo
    from mtcheck.strategies import float_param_tie, float_param_ties

    model, (x,) = zoo.ZOO["lenet-f32"]()
    before = model.f1.bias.detach().clone()
    tie = float_param_tie(model, x, "f1", 0)
    assert tie is not None and tie.kind == "float_bias" and tie.exact is False
    assert torch.equal(model.f1.bias.detach(), before)
    rep = mtcheck.check(tie.model, x, wrt="parameters", neighbours=False)
    assert rep.verdict is mtcheck.Verdict.ROUNDING_BRANCH, rep.explain()
    kinds = []

    @settings(max_examples=3, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(float_param_ties(model, x))
    def draw(t):
        kinds.append(t.kind)

    draw()
    assert kinds and set(kinds) <= {"float_bias", "none"} and "float_bias" in kinds
