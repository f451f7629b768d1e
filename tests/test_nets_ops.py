"""The generated-network layers of PyTorch's other modelled nonsmooth ops (mtcheck.nets.OP_KINDS):
each builds, runs in torch, round-trips through JSON, and mtcheck.check decides it exactly on a small
tie instance; the generator draws them; the campaign names forward/reverse disagreements apart."""

import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings

import mtcheck
from mtcheck import nets
from mtcheck._gen import OP_GROUPS, networks
from mtcheck.nets import Layer, NetSpec, encode_tensor

F64 = torch.float64
DECIDED = ("SMOOTH_OK", "ASSOCIATED", "SMOOTH_WRONG", "NOT_ASSOCIATED")


def _t(vals, shape=None):
    t = torch.tensor(vals, dtype=F64)
    return t.reshape(shape) if shape is not None else t


def _far(m, d, v=-8.0):
    return encode_tensor(torch.tensor([[v - 8 * i] * d for i in range(m)], dtype=F64))


# kind -> (input shape, layers, a tie input)
CASES = {
    "sort": ((1, 4), [Layer("sort", {"dim": 1, "descending": True})], [1, 0, 1, 2]),
    "topk": ((1, 4), [Layer("topk", {"k": 2, "dim": 1, "largest": True})], [2, 0, 2, 1]),
    "kthvalue": ((1, 4), [Layer("kthvalue", {"k": 2, "dim": 1, "keepdim": True})], [1, 0, 0, 3]),
    "median": ((1, 2, 3), [Layer("median", {"dim": 2, "keepdim": True})], [1, 0, 0, 2, 2, 1]),
    "cummax": ((1, 4), [Layer("cummax", {"dim": 1})], [1, 0, 1, 2]),
    "cummin": ((1, 4), [Layer("cummin", {"dim": 1})], [0, 1, 0, -1]),
    "vector_norm": ((1, 3), [Layer("vector_norm", {"ord": "1", "dim": 1, "keepdim": True})], [1, 0, -2]),
    "cdist": ((1, 2), [Layer("cdist", {"p": "inf", "other": _far(1, 2)})], [2, 2]),
    "pdist": ((1, 2), [Layer("pdist", {"p": "inf", "rows": _far(1, 2, 0.0)})], [2, 2]),
    "scatter_reduce": ((1, 4), [Layer("scatter_reduce", {"reduce": "amax", "include_self": True, "index": [0, 0, 1, 1],
                                                         "m": 2, "self_src": "zeros"})], [1, 1, 0, 2]),
    "index_reduce": ((1, 4), [Layer("index_reduce", {"reduce": "amin", "include_self": False, "index": [0, 1, 0, 1],
                                                     "m": 2, "self_src": "zeros"})], [1, 0, 1, 2]),
    "embedding_bag": ((1, 4), [Layer("embedding_bag", {"mode": "max", "width": 2, "indices": [0, 1], "offsets": [0]})],
                      [1, 0, 1, 2]),
    "fmax": ((1, 3), [Layer("relu"), Layer("fmax", {}, [-1, 0])], [0, 1, -1]),
    "fmin": ((1, 3), [Layer("relu"), Layer("fmin", {}, [-1, 0])], [0, 1, -1]),
    "maximum": ((1, 3), [Layer("relu"), Layer("maximum", {}, [-1, 0])], [0, 1, -1]),
    "minimum": ((1, 3), [Layer("abs"), Layer("minimum", {}, [0, -1])], [0, 1, -1]),
    "clamp_tensor": ((1, 3), [Layer("relu"), Layer("clamp_tensor", {}, [-1, 0])], [0, 1, -1]),
    "prelu": ((1, 2, 2), [Layer("prelu", {"weight": encode_tensor(_t([0.25, 0.5]))})], [0, 1, -1, 0]),
}


