"""The catalogue of PyTorch's tie semantics, op by op.

For every op variant of the list (sorting, order statistics, norms and distances,
losses, piecewise activations, index-defined maxima, the max-pool family) the
catalogue runs the exact checker at every tie shape it knows (two-way, many-way,
all equal, ties at the window edge, across overlapping windows, among several
inputs that all require grad, at a kink) and derives, from the gradients PyTorch
returns, one row:

* the selection rule at ties, in words (first index, last index, uniform average,
  "0 at the kink", ...): computed from the observed framework gradient at a probe
  input whose tie set is known, never written down in advance;
* the verdict over all tie shapes (associated, or not, with a minimal witness);
* whether the gradient is always a Clarke subgradient (of a fixed generic linear
  functional of the outputs, decided by mtcheck's neighbour enumeration);
* whether forward mode and reverse mode agree;
* the torch version.

Public API::

    variants() -> list[Variant]           # the op variants and their tie cases
    build_catalogue() -> list[dict]       # one row per variant
    render_markdown(rows) -> str
    render_json(rows) -> str
    catalogue_command                     # click command: mtcheck catalogue --format md|json --output FILE
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Case", "Variant", "variants", "run_case", "build_catalogue", "render_markdown", "render_json",
           "catalogue_command", "findings_from_rows", "BUG_VERDICTS"]

BUG_VERDICTS = ("SMOOTH_WRONG", "NOT_ASSOCIATED", "NONLINEAR_VJP")
_INF = math.inf


def T(*vals, shape=None) -> torch.Tensor:
    t = torch.tensor(vals, dtype=torch.float64)
    return t.reshape(shape) if shape is not None else t


# ----------------------------------------------------------------- the registry

@dataclass
class Case:
    """One tie shape of one variant: ``fn(*inputs)``, gradients w.r.t. every float input."""

    shape: str
    fn: Callable
    inputs: tuple
    note: str = ""


@dataclass
class Probe:
    """An input whose tie set is known, to read the selection rule off the gradient.

    kind ``select``: output ``rows[0]`` is a max/min/order statistic over tied
    ``groups`` (lists of flat input indices); ``order``: outputs ``rows`` hold the
    tied inputs ``groups`` (one index per group) in some order; ``kink``: ``fn`` maps a
    scalar ``t`` to a scalar, with a kink at ``at``; one-sided slopes read at ``at -+ h``.
    """

    kind: str
    fn: Callable
    x: torch.Tensor
    rows: list = field(default_factory=list)
    groups: list = field(default_factory=list)
    at: float = 0.0
    h: float = 0.25


@dataclass
class Variant:
    key: str                     # e.g. "torch.sort(descending=True, stable=True)"
    family: str
    cases: list
    probe: Probe | None = None
    affine: bool = True          # piecewise affine (neighbour enumeration meaningful)
    refused: str = ""            # why mtcheck gives no verdict (set when the op cannot be traced)
    note: str = ""               # a remark printed under the table

    def case_id(self, case: Case) -> str:
        return f"{self.key}::{case.shape}"


def _sel(fn, x, tied, row=0):
    return Probe("select", fn, x, [row], [[i] if isinstance(i, int) else list(i) for i in tied])


def _kink(fn, at, h=0.25):
    return Probe("kink", fn, torch.tensor(float(at), dtype=torch.float64), at=at, h=h)


# programs used by recorded findings: module level, importable by name (corpus kind "import")

def scatter_amax_excluded_self(s, src):
    """scatter_reduce(amax, include_self=False) where the excluded self equals the result."""
    return s.scatter_reduce(0, torch.tensor([0]), src, "amax", include_self=False)


def scatter_amin_excluded_self(s, src):
    return s.scatter_reduce(0, torch.tensor([0]), src, "amin", include_self=False)


def cdist_inf_const(x):
    """cdist(x, C, p=inf) with a constant second operand C = [[0, 0], [1, 1]]."""
    return torch.cdist(x, torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=x.dtype), _INF)


def pdist_inf_const_row(v):
    """pdist(p=inf) of the rows [v; 0] (one pair; the second row constant)."""
    return F.pdist(torch.cat([v, v.new_zeros(1, v.shape[1])]), _INF)


def pdist_inf_const_rows(v):
    """pdist(p=inf) of the rows [v; 0; 1] (the rows after v constant)."""
    return F.pdist(torch.cat([v, torch.tensor([[0.0] * 3, [1.0] * 3], dtype=v.dtype)]), _INF)


def scatter_amax_tie_with_self(s, x):
    """scatter_reduce(dim 1, amax, include_self=False) with index [[0,0,1,1],[0,1,0,1]]."""
    return s.scatter_reduce(1, torch.tensor([[0, 0, 1, 1], [0, 1, 0, 1]]), x, "amax", include_self=False)


def scatter_amin_tie_with_self(s, x):
    return s.scatter_reduce(1, torch.tensor([[0, 0, 1, 1], [0, 1, 0, 1]]), x, "amin", include_self=False)


def prelu_slope(x, w):
    """prelu with its slope an input (requires grad)."""
    return F.prelu(x, w)


def prelu_at_zero(x):
    """prelu with a constant slope 1/4 (forward mode vs reverse mode at x = 0)."""
    return F.prelu(x, torch.tensor([0.25], dtype=x.dtype))


def _quantile_like(x, q=0.25):
    """What torch.quantile(x, q, dim=-1) dispatches to (sort, gather, lerp), its ranks as constants."""
    n = x.shape[-1]
    r = q * (n - 1)
    lo, hi = math.floor(r), math.ceil(r)
    s = torch.sort(x, dim=-1)[0]
    return torch.lerp(s[..., lo], s[..., hi], torch.tensor(r - lo, dtype=x.dtype))


def _build() -> list:
    V = []
    add = V.append

    # ---- sorting and order statistics
    f = lambda x: torch.sort(x)[0]  # noqa: E731
    add(Variant("torch.sort", "sorting", [
        Case("two-way", f, (T(2, 0, 2, 1),)),
        Case("many-way", f, (T(1, 1, 0, 1, 1),)),
        Case("all equal", f, (T(0, 0, 0, 0),)),
        Case("window edge", f, (T(3, 0, 1, 3),), "ties at both ends of the row"),
        Case("dim 0, 2-D", lambda x: torch.sort(x, dim=0)[0], (T(1, 0, 1, 1, 0, 1, shape=(3, 2)),)),
        Case("several inputs", lambda x, y: torch.sort(torch.cat([x, y]))[0], (T(1, 0), T(1, 2))),
        Case("indices downstream", lambda x: x.gather(0, torch.sort(x)[1]) * T(1, 2, 3, 4), (T(1, 0, 1, 1),)),
    ], Probe("order", f, T(1, 0, 1, 1), [1, 2, 3], [[0], [2], [3]])))
    f = lambda x: torch.sort(x, descending=True, stable=True)[0]  # noqa: E731
    add(Variant("torch.sort(descending=True, stable=True)", "sorting", [
        Case("two-way", f, (T(2, 0, 2, 1),)),
        Case("many-way", f, (T(1, 1, 0, 1, 1),)),
        Case("all equal", f, (T(0, 0, 0, 0),)),
    ], Probe("order", f, T(1, 0, 1, 1), [0, 1, 2], [[0], [2], [3]])))
    f = lambda x: torch.sort(x, descending=True)[0]  # noqa: E731
    add(Variant("torch.sort(descending=True)", "sorting", [
        Case("two-way", f, (T(2, 0, 2, 1),)),
        Case("many-way", f, (T(1, 1, 0, 1, 1),)),
    ], Probe("order", f, T(1, 0, 1, 1), [0, 1, 2], [[0], [2], [3]])))
    f = lambda x: torch.topk(x, 2)[0]  # noqa: E731
    add(Variant("torch.topk(k=2)", "sorting", [
        Case("two-way", f, (T(3, 1, 3, 2),)),
        Case("boundary tie", f, (T(3, 2, 0, 2),), "the k-th value tied with an excluded entry"),
        Case("many-way", f, (T(1, 1, 1, 0, 1),)),
        Case("all equal", f, (T(0, 0, 0),)),
    ], _sel(lambda x: torch.topk(x, 1)[0], T(1, 2, 0, 2, 2), [1, 3, 4])))
    f = lambda x: torch.topk(x, 2, largest=False)[0]  # noqa: E731
    add(Variant("torch.topk(k=2, largest=False)", "sorting", [
        Case("two-way", f, (T(0, 1, 0, 2),)),
        Case("boundary tie", f, (T(0, 1, 3, 1),)),
        Case("many-way", f, (T(1, 1, 1, 2, 1),)),
    ], _sel(lambda x: torch.topk(x, 1, largest=False)[0], T(1, 0, 2, 0, 0), [1, 3, 4])))
    f = lambda x: torch.kthvalue(x, 2)[0]  # noqa: E731
    add(Variant("torch.kthvalue(k=2)", "order statistics", [
        Case("two-way", f, (T(1, 0, 0, 3),)),
        Case("boundary tie", f, (T(0, 1, 2, 1),)),
        Case("many-way", f, (T(0, 0, 0, 0, 1),)),
        Case("2-D, dim 0", lambda x: torch.kthvalue(x, 2, dim=0)[0], (T(1, 0, 1, 1, 0, 1, shape=(3, 2)),)),
    ], _sel(f, T(1, 0, 0, 0, 3), [1, 2, 3])))
    f = lambda x: torch.median(x)  # noqa: E731
    add(Variant("torch.median (full)", "order statistics", [
        Case("two-way", f, (T(1, 0, 0, 3),)),
        Case("many-way", f, (T(1, 0, 0, 0, 3),)),
        Case("all equal", f, (T(0, 0, 0, 0),)),
        Case("scalar path t*a", lambda t: torch.median(t * T(1, 2, 0, -1, 3)), (T(0),),
             "median(t a) = t near 0: differentiable, derivative 1"),
        Case("2-D", f, (T(1, 0, 1, 0, 2, 1, shape=(2, 3)),)),
    ], _sel(f, T(1, 0, 0, 0, 3), [1, 2, 3])))
    f = lambda x: torch.median(x, dim=-1)[0]  # noqa: E731
    add(Variant("torch.median(dim)", "order statistics", [
        Case("two-way", f, (T(1, 0, 0, 3, 2, 2, 1, 0, shape=(2, 4)),)),
        Case("many-way", f, (T(1, 0, 0, 0, 3),)),
        Case("all equal", f, (T(0, 0, 0, 0, 0, 0, shape=(2, 3)),)),
    ], _sel(f, T(1, 0, 0, 0, 3), [1, 2, 3])))
    f = lambda x: torch.nanmedian(x)  # noqa: E731
    add(Variant("torch.nanmedian (full)", "order statistics", [
        Case("two-way", f, (T(1, 0, 0, 3),)),
        Case("many-way", f, (T(1, 0, 0, 0, 3),)),
        Case("all equal", f, (T(0, 0, 0, 0),)),
    ], _sel(f, T(1, 0, 0, 0, 3), [1, 2, 3])))
    f = lambda x: torch.nanmedian(x, dim=-1)[0]  # noqa: E731
    add(Variant("torch.nanmedian(dim)", "order statistics", [
        Case("two-way", f, (T(1, 0, 0, 3, 2, 2, 1, 0, shape=(2, 4)),)),
        Case("many-way", f, (T(1, 0, 0, 0, 3),)),
    ], _sel(f, T(1, 0, 0, 0, 3), [1, 2, 3])))
    f = lambda x: torch.quantile(x, 0.25, dim=-1)  # noqa: E731
    add(Variant("torch.quantile(q=0.25, interpolation='linear')", "order statistics", [
        Case("two-way", f, (T(1, 0, 0, 3),)),
        Case("many-way", f, (T(1, 0, 0, 0, 3),)),
    ], _sel(f, T(1, 0, 0, 0, 3), [1, 2, 3])))
    f = _quantile_like  # noqa: E731
    add(Variant("quantile as torch decomposes it (sort, gather, lerp)", "order statistics", [
        Case("two-way", f, (T(1, 0, 0, 3),)),
        Case("many-way", f, (T(1, 0, 0, 0, 3),)),
        Case("interpolated tie", lambda x: _quantile_like(x, 0.5), (T(1, 1, 0, 3),),
             "linear interpolation between two tied order statistics"),
        Case("2-D", f, (T(1, 0, 0, 3, 2, 2, 1, 0, shape=(2, 4)),)),
    ], _sel(lambda x: _quantile_like(x, 0.5), T(1, 0, 0, 0, 3), [1, 2, 3])))
    f = lambda x: torch.cummax(x, 0)[0]  # noqa: E731
    add(Variant("torch.cummax", "order statistics", [
        Case("two-way", f, (T(1, 0, 1, 2),)),
        Case("many-way", f, (T(1, 1, 0, 1, 1),)),
        Case("all equal", f, (T(0, 0, 0),)),
        Case("2-D, dim 1", lambda x: torch.cummax(x, 1)[0], (T(1, 0, 1, 2, 2, 2, shape=(2, 3)),)),
    ], _sel(lambda x: torch.cummax(x, 0)[0][3], T(1, 0, 1, 1), [0, 2, 3])))
    f = lambda x: torch.cummin(x, 0)[0]  # noqa: E731
    add(Variant("torch.cummin", "order statistics", [
        Case("two-way", f, (T(0, 1, 0, -1),)),
        Case("many-way", f, (T(0, 0, 1, 0, 0),)),
        Case("all equal", f, (T(0, 0, 0),)),
    ], _sel(lambda x: torch.cummin(x, 0)[0][3], T(0, 1, 0, 0), [0, 2, 3])))

    # ---- norms and distances
    f = lambda x: torch.linalg.vector_norm(x, 1)  # noqa: E731
    add(Variant("linalg.vector_norm(ord=1)", "norms", [
        Case("one zero", f, (T(1, 0, -2),)),
        Case("all zero", f, (T(0, 0, 0),)),
        Case("dim", lambda x: torch.linalg.vector_norm(x, 1, dim=1), (T(0, 1, 0, 0, shape=(2, 2)),)),
    ], _kink(lambda t: torch.linalg.vector_norm(torch.stack([t, t.new_tensor(1.0)]), 1), 0.0)))
    f = lambda x: torch.linalg.vector_norm(x, _INF)  # noqa: E731
    add(Variant("linalg.vector_norm(ord=inf)", "norms", [
        Case("two-way", f, (T(1, 3, 3, 2),)),
        Case("many-way", f, (T(3, 3, 3, 3, 1),)),
        Case("two-way negative", f, (T(-3, -1, -3),)),
        Case("dim", lambda x: torch.linalg.vector_norm(x, _INF, dim=1), (T(2, 2, 1, -1, -3, -3, shape=(2, 3)),)),
        Case("opposite signs", f, (T(3, -3, 1),)),
        Case("zero entry", f, (T(2, 0, 2),)),
    ], _sel(f, T(1, 3, 3, 2), [1, 2])))
    f = lambda x: torch.linalg.vector_norm(x, -_INF)  # noqa: E731
    add(Variant("linalg.vector_norm(ord=-inf)", "norms", [
        Case("two-way", f, (T(2, 1, 1, 3),)),
        Case("many-way", f, (T(1, 1, 1, 1, 2),)),
        Case("two-way negative", f, (T(-2, -1, -1),)),
        Case("zero entry", f, (T(2, 0, 1),)),
    ], _sel(f, T(2, 1, 1, 3), [1, 2])))
    for ordv, name in ((1, "1"), (-1, "-1"), (_INF, "inf"), (-_INF, "-inf")):
        fm = (lambda o: (lambda x: torch.linalg.matrix_norm(x, o)))(ordv)
        # ord 1/-1: max/min over columns of the column abs sums; inf/-inf: over rows
        tied = [[0, 2], [1, 3]] if abs(ordv) == 1 else [[0, 1], [2, 3]]
        add(Variant(f"linalg.matrix_norm(ord={name})", "norms", [
            Case("two-way", fm, (T(1, 2, 2, 1, shape=(2, 2)),)),
            Case("zero entries", fm, (T(1, 0, 0, 1, 2, 0, shape=(3, 2)),)),
            Case("many-way", fm, (T(1, 1, 1, 1, 1, 1, 1, 1, 1, shape=(3, 3)),)),
        ], Probe("select", fm, T(1, 2, 2, 1, shape=(2, 2)), [0], tied)))
    f = lambda x, y: torch.dist(x, y, 1)  # noqa: E731
    add(Variant("torch.dist(p=1)", "distances", [
        Case("several inputs", f, (T(1, 0, 2), T(1, 1, 2))),
        Case("all equal", f, (T(0, 0), T(0, 0))),
    ], _kink(lambda t: torch.dist(torch.stack([t, t.new_tensor(1.0)]), T(0, 0), 1), 0.0)))
    yc = T(1, 2, 1, 0)
    f = lambda x: torch.dist(x, yc, _INF)  # noqa: E731
    add(Variant("torch.dist(p=inf), second operand constant", "distances", [
        Case("two-way", f, (T(3, 4, 2, 1),)),
        Case("many-way", f, (T(3, 4, 3, 2),)),
        Case("both operands require grad", lambda x, y: torch.dist(x, y, _INF), (T(3, 4, 2, 1), yc)),
    ], _sel(f, T(3, 4, 2, 1), [0, 1])))
    f = lambda x, y: torch.cdist(x, y, 1)  # noqa: E731
    add(Variant("torch.cdist(p=1)", "distances", [
        Case("several inputs", f, (T(1, 0, 0, 2, shape=(2, 2)), T(1, 1, 0, 2, shape=(2, 2)))),
        Case("all equal", f, (T(0, 0, 0, 0, shape=(2, 2)), T(0, 0, 0, 0, shape=(2, 2)))),
    ], _kink(lambda t: torch.cdist(torch.stack([t, t.new_tensor(1.0)]).reshape(1, 2), T(0, 0, shape=(1, 2)),
                                   1).reshape(()), 0.0)))
    f = cdist_inf_const
    add(Variant("torch.cdist(p=inf), second operand constant", "distances", [
        Case("two-way", f, (T(2, 2, 3, 3, shape=(2, 2)),)),
        Case("mixed", f, (T(3, 2, 4, 4, shape=(2, 2)),)),
    ], _sel(lambda x, f=f: f(x)[0, 0], T(2, 2, 3, 3, shape=(2, 2)), [0, 1])))
    f = lambda x: F.pdist(x, 1)  # noqa: E731
    add(Variant("F.pdist(p=1)", "distances", [
        Case("equal rows", f, (T(1, 0, 1, 0, 2, 1, shape=(3, 2)),)),
        Case("all equal", f, (T(0, 0, 0, 0, shape=(2, 2)),)),
    ], _kink(lambda t: F.pdist(torch.stack([t, t.new_tensor(0.0)]).reshape(2, 1), 1).reshape(()), 0.0)))
    f = lambda x: F.pdist(x, _INF)  # noqa: E731
    add(Variant("F.pdist(p=inf)", "distances", [
        Case("one column", f, (T(1, 1, 2, shape=(3, 1)),)),
        Case("two columns", f, (T(1, 0, 1, 0, shape=(2, 2)),)),
        Case("two-way, second row constant", pdist_inf_const_row,
             (T(2, 2, shape=(1, 2)),)),
        Case("many-way, other rows constant", pdist_inf_const_rows, (T(2, 2, 2, shape=(1, 3)),)),
    ], _sel(lambda v: F.pdist(torch.cat([v, T(0, 0, shape=(1, 2))]), _INF)[0], T(2, 2, shape=(1, 2)), [0, 1])))
    f = lambda x, y: F.pairwise_distance(x, y, 1, eps=0.0)  # noqa: E731
    add(Variant("F.pairwise_distance(p=1, eps=0)", "distances", [
        Case("several inputs", f, (T(1, 0, 2, 2, shape=(2, 2)), T(1, 1, 2, 0, shape=(2, 2)))),
        Case("all equal", f, (T(0, 0, shape=(1, 2)), T(0, 0, shape=(1, 2)))),
    ], _kink(lambda t: F.pairwise_distance(torch.stack([t, t.new_tensor(1.0)]).reshape(1, 2),
                                           T(0, 0, shape=(1, 2)), 1, eps=0.0).reshape(()), 0.0)))
    f = lambda x, y: F.pairwise_distance(x, y, _INF, eps=0.0)  # noqa: E731
    add(Variant("F.pairwise_distance(p=inf, eps=0)", "distances", [
        Case("several inputs", f, (T(3, 2, 0, 0, shape=(2, 2)), T(1, 0, 1, 1, shape=(2, 2)))),
        Case("many-way", f, (T(2, 2, 2, shape=(1, 3)), T(0, 0, 0, shape=(1, 3)))),
    ], _sel(lambda x: F.pairwise_distance(x, T(1, 0, 0, shape=(1, 3)), _INF, eps=0.0).reshape(()),
            T(3, 2, 1, shape=(1, 3)), [0, 1])))

    # ---- losses
    f = lambda x, y: F.l1_loss(x, y)  # noqa: E731
    add(Variant("F.l1_loss", "losses", [
        Case("several inputs", f, (T(1, 0, 2, 3), T(1, 1, 2, 0))),
        Case("all equal", f, (T(0, 0), T(0, 0))),
    ], _kink(lambda t: F.l1_loss(t, t.new_tensor(0.0)), 0.0)))
    f = lambda x, y: F.smooth_l1_loss(x, y, beta=1.0)  # noqa: E731
    add(Variant("F.smooth_l1_loss(beta=1)", "losses", [
        Case("at |d| = beta", f, (T(2, 0, -1, 3), T(1, 1, 0, 3))),
        Case("at d = 0", f, (T(1, 0), T(1, 0))),
    ], _kink(lambda t: F.smooth_l1_loss(t, t.new_tensor(0.0), beta=1.0), 1.0), affine=False,
        note="C^1: the quadratic and linear pieces join with equal slopes at |d| = beta, so no selection there "
             "can be wrong; the probe reads the slope at d = 1 (left 3/4 is the quadratic piece's slope at "
             "1 - 1/4)."))
    f = lambda x, y: F.smooth_l1_loss(x, y, beta=0.0)  # noqa: E731
    add(Variant("F.smooth_l1_loss(beta=0)", "losses", [
        Case("several inputs", f, (T(1, 0, 2, 3), T(1, 1, 2, 0))),
    ], _kink(lambda t: F.smooth_l1_loss(t, t.new_tensor(0.0), beta=0.0), 0.0)))
    f = lambda x, y: F.huber_loss(x, y, delta=1.0)  # noqa: E731
    add(Variant("F.huber_loss(delta=1)", "losses", [
        Case("at |d| = delta", f, (T(2, 0, -1, 3), T(1, 1, 0, 3))),
        Case("at d = 0", f, (T(1, 0), T(1, 0))),
    ], _kink(lambda t: F.huber_loss(t, t.new_tensor(0.0), delta=1.0), 1.0), affine=False,
        note="C^1 like smooth_l1: the pieces join with equal slopes at |d| = delta."))
    tg = T(1, -1, -1, 1)
    f = lambda x: F.hinge_embedding_loss(x, tg, margin=1.0)  # noqa: E731
    add(Variant("F.hinge_embedding_loss(margin=1)", "losses", [
        Case("kink", f, (T(0, 1, 0, 2),)),
        Case("reduction none", lambda x: F.hinge_embedding_loss(x, tg, margin=1.0, reduction="none"),
             (T(1, 1, 1, 1),)),
    ], _kink(lambda t: F.hinge_embedding_loss(t.reshape(1), T(-1), margin=1.0), 1.0),
        note="ROUNDING_BRANCH here is not PyTorch's doing: hinge_embedding_loss fills an empty_like tensor in "
             "place (fill_) with the margin, and mtcheck's trace keeps that constant's value from before the "
             "fill (a core tracing bug, reported), so the exact replay disagrees with the float forward."))
    yy = T(1, -1, 1, 1)
    f = lambda a, b: F.margin_ranking_loss(a, b, yy, margin=0.5)  # noqa: E731
    add(Variant("F.margin_ranking_loss(margin=0.5)", "losses", [
        Case("several inputs", f, (T(1, 0, 2, 3), T(0.5, 0.5, 1.5, 0))),
        Case("margin 0, equal inputs", lambda a, b: F.margin_ranking_loss(a, b, yy), (T(1, 1, 0, 2), T(1, 1, 0, 2))),
    ], _kink(lambda t: F.margin_ranking_loss(t.reshape(1), T(0), T(-1), margin=0.5), -0.5)))
    tgt = torch.tensor([0, 2])
    f = lambda x: F.multi_margin_loss(x, tgt)  # noqa: E731
    add(Variant("F.multi_margin_loss(p=1, margin=1)", "losses", [
        Case("kink", f, (T(1, 0, 1, -1, 2, 0, 3, 1, shape=(2, 4)),)),
        Case("many kinks", lambda x: F.multi_margin_loss(x, torch.tensor([0])), (T(1, 0, 0, 0, shape=(1, 4)),)),
        Case("weights", lambda x: F.multi_margin_loss(x, tgt, weight=T(1, 2, 0.5, 1)),
             (T(1, 0, 1, -1, 2, 0, 3, 1, shape=(2, 4)),)),
    ], _kink(lambda t: F.multi_margin_loss(torch.stack([t.new_tensor(0.0), t]).reshape(1, 2),
                                           torch.tensor([0])), -1.0)))
    f = lambda x: F.multi_margin_loss(x, tgt, p=2)  # noqa: E731
    add(Variant("F.multi_margin_loss(p=2, margin=1)", "losses", [
        Case("kink", f, (T(1, 0, 1, -1, 2, 0, 3, 1, shape=(2, 4)),)),
    ], _kink(lambda t: F.multi_margin_loss(torch.stack([t.new_tensor(0.0), t]).reshape(1, 2),
                                           torch.tensor([0]), p=2), -1.0), affine=False))

    # ---- activations
    f = F.hardswish
    add(Variant("F.hardswish (kink at -3)", "activations", [
        Case("kinks at -3 and 3", f, (T(-3, 3, 0, -4),)),
    ], _kink(lambda t: F.hardswish(t), -3.0), affine=False))
    add(Variant("F.hardswish (kink at 3)", "activations", [
        Case("kink at 3", f, (T(3, 3),)),
    ], _kink(lambda t: F.hardswish(t), 3.0), affine=False))
    f = F.hardsigmoid
    add(Variant("F.hardsigmoid (kink at -3)", "activations", [
        Case("kinks at -3 and 3", f, (T(-3, 3, 0, -4),)),
    ], _kink(lambda t: F.hardsigmoid(t), -3.0)))
    add(Variant("F.hardsigmoid (kink at 3)", "activations", [
        Case("kink at 3", f, (T(3, 3),)),
    ], _kink(lambda t: F.hardsigmoid(t), 3.0)))
    f = lambda x: F.threshold(x, 1.0, 1.0)  # noqa: E731
    add(Variant("F.threshold(threshold=1, value=1)", "activations", [
        Case("kink", f, (T(1, 0, 2, 1),)),
    ], _kink(lambda t: F.threshold(t, 1.0, 1.0), 1.0)))
    add(Variant("F.prelu (constant slope 1/4)", "activations", [
        Case("kink", prelu_at_zero, (T(0, 1, -1),)),
    ], _kink(prelu_at_zero, 0.0)))
    add(Variant("F.prelu (slope requires grad)", "activations", [
        Case("several inputs", prelu_slope, (T(0, 1, -1), T(0.25))),
        Case("per channel", prelu_slope, (T(0, 1, -1, 0, shape=(1, 2, 2)), T(0.25, 0.5))),
    ], _kink(lambda t: F.prelu(t.reshape(1), T(0.25)).reshape(()), 0.0), affine=False))

    # ---- index-defined maxima
    idx = torch.tensor([[0, 0, 1, 1], [0, 1, 0, 1]])
    for red in ("amax", "amin"):
        for incl in (True, False):
            fn = (lambda r, i: (lambda s, x: s.scatter_reduce(1, idx, x, r, include_self=i)))(red, incl)
            cases = [
                Case("two-way", fn, (T(-5, -5, -5, -5, shape=(2, 2)) if red == "amax" else
                                      T(5, 5, 5, 5, shape=(2, 2)), T(1, 1, 0, 2, 0, 3, 0, 3, shape=(2, 4)))),
                Case("tie with self", fn if incl else (scatter_amax_tie_with_self if red == "amax" else
                                                       scatter_amin_tie_with_self),
                     (T(1, 0, 0, 1, shape=(2, 2)), T(1, 1, 1, 2, 0, 0, 3, 1, shape=(2, 4)))),
            ]
            if not incl:
                fmin = scatter_amax_excluded_self if red == "amax" else scatter_amin_excluded_self
                cases.append(Case("excluded self equal", fmin, (T(1), T(1)),
                                  "include_self=False and the untouched self value equals the result"))
            probe = _sel(lambda x, fn=fn, red=red: fn(T(-5, -5, -5, -5, shape=(2, 2)) if red == "amax" else
                                                      T(5, 5, 5, 5, shape=(2, 2)), x)[0, 0],
                         T(1, 1, 0, 2, 0, 3, 0, 3, shape=(2, 4)), [0, 1])
            add(Variant(f"Tensor.scatter_reduce({red}, include_self={incl})", "index maxima", cases, probe))
    ebi = torch.tensor([0, 1, 1, 2, 3])
    off = torch.tensor([0, 2, 2])
    f = lambda w: F.embedding_bag(ebi, w, off, mode="max")  # noqa: E731
    add(Variant("F.embedding_bag(mode='max')", "index maxima", [
        Case("two-way", f, (T(1, 0, 1, 0, 1, 3, 2, 1, shape=(4, 2)),)),
        Case("empty bag, all equal", f, (T(0, 0, 0, 0, 0, 0, 0, 0, shape=(4, 2)),)),
        Case("2-D indices", lambda w: F.embedding_bag(torch.tensor([[0, 1, 2], [1, 2, 3]]), w, mode="max"),
             (T(1, 0, 1, 0, 1, 3, 2, 1, shape=(4, 2)),)),
        Case("index repeated in a bag", lambda w: F.embedding_bag(torch.tensor([1, 0, 1]), w, torch.tensor([0]),
                                                                 mode="max"), (T(1, 0, 2, 2, 1, 3, shape=(3, 2)),)),
    ], _sel(lambda w: F.embedding_bag(torch.tensor([[0, 1, 2]]), w, mode="max")[0, 0],
            T(2, 0, 1, 0, 2, 1, shape=(3, 2)), [0, 4])))

    # ---- the basic primitives (modelled by the core; here for a complete table)
    for key, fn, at in (("torch.relu", torch.relu, 0.0), ("F.leaky_relu(0.25)", lambda t: F.leaky_relu(t, 0.25), 0.0),
                        ("torch.abs", torch.abs, 0.0), ("F.relu6 (kink at 0)", F.relu6, 0.0),
                        ("F.relu6 (kink at 6)", F.relu6, 6.0), ("F.hardtanh (kink at -1)", F.hardtanh, -1.0),
                        ("torch.clamp(min=0, max=1) (kink at 1)", lambda t: torch.clamp(t, 0.0, 1.0), 1.0)):
        add(Variant(key, "basic primitives", [
            Case("kink", fn, (T(at, at + 1, at - 1, at),)),
        ], _kink(fn, at)))
    add(Variant("torch.maximum", "basic primitives", [
        Case("several inputs", torch.maximum, (T(1, 0, 2), T(1, 1, 2))),
    ], _sel(lambda x: torch.maximum(x[0], x[1]), T(1, 1), [0, 1])))
    for key, fn in (("torch.minimum", torch.minimum), ("torch.fmax", torch.fmax), ("torch.fmin", torch.fmin),
                    ("torch.clamp(x, min=y) tensor bound", lambda x, y: torch.clamp(x, min=y)),
                    ("torch.clamp(x, max=y) tensor bound", lambda x, y: torch.clamp(x, max=y))):
        add(Variant(key, "basic primitives", [
            Case("several inputs", fn, (T(1, 0, 2), T(1, 1, 2))),
        ], _sel(lambda x, fn=fn: fn(x[0], x[1]), T(1, 1), [0, 1]),
            note="probe: x == y; tied entry [0] is x, [1] is y."))
    add(Variant("torch.clamp(x, lo, hi) tensor bounds", "basic primitives", [
        Case("several inputs", lambda x, lo, hi: torch.clamp(x, lo, hi), (T(0, 1, 2), T(0, 0, 1), T(1, 1, 2))),
    ], _sel(lambda v: torch.clamp(v[0], v[1], v[2]), T(0, 0, 1), [0, 1]),
        note="probe: x = lo = 0 < hi = 1; tied entry [0] is x, [1] is the lower bound lo."))
    for key, fn in (("torch.max (full)", torch.max), ("torch.amax", lambda x: torch.amax(x, 0)),
                    ("torch.max(dim)", lambda x: torch.max(x, 0)[0]), ("torch.min (full)", torch.min),
                    ("x.gather(0, max(x, 0, keepdim=True).indices)",
                     lambda x: x.gather(0, torch.max(x, 0, keepdim=True)[1]).reshape(()))):
        add(Variant(key, "basic primitives", [
            Case("two-way", fn, (T(1, 2, 2, 0) if "min" not in key else T(1, 0, 0, 2),)),
            Case("all equal", fn, (T(0, 0, 0, 0),)),
        ], _sel(fn, T(1, 2, 2, 2) if "min" not in key else T(1, 0, 0, 0), [1, 2, 3])))

    # ---- the max-pool family
    x1 = T(1, 1, 0, 1, 1, 2, 2, 0, shape=(1, 1, 8))
    x2 = T(1, 1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 2, 0, 2, 2, shape=(1, 1, 4, 4))
    x3 = T(*([1, 1, 0, 1, 1, 1, 1, 0] * 2), shape=(1, 1, 2, 2, 4))
    pool_rows = [
        ("F.max_pool1d(3, stride=1) overlapping", lambda x: F.max_pool1d(x, 3, stride=1), x1),
        ("F.max_pool1d(2, stride=2, padding=1, dilation=2, ceil_mode=True)",
         lambda x: F.max_pool1d(x, 2, stride=2, padding=1, dilation=2, ceil_mode=True), x1),
        ("F.max_pool2d(2, stride=1) overlapping", lambda x: F.max_pool2d(x, 2, stride=1), x2),
        ("F.max_pool2d(3, stride=2, padding=1, ceil_mode=True)",
         lambda x: F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True), x2),
        ("F.max_pool2d(2, stride=1, dilation=2)", lambda x: F.max_pool2d(x, 2, stride=1, dilation=2), x2),
        ("F.max_pool3d(2, stride=1)", lambda x: F.max_pool3d(x, 2, stride=1), x3),
        ("F.max_pool3d((1,2,2), stride=1, padding=(0,1,1), ceil_mode=True)",
         lambda x: F.max_pool3d(x, (1, 2, 2), stride=1, padding=(0, 1, 1), ceil_mode=True), x3),
        ("F.adaptive_max_pool1d(3)", lambda x: F.adaptive_max_pool1d(x, 3), x1),
        ("F.adaptive_max_pool2d((3,3))", lambda x: F.adaptive_max_pool2d(x, (3, 3)), x2),
        ("F.adaptive_max_pool3d((1,2,3))", lambda x: F.adaptive_max_pool3d(x, (1, 2, 3)), x3),
    ]
    for key, fn, x in pool_rows:
        nsp = x.ndim - 2
        z = torch.zeros((1, 1) + (3,) * nsp, dtype=torch.float64)
        edge = torch.zeros_like(x)
        flat = edge.view(-1)
        flat[0] = 1.0
        flat[-1] = 1.0
        add(Variant(key, "max-pool", [
            Case("overlapping windows", fn, (x,)),
            Case("all equal", fn, (z if "adaptive" not in key else torch.zeros_like(x),)),
            Case("window edge", fn, (edge,), "ties at the first and the last element"),
        ], _pool_probe(fn, x)))
    return V


def _pool_probe(fn, x):
    """A select probe for a pooling ``fn``: all-zero input, the first output whose window (found by
    perturbing one input at a time) holds at least two entries; those entries tie."""
    zero = x.new_zeros(x.shape)
    base = fn(zero).reshape(-1)
    windows = [[] for _ in range(base.numel())]
    for i in range(x.numel()):
        v = zero.clone().reshape(-1)
        v[i] = 1.0
        changed = torch.nonzero(fn(v.reshape(x.shape)).reshape(-1) != base).reshape(-1).tolist()
        for o in changed:
            windows[o].append(i)
    row = next(o for o, w in enumerate(windows) if len(w) >= 2)
    return Probe("select", lambda v, fn=fn, row=row: fn(v).reshape(-1)[row], zero, [0],
                 [[i] for i in windows[row]])


_VARIANTS = None


def variants() -> list:
    """Every op variant of the catalogue with its tie cases (built once)."""
    global _VARIANTS
    if _VARIANTS is None:
        _VARIANTS = _build()
    return _VARIANTS


# ----------------------------------------------------------------- running

def run_case(case: Case, *, neighbours=False, forward_mode=True, max_pieces=8):
    """``mtcheck.check`` on one case. Returns (report, None) or (None, refusal text)."""
    import mtcheck

    try:
        rep = mtcheck.check(case.fn, *case.inputs, neighbours=neighbours, forward_mode=forward_mode,
                            max_pieces=max_pieces, name=case.shape)
    except (mtcheck.UnsupportedOpError, mtcheck.OutsideTheoryError) as e:
        import re

        return None, re.sub(r" \(called at [^)]*\)", "", str(e).split(". Supported ops")[0])
    return rep, None


def _scalarised(case: Case) -> Case:
    """The case composed with a fixed generic dyadic linear functional of the outputs (for Clarke)."""
    def fn(*xs):
        y = case.fn(*xs)
        flat = y.reshape(-1)
        w = torch.arange(1, flat.numel() + 1, dtype=flat.dtype) * 0.125 + 1.0
        w = torch.where(torch.arange(flat.numel()) % 2 == 0, w, -w / 2)
        return (flat * w).sum()

    return Case(case.shape, fn, case.inputs, case.note)


def _fr(v) -> str:
    from fractions import Fraction

    fr = Fraction(float(v)).limit_denominator(1 << 20)
    return str(fr) if float(fr) == float(v) else repr(float(v))


def classify(probe: Probe) -> dict:
    """The selection rule at the probe's tie, from the framework's gradients there."""
    import mtcheck

    if probe.kind == "kink":
        at = float(probe.at)
        ds = []
        for t in (at, at - probe.h, at + probe.h):
            rep = mtcheck.check(probe.fn, torch.tensor(t, dtype=torch.float64), neighbours=False, forward_mode=False)
            ds.append(float(rep.framework_jacobian[0, 0]))
        d0, left, right = ds
        if left == right == d0:
            rule = "no kink: one-sided slopes agree (C^1 at the breakpoint)"
        elif d0 == 0 and 0 not in (left, right):
            rule = "0 at the kink (neither one-sided slope)"
        elif d0 == 0 and left == 0:
            rule = "0 at the kink (= the left slope)"
        elif d0 == 0 and right == 0:
            rule = "0 at the kink (= the right slope)"
        elif d0 == left:
            rule = "the left slope"
        elif d0 == right:
            rule = "the right slope"
        elif d0 == (left + right) / 2:
            rule = "average of the one-sided slopes"
        else:
            rule = "other"
        return {"rule": rule, "observed": f"at t = {_fr(at)}: {_fr(d0)} (left slope {_fr(left)}, right {_fr(right)})"}
    rep = mtcheck.check(probe.fn, probe.x, neighbours=False, forward_mode=False)
    J = rep.framework_jacobian
    if probe.kind == "order":
        mapping = []
        for r in probe.rows:
            row = np.abs(J[r])
            nz = np.nonzero(row)[0]
            mapping.append(int(nz[0]) if len(nz) == 1 else None)
        tied = [g[0] for g in probe.groups]
        if None in mapping:
            rule = "other: a tied output spreads over several inputs"
        elif mapping == tied:
            rule = "stable: tied entries keep their input order"
        elif mapping == tied[::-1]:
            rule = "reversed input order among ties"
        else:
            rule = "other order among ties"
        return {"rule": rule, "observed": f"tied inputs {tied} -> outputs {probe.rows}: input order {mapping}"}
    g = J[probe.rows[0]]
    mass = [float(np.abs(g[grp]).sum()) for grp in probe.groups]
    total = sum(mass)
    k = len(mass)
    labels = ", ".join(_fr(m) for m in mass)
    if total == 0:
        rule = "0: no tied entry gets a gradient"
    elif all(m == mass[0] for m in mass) and str(rep.verdict) in BUG_VERDICTS:
        rule = "every tied entry gets the whole gradient (not an average: the rates add up)"
    elif all(m == mass[0] for m in mass):
        rule = "uniform average over the tie"
    elif sum(1 for m in mass if m) == 1:
        j = next(i for i, m in enumerate(mass) if m)
        rule = ("first index" if j == 0 else "last index" if j == k - 1 else
                f"other: tied entry {j + 1} of {k}")
        if 0 < j < k - 1 and k == 3:
            rule = "other: the middle tied entry (2 of 3)"
    else:
        rule = "other: uneven split"
    where = "; ".join(str(grp) for grp in probe.groups)
    return {"rule": rule, "observed": f"tied {where}: gradient mass {labels}"}


def _witness_dict(rep) -> dict | None:
    from ._exact import fmt

    w = rep.witness
    if w is None:
        return None
    return {"output": int(w.output_index), "direction": [fmt(v) for v in w.direction],
            "framework_rate": fmt(w.framework_rate), "stratum_rate": fmt(w.stratum_rate),
            "h": None if w.h is None else fmt(w.h), "f_x": None if w.f_x is None else fmt(w.f_x),
            "f_x_plus_ht": None if w.f_x_plus_ht is None else fmt(w.f_x_plus_ht)}


def _inputs_text(inputs) -> str:
    parts = []
    for x in inputs:
        vals = ", ".join(_fr(v) for v in x.detach().reshape(-1).tolist())
        parts.append(f"[{vals}]" + (f" shape {tuple(x.shape)}" if x.ndim != 1 else ""))
    return "; ".join(parts)


def case_result(variant: Variant, case: Case, *, clarke=True) -> dict:
    """Everything the catalogue records about one case."""
    res = {"id": variant.case_id(case), "shape": case.shape, "inputs": _inputs_text(case.inputs)}
    name = getattr(case.fn, "__name__", "")
    if globals().get(name) is case.fn:    # a module-level program: importable (corpus kind "import")
        res["program"] = f"{__name__}:{name}"
    try:
        rep, refused = run_case(case, neighbours=False, forward_mode=True)
    except Exception as e:  # noqa: BLE001 - an error in one case is a row entry, not the end of the catalogue
        res.update(verdict="ERROR", refused=f"{type(e).__name__}: {str(e)[:200]}")
        return res
    if rep is None:
        res.update(verdict="REFUSED", refused=refused)
        return res
    res.update(verdict=str(rep.verdict), tangent_dim=rep.tangent_dim, n_inputs=rep.n_inputs,
               exact=rep.exact_mode, forward_matches_reverse=rep.forward_matches_reverse,
               forward_reason=rep.reasons.get("forward = reverse", ""),
               framework_jacobian=[[_fr(v) for v in row] for row in rep.framework_jacobian.tolist()])
    if str(rep.verdict) in BUG_VERDICTS:
        res["witness"] = _witness_dict(rep)
        res["mismatch"] = rep.mismatch
    if rep.forward_matches_reverse is False:
        from .trace import prepare_inputs, trace
        from . import framework

        leaves, wrt = prepare_inputs(case.inputs, None)
        tr = trace(case.fn, leaves)
        J_fwd, _ = framework.forward_jacobian(case.fn, tr, wrt)
        res["forward_jacobian"] = [[_fr(v) for v in row] for row in J_fwd.tolist()]
    if clarke and variant.affine:
        srep, _ = run_case(_scalarised(case), neighbours=True, forward_mode=False, max_pieces=48)
        if srep is not None:
            res["clarke"] = srep.clarke
            res["clarke_exact"] = srep.exact_mode and str(srep.verdict) != "ROUNDING_BRANCH"
            if srep.clarke is None:
                res["clarke_reason"] = srep.reasons.get("Clarke", "")
    return res


def build_catalogue(variant_list=None, *, clarke=True) -> list:
    """One row per op variant, from the gradients PyTorch returns at every tie case."""
    rows = []
    for v in (variant_list if variant_list is not None else variants()):
        cases = [case_result(v, c, clarke=clarke) for c in v.cases]
        row = {"op": v.key, "family": v.family, "torch": torch.__version__, "cases": cases}
        if v.note:
            row["note"] = v.note
        if v.refused:
            row.update(rule="(not traced)", verdict="refused", clarke="-", forward_reverse="-", note=v.refused)
            rows.append(row)
            continue
        if v.probe is not None:
            try:
                row.update(classify(v.probe))
            except Exception as e:  # noqa: BLE001 - a probe that cannot run is reported, not fatal
                row.update(rule="(probe failed)", observed=f"{type(e).__name__}: {str(e)[:120]}")
        decided = [c for c in cases if c["verdict"] not in ("REFUSED", "ERROR")]
        bugs = [c for c in decided if c["verdict"] in BUG_VERDICTS]
        if bugs:
            worst = min(bugs, key=lambda c: len(c["inputs"]))
            row["verdict"] = f"NOT associated ({worst['verdict']})"
            row["witness_case"] = worst["id"]
        elif decided and all(c["verdict"] in ("ASSOCIATED", "SMOOTH_OK") for c in decided):
            row["verdict"] = "associated"
        elif decided:
            row["verdict"] = "undecided (" + ", ".join(sorted({c["verdict"] for c in decided
                                                               if c["verdict"] not in ("ASSOCIATED", "SMOOTH_OK")})) + ")"
        else:
            row["verdict"] = "refused"
        refused = [c for c in cases if c["verdict"] in ("REFUSED", "ERROR")]
        if refused:
            row["refused_cases"] = [f"{c['shape']}: {c['refused']}" for c in refused]
        # Clarke is decided exactly on the framework's floats: only trust it where the floats are exact
        cl = [c.get("clarke") if c.get("clarke_exact") else None for c in decided]
        if not v.affine:
            row["clarke"] = "n/a (pieces not affine)"
        elif any(c is False for c in cl):
            row["clarke"] = "no (" + ", ".join(c["shape"] for c, k in zip(decided, cl) if k is False) + ")"
        elif cl and all(c is True for c in cl):
            row["clarke"] = "yes"
        elif any(c is True for c in cl):
            row["clarke"] = f"yes where decided ({sum(c is True for c in cl)}/{len(cl)})"
        else:
            row["clarke"] = "undecided"
        fr = [c.get("forward_matches_reverse") for c in decided]
        if any(f is False for f in fr):
            row["forward_reverse"] = "differ (" + ", ".join(c["shape"] for c in decided
                                                           if c.get("forward_matches_reverse") is False) + ")"
        elif fr and all(f is True for f in fr):
            row["forward_reverse"] = "agree"
        elif any(f is True for f in fr):
            row["forward_reverse"] = "agree where available"
        else:
            reason = next((c["forward_reason"] for c in decided if c.get("forward_reason")), "")
            row["forward_reverse"] = "no forward mode" + (f" ({reason.split(':')[1].strip()})" if ":" in reason else "")
        rows.append(row)
    return rows


def findings_from_rows(rows) -> list:
    """Every case whose verdict is a bug, or whose forward and reverse mode differ."""
    out = []
    for row in rows:
        for c in row.get("cases", []):
            kinds = []
            if c.get("verdict") in BUG_VERDICTS:
                kinds.append("verdict")
            if c.get("forward_matches_reverse") is False:
                kinds.append("forward_reverse")
            for k in kinds:
                f = {"id": c["id"], "kind": k, "op": row["op"], "tie_shape": c["shape"],
                     "program": c.get("program"), "inputs": c["inputs"],
                     "verdict": c["verdict"], "framework_jacobian": c["framework_jacobian"],
                     "torch": row["torch"]}
                if k == "verdict":
                    f["witness"] = c.get("witness")
                else:
                    f["forward_jacobian"] = c.get("forward_jacobian")
                out.append(f)
    return out


# ----------------------------------------------------------------- rendering

def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def render_markdown(rows, sweep=None) -> str:
    """The catalogue page; ``sweep`` (the JSON of ``mtcheck opinfo``) adds one row per OpInfo op."""
    tv = rows[0]["torch"] if rows else torch.__version__
    out = ["# PyTorch's gradients at ties, op by op", "",
           "Regenerate: `" + REGENERATE + "`" if sweep is not None else
           "Regenerate: `mtcheck catalogue --format md --output docs/catalogue.md`", "",
           f"Generated by `mtcheck catalogue` (mtcheck.catalogue) with torch {tv}. Every table entry is derived",
           "from the gradients PyTorch returns at exact ties (float64, small dyadic inputs, exact comparison),",
           "never written by hand (the notes below the tables explain). *Rule*: what the framework's gradient selects at a tie, read at a probe input whose",
           "tie set is known. *Verdict*: over every tie shape tried (associated: along every direction that",
           "stays in the input's stratum the gradient gives the program's rate). *Clarke*: whether the",
           "gradient of a fixed generic linear functional of the outputs lies in the convex hull of the",
           "gradients of the neighbouring full-dimensional strata (decided only where the framework's floats are",
           "exact; not for ops whose pieces are not affine). *Forward/reverse*: whether forward-mode AD",
           "(`torch.autograd.forward_ad`) gives the same Jacobian as reverse mode.", ""]
    fam = None
    for r in rows:
        if r["family"] != fam:
            fam = r["family"]
            out += ["", f"## {fam}", "", "| op | rule at ties | verdict | Clarke | forward/reverse | tie shapes |",
                    "|---|---|---|---|---|---|"]
        shapes = ", ".join(f"{c['shape']} ({_short_verdict(c)})" for c in r["cases"])
        rule = r.get("rule", "")
        if r.get("observed"):
            rule += f" — {r['observed']}"
        out.append(f"| `{_md_escape(r['op'])}` | {_md_escape(rule)} | {_md_escape(r['verdict'])} | "
                   f"{_md_escape(r.get('clarke', ''))} | {_md_escape(r.get('forward_reverse', ''))} | "
                   f"{_md_escape(shapes)} |")
    notes = [r for r in rows if r.get("note") or r.get("refused_cases")]
    if notes:
        out += ["", "## Notes and refusals", "",
                "A refusal is mtcheck declining to judge (the exact model cannot write the case), never a pass.", ""]
        for r in notes:
            for n in ([r["note"]] if r.get("note") else []) + r.get("refused_cases", []):
                out.append(f"- `{r['op']}`: {n}")
    finds = findings_from_rows(rows)
    out += ["", "## Findings", ""]
    if not finds:
        out.append("None: every gradient at every tie tried is associated, and forward mode agrees with reverse mode.")
    for f in finds:
        out.append(f"- **{f['op']}**, tie shape *{f['tie_shape']}*, inputs {f['inputs']} (torch {f['torch']}):")
        if f["kind"] == "verdict":
            w = f.get("witness") or {}
            out.append(f"  verdict {f['verdict']}; framework Jacobian {f['framework_jacobian']}; witness: direction "
                       f"t = ({', '.join(w.get('direction', []))}), output {w.get('output')}: framework J t = "
                       f"{w.get('framework_rate')}, program J_S t = {w.get('stratum_rate')}"
                       + (f"; exactly f(x) = {w['f_x']}, f(x + h t) = {w['f_x_plus_ht']} with h = {w['h']}"
                          if w.get("h") else "") + ".")
        else:
            both = ", both associated" if f["verdict"] in ("ASSOCIATED", "SMOOTH_OK") else ""
            out.append(f"  forward mode differs from reverse mode (verdict {f['verdict']}{both}): "
                       f"reverse {f['framework_jacobian']}, forward {f['forward_jacobian']}.")
    if sweep is not None:
        out += render_sweep_section(sweep, rows)
    out += ["", "Regenerate with `mtcheck catalogue --format md --output docs/catalogue.md`"
                + (" --sweep opinfo.json (the JSON of `mtcheck opinfo --output opinfo.json`)" if sweep is not None
                   else "") + "; the findings are recorded "
                "in `properties/known_findings.json` and replayed by `properties/test_findings.py`."]
    return "\n".join(out) + "\n"


def _short_verdict(c) -> str:
    v = c["verdict"]
    return {"ASSOCIATED": "assoc.", "SMOOTH_OK": "smooth", "REFUSED": "refused"}.get(v, v)


def render_json(rows, sweep=None) -> str:
    from . import __version__

    # metadata read by `mtcheck catalogue --diff` (mtcheck.catalogue_diff): the format and the versions
    doc = {"mtcheck_catalogue": 1, "torch": rows[0]["torch"] if rows else torch.__version__,
           "mtcheck": __version__, "rows": rows}
    if sweep is not None:
        doc["opinfo"] = sweep_rows(sweep)
    return json.dumps(doc, indent=1, default=str) + "\n"


# ----------------------------------------------------------------- the OpInfo sweep's rows

def _not_modelled(r) -> str:
    """Why an OpInfo op has no verdict, in the catalogue's words."""
    st, why = r.get("status"), str(r.get("reason", ""))
    aten = r.get("aten", "")
    if st == "unsupported":
        if "random" in why:
            return "random"
        if "irrational" in why or "norm: only p in" in why or "only non-negative integer powers" in why:
            return f"irrational values ({aten})"
        if "complex" in why:
            return "complex"
        if "no derivative" in why:
            return f"PyTorch has no derivative ({aten})"
        return f"not yet: {why[:120]}"
    if st == "outside":
        return f"discontinuous ({aten})"
    if st == "invalid":
        if "complex" in why:
            return "complex"
        if "CUDA" in why:
            return "CUDA only"
        return f"no valid tie input ({why[:80]})"
    if st == "no_float_sample":
        return "no real float64 sample"
    if st == "too_large":
        return "samples too large for the sweep"
    if st == "input":
        return f"documented input error: {why[:100]}"
    if st == "unknown":
        return "UNKNOWN (solver or budget limit)"
    if st == "crash":
        return f"INTERNAL CRASH: {why[:100]}"
    return f"{st}: {why[:100]}"


