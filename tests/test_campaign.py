"""`mtcheck fuzz`, `mtcheck replay`, `mtcheck check` as a user runs them (real processes)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


HERE = Path(__file__).parent


def run_cli(*args, timeout=120, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "mtcheck.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)


def test_campaign_finds_saves_and_replays_a_planted_bug(tmp_path):
    corpus = tmp_path / "corpus"
    r = run_cli("fuzz", "--model", "planted_models:planted", "--max-time", "40", "-n", "1", "--seed", "1",
                "--stop-on-failure", "--corpus", str(corpus))
    assert r.returncode == 1, r.stdout + r.stderr
    cases = sorted(corpus.glob("case-*.json"))
    assert len(cases) == 1
    assert "NOT_ASSOCIATED" in r.stdout or "SMOOTH_WRONG" in r.stdout
    assert cases[0].with_suffix(".png").read_bytes()[:4] == b"\x89PNG"     # the finding's picture
    stats = json.loads((corpus / "stats.json").read_text())
    assert stats["findings"] and stats["checks"] >= 1
    assert stats["history"] and {"time", "checks", "checks_per_s", "strata", "findings"} <= set(stats["history"][-1])
    rr = run_cli("replay", str(corpus))
    assert rr.returncode == 0, rr.stdout + rr.stderr
    assert "1 reproduce, 0 changed" in rr.stdout
    rc = run_cli("check", "--case", str(cases[0]))
    assert rc.returncode == 1
    assert "witness" in rc.stdout or "Mismatched" in rc.stdout


def test_sigint_keeps_the_corpus_and_exits_130(tmp_path):
    corpus = tmp_path / "corpus"
    env = dict(os.environ, PYTHONPATH=str(HERE))
    p = subprocess.Popen([sys.executable, "-m", "mtcheck.cli", "fuzz", "--model", "planted_models:planted",
                          "--model", "planted_models:slow_ok", "--max-time", "120", "-n", "2", "--corpus", str(corpus)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    stats = corpus / "stats.json"
    deadline = time.time() + 90
    while time.time() < deadline:
        if stats.exists() and json.loads(stats.read_text() or "{}").get("findings"):
            break
        time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, out + err
    assert "interrupted" in out
    data = json.loads(stats.read_text())
    for f in data["findings"]:
        assert Path(f["path"]).exists()
        json.loads(Path(f["path"]).read_text())       # intact JSON
    # a campaign started again on the same corpus carries on: old findings are known, not re-saved
    r = run_cli("fuzz", "--model", "planted_models:planted", "--max-examples", "5", "-n", "1", "--corpus", str(corpus))
    assert r.returncode in (0, 1)
    assert "earlier run" in r.stdout


def test_two_workers_lose_no_case(tmp_path):
    corpus = tmp_path / "corpus"
    r = run_cli("fuzz", "--model", "planted_models:planted", "--model", "zoo:paper-boustany", "--max-time", "30",
                "-n", "2", "--corpus", str(corpus))
    assert r.returncode == 1, r.stdout + r.stderr
    stats = json.loads((corpus / "stats.json").read_text())
    paths = {f["path"] for f in stats["findings"]}
    on_disk = {str(p) for p in corpus.glob("case-*.json")}
    assert paths == on_disk                      # every finding saved once, nothing else
    assert sum(stats["verdicts"].values()) == stats["checks"]


def test_replay_reports_a_corrupt_file_and_runs_the_rest(tmp_path):
    corpus = tmp_path / "corpus"
    r = run_cli("fuzz", "--model", "planted_models:planted", "--max-time", "40", "-n", "1", "--seed", "1",
                "--stop-on-failure", "--corpus", str(corpus))
    assert r.returncode == 1
    (corpus / "case-0000000000000000000000000000000000000000.json").write_text('{"schema": 1, "program": ')
    rr = run_cli("replay", str(corpus))
    assert rr.returncode == 1
    assert "LOAD ERROR" in rr.stdout and "case-0000" in rr.stdout
    assert "1 reproduce, 0 changed, 1 failed" in rr.stdout


def test_usage_error_exits_2(tmp_path):
    r = run_cli("fuzz", "--model", "zoo:no-such-model", "--corpus", str(tmp_path))
    assert r.returncode == 2
    assert "no built-in model" in r.stderr


def test_default_targets_run_without_errors(tmp_path):
    """Regression: the paper's scalar-input targets made the strategies raise in every batch."""
    corpus = tmp_path / "corpus"
    r = run_cli("fuzz", "--model", "zoo:paper-boustany", "--model", "zoo:paper-relu-w0", "--model", "generated",
                "--max-examples", "60", "-n", "1", "--corpus", str(corpus))
    assert r.returncode == 0, r.stdout + r.stderr
    stats = json.loads((corpus / "stats.json").read_text())
    assert stats["errors"] == {}
    assert stats["checks"] >= 60


