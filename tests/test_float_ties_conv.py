"""Float-only (rounding-induced) ties at the relus after LeNet's convolutions, float32.

PyTorch's CPU float32 convolution is one FMA chain per output (mtcheck._fma_ties); it ends at
exactly 0.0 only when its last product is a float, which the generic float search never arranges.
mtcheck._fma_ties.fma_float_tie makes the last live activation short and lands the chain's
partial sum on the float that cancels it, through roundings that exact arithmetic does not have."""

from fractions import Fraction

import pytest
import torch

import mtcheck
from mtcheck import zoo
from mtcheck._fma_ties import _f32_key, _line_zero, fma_float_tie
from mtcheck._synth import Program, Target, synthesize
from mtcheck.float_ties import FloatTieResult, float_tie, layer_tie_kinds

OPTS = dict(neighbours=False, forward_mode=False)


@pytest.fixture(scope="module")
def lenet():
    model, (ex,) = zoo.ZOO["lenet-f32"]()          # torch.manual_seed(0), PyTorch's default init
    return model, ex, Program(model, ex)


def _exact_conv1(model, x, unit):
    """conv1's pre-activation ``unit`` in exact rationals, independently of mtcheck."""
    W = model.c1.weight.detach()
    o, rem = divmod(unit, 24 * 24)
    i, j = divmod(rem, 24)
    s = Fraction(float(model.c1.bias.detach()[o]))
    for kh in range(5):
        for kw in range(5):
            s += Fraction(float(x[0, 0, i + kh, j + kw])) * Fraction(float(W[o, 0, kh, kw]))
    return s


def _as_fraction(v):
    return Fraction(int(v.p), int(v.q))


def test_float_only_tie_at_lenet_conv1_relu_is_a_rounding_branch(lenet):
    model, ex, prog = lenet
    node = prog.nonsmooth[0]
    r = float_tie(prog, ex, Target(node), seed=0)
    assert r.ok, r.reason
    assert r.target.node == node and r.target.label == "relu" and r.node_label == "relu#1"
    u = r.target.group
    with torch.no_grad():
        pre = model.c1(r.input)                    # PyTorch's own float32 forward
    assert pre.reshape(-1)[u].item() == 0.0
    exact = _exact_conv1(model, r.input, u)
    assert exact != 0 and exact == _as_fraction(r.exact_value)
    rep = mtcheck.check(model, r.input, **OPTS)
    assert rep.verdict == mtcheck.Verdict.ROUNDING_BRANCH, rep.explain()
    assert any(n.startswith("relu#1 ") for n in rep.rounding_nodes)
    entries = [e for e in rep.certificate["rounding"] if e["node"].startswith("relu#1 ")]
    assert any(e["framework"] == "0" and Fraction(e["exact"]) == exact for e in entries)
    assert layer_tie_kinds(rep)[0] == {"depth": 1, "node": "relu#1", "kind": "relu", "tie": "float",
                                       "rounding": True}

    # told apart from an exact tie at the same relu: exact value 0, float 0, no rounding branch
    s = synthesize(prog, ex, [Target(node)], seed=0)
    assert s.ok and all(s.exact) and all(s.in_float), s.reason
    (t,) = s.targets
    with torch.no_grad():
        assert model.c1(s.input).reshape(-1)[t.group].item() == 0.0
    assert _exact_conv1(model, s.input, t.group) == 0
    rep2 = mtcheck.check(model, s.input, **OPTS)
    assert rep2.verdict != mtcheck.Verdict.ROUNDING_BRANCH, rep2.explain()
    assert not any(n.startswith("relu#1 ") for n in rep2.rounding_nodes)
    assert layer_tie_kinds(rep2)[0]["tie"] == "exact"


def test_float_only_tie_at_lenet_conv2_relu_hidden_activations(lenet):
    # the second convolution reads relu + max-pool activations: the last one is tuned to a short
    # value through a pixel it depends on, the chain landed on 0.0 through the others
    model, ex, prog = lenet
    node = prog.nonsmooth[2]
    res = FloatTieResult(None, False, Target(node), prog.trace.nodes[node].label)
    assert fma_float_tie(prog, ex, Target(node), res, seed=0)
    u = res.target.group
    with torch.no_grad():
        h = torch.nn.functional.max_pool2d(torch.relu(model.c1(res.input)), 2)
        assert model.c2(h).reshape(-1)[u].item() == 0.0
    assert res.exact_value != 0
    rep = mtcheck.check(model, res.input, **OPTS)
    assert rep.verdict == mtcheck.Verdict.ROUNDING_BRANCH, rep.explain()
    assert any(n.startswith("relu#5 ") for n in rep.rounding_nodes)
    assert layer_tie_kinds(rep)[2]["tie"] == "float"


def test_the_construction_declines_what_it_does_not_model(lenet):
    model, ex, prog = lenet
    res = FloatTieResult(None, False)
    # a max-pool window, a relu fed by a linear layer: not an FMA convolution chain
    assert not fma_float_tie(prog, ex, Target(prog.nonsmooth[1]), res)
    assert not fma_float_tie(prog, ex, Target(prog.nonsmooth[4]), res)
    # float16: PyTorch's half convolution is not the float32 FMA chain modelled here
    m16, (x16,) = zoo.ZOO["lenet-f32"](dtype=torch.float16)
    p16 = Program(m16, x16)
    assert not fma_float_tie(p16, x16, Target(p16.nonsmooth[0]), res)
    assert not res.ok and res.input is None


def test_line_search_over_float32_keys():
    # f(k) = value at the float32 of key k; a zero that lies on a float is found, a jump is bracketed
    from mtcheck._fma_ties import _f32_of

    def f(k):
        return _f32_of(k) - 0.75

    kz, br, _ = _line_zero(f, _f32_key(0.5), f(_f32_key(0.5)), _f32_key(0.6), 80)
    assert kz is not None and _f32_of(kz) == 0.75

    def g(k):                                      # no float zero: jumps from -1 to +1 at 0.7
        return -1.0 if _f32_of(k) < 0.7 else 1.0

    kz, br, _ = _line_zero(g, _f32_key(0.5), -1.0, _f32_key(0.6), 200)
    assert kz is None and br is not None and abs(br[1] - br[0]) == 1
    assert min(_f32_of(br[0]), _f32_of(br[1])) < 0.7 <= max(_f32_of(br[0]), _f32_of(br[1]))
