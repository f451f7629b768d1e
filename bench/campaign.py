"""Campaign throughput: checks per second with 1 and 2 workers on the default targets,
and the time to the first planted finding.

    python bench/campaign.py [--seconds 30]
    python bench/campaign.py --scheduler [--seconds 30]   # 2-worker Dask LocalCluster vs 2 local workers

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


def run(targets, workers, seconds, seed=0, stop_on_failure=False, scheduler=None):
    with tempfile.TemporaryDirectory() as d:
        cfg = Config(targets=list(targets), corpus=Path(d) / "corpus", max_time=seconds, workers=workers,
                     seed=seed, stop_on_failure=stop_on_failure, stats=Path(d) / "stats.json", scheduler=scheduler)
        c = Campaign(cfg)
        t0 = time.time()
        code = c.run()
        return c.stats, time.time() - t0, code


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--scheduler", action="store_true",
                    help="compare a 2-worker Dask LocalCluster (process workers, 127.0.0.1) with 2 local workers")
    ap.add_argument("--targets", default=None,
                    help="comma-separated targets for --scheduler (default: " + ",".join(FAST_TARGETS) + ")")
    args = ap.parse_args()
    if args.scheduler:
        return dask_vs_local(args.seconds, args.targets.split(",") if args.targets else FAST_TARGETS)
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


# targets whose checks take milliseconds to a second: in a run of a minute, every worker draws each of
# them many times, so that the two engines' rates compare the engines, not which targets they drew
# (one check of zoo:resnet-bn-f32 takes seconds: a batch of it can fill a whole short run)
FAST_TARGETS = ("zoo:paper-boustany", "zoo:paper-maxpool", "zoo:paper-max-xx", "zoo:paper-relu-w0",
                "zoo:mlp-small", "zoo:residual-cnn", "generated")


def dask_vs_local(seconds, targets):
    """checks/s of the same campaign (same targets, seed 0) on 2 local workers and on a 2-worker
    Dask LocalCluster, one after the other in this run; both rates exclude worker start-up."""
    from distributed import LocalCluster

    print(f"targets: {', '.join(targets)}; {seconds:g} s each")
    st, wall, _ = run(targets, 2, seconds)
    local = st.rate()
    print(f"2 local workers:        {st.checks} checks, {local:.1f} checks/s, wall {wall:.1f}s, verdicts "
          f"{dict(st.verdicts)}")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        st, wall, _ = run(targets, 2, seconds, scheduler=cluster.scheduler_address)
    dask = st.rate()
    print(f"Dask LocalCluster (2):  {st.checks} checks, {dask:.1f} checks/s, wall {wall:.1f}s, verdicts "
          f"{dict(st.verdicts)}, batches {len(st.batches_done)} done / {st.batches_cancelled} cancelled")
    print(f"Dask / local: {dask / local:.2f}x (target >= 0.9x)")


if __name__ == "__main__":
    main()
