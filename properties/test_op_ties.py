"""Every op of the catalogue at every tie shape it lists, and at random tie-heavy inputs.

A verdict that is a bug (NOT_ASSOCIATED, SMOOTH_WRONG, NONLINEAR_VJP), or forward mode
disagreeing with reverse mode, fails here unless it is a recorded finding
(``known_findings.json``, checked by ``test_findings.py`` to still reproduce). A case that
mtcheck refuses (an inf-norm tie whose discriminant cannot be written) must be refused with
a reason, never given a verdict.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import mtcheck
from mtcheck import Verdict, catalogue

from _mtprops import BUGS, PROPS, check, explain, finding_ids, tie_tensors, tie_vectors

_CASES = [(v, c) for v in catalogue.variants() for c in v.cases]
_IDS = [v.case_id(c) for v, c in _CASES]
_BUG_FINDINGS = finding_ids("verdict")
_FWD_FINDINGS = finding_ids("forward_reverse")


@pytest.mark.parametrize("variant,case", _CASES, ids=_IDS)
def test_catalogue_case(variant, case):
    cid = variant.case_id(case)
    rep, refused = catalogue.run_case(case, neighbours=False, forward_mode=True)
    if rep is None:
        assert refused, cid
        return
    if cid in _BUG_FINDINGS:
        assert rep.verdict in BUGS, f"{cid}: recorded as a finding but now {rep.verdict}" + explain(rep)
    else:
        assert rep.verdict not in BUGS, cid + explain(rep)
        assert rep.verdict is not Verdict.UNKNOWN, cid + explain(rep)
    if cid in _FWD_FINDINGS:
        assert rep.forward_matches_reverse is False, f"{cid}: recorded forward != reverse, now agree"
    elif cid not in _BUG_FINDINGS:
        assert rep.forward_matches_reverse is not False, cid + explain(rep)


def test_every_listed_op_is_in_the_catalogue():
    keys = " ".join(v.key for v in catalogue.variants())
    for op in ("torch.sort", "torch.topk", "torch.kthvalue", "torch.median", "torch.nanmedian", "quantile",
               "torch.cummax", "torch.cummin", "vector_norm(ord=1)", "vector_norm(ord=inf)", "vector_norm(ord=-inf)",
               "matrix_norm(ord=1)", "matrix_norm(ord=-1)", "matrix_norm(ord=inf)", "matrix_norm(ord=-inf)",
               "torch.dist(p=1)", "torch.dist(p=inf)", "torch.cdist(p=1)", "torch.cdist(p=inf)", "F.pdist(p=1)",
               "F.pdist(p=inf)", "pairwise_distance(p=1", "pairwise_distance(p=inf", "F.l1_loss",
               "F.smooth_l1_loss", "F.huber_loss", "F.hinge_embedding_loss", "F.margin_ranking_loss",
               "F.multi_margin_loss", "F.hardswish", "F.hardsigmoid", "F.threshold", "F.prelu",
               "scatter_reduce(amax", "scatter_reduce(amin", "embedding_bag(mode='max')", "F.max_pool1d",
               "F.max_pool2d", "F.max_pool3d", "F.adaptive_max_pool1d", "F.adaptive_max_pool2d",
               "F.adaptive_max_pool3d"):
        assert op in keys, op


# ---- random tie-heavy inputs, op by op

def _idx():
    return torch.tensor([[0, 0, 1, 1], [0, 1, 0, 1]])


RANDOM = {
    # name: (fn, strategy of input tuples)
    "sort": (lambda x: torch.sort(x)[0], st.tuples(tie_vectors(5))),
    "sort desc dim0": (lambda x: torch.sort(x, 0, descending=True)[0], st.tuples(tie_tensors((3, 2)))),
    "topk": (lambda x: torch.topk(x, 2)[0], st.tuples(tie_vectors(5))),
    "kthvalue": (lambda x: torch.kthvalue(x, 3)[0], st.tuples(tie_vectors(5))),
    "median": (lambda x: torch.median(x), st.tuples(tie_vectors(5))),
    "median dim": (lambda x: torch.median(x, 1)[0], st.tuples(tie_tensors((2, 4)))),
    "nanmedian": (lambda x: torch.nanmedian(x), st.tuples(tie_vectors(4))),
    "quantile-like": (lambda x: catalogue._quantile_like(x, 0.5), st.tuples(tie_vectors(4))),
    "cummax": (lambda x: torch.cummax(x, 0)[0], st.tuples(tie_vectors(5))),
    "cummin": (lambda x: torch.cummin(x, 1)[0], st.tuples(tie_tensors((2, 3)))),
    "vector_norm 1": (lambda x: torch.linalg.vector_norm(x, 1), st.tuples(tie_vectors(4))),
    "vector_norm inf (positive)": (lambda x: torch.linalg.vector_norm(x, float("inf")),
                                   st.tuples(tie_vectors(4, (0.5, 1.0, 2.0)))),
    "vector_norm -inf (negative)": (lambda x: torch.linalg.vector_norm(x, -float("inf"), dim=1),
                                    st.tuples(tie_tensors((2, 3), (-0.5, -1.0, -2.0)))),
    "matrix_norm 1": (lambda x: torch.linalg.matrix_norm(x, 1), st.tuples(tie_tensors((2, 2)))),
    "matrix_norm -inf": (lambda x: torch.linalg.matrix_norm(x, -float("inf")), st.tuples(tie_tensors((2, 2)))),
    "dist 1": (lambda x, y: torch.dist(x, y, 1), st.tuples(tie_vectors(4), tie_vectors(4))),
    "cdist 1": (lambda x, y: torch.cdist(x, y, 1), st.tuples(tie_tensors((2, 2)), tie_tensors((2, 2)))),
    "pdist 1": (lambda x: F.pdist(x, 1), st.tuples(tie_tensors((3, 2)))),
    "pairwise 1": (lambda x, y: F.pairwise_distance(x, y, 1, eps=0.0), st.tuples(tie_tensors((2, 2)),
                                                                                  tie_tensors((2, 2)))),
    "l1": (lambda x, y: F.l1_loss(x, y), st.tuples(tie_vectors(4), tie_vectors(4))),
    "smooth_l1": (lambda x, y: F.smooth_l1_loss(x, y, beta=0.5), st.tuples(tie_vectors(4), tie_vectors(4))),
    "huber": (lambda x, y: F.huber_loss(x, y, delta=0.5, reduction="sum"), st.tuples(tie_vectors(4), tie_vectors(4))),
    "margin_ranking": (lambda a, b: F.margin_ranking_loss(a, b, torch.tensor([1., -1., 1., -1.], dtype=a.dtype),
                                                          margin=0.5), st.tuples(tie_vectors(4), tie_vectors(4))),
    "multi_margin": (lambda x: F.multi_margin_loss(x, torch.tensor([0, 3]), margin=0.5), st.tuples(tie_tensors((2, 4)))),
    "hardsigmoid": (F.hardsigmoid, st.tuples(tie_vectors(4, (-3.0, 3.0, 0.0, -4.0, 4.0)))),
    "hardswish": (F.hardswish, st.tuples(tie_vectors(4, (-3.0, 3.0, 0.0, -4.0, 4.0)))),
    "threshold": (lambda x: F.threshold(x, 0.5, 0.5), st.tuples(tie_vectors(4))),
    "prelu (w requires grad)": (lambda x, w: F.prelu(x, w), st.tuples(tie_vectors(4), tie_vectors(1))),
    "scatter amax include_self": (lambda s, x: s.scatter_reduce(1, _idx(), x, "amax"),
                                  st.tuples(tie_tensors((2, 2)), tie_tensors((2, 4)))),
    "scatter amin include_self": (lambda s, x: s.scatter_reduce(1, _idx(), x, "amin"),
                                  st.tuples(tie_tensors((2, 2)), tie_tensors((2, 4)))),
    "embedding_bag max": (lambda w: F.embedding_bag(torch.tensor([0, 1, 2, 2, 3]), w, torch.tensor([0, 3]),
                                                    mode="max"), st.tuples(tie_tensors((4, 2)))),
    "max_pool1d overlap pad ceil": (lambda x: F.max_pool1d(x, 3, stride=2, padding=1, ceil_mode=True),
                                    st.tuples(tie_tensors((1, 1, 6)))),
    "max_pool1d dilation": (lambda x: F.max_pool1d(x, 2, stride=1, dilation=2), st.tuples(tie_tensors((1, 1, 6)))),
    "max_pool2d overlap": (lambda x: F.max_pool2d(x, 2, stride=1, padding=1), st.tuples(tie_tensors((1, 1, 3, 3)))),
    "max_pool3d": (lambda x: F.max_pool3d(x, 2, stride=1), st.tuples(tie_tensors((1, 1, 2, 2, 3)))),
    "adaptive_max_pool1d": (lambda x: F.adaptive_max_pool1d(x, 4), st.tuples(tie_tensors((1, 1, 5)))),
    "adaptive_max_pool2d": (lambda x: F.adaptive_max_pool2d(x, (2, 3)), st.tuples(tie_tensors((1, 1, 3, 4)))),
    "adaptive_max_pool3d": (lambda x: F.adaptive_max_pool3d(x, (1, 2, 2)), st.tuples(tie_tensors((1, 2, 3, 3)))),
}
# forward mode is checked where PyTorch implements it (cdist, pdist, multi_margin, embedding_bag: it does not)
_PRELU_FWD = "prelu"


@pytest.mark.parametrize("name", list(RANDOM))
def test_random_ties(name):
    fn, strategy = RANDOM[name]

    @given(strategy)
    @PROPS
    def prop(inputs):
        try:
            rep = check(fn, *inputs, forward_mode=True)
        except mtcheck.UnsupportedOpError as e:   # a refusal must say why
            assert "is not supported by mtcheck" in str(e)
            return
        assert rep.verdict not in BUGS, f"{name} at {[t.tolist() for t in inputs]}" + explain(rep)
        if _PRELU_FWD not in name:
            assert rep.forward_matches_reverse is not False, f"{name} at {[t.tolist() for t in inputs]}" + explain(rep)

    prop()
