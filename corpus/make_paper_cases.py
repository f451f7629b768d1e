"""Write the paper's examples into this corpus directory (run from anywhere):

    python corpus/make_paper_cases.py [DIR]

Section 2.1 relu(w0 x) at w0 = 0, section 2.2 max(x, x), section 5.3 Boustany's max_1 - max,
section 5.4 maxpool1d(t, 4t) - maxpool1d(4t, t). Each case records the full report
(neighbouring strata included) so that replay checks the verdict under the same options.
Re-running it rewrites the same files (cases are named by content hash).
"""

import sys
from pathlib import Path

import mtcheck
from mtcheck.corpus import case_from_report, save_case
from mtcheck.zoo import ZOO

PAPER = {
    "paper-relu-w0": "section 2.1: relu(w0 x) with w0 = 0 has derivative 0",
    "paper-max-xx": "section 2.2: max(x, x) is the identity; derivative 1",
    "paper-boustany": "section 5.3: max1(t a) - torch.max(t a) gives -1.5 at 0 (associated, not the true 0)",
    "paper-maxpool": "section 5.4: maxpool1d(t, 4t) - maxpool1d(4t, t) gives -3 at 0 (associated)",
}


def main(directory=None):
    out = Path(directory) if directory else Path(__file__).resolve().parent
    options = {"neighbours": True, "forward_mode": True}
    for name, what in PAPER.items():
        fn, inputs = ZOO[name]()
        rep = mtcheck.check(fn, *inputs, name=name, seed=0, **options)
        case = case_from_report(f"zoo:{name}", inputs, rep, 0, program=fn, options=options,
                                origin={"source": "the paper", "note": what, "made_by": "corpus/make_paper_cases.py"})
        path = save_case(out, case)
        print(f"{path.name}  {name:16s} {rep.verdict}  ({what})")


if __name__ == "__main__":
    main(*sys.argv[1:2])
