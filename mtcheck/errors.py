"""Exceptions raised by mtcheck.

One failure class for verdicts (:class:`MtcheckError`, an ``AssertionError`` so
that pytest shows it as a test failure), and one family for inputs that mtcheck
cannot judge at all (:class:`CheckInputError` and its subclasses).
"""

from __future__ import annotations


class MtcheckError(AssertionError):
    """A gradient check did not pass.

    ``report`` holds the full :class:`mtcheck.Report` that explains why.
    """

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report


class CheckInputError(ValueError):
    """The program or its inputs cannot be judged; nothing was verdicted."""


class UnsupportedOpError(CheckInputError):
    """An ATen op that has no exact model in mtcheck.

    ``op`` is the ATen op name and ``where`` the user's source line that called it.
    """

    def __init__(self, op: str, where: str, why: str = "no exact model"):
        self.op = op
        self.where = where
        self.why = why
        super().__init__(
            f"{op} (called at {where}) is not supported by mtcheck: {why}. "
            "Supported ops are listed by `mtcheck.supported_ops()`; "
            "new ones are added in one place, mtcheck/ops/."
        )


class OutsideTheoryError(CheckInputError):
    """The program uses an op that is not Lipschitz (floor, round, sign, ...).

    Murat–Trombetti associated gradients are defined for Lipschitz, piecewise
    C^1 programs only, so no verdict applies.
    """

    def __init__(self, op: str, where: str, why: str):
        self.op = op
        self.where = where
        super().__init__(
            f"{op} (called at {where}) is outside the theory: {why}. "
            "Associated gradients are only defined for Lipschitz, piecewise-C^1 programs, "
            "so mtcheck gives no verdict for this program."
        )


class UndecidedError(CheckInputError):
    """A case that rigorous enclosures cannot decide: a discriminant of irrational value whose
    ball contains 0 (it may be a tie that only a proof of equality could show). The checker
    reports it as an ``UNKNOWN`` verdict naming the node; it is never decided by a tolerance."""

    def __init__(self, op: str, where: str, why: str):
        self.op = op
        self.where = where
        self.why = why
        super().__init__(f"{op} (called at {where}): {why}")


class NonFiniteError(CheckInputError):
    """A NaN or an infinity in an input or a weight."""
