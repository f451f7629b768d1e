"""--mtcheck-update-corpus rewrites the expectation of changed cases, with a summary line."""

import json

from plugin_helpers import copy_paper_corpus, edit_case


def test_update_rewrites_expectations(tiny):
    cases = copy_paper_corpus(tiny.path / "corpus")
    target = [c for c in cases if "paper-boustany" in c.read_text()][0]
    edit_case(target, lambda d: d["expected"].update(verdict="SMOOTH_WRONG"))
    tiny.runpytest("corpus").assert_outcomes(passed=3, failed=1)

    res = tiny.runpytest("corpus", "--mtcheck-update-corpus", "-v")
    res.assert_outcomes(passed=4)
    res.stdout.fnmatch_lines([f"*{target.name}::zoo:paper-boustany UPDATED*",
                              f"mtcheck: updated 1 case expectation: {target.name} SMOOTH_WRONG -> ASSOCIATED"])
    doc = json.loads(target.read_text())
    assert doc["expected"]["verdict"] == "ASSOCIATED"
    assert sorted(p.name for p in (tiny.path / "corpus").iterdir()) == sorted(p.name for p in cases)  # same files
    tiny.runpytest("corpus").assert_outcomes(passed=4)


def test_update_leaves_unchanged_cases_alone(tiny):
    cases = copy_paper_corpus(tiny.path / "corpus")
    before = {c: c.read_bytes() for c in cases}
    res = tiny.runpytest("corpus", "--mtcheck-update-corpus")
    res.assert_outcomes(passed=4)
    assert "updated" not in res.stdout.str().split("mtcheck corpus:")[1].split("errors")[1]
    assert {c: c.read_bytes() for c in cases} == before


def test_update_from_environment(tiny, monkeypatch):
    cases = copy_paper_corpus(tiny.path / "corpus")
    edit_case(cases[0], lambda d: d["expected"].update(verdict="UNKNOWN"))
    monkeypatch.setenv("MTCHECK_UPDATE_CORPUS", "1")
    tiny.runpytest("corpus").assert_outcomes(passed=4)
