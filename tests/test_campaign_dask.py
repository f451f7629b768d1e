"""`mtcheck fuzz --scheduler`: a campaign on a Dask cluster (LocalCluster, process workers on 127.0.0.1).

One worker is killed in the middle of the campaign: the batch it was running is retried by Dask and
counted once; then Ctrl-C cancels the futures, keeps every finding and exits 130.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed", reason="needs Dask's distributed (pip install 'mtcheck[dask]')")

from mtcheck.campaign import parse_ranges  # noqa: E402

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    env = {"PYTHONPATH": str(HERE), "OMP_NUM_THREADS": "1"}     # the Nanny's environment for its worker
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, env=env) as c, \
            Client(c.scheduler_address) as client:
        yield c, client


def _stats(path):
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _wait(cond, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_killed_worker_loses_no_case_and_ctrl_c_keeps_findings(tmp_path, cluster):
    c, client = cluster
    corpus = tmp_path / "corpus"
    stats = corpus / "stats.json"
    env = dict(os.environ, PYTHONPATH=str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.Popen([sys.executable, "-m", "mtcheck.cli", "fuzz", "--scheduler", c.scheduler_address,
                          "--model", "planted_models:planted", "--model", "zoo:paper-boustany", "--max-time", "150",
                          "--seed", "2", "--corpus", str(corpus)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait(lambda: _stats(stats).get("batches", {}).get("done", 0) >= 2, 90, "the first batches")
        # the worker running a batch now, and that batch's number (not counted yet)
        def busy():
            done = parse_ranges(_stats(stats).get("batches", {}).get("done_numbers", ""))
            for addr, keys in client.processing().items():
                ns = {int(str(k).rsplit("-", 1)[1]) for k in keys if str(k).startswith("mtcheck-batch-")} - done
                if ns:
                    return addr, ns
            return None

        addr, numbers = _wait(busy, 30, "a batch in progress")
        pid = client.run(os.getpid, workers=[addr])[addr]
        os.kill(pid, signal.SIGKILL)
        # Dask retries the lost batches elsewhere; each is counted once
        _wait(lambda: numbers <= parse_ranges(_stats(stats).get("batches", {}).get("done_numbers", "")), 90,
              f"the killed worker's batches {sorted(numbers)} to be retried")
        _wait(lambda: _stats(stats).get("findings"), 60, "a finding")
    finally:
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    assert p.returncode == 130, out + err
    assert "interrupted" in out and "dask tcp://127.0.0.1" in out, out
    data = _stats(stats)
    assert sum(data["verdicts"].values()) == data["checks"] and data["checks"] > 0
    paths = [f["path"] for f in data["findings"]]
    assert len(paths) == len(set(paths)) == len({f["key"] for f in data["findings"]})
    assert set(paths) == {str(q) for q in corpus.glob("case-*.json")}       # every finding saved, once
    for q in paths:
        json.loads(Path(q).read_text())
    assert data["workers"] >= 1 and data["engine"].startswith("dask ") and data["history"]
    # Ctrl-C cancelled the campaign's futures: nothing of it is left on the cluster
    _wait(lambda: not any(str(k).startswith("mtcheck-batch-") for ks in client.processing().values() for k in ks),
          20, "the cancelled batches to leave the cluster")
