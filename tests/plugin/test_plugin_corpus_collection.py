"""`pytest corpus/` collects every case file as a test item that replays it."""

from plugin_helpers import REPO, copy_paper_corpus, edit_case


def test_paper_corpus_replays(tiny):
    cases = copy_paper_corpus(tiny.path / "corpus")
    assert len(cases) == 4
    res = tiny.runpytest("corpus", "-v")
    res.assert_outcomes(passed=4)
    res.stdout.fnmatch_lines(["*corpus/case-*.json::zoo:paper-boustany PASSED*",
                              "*mtcheck corpus: 4 cases replayed: 0 still reproduce (known findings), "
                              "4 pass as recorded, 0 changed, 0 updated, 0 errors*"])


def test_known_finding_passes_as_still_reproduces(tiny):
    from plugin_helpers import BAD_TEST

    tiny.makepyfile(test_bad=BAD_TEST)
    tiny.runpytest("test_bad.py", "--mtcheck-seed=1").assert_outcomes(failed=1)
    res = tiny.runpytest("mtcheck-corpus", "-v")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines(["*case-*.json::tinymodels:BadNet STILL REPRODUCES*",
                              "*1 still reproduce (known findings)*"])


def test_changed_verdict_fails_side_by_side(tiny):
    cases = copy_paper_corpus(tiny.path / "corpus")
    target = [c for c in cases if "paper-maxpool" in c.read_text()][0]
    edit_case(target, lambda d: d["expected"].update(verdict="NOT_ASSOCIATED"))
    res = tiny.runpytest("corpus")
    res.assert_outcomes(passed=3, failed=1)
    out = res.stdout.str()
    assert f"corpus/{target.name}: verdict changed for zoo:paper-maxpool: recorded NOT_ASSOCIATED, now ASSOCIATED" \
        in out
    res.stdout.re_match_lines([r"\s+recorded\s+now", r"\s+verdict\s+NOT_ASSOCIATED\s+ASSOCIATED",
                               r"\s+torch\s+\S+\s+\S+"])
    assert "--mtcheck-update-corpus" in out
    # the failure points at the file, not at a traceback through mtcheck
    assert "Traceback" not in out and "corpus.py:" not in out
    res.stdout.fnmatch_lines([f"FAILED corpus/{target.name}::zoo:paper-maxpool*"])


def test_only_case_files_are_collected(tiny):
    (tiny.path / "data").mkdir()
    (tiny.path / "data" / "case-1.json").write_text("{}")
    (tiny.path / "data" / "settings.json").write_text("{}")
    (tiny.path / "data" / ("case-" + "a" * 40 + ".txt")).write_text("{}")
    res = tiny.runpytest("data")
    assert res.ret == 5   # no tests collected


def test_repo_tests_are_not_collected_as_cases():
    """The repo's own test tree holds no file that looks like a case."""
    from mtcheck.pytest_plugin import _CASE_RE

    hits = [p for p in (REPO / "tests").rglob("*.json") if _CASE_RE.match(p.name)]
    assert hits == []
