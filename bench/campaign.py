"""Campaign throughput: checks per second with 1 and 2 workers on the default targets,
and the time to the first planted finding.

    python bench/campaign.py [--seconds 30]

Every run happens in this process (workers are spawned processes), one after the
other, on the same machine; the ratio is what to compare.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from mtcheck.campaign import DEFAULT_TARGETS, Campaign, Config  # noqa: E402


def run(targets, workers, seconds, seed=0, stop_on_failure=False):
    with tempfile.TemporaryDirectory() as d:
        cfg = Config(targets=list(targets), corpus=Path(d) / "corpus", max_time=seconds, workers=workers,
                     seed=seed, stop_on_failure=stop_on_failure, stats=Path(d) / "stats.json")
        c = Campaign(cfg)
        t0 = time.time()
        code = c.run()
        return c.stats, time.time() - t0, code


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    rates = {}
    for w in (1, 2):
        st, wall, _ = run(DEFAULT_TARGETS, w, args.seconds)
        rates[w] = st.rate()
        print(f"{w} worker(s): {st.checks} checks, {st.rate():.1f} checks/s (after worker start), wall {wall:.1f}s, "
              f"verdicts {dict(st.verdicts)}")
    print(f"speed-up 2 workers / 1 worker: {rates[2] / rates[1]:.2f}x")
    for w in (1, 2):
        st, wall, code = run(["planted_models:planted", *DEFAULT_TARGETS], w, 120, seed=3, stop_on_failure=True)
        found = [f for f in st.findings.values()]
        print(f"time to first planted finding with {w} worker(s): {wall:.1f}s wall "
              f"({'found: ' + found[0]['verdict'] if found else 'NOT FOUND'}, {st.checks} checks)")


if __name__ == "__main__":
    main()
