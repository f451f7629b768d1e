"""Replaying a stranger's corpus runs no stranger's code; self-contained cases replay without their package.

- a case whose factory lives in a folder shipped with the case (its search_path) is *not* imported
  without --trust-imports / --mtcheck-trust-imports: it is reported as "needs trust" and not run;
- a case written for a user's model stores the traced program, and replays in a fresh process where
  the user's package cannot be imported;
- schema 2 (certificates, traced programs) reads schema-1 cases, and re-verifies certificates.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import mtcheck
from mtcheck.corpus import (SCHEMA_VERSION, case_from_report, import_policy, load_case, replay_case, save_case)

REPO = Path(__file__).resolve().parents[1]
OPTS = {"neighbours": False, "forward_mode": False}


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(extra)
    return env


def _run(args, cwd, env=None, timeout=180):
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env or _env(), capture_output=True, text=True,
                          timeout=timeout)


EVIL = textwrap.dedent('''
    import pathlib
    import torch
    pathlib.Path(__file__).resolve().parents[2].joinpath("pwned").write_text("this ran")


    def make():
        return torch.nn.ReLU()
''')


def _evil_corpus(tmp_path):
    """A corpus whose one case names ``evilmod:make`` in a folder it ships (search_path)."""
    corpus = tmp_path / "corpus"
    (corpus / "shipped").mkdir(parents=True)
    (corpus / "shipped" / "evilmod.py").write_text(EVIL)
    x = torch.tensor([0.0, 1.0, -0.5], dtype=torch.float64)
    rep = mtcheck.check(torch.nn.ReLU(), x, **OPTS)           # the same program, built here without the module
    case = case_from_report({"kind": "import", "target": "evilmod:make", "call": True, "kwargs": {}}, [x], rep, 0,
                            program=torch.nn.ReLU(), options=OPTS, search_path="shipped", traced=False)
    path = save_case(corpus, case)
    return corpus, path, tmp_path / "pwned"


def _cli(*args):
    from click.testing import CliRunner

    from mtcheck.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_search_path_module_is_not_run_without_trust(tmp_path, monkeypatch):
    corpus, path, pwned = _evil_corpus(tmp_path)
    assert import_policy(load_case(path)) == "needs-trust"
    r = _cli("replay", str(corpus))
    assert r.exit_code == 1, r.output
    assert "NEEDS TRUST" in r.output and "--trust-imports" in r.output and "1 need trust" in r.output, r.output
    assert not pwned.exists() and "evilmod" not in sys.modules
    r = _run(["-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-rs", str(corpus)], cwd=tmp_path)
    assert "1 skipped" in r.stdout and "needs trust" in r.stdout, r.stdout + r.stderr
    assert not pwned.exists()
    # trusted: it runs (and so does its code)
    r = _run(["-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "--mtcheck-trust-imports", str(corpus)],
             cwd=tmp_path)
    assert "1 passed" in r.stdout, r.stdout + r.stderr
    assert pwned.exists()
    pwned.unlink()
    monkeypatch.setattr(sys, "path", list(sys.path))          # the trusted replay adds the search_path
    monkeypatch.delitem(sys.modules, "evilmod", raising=False)
    r = _cli("replay", "--trust-imports", str(corpus))
    sys.modules.pop("evilmod", None)
    assert r.exit_code == 0 and "REPRODUCES" in r.output and "[import;" in r.output, r.output
    assert pwned.exists()


def test_import_policy(tmp_path, monkeypatch):
    corpus, path, pwned = _evil_corpus(tmp_path)
    case = load_case(path)
    assert import_policy(case, trust_imports=True) == "import-search-path"
    # importable from the environment without the search_path (here: put on sys.path by the user): run it
    monkeypatch.syspath_prepend(str(corpus / "shipped"))
    assert import_policy(case) == "import"
    monkeypatch.undo()
    sys.modules.pop("evilmod", None)
    assert import_policy(case) == "needs-trust"
    res = replay_case(case)
    assert res.status == "needs-trust" and not pwned.exists()
    # a case that stores its traced program replays without the import
    x = case.inputs[0]
    rep = mtcheck.check(torch.nn.ReLU(), x, **OPTS)
    c2 = case_from_report(dict(case.program), [x], rep, 0, program=torch.nn.ReLU(), options=OPTS)
    assert c2.traced is not None
    assert c2.case_id == case.case_id                  # the traced copy is not part of the case's identity
    p2 = save_case(tmp_path / "c2", c2)
    assert import_policy(load_case(p2)) == "traced"
    res = replay_case(load_case(p2))
    assert res.status == "reproduces" and res.source == "traced", res.text
    assert not pwned.exists() and "evilmod" not in sys.modules


REPLAY = textwrap.dedent('''
    import importlib.util, sys
    from mtcheck.corpus import iter_cases, replay_case
    assert importlib.util.find_spec("tinynet") is None, "the user's package must not be importable here"
    (path, case), = iter_cases([sys.argv[1]])
    res = replay_case(case)
    assert "tinynet" not in sys.modules
    from click.testing import CliRunner
    from mtcheck.cli import main
    cli = CliRunner().invoke(main, ["replay", sys.argv[1]])
    assert cli.exit_code == 0 and "REPRODUCES" in cli.output and "[traced;" in cli.output, cli.output
    assert "tinynet" not in sys.modules
    print(res.status, res.source, res.new_verdict, res.certificate)
''')


def test_self_contained_case_replays_without_the_users_package(tmp_path, monkeypatch):
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copy(REPO / "examples" / "user_project" / "tinynet.py", proj / "tinynet.py")
    monkeypatch.syspath_prepend(str(proj))
    monkeypatch.delitem(sys.modules, "tinynet", raising=False)
    from tinynet import TinyNet

    sys.modules.pop("tinynet")
    m = TinyNet().eval()
    with torch.no_grad():                       # stem = identity: every 2x2 pool window of x = 1 ties
        m.stem.weight.zero_()
        m.stem.weight[:, 0, 1, 1] = 1.0
        m.stem.bias.zero_()
    x = torch.ones(1, 1, 8, 8)
    rep = mtcheck.check(m, x, **OPTS)
    assert str(rep.verdict) == "NOT_ASSOCIATED", rep.explain()
    case = case_from_report("tinynet:TinyNet", [x], rep, 0, program=m, options=OPTS, search_path="../proj")
    assert case.traced is not None and case.traced.backward_mode == "recorded", case.origin
    case_file = save_case(tmp_path / "corpus", case)
    doc = json.loads(case_file.read_text())
    assert doc["mtcheck_case"] == SCHEMA_VERSION and doc["traced"]["backward"] == "recorded"
    ops = {n["op"] for n in doc["traced"]["forward"]["nodes"]}
    assert "aten.max_pool2d_with_indices.default" in ops and ops <= set(mtcheck.supported_ops())
    # a fresh process, the user's project not on the path (cwd elsewhere, no PYTHONPATH)
    (tmp_path / "replay.py").write_text(REPLAY)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = _run([str(tmp_path / "replay.py"), str(tmp_path / "corpus")], cwd=elsewhere)
    assert r.returncode == 0, r.stdout + r.stderr
    status, source, verdict, *_ = r.stdout.split()
    assert (status, source, verdict) == ("reproduces", "traced", "NOT_ASSOCIATED"), r.stdout


def test_schema_1_cases_load_and_replay_and_certificates_are_checked(tmp_path, monkeypatch):
    v1 = REPO / "corpus" / "case-9995321e89996bc643f10dee847e850f08333429.json"    # paper-boustany, schema 1
    case = load_case(v1)
    assert case.schema == 1 and case.certificate is None and case.traced is None
    res = replay_case(case)
    assert res.status == "reproduces", res.text
    p = save_case(tmp_path, case.updated(res.report) if res.report is not None else case)
    assert p.name == v1.name                           # schema 2 keeps the case's name
    doc = json.loads(p.read_text())
    assert doc["mtcheck_case"] == 2
    c2 = load_case(p)
    if res.report.certificate is not None:
        assert doc["certificate"] == {"inline": res.report.certificate}
        assert c2.certificate == res.report.certificate
    try:
        import mtcheck.certificate  # noqa: F401
    except ImportError:
        pytest.skip("mtcheck.certificate is not available yet")
    if res.report.certificate is not None:
        ok = replay_case(c2)
        assert ok.status == "reproduces" and ok.certificate.startswith("recorded: ok"), (ok.status, ok.certificate)
    # a certificate that does not verify is a replay failure
    import dataclasses

    bad = dataclasses.replace(c2, certificate={"format": "nonsense"})
    res = replay_case(bad)
    assert res.status == "error" and "certificate fails verification" in res.text, res.text
    # large certificates go to a sidecar next to the case
    import mtcheck.corpus as corpus_mod

    monkeypatch.setattr(corpus_mod, "CERT_INLINE_MAX", 10)
    big = dataclasses.replace(c2, certificate={"format": "nonsense", "pad": "x" * 100})
    p3 = save_case(tmp_path / "big", big)
    side = p3.with_name(p3.stem + ".certificate.json")
    assert side.exists() and json.loads(p3.read_text())["certificate"]["file"] == side.name
    assert load_case(p3).certificate == big.certificate
    side.write_text("{}")
    with pytest.raises(corpus_mod.CorpusError, match="does not match the recorded sha256"):
        load_case(p3)
