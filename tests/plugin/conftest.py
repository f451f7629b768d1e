"""pytester for the plugin's tests, and the `tiny` project fixture."""

import pytest

from plugin_helpers import TINY_MODELS



def pytest_configure(config):
    # `pytest_plugins = ["pytester"]` is only allowed in the rootdir's conftest: load it here instead
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")


@pytest.fixture
def tiny(pytester):
    """A pytester directory holding tinymodels.py (importable by the inner run and by replays)."""
    pytester.makepyfile(tinymodels=TINY_MODELS)
    pytester.syspathinsert()
    return pytester


# pytester runs pytest in this process and drops the modules an inner run imported when it ends;
# torch cannot be imported twice (its op libraries register once), so import what the inner runs use now.
import hypothesis  # noqa: E402,F401
import torch  # noqa: E402,F401
import torch._dynamo  # noqa: E402,F401
import torch.func  # noqa: E402,F401

import mtcheck._fuzz  # noqa: E402,F401
import mtcheck.checker  # noqa: E402,F401
import mtcheck.corpus  # noqa: E402,F401
import mtcheck.strategies  # noqa: E402,F401
import mtcheck.zoo  # noqa: E402,F401
import safetensors.torch  # noqa: E402,F401

