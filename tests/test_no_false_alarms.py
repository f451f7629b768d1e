"""No false alarms: stock PyTorch ops on random piecewise-linear networks with dyadic
float64 weights, at inputs with simple structured ties, are always SMOOTH_OK or
ASSOCIATED."""

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mtcheck
from mtcheck import Verdict

D = torch.float64
dyadic = st.sampled_from([-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 2.0])


@st.composite
def weight(draw, rows, cols):
    w = draw(st.lists(st.lists(dyadic, min_size=cols, max_size=cols), min_size=rows, max_size=rows))
    t = torch.tensor(w, dtype=D)
    kind = draw(st.sampled_from(["plain", "zero-row", "dup-row"]))
    if kind == "zero-row" and rows > 1:
        t[draw(st.integers(0, rows - 1))] = 0
    if kind == "dup-row" and rows > 1:
        t[1] = t[0]            # two units that always tie
    return t


ACTS = {
    "relu": torch.relu,
    "leaky": lambda h: F.leaky_relu(h, 0.125),
    "hardtanh": lambda h: F.hardtanh(h, -0.5, 0.5),
    "abs": torch.abs,
    "clamp": lambda h: torch.clamp(h, min=0.0, max=1.0),
    "pool": lambda h: F.max_pool1d(h.unsqueeze(0), 2, stride=1, padding=1).squeeze(0),
    "maxpair": lambda h: torch.maximum(h, h.flip(-1)),
}


@st.composite
def network(draw):
    width = draw(st.integers(1, 4))
    n_in = width
    layers = []
    for _ in range(draw(st.integers(1, 3))):
        out = draw(st.integers(1, 4))
        w = draw(weight(out, n_in))
        b = torch.tensor(draw(st.lists(dyadic, min_size=out, max_size=out)), dtype=D)
        act = draw(st.sampled_from(sorted(ACTS)))
        residual = draw(st.booleans())
        layers.append((w, b, act, residual))
        n_in = layers[-1][0].shape[0] if act != "pool" else out + 1
    head = draw(st.sampled_from(["sum", "max", "amax", "vector"]))

    def f(x):
        h = x
        for w, b, act, residual in layers:
            z = ACTS[act](F.linear(h, w, b))
            h = z + z if residual else z
        if head == "sum":
            return h.sum()
        if head == "max":
            return h.max()
        if head == "amax":
            return torch.amax(h, dim=-1)
        return h

    desc = " -> ".join(f"linear{tuple(w.shape)}+{a}{'+res' if r else ''}" for w, b, a, r in layers) + f" -> {head}"
    f.__qualname__ = desc
    return f, width


@st.composite
def program_and_tie_input(draw):
    f, width = draw(network())
    base = draw(dyadic)
    vals = draw(st.lists(st.sampled_from([base, 0.0, base, -base, 0.5]), min_size=width, max_size=width))
    return f, torch.tensor([vals], dtype=D)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program_and_tie_input())
def test_stock_pytorch_is_always_associated(case):
    f, x = case
    rep = mtcheck.check(f, x, neighbours=False, forward_mode=False)
    assert rep.verdict in (Verdict.SMOOTH_OK, Verdict.ASSOCIATED), rep.explain()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program_and_tie_input())
def test_neighbouring_strata_fields_are_consistent(case):
    f, x = case
    rep = mtcheck.check(f, x, max_pieces=6, forward_mode=False)
    assert rep.verdict in (Verdict.SMOOTH_OK, Verdict.ASSOCIATED), rep.explain()
    if rep.differentiable is True:
        assert rep.true_gradient is not None and rep.true_gradient_match is not None
        if rep.n_outputs == 1:
            # a differentiable point has one neighbouring gradient: Clarke = {true gradient}
            assert rep.clarke == rep.true_gradient_match
    if rep.differentiable is None:
        assert rep.reasons.get("differentiable")
