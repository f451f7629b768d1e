"""pytest plugin for mtcheck (loaded through the ``pytest11`` entry point).

Import-light on purpose: nothing here imports torch or z3 until a test uses mtcheck.
"""

from __future__ import annotations
