"""The engine behind the pytest fixture: tie inputs through Hypothesis, the exact checker on
each, the shrunk finding written to the corpus, and the failure text.

Imported lazily by :mod:`mtcheck.pytest_plugin` (this module imports torch and Hypothesis).
"""

from __future__ import annotations

import copy
import hashlib
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import check as _check
from .errors import CheckInputError, MtcheckError
from .report import Verdict

BUG_VERDICTS = ("SMOOTH_WRONG", "NOT_ASSOCIATED", "NONLINEAR_VJP")
# UNKNOWN is never a pass: an example that mtcheck could not decide is counted as such,
# reported in a warning, and a test where no example was decided fails. It does not fail
# the test on its own by default (exact certification has budgets that real-initialised
# float models can exceed); fail_on=(..., "UNKNOWN") makes it fail.
DEFAULT_FAIL_ON = BUG_VERDICTS
# dyadic values, exact in every float dtype (bfloat16 included); 0 first so that Hypothesis shrinks to it
GRID = (0.0, 0.5, -0.5, 1.0, -1.0, 0.25, -0.25, 2.0, -2.0, 0.75, -0.75, 1.5, -1.5)
ELEMENTWISE_MAX = 512


@dataclass
class FuzzConfig:
    """Everything the fixture resolved for one ``fuzz`` call (values are already validated)."""

    max_examples: int
    seed: int                    # the base seed (what --mtcheck-seed reproduces)
    seed_source: str
    derandomize: bool
    shrink_seconds: float
    corpus: Path | None
    nodeid: str
    call_index: int = 0
    fail_on: tuple = DEFAULT_FAIL_ON
    neighbours: bool = False
    profile: str = "default"
    rerun_id: str = ""           # the test's id relative to the current directory


@dataclass
class Outcome:
    inputs: tuple
    label: str
    report: object
    seconds: float
    error: BaseException | None = None      # the checker raised instead of giving a verdict

    @property
    def verdict(self) -> str:
        return "ERROR" if self.error is not None else str(self.report.verdict)


@dataclass
class Stats:
    test: str = ""
    program: str = ""
    seed: int = 0
    explicit: int = 0
    generated: int = 0
    verdicts: dict = field(default_factory=dict)
    ties: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    shrink_checks: int = 0
    notes: list = field(default_factory=list)
    layer_ties: dict = field(default_factory=dict)   # (depth, node) -> {"exact", "float", "none"} counts
    tie_sources: dict = field(default_factory=dict)  # generator label -> examples

    def add(self, o: Outcome, explicit: bool = False):
        self._add_layers(o)
        if explicit:
            self.explicit += 1
        else:
            self.generated += 1
        self.verdicts[o.verdict] = self.verdicts.get(o.verdict, 0) + 1
        pat = o.report.pattern if o.report is not None else None
        self.ties.append(int(getattr(pat, "n_ties", 0) or 0))
        self.seconds.append(o.seconds)

    def _add_layers(self, o: Outcome):
        """Per nonsmooth layer: did this example tie there exactly, only in float, or not at all."""
        if o.report is None:
            return
        try:
            from .float_ties import layer_tie_kinds
        except Exception:  # noqa: BLE001 - statistics must never break a test
            return
        for e in layer_tie_kinds(o.report):
            c = self.layer_ties.setdefault((e["depth"], e["node"]), {"exact": 0, "float": 0, "none": 0})
            c[e["tie"]] += 1
        lab = o.label or ""
        src = ("float-only tie" if "float-only tie" in lab else "exact tie" if "exact tie" in lab
               else "deep ties at every layer" if "deep ties" in lab
               else "explicit" if lab.startswith("the ") else "structured")
        self.tie_sources[src] = self.tie_sources.get(src, 0) + 1

    def as_dict(self) -> dict:
        t = sorted(self.ties) or [0]
        return {"test": self.test, "program": self.program, "seed": self.seed, "explicit": self.explicit,
                "generated": self.generated, "verdicts": dict(sorted(self.verdicts.items())),
                "ties": [t[0], int(statistics.median(t)), t[-1]],
                "seconds_per_check": round(sum(self.seconds) / max(len(self.seconds), 1), 4),
                "shrink_checks": self.shrink_checks, "notes": list(self.notes),
                "layer_ties": [{"depth": d, "node": n, **c} for (d, n), c in sorted(self.layer_ties.items())],
                "tie_sources": dict(sorted(self.tie_sources.items()))}


