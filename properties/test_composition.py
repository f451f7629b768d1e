"""Theorem 1 / Corollary 2, Lemmas 1, 2 and 3 of the paper, on random piecewise-linear programs
at tie-heavy inputs.

Programs are built from a small grammar of layers on vectors (dyadic linear maps, relu, abs,
hardtanh, leaky relu, max-pool, sort, cummax, elementwise maximum with a flipped copy, median
over a sliding window), with weights and inputs in {-1, -1/2, 0, 1/2, 1}: float64 replays the
exact values, so framework Jacobians are compared exactly.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from _mtprops import BUGS, PASSING, PROPS, TIE_VALUES, check, explain

# ---- the grammar: each layer is (name, params); apply(layer, x) for a 1-D x


def _apply(layer, x):
    name, p = layer
    if name == "linear":
        W = torch.tensor(p, dtype=x.dtype)
        return W @ x
    if name == "relu":
        return torch.relu(x)
    if name == "abs":
        return torch.abs(x)
    if name == "hardtanh":
        return F.hardtanh(x, -0.5, 0.5)
    if name == "leaky":
        return F.leaky_relu(x, 0.25)
    if name == "maxpool":
        return F.max_pool1d(x.reshape(1, 1, -1), 2, stride=1).reshape(-1)
    if name == "sort":
        return torch.sort(x)[0]
    if name == "cummax":
        return torch.cummax(x, 0)[0]
    if name == "maxflip":
        return torch.maximum(x, x.flip(0))
    if name == "median3":
        return x.unfold(0, 3, 1).median(dim=1)[0]
    raise AssertionError(name)


def _out_len(layer, n):
    name, p = layer
    if name == "linear":
        return len(p)
    if name == "maxpool":
        return n - 1
    if name == "median3":
        return n - 2
    return n


_ELEMENTWISE = ("relu", "abs", "hardtanh", "leaky", "sort", "cummax", "maxflip")


@st.composite
def programs(draw, n, min_layers=1, max_layers=3):
    """A list of layers taking a length-``n`` vector to a vector of length >= 1."""
    layers = []
    for _ in range(draw(st.integers(min_layers, max_layers))):
        choices = ["linear", *_ELEMENTWISE]
        if n >= 2:
            choices.append("maxpool")
        if n >= 3:
            choices.append("median3")
        name = draw(st.sampled_from(choices))
        if name == "linear":
            m = draw(st.integers(1, 3))
            W = [[draw(st.sampled_from(TIE_VALUES)) for _ in range(n)] for _ in range(m)]
            layers.append(("linear", W))
        else:
            layers.append((name, None))
        n = _out_len(layers[-1], n)
    return layers, n


def run(layers, x):
    for layer in layers:
        x = _apply(layer, x)
    return x


def as_fn(layers):
    return lambda x: run(layers, x)


def vec(n):
    return st.lists(st.sampled_from(TIE_VALUES), min_size=n, max_size=n).map(
        lambda v: torch.tensor(v, dtype=torch.float64))


@st.composite
def chain(draw, k):
    """k programs u1..uk composable left to right, and an input for the first."""
    n0 = draw(st.integers(2, 4))
    parts, n = [], n0
    for _ in range(k):
        layers, n = draw(programs(n))
        parts.append(layers)
    return parts, draw(vec(n0))


def fw(layers, x):
    rep = check(as_fn(layers), x)
    assert rep.verdict not in BUGS, explain(rep)
    return rep


@given(chain(2))
@PROPS
def test_theorem1_chain_rule_on_the_same_trace(data):
    """J_fw(v o u)(x) = J_fw(v)(u(x)) J_fw(u)(x), and each of the three is associated."""
    (u, v), x = data
    ru = fw(u, x)
    ux = run(u, x).detach()
    rv = fw(v, ux)
    rvu = fw(u + v, x)
    for r in (ru, rv, rvu):
        assert r.verdict in PASSING, explain(r)
    prod = rv.framework_jacobian @ ru.framework_jacobian
    assert np.array_equal(rvu.framework_jacobian, prod), (rvu.framework_jacobian, prod)


@given(chain(3))
@PROPS
def test_lemma2_grouping_gives_the_same_strata_and_jacobian(data):
    """w o (v o u) and (w o v) o u: same pattern, same tangent space, same Jacobian, same verdict."""
    (u, v, w), x = data
    vu = lambda y: run(v, run(u, y))              # noqa: E731
    wv = lambda z: run(w, run(v, z))              # noqa: E731
    g = lambda y: run(w, vu(y))                   # w o (v o u)
    q = lambda y: wv(run(u, y))                   # (w o v) o u
    rg, rq = check(g, x), check(q, x)
    assert rg.verdict is rq.verdict and rg.verdict in PASSING, explain(rg)
    assert [(e.label, e.counts) for e in rg.pattern] == [(e.label, e.counts) for e in rq.pattern]
    assert rg.tangent_dim == rq.tangent_dim
    assert np.array_equal(rg.framework_jacobian, rq.framework_jacobian)
    # and the products of the parts agree with either grouping
    ux = run(u, x).detach()
    vux = run(v, ux).detach()
    J_u, J_v, J_w = (check(as_fn(u), x).framework_jacobian, check(as_fn(v), ux).framework_jacobian,
                     check(as_fn(w), vux).framework_jacobian)
    assert np.array_equal((J_w @ J_v) @ J_u, J_w @ (J_v @ J_u))
    assert np.array_equal(rg.framework_jacobian, J_w @ J_v @ J_u)


@given(st.data())
@PROPS
def test_lemma3_sums(data):
    """u + v: associated, Jacobians add, and its stratum is no larger than either part's."""
    n = data.draw(st.integers(2, 4))
    u, m = data.draw(programs(n))
    v, m2 = data.draw(programs(n))
    if m2 != m:   # make the output lengths match with a final linear map
        v = v + [("linear", [[data.draw(st.sampled_from(TIE_VALUES)) for _ in range(m2)] for _ in range(m)])]
    x = data.draw(vec(n))
    ru, rv = fw(u, x), fw(v, x)
    rs = check(lambda y: run(u, y) + run(v, y), x)
    assert rs.verdict in PASSING, explain(rs)
    assert np.array_equal(rs.framework_jacobian, ru.framework_jacobian + rv.framework_jacobian)
    assert rs.tangent_dim <= min(ru.tangent_dim, rv.tangent_dim)


@given(chain(1))
@PROPS
def test_forward_mode_matches_reverse_on_random_programs(data):
    """Forward mode against reverse mode at tie-heavy inputs, on programs of the grammar."""
    (u,), x = data
    rep = check(as_fn(u), x, forward_mode=True)
    assert rep.verdict in PASSING, explain(rep)
    assert rep.forward_matches_reverse is not False, explain(rep)
