"""mtcheck: are PyTorch's gradients at kinks ones the mathematics allows?

Public API::

    report = mtcheck.check(fn, *inputs)      # -> Report with .verdict (a Verdict)
    mtcheck.assert_gradient_ok(fn, *inputs)  # raises MtcheckError on a non-passing verdict
    mtcheck.check(net, x, wrt="parameters")  # the gradient with respect to the parameters
    mtcheck.check(loss_fn, model=net, batch=(x, y))   # a loss on a batch, w.r.t. the parameters
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (CheckInputError, MtcheckError, NonFiniteError, OutsideTheoryError,  # noqa: E402
                     UnsupportedOpError)

_LAZY = {"Report": "report", "Verdict": "report", "Witness": "report"}


def __getattr__(name):
    # Report/Verdict/Witness pull in numpy and FLINT: import them on first use, so that
    # `import mtcheck` (and the pytest plugin) stay cheap for projects that never check
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'mtcheck' has no attribute {name!r}")


def check(fn, *inputs, torch_seed=None, **options) -> "Report":
    """Check ``fn``'s PyTorch gradient at ``inputs``; see :func:`mtcheck.checker.check`.

    ``torch_seed`` (an int): check a program with random ops (dropout in training, rrelu,
    fractional max-pool, ``randn_like``, ...) with its random draws fixed: torch's default
    generator is put in the state ``torch.manual_seed(torch_seed)`` gives before every evaluation
    of ``fn``, and the caller's generator state is restored afterwards; see
    :mod:`mtcheck.ops.random_fixed`. ``None`` (default): random ops are refused.
    (``seed`` is the seed of mtcheck's own search: solver and directions.)"""
    from .checker import check as _check
    from .ops.random_fixed import fixed_draws, validate_seed

    with fixed_draws(validate_seed(torch_seed)):
        rep = _check(fn, *inputs, **options)
    if torch_seed is not None:
        rep.replay = _with_seed(rep.replay, torch_seed)
    return rep


def _with_seed(replay: str, seed: int) -> str:
    """The replay line of a check with fixed draws: the same call with ``torch_seed=``."""
    if not replay:
        return replay
    if replay.endswith("\n  )"):                       # one argument per line
        return replay[:-4] + f"\n    torch_seed={seed},\n  )"
    if ", ...)" in replay:                              # inputs too large to print
        return replay.replace(", ...)", f", ..., torch_seed={seed})", 1)
    if replay.endswith(")"):
        return replay[:-1] + f", torch_seed={seed})"
    return replay + f" (with torch_seed={seed})"


def assert_gradient_ok(fn, *inputs, **options) -> "Report":
    """Like :func:`check`, raising :class:`MtcheckError` unless the verdict is
    ``SMOOTH_OK`` or ``ASSOCIATED``. Returns the report when it passes."""
    rep = check(fn, *inputs, **options)
    if not rep.verdict.passed:
        raise MtcheckError(format_failure(rep), rep)
    return rep


def format_failure(rep: "Report") -> str:
    head = f"Gradient check failed for {rep.program}: {rep.verdict}"
    return head + "\n\n" + rep.explain()


def supported_ops() -> list:
    """ATen ops with an exact model."""
    from .ops import supported_ops as _s

    return _s()


__all__ = ["check", "assert_gradient_ok", "Verdict", "Report", "Witness", "MtcheckError", "CheckInputError",
           "UnsupportedOpError", "OutsideTheoryError", "NonFiniteError", "supported_ops", "__version__"]
