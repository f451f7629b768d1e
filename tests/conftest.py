import os

import pytest
import torch
from hypothesis import settings

settings.register_profile("ci", deadline=None, derandomize=True, max_examples=25, print_blob=True)
settings.register_profile("dev", deadline=None, max_examples=25)
settings.register_profile("fuzz", deadline=None, max_examples=500)
settings.load_profile(os.environ.get("MTCHECK_TEST_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


def f64(*vals):
    return torch.tensor(vals, dtype=torch.float64)
