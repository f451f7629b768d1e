"""Verdicts and the report a check returns (and prints)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._exact import fmt


class Verdict(enum.Enum):
    """The seven verdicts of SPEC.md. ``passed`` says which ones count as a pass."""

    SMOOTH_OK = "SMOOTH_OK"
    ASSOCIATED = "ASSOCIATED"
    SMOOTH_WRONG = "SMOOTH_WRONG"
    NOT_ASSOCIATED = "NOT_ASSOCIATED"
    NONLINEAR_VJP = "NONLINEAR_VJP"
    ROUNDING_BRANCH = "ROUNDING_BRANCH"
    UNKNOWN = "UNKNOWN"

    @property
    def passed(self) -> bool:
        return self in (Verdict.SMOOTH_OK, Verdict.ASSOCIATED)

    @property
    def is_bug(self) -> bool:
        return self in (Verdict.SMOOTH_WRONG, Verdict.NOT_ASSOCIATED, Verdict.NONLINEAR_VJP)

    def __str__(self) -> str:
        return self.value


@dataclass
class Witness:
    """Why a gradient is not associated: a tangent direction ``t`` of the stratum
    along which the framework's rate ``J_fw t`` differs from the program's ``J_S t``,
    and exact values of the program along ``t`` that show the true rate."""

    output_index: int
    direction: list                 # exact rationals (fmpq), one per input coordinate
    framework_rate: Any             # J_fw t (exact value of the framework's floats)
    stratum_rate: Any               # J_S t (exact)
    h: Any = None                   # dyadic step inside the stratum
    f_x: Any = None                 # f_i(x), exact
    f_x_plus_ht: Any = None         # f_i(x + h t), exact
    note: str = ""

    def __str__(self) -> str:
        t = ", ".join(fmt(v) for v in self.direction[:12]) + (", ..." if len(self.direction) > 12 else "")
        lines = [f"direction t = ({t}) in the tangent space of the stratum",
                 f"output[{self.output_index}]: framework J t = {fmt(self.framework_rate)}, "
                 f"program J_S t = {fmt(self.stratum_rate)}"]
        if self.h is not None:
            rate = (self.f_x_plus_ht - self.f_x) / self.h
            lines.append(f"exact check inside the stratum: f(x) = {fmt(self.f_x)}, f(x + h t) = "
                         f"{fmt(self.f_x_plus_ht)} with h = {fmt(self.h)}, so the rate is {fmt(rate)}")
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)


@dataclass
class Report:
    """Everything one check decided. ``verdict`` is a :class:`Verdict`; the optional
    fields are ``None`` where they were not decided (and ``reasons`` says why)."""

    verdict: Verdict
    differentiable: bool | None = None
    true_gradient_match: bool | None = None
    clarke: bool | None = None
    forward_matches_reverse: bool | None = None
    witness: Witness | None = None
    pattern: Any = None
    exact_mode: bool = False
    tolerance: tuple | None = None          # (rtol, atol) used for gradient comparisons, None when exact
    enclosure_radius: float | None = None   # irrational values: the largest row L1 radius of the enclosed J_S
    tangent_dim: int | None = None
    n_inputs: int = 0
    n_outputs: int = 0
    rounding_nodes: list = field(default_factory=list)
    framework_jacobian: np.ndarray | None = None   # float64 (m, n)
    stratum_jacobian: np.ndarray | None = None     # float64 (m, n): J_S with a first-tie selection
    true_gradient: np.ndarray | None = None
    pieces: int | None = None
    reasons: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    mismatch: str = ""
    replay: str = ""
    program: str = ""
    timings: dict = field(default_factory=dict)
    certificate: dict | None = None         # the proof of the verdict (docs/certificates.md), plain JSON data
    certificate_ok: bool | None = None      # re-verified by the independent mtcheck.certificate checker
    certificate_check: str = ""             # what the checker said

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    def summary(self) -> str:
        """One line: verdict and the decided fields."""
        def b(v):
            return "?" if v is None else ("yes" if v else "no")

        return (f"{self.verdict}: tangent dim {self.tangent_dim}/{self.n_inputs}, differentiable {b(self.differentiable)}, "
                f"equals true gradient {b(self.true_gradient_match)}, Clarke {b(self.clarke)}, "
                f"forward = reverse {b(self.forward_matches_reverse)}")

    def explain(self) -> str:
        """The full human-readable report."""
        out = [f"mtcheck verdict: {self.verdict}"]
        if self.program:
            out.append(f"program: {self.program}")
        out.append(_MEANING[self.verdict])
        mode = ("exact (float64 replays the exact values; gradients compared with no tolerance)" if self.exact_mode
                else f"tolerance rtol={self.tolerance[0]:g}, atol={self.tolerance[1]:g} "
                     "(the float forward does not replay the exact values)" if self.tolerance else "exact")
        if self.enclosure_radius is not None:
            mode += (f", plus the enclosure radius of J_S (irrational values; at most {self.enclosure_radius:.3g} "
                     "per row, L1)")
        out.append(f"comparison: {mode}")
        out.append(f"inputs: {self.n_inputs} coordinates, outputs: {self.n_outputs}; tangent space of the stratum: "
                   + (f"dimension {self.tangent_dim}" if self.tangent_dim is not None else "a proper subspace"
                      if self.verdict in (Verdict.ASSOCIATED, Verdict.NOT_ASSOCIATED) else "not decided"))
        if self.mismatch:
            out.append(self.mismatch)
        if self.witness is not None:
            out.append("witness:\n  " + str(self.witness).replace("\n", "\n  "))
        if self.rounding_nodes:
            out.append("the framework's float forward took another branch than exact arithmetic at:\n  "
                       + "\n  ".join(self.rounding_nodes))
        if self.certificate_ok is not None:
            out.append(f"certificate: {'verified' if self.certificate_ok else 'REJECTED'} by the independent checker "
                       f"({self.certificate_check[:160]})")
        out.append(self.summary())
        for k, v in self.reasons.items():
            out.append(f"  {k}: {v}")
        if self.pattern is not None and len(self.pattern):
            out.append("pattern (node, case counts, ties):\n  " + str(self.pattern).replace("\n", "\n  "))
        for n in self.notes:
            out.append(f"note: {n}")
        if self.replay:
            out.append(self.replay)
        return "\n".join(out)

    __str__ = explain


_MEANING = {
    Verdict.SMOOTH_OK: "the input is off every kink (or only on kinks that hold everywhere) and the framework's "
                       "gradient equals the program's.",
    Verdict.ASSOCIATED: "the input lies on a kink; along every direction that stays in its stratum the framework's "
                        "gradient gives the program's rate: an associated gradient (Murat-Trombetti).",
    Verdict.SMOOTH_WRONG: "the program is smooth at this input but the framework's gradient differs: a bug.",
    Verdict.NOT_ASSOCIATED: "along a direction that stays in the input's stratum the framework's gradient gives a "
                            "different rate than the program: no representation explains it, a bug.",
    Verdict.NONLINEAR_VJP: "the framework's reverse pass is not linear in its incoming gradient, so its 'gradient' "
                           "is no matrix at all: a bug.",
    Verdict.ROUNDING_BRANCH: "the framework's float forward pass took another branch than exact arithmetic "
                             "(a rounding-induced tie or a tie lost to rounding).",
    Verdict.UNKNOWN: "mtcheck could not decide (a solver limit or a budget); this is never a pass.",
}