class _Finding(Exception):
    pass


def derive_seed(base: int, nodeid: str, k: int) -> int:
    return int(hashlib.sha1(f"{base}|{nodeid}|{k}".encode()).hexdigest()[:8], 16)


# ------------------------------------------------------------------------------- programs

def program_ref(model, factory=None, corpus: Path | None = None):
    """``(program dict, None)`` to rebuild ``model`` at replay, or ``(None, why not)``."""
    call = True
    if factory is not None:
        if isinstance(factory, str):
            target = factory
            mod_name = factory.partition(":")[0]
        else:
            mod_name, qual = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
            target = f"{mod_name}:{qual}"
            why = _unreachable(factory, mod_name, qual)
            if why:
                return None, why
    else:
        obj = type(model) if isinstance(model, torch.nn.Module) else model
        call = isinstance(model, torch.nn.Module)
        mod_name, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
        target = f"{mod_name}:{qual}"
        why = _unreachable(obj, mod_name, qual)
        if why:
            return None, why + " (or pass factory='package.module:make_model' to fuzz)"
    prog = {"kind": "import", "target": target, "call": call, "kwargs": {}}
    mod = sys.modules.get(mod_name)
    f = getattr(mod, "__file__", None)
    if f and corpus is not None and not any(part in ("site-packages", "dist-packages") for part in Path(f).parts):
        root = Path(f).resolve().parent
        for _ in range(mod_name.count(".") + (1 if Path(f).name == "__init__.py" else 0)):
            root = root.parent
        try:
            prog["search_path"] = os.path.relpath(root, Path(corpus).resolve())
        except ValueError:  # another drive on Windows
            prog["search_path"] = str(root)
    return prog, None


def _unreachable(obj, mod_name, qual) -> str | None:
    if not mod_name or mod_name == "__main__":
        return f"{qual or obj!r} is defined in __main__, which a replay cannot import"
    if "<locals>" in qual or "<lambda>" in qual:
        return f"{mod_name}:{qual} is defined inside a function, which a replay cannot import"
    cur = sys.modules.get(mod_name)
    for part in qual.split("."):
        cur = getattr(cur, part, None)
    if cur is not obj:
        return f"{mod_name}:{qual} does not name the same object when imported"
    return None


# ------------------------------------------------------------------------------- inputs

def tie_strategy(example_inputs, model=None, deep: bool = False):
    """A Hypothesis strategy of ``(inputs, description)`` shaped like ``example_inputs``, rich in ties.

    Per float input: the built-in generator below (zeros, constants, constant patches, repeated
    values, dyadic grids, the example rounded to quarters; it shrinks towards zeros), mixed with
    ``mtcheck.strategies.tie_inputs`` structured inputs when that module is importable. With
    ``deep=True`` and a one-input model, also inputs solved to put a tie at every nonsmooth layer
    (``tie_inputs(model, deep=True)``; slower: seconds per example on a small CNN).
    """
    import hypothesis.strategies as st

    try:
        from .strategies import tie_inputs
    except Exception:  # noqa: BLE001 - absent or broken: the built-in generator alone
        tie_inputs = None
    parts = []
    for i, t in enumerate(example_inputs):
        if not t.is_floating_point():
            parts.append(st.just((t.clone(), f"input {i}: as given")))
            continue
        options = [_tensor_strategy(t, i)]
        head = f"input {i} {str(t.dtype).replace('torch.', '')}{list(t.shape)}"
        if tie_inputs is not None:
            try:
                options.append(tie_inputs(tuple(t.shape), dtype=t.dtype, events=False)
                               .map(lambda x, h=head: (x, f"{h}: structured ties (mtcheck.strategies.tie_inputs)")))
                if deep and model is not None and len(example_inputs) == 1:
                    options.append(tie_inputs(model, shape=tuple(t.shape), dtype=t.dtype, deep=True, events=False)
                                   .map(lambda x, h=head: (x, f"{h}: deep ties at every nonsmooth layer")))
                    # both kinds of tie at one drawn layer: an exact tie, or a float-only (rounding-induced)
                    # one; counted apart in --mtcheck-show-statistics
                    from .float_ties import both_tie_kinds

                    for kind in ("exact tie", "float-only tie"):
                        options.append(both_tie_kinds(model, shape=tuple(t.shape), dtype=t.dtype, kinds=(kind,))
                                       .map(lambda p, h=head: (p[0], f"{h}: {p[1]}")))
            except Exception:  # noqa: BLE001 - an incompatible version: keep the built-in generator
                pass
        parts.append(st.one_of(*options))
    return st.tuples(*parts).map(lambda ps: (tuple(p[0] for p in ps), "; ".join(p[1] for p in ps)))


