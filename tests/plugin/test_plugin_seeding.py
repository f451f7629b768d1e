"""Seeds: printed in the header, random unless given, and a given seed reproduces the run exactly."""

import re

from plugin_helpers import BAD_TEST, GOOD_TEST, case_files


def _stats(res):
    out = res.stdout.str()
    return out[out.index("mtcheck statistics"):].splitlines()[1:5]


def test_header_prints_seed_and_corpus(tiny):
    res = tiny.runpytest("--mtcheck-seed=123", "--mtcheck-corpus=found")
    res.stdout.re_match_lines([r"mtcheck: seed 123 \(command line --mtcheck-seed; reproduce with --mtcheck-seed=123\), "
                               r"profile default \(20 examples, randomized, no deadline\), corpus .*found"])


def test_random_seed_is_printed_and_varies(tiny):
    seeds = set()
    for _ in range(3):
        res = tiny.runpytest()
        m = re.search(r"mtcheck: seed (\d+) \(random; reproduce with --mtcheck-seed=\1\)", res.stdout.str())
        assert m, res.stdout.str()
        seeds.add(m.group(1))
    assert len(seeds) > 1


def test_same_seed_same_run(tiny):
    tiny.makepyfile(test_good=GOOD_TEST)
    a = tiny.runpytest("--mtcheck-seed=99", "--mtcheck-show-statistics")
    b = tiny.runpytest("--mtcheck-seed=99", "--mtcheck-show-statistics")
    a.assert_outcomes(passed=1)
    # example counts, verdict counts and ties are identical (the timing line aside)
    sa, sb = _stats(a), _stats(b)
    assert [re.sub(r"[\d.]+ s per check", "", s) for s in sa] == [re.sub(r"[\d.]+ s per check", "", s) for s in sb]


def test_same_seed_same_finding(tiny):
    tiny.makepyfile(test_bad=BAD_TEST)
    tiny.runpytest("test_bad.py", "--mtcheck-seed=5", "--mtcheck-corpus=c1").assert_outcomes(failed=1)
    tiny.runpytest("test_bad.py", "--mtcheck-seed=5", "--mtcheck-corpus=c2").assert_outcomes(failed=1)
    n1 = [p.name for p in case_files(tiny.path / "c1")]
    n2 = [p.name for p in case_files(tiny.path / "c2")]
    assert n1 == n2 and len(n1) == 1


def test_rerun_finds_the_stored_case_first(tiny):
    """A second run replays the corpus case of the same model first (the durable regression path)."""
    tiny.makepyfile(test_bad=BAD_TEST)
    tiny.runpytest("test_bad.py", "--mtcheck-seed=5").assert_outcomes(failed=1)
    res = tiny.runpytest("test_bad.py", "--mtcheck-seed=6")
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*case      the inputs of corpus case *case-*.json (an earlier finding)*",
                              "*replay: pytest *case-*.json  (an earlier finding, still there)*"])
    assert len(case_files(tiny.path / "mtcheck-corpus")) == 1


def test_marker_seed_wins(tiny):
    tiny.makepyfile(test_m="""
        import pytest, torch
        from tinymodels import GoodNet

        @pytest.mark.mtcheck(seed=42)
        def test_m(mtcheck):
            assert mtcheck.seed == 42
            mtcheck.fuzz(GoodNet(), torch.zeros(4, dtype=torch.float64), max_examples=2)
    """)
    res = tiny.runpytest("--mtcheck-seed=1", "--mtcheck-show-statistics")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines(["*s per check, seed 42"])
