"""Single nonsmooth ops at random ties: is PyTorch's gradient a Clarke subgradient?

For one op (not a composition, where Boustany's example shows it need not be), the gradient
of a generic linear functional of its outputs should lie in the convex hull of the gradients
of the neighbouring full-dimensional strata. This is decided by mtcheck's neighbour
enumeration (``neighbours=True``), only in exact mode (Clarke is decided exactly on the
framework's floats, so a rounded 1/3 would read as outside the hull). Recorded findings
(cdist/pdist with p = inf, scatter_reduce with include_self=False) are left out here.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import mtcheck

from _mtprops import BUGS, PROPS, explain, tie_tensors, tie_vectors


def _scalar(fn):
    def g(*xs):
        y = fn(*xs).reshape(-1)
        w = torch.arange(1, y.numel() + 1, dtype=y.dtype) * 0.125 + 1.0
        w = torch.where(torch.arange(y.numel()) % 2 == 0, w, -w / 2)
        return (y * w).sum()

    return g


OPS = {
    "sort": (lambda x: torch.sort(x)[0], st.tuples(tie_vectors(4))),
    "topk": (lambda x: torch.topk(x, 2)[0], st.tuples(tie_vectors(4))),
    "kthvalue": (lambda x: torch.kthvalue(x, 2)[0], st.tuples(tie_vectors(4))),
    "median": (lambda x: torch.median(x), st.tuples(tie_vectors(4))),
    "median dim": (lambda x: torch.median(x, 1)[0], st.tuples(tie_tensors((2, 3)))),
    "cummax": (lambda x: torch.cummax(x, 0)[0], st.tuples(tie_vectors(4))),
    "cummin": (lambda x: torch.cummin(x, 0)[0], st.tuples(tie_vectors(4))),
    "vector_norm 1": (lambda x: torch.linalg.vector_norm(x, 1), st.tuples(tie_vectors(4))),
    "vector_norm inf": (lambda x: torch.linalg.vector_norm(x, float("inf")), st.tuples(tie_vectors(4, (1.0, 2.0)))),
    "matrix_norm 1": (lambda x: torch.linalg.matrix_norm(x, 1), st.tuples(tie_tensors((2, 2)))),
    "matrix_norm inf": (lambda x: torch.linalg.matrix_norm(x, float("inf")), st.tuples(tie_tensors((2, 2)))),
    "dist 1": (lambda x, y: torch.dist(x, y, 1), st.tuples(tie_vectors(2), tie_vectors(2))),
    "l1_loss": (lambda x, y: F.l1_loss(x, y), st.tuples(tie_vectors(2), tie_vectors(2))),
    "margin_ranking": (lambda a, b: F.margin_ranking_loss(a, b, torch.tensor([1., -1.], dtype=a.dtype), margin=0.5),
                       st.tuples(tie_vectors(2), tie_vectors(2))),
    "multi_margin": (lambda x: F.multi_margin_loss(x, torch.tensor([0]), margin=0.5), st.tuples(tie_tensors((1, 4)))),
    "threshold": (lambda x: F.threshold(x, 0.5, 0.5), st.tuples(tie_vectors(3))),
    "prelu": (lambda x: F.prelu(x, torch.tensor([0.25], dtype=x.dtype)), st.tuples(tie_vectors(3))),
    "scatter amax include_self": (lambda s, x: s.scatter_reduce(0, torch.tensor([0, 0, 1]), x, "amax"),
                                  st.tuples(tie_vectors(2), tie_vectors(3))),
    "embedding_bag max": (lambda w: F.embedding_bag(torch.tensor([0, 1, 2]), w, torch.tensor([0]), mode="max"),
                          st.tuples(tie_tensors((3, 1)))),
    "max_pool1d overlapping": (lambda x: F.max_pool1d(x, 2, stride=1), st.tuples(tie_tensors((1, 1, 4)))),
    "adaptive_max_pool1d": (lambda x: F.adaptive_max_pool1d(x, 2), st.tuples(tie_tensors((1, 1, 3)))),
}


@pytest.mark.parametrize("name", list(OPS))
def test_single_op_gradient_is_clarke(name):
    fn, strategy = OPS[name]
    g = _scalar(fn)

    @given(strategy)
    @PROPS
    def prop(inputs):
        try:
            rep = mtcheck.check(g, *inputs, neighbours=True, max_pieces=16, forward_mode=False)
        except mtcheck.UnsupportedOpError:
            return
        assert rep.verdict not in BUGS, explain(rep)
        if rep.exact_mode and rep.verdict is mtcheck.Verdict.ASSOCIATED:
            assert rep.clarke is not False, f"{name} at {[t.tolist() for t in inputs]}" + explain(rep)

    prop()