def _q(v: float) -> str:
    from fractions import Fraction

    return str(Fraction(v))


def _tensor_strategy(t: torch.Tensor, i: int):
    import hypothesis.strategies as st

    shape, dtype, n = tuple(t.shape), t.dtype, t.numel()
    head = f"input {i} {str(dtype).replace('torch.', '')}{list(shape)}"
    val = st.sampled_from(GRID)
    H = shape[-2] if len(shape) >= 2 else 1
    W = shape[-1] if len(shape) >= 1 else 1

    def full(v):
        return torch.full(shape, v, dtype=dtype)

    def from_list(vals):
        return torch.tensor(vals, dtype=torch.float64).to(dtype).reshape(shape)

    def seeded(palette, s):
        g = torch.Generator().manual_seed(s)
        idx = torch.randint(0, len(palette), (n,), generator=g)
        return torch.tensor(palette, dtype=torch.float64)[idx].to(dtype).reshape(shape)

    zeros = st.just((full(0.0), f"{head}: zeros"))
    const = val.map(lambda v: (full(v), f"{head}: constant {_q(v)}"))

    @st.composite
    def patches(draw):
        bg, fg = draw(val), draw(val)
        h = draw(st.integers(1, H))
        w = draw(st.integers(1, W))
        r = draw(st.integers(0, H - h))
        c = draw(st.integers(0, W - w))
        x = full(bg)
        view = x.reshape(-1, H, W) if len(shape) >= 2 else x.reshape(-1, 1, W)
        view[:, r:r + h, c:c + w] = fg
        return x, f"{head}: constant {_q(bg)} with a {h}x{w} patch of {_q(fg)} at ({r}, {c})"

    @st.composite
    def repeats(draw):
        pal = draw(st.lists(val, min_size=1, max_size=3, unique=True))
        if n <= ELEMENTWISE_MAX:
            idx = draw(st.lists(st.integers(0, len(pal) - 1), min_size=n, max_size=n))
            x = from_list([pal[k] for k in idx])
        else:
            x = seeded(pal, draw(st.integers(0, 2 ** 32 - 1)))
        return x, f"{head}: values from {{{', '.join(_q(v) for v in pal)}}}"

    @st.composite
    def grid(draw):
        if n <= ELEMENTWISE_MAX:
            x = from_list(draw(st.lists(val, min_size=n, max_size=n)))
        else:
            x = seeded(list(GRID), draw(st.integers(0, 2 ** 32 - 1)))
        return x, f"{head}: dyadic grid values"

    ex = t.detach().to(torch.float64)
    rounded = (torch.round(ex * 4) / 4).clamp(-2, 2).to(dtype)
    example = st.just((rounded, f"{head}: the example input rounded to quarters"))
    return st.one_of(zeros, const, patches(), repeats(), example, grid())


# ------------------------------------------------------------------------------- the run

