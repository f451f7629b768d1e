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


def dask_vs_local(seconds, targets, rounds=3):
    """checks/s of the same campaign (same targets, seed 0) on 2 local workers and on a 2-worker
    Dask LocalCluster, in this run. The machine is shared, so the two engines take turns in
    ``rounds`` rounds (local, Dask, Dask, local, ...) of ``seconds / rounds`` each, and each rate is
    the total checks over the total time after every worker was ready (start-up excluded)."""
    from distributed import LocalCluster

    per = seconds / rounds
    print(f"targets: {', '.join(targets)}; {rounds} rounds of {per:g} s per engine, alternating")
    tot = {"local": [0, 0.0], "dask": [0, 0.0]}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        for r in range(rounds):
            order = ("local", "dask") if r % 2 == 0 else ("dask", "local")
            for engine in order:
                st, wall, _ = run(targets, 2, per, seed=r,
                                  scheduler=cluster.scheduler_address if engine == "dask" else None)
                t_ready = st.worker_ready or st.started
                n, dt = st.checks - st.checks_at_ready, max(st.started + wall - t_ready, 1e-9)
                tot[engine][0] += n
                tot[engine][1] += dt
                print(f"  round {r} {engine:5}: {n} checks in {dt:.1f}s after start-up = {n / dt:.1f} checks/s"
                      + (f" ({len(st.batches_done)} batches, {st.batches_cancelled} cancelled)"
                         if engine == "dask" else ""))
    local = tot["local"][0] / tot["local"][1]
    dask = tot["dask"][0] / tot["dask"][1]
    print(f"2 local workers:       {tot['local'][0]} checks, {local:.1f} checks/s")
    print(f"Dask LocalCluster (2): {tot['dask'][0]} checks, {dask:.1f} checks/s")
    print(f"Dask / local: {dask / local:.2f}x (target >= 0.9x)")


if __name__ == "__main__":
    main()
