"""pytest plugin for mtcheck (loaded through the ``pytest11`` entry point).

Import-light on purpose: nothing here imports torch, z3 or Hypothesis until a test uses
mtcheck (the ``mtcheck`` fixture, or a corpus case file being replayed).

What it adds:

- the ``mtcheck`` fixture: ``mtcheck.fuzz(model, example_inputs, max_examples=..., dtype=...)``;
- the ``mtcheck`` marker (settings for one test; ``models=`` parametrizes ``mtcheck_model``);
- one option group (``--mtcheck-seed``, ``--mtcheck-profile``, ``--mtcheck-corpus``,
  ``--mtcheck-show-statistics``, ``--mtcheck-update-corpus``, ``--mtcheck-trust-imports``);
- collection of corpus case files (``case-<sha1>.json``) as test items that replay them.

Every setting is resolved through one chain: marker (or the call's own arguments) >
command line > environment (``MTCHECK_*``) > ini (``mtcheck_*``) > profile default.
"""

from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PROFILES = {
    # examples per fuzz call, derandomized (fixed seed 0 unless one is given), seconds of shrinking
    "default": {"max_examples": 20, "derandomize": False, "shrink_seconds": 30.0},
    "ci": {"max_examples": 20, "derandomize": True, "shrink_seconds": 20.0},
    "fuzz": {"max_examples": 500, "derandomize": False, "shrink_seconds": 120.0},
}
DEFAULT_CORPUS = "mtcheck-corpus"
MARKER_KWARGS = ("models", "max_examples", "dtype", "seed", "profile", "fail_on")
MARKER_DOC = ("mtcheck(*, models=None, max_examples=None, dtype=None, seed=None, profile=None, fail_on=None): "
              "mtcheck settings for this test (they win over command line, environment and ini); models= (a dict "
              "name -> factory, or a list of factories; a factory returns (model, example_inputs)) parametrizes the "
              "test's mtcheck_model argument.")
_CASE_RE = re.compile(r"^case-[0-9a-f]{40}\.json$")
_VERDICTS = ("SMOOTH_OK", "ASSOCIATED", "SMOOTH_WRONG", "NOT_ASSOCIATED", "NONLINEAR_VJP", "ROUNDING_BRANCH",
             "UNKNOWN")


# ------------------------------------------------------------------------------- settings

class SettingError(Exception):
    pass


def _int(lo):
    def parse(v, where):
        if isinstance(v, bool):
            raise SettingError(f"invalid value {v!r} from {where}: expected an integer >= {lo}")
        try:
            i = int(str(v).strip()) if not isinstance(v, int) else v
        except ValueError:
            raise SettingError(f"invalid value {v!r} from {where}: expected an integer >= {lo}") from None
        if i < lo:
            raise SettingError(f"invalid value {v!r} from {where}: expected an integer >= {lo}")
        return i
    return parse


def _profile(v, where):
    if v not in PROFILES:
        raise SettingError(f"unknown profile {v!r} from {where}: choose one of {', '.join(PROFILES)}")
    return v


def _bool(v, where):
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off", ""):
        return False
    raise SettingError(f"invalid value {v!r} from {where}: expected true/false (1/0, yes/no, on/off)")


def _corpus(v, where):
    s = str(v).strip()
    if not s:
        raise SettingError(f"empty corpus directory from {where} (use 'none' to write no cases)")
    return s


# name: (command-line flag, environment variable, ini option, parser)
SETTINGS = {
    "profile": ("--mtcheck-profile", "MTCHECK_PROFILE", "mtcheck_profile", _profile),
    "seed": ("--mtcheck-seed", "MTCHECK_SEED", "mtcheck_seed", _int(0)),
    "corpus": ("--mtcheck-corpus", "MTCHECK_CORPUS", "mtcheck_corpus", _corpus),
    "max_examples": (None, "MTCHECK_MAX_EXAMPLES", "mtcheck_max_examples", _int(1)),
    "show_statistics": ("--mtcheck-show-statistics", "MTCHECK_SHOW_STATISTICS", "mtcheck_show_statistics", _bool),
    "update_corpus": ("--mtcheck-update-corpus", "MTCHECK_UPDATE_CORPUS", None, _bool),
    # no ini key on purpose: a corpus someone else wrote could ship an ini file that trusts itself
    "trust_imports": ("--mtcheck-trust-imports", "MTCHECK_TRUST_IMPORTS", None, _bool),
}


