"""The catalogue generated from the OpInfo sweep: a row per op with the curated probes' rule at ties
and a Clarke column, the regenerate command in the header, and every finding of the sweep written
as a replayable corpus case (properties/opinfo_sweep.py: finding_cases, merge)."""

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("expecttest")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def S():
    spec = importlib.util.spec_from_file_location("opinfo_sweep", ROOT / "properties" / "opinfo_sweep.py")
    mod = sys.modules.get("opinfo_sweep")
    if mod is None:
        mod = importlib.util.module_from_spec(spec)
        sys.modules["opinfo_sweep"] = mod
        spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def result(S):
    a = S.sweep(["fmax"], jobs=1, samples=1)
    b = S.sweep(["sort", "nextafter"], jobs=1, samples=1)   # nextafter: refused (outside)
    return S.merge([b, a])


def test_merge_keeps_op_db_order(S, result):
    order = [S.op_key(op) for op in S.load_op_db()]
    keys = [r["op"] for r in result["ops"]]
    assert sorted(keys, key=order.index) == keys and set(keys) == {"fmax", "sort", "nextafter"}
    assert result["summary"]["ops"] == 3


def test_findings_become_replayable_cases(S, result, tmp_path):
    from mtcheck.corpus import iter_cases, replay_case

    fmax = next(r for r in result["ops"] if r["op"] == "fmax")
    if not fmax["findings"]:
        pytest.skip("this torch's fmax forward mode agrees with reverse mode at ties")
    recs = S.finding_cases(result, tmp_path)
    assert result["cases"] and all(c["file"] for c in result["cases"])
    assert {c["op"] for c in result["cases"]} == {"fmax"}
    cases = [c for _, c in iter_cases([tmp_path])]
    assert len(cases) == len(result["cases"]) <= len(recs)
    for case in cases:
        assert case.program["kind"] == "traced" and case.finding_kind == "forward_reverse"
        res = replay_case(case)
        assert res.status == "reproduces", res.text
        assert res.certificate.startswith("recorded: ok")


def test_rows_rules_clarke_and_header(result):
    from mtcheck import catalogue

    curated = catalogue.build_catalogue([v for v in catalogue.variants() if v.key == "torch.sort"], clarke=False)
    rows = {r["op"]: r for r in catalogue.sweep_rows(result, curated)}
    assert rows["sort"]["rule"].startswith("stable")
    assert rows["nextafter"]["reason"].startswith("discontinuous")
    assert "clarke" in rows["fmax"]
    md = catalogue.render_markdown(curated, sweep=result)
    assert md.splitlines()[2] == "Regenerate: `" + catalogue.REGENERATE + "`"
    assert "| op | rule at ties | verdict at ties | Clarke |" in md
    for op in ("fmax", "sort", "nextafter"):
        assert f"| `{op}` |" in md
