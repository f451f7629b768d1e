"""Recorded findings still reproduce (``known_findings.json``).

Each finding names a case of :func:`mtcheck.catalogue.variants` by its id. The test replays
it and asserts the recorded behaviour: the same verdict, the same framework Jacobian, the
same witness rates (``J_fw t`` against the program's ``J_S t``), or the same forward-mode
Jacobian. A torch release that changes the behaviour makes this test fail: update the
record (regenerate it with ``mtcheck.catalogue.findings_document()``) and the catalogue.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from mtcheck import catalogue, framework
from mtcheck.trace import prepare_inputs, trace

from _mtprops import load_findings

_FINDINGS = load_findings()
_BY_ID = {v.case_id(c): (v, c) for v in catalogue.variants() for c in v.cases}


def test_findings_file_is_plain_json_with_witnesses():
    assert _FINDINGS, "known_findings.json lists no finding"
    for f in _FINDINGS:
        assert set(f) >= {"id", "kind", "op", "tie_shape", "verdict", "framework_jacobian", "torch"}, f
        if f["kind"] == "verdict":
            w = f["witness"]
            assert w["framework_rate"] != w["stratum_rate"]
            assert w["direction"] and w["h"] is not None


@pytest.mark.parametrize("finding", _FINDINGS, ids=[f"{f['id']}::{f['kind']}" for f in _FINDINGS])
def test_finding_reproduces(finding):
    assert finding["id"] in _BY_ID, f"the case {finding['id']} is no longer in the catalogue"
    variant, case = _BY_ID[finding["id"]]
    where = f"{finding['id']} (recorded with torch {finding['torch']}, now torch {torch.__version__})"
    rep, refused = catalogue.run_case(case, neighbours=False, forward_mode=True)
    assert rep is not None, f"{where}: now refused: {refused}"
    assert str(rep.verdict) == finding["verdict"], f"{where}: verdict changed to {rep.verdict}\n{rep.explain()}"
    J = [[catalogue._fr(v) for v in row] for row in rep.framework_jacobian.tolist()]
    assert J == finding["framework_jacobian"], f"{where}: framework Jacobian changed to {J}"
    if finding["kind"] == "verdict":
        # the recorded direction t still shows the gap: J_fw t and J_S t, exactly, as recorded
        # (recomputed from the recorded t: the checker's own basis of the tangent space may change)
        rec = finding["witness"]
        t = [Fraction(v) for v in rec["direction"]]
        i = rec["output"]
        fw_rate = sum(Fraction(float(a)) * b for a, b in zip(rep.framework_jacobian[i], t))
        s_rate = sum(Fraction(float(a)) * b for a, b in zip(rep.stratum_jacobian[i], t))
        assert (str(fw_rate), str(s_rate)) == (rec["framework_rate"], rec["stratum_rate"]), where
        # and the exact values of the program along t move at the program's rate, not the framework's
        if rec.get("h"):
            h = Fraction(rec["h"])
            assert (Fraction(rec["f_x_plus_ht"]) - Fraction(rec["f_x"])) / h == s_rate != fw_rate
            # recomputed by PyTorch's own forward pass at x + h t (dyadic: float64 is exact here)
            moved, off = [], 0
            for x in case.inputs:
                k = x.numel()
                step = torch.tensor([float(v * h) for v in t[off:off + k]], dtype=x.dtype).reshape(x.shape)
                moved.append(x + step)
                off += k
            with torch.no_grad():
                y = case.fn(*moved).reshape(-1)[i].item()
            assert Fraction(y) == Fraction(rec["f_x_plus_ht"]), where
    else:
        assert rep.forward_matches_reverse is False, f"{where}: forward and reverse mode now agree"
        leaves, wrt = prepare_inputs(case.inputs, None)
        J_fwd, _ = framework.forward_jacobian(case.fn, trace(case.fn, leaves), wrt)
        assert [[catalogue._fr(v) for v in row] for row in J_fwd.tolist()] == finding["forward_jacobian"], where