def test_a_second_finding_kind_met_while_shrinking_is_saved_not_dropped(monkeypatch):
    """Shrinking keeps to the batch's first finding kind; another kind it meets on the way was
    counted in the verdict table but never saved (the demo showed a SMOOTH_WRONG of index_reduce
    that way). It is now put as a finding of its own, as found."""
    import random

    import torch
    from hypothesis import strategies as st

    import mtcheck
    from mtcheck import campaign

    def kind(n):
        return None if n == 0 else ("NOT_ASSOCIATED" if n % 2 == 0 else "SMOOTH_WRONG")

    from types import SimpleNamespace

    monkeypatch.setattr(mtcheck, "check", lambda prog, *xs, **k: SimpleNamespace(n=prog, verdict=kind(prog)))
    monkeypatch.setattr(campaign, "_summarize", lambda rep: ([], 0, ()))
    monkeypatch.setattr(campaign, "_layer_kinds", lambda rep: [])
    monkeypatch.setattr(campaign, "finding_of", lambda rep, confirm=None: None if rep.verdict is None
                        else (rep.verdict, ["op"]))
    monkeypatch.setattr(campaign, "_serial_case", lambda p, cfg: {"n": p["report"].n})
    strategy = st.integers(0, 10_000).map(lambda n: (n, (torch.tensor([float(n)]),), f"prog{n}"))
    msgs = []
    cfg = campaign.Config(targets=["t"], corpus="unused", batch=30)
    campaign._run_batch("t", cfg, strategy, random.Random(1), msgs.append, 0)
    kinds = {m[3] for m in msgs if m[0] == "finding"}
    assert kinds == {"NOT_ASSOCIATED", "SMOOTH_WRONG"}, [m for m in msgs if m[0] == "finding"]


def test_a_finding_being_shrunk_when_the_campaign_stops_is_sent_at_once(monkeypatch):
    """At the campaign's deadline a worker may be stopped before its shrinking ends (a real model's
    draws take seconds): the finding is sent as found as soon as the stop is seen."""
    import random
    from types import SimpleNamespace

    import torch
    from hypothesis import strategies as st

    import mtcheck
    from mtcheck import campaign

    calls = []

    def check(prog, *xs, **k):
        calls.append(prog)
        return SimpleNamespace(n=prog, verdict="ROUNDING_BRANCH" if prog >= 500 else None)

    monkeypatch.setattr(mtcheck, "check", check)
    monkeypatch.setattr(campaign, "_summarize", lambda rep: ([], 0, ()))
    monkeypatch.setattr(campaign, "_layer_kinds", lambda rep: [])
    monkeypatch.setattr(campaign, "finding_of", lambda rep, confirm=None: None if rep.verdict is None
                        else (rep.verdict, ["op"]))
    monkeypatch.setattr(campaign, "_serial_case", lambda p, cfg: {"n": p["report"].n})
    msgs = []
    stopped = lambda: any(c >= 500 for c in calls)            # noqa: E731 - stops right after the first
    strategy = st.integers(0, 10_000).map(lambda n: (n, (torch.tensor([float(n)]),), f"prog{n}"))
    campaign._run_batch("t", campaign.Config(targets=["t"], corpus="unused", batch=30), strategy,
                        random.Random(1), msgs.append, 0, stopped)
    found = [m for m in msgs if m[0] == "finding"]
    assert found and found[0][3] == "ROUNDING_BRANCH"
    first_check_after = next(i for i, m in enumerate(msgs) if m[0] == "finding")
    assert not any(m[0] == "check" for m in msgs[first_check_after + 1:])   # sent before any further check
