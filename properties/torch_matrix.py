"""pytest plugin of `make test-torch`: the property suite and the corpus under another torch, with the
expected per-version differences read from ``properties/torch_versions.json`` (data, not code).

Loaded only by the version matrix (``-p torch_matrix`` with ``properties/`` on ``PYTHONPATH``), never
by the default run. For the running torch release it

* marks every node id of ``pytest_expected_failures`` as a strict xfail with the recorded reason
  (a listed test that passes fails the run: the record is stale);
* checks the corpus replays: the cases reported "fixed in torch X" must be exactly ``corpus_fixed``;
* says in the header which record applies. A torch with no record runs with no expected difference.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

DATA = Path(__file__).with_name("torch_versions.json")


def release(v: str) -> str:
    m = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", str(v))
    return f"{m.group(1)}.{m.group(2)}.{m.group(3) or 0}" if m else str(v)


def record(version: str | None = None) -> tuple[str, dict]:
    """(release, its record) for ``version`` (default: the running torch); an empty record when none."""
    import torch

    rel = release(version or torch.__version__)
    doc = json.loads(DATA.read_text(encoding="utf-8"))
    return rel, doc.get("versions", {}).get(rel, {})


class _Matrix:
    def __init__(self):
        self.rel, self.rec = record()
        self.expected = dict(self.rec.get("pytest_expected_failures", {}))
        self.fixed_seen: set = set()
        self.replayed = 0

    def pytest_report_header(self, config):
        n = len(self.expected)
        base = json.loads(DATA.read_text(encoding="utf-8")).get("baseline")
        return (f"mtcheck torch matrix: torch {self.rel} against the baseline torch {base}: "
                + (f"{n} expected failure(s), corpus fixed {self.rec.get('corpus_fixed', [])} "
                   f"(properties/torch_versions.json)" if self.rec else "no record: no expected difference"))

    def pytest_collection_modifyitems(self, config, items):
        for item in items:
            why = self.expected.get(item.nodeid)
            if why is not None:
                item.add_marker(pytest.mark.xfail(reason=f"torch {self.rel}: {why}", strict=True))

    def pytest_runtest_logreport(self, report):
        if report.when != "call":
            return
        for k, v in report.user_properties:
            if k == "mtcheck_replay":
                self.replayed += 1
                if v.get("status") == "fixed":
                    self.fixed_seen.add(v["file"])

    def pytest_sessionfinish(self, session, exitstatus):
        if not self.replayed:
            return
        want = set(self.rec.get("corpus_fixed", []))
        if self.fixed_seen != want:
            session.config._torch_matrix_problem = (
                f"corpus cases fixed in torch {self.rel}: {sorted(self.fixed_seen)}, recorded: {sorted(want)}")
            session.exitstatus = 1

    def pytest_terminal_summary(self, terminalreporter):
        prob = getattr(terminalreporter.config, "_torch_matrix_problem", None)
        terminalreporter.write_sep("-", "mtcheck torch matrix")
        if prob:
            terminalreporter.write_line(f"UNEXPECTED: {prob} (properties/torch_versions.json)")
        else:
            terminalreporter.write_line(f"torch {self.rel}: the expected per-version differences hold "
                                        f"({len(self.expected)} expected failure(s); corpus fixed: "
                                        f"{sorted(self.fixed_seen) or 'none'})")


def pytest_configure(config):
    config.pluginmanager.register(_Matrix(), "mtcheck-torch-matrix")
