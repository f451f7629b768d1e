"""`mtcheck catalogue --diff` (mtcheck.catalogue_diff) and replay across torch versions ("fixed in torch X").

Fast: the diff tests use small hand-written catalogue JSONs; the replay tests use one corpus case
(scatter_reduce, a check of two scalars) edited so that its recorded finding no longer reproduces.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from mtcheck import catalogue_diff as D
from mtcheck.cli import main
from mtcheck.corpus import CorpusError, iter_cases, load_case, replay_case, save_case

REPO = Path(__file__).resolve().parents[1]
SCATTER_CASE = REPO / "corpus" / "case-9fa22b8e20e4b884264d7381c70c17e2e11708fe.json"   # SMOOTH_WRONG, torch 2.13


# ----------------------------------------------------------------- small catalogues

def _case(shape, verdict="ASSOCIATED", jac=(("1", "0"),), fwd=True, clarke=True, **kw):
    c = {"id": f"op::{shape}", "shape": shape, "inputs": "[0, 0]", "verdict": verdict, "exact": True,
         "framework_jacobian": [list(r) for r in jac], "forward_matches_reverse": fwd, "clarke": clarke,
         "clarke_exact": True}
    c.update(kw)
    return c


def _row(op, cases, rule="first index", verdict="associated", fr="agree", clarke="yes", torch_v="2.13.0+cpu"):
    return {"op": op, "family": "basic primitives", "torch": torch_v, "cases": cases, "rule": rule,
            "observed": f"tied [0]; [1]: {rule}", "verdict": verdict, "clarke": clarke, "forward_reverse": fr}


def _catalogues():
    old = {"mtcheck_catalogue": 1, "torch": "2.13.0+cpu", "mtcheck": "0.1.0", "rows": [
        _row("torch.clamp(x, lo, hi) tensor bounds", [_case("several inputs", jac=[["1", "0"]])]),
        _row("torch.bad", [_case("two-way")]),
        _row("torch.fixed", [_case("two-way", verdict="NOT_ASSOCIATED", jac=[["1", "1"]],
                                   witness={"direction": ["1", "1"], "output": 0, "framework_rate": "2",
                                            "stratum_rate": "1"})],
             verdict="NOT associated (NOT_ASSOCIATED)"),
        _row("torch.same", [_case("kink"), _case("dropped shape")]),
        _row("torch.gone", [_case("kink")]),
        _row("torch.budget", [_case("kink", clarke=True)]),
    ]}
    new = copy.deepcopy(old)
    new["torch"] = "2.14.1"
    for r in new["rows"]:
        r["torch"] = "2.14.1"
    by = {r["op"]: r for r in new["rows"]}
    clamp = by["torch.clamp(x, lo, hi) tensor bounds"]
    clamp.update(rule="uniform average over the tie")
    clamp["cases"][0]["framework_jacobian"] = [["1/2", "1/2"]]
    bad = by["torch.bad"]
    bad["verdict"] = "NOT associated (NOT_ASSOCIATED)"
    bad["cases"][0].update(verdict="NOT_ASSOCIATED", framework_jacobian=[["1", "1"]],
                           witness={"direction": ["1", "1"], "output": 0, "framework_rate": "2",
                                    "stratum_rate": "1"})
    fixed = by["torch.fixed"]
    fixed.update(verdict="associated")
    fixed["cases"][0].update(verdict="ASSOCIATED", framework_jacobian=[["1/2", "1/2"]])
    fixed["cases"][0].pop("witness")
    by["torch.same"]["cases"] = [by["torch.same"]["cases"][0], _case("new shape")]
    by["torch.budget"]["cases"][0]["clarke"] = None         # the neighbour enumeration's budget ran out
    new["rows"] = [r for r in new["rows"] if r["op"] != "torch.gone"] + [
        _row("torch.new", [_case("kink")], torch_v="2.14.1")]
    return old, new


def _by(diff, op, shape=None, scope=None):
    es = [e for e in diff["entries"] if e["op"] == op and e["tie_shape"] == shape
          and (scope is None or e["scope"] == scope)]
    assert len(es) == 1, (op, shape, es)
    return es[0]


def test_diff_statuses():
    old, new = _catalogues()
    d = D.diff_catalogues(old, new)
    assert (d["old_torch"], d["new_torch"]) == ("2.13.0+cpu", "2.14.1")
    # the rule at ties changed, both sides associated: both are correct
    assert _by(d, "torch.clamp(x, lo, hi) tensor bounds")["status"] == "changed, both associated"
    e = _by(d, "torch.clamp(x, lo, hi) tensor bounds", "several inputs")
    assert e["status"] == "changed, both associated"
    assert e["changes"] == [{"field": "reverse-mode Jacobian", "old": [["1", "0"]], "new": [["1/2", "1/2"]]}]
    # one side not associated: findings
    assert _by(d, "torch.bad", "two-way")["status"] == "finding: regression"
    assert _by(d, "torch.bad")["status"] == "finding: regression"
    assert _by(d, "torch.fixed", "two-way")["status"] == "finding: fixed"
    assert d["findings"] == 4
    # unchanged, added and removed, ops and tie shapes
    assert _by(d, "torch.same")["status"] == "unchanged"
    assert _by(d, "torch.same", "kink")["status"] == "unchanged"
    assert _by(d, "torch.same", "dropped shape")["status"] == "removed"
    assert _by(d, "torch.same", "new shape")["status"] == "added"
    assert _by(d, "torch.gone")["status"] == "removed"
    assert _by(d, "torch.new")["status"] == "added"
    # Clarke decided in one, undecided in the other: a budget, not a change of the rule
    assert _by(d, "torch.budget", "kink")["status"] == "changed, undecided"
    assert sum(d["summary"].values()) == len(d["entries"])
    # the findings the new version still has, and whether the old one had them
    nf = {(f["op"], f["tie_shape"]): f for f in d["new_findings"]}
    assert nf[("torch.bad", "two-way")]["in_other"] == "was ASSOCIATED"
    assert ("torch.fixed", "two-way") not in nf


def test_identical_catalogues_have_no_change():
    old, _ = _catalogues()
    d = D.diff_catalogues(old, copy.deepcopy(old))
    assert d["findings"] == 0 and d["same_torch"]
    assert {e["status"] for e in d["entries"]} == {"unchanged"}
    assert "any change below comes from mtcheck, not from torch" in D.render_markdown(d)


def test_markdown_and_json_renderings():
    old, new = _catalogues()
    d = D.diff_catalogues(old, new)
    md = D.render_markdown(d)
    assert md.startswith("# Tie semantics: torch 2.13.0+cpu → torch 2.14.1")
    assert ("| `torch.clamp(x, lo, hi) tensor bounds` | several inputs | reverse-mode Jacobian: [[1, 0]] → "
            "[[1/2, 1/2]]") in md
    assert "| changed, both associated |" in md
    assert "## Findings: one side not associated" in md and "finding: regression" in md
    assert "## Findings torch 2.14.1 still has" in md and "J t = 2, J_S t = 1" in md
    back = json.loads(D.render_json(d))
    assert back["diff_format"] == D.DIFF_FORMAT and back["summary"] == d["summary"]
    assert back["entries"] == json.loads(json.dumps(d["entries"]))


def _write(tmp_path, name, doc):
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


def test_command_md_json_and_exit_status(tmp_path):
    old, new = _catalogues()
    po, pn = _write(tmp_path, "old.json", old), _write(tmp_path, "new.json", new)
    r = CliRunner().invoke(main, ["catalogue", "--diff", str(po), str(pn)])
    assert r.exit_code == 1, r.output            # findings
    assert "changed, both associated" in r.output and "torch 2.13.0+cpu" in r.output
    out = tmp_path / "d.json"
    r = CliRunner().invoke(main, ["catalogue", "--diff", str(po), str(pn), "--format", "json", "--output", str(out)])
    assert r.exit_code == 1, r.output
    assert json.loads(out.read_text())["new_torch"] == "2.14.1"
    # no finding: exit 0
    for doc in (old, new):
        doc["rows"] = [x for x in doc["rows"] if x["op"] in ("torch.clamp(x, lo, hi) tensor bounds", "torch.same")]
    po, pn = _write(tmp_path, "old2.json", old), _write(tmp_path, "new2.json", new)
    r = CliRunner().invoke(main, ["catalogue", "--diff", str(po), str(pn)])
    assert r.exit_code == 0, r.output
    # NEW.json without --diff is a usage error
    r = CliRunner().invoke(main, ["catalogue", str(pn)])
    assert r.exit_code == 2 and "--diff" in r.output


@pytest.mark.parametrize("content, message", [
    ('{"torch": "2.13.0", "rows": [', "not valid JSON"),
    ("# PyTorch's gradients at ties\n", "Markdown catalogue"),
    ('[1, 2]', "not an mtcheck catalogue"),
    ('{"rows": []}', "does not record its torch version"),
    ('{"torch": "2.13.0"}', "no 'rows' list"),
    ('{"torch": "2.13.0", "ops": [], "summary": {}}', "OpInfo sweep"),
    ('{"mtcheck_case": 2, "program": {}}', "corpus case"),
    ('{"mtcheck_catalogue": 99, "torch": "2.13.0", "rows": []}', "format 99"),
    ('{"torch": "2.13.0", "rows": [{"family": "x"}]}', "row 0 is not an op row"),
    ('{"torch": "2.13.0", "rows": [{"op": "a", "cases": [1]}]}', "malformed tie shapes"),
    ('{"torch": "2.13.0", "rows": [{"op": "a"}, {"op": "a"}]}', "appears twice"),
    ('{"torch": "2.13.0", "rows": [{"op": "a", "torch": "2.14.1"}]}', "one catalogue must come from one torch"),
])
def test_corrupt_input_is_a_clear_error(tmp_path, content, message):
    bad = _write(tmp_path, "bad.json", content)
    good = _write(tmp_path, "good.json", _catalogues()[1])
    with pytest.raises(D.CatalogueDiffError, match="bad.json"):
        D.load_catalogue(bad)
    r = CliRunner().invoke(main, ["catalogue", "--diff", str(bad), str(good)])
    assert r.exit_code == 2
    assert message in r.output and "bad.json" in r.output and "Traceback" not in r.output


def test_mismatched_catalogues_are_a_clear_error(tmp_path):
    old, new = _catalogues()
    new["rows"] = [_row("torch.other", [_case("kink")], torch_v="2.14.1")]
    with pytest.raises(D.CatalogueDiffError, match="share no op"):
        D.diff_catalogues(old, new)
    r = CliRunner().invoke(main, ["catalogue", "--diff", str(tmp_path / "missing.json")])
    assert r.exit_code == 2 and "cannot read it" in r.output


def test_real_catalogue_json_records_its_torch_version():
    from mtcheck import catalogue

    rows = catalogue.build_catalogue([v for v in catalogue.variants() if v.key == "torch.relu"], clarke=False)
    doc = D.check_catalogue(json.loads(catalogue.render_json(rows)))
    assert doc["torch"] == torch.__version__ and doc["mtcheck_catalogue"] == 1 and doc["mtcheck"]
    d = D.diff_catalogues(doc, doc)
    assert {e["status"] for e in d["entries"]} == {"unchanged"}


# ----------------------------------------------------------------- replay across versions

def _not_reproducing_case(tmp_path, recorded_torch="2.12.0", fixed_in=None):
    """The scatter_reduce finding (SMOOTH_WRONG, include_self=False with self == src), moved to an input where
    self < src: PyTorch is right there, so the recorded finding does not reproduce (as after a fix)."""
    doc = json.loads(SCATTER_CASE.read_text())
    doc["inputs"][0]["hex"] = [(0.0).hex()]
    doc["versions"]["torch"] = recorded_torch
    doc.pop("certificate", None)
    if fixed_in is not None:
        doc["fixed_in"] = fixed_in
    d = tmp_path / "corpus"
    d.mkdir(exist_ok=True)
    p = d / "case-0000000000000000000000000000000000000001.json"
    p.write_text(json.dumps(doc))
    return p


def test_a_finding_gone_in_a_newer_torch_is_fixed_not_a_failure(tmp_path):
    case = load_case(_not_reproducing_case(tmp_path))
    assert case.fixed_in is None                      # an old case (schema 1, no marker) loads
    res = replay_case(case)
    assert res.status == "fixed" and res.old_verdict == "SMOOTH_WRONG" and res.new_verdict == "SMOOTH_OK"
    assert res.fixed_in == torch.__version__ and not res.marked
    assert f"fixed in torch {torch.__version__}" in res.text and "recorded SMOOTH_WRONG with torch 2.12.0" in res.text


def test_same_torch_release_is_a_change_not_a_fix(tmp_path):
    # the finding disappeared without a torch upgrade: that is mtcheck's change, not a fix in torch
    case = load_case(_not_reproducing_case(tmp_path, recorded_torch=torch.__version__))
    assert replay_case(case).status == "changed"


def test_marked_fixed_case(tmp_path):
    p = _not_reproducing_case(tmp_path)
    case = load_case(p)
    res = replay_case(case)
    save_case(p.parent, case.marked_fixed(res.report))
    marked = [c for _, c in iter_cases(p.parent) if getattr(c, "fixed_in", None)]
    assert len(marked) == 1
    m = marked[0]
    assert m.fixed_in["torch"] == torch.__version__ and m.fixed_in["verdict"] == "SMOOTH_OK"
    assert m.verdict == "SMOOTH_WRONG"                # the recorded finding is kept for older torch
    r2 = replay_case(m)
    assert r2.status == "fixed" and r2.marked and "marked in the case" in r2.text
    # marked fixed in a torch newer than this one: the recorded finding is expected here
    m.fixed_in = dict(m.fixed_in, torch="99.0.0")
    assert replay_case(m).status == "changed"


def test_marked_fixed_finding_that_is_back_is_a_regression(tmp_path):
    doc = json.loads(SCATTER_CASE.read_text())
    doc["fixed_in"] = {"torch": "2.0.0", "verdict": "SMOOTH_OK"}
    p = tmp_path / SCATTER_CASE.name
    p.write_text(json.dumps(doc))
    res = replay_case(load_case(p))
    assert res.status == "changed" and "the finding is back" in res.text and "regression" in res.text


def test_corrupt_fixed_marker_is_a_load_error(tmp_path):
    p = _not_reproducing_case(tmp_path, fixed_in={"torch": 2.14})
    with pytest.raises(CorpusError, match="fixed_in"):
        load_case(p)


def test_replay_command_reports_fixed_and_marks_it(tmp_path):
    p = _not_reproducing_case(tmp_path)
    r = CliRunner().invoke(main, ["replay", str(p.parent)])
    assert r.exit_code == 0, r.output
    assert "FIXED" in r.output and f"fixed in torch {torch.__version__}" in r.output
    assert "1 fixed in a newer torch" in r.output and "(recorded with torch 2.12.0)" in r.output
    r = CliRunner().invoke(main, ["replay", "--mark-fixed", str(p.parent)])
    assert r.exit_code == 0 and "marked fixed in torch" in r.output
    # save_case names the file by the case's identity (its content), so it is found by content
    marked = [c for _, c in iter_cases(p.parent) if getattr(c, "fixed_in", None)]
    assert [c.fixed_in["torch"] for c in marked] == [torch.__version__]


def test_pytest_collection_passes_a_fixed_case(tmp_path):
    p = _not_reproducing_case(tmp_path)
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "-v",
                        "--rootdir", str(tmp_path), str(p.parent)], capture_output=True, text=True, cwd=tmp_path,
                       timeout=240)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert f"FIXED IN TORCH {torch.__version__}" in out and "1 fixed in a newer torch" in out


# ----------------------------------------------------------------- the per-version record (--expect, --record)

def test_expect_and_record(tmp_path):
    old, new = _catalogues()
    po, pn = _write(tmp_path, "old.json", old), _write(tmp_path, "new.json", new)
    exp = _write(tmp_path, "versions.json", {"format": 1, "baseline": "2.13.0", "versions": {}})
    r = CliRunner().invoke(main, ["catalogue", "--diff", str(po), str(pn), "--expect", str(exp)])
    assert r.exit_code == 1 and "no record for torch 2.14.1" in r.output
    r = CliRunner().invoke(main, ["catalogue", "--diff", str(po), str(pn), "--expect", str(exp), "--record"])
    assert r.exit_code == 0, r.output
    rec = json.loads(exp.read_text())["versions"]["2.14.1"]
    assert {"op": "torch.bad", "tie_shape": "two-way", "kind": "NOT_ASSOCIATED"} in rec["catalogue_findings"]
    assert not any(c["op"] == "torch.budget" for c in rec["catalogue_changes"])     # budget-only: not recorded
    r = CliRunner().invoke(main, ["catalogue", "--diff", str(po), str(pn), "--expect", str(exp)])
    assert r.exit_code == 0 and "is the one recorded" in r.output
    # a change the record does not have
    new["rows"][0]["cases"][0]["framework_jacobian"] = [["0", "1"]]
    d = D.diff_catalogues(old, new)
    problems = D.check_expected(d, json.loads(exp.read_text()))
    assert problems == []            # the same entry, the same fields: the values are in the diff, not the record
    new["rows"][0]["cases"][0]["verdict"] = "NOT_ASSOCIATED"
    problems = D.check_expected(D.diff_catalogues(old, new), json.loads(exp.read_text()))
    assert any("not recorded for torch 2.14.1" in p and "torch.clamp" in p for p in problems)
    assert D.torch_release("2.14.1+cu130") == "2.14.1" and D.torch_release("2.13.0+cpu") == "2.13.0"


def test_the_checked_in_record_has_a_baseline_and_a_2_14_1_record():
    doc = json.loads((REPO / "properties" / "torch_versions.json").read_text())
    assert doc["baseline"] == "2.13.0"
    rec = doc["versions"]["2.14.1"]
    ops = {c["op"] for c in rec["catalogue_changes"]}
    assert {"torch.clamp(min=0, max=1) (kink at 1)", "torch.clamp(x, lo, hi) tensor bounds", "torch.fmax",
            "torch.fmin", "torch.clamp(x, min=y) tensor bound"} <= ops
    assert all(c["status"] == "changed, both associated" for c in rec["catalogue_changes"])
    # the fmax forward/reverse campaign finding is fixed by 2.14's uniform split; every other case reproduces
    assert rec["corpus_fixed"] == ["case-bc0564df438429edbc43c4837ffd70e825815b1c.json"]
    assert rec["pytest_expected_failures"]


def test_a_forward_reverse_finding_gone_in_a_newer_torch_is_fixed(tmp_path):
    """The fmax forward/reverse finding (relu then fmax at 0 == 0) recorded with an older torch and
    replayed where the two modes agree (moved off the tie, as after the 2.14 change) is "fixed"."""
    src = Path(__file__).parent.parent / "corpus" / "case-bc0564df438429edbc43c4837ffd70e825815b1c.json"
    doc = json.loads(src.read_text())
    assert doc["origin"]["finding_kind"] == "forward_reverse"
    doc["inputs"][0]["hex"] = [(1.0).hex(), (0.5).hex()]
    doc["versions"]["torch"] = "2.12.0"
    doc.pop("certificate", None)
    d = tmp_path / "corpus"
    d.mkdir()
    p = d / "case-0000000000000000000000000000000000000002.json"
    p.write_text(json.dumps(doc))
    if doc.get("weights"):
        import shutil

        for ext in (".safetensors",):
            s = src.with_suffix(ext)
            if s.exists():
                shutil.copy(s, p.with_suffix(ext))
    res = replay_case(load_case(p))
    assert res.status == "fixed", res.text
    assert f"fixed in torch {torch.__version__}" in res.text