def test_every_op_kind_has_a_case():
    assert set(CASES) == set(nets.OP_KINDS)
    assert set(nets.OP_KINDS) <= nets.NONSMOOTH_KINDS
    assert {k for g in OP_GROUPS.values() for k in g} == set(nets.OP_KINDS)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_op_layer_builds_runs_and_is_decided(kind):
    shape, layers, vals = CASES[kind]
    spec = NetSpec(shape, layers)
    again = NetSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again.to_dict() == spec.to_dict()
    assert kind in spec.describe() or kind.split("_")[0] in spec.describe()
    net = again.build()
    x = _t(vals, shape)
    with torch.no_grad():
        y = net(x)
    assert y.dtype == F64 and torch.isfinite(y).all() and y.shape == spec.output_shape
    rep = mtcheck.check(net, x, neighbours=False, forward_mode=True)
    assert str(rep.verdict) in DECIDED, rep.explain()
    assert rep.exact_mode                     # dyadic weights and inputs: every float64 value is exact
    assert rep.certificate_ok is not False
    assert rep.tangent_dim is not None and rep.tangent_dim < rep.n_inputs     # the input sits on a tie


def test_float32_build():
    shape, layers, vals = CASES["cdist"]
    net = NetSpec(shape, layers, "float32").build()
    assert net(_t(vals, shape).float()).dtype == torch.float32


@settings(max_examples=12, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(networks(families=("ops",), ops=True, max_layers=2))
def test_ops_family_starts_with_an_op(spec):
    assert any(lay.kind in nets.OP_KINDS for lay in spec.layers)
    assert NetSpec.from_json(spec.to_json()).to_dict() == spec.to_dict()
    with torch.no_grad():
        assert torch.isfinite(spec.build()(spec.example_input())).all()


@settings(max_examples=6, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(networks(families=("ops",), ops="index", max_layers=1))
def test_ops_restricted_to_a_group(spec):
    kinds = {lay.kind for lay in spec.layers if lay.kind in nets.OP_KINDS}
    assert kinds <= set(OP_GROUPS["index"])


def test_unknown_op_or_family_is_refused():
    with pytest.raises(ValueError):
        networks(ops=("no_such_op",))
    with pytest.raises(ValueError):
        networks(families=("rnn",))


def test_forward_reverse_finding_is_its_own_kind(tmp_path):
    """fmax at a tie: reverse mode takes the first operand, forward mode the second (torch 2.13).
    The campaign keys it FORWARD_REVERSE, apart from the bug verdicts; the corpus case replays it."""
    from mtcheck.campaign import FORWARD_REVERSE, finding_of
    from mtcheck.corpus import case_from_report, load_case, replay_case, save_case

    shape, layers, vals = CASES["fmax"]
    spec = NetSpec(shape, layers)
    net, x = spec.build(), _t(vals, shape)
    rep = mtcheck.check(net, x, neighbours=False, forward_mode=True)
    if rep.forward_matches_reverse is not False:
        pytest.skip("this torch's fmax forward mode agrees with reverse mode at ties")
    assert str(rep.verdict) == "ASSOCIATED"
    kind, ops = finding_of(rep)
    assert kind == FORWARD_REVERSE and ops == ["fmax"]
    case = case_from_report(spec, [x], rep, options={"neighbours": False, "forward_mode": True},
                            program=net, origin={"finding_kind": "forward_reverse"})
    path = save_case(tmp_path, case)
    loaded = load_case(path)
    assert loaded.finding_kind == "forward_reverse"
    res = replay_case(loaded)
    assert res.status == "reproduces", res.text
    assert "forward" in res.text


def test_finding_of_names_the_op_not_the_activation():
    from mtcheck.campaign import finding_of

    spec = NetSpec((1, 2), [Layer("relu"), Layer("scatter_reduce", {"reduce": "amax", "include_self": False,
                                                                    "index": [0, 0], "m": 1, "self_src": "slice"})])
    rep = mtcheck.check(spec.build(), _t([0.25, 0.0], (1, 2)), neighbours=False, forward_mode=False)
    found = finding_of(rep)
    if found is None:
        pytest.skip("this torch's scatter_reduce(amax, include_self=False) gradient is associated here")
    assert found[1] == ["scatter_reduce.two"]