class Fuzzer:
    def __init__(self, cfg: FuzzConfig, model, example_inputs, *, dtype=None, factory=None, name=None, wrt=None,
                 strategy=None, extra_cases=(), deep=False):
        if isinstance(example_inputs, torch.Tensor):
            example_inputs = (example_inputs,)
        inputs = tuple(example_inputs)
        if not inputs or not all(isinstance(x, torch.Tensor) for x in inputs):
            raise CheckInputError("fuzz(model, example_inputs): example_inputs must be a tensor or a tuple of tensors")
        if dtype is not None:
            if isinstance(dtype, str):
                dtype = getattr(torch, dtype)
            if isinstance(model, torch.nn.Module):
                model = copy.deepcopy(model).to(dtype)
            inputs = tuple(x.to(dtype) if x.is_floating_point() else x for x in inputs)
        if isinstance(model, torch.nn.Module) and model.training and any(
                isinstance(m, torch.nn.modules.dropout._DropoutNd) for m in model.modules()):
            raise CheckInputError(f"{type(model).__name__} is in training mode and has dropout, so it is a different "
                                  "random function at every call; call model.eval() before mtcheck.fuzz")
        self.cfg, self.model, self.inputs = cfg, model, tuple(x.detach() for x in inputs)
        self.name = name or (type(model).__name__ if isinstance(model, torch.nn.Module)
                             else getattr(model, "__qualname__", repr(model)))
        self.wrt = wrt
        self.strategy = strategy
        self.deep = deep
        self.factory = factory
        self.extra_cases = list(extra_cases)
        self.seed = derive_seed(cfg.seed, cfg.nodeid, cfg.call_index)
        self.options = {"neighbours": bool(cfg.neighbours), "forward_mode": False}
        if wrt is not None:
            self.options["wrt"] = wrt
        self.stats = Stats(test=cfg.nodeid, program=self.name, seed=cfg.seed)
        self.key = self._key()
        self.case_path: Path | None = None
        self.case_note = ""

    def _key(self) -> str:
        obj = type(self.model) if isinstance(self.model, torch.nn.Module) else self.model
        ident = f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', '?')}"
        shapes = ",".join(f"{str(x.dtype).replace('torch.', '')}{list(x.shape)}" for x in self.inputs)
        return f"associated-gradient|{ident}|{shapes}"

    def check(self, inputs) -> Outcome:
        t0 = time.perf_counter()
        try:
            rep = _check(self.model, *inputs, seed=self.seed, name=self.name, **self.options)
        except Exception as e:  # noqa: BLE001 - reported as a failure of its own, with the input
            return Outcome(tuple(inputs), "", None, time.perf_counter() - t0, error=e)
        return Outcome(tuple(inputs), "", rep, time.perf_counter() - t0)

    def failing(self, o: Outcome) -> bool:
        return o.error is not None or o.verdict in self.cfg.fail_on

    def run(self, generate: bool = True):
        __tracebackhide__ = True
        # 1. explicit examples: earlier findings for this model from the corpus, then the user's example inputs
        for path, xs in self.extra_cases:
            if len(xs) != len(self.inputs) or any(a.shape != b.shape or a.dtype != b.dtype
                                                  for a, b in zip(xs, self.inputs)):
                continue
            o = self.check(xs)
            o.label = f"the inputs of corpus case {_rel(path)} (an earlier finding)"
            self.stats.add(o, explicit=True)
            if self.failing(o):
                return self._fail(o, shrunk=False, known=path)
        o = self.check(self.inputs)
        o.label = "the example inputs as given"
        if isinstance(o.error, CheckInputError):
            raise o.error                   # the model itself cannot be judged: say so plainly
        self.stats.add(o, explicit=True)
        if self.failing(o):
            return self._fail(o, shrunk=False)
        # 2. generated tie inputs, shrunk by Hypothesis
        found = self._hypothesis() if generate else None
        if found is not None:
            return self._fail(found, shrunk=True)
        decided = sum(v for k, v in self.stats.verdicts.items() if k in ("SMOOTH_OK", "ASSOCIATED"))
        if decided == 0:
            raise MtcheckError(f"mtcheck decided none of the {self.stats.explicit + self.stats.generated} examples for "
                               f"{self.name} (verdicts {self.stats.verdicts}); an undecided check is never a pass")
        unknown = self.stats.verdicts.get("UNKNOWN", 0)
        if unknown:
            import warnings

            warnings.warn(f"mtcheck: {unknown} of {self.stats.explicit + self.stats.generated} examples for {self.name} "
                          "were UNKNOWN (not counted as passes; see --mtcheck-show-statistics); pass "
                          "fail_on=(..., 'UNKNOWN') to make them fail the test", stacklevel=2)
        return self.stats

    def _hypothesis(self):
        from hypothesis import HealthCheck, Phase, Verbosity, given, settings
        from hypothesis import seed as hseed

        strat = self.strategy if self.strategy is not None else tie_strategy(self.inputs, self.model, self.deep)
        cache: dict = {}
        state = {"last": None, "deadline": None}

        def run_one(drawn):
            xs, label = drawn if isinstance(drawn, tuple) and len(drawn) == 2 and isinstance(drawn[1], str) \
                else (drawn, "generated")
            xs = (xs,) if isinstance(xs, torch.Tensor) else tuple(xs)
            k = hashlib.sha1(b"".join(_bytes(x) for x in xs)).hexdigest()
            o = cache.get(k)
            if o is None:
                if state["deadline"] is not None:
                    if time.monotonic() > state["deadline"]:
                        return          # shrink budget spent: stop exploring, keep the best finding
                    self.stats.shrink_checks += 1
                o = self.check(xs)
                o.label = label
                cache[k] = o
                if state["deadline"] is None:
                    self.stats.add(o)
            if self.failing(o):
                if state["deadline"] is None:
                    state["deadline"] = time.monotonic() + self.cfg.shrink_seconds
                state["last"] = o
                raise _Finding()

        test = given(strat)(run_one)
        test = settings(max_examples=self.cfg.max_examples, deadline=None, database=None, derandomize=False,
                        suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet,
                        phases=[Phase.explicit, Phase.generate, Phase.target, Phase.shrink],
                        report_multiple_bugs=False, print_blob=False)(test)
        test = hseed(self.seed)(test)
        try:
            test()
        except _Finding:
            return state["last"]
        return None

    # ---------------------------------------------------------------------------- failure
    def _fail(self, o: Outcome, shrunk: bool, known=None):
        __tracebackhide__ = True
        if o.error is not None:
            raise MtcheckError(self.error_message(o, shrunk), None) from None
        if known is not None:
            self.case_path = Path(known)
            self.case_note = "(an earlier finding, still there)"
        else:
            self._write_case(o)
        raise MtcheckError(self.message(o, shrunk, known), o.report)

    def _write_case(self, o: Outcome):
        if self.cfg.corpus is None:
            self.case_note = "(no case written: the corpus is off)"
            return
        ref, why = program_ref(self.model, self.factory, self.cfg.corpus)
        if ref is None:
            self.case_note = f"(no case written: {why})"
            return
        from .corpus import case_from_report, load_case, save_case

        case = case_from_report(ref, o.inputs, o.report, self.seed, program=self.model, options=self.options,
                                origin={"key": self.key, "test": self.cfg.nodeid, "found_by": "pytest mtcheck.fuzz",
                                        "example": o.label, "base_seed": self.cfg.seed})
        target = self.cfg.corpus / f"case-{case.case_id}.json"
        try:
            if target.exists() and load_case(target).verdict == case.verdict:
                self.case_path, self.case_note = target, "(already in the corpus)"
                return
        except Exception:  # noqa: BLE001 - a damaged file is simply rewritten
            pass
        self.case_path = save_case(self.cfg.corpus, case)
        self.case_note = "(written now)"
        if o.report.witness is not None:        # case-<sha1>.png: the program along the witness direction
            try:
                from .plot import plot_witness

                plot_witness(self.model, list(o.inputs), o.report, self.case_path.with_suffix(".png"),
                             wrt=self.options.get("wrt"))
            except Exception:  # noqa: BLE001 - a missing picture must not hide the finding
                pass

    def error_message(self, o: Outcome, shrunk: bool) -> str:
        import traceback

        e = o.error
        n = self.stats.explicit + self.stats.generated
        judged = isinstance(e, CheckInputError)
        head = ("mtcheck cannot judge an input" if judged else "mtcheck itself failed (a bug in mtcheck)")
        frames = traceback.extract_tb(e.__traceback__)
        ours = [f for f in frames if f"{os.sep}mtcheck{os.sep}" in f.filename] or frames
        last = " <- ".join(f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in reversed(ours[-3:])) or "?"
        lines = [f"{head} while checking {self.name} after {n} example{'s' if n != 1 else ''} "
                 f"({'shrunk by Hypothesis' if shrunk else 'no shrinking'}; seed {self.cfg.seed})", "",
                 f"error     {type(e).__name__}: {e}",
                 f"raised at {last}",
                 f"case      {o.label}"]
        if not judged:
            lines.append("This is not a verdict on your model: please report it to mtcheck with the replay line.")
        lines += ["", f"replay: pytest '{self.cfg.rerun_id or self.cfg.nodeid}' --mtcheck-seed={self.cfg.seed}  "
                      "(no case written: there is no verdict to record)"]
        return "\n".join(lines)

    def message(self, o: Outcome, shrunk: bool, known=None) -> str:
        rep = o.report
        v = rep.verdict
        n = self.stats.explicit + self.stats.generated
        how = "shrunk by Hypothesis" if shrunk else "no shrinking needed"
        lines = [f"mtcheck: {v} gradient in {self.name} after {n} example{'s' if n != 1 else ''} "
                 f"({how}; seed {self.cfg.seed})", ""]
        from .report import _MEANING

        lines.append(f"verdict   {v}: {_MEANING.get(v, '')}")
        tied = [e for e in (rep.pattern or []) if e.ties or e.counts.get("tie")]
        if tied:
            for j, e in enumerate(tied[:3]):
                c = ", ".join(f"{k} {val}" for k, val in e.counts.items())
                lines.append(f"{'where' if j == 0 else '':<9} {e.label} ({e.kind}) at {e.where}: {c}")
                if e.ties:
                    lines.append(f"{'':<9}   ties: {'; '.join(e.ties)}")
            if len(tied) > 3:
                lines.append(f"{'':<9} ... and {len(tied) - 3} more nodes with ties")
        elif rep.rounding_nodes:
            lines.append("where     " + "; ".join(rep.rounding_nodes[:3]))
        else:
            lines.append("where     no tie: the program is smooth at this input")
        lines.append(f"case      {o.label}")
        if v == Verdict.UNKNOWN and rep.reasons:
            lines.append("why       " + "; ".join(f"{k}: {r}" for k, r in rep.reasons.items()))
        if rep.witness is not None:
            lines.append("witness   " + _witness_text(rep.witness).replace("\n", "\n          "))
        if rep.mismatch:
            lines.append("")
            lines.append(rep.mismatch)
        lines.append("")
        rerun = f"pytest '{self.cfg.rerun_id or self.cfg.nodeid}' --mtcheck-seed={self.cfg.seed}"
        if self.case_path is not None:
            lines.append(f"replay: pytest {_rel(self.case_path)}  {self.case_note}; search again: {rerun}")
        else:
            lines.append(f"replay: {rerun}  {self.case_note}")
        return "\n".join(lines)