def _base_name(name: str) -> str:
    """``torch.topk(k=2, largest=False)`` -> ``topk``; ``nn.functional.max_pool2d`` -> ``max_pool2d``;
    ``Tensor.scatter_reduce(amax, ...)`` -> ``scatter_reduce``; ``linalg.vector_norm`` stays."""
    n = name.split("(")[0].split(" ")[0]
    for pre in ("torch.", "F.", "Tensor.", "nn.functional.", "x."):
        if n.startswith(pre):
            n = n[len(pre):]
    return n


def curated_rules(curated_rows) -> dict:
    """base op name -> the rules at ties the curated probes read off (variant: rule)."""
    out: dict = {}
    for r in curated_rows or []:
        if r.get("rule") and not r["rule"].startswith("("):
            out.setdefault(_base_name(r["op"]), []).append((r["op"], r["rule"]))
    return out


def _opinfo_rule(row, rules) -> str:
    """The rule at ties for an OpInfo op: the curated probes' reading for the same op (the probes are
    the catalogue's extra tie shapes), else what the sweep's tie checks show."""
    names = [row["op"], row.get("name") or row["op"].split(".")[0]]
    found = []
    for n in names:
        found = rules.get(_base_name(n)) or rules.get(_base_name(n).split(".")[0]) or []
        if found:
            break
    if found:
        if len(found) == 1:
            return found[0][1]
        uniq = list(dict.fromkeys(rule for _, rule in found))
        if len(uniq) == 1:
            return f"{uniq[0]} ({len(found)} variants probed)"
        return "; ".join(f"{k}: {rule}" for k, rule in found[:3]) + (" ..." if len(found) > 3 else "")
    if row.get("status") == "decided":
        if not row.get("ties"):
            return "no tie reached by the sweep"
        return "not probed (associated at the sweep's ties)" if row.get("verdict") == "associated" else "not probed"
    return ""


