"""mtcheck.corpus: bit-exact round trips, content-hash names, atomic files, replay statuses."""

import json

import pytest
import torch

import mtcheck
from mtcheck.corpus import (SCHEMA_VERSION, Case, build_program, case_from_report, iter_cases, load_case,
                            replay_case, save_case)
from mtcheck.zoo import ZOO

OPTS = {"neighbours": False, "forward_mode": False}


def _case(name="paper-boustany", **kw):
    fn, inputs = ZOO[name]()
    rep = mtcheck.check(fn, *inputs, **OPTS)
    return case_from_report(f"zoo:{name}", inputs, rep, 0, program=fn, options=OPTS, **kw)


def test_round_trip_is_bit_exact(tmp_path):
    special = torch.tensor([-0.0, 0.0, 2.0 ** -1074, 1e308, -3.5, 0.1], dtype=torch.float64)
    big = torch.randn(3, 10, 10, dtype=torch.float32)            # > 256 elements: in the sidecar
    half = torch.tensor([0.1, -2.5, 65504.0], dtype=torch.float16)
    bf = torch.tensor([0.1, -2.5, 3.0e38], dtype=torch.bfloat16)
    ints = torch.tensor([[1, -2], [3, 4]], dtype=torch.int64)
    c = _case()
    c.inputs = [special, big, half, bf, ints]
    p = save_case(tmp_path, c)
    back = load_case(p)
    for a, b in zip(c.inputs, back.inputs):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a.view(-1).view(torch.uint8) if a.dtype.is_floating_point else a,
                           b.view(-1).view(torch.uint8) if b.dtype.is_floating_point else b)
    assert back.case_id == c.case_id == p.stem[5:]
    assert p.with_suffix(".safetensors").exists()
    doc = json.loads(p.read_text())
    assert doc["mtcheck_case"] == SCHEMA_VERSION and doc["inputs"][0]["hex"][0] == "-0x0.0p+0"
    assert doc["inputs"][1]["tensor"] == "input/1"


def test_name_is_identity_not_expectation(tmp_path):
    c = _case()
    p1 = save_case(tmp_path, c)
    c2 = _case(origin={"test": "elsewhere"})
    c2.expected = dict(c2.expected, verdict="UNKNOWN")
    assert save_case(tmp_path, c2) == p1                      # same identity, same file, rewritten
    assert load_case(p1).verdict == "UNKNOWN"
    c3 = _case("paper-maxpool")
    assert save_case(tmp_path, c3) != p1
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]   # no temp files left


def test_replay_statuses(tmp_path):
    c = _case()
    p = save_case(tmp_path, c)
    r = replay_case(load_case(p))
    assert (r.status, r.old_verdict, r.new_verdict) == ("reproduces", "ASSOCIATED", "ASSOCIATED")
    c.expected = dict(c.expected, verdict="NOT_ASSOCIATED")
    save_case(tmp_path, c)
    r = replay_case(load_case(p))
    assert r.status == "changed" and "recorded NOT_ASSOCIATED, now ASSOCIATED" in r.text and str(p) in r.text
    up = load_case(p).updated(r.report)
    assert save_case(tmp_path, up) == p and load_case(p).verdict == "ASSOCIATED"


def test_import_program_with_weights(tmp_path):
    m = ZOO["mlp"](sizes=(4, 6, 2))[0]
    x = torch.zeros(1, 4, dtype=torch.float64)
    rep = mtcheck.check(m, x, **OPTS)
    c = case_from_report("mtcheck.zoo:MLP", [x], rep, 0, program=m, options=OPTS)
    c.program["kwargs"] = {"sizes": [4, 6, 2]}
    p = save_case(tmp_path, c)
    fn, inputs = build_program(load_case(p))
    for (k, a), (k2, b) in zip(m.state_dict().items(), fn.state_dict().items()):
        assert k == k2 and a.dtype == b.dtype and torch.equal(a, b)
    assert not fn.training
    assert replay_case(load_case(p)).status == "reproduces"


def test_iter_cases_orders_and_isolates(tmp_path):
    save_case(tmp_path, _case())
    save_case(tmp_path, _case("paper-maxpool"))
    (tmp_path / ("case-" + "0" * 40 + ".json")).write_text("")
    out = list(iter_cases(tmp_path))
    assert [p.name for p, _ in out] == sorted(p.name for p, _ in out)
    assert sum(isinstance(c, Case) for _, c in out) == 2 and sum(isinstance(c, Exception) for _, c in out) == 1


def test_unknown_program_reference():
    fn, inputs = ZOO["paper-boustany"]()
    rep = mtcheck.check(fn, *inputs, **OPTS)
    with pytest.raises(mtcheck.CheckInputError, match="cannot record program reference"):
        case_from_report(42, inputs, rep, 0)


def test_net_program(tmp_path):
    nets = pytest.importorskip("mtcheck.nets")
    from hypothesis import find, settings

    from mtcheck.strategies import networks

    spec = find(networks(families=("mlp",), max_layers=3), lambda s: len(s) >= 2,
                settings=settings(database=None, max_examples=50))
    m = spec.build()
    x = spec.example_input()
    rep = mtcheck.check(m, x, **OPTS)
    p = save_case(tmp_path, case_from_report(spec, [x], rep, 0, program=m, options=OPTS))
    case = load_case(p)
    assert case.program["kind"] == "net" and nets.NetSpec.from_dict(case.program["spec"]).to_dict() == spec.to_dict()
    assert replay_case(case).status == "reproduces"
