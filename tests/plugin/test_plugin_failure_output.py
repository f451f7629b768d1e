"""A failing fuzz call prints verdict, node and case, witness, an assert_close summary and one replay line."""

import re

from plugin_helpers import BAD_TEST, GOOD_TEST, case_files


def test_failure_text(tiny):
    tiny.makepyfile(test_bad=BAD_TEST)
    res = tiny.runpytest("--mtcheck-seed=7", "-p", "no:cacheprovider")
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    # loose snapshot: the lines and their order, not the numbers that may move
    expected = [
        r"E\s+mtcheck\.errors\.MtcheckError: mtcheck: NOT_ASSOCIATED gradient in BadNet after \d+ examples? "
        r"\(.*; seed 7\)",
        r"E\s+verdict   NOT_ASSOCIATED: along a direction that stays in the input's stratum",
        r"E\s+where     amax#\d+ \(\w+\) at .*tinymodels\.py:\d+ in forward: .*",
        r"E\s+ties: window 0: entries \[0, 1\]",
        r"E\s+case      input 0 float64\[4\]: zeros",
        r"E\s+witness   direction t = \((-?)1, \1 ?1, 0, 0\) stays in the stratum",
        r"E\s+output\[0\]: framework J t = -?2, program J_S t = -?1",
        r"E\s+exact: f\(x\) = 0, f\(x \+ h t\) = -?1 with h = 1",
        r"E\s+Compared: .*\(exact comparison, no tolerance\)\.",
        r"E\s+Mismatched elements: \d+ / \d+ \(\d+\.\d%\)",
        r"E\s+Greatest absolute difference: .*",
        r"E\s+replay: pytest mtcheck-corpus/case-[0-9a-f]{40}\.json  \(written now\); "
        r"search again: pytest 'test_bad\.py::test_bad' --mtcheck-seed=7",
    ]
    pos = 0
    for pat in expected:
        m = re.compile(pat, re.M).search(out, pos)
        assert m, f"missing (in order): {pat}\n---\n{out}"
        pos = m.end()
    # the failure is the message, not a traceback through mtcheck's internals
    assert "_fuzz.py" not in out and "pytest_plugin.py" not in out
    assert "mtcheck wrote" in out and "replay them with: pytest mtcheck-corpus" in out
    assert len(case_files(tiny.path / "mtcheck-corpus")) == 1


def test_passing_model_passes(tiny):
    from plugin_helpers import GOOD_TEST

    tiny.makepyfile(test_good=GOOD_TEST)
    res = tiny.runpytest("--mtcheck-seed=1", "--mtcheck-show-statistics")
    res.assert_outcomes(passed=1)
    res.stdout.re_match_lines([r".*mtcheck statistics.*", r"test_good.py::test_good \(GoodNet\):",
                               r"  - \d+ distinct examples \(1 explicit, \d+ generated\), .* s per check, seed 1",
                               r"  - verdicts: .*ASSOCIATED \d+.*", r"  - ties per example: min \d+, median \d+, max \d+"])
    assert not (tiny.path / "mtcheck-corpus").exists()


def test_check_input_error_is_clear(tiny):
    tiny.makepyfile(test_err="""
        import torch
        def test_err(mtcheck):
            mtcheck.fuzz(lambda x: torch.floor(x).sum(), torch.ones(3, dtype=torch.float64))
    """)
    res = tiny.runpytest()
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*outside the theory*"])


def test_checker_crash_is_reported_as_mtcheck_bug(tiny):
    tiny.makeconftest("""
        import mtcheck._fuzz as fz
        real = fz._check
        def crashing(fn, *inputs, **kw):
            if float(inputs[0].abs().sum()) == 0:
                raise OverflowError("simulated crash inside the checker")
            return real(fn, *inputs, **kw)
        fz._check = crashing
        def pytest_unconfigure(config):
            fz._check = real
    """)
    tiny.makepyfile(test_good=GOOD_TEST)
    res = tiny.runpytest("test_good.py", "--mtcheck-seed=3")
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*mtcheck itself failed (a bug in mtcheck) while checking GoodNet after * (shrunk by "
                              "Hypothesis; seed 3)*",
                              "*error     OverflowError: simulated crash inside the checker*",
                              "*case      input 0 float64[[]4[]]: zeros*",
                              "*replay: pytest 'test_good.py::test_good' --mtcheck-seed=3  (no case written*"])


def test_explicit_check(tiny):
    tiny.makepyfile(test_explicit="""
        import torch
        from tinymodels import BadNet, GoodNet

        def test_good_at_a_tie(mtcheck):
            mtcheck.check(GoodNet(), torch.tensor([1.0, 1.0, 2.0, 2.0], dtype=torch.float64))

        def test_bad_at_a_tie(mtcheck):
            mtcheck.check(BadNet(), torch.tensor([1.0, 1.0, 2.0, 3.0], dtype=torch.float64))
    """)
    res = tiny.runpytest("test_explicit.py", "--mtcheck-seed=0")
    res.assert_outcomes(passed=1, failed=1)
    res.stdout.fnmatch_lines(["*mtcheck: NOT_ASSOCIATED gradient in BadNet after 1 example (no shrinking needed; seed 0)*",
                              "*case      the example inputs as given*",
                              "*replay: pytest mtcheck-corpus/case-*.json  (written now)*"])


def test_no_case_when_model_cannot_be_rebuilt_or_corpus_off(tiny):
    tiny.makepyfile(test_local="""
        import torch
        from tinymodels import AllTiedMax

        def test_local(mtcheck):
            class Local(torch.nn.Module):
                def forward(self, x):
                    return AllTiedMax.apply(x).sum()
            mtcheck.fuzz(Local(), torch.zeros(4, dtype=torch.float64), max_examples=2)
    """)
    res = tiny.runpytest("test_local.py")
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*replay: pytest 'test_local.py::test_local' --mtcheck-seed=* (no case written: "
                              "test_local:test_local.<locals>.Local is defined inside a function, which a replay cannot "
                              "import (or pass factory='package.module:make_model' to fuzz))"])
    tiny.makepyfile(test_bad=BAD_TEST)
    res = tiny.runpytest("test_bad.py", "--mtcheck-corpus=none")
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*(no case written: the corpus is off)*"])
    assert not (tiny.path / "mtcheck-corpus").exists() and not (tiny.path / "none").exists()
