"""Write the property suite's findings against PyTorch into this corpus directory:

    python corpus/make_finding_cases.py [DIR]

Every record of properties/known_findings.json (an op variant whose gradient at a tie
is not associated, or whose forward mode disagrees with reverse mode) becomes a case
whose program is the catalogue's module-level function (``mtcheck.catalogue:<name>``)
at the recorded tie input. Replaying it (``pytest corpus/`` or ``mtcheck replay corpus/``)
passes while the finding still reproduces and fails, old and new side by side, once a
torch release changes the behaviour.
"""

import json
import sys
from pathlib import Path

import mtcheck
from mtcheck import catalogue
from mtcheck.corpus import case_from_report, save_case

ROOT = Path(__file__).resolve().parent.parent


def main(directory=None):
    out = Path(directory) if directory else Path(__file__).resolve().parent
    findings = json.loads((ROOT / "properties" / "known_findings.json").read_text())["findings"]
    cases = {v.case_id(c): c for v in catalogue.variants() for c in v.cases}
    options = {"neighbours": False, "forward_mode": True}
    for f in findings:
        case = cases.get(f["id"])
        if case is None or f.get("kind") != "verdict":
            continue                   # forward/reverse findings are asserted by properties/test_findings.py
        rep = mtcheck.check(case.fn, *case.inputs, name=f["op"], **options)
        target = f["program"]
        c = case_from_report({"kind": "import", "target": target, "call": False}, case.inputs, rep, 0,
                             options=options, origin={"source": "properties/known_findings.json", "finding": f["id"],
                                                      "made_by": "corpus/make_finding_cases.py"})
        path = save_case(out, c)
        print(f"{path.name}  {f['id']:60s} {rep.verdict}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