@dataclass
class Resolved:
    values: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)
    base: Path = Path(".")


def _resolve_one(config, name, overrides=None, override_where=""):
    """(value, source, base directory for relative paths) of one setting, or (None, None, None)."""
    flag, env, ini, parse = SETTINGS[name]
    if overrides and overrides.get(name) is not None:
        where = override_where.format(name=name)
        return parse(overrides[name], where), where, config.rootpath
    if flag:
        v = config.getoption(flag.lstrip("-").replace("-", "_"))
        if v is not None:
            return parse(v, f"command line {flag}"), f"command line {flag}", Path.cwd()
    if env:
        v = os.environ.get(env)
        if v is not None and v != "":
            return parse(v, f"environment variable {env}"), f"environment variable {env}", Path.cwd()
    if ini:
        v = config.getini(ini)
        if v not in (None, "", []):
            where = f"ini option {ini} in {config.inipath.name if config.inipath else 'the ini file'}"
            base = config.inipath.parent if config.inipath else config.rootpath
            return parse(v, where), where, base
    return None, None, None


def resolve_settings(config, overrides=None, override_where="") -> Resolved:
    r = Resolved()
    for name in SETTINGS:
        v, src, base = _resolve_one(config, name, overrides, override_where)
        r.values[name], r.sources[name] = v, src
        if name == "corpus":
            r.base = base or config.rootpath
    prof = r.values["profile"] or "default"
    if r.values["profile"] is None:
        r.values["profile"], r.sources["profile"] = prof, "default"
    p = PROFILES[prof]
    for k in ("max_examples",):
        if r.values[k] is None:
            r.values[k], r.sources[k] = p[k], f"profile {prof!r}"
    for k in ("show_statistics", "update_corpus", "trust_imports"):
        if r.values[k] is None:
            r.values[k], r.sources[k] = False, "default"
    if r.values["corpus"] is None:
        r.values["corpus"], r.sources["corpus"], r.base = DEFAULT_CORPUS, "default", config.rootpath
    return r


def corpus_dir(r: Resolved) -> Path | None:
    c = r.values["corpus"]
    if str(c).lower() in ("none", "off"):
        return None
    p = Path(c)
    return p if p.is_absolute() else (r.base / p)


@dataclass
class SessionState:
    settings: Resolved
    seed: int
    seed_source: str
    replays: list = field(default_factory=list)
    written: list = field(default_factory=list)
    statistics: list = field(default_factory=list)


_STATE = pytest.StashKey["SessionState"]()


# ------------------------------------------------------------------------------- hooks

def _describe_profile(name: str) -> str:
    p = PROFILES[name]
    return f"{name} ({p['max_examples']} examples, {'derandomized' if p['derandomize'] else 'randomized'})"


def pytest_addoption(parser):
    add_options(parser.getgroup("mtcheck", "mtcheck: exact gradient checks at ties"))
    parser.addini("mtcheck_profile", f"mtcheck profile ({', '.join(PROFILES)})", default=None)
    parser.addini("mtcheck_seed", "mtcheck base seed", default=None)
    parser.addini("mtcheck_corpus", f"mtcheck corpus directory, relative to the ini file (default {DEFAULT_CORPUS}; "
                                    "'none' writes no cases)", default=None)
    parser.addini("mtcheck_max_examples", "examples per mtcheck fuzz call (overrides the profile)", default=None)
    parser.addini("mtcheck_show_statistics", "print mtcheck statistics (true/false)", default=None)


