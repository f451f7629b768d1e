"""Shared helpers of the property suite (a module of its own, not conftest, so tests can import it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from hypothesis import settings
from hypothesis import strategies as st

import mtcheck
from mtcheck import Verdict

PROFILE = os.environ.get("MTCHECK_PROPERTIES_PROFILE", "ci")
PROPS = settings(settings.get_profile(f"mtcheck-properties-{PROFILE}")) if PROFILE in ("ci", "fuzz") else settings()

HERE = Path(__file__).parent
FINDINGS_PATH = HERE / "known_findings.json"
BUGS = (Verdict.SMOOTH_WRONG, Verdict.NOT_ASSOCIATED, Verdict.NONLINEAR_VJP)
PASSING = (Verdict.SMOOTH_OK, Verdict.ASSOCIATED)

# small dyadic values: float64 replays exact arithmetic, and ties are frequent
TIE_VALUES = (-1.0, -0.5, 0.0, 0.5, 1.0)


def f64(*vals, shape=None):
    t = torch.tensor(vals, dtype=torch.float64)
    return t.reshape(shape) if shape is not None else t


def tie_vectors(n, values=TIE_VALUES):
    """A float64 vector of length ``n`` drawn from a handful of dyadic values (ties are likely)."""
    return st.lists(st.sampled_from(values), min_size=n, max_size=n).map(lambda v: torch.tensor(v, dtype=torch.float64))


def tie_tensors(shape, values=TIE_VALUES):
    n = 1
    for s in shape:
        n *= s
    return tie_vectors(n, values).map(lambda t: t.reshape(shape))


def check(fn, *inputs, **kw):
    kw.setdefault("neighbours", False)
    kw.setdefault("forward_mode", False)
    return mtcheck.check(fn, *inputs, **kw)


def load_findings() -> list:
    if not FINDINGS_PATH.exists():
        return []
    return json.loads(FINDINGS_PATH.read_text())["findings"]


def finding_ids(kind=None) -> set:
    return {f["id"] for f in load_findings() if kind is None or f["kind"] == kind}


def explain(rep) -> str:
    return "\n" + rep.explain()
