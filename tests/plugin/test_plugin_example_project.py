"""examples/user_project: pytest fails with a readable message and writes a case; pytest <corpus> replays it."""

import shutil

from plugin_helpers import REPO


def test_user_project(pytester):
    src = REPO / "examples" / "user_project"
    for name in ("tinynet.py", "test_tinynet.py", "pyproject.toml"):
        shutil.copy(src / name, pytester.path / name)
    res = pytester.runpytest_subprocess("test_tinynet.py", "-p", "no:cacheprovider", "--mtcheck-profile=ci")
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*mtcheck: NOT_ASSOCIATED gradient in TinyNet after * examples*",
                              "*where     max_pool2d_with_indices#* (window) at tinynet.py:* in forward*",
                              "*witness   direction t = *",
                              "*Mismatched elements: *",
                              "*replay: pytest mtcheck-corpus/case-*.json  (written now); search again: "
                              "pytest 'test_tinynet.py::test_gradients_at_ties' --mtcheck-seed=0"])
    cases = list((pytester.path / "mtcheck-corpus").glob("case-*.json"))
    assert len(cases) == 1 and cases[0].with_suffix(".safetensors").exists()
    res = pytester.runpytest_subprocess("mtcheck-corpus", "-v", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines(["*::tinynet:TinyNet STILL REPRODUCES*"])
