"""Corrupt, truncated, newer-schema, missing-weights and unimportable-factory cases: each fails with a
clear error naming the file, and the other cases still run."""

import json

import pytest
import torch

import mtcheck
from mtcheck.corpus import CorpusError, case_from_report, iter_cases, load_case, replay_case, save_case
from plugin_helpers import copy_paper_corpus, edit_case


def _weighted_case(directory, target="tinymodels:Affine"):
    import tinymodels

    m = tinymodels.Affine().double()
    x = torch.tensor([0.5, 0.0, -0.5, 1.0], dtype=torch.float64)
    rep = mtcheck.check(m, x, neighbours=False, forward_mode=False)
    case = case_from_report(target, [x], rep, 0, program=m, options={"neighbours": False, "forward_mode": False},
                            traced=False)   # the factory must be needed: no self-contained copy
    return save_case(directory, case)


def _break(kind, corpus):
    """Damage one case of ``corpus`` in the way ``kind`` says; returns (file named in the error, expected text)."""
    paper = sorted(corpus.glob("case-*.json"))
    if kind == "corrupt":
        paper[0].write_text("{ this is not json")
        return paper[0], "not valid JSON, the file is truncated or corrupt"
    if kind == "truncated":
        raw = paper[1].read_bytes()
        paper[1].write_bytes(raw[: len(raw) // 2])
        return paper[1], "not valid JSON, the file is truncated or corrupt"
    if kind == "newer-schema":
        edit_case(paper[2], lambda d: d.update(mtcheck_case=3))
        return paper[2], "schema version 3 is newer than this mtcheck"
    if kind == "missing-weights":
        p = _weighted_case(corpus)
        p.with_suffix(".safetensors").unlink()
        return p, "its tensors file case-"
    if kind == "damaged-weights":
        p = _weighted_case(corpus)
        s = p.with_suffix(".safetensors")
        s.write_bytes(s.read_bytes()[:-8])
        return p, "does not match the recorded sha256"
    if kind == "unimportable-factory":
        p = _weighted_case(corpus, target="no_such_package.models:make")
        return p, "cannot import the model factory no_such_package.models:make (ModuleNotFoundError"
    raise AssertionError(kind)


KINDS = ["corrupt", "truncated", "newer-schema", "missing-weights", "damaged-weights", "unimportable-factory"]


@pytest.mark.parametrize("kind", KINDS)
def test_bad_case_names_the_file_and_others_run(tiny, kind):
    corpus = tiny.path / "corpus"
    copy_paper_corpus(corpus)
    bad, text = _break(kind, corpus)
    res = tiny.runpytest("corpus")
    n_good = len(list(corpus.glob("case-*.json"))) - 1
    res.assert_outcomes(passed=n_good, failed=1)
    out = res.stdout.str()
    assert f"corpus/{bad.name}: " in out and text in out, out
    assert "Traceback" not in out


@pytest.mark.parametrize("kind", KINDS)
def test_api_errors_name_the_file(tiny, kind):
    corpus = tiny.path / "corpus"
    copy_paper_corpus(corpus)
    bad, text = _break(kind, corpus)
    results = dict(iter_cases([corpus]))
    if kind == "unimportable-factory":     # loading never imports: the error comes at replay
        case = load_case(bad)
        res = replay_case(case)
        assert res.status == "error" and str(bad) in res.text and text in res.text
    else:
        err = results[bad]
        assert isinstance(err, CorpusError) and isinstance(err, mtcheck.CheckInputError)
        assert err.path == bad and str(bad) in str(err) and text in str(err)
        with pytest.raises(CorpusError, match=text.split("(")[0][:30]):
            load_case(bad)
    assert sum(not isinstance(v, CorpusError) for v in results.values()) >= 3


def test_loading_runs_no_code(tmp_path):
    """A case that names a module is not imported by load_case or iter_cases."""
    import sys

    doc = {"mtcheck_case": 1, "program": {"kind": "import", "target": "evil_module_xyz:boom", "call": True},
           "dtype": "float64", "inputs": [{"dtype": "float64", "shape": [1], "hex": ["0x0.0p+0"]}],
           "expected": {"verdict": "SMOOTH_OK"}}
    f = tmp_path / ("case-" + "b" * 40 + ".json")
    f.write_text(json.dumps(doc))
    case = load_case(f)
    list(iter_cases([tmp_path]))
    assert "evil_module_xyz" not in sys.modules and case.label == "evil_module_xyz:boom"