def add_options(group):
    """The option group; reusable by a standalone CLI built on argparse."""
    group.addoption("--mtcheck-seed", action="store", default=None, metavar="N",
                    help="base seed for mtcheck's input generation (printed in the header; reproduces a run)")
    group.addoption("--mtcheck-profile", action="store", default=None, metavar="NAME",
                    help="mtcheck settings profile: " + ", ".join(_describe_profile(k) for k in PROFILES)
                         + "; no deadline in any")
    group.addoption("--mtcheck-corpus", action="store", default=None, metavar="DIR",
                    help=f"directory where failing cases are written (default {DEFAULT_CORPUS} under the rootdir; "
                         "'none' to write nothing)")
    group.addoption("--mtcheck-show-statistics", action="store_true", default=None,
                    help="print per-test statistics of mtcheck fuzz calls (examples, verdicts, ties, time)")
    group.addoption("--mtcheck-update-corpus", action="store_true", default=None,
                    help="when replaying corpus cases, rewrite the expectation of cases whose verdict changed")
    group.addoption("--mtcheck-trust-imports", action="store_true", default=None,
                    help="when replaying corpus cases, import model factories from the code a case ships with "
                         "(its search_path); without it such a case runs its stored traced program, or is skipped "
                         "as 'needs trust'")


def pytest_configure(config):
    config.addinivalue_line("markers", MARKER_DOC)
    try:
        r = resolve_settings(config)
    except SettingError as e:
        raise pytest.UsageError(f"mtcheck: {e}") from None
    wi = getattr(config, "workerinput", None)
    if wi and "mtcheck_seed" in wi:
        seed, src = int(wi["mtcheck_seed"]), wi["mtcheck_seed_source"]
    elif r.values["seed"] is not None:
        seed, src = r.values["seed"], r.sources["seed"]
    elif PROFILES[r.values["profile"]]["derandomize"]:
        seed, src = 0, f"profile {r.values['profile']!r} (derandomized)"
    else:
        seed, src = random.randrange(2 ** 32), "random"
    config.stash[_STATE] = SessionState(r, seed, src)
    config.pluginmanager.register(_ReportCollector(config.stash[_STATE]), "mtcheck-reports")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(), "mtcheck-xdist")


class _XdistHooks:
    """Share the session's seed with xdist workers so that every worker derives the same per-test seeds."""

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node):
        st = node.config.stash[_STATE]
        node.workerinput["mtcheck_seed"] = st.seed
        node.workerinput["mtcheck_seed_source"] = st.seed_source


def pytest_report_header(config):
    st = config.stash.get(_STATE, None)
    if st is None:
        return None
    r = st.settings
    prof = r.values["profile"]
    p = PROFILES[prof]
    cdir = corpus_dir(r)
    return [f"mtcheck: seed {st.seed} ({st.seed_source}; reproduce with --mtcheck-seed={st.seed}), profile {prof} "
            f"({r.values['max_examples']} examples, {'derandomized' if p['derandomize'] else 'randomized'}, "
            f"no deadline), corpus {cdir if cdir is not None else 'off'}"]


def _reject(message: str):
    """A clear error for one test (at collection or in the test): the message, no traceback."""
    __tracebackhide__ = True
    pytest.fail(message, pytrace=False)


def pytest_generate_tests(metafunc):
    markers = list(metafunc.definition.iter_markers("mtcheck"))
    if not markers:
        if "mtcheck_model" in metafunc.fixturenames:
            _reject(f"{metafunc.definition.nodeid}: the mtcheck_model argument needs "
                                    "@pytest.mark.mtcheck(models=...) to say which models to run")
        return
    for m in markers:
        _validate_marker(m, metafunc.definition.nodeid)
    m = markers[0]
    models = m.kwargs.get("models")
    if models is None:
        if "mtcheck_model" in metafunc.fixturenames:
            _reject(f"{metafunc.definition.nodeid}: the mtcheck_model argument needs "
                                    "@pytest.mark.mtcheck(models=...)")
        return
    if "mtcheck_model" not in metafunc.fixturenames:
        _reject(f"{metafunc.definition.nodeid}: @pytest.mark.mtcheck(models=...) parametrizes the "
                                "mtcheck_model argument, which this test does not take")
    if isinstance(models, dict):
        ids, facs = [str(k) for k in models], list(models.values())
    elif isinstance(models, (list, tuple)):
        facs = list(models)
        ids = [f if isinstance(f, str) else getattr(f, "__name__", f"model{i}") for i, f in enumerate(facs)]
    else:
        _reject(f"{metafunc.definition.nodeid}: @pytest.mark.mtcheck(models=...) takes a dict "
                                f"name -> factory or a list of factories, not {type(models).__name__}")
    for f in facs:
        if not (callable(f) or (isinstance(f, str) and ":" in f)):
            _reject(f"{metafunc.definition.nodeid}: model factory {f!r} in "
                                    "@pytest.mark.mtcheck(models=...) is neither callable nor 'package.module:factory'")
    metafunc.parametrize("mtcheck_model", facs, ids=ids, indirect=True)


