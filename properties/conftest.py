"""Hypothesis profiles of the property suite.

``MTCHECK_PROPERTIES_PROFILE`` selects one: ``ci`` (the default: derandomized, few
examples, no deadline: the model code is slow) or ``fuzz`` (many examples, random).
The profiles are registered under their own names (``mtcheck-properties-<name>``) and
applied by the tests' own ``@PROPS`` decorator (see ``_mtprops.py``), so that another
suite loading a global profile of the same short name does not change this one.
"""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
               print_blob=True)
settings.register_profile("mtcheck-properties-ci", derandomize=True, max_examples=40, **_COMMON)
settings.register_profile("mtcheck-properties-fuzz", max_examples=400, **_COMMON)

PROFILE = os.environ.get("MTCHECK_PROPERTIES_PROFILE", "ci")
if PROFILE not in ("ci", "fuzz"):
    raise pytest.UsageError(f"MTCHECK_PROPERTIES_PROFILE={PROFILE!r} (from the environment): expected 'ci' or 'fuzz'")


def pytest_report_header(config):
    return f"mtcheck properties: hypothesis profile {PROFILE!r} (MTCHECK_PROPERTIES_PROFILE)"


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield
