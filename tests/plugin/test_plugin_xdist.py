"""pytest -n 2: workers share the seed, and findings and replays do not corrupt the corpus."""

import re

import pytest

from mtcheck.corpus import iter_cases

pytest.importorskip("xdist")

SAME_FINDING = """
    import pytest, torch
    from tinymodels import BadNet

    @pytest.mark.parametrize("k", range(4))
    def test_bad(mtcheck, k):
        open(f"seed-{k}.txt", "w").write(str(mtcheck.seed))
        mtcheck.fuzz(BadNet(), torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64), max_examples=3)
"""


def test_xdist_two_workers(tiny):
    tiny.makepyfile(test_x=SAME_FINDING)
    res = tiny.runpytest_subprocess("test_x.py", "-n", "2", "-p", "no:cacheprovider")
    res.assert_outcomes(failed=4)
    out = res.stdout.str()
    # the controller's random seed reaches both workers (so per-test seeds do not depend on the worker)
    seed = re.search(r"mtcheck: seed (\d+) \(random", out).group(1)
    assert {(tiny.path / f"seed-{k}.txt").read_text() for k in range(4)} == {seed}
    assert len(set(re.findall(r"gw(\d)", out))) == 2
    # every worker wrote the same finding (same content hash): one intact case
    found = list(iter_cases([tiny.path / "mtcheck-corpus"]))
    assert len(found) == 1 and not isinstance(found[0][1], Exception), found
    assert not [p for p in (tiny.path / "mtcheck-corpus").iterdir() if p.name.startswith(".")]
    # and the corpus replays under xdist too; the controller's summary counts every worker's cases
    res = tiny.runpytest_subprocess("mtcheck-corpus", "-n", "2", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines(["*mtcheck corpus: 1 cases replayed: 1 still reproduce*"])