def _validate_marker(m, nodeid):
    if m.args:
        _reject(f"{nodeid}: @pytest.mark.mtcheck takes keyword arguments only, got positional "
                                f"{m.args!r}; signature: {MARKER_DOC.split(':')[0]}")
    unknown = sorted(set(m.kwargs) - set(MARKER_KWARGS))
    if unknown:
        _reject(f"{nodeid}: @pytest.mark.mtcheck got unknown argument(s) {', '.join(unknown)}; "
                                f"it accepts {', '.join(MARKER_KWARGS)}")
    where = f"@pytest.mark.mtcheck({{name}}=...) on {nodeid}"
    try:
        for k in ("max_examples", "seed", "profile"):
            if m.kwargs.get(k) is not None:
                SETTINGS[k][3](m.kwargs[k], where.format(name=k))
        fo = m.kwargs.get("fail_on")
        if fo is not None:
            _fail_on(fo, where.format(name="fail_on"))
    except SettingError as e:
        _reject(f"mtcheck: {e}")


def _fail_on(v, where):
    vals = (v,) if isinstance(v, str) else tuple(v)
    bad = [x for x in map(str, vals) if x not in _VERDICTS]
    if bad:
        raise SettingError(f"unknown verdict(s) {bad} in fail_on from {where}: choose from {', '.join(_VERDICTS)}")
    return tuple(map(str, vals))


# ------------------------------------------------------------------------------- fixtures

@pytest.fixture
def mtcheck(request):
    """Gradient checks at ties for your model: ``mtcheck.fuzz(model, example_inputs)``."""
    return MtcheckFixture(request)


@pytest.fixture
def mtcheck_model(request):
    """``(model, example_inputs)`` from a factory named in ``@pytest.mark.mtcheck(models=...)``."""
    fac = request.param
    if isinstance(fac, str):
        import importlib

        mod, _, qual = fac.partition(":")
        obj = importlib.import_module(mod)
        for part in qual.split("."):
            obj = getattr(obj, part)
        made = obj()
    else:
        made = fac()
    if not (isinstance(made, tuple) and len(made) == 2):
        raise TypeError(f"model factory {fac!r} must return (model, example_inputs), got {type(made).__name__}")
    request.node.stash[_FACTORY] = (made[0], fac)
    return made


_FACTORY = pytest.StashKey[tuple]()


