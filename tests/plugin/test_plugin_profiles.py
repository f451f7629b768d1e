"""Profiles and the one precedence chain: marker > command line > environment > ini > profile default."""

import pytest

COUNT_TEST = """
    import pytest, torch
    from tinymodels import GoodNet

    def test_count(mtcheck):
        s = mtcheck.fuzz(GoodNet(), torch.zeros(4, dtype=torch.float64))
        print("MAX", s["explicit"], s["generated"])
"""


@pytest.fixture
def counting(tiny, monkeypatch):
    for k in ("MTCHECK_PROFILE", "MTCHECK_SEED", "MTCHECK_MAX_EXAMPLES", "MTCHECK_CORPUS"):
        monkeypatch.delenv(k, raising=False)
    tiny.makepyfile(test_count=COUNT_TEST)
    return tiny


def _header(res):
    return [ln for ln in res.stdout.lines if ln.startswith("mtcheck: seed")][0]


def test_profiles_in_header(counting):
    assert "profile default (20 examples, randomized, no deadline)" in _header(counting.runpytest())
    h = _header(counting.runpytest("--mtcheck-profile=ci"))
    assert "seed 0 (profile 'ci' (derandomized)" in h and "profile ci (20 examples, derandomized" in h
    assert "profile fuzz (500 examples, randomized" in _header(counting.runpytest("--mtcheck-profile=fuzz"))


def test_ci_is_derandomized(counting):
    a = counting.runpytest("--mtcheck-profile=ci", "-s")
    b = counting.runpytest("--mtcheck-profile=ci", "-s")
    runs = [[ln for ln in r.stdout.lines if "MAX" in ln] for r in (a, b)]
    assert runs[0] == runs[1] and runs[0]


def test_precedence_chain(counting, monkeypatch):
    counting.makeini("[pytest]\nmtcheck_max_examples = 3\nmtcheck_profile = fuzz\n")
    res = counting.runpytest("-s")       # ini beats the profile default (fuzz: 500)
    assert "profile fuzz (3 examples" in _header(res)
    monkeypatch.setenv("MTCHECK_MAX_EXAMPLES", "4")
    assert "(4 examples" in _header(counting.runpytest("-s"))          # environment beats ini
    monkeypatch.setenv("MTCHECK_PROFILE", "ci")
    res = counting.runpytest("--mtcheck-profile=default", "-s")          # command line beats environment
    assert "profile default (4 examples" in _header(res)
    counting.makepyfile(test_count=COUNT_TEST.replace("def test_count", "@pytest.mark.mtcheck(max_examples=1)\n"
                                                                        "    def test_count"))
    res = counting.runpytest("-s")                                        # the marker beats everything
    res.stdout.fnmatch_lines(["*MAX 1 1*"])


@pytest.mark.parametrize("args,env,ini,expect", [
    (["--mtcheck-seed=abc"], {}, "", "invalid value 'abc' from command line --mtcheck-seed"),
    (["--mtcheck-profile=fast"], {}, "", "unknown profile 'fast' from command line --mtcheck-profile"),
    ([], {"MTCHECK_SEED": "-3"}, "", "invalid value '-3' from environment variable MTCHECK_SEED"),
    ([], {"MTCHECK_SHOW_STATISTICS": "maybe"}, "", "from environment variable MTCHECK_SHOW_STATISTICS"),
    ([], {}, "mtcheck_max_examples = zero", "invalid value 'zero' from ini option mtcheck_max_examples in tox.ini"),
])
def test_bad_values_name_their_source(counting, monkeypatch, args, env, ini, expect):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    if ini:
        counting.makefile(".ini", tox=f"[pytest]\n{ini}\n")
    res = counting.runpytest(*args)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert expect in res.stderr.str(), res.stderr.str()


def test_bad_marker_value_names_the_test(counting):
    counting.makepyfile(test_count=COUNT_TEST.replace("def test_count", "@pytest.mark.mtcheck(max_examples=0)\n"
                                                                        "    def test_count"))
    res = counting.runpytest()
    assert "invalid value 0 from @pytest.mark.mtcheck(max_examples=...) on test_count.py::test_count" in \
        res.stdout.str() + res.stderr.str()