def sweep_rows(sweep, curated_rows=None) -> list:
    """One row per OpInfo op from a sweep: the verdicts at ties, forward vs reverse, or why not modelled.
    ``curated_rows`` (:func:`build_catalogue`'s rows) give the rule at ties of the ops they probe."""
    rules = curated_rules(curated_rows)
    rows = []
    for r in sweep.get("ops", []):
        checks = [c for c in r.get("checks", []) if c.get("outcome") != "invalid"]
        verdicts = [c["verdict"] for c in checks if c.get("outcome") == "verdict"]
        row = {"op": r["op"], "status": r.get("status"), "torch": sweep.get("torch")}
        if r.get("status") == "decided":
            counts = {v: verdicts.count(v) for v in sorted(set(verdicts))}
            bugs = {v: n for v, n in counts.items() if v in BUG_VERDICTS}
            row["verdict"] = ("NOT associated (" + ", ".join(bugs) + ")") if bugs else (
                "associated" if set(counts) <= {"ASSOCIATED", "SMOOTH_OK"} else
                "undecided (" + ", ".join(v for v in counts if v not in ("ASSOCIATED", "SMOOTH_OK")) + ")")
            row["ties"] = sum(1 for c in checks if c.get("tie"))
            row["checks"] = f"{len(verdicts)}/{len(checks)}"
            row["verdicts"] = counts
            row["forward_reverse"] = r.get("forward_reverse") or ""
            if r.get("partial"):
                row["note"] = r["partial"]
            row["findings"] = r.get("findings", [])
            cl = r.get("clarke")
            row["clarke"] = ("yes" if cl is True else "no" if cl is False else
                             f"not decided ({r['clarke_reason']})" if r.get("clarke_reason") else
                             "- (no tie)" if not row["ties"] else "not decided")
        else:
            row["verdict"] = "-"
            row["reason"] = _not_modelled(r)
        row["name"] = r.get("name")
        row["rule"] = _opinfo_rule(row, rules)
        rows.append(row)
    return rows


