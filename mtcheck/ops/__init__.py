"""The registry of ATen ops that mtcheck models exactly.

One place per op: each rule gives the op's exact forward, its forward-mode
derivative with the pattern fixed (``jvp``), and, for nonsmooth ops, its
*discriminants*: the exact quantities whose signs are the op's case (relu:
the input; a max window: each entry minus the winner; clamp: the input minus
each bound; a comparison: the difference of its operands).

Rules may also give ``vjp``, the transpose of ``jvp`` (reverse mode, exact).

To add an op, write a :class:`Rule` in one of the modules of this package and
decorate it with :func:`register`; nothing else needs to change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

_RULES: dict[str, "Rule"] = {}


class NotModelled(Exception):
    """Raised by a rule for a variant of its op that has no exact model (the model
    turns it into an :class:`~mtcheck.errors.UnsupportedOpError` naming the call site)."""


class NotLipschitz(Exception):
    """Raised by a rule for a use of its op that is discontinuous (outside the theory)."""

_REJECT: dict[str, tuple[str, str]] = {}   # op name -> (kind, why)


@dataclass
class Disc:
    """Discriminants of one nonsmooth node.

    ``values[i] = s * (A[idx_a[i]] - (B[idx_b[i]] if b is not None else const[i]))`` where
    ``A``/``B`` are the node's tensor arguments number ``a``/``b`` (flattened) and
    ``s = -1`` when ``negate`` is set, else 1. ``a`` is None for a discriminant
    that does not depend on any argument (a constant). ``values`` may include a
    constant offset (``A - B - c``): the model reads only the sign of ``values``
    and takes derivative rows from ``a``/``b`` and the indices.
    The sign of each value is the case; a zero is a tie. ``max_type`` marks
    discriminants that are never positive (entries of a window minus its winner).
    ``group[i]`` is the output element the discriminant belongs to, ``label`` a
    word for reports (``relu``, ``window``, ``lo``, ``hi``, ``cmp``).
    """

    label: str
    a: int
    idx_a: np.ndarray
    b: int | None
    idx_b: np.ndarray | None
    const: Any
    values: np.ndarray
    group: np.ndarray
    max_type: bool = False
    negate: bool = False   # the discriminant is -(A - B): its row is negated
    branch: bool = False   # set by the model: the result feeds Python control flow

    def signs(self) -> np.ndarray:
        """The case of every element (-1, 0, 1), computed once: ``values`` never change."""
        cached = self.__dict__.get("_signs")
        if cached is None or cached.shape != self.values.shape:
            from .._exact import sign

            # a Ball (an enclosed irrational value) has a decided sign or raises Undecided
            cached = self.__dict__["_signs"] = sign(self.values)
        return cached


@dataclass
class Ctx:
    """Per-node, per-evaluation scratch space handed to a rule."""

    op: str
    dtype: Any = None              # torch dtype of the node's (first float) output
    recorded: Any = None           # the framework's float outputs at trace time (torch tensors)
    aux: dict = field(default_factory=dict)


class Rule:
    """How one ATen op is modelled exactly. Override what applies."""

    names: tuple[str, ...] = ()
    nonsmooth = False
    # Whether the rule handles enclosures (:class:`mtcheck._ball.Ball`) among its arguments,
    # tangents and cotangents. The model refuses a Ball reaching a rule without it, naming the
    # op, rather than let numpy compute on the Ball's storage.
    balls = False

    def forward(self, ctx: Ctx, args: tuple, kwargs: dict):   # pragma: no cover - abstract
        raise NotImplementedError

    def jvp(self, ctx: Ctx, args: tuple, kwargs: dict, out, targs: tuple, tkwargs: dict):
        raise NotImplementedError  # pragma: no cover - abstract

    def discs(self, ctx: Ctx, args: tuple, kwargs: dict, out) -> list[Disc]:
        return []

    # Reverse mode (optional). ``cot`` is the cotangent of the output, shape ``(B,) + out.shape``
    # (a tuple with None entries for an op with several outputs). Returns a list aligned with
    # ``_util.tensor_leaves(args)``: the cotangent of each tensor argument, shape ``(B,) + arg.shape``,
    # or None. The model uses it to compute few rows (J_S, Y A) exactly without a pass per input.
    # A rule without it is differentiated in forward mode only.
    vjp = None


def register(*names: str) -> Callable[[type], type]:
    def deco(cls):
        inst = cls()
        inst.names = names
        for n in names:
            old = _RULES.get(n)
            if old is None:
                _RULES[n] = inst
                continue
            # a module imported again (after sys.modules was cleared) re-registers the same rule,
            # possibly behind a wrapper that routes some variants of the op elsewhere (``old.base``)
            base = getattr(old, "base", old)
            if (type(base).__module__, type(base).__qualname__) != (cls.__module__, cls.__qualname__):
                raise RuntimeError(f"two rules for {n}")
            if base is old:
                _RULES[n] = inst
            else:
                old.base = inst
        return cls

    return deco


def reject(kind: str, why: str, *names: str) -> None:
    for n in names:
        _REJECT[n] = (kind, why)


def lookup(name: str) -> Rule | None:
    _load()
    return _RULES.get(name)


def rejection(name: str):
    _load()
    return _REJECT.get(name)


def supported_ops() -> list[str]:
    """Names of every ATen op with an exact model."""
    _load()
    return sorted(_RULES)


_loaded = False


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import arith, index, linalg, nonsmooth, pooling, refused  # noqa: F401
    from . import sorting  # noqa: F401  (issue 6)
    from . import activations  # noqa: F401  (issue 6)
    from . import losses  # noqa: F401  (issue 6)
    from . import norms  # noqa: F401  (issue 6)
    from . import scatter  # noqa: F401  (issue 6)
    from . import extra, extra_index  # noqa: F401  (issue 11)
    from . import smooth  # noqa: F401  (enclosures of smooth irrational ops)
    from . import attention  # noqa: F401  (scaled dot-product attention, enclosed)
    from . import special  # noqa: F401  (special functions and smooth binary ops, enclosed)
    from . import steps  # noqa: F401  (step functions away from their jumps)
    from . import steps_more  # noqa: F401  (heaviside, bucketize, histograms, unique, mode... off their jumps)
    from . import linalg_enclosed  # noqa: F401  (slogdet, matrix exponential, Cholesky, enclosed)
    from . import misc_smooth  # noqa: F401  (safe softmax, softmax backward, logcumsumexp, glu, soft margin)
    from . import linalg_eigh  # noqa: F401  (symmetric eigendecomposition, enclosed)
    from . import linalg_svd  # noqa: F401  (singular value decomposition, enclosed)
    from . import linalg_qr  # noqa: F401  (QR decomposition, enclosed)
    from . import linalg_pinv  # noqa: F401  (pseudo-inverse of full-rank matrices, exact)
    from . import householder  # noqa: F401  (products of Householder reflectors, exact)
    from . import rnn  # noqa: F401  (oneDNN LSTM layer, enclosed)
    from . import complex_fft  # noqa: F401  (complex tensors as (re, im) pairs, the FFTs; enclosed)
    from . import grid_sample  # noqa: F401  (grid_sampler_2d/3d, exact piecewise polynomial)
    from . import segment  # noqa: F401  (segment_reduce: segmented sum/mean/prod/max/min)
    from . import ldl  # noqa: F401  (linalg_ldl_solve: LAPACK sytrs run exactly)
    from . import random_fixed  # noqa: F401  (random ops with their draws fixed: check(..., torch_seed=))


# The registry is filled in one fixed order whenever the package is imported: importing any rule
# module first (``import mtcheck.ops.extra``) runs this before that module's own body, so
# ``register_new`` (register unless an earlier module has the name) always sees the same earlier
# modules, and no import order can give "two rules" or a different rule for a name.
_load()
