"""nn.LSTM (oneDNN's fused layer, mtcheck/ops/rnn.py) and nn.GRU, enclosed: decided, with certificates."""

import pytest
import torch
import torch.nn as nn

import mtcheck
from mtcheck import Verdict
from mtcheck.certificate import verify


@pytest.mark.parametrize("kw, shape", [
    ({"batch_first": True}, (2, 5, 4)),
    ({"num_layers": 2}, (5, 2, 4)),
    ({"bidirectional": True, "batch_first": True}, (1, 4, 4)),
    ({"bias": False}, (3, 1, 4)),
])
def test_lstm_is_decided(kw, shape):
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 3, **kw)
    rep = mtcheck.check(lambda x: lstm(x)[0], torch.randn(*shape))
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()
    assert verify(rep.certificate).ok


def test_lstm_final_states_and_a_relu_head():
    """h_n and c_n are decided; a relu head over the LSTM's (irrational) output is decided where its
    case is decided by the enclosures, and a unit forced to a float zero there is UNKNOWN, naming the
    relu (two irrational values are never called equal by a tolerance)."""
    torch.manual_seed(0)
    lstm, head = nn.LSTM(4, 3, batch_first=True).double(), nn.Linear(3, 2).double()
    x = torch.randn(1, 3, 4, dtype=torch.float64)
    rep = mtcheck.check(lambda v: lstm(v)[1][0].sum() + lstm(v)[1][1].sum(), x)
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()
    rep = mtcheck.check(lambda v: torch.relu(head(lstm(v)[0][:, -1])), x)
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()
    with torch.no_grad():
        h = lstm(x)[0][:, -1]
        head.bias[0] = -(h @ head.weight[0])[0]
    rep = mtcheck.check(lambda v: torch.relu(head(lstm(v)[0][:, -1])), x)
    if rep.verdict is Verdict.UNKNOWN:
        assert "aten.relu" in rep.reasons["undecided"]
    else:
        assert rep.verdict in (Verdict.SMOOTH_OK, Verdict.ROUNDING_BRANCH), rep.explain()