REGENERATE = ("mtcheck opinfo --output opinfo.json --corpus opinfo-corpus && "
              "mtcheck catalogue --format md --sweep opinfo.json --output docs/catalogue.md")


def render_sweep_section(sweep, curated_rows=None) -> list:
    """Markdown lines: the OpInfo table and its findings."""
    rows = sweep_rows(sweep, curated_rows)
    s = sweep.get("summary", {})
    out = ["", "## Every OpInfo op (PyTorch's own op database)", "",
           f"Generated by `mtcheck opinfo` (properties/opinfo_sweep.py) with torch {sweep.get('torch')}: every entry "
           "of `torch.testing._internal.common_methods_invocations.op_db`, its first float64 samples moved onto ties "
           f"({', '.join(sweep.get('strategies', []))}) and checked with `neighbours=False`. "
           f"Summary: decided {s.get('decided')}/{s.get('with_float_sample')} ops with a real float64 sample "
           f"({s.get('decided_pct')}%), {s.get('internal_crashes')} internal crashes. *Verdict*: over every check "
           "that ran (associated: every one passed); *ties*: how many of the checks sat on a kink (tangent space "
           "smaller than the input space); *forward/reverse*: whether forward-mode AD agreed with reverse mode; "
           "*rule at ties*: what the curated probes above read off the same op's gradient (they are the extra tie "
           "shapes of this table), else what the sweep's own tie checks show; *Clarke*: for the smallest exact tie "
           "check of each op, whether the gradient of a fixed generic linear functional of the outputs lies in the "
           "convex hull of the neighbouring strata's gradients (z3, within a budget); "
           "*not modelled*: why there is no verdict.", "",
           "| op | rule at ties | verdict at ties | Clarke | checks (ties) | forward/reverse | not modelled |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["status"] == "decided":
            out.append(f"| `{_md_escape(r['op'])}` | {_md_escape(r.get('rule', ''))} | {_md_escape(r['verdict'])} | "
                       f"{_md_escape(r.get('clarke', ''))} | {r['checks']} ({r['ties']}) | "
                       f"{_md_escape(r['forward_reverse'])} | {_md_escape(r.get('note', ''))} |")
        else:
            out.append(f"| `{_md_escape(r['op'])}` | {_md_escape(r.get('rule', ''))} | - | - | - | - | "
                       f"{_md_escape(r['reason'])} |")
    finds = [(r, f) for r in rows for f in r.get("findings", [])]
    out += ["", "### Findings of the sweep", ""]
    if not finds:
        out.append("None: no check gave a bug verdict, and forward mode agreed with reverse mode wherever it ran.")
    groups: dict = {}
    for r, f in finds:
        kind = f["verdict"] if f["verdict"] in BUG_VERDICTS else "forward != reverse"
        groups.setdefault((r["op"], kind), []).append(f)
    for (op, kind), fs in groups.items():
        f = min(fs, key=lambda c: sum(len(x) for x in c.get("inputs", [])))
        what = (f"verdict {kind}" if kind in BUG_VERDICTS else
                f"forward mode differs from reverse mode (verdict {f['verdict']})")
        inputs = "; ".join("[" + ", ".join(_fr(v) for v in x[:24]) + (", ..." if len(x) > 24 else "") + "]"
                           for x in f.get("inputs", []))
        diff = next((ln.strip() for ln in str(f.get("mismatch", "")).splitlines() if "Greatest absolute" in ln), "")
        out.append(f"- **{op}**: {what} in {len(fs)} check(s); smallest: sample {f.get('sample')}, strategy "
                   f"*{f.get('strategy')}*, shapes {f.get('shapes')}, inputs {inputs}" + (f" ({diff})" if diff else ""))
    cases = sweep.get("cases") or []
    if cases:
        out += ["", f"Each finding is a replayable corpus case ({len(cases)} cases, written by `mtcheck opinfo "
                    "--corpus DIR`, or from a saved sweep by `mtcheck opinfo --cases-from opinfo.json --corpus DIR`; "
                    "`mtcheck replay DIR` replays them, traced programs, no imports):", ""]
        for c in cases:
            out.append(f"- `{c['file']}`: {c['op']}, {c['kind']}, verdict {c['verdict']} (sample {c.get('sample')}, "
                       f"strategy *{c.get('strategy')}*)")
    out += ["", "Replay one: `mtcheck opinfo --op NAME -n 1` (the JSON it writes holds every check and its inputs)."]
    return out


# ----------------------------------------------------------------- CLI

def _make_command():
    import click

    @click.command("catalogue")
    @click.option("--format", "fmt", type=click.Choice(["md", "json"]), default="md", show_default=True,
                  help="Markdown table or JSON rows.")
    @click.option("--output", type=click.Path(dir_okay=False, writable=True), default=None,
                  help="Write to FILE instead of standard output.")
    @click.option("--no-clarke", is_flag=True, help="Skip the (slower) Clarke column.")
    @click.option("--sweep", "sweep_path", type=click.Path(exists=True, dir_okay=False), default=None,
                  help="Merge the rows of an OpInfo sweep (the JSON `mtcheck opinfo --output` writes).")
    @click.option("--op", "ops", multiple=True, metavar="TEXT",
                  help="Only the variants whose name contains TEXT (repeatable).")
    def catalogue_command(fmt, output, no_clarke, ops, sweep_path):
        """The catalogue of PyTorch's tie semantics, op by op, derived from observed gradients."""
        chosen = [v for v in variants() if not ops or any(o in v.key for o in ops)]
        if not chosen:
            raise click.BadParameter(f"no variant matches {list(ops)}", param_hint="--op")
        rows = build_catalogue(chosen, clarke=not no_clarke)
        sweep = json.loads(open(sweep_path).read()) if sweep_path else None
        text = render_markdown(rows, sweep) if fmt == "md" else render_json(rows, sweep)
        if output:
            import os
            import tempfile

            d = os.path.dirname(os.path.abspath(output))
            fd, tmp = tempfile.mkstemp(dir=d, prefix=".catalogue-")
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.replace(tmp, output)
            click.echo(f"mtcheck catalogue: {len(rows)} rows written to {output}", err=True)
        else:
            click.echo(text, nl=False)

    return catalogue_command


catalogue_command = _make_command()


def findings_document(rows=None) -> dict:
    """The recorded findings (for ``properties/known_findings.json``): plain JSON, no pickle."""
    if rows is None:
        rows = build_catalogue(clarke=False)
    return {"about": "Findings of mtcheck's property suite against PyTorch: op variants whose gradient at a "
                     "tie is not associated (with an exact witness), or whose forward mode disagrees with "
                     "reverse mode. Generated by mtcheck.catalogue.findings_document(); each `id` names a "
                     "case of mtcheck.catalogue.variants(), replayed by properties/test_findings.py.",
            "torch": torch.__version__, "findings": findings_from_rows(rows)}
