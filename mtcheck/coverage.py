"""What a generated case hit: which kinds of kinks, at which depth.

``kink_profile`` summarises one case; ``KinkCounter`` accumulates cases for a
campaign or a benchmark; ``record_events`` turns a profile into hypothesis
``event()`` lines (shown by ``pytest --hypothesis-show-statistics``).

Depth is the position of a nonsmooth node among the nonsmooth nodes of the
trace, in execution order, starting at 1.
"""

from __future__ import annotations

from collections import Counter

__all__ = ["kink_profile", "record_events", "KinkCounter", "profile_events"]


def _pattern_of(obj, inputs):
    from .model import ExactModel, Pattern
    from .report import Report
    from .trace import Trace, prepare_inputs, trace
    from ._exact import from_tensor

    if isinstance(obj, Report):
        return obj.pattern
    if isinstance(obj, Pattern):
        return obj
    if isinstance(obj, Trace):
        m = ExactModel(obj)
        return m.pattern(m.evaluate([from_tensor(t) for t in obj.inputs]))
    if callable(obj):
        if not inputs:
            raise TypeError("kink_profile(fn, *inputs): the program's inputs are needed")
        leaves, _ = prepare_inputs(inputs, None)
        tr = trace(obj, leaves)
        m = ExactModel(tr)
        return m.pattern(m.evaluate([from_tensor(t) for t in leaves]))
    raise TypeError(f"kink_profile: cannot read a pattern from a {type(obj).__name__}")


def kink_profile(report_or_trace, *inputs) -> dict:
    """Kinks hit by one case.

    ``kind`` is the discriminant's word (``relu``, ``window``, ``lo``/``hi`` for clamps, ``max``),
    ``op`` the ATen op. Accepts a :class:`~mtcheck.Report`, a :class:`~mtcheck.model.Pattern`, a
    :class:`~mtcheck.trace.Trace`, or a program followed by its inputs. Returns::

        {"layers": [{"depth": 1, "node": "relu#1", "op": "relu", "kind": "relu", "ties": 3}, ...],
         "tied_depths": [1, ...], "n_layers": 2, "all_tied": False,
         "kinds": {"relu": 1}}     # tied layers per kind of kink
    """
    pat = _pattern_of(report_or_trace, inputs)
    layers = []
    kinds: Counter = Counter()
    for depth, e in enumerate(pat.entries, start=1):
        ties = int(e.counts.get("tie", 0))
        op = e.label.split("#")[0]
        row = {"depth": depth, "node": e.label, "op": op, "kind": e.kind, "ties": ties}
        if "tied windows" in e.counts:
            row["tied_windows"] = int(e.counts["tied windows"])
        layers.append(row)
        if ties:
            kinds[e.kind] += 1
    tied = [r["depth"] for r in layers if r["ties"]]
    return {"layers": layers, "tied_depths": tied, "n_layers": len(layers),
            "all_tied": bool(layers) and len(tied) == len(layers), "kinds": dict(kinds)}


def profile_events(profile: dict) -> list:
    """Short event strings: ``tie: relu at depth 2``, ``every nonsmooth layer tied``."""
    out = [f"tie: {r.get('op', r['kind'])} at depth {r['depth']}" for r in profile["layers"] if r["ties"]]
    if profile["n_layers"]:
        out.append("every nonsmooth layer tied" if profile["all_tied"] else
                   f"tied layers: {len(profile['tied_depths'])}/{profile['n_layers']}")
    else:
        out.append("no nonsmooth layer")
    return out


def record_events(profile: dict) -> None:
    """Send a profile to hypothesis as ``event()``s; a no-op outside a hypothesis test."""
    try:
        from hypothesis import event
        from hypothesis.control import _current_build_context
    except ImportError:  # pragma: no cover
        return
    if _current_build_context.value is None:
        return
    for e in profile_events(profile):
        event(e)


class KinkCounter:
    """Accumulates profiles: per depth, how many cases had a tie there; and how many tied everywhere."""

    def __init__(self):
        self.cases = 0
        self.all_tied = 0
        self.by_depth: Counter = Counter()      # depth -> cases with a tie there
        self.seen_depth: Counter = Counter()    # depth -> cases with a layer there
        self.kind_at: dict = {}                 # depth -> kind
        self.kinds: Counter = Counter()

    def add(self, profile: dict) -> None:
        self.cases += 1
        self.all_tied += int(profile["all_tied"])
        for r in profile["layers"]:
            self.seen_depth[r["depth"]] += 1
            self.kind_at.setdefault(r["depth"], r.get("op", r["kind"]))
            if r["ties"]:
                self.by_depth[r["depth"]] += 1
                self.kinds[r["kind"]] += 1

    def rate(self, depth: int) -> float:
        n = self.seen_depth.get(depth, 0)
        return self.by_depth.get(depth, 0) / n if n else 0.0

    def as_dict(self) -> dict:
        return {"cases": self.cases, "all_tied": self.all_tied,
                "by_depth": {d: {"kind": self.kind_at[d], "tied": self.by_depth.get(d, 0),
                                 "cases": self.seen_depth[d]} for d in sorted(self.seen_depth)},
                "kinds": dict(self.kinds)}

    def table(self) -> str:
        w = max([10] + [len(k) for k in self.kind_at.values()])
        lines = [f"{'depth':>5}  {'op':<{w}} {'tied':>6}"]
        for d in sorted(self.seen_depth):
            lines.append(f"{d:>5}  {self.kind_at[d]:<{w}} {100 * self.rate(d):5.1f}%")
        frac = self.all_tied / self.cases if self.cases else 0.0
        lines.append(f"every layer tied: {self.all_tied}/{self.cases} ({100 * frac:.1f}%)")
        return "\n".join(lines)