class MtcheckFixture:
    """What the ``mtcheck`` fixture gives a test."""

    def __init__(self, request):
        self._request = request
        self._calls = 0
        st = request.config.stash[_STATE]
        self._state = st
        marker = request.node.get_closest_marker("mtcheck")
        self._marker = dict(marker.kwargs) if marker else {}
        if marker:
            _validate_marker(marker, request.node.nodeid)

    @property
    def seed(self) -> int:
        """The base seed (what ``--mtcheck-seed`` reproduces)."""
        s = self._marker.get("seed")
        return int(s) if s is not None else self._state.seed

    def fuzz(self, model, example_inputs, *, max_examples=None, dtype=None, seed=None, factory=None, name=None,
             wrt=None, fail_on=None, neighbours=False, deep=False, strategy=None):
        """Check ``model``'s gradients at tie inputs shaped like ``example_inputs``.

        Runs the corpus cases recorded earlier for this model, the example inputs, then
        ``max_examples`` generated tie inputs (dyadic grids, repeated values, zeros, constant
        patches), each through the exact checker. The first input whose verdict is in ``fail_on``
        (default: SMOOTH_WRONG, NOT_ASSOCIATED, NONLINEAR_VJP, UNKNOWN) is shrunk, written to the
        corpus as a case, and the test fails with the verdict, the node and case, the witness, an
        assert_close-style summary and one replay line.
        ``factory`` ('package.module:make_model' or a module-level callable) says how a replay
        rebuilds the model when its class cannot be constructed with no arguments.
        ``deep=True`` adds inputs solved to tie every nonsmooth layer (slower). ``strategy`` replaces
        the generator: a Hypothesis strategy of input tuples. ``neighbours=True`` also decides the
        differentiability fields (slower; the verdict does not depend on it).
        ``wrt`` is :func:`mtcheck.check`'s: input positions, or ``"parameters"`` / ``"all"`` / parameter
        names for the gradient with respect to the model's parameters at each generated input
        (``docs/parameters.md``); the corpus case records it.
        Returns statistics (a dict) when every decided example passes.
        """
        __tracebackhide__ = True
        return self._run(model, example_inputs, True, max_examples=max_examples, dtype=dtype, seed=seed,
                         factory=factory, name=name, wrt=wrt, fail_on=fail_on, neighbours=neighbours, deep=deep,
                         strategy=strategy)

    def check(self, model, *inputs, dtype=None, factory=None, name=None, wrt=None, fail_on=None, neighbours=False):
        """One explicit input (an ``@example``-style regression): the same verdicts, failure text
        and corpus case as :meth:`fuzz`, without generated inputs."""
        __tracebackhide__ = True
        return self._run(model, inputs, False, max_examples=None, dtype=dtype, seed=None, factory=factory,
                         name=name, wrt=wrt, fail_on=fail_on, neighbours=neighbours, deep=False, strategy=None)

    def _run(self, model, example_inputs, generate, *, max_examples, dtype, seed, factory, name, wrt, fail_on,
             neighbours, deep, strategy):
        __tracebackhide__ = True
        from . import _fuzz

        self._calls += 1
        nodeid = self._request.node.nodeid
        call = {"max_examples": max_examples, "seed": seed}
        merged = {**{k: v for k, v in self._marker.items() if v is not None},
                  **{k: v for k, v in call.items() if v is not None}}
        where = f"mtcheck.fuzz({{name}}=...) or @pytest.mark.mtcheck on {nodeid}"
        try:
            r = resolve_settings(self._request.config, merged, where)
            fo = _fail_on(fail_on if fail_on is not None else self._marker.get("fail_on", _fuzz.DEFAULT_FAIL_ON),
                          where.format(name="fail_on"))
        except SettingError as e:
            _reject(f"mtcheck: {e}")
        prof = PROFILES[r.values["profile"]]
        if "seed" in merged:
            base, src = r.values["seed"], r.sources["seed"]
        elif prof["derandomize"] and self._state.seed_source == "random":   # e.g. @pytest.mark.mtcheck(profile="ci")
            base, src = 0, f"profile {r.values['profile']!r} (derandomized)"
        else:
            base, src = self._state.seed, self._state.seed_source
        cfg = _fuzz.FuzzConfig(max_examples=r.values["max_examples"], seed=base, seed_source=src,
                               derandomize=prof["derandomize"], shrink_seconds=prof["shrink_seconds"],
                               corpus=corpus_dir(self._state.settings), nodeid=nodeid, call_index=self._calls - 1,
                               fail_on=fo, neighbours=neighbours, profile=r.values["profile"],
                               rerun_id=_rerun_id(self._request.node))
        if dtype is None:
            dtype = self._marker.get("dtype")
        if factory is None:
            made = self._request.node.stash.get(_FACTORY, None)
            if made is not None and made[0] is model:
                factory = made[1]
        fz = _fuzz.Fuzzer(cfg, model, example_inputs, dtype=dtype, factory=factory, name=name, wrt=wrt,
                          strategy=strategy, deep=deep)
        fz.extra_cases = _fuzz.corpus_cases_for(cfg.corpus, fz.key)
        node = self._request.node
        try:
            fz.run(generate)
        finally:
            node.user_properties.append(("mtcheck_statistics", fz.stats.as_dict()))
            if fz.case_path is not None and fz.case_note == "(written now)":
                node.user_properties.append(("mtcheck_case_written", str(fz.case_path)))
        return fz.stats.as_dict()