def _witness_text(w) -> str:
    """The witness, readable: a long direction is scaled to max |t_i| = 1 (rates scale with it)."""
    from ._exact import fmt, q

    d = [q(v) for v in w.direction]
    long = any(len(fmt(v)) > 24 for v in d)
    scale = max((abs(v) for v in d), default=q(1)) if long else q(1)
    if scale == 0:
        scale = q(1)

    def s(v):
        return _short(fmt(q(v) / scale))

    t = ", ".join(s(v) for v in d[:8]) + (", ..." if len(d) > 8 else "")
    out = [f"direction t = ({t}){' (scaled to max |t_i| = 1)' if long else ''} stays in the stratum",
           f"output[{w.output_index}]: framework J t = {s(w.framework_rate)}, program J_S t = {s(w.stratum_rate)}"]
    if w.h is not None:
        out.append(f"exact: f(x) = {_short(fmt(w.f_x))}, f(x + h t) = {_short(fmt(w.f_x_plus_ht))} "
                   f"with h = {_short(fmt(w.h))}")
    elif w.note:
        out.append(w.note)
    if long:
        out.append("(long rationals shown as ~decimals; the corpus case holds them exactly)")
    return "\n".join(out)


def _short(s: str, n: int = 40) -> str:
    if len(s) <= n:
        return s
    num, _, den = s.partition("/")
    try:
        return f"~{int(num) / int(den or 1):.6g}"
    except (OverflowError, ValueError, ZeroDivisionError):
        return s[:n] + "..."


def _bytes(x: torch.Tensor) -> bytes:
    x = x.detach().contiguous()
    return str((x.dtype, tuple(x.shape))).encode() + (x.reshape(-1).view(torch.uint8).numpy().tobytes()
                                                       if x.numel() else b"")


def _rel(p) -> str:
    try:
        r = os.path.relpath(p)
        return r if not r.startswith("..") else str(p)
    except ValueError:
        return str(p)


def corpus_cases_for(corpus: Path | None, key: str):
    """``(path, inputs)`` of the corpus cases recorded for the stable ``key`` (earlier findings)."""
    import json

    out = []
    if corpus is None or not corpus.is_dir():
        return out
    from .corpus import CorpusError, load_case

    for p in sorted(corpus.glob("case-*.json")):
        try:
            doc = json.loads(p.read_text())
            if (doc.get("origin") or {}).get("key") != key:
                continue
            out.append((p, tuple(load_case(p).inputs)))
        except (OSError, ValueError, CorpusError):
            continue
    return out
