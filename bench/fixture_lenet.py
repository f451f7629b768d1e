"""The pytest fixture on a real model, timed as a user runs it.

    python bench/fixture_lenet.py [--max-examples 20] [--model lenet-f32]

Writes a one-test project in a temporary folder:

    def test_lenet(mtcheck):
        model, _ = zoo.ZOO["lenet-f32"]()          # PyTorch default init, float32
        mtcheck.fuzz(model, torch.randn(1, 1, 28, 28), max_examples=20)

runs ``pytest -p no:cacheprovider --mtcheck-show-statistics`` on it in a fresh process, and
prints the wall time of the pytest run, its exit code, and the fixture's statistics (verdict
counts: the issue's target is no UNKNOWN and under 30 s for 20 examples). Baseline for scale, in
the same process before the run: one forward+backward of the model at the example input.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

TEST = '''
import torch
from mtcheck import zoo


def test_model(mtcheck):
    torch.manual_seed(0)
    model, _ = zoo.ZOO["{model}"]()
    stats = mtcheck.fuzz(model, torch.randn(1, 1, 28, 28), max_examples={n})
    print("STATS", stats)
'''


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-examples", type=int, default=20)
    ap.add_argument("--model", default="lenet-f32")
    a = ap.parse_args(argv)
    import torch

    from mtcheck import zoo

    model, (x,) = zoo.ZOO[a.model]()
    xx = x.detach().clone().requires_grad_()
    t = time.perf_counter()
    model(xx).sum().backward()
    fb = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as d:
        Path(d, "test_model.py").write_text(TEST.format(model=a.model, n=a.max_examples))
        t = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                              "--mtcheck-show-statistics", "test_model.py"], cwd=d, capture_output=True, text=True)
        wall = time.perf_counter() - t
    out = res.stdout + res.stderr
    stats = [ln for ln in out.splitlines() if "STATS" in ln or "mtcheck" in ln.lower()]
    print(f"fixture on {a.model}, max_examples={a.max_examples}: pytest exit {res.returncode}, {wall:.1f} s "
          f"(target < 30 s; one forward+backward: {fb * 1e3:.1f} ms)")
    print(textwrap.indent("\n".join(stats[-25:]), "  "))
    if res.returncode not in (0, 1):
        print(out[-3000:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