# ------------------------------------------------------------------------------- corpus replay

def pytest_collect_file(file_path, parent):
    if _CASE_RE.match(file_path.name):
        return CaseFile.from_parent(parent, path=file_path)
    return None


class CaseFile(pytest.File):
    def collect(self):
        name = "case"
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            p = doc.get("program") or {}
            name = {"zoo": f"zoo:{p.get('name')}", "import": str(p.get("target")), "net": "net"}.get(p.get("kind"),
                                                                                                   "case")
        except Exception:  # noqa: BLE001 - the item reports the problem when it runs
            pass
        yield CaseItem.from_parent(self, name=name)


class CaseFailure(Exception):
    """A corpus case whose replay failed: the message is the whole report."""


class CaseItem(pytest.Item):
    def runtest(self):
        from .corpus import CorpusError, load_case, replay_case, save_case

        st = self.config.stash[_STATE]
        try:
            case = load_case(self.path)
        except CorpusError as e:
            self.user_properties.append(("mtcheck_replay", {"status": "error", "file": self.path.name}))
            raise CaseFailure(str(e)) from None
        res = replay_case(case, trust_imports=bool(st.settings.values.get("trust_imports")))
        bug = res.old_verdict in ("SMOOTH_WRONG", "NOT_ASSOCIATED", "NONLINEAR_VJP")
        info = {"status": res.status, "file": self.path.name, "old": res.old_verdict, "new": res.new_verdict,
                "bug": bug, "source": res.source, "certificate": res.certificate}
        if res.status == "needs-trust":
            self.user_properties.append(("mtcheck_replay", info))
            pytest.skip(f"mtcheck: needs trust: {_relpath(self.path)} {res.text.split(': ', 1)[-1]}")
        if res.status == "changed" and st.settings.values["update_corpus"]:
            save_case(self.path.parent, case.updated(res.report))
            info["status"] = "updated"
            self.user_properties.append(("mtcheck_replay", info))
            return
        if res.status == "fixed":
            # a recorded finding gone in a newer torch: "fixed in torch X", a pass; the update option
            # records it in the case (its 'fixed_in' field), keeping the finding for older torch
            info["fixed_in"] = res.fixed_in
            if not res.marked and st.settings.values["update_corpus"]:
                save_case(self.path.parent, case.marked_fixed(res.report))
                info["marked"] = True
            self.user_properties.append(("mtcheck_replay", info))
            return
        self.user_properties.append(("mtcheck_replay", info))
        if res.status != "reproduces":
            raise CaseFailure(res.text)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, CaseFailure):
            return str(excinfo.value).replace(str(self.path), _relpath(self.path))
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"mtcheck case {self.path.name} ({self.name})"


def pytest_report_teststatus(report, config):
    if report.when != "call" or not report.passed:
        return None
    for k, v in report.user_properties:
        if k == "mtcheck_replay":
            if v["status"] == "updated":
                return "passed", "U", ("UPDATED", {"yellow": True})
            if v["status"] == "fixed":
                return "passed", "x", (f"FIXED IN TORCH {v.get('fixed_in')}", {"green": True})
            if v["bug"]:
                return "passed", ".", ("STILL REPRODUCES", {"green": True})
    return None


