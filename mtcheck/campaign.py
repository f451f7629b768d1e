"""Fuzz campaigns: workers that generate tie-heavy cases, check them exactly, and
keep every finding in a corpus.

The parent process owns the corpus and the statistics; workers (separate
processes, each with its own seed) draw cases through hypothesis, so that a
failing case is shrunk before it is reported. A finding is deduplicated by
(program, verdict, kinds of kinks tied) and saved once, with a count.

Past one machine, ``Config.scheduler = "tcp://HOST:PORT"`` runs the same work on an
existing Dask cluster (``pip install mtcheck[dask]``): the client submits *batches*
(one hypothesis run of ``Config.batch`` examples, seeded by its batch number, so a
batch that Dask re-runs after losing a worker draws the same cases), receives each
batch's checks and findings in one piece when it ends, and owns the corpus and the
statistics as with local workers. A batch's results are counted once (by number);
a lost worker's batch is retried by Dask; Ctrl-C cancels the outstanding futures.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# the default campaign: the paper's examples, a small model zoo, and generated networks
DEFAULT_TARGETS = ("zoo:paper-boustany", "zoo:paper-maxpool", "zoo:paper-max-xx", "zoo:paper-relu-w0",
                   "zoo:mlp-small", "zoo:residual-cnn", "zoo:lenet-f32", "zoo:resnet-bn-f32", "generated",
                   # networks that start with PyTorch's other modelled nonsmooth ops, one target per group
                   # (mtcheck._gen.OP_GROUPS): where the property suite found PyTorch's real findings
                   "generated:order", "generated:norms", "generated:index", "generated:elementwise",
                   # smooth layers and (log-)softmax heads between and after the nonsmooth ones
                   "generated:smooth")
# one float-only tie search in a campaign draw: a miss costs this much (20 s by default in the strategy;
# on the residual BN model a miss took the whole 20 s, a third of the demo's minute, while hits take ~1 s)
FLOAT_TIE_SECONDS = 4.0
FINDING_VERDICTS = ("SMOOTH_WRONG", "NOT_ASSOCIATED", "NONLINEAR_VJP", "ROUNDING_BRANCH")
# a finding of its own kind: forward mode and reverse mode give different Jacobians (at a tie both may be
# associated; they disagree). Keyed and shown apart from the wrong-gradient verdicts above.
FORWARD_REVERSE = "FORWARD_REVERSE"


def finding_of(rep, confirm=None):
    """``(kind, ops)`` when the report is a finding, else None. ``kind`` is the bug verdict, or
    ``FORWARD_REVERSE`` when the verdict passes but forward mode disagrees with reverse mode
    (``confirm()``, when given, must agree: see :func:`forward_reverse_differ`);
    ``ops``: the ATen ops of the tied nonsmooth nodes (of every nonsmooth node when none is tied)."""
    v = str(rep.verdict)
    if v in FINDING_VERDICTS:
        kind = v
    elif rep.forward_matches_reverse is False and (confirm is None or confirm()):
        kind = FORWARD_REVERSE
    else:
        return None
    pattern = rep.pattern or []
    tied = {e.label.split("#")[0] for e in pattern if e.counts.get("tie", 0)}
    every = {e.label.split("#")[0] for e in pattern}
    # name the op the finding is about: the tied ops other than the elementwise activations that only
    # put values on their kinks; else any such op of the program; else the activations themselves
    ops = tied - _ELEMENTARY or every - _ELEMENTARY or tied or every or {"smooth"}
    return kind, sorted(ops)


def forward_reverse_differ(prog, inputs, rep, wrt=None) -> bool:
    """Whether forward and reverse mode differ beyond rounding. In exact mode the report's exact
    comparison stands; otherwise (a backward pass that rounds, as a 3-way tie's thirds do) the
    forward Jacobian is computed again and compared within the report's tolerance, so that two
    roundings of the same gradient (3 * (1/5) against 3/5) are not a finding."""
    import numpy as np

    if rep.exact_mode:
        return True
    if wrt is not None and not all(isinstance(i, int) for i in ([wrt] if isinstance(wrt, int) else wrt)):
        return False
    try:
        from . import framework
        from .trace import prepare_inputs, trace

        leaves, w = prepare_inputs(list(inputs), wrt)
        J_fwd, _ = framework.forward_jacobian(prog, trace(prog, leaves), w)
    except Exception:  # noqa: BLE001 - not confirmed: no finding
        return False
    if J_fwd is None:
        return False
    J = np.asarray(rep.framework_jacobian, dtype=float)
    rtol, atol = rep.tolerance or (1e-7, 1e-7)
    return J_fwd.shape != J.shape or bool((np.abs(J_fwd - J) > atol + rtol * np.abs(J)).any())


# nonsmooth ATen ops that a finding's key names only when nothing else is there
_ELEMENTARY = frozenset(("relu", "leaky_relu", "hardtanh", "abs", "clamp", "threshold", "relu6"))


def _check_options(target, cfg) -> dict:
    """The keyword arguments of ``mtcheck.check`` for a target: generated networks are small,
    so forward mode (the forward/reverse findings) always runs on them."""
    return dict(neighbours=cfg.full, forward_mode=cfg.full or is_generated(target))


def is_generated(target) -> bool:
    """``generated`` (every layer kind) or ``generated:<group>`` (networks that start with one
    of that group's op layers: order, norms, index, elementwise)."""
    return isinstance(target, str) and (target == "generated" or target.startswith("generated:"))


def _generated_networks(target):
    from ._gen import OP_GROUPS
    from .strategies import networks

    if target == "generated":
        return networks(families=("mlp", "cnn1d", "cnn2d", "ops"), ops=True)
    group = target.partition(":")[2]
    if group == "smooth":
        # smooth layers between the nonsmooth ones and (log-)softmax heads (piecewise C^1 programs)
        return networks(families=("mlp", "cnn1d", "cnn2d"), smooth=True)
    if group not in OP_GROUPS:
        raise KeyError(f"unknown target {target!r}: the groups of generated networks are "
                       f"{', '.join('generated:' + g for g in (*OP_GROUPS, 'smooth'))}")
    return networks(families=("ops",), ops=OP_GROUPS[group])


@dataclass
class Config:
    targets: list
    corpus: Path
    max_time: float | None = 60.0
    max_examples: int | None = None
    workers: int = 1
    seed: int = 0
    stop_on_failure: bool = False
    stats: Path | None = None
    dtype: str | None = None
    input_shape: tuple | None = None
    full: bool = False            # also decide differentiable / Clarke / forward mode (slower)
    batch: int = 20               # hypothesis examples per exploration batch
    scheduler: str | None = None  # tcp://HOST:PORT of a Dask scheduler: run the batches there
    wrt: object = None            # model (nn.Module) targets only: "parameters", "all", names (mtcheck.params)


@dataclass
class Stats:
    started: float = field(default_factory=time.time)
    checks: int = 0
    verdicts: Counter = field(default_factory=Counter)
    strata: set = field(default_factory=set)
    tie_kinds: Counter = field(default_factory=Counter)
    deepest_tie: int = -1
    last_new: float = field(default_factory=time.time)
    findings: dict = field(default_factory=dict)     # key -> {"path", "count", "verdict", "program"}
    errors: Counter = field(default_factory=Counter)
    previous_checks: int = 0
    worker_ready: float | None = None     # when the last worker became ready (the rate counts from there)
    ready: int = 0
    checks_at_ready: int = 0
    workers: int = 0                      # workers running now (local processes alive, or Dask workers)
    engine: str = "local"                 # 'local' or 'dask <scheduler address>'
    history: list = field(default_factory=list)      # time series, one point every HISTORY_EVERY seconds
    batches_done: set = field(default_factory=set)   # Dask: numbers of the batches whose results were counted
    batches_cancelled: int = 0
    batch_failures: Counter = field(default_factory=Counter)
    # per target and nonsmooth layer: examples tied exactly, only in float (rounding-induced), not at all
    layer_ties: dict = field(default_factory=dict)   # target -> {(depth, node): Counter("exact"/"float"/"none")}

    def add_layers(self, target: str, kinds) -> None:
        per = self.layer_ties.setdefault(str(target), {})
        for depth, node, tie in kinds:
            per.setdefault((int(depth), str(node)), Counter())[tie] += 1

    def layer_lines(self) -> list:
        """Readable lines: per target and layer, how many examples tied exactly / only in float / not at all."""
        out = []
        for target, per in sorted(self.layer_ties.items()):
            for (d, n), c in sorted(per.items()):
                out.append(f"{target} depth {d} {n}: exact {c.get('exact', 0)}, float-only {c.get('float', 0)}, "
                           f"none {c.get('none', 0)}")
        return out

    def elapsed(self) -> float:
        return time.time() - self.started

    def rate(self) -> float:
        """Checks per second since every worker was ready (start-up excluded)."""
        if self.worker_ready is None:
            return self.checks / max(time.time() - self.started, 1e-9)
        return (self.checks - self.checks_at_ready) / max(time.time() - self.worker_ready, 1e-9)

    def as_json(self) -> dict:
        return {
            "elapsed_s": round(self.elapsed(), 3), "checks": self.checks, "checks_per_s": round(self.rate(), 3),
            "checks_all_runs": self.checks + self.previous_checks,
            "verdicts": dict(self.verdicts), "distinct_strata": len(self.strata),
            "tie_kinds": {f"{k[0]}/{k[1]}": v for k, v in sorted(self.tie_kinds.items())},
            "deepest_tied_layer": self.deepest_tie,
            "layer_ties": {t: [{"depth": d, "node": n, "exact": c.get("exact", 0), "float": c.get("float", 0),
                                "none": c.get("none", 0)} for (d, n), c in sorted(per.items())]
                           for t, per in sorted(self.layer_ties.items())},
            "since_last_new_pattern_s": round(time.time() - self.last_new, 3),
            "findings": [{"key": k, **v} for k, v in self.findings.items()],
            "errors": dict(self.errors),
            "workers": self.workers,
            "engine": self.engine,
            **({"batches": {"done": len(self.batches_done), "done_numbers": _ranges(self.batches_done),
                            "cancelled": self.batches_cancelled, "failures": dict(self.batch_failures)}}
               if self.engine != "local" else {}),
            "history": self.history,
        }

    def sample(self):
        """Append one point to the time series (kept to at most HISTORY_MAX points: every other
        point of the older half is dropped when full)."""
        now = time.time()
        self.history.append({"time": round(now, 3), "elapsed_s": round(self.elapsed(), 3), "checks": self.checks,
                             "checks_per_s": round(self.rate(), 3), "strata": len(self.strata),
                             "findings": len(self.findings), "workers": self.workers,
                             "verdicts": dict(self.verdicts)})
        if len(self.history) > HISTORY_MAX:
            half = len(self.history) // 2
            self.history[:half] = self.history[:half:2]


HISTORY_EVERY = 2.0      # seconds between two points of stats.json's time series
HISTORY_MAX = 2000


def _ranges(nums) -> str:
    """``{1, 2, 3, 7}`` -> ``"1-3,7"``."""
    out, run = [], None
    for n in sorted(nums):
        if run and n == run[1] + 1:
            run[1] = n
        else:
            if run:
                out.append(f"{run[0]}-{run[1]}" if run[1] > run[0] else str(run[0]))
            run = [n, n]
    if run:
        out.append(f"{run[0]}-{run[1]}" if run[1] > run[0] else str(run[0]))
    return ",".join(out)


def parse_ranges(text: str) -> set:
    """The inverse of the ``done_numbers`` field of stats.json."""
    out = set()
    for part in filter(None, (text or "").split(",")):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


# ------------------------------------------------------------------------------ targets

def resolve_target(target: str, dtype=None, input_shape=None):
    """(program, example inputs, program_ref) for a target string."""
    import importlib

    import torch

    from . import zoo

    dt = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if is_generated(target):
        _generated_networks(target)              # validates the group; the networks are drawn per case
        return None, (), target
    if target.startswith("zoo:"):
        name = target[4:]
        if name not in zoo.ZOO:
            raise KeyError(f"no built-in model {name!r}; known: {', '.join(sorted(zoo.ZOO))}")
        # no --dtype: the factory's own default (float64 for the dyadic models, float32 for the *-f32 ones)
        prog, inputs = zoo.ZOO[name](dtype=dt) if dt is not None else zoo.ZOO[name]()
        return prog, tuple(inputs), target
    if ":" in target:
        mod, _, attr = target.partition(":")
        obj = getattr(importlib.import_module(mod), attr)
        made = obj() if callable(obj) and not isinstance(obj, torch.nn.Module) else obj
        if isinstance(made, tuple) and len(made) == 2:
            prog, inputs = made
            inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
        else:
            prog = made
            if input_shape is None:
                raise ValueError(f"{target} returned a model without example inputs: give --input-shape")
            inputs = (torch.zeros(input_shape, dtype=dt or torch.float32),)
        if isinstance(prog, torch.nn.Module):
            prog.eval()
        return prog, inputs, target
    raise KeyError(f"unknown target {target!r}: use zoo:<name>, package.module:factory or 'generated'")


# ------------------------------------------------------------------------------ case generation

def _tie_tensor_strategy(shape, dtype):
    """Tie-heavy tensors of a fixed shape (mtcheck.strategies.tie_inputs when available)."""
    try:
        from .strategies import tie_inputs

        return tie_inputs(tuple(shape), dtype=dtype)
    except Exception:  # noqa: BLE001 - the strategies module is optional here
        pass
    import torch
    from hypothesis import strategies as st

    n = 1
    for s in shape:
        n *= s
    vals = st.sampled_from([0.0, 0.0, 0.5, -0.5, 1.0, -1.0, 0.25, 2.0])

    @st.composite
    def draw(d):
        base = d(vals)
        mode = d(st.sampled_from(["constant", "sparse", "grid"]))
        if mode == "constant":
            data = [base] * n
        elif mode == "sparse":
            data = [base] * n
            for _ in range(d(st.integers(0, min(n, 8)))):
                data[d(st.integers(0, n - 1))] = d(vals)
        else:
            data = d(st.lists(vals, min_size=n, max_size=n))
        return torch.tensor(data, dtype=dtype).reshape(shape)

    return draw()


def case_strategy(target: str, cfg: Config):
    """A hypothesis strategy of (program, inputs, program_ref) for one target."""
    from hypothesis import strategies as st

    if is_generated(target):
        from .strategies import tie_inputs

        nets_strategy = _generated_networks(target)

        @st.composite
        def gen(d):
            spec = d(nets_strategy)
            net = spec.build()
            x = d(tie_inputs(tuple(spec.input_shape), dtype=spec.torch_dtype))
            return net, (x,), spec

        return gen()
    prog, inputs, ref = resolve_target(target, cfg.dtype, cfg.input_shape)
    parts = [_tie_tensor_strategy(tuple(x.shape), x.dtype) if x.is_floating_point() else st.just(x)
             for x in inputs]
    if len(inputs) == 1 and inputs[0].is_floating_point():
        # both kinds of tie at a drawn layer: an exact tie (deep_ties' synthesis) or a float-only,
        # rounding-induced one (mtcheck.float_ties); the status counts them apart per layer
        try:
            from .float_ties import both_tie_kinds

            import torch

            x0 = inputs[0]
            # float-only ties are ROUNDING_BRANCH findings: drawn for real-weight (below float64)
            # targets, where they are the common kind; float64 targets get exact ties only
            kinds = ("exact tie", "float-only tie") if x0.dtype != torch.float64 else ("exact tie",)
            parts = [st.one_of(parts[0], *[both_tie_kinds(prog, shape=tuple(x0.shape), dtype=x0.dtype, kinds=(k,),
                                                          max_seconds=FLOAT_TIE_SECONDS)
                                           .map(lambda p: p[0]) for k in kinds])]
        except Exception:  # noqa: BLE001 - the structured inputs alone
            pass
    return st.tuples(*parts).map(lambda xs: (prog, tuple(xs), ref))


# ------------------------------------------------------------------------------ workers

class _Found(Exception):
    def __init__(self, payload):
        super().__init__(payload["verdict"])
        self.payload = payload


def _summarize(rep):
    kinds, depth = [], -1
    for i, e in enumerate(rep.pattern or []):
        tie = e.counts.get("tie", 0)
        if tie:
            kinds.append((e.kind, "many" if e.counts.get("tied windows", 0) and tie > 1 else "two" if tie == 1 else "many"))
            depth = max(depth, i)
    sig = tuple((e.label.split("#")[0], tuple(sorted(e.counts.items()))) for e in (rep.pattern or []))
    return kinds, depth, hash(sig)


def _layer_kinds(rep):
    """[(depth, node, "exact" | "float" | "none")] for the report's nonsmooth layers."""
    try:
        from .float_ties import layer_tie_kinds

        return [(e["depth"], e["node"], e["tie"]) for e in layer_tie_kinds(rep)]
    except Exception:  # noqa: BLE001 - statistics never stop a campaign
        return []


_INITIALISED = False
_THREADS: set = set()


def _worker_init():
    """Once per worker process (local or Dask): one thread, and the checker imported, before
    the worker counts as ready (so that checks/s excludes start-up for both engines alike)."""
    global _INITIALISED
    import threading

    me = threading.get_ident()
    if _INITIALISED and me in _THREADS:
        return
    # one thread per worker: the workers are the parallelism (BLAS threads would oversubscribe)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    import torch

    # per thread: OpenMP's thread count belongs to the calling thread, and a Dask worker runs its
    # tasks in a pool thread, not in the thread that imported torch (1.7x slower checks otherwise)
    torch.set_num_threads(1)
    _THREADS.add(me)
    if not _INITIALISED:
        import mtcheck.checker  # noqa: F401
        import mtcheck.corpus  # noqa: F401
    _INITIALISED = True


SHRINK_SECONDS = 6.0     # shrinking one finding stops checking new examples after this long
BATCH_SECONDS = 10.0     # a batch checks no new example after this long (a slow target cannot hold a worker)


def _example_key(case):
    """A hashable identity of one drawn case: the program (a NetSpec's JSON) and the input bits."""
    prog, inputs, ref = case
    name = ref.to_json() if hasattr(ref, "to_json") else str(ref)
    return name, tuple((tuple(x.shape), str(x.dtype), x.detach().cpu().numpy().tobytes()) for x in inputs)


def _first_found(group):
    for e in getattr(group, "exceptions", ()):
        if isinstance(e, _Found):
            return e
        inner = _first_found(e)
        if inner is not None:
            return inner
    return None


def _run_batch(target, cfg: Config, strategy, rng, put, wid, stopped=lambda: False):
    """One hypothesis run of ``cfg.batch`` examples of ``target``; messages go to ``put``."""
    from hypothesis import HealthCheck, Phase, given, seed, settings

    import mtcheck

    opts = _check_options(target, cfg)
    first = []      # the batch's first finding kind and when it was found: shrinking keeps to that kind
    seen = {}       # example -> its finding payload, to replay outcomes once shrinking's time is up
    early = []      # set once a finding was sent before its shrinking ended (the campaign stopped)
    started = time.time()

    @settings(max_examples=cfg.batch, deadline=None, database=None, derandomize=False,
              phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck),
              print_blob=False)
    @given(strategy)
    def prop(case):
        if stopped():
            if seen and not early:
                # the campaign's time is up while this batch shrinks a finding: send it now, as
                # found, since the worker may be stopped before shrinking ends (a real model's
                # draws take seconds; the demo lost ROUNDING_BRANCH findings at its deadline)
                early.append(True)
                p = next(iter(seen.values()))
                put(("finding", wid, p["target"], p["verdict"], p["ops"], _serial_case(p, cfg)))
            return
        prog, inputs, ref = case
        if first and time.time() - first[1] > SHRINK_SECONDS:
            # shrinking's time is up: known examples keep their outcome (hypothesis replays the
            # smallest failing one), new ones are not checked (so the shrinker stops soon)
            k = _example_key(case)
            if k in seen:
                raise _Found(seen[k])
            return
        if not first and time.time() - started > BATCH_SECONDS:
            return
        try:
            rep = mtcheck.check(prog, *inputs, **_with_wrt(opts, cfg, prog))
        except mtcheck.CheckInputError as e:
            put(("error", wid, f"{type(e).__name__}: {str(e)[:200]}"))
            return
        kinds, depth, sig = _summarize(rep)
        put(("check", wid, str(rep.verdict), kinds, depth, sig))
        put(("layers", wid, target, _layer_kinds(rep)))
        found = finding_of(rep, lambda: forward_reverse_differ(prog, inputs, rep,
                                                              _with_wrt(opts, cfg, prog).get("wrt")))
        if found is None:
            return
        payload = {"verdict": found[0], "target": target, "ref": ref, "prog": prog,
                   "inputs": inputs, "report": rep, "ops": found[1]}
        if first and first[0] != found[0]:
            # another kind, met while shrinking the batch's first finding: saved as it was found
            # (not shrunk: shrinking keeps to one kind), never dropped
            put(("finding", wid, target, found[0], found[1], _serial_case(payload, cfg)))
            return
        if not first:
            first[:] = [found[0], time.time()]
        seen[_example_key(case)] = payload
        raise _Found(payload)

    prop = seed(rng.getrandbits(64))(prop)
    try:
        prop()
    except _Found as f:
        p = f.payload
        put(("finding", wid, p["target"], p["verdict"], p["ops"], _serial_case(p, cfg)))
    except BaseExceptionGroup as g:
        # hypothesis' FlakyFailure (a shrunk example that did not fail again): keep the finding
        found = _first_found(g)
        if found is None:
            put(("error", wid, f"{target}: {type(g).__name__}: {str(g)[:200]}"))
        else:
            p = found.payload
            put(("finding", wid, p["target"], p["verdict"], p["ops"], _serial_case(p, cfg)))
    except Exception as e:  # noqa: BLE001 - a broken strategy or program must not kill the campaign
        put(("error", wid, f"{target}: {type(e).__name__}: {str(e)[:200]}"))


def _worker(wid: int, cfg: Config, out: "mp.Queue", stop: "mp.Event"):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_init()
    rng = random.Random(cfg.seed * 1000 + wid)
    strategies = {}
    out.put(("ready", wid, time.time()))
    while not stop.is_set():
        target = rng.choice(cfg.targets)
        try:
            if target not in strategies:
                strategies[target] = case_strategy(target, cfg)
        except Exception as e:  # noqa: BLE001 - report and drop the target
            out.put(("error", wid, f"{target}: {type(e).__name__}: {e}"))
            cfg.targets = [t for t in cfg.targets if t != target]
            if not cfg.targets:
                return
            continue
        found = []

        def put(msg, found=found):
            if msg and msg[0] == "finding":
                found.append(msg)
            out.put(msg)

        _run_batch(target, cfg, strategies[target], rng, put, wid, stop.is_set)
        if found and cfg.stop_on_failure:
            stop.wait()     # stop at the first failure: do not race the main process into a second one
            return


# ------------------------------------------------------------------------------ Dask workers

_DASK_STATE: dict = {}      # per worker process: strategies by configuration, targets that failed


def _dask_warm():
    """Run once on every Dask worker before the clock starts: imports and thread settings."""
    _worker_init()
    return os.getpid()


def _dask_batch(cfg: Config, number: int) -> dict:
    """One batch on a Dask worker. Deterministic in ``(cfg.seed, number)``: a batch re-run
    after a lost worker draws the same cases. Returns every message of the batch at once,
    so that a batch is counted whole or not at all."""
    _worker_init()
    key = (tuple(cfg.targets), cfg.dtype, cfg.input_shape, cfg.full, cfg.batch, cfg.seed)
    state = _DASK_STATE.setdefault(key, {"strategies": {}, "bad": {}})
    rng = random.Random(f"mtcheck-batch|{cfg.seed}|{number}")
    msgs = []
    wid = os.getpid()
    good = [t for t in cfg.targets if t not in state["bad"]]
    while good:
        target = rng.choice(good)
        try:
            if target not in state["strategies"]:
                state["strategies"][target] = case_strategy(target, cfg)
            break
        except Exception as e:  # noqa: BLE001 - report and drop the target on this worker
            state["bad"][target] = f"{target}: {type(e).__name__}: {e}"
            msgs.append(("error", wid, state["bad"][target]))
            good.remove(target)
    else:
        return {"number": number, "worker": wid, "messages": msgs}
    _run_batch(target, cfg, state["strategies"][target], rng, msgs.append, wid)
    return {"number": number, "worker": wid, "messages": msgs}


def _with_wrt(opts, cfg, prog) -> dict:
    """The check options with ``cfg.wrt`` (``mtcheck fuzz --wrt``) for a model target; function
    targets keep their inputs."""
    import torch

    if getattr(cfg, "wrt", None) is not None and isinstance(prog, torch.nn.Module):
        return {**opts, "wrt": cfg.wrt}
    return opts


def _serial_case(p, cfg):
    """The finding as a corpus Case (pickled only over the worker pipe, never to disk)."""
    from .corpus import case_from_report

    ref = p["ref"]
    return case_from_report(ref, p["inputs"], p["report"], seed=cfg.seed, program=p["prog"],
                            options=_with_wrt(_check_options(p["target"], cfg), cfg, p["prog"]),
                            origin={"campaign": "mtcheck fuzz", "target": p["target"]})


# ------------------------------------------------------------------------------ parent

def _plot_finding(case):
    """``case-<sha1>.png`` next to a saved finding: the program along the witness direction.
    The campaign's own targets are trusted (it imported them to run them). Never fails the campaign."""
    try:
        from .plot import plot_case

        plot_case(case, trust_imports=True)
    except Exception:  # noqa: BLE001 - a missing picture is not a lost finding
        pass


class Campaign:
    def __init__(self, cfg: Config, ui=None):
        self.cfg = cfg
        self.stats = Stats()
        self.ui = ui
        self.interrupted = False

    def _load_previous(self):
        from .corpus import CorpusError, iter_cases

        self.cfg.corpus.mkdir(parents=True, exist_ok=True)
        for path, case in iter_cases([self.cfg.corpus]):
            if isinstance(case, CorpusError):
                continue
            origin = case.origin or {}
            key = origin.get("finding_key")
            if key:
                self.stats.findings.setdefault(key, {"path": str(path), "count": int(origin.get("count", 1)),
                                                     "verdict": case.verdict, "program": case.label,
                                                     "kind": case.finding_kind, "previous_run": True})
        if self.cfg.stats and self.cfg.stats.exists():
            try:
                prev = json.loads(self.cfg.stats.read_text())
                self.stats.previous_checks = int(prev.get("checks_all_runs", prev.get("checks", 0)))
                # the earlier runs' time series is kept (each point has its wall-clock time)
                self.stats.history = [dict(h, run="earlier") if "run" not in h else h
                                      for h in prev.get("history", []) if isinstance(h, dict)][-HISTORY_MAX:]
            except (ValueError, OSError, TypeError):
                pass

    def _on_finding(self, target, verdict, ops, case):
        import dataclasses

        from .corpus import save_case

        key = f"{target}|{verdict}|{'+'.join(ops)}"
        f = self.stats.findings.get(key)
        if f is not None:
            f["count"] += 1
            return False
        fkind = "forward_reverse" if verdict == FORWARD_REVERSE else (
            "rounding" if verdict == "ROUNDING_BRANCH" else "wrong_gradient")
        case = dataclasses.replace(case, origin={**case.origin, "finding_key": key, "count": 1,
                                                 "finding_kind": fkind})
        path = save_case(self.cfg.corpus, case)
        shown = f"forward != reverse ({case.verdict})" if verdict == FORWARD_REVERSE else verdict
        self.stats.findings[key] = {"path": str(path), "count": 1, "verdict": shown, "program": case.label,
                                    "kind": fkind}
        _plot_finding(case)
        return True

    def _handle(self, msg):
        kind = msg[0]
        s = self.stats
        if kind == "ready":
            s.ready += 1
            if s.ready == self.cfg.workers:
                s.worker_ready, s.checks_at_ready = msg[2], s.checks
        elif kind == "check":
            _, _, verdict, kinds, depth, sig = msg
            s.checks += 1
            s.verdicts[verdict] += 1
            new = sig not in s.strata
            for k in kinds:
                if k not in s.tie_kinds:
                    new = True
                s.tie_kinds[tuple(k)] += 1
            s.strata.add(sig)
            if depth > s.deepest_tie:
                s.deepest_tie = depth
                new = True
            if new:
                s.last_new = time.time()
        elif kind == "layers":
            s.add_layers(msg[2], msg[3])
        elif kind == "finding":
            _, _, target, verdict, ops, case = msg
            self._on_finding(target, verdict, ops, case)
        elif kind == "error":
            s.errors[msg[2][:120]] += 1

    def _write_stats(self):
        if not self.stats.history or time.time() - self.stats.history[-1]["time"] >= HISTORY_EVERY:
            self.stats.sample()
        if self.cfg.stats:
            tmp = self.cfg.stats.with_name(self.cfg.stats.name + f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(self.stats.as_json(), indent=1))
            os.replace(tmp, self.cfg.stats)

    def _done(self) -> bool:
        c = self.cfg
        if c.max_time is not None and self.stats.elapsed() >= c.max_time:
            return True
        if c.max_examples is not None and self.stats.checks >= c.max_examples:
            return True
        if c.stop_on_failure and self.stats.findings and any(not f.get("previous_run") for f in
                                                             self.stats.findings.values()):
            return True
        return False

    def run(self) -> int:
        self._load_previous()
        if self.cfg.scheduler:
            return self._run_dask()
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        stop = ctx.Event()
        procs = [ctx.Process(target=_worker, args=(i, self.cfg, q, stop), daemon=True)
                 for i in range(self.cfg.workers)]
        old_term = signal.getsignal(signal.SIGTERM)

        def on_term(signum, frame):
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, on_term)
        for p in procs:
            p.start()
        self.stats.workers = len(procs)
        last_stats = 0.0
        try:
            while not self._done():
                try:
                    msg = q.get(timeout=0.2)
                    self._handle(msg)
                except queue.Empty:
                    if not any(p.is_alive() for p in procs):
                        break
                now = time.time()
                if now - last_stats > 1.0:
                    self.stats.workers = sum(p.is_alive() for p in procs)
                    self._write_stats()
                    if self.ui:
                        self.ui(self.stats, final=False)
                    last_stats = now
        except KeyboardInterrupt:
            self.interrupted = True
        finally:
            stop.set()
            deadline = time.time() + (0.5 if self.interrupted else 3.0)
            while time.time() < deadline and any(p.is_alive() for p in procs):
                self._drain(q, 0.1)
            for p in procs:
                if p.is_alive():
                    p.terminate()
            for p in procs:
                p.join(timeout=5)
            self._drain(q, 0.0)
            signal.signal(signal.SIGTERM, old_term)
            self._write_stats()
        if self.interrupted:
            return EXIT_INTERRUPTED
        new = [f for f in self.stats.findings.values() if not f.get("previous_run")]
        return EXIT_FINDINGS if new else EXIT_OK

    def _drain(self, q, timeout):
        while True:
            try:
                msg = q.get(timeout=timeout) if timeout else q.get_nowait()
            except (queue.Empty, EOFError, OSError):
                return
            try:
                self._handle(msg)
            except Exception:  # noqa: BLE001 - never lose the rest while draining
                pass

    # -------------------------------------------------------------------------- Dask
    def _run_dask(self) -> int:
        try:
            from distributed import Client
        except ImportError:
            raise RuntimeError("--scheduler needs Dask's distributed package: pip install 'mtcheck[dask]'") from None
        s, cfg = self.stats, self.cfg
        s.engine = f"dask {cfg.scheduler}"
        client = Client(cfg.scheduler, timeout=30, set_as_default=False)
        old_term = signal.getsignal(signal.SIGTERM)

        def on_term(signum, frame):
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, on_term)
        futures = {}
        try:
            workers = client.run(_dask_warm)           # imports on every worker before the clock starts
            s.workers = len(workers)
            s.worker_ready, s.checks_at_ready = time.time(), s.checks
            nxt = 0
            in_flight = max(2, 2 * max(1, s.workers))
            run_id = f"{os.getpid()}-{int(time.time() * 1000)}"

            def submit():
                nonlocal nxt
                f = client.submit(_dask_batch, cfg, nxt, key=f"mtcheck-batch-{run_id}-{nxt}", pure=False,
                                  retries=0)
                futures[f.key] = (nxt, f)
                nxt += 1

            for _ in range(in_flight):
                submit()
            last_stats = 0.0
            while not self._done():
                batch = [f for _, f in futures.values() if f.done()]
                if not batch:
                    time.sleep(0.02)
                for f in batch:
                    number, _ = futures.pop(f.key, (None, None))
                    self._on_batch(f, number)
                    if not self._done():
                        submit()
                now = time.time()
                if now - last_stats > 1.0:
                    try:
                        n = len(client.scheduler_info(n_workers=-1).get("workers", {}))
                    except TypeError:      # older distributed: no n_workers argument
                        n = len(client.scheduler_info().get("workers", {}))
                    except Exception:  # noqa: BLE001 - the status line must not stop the campaign
                        n = s.workers
                    s.workers = n
                    # more workers joined: keep each of them busy
                    while len(futures) < 2 * max(1, n):
                        submit()
                    self._write_stats()
                    if self.ui:
                        self.ui(s, final=False)
                    last_stats = now
        except KeyboardInterrupt:
            self.interrupted = True
        finally:
            # results that are already back are counted; the rest is cancelled (never half-counted)
            for key, (number, f) in list(futures.items()):
                if f.done() and f.status == "finished":
                    try:
                        self._on_batch(f, number)
                        continue
                    except Exception:  # noqa: BLE001
                        pass
                s.batches_cancelled += 1
            try:
                client.cancel([f for _, f in futures.values()], force=True)
            except Exception:  # noqa: BLE001
                pass
            signal.signal(signal.SIGTERM, old_term)
            self._write_stats()
            try:
                client.close(timeout=5)
            except Exception:  # noqa: BLE001
                pass
        if self.interrupted:
            return EXIT_INTERRUPTED
        new = [f for f in s.findings.values() if not f.get("previous_run")]
        return EXIT_FINDINGS if new else EXIT_OK

    def _on_batch(self, fut, number):
        """Count one finished batch, once."""
        s = self.stats
        if number is None or number in s.batches_done:
            return
        if fut.status != "finished":
            try:
                exc = fut.exception()
            except Exception as e:  # noqa: BLE001 - a cancelled future raises here
                exc = e
            s.batch_failures[type(exc).__name__] += 1
            s.errors[f"batch {number}: {type(exc).__name__}: {str(exc)[:100]}"] += 1
            return
        res = fut.result()
        s.batches_done.add(number)
        for msg in res["messages"]:
            try:
                self._handle(msg)
            except Exception as e:  # noqa: BLE001 - one bad message must not lose the others
                s.errors[f"{type(e).__name__}: {str(e)[:100]}"] += 1