class _ReportCollector:
    """Gathers mtcheck data from test reports (on the xdist controller too: reports, not worker state)."""

    def __init__(self, state: SessionState):
        self.state = state

    def pytest_runtest_logreport(self, report):
        if report.when != "call":
            return
        for k, v in report.user_properties:
            if k == "mtcheck_replay":
                self.state.replays.append(v)
            elif k == "mtcheck_case_written":
                self.state.written.append(v)
            elif k == "mtcheck_statistics":
                self.state.statistics.append(v)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    st = config.stash.get(_STATE, None)
    if st is None:
        return
    tr = terminalreporter
    if st.replays:
        c = {}
        for v in st.replays:
            key = "still reproduces" if v["status"] == "reproduces" and v.get("bug") else v["status"]
            c[key] = c.get(key, 0) + 1
        parts = [f"{c.get('still reproduces', 0)} still reproduce (known findings)",
                 f"{c.get('reproduces', 0)} pass as recorded", f"{c.get('changed', 0)} changed",
                 f"{c.get('updated', 0)} updated", f"{c.get('error', 0)} errors"]
        if c.get("needs-trust"):
            parts.append(f"{c['needs-trust']} not run (need trust: --mtcheck-trust-imports)")
        if c.get("fixed"):
            parts.append(f"{c['fixed']} fixed in a newer torch")
        tr.write_sep("-", "mtcheck corpus")
        tr.write_line(f"mtcheck corpus: {len(st.replays)} cases replayed: " + ", ".join(parts))
        upd = [v for v in st.replays if v["status"] == "updated"]
        if upd:
            tr.write_line(f"mtcheck: updated {len(upd)} case expectation{'s' if len(upd) != 1 else ''}: "
                          + "; ".join(f"{v['file']} {v['old']} -> {v['new']}" for v in upd))
        if c.get("changed"):
            tr.write_line(f"Re-run pytest with --mtcheck-update-corpus to accept the new verdicts of "
                          f"{c['changed']} case{'s' if c['changed'] != 1 else ''}.")
    if st.written:
        tr.write_sep("-", "mtcheck findings")
        for p in sorted(set(st.written)):
            tr.write_line(f"mtcheck wrote {p}")
        tr.write_line(f"replay them with: pytest {' '.join(sorted({_relpath(Path(p).parent) for p in st.written}))}"
                      f"  (seed {st.seed})")
    if st.settings.values["show_statistics"] and st.statistics:
        tr.write_sep("-", "mtcheck statistics")
        for s in st.statistics:
            vs = ", ".join(f"{k} {v}" for k, v in s["verdicts"].items())
            tr.write_line(f"{s['test']} ({s['program']}):")
            tr.write_line(f"  - {s['explicit'] + s['generated']} distinct examples ({s['explicit']} explicit, "
                          f"{s['generated']} generated), {s['seconds_per_check']:.3f} s per check, seed {s['seed']}")
            tr.write_line(f"  - verdicts: {vs}")
            tr.write_line(f"  - ties per example: min {s['ties'][0]}, median {s['ties'][1]}, max {s['ties'][2]}")
            if s["shrink_checks"]:
                tr.write_line(f"  - {s['shrink_checks']} checks while shrinking")
            if s.get("layer_ties"):
                tr.write_line("  - ties per nonsmooth layer (examples tied exactly / only in float / not at all):")
                for e in s["layer_ties"]:
                    tr.write_line(f"      depth {e['depth']} {e['node']}: exact {e['exact']}, float-only {e['float']}, "
                                  f"none {e['none']}")
            if s.get("tie_sources"):
                tr.write_line("  - inputs by source: " + ", ".join(f"{k} {v}" for k, v in s["tie_sources"].items()))


def _rerun_id(node) -> str:
    """The test's id as typed from the current directory (the node id is relative to the rootdir)."""
    nid = node.nodeid
    path = getattr(node, "path", None)
    if path is None or "::" not in nid:
        return nid
    return _relpath(Path(path)) + nid[nid.index("::"):]


def _relpath(p: Path) -> str:
    try:
        r = os.path.relpath(p)
        return r if not r.startswith("..") else str(p)
    except ValueError:
        return str(p)
