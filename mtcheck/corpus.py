"""The counterexample corpus: one file per case, replayable forever (schema version 2).

A corpus is a directory of cases. Each case is ``case-<sha1>.json`` and, when it holds
weights or large inputs, a sidecar ``case-<sha1>.safetensors``. The name is a digest of
the case's *identity* (program, inputs, dtype, property and check options), not of its
expectation, so the same finding found twice gets the same file, and updating an
expectation rewrites the file in place. Files are written atomically (a temp file in
the same directory, then ``os.replace``), sidecar first.

Loading a case never runs code: JSON and safetensors only, no pickle. A program of kind
``import`` is only imported by :func:`build_program` / :func:`replay_case`, and only when
its module is importable from the current environment without the case's ``search_path``,
or when the caller trusts the case (``trust_imports=True``). A case that also stores its
traced program (schema 2: ``traced``, see :mod:`mtcheck.program`) replays without any
import; a case that needs an import it may not do is reported as ``needs-trust``, not run.

Schema 2 also stores the check's certificate (``certificate``, inline, or in a sidecar
``case-<sha1>.certificate.json`` when larger than :data:`CERT_INLINE_MAX` bytes); replay
verifies it again with :func:`mtcheck.certificate.verify`. Version-1 cases load and replay.

Public API (stable; used by the pytest plugin and the campaign CLI)::

    Case, CorpusError, NeedsTrust, ReplayResult, SCHEMA_VERSION
    save_case(directory, case) -> Path
    load_case(path) -> Case
    iter_cases(paths) -> iterator of (path, Case | CorpusError)
    case_from_report(program_ref, inputs, report, seed, ...) -> Case
    build_program(case, trust_imports=False) -> (fn, inputs)
    replay_case(case, trust_imports=False) -> ReplayResult

See docs/corpus.md for the format.
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import importlib
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .errors import CheckInputError

SCHEMA_VERSION = 2
_IDENTITY_VERSION = 1     # what a case's name hashes; unchanged by schema 2, so names stay stable
CERT_INLINE_MAX = 1_000_000   # bytes of JSON; a larger certificate goes to case-<sha1>.certificate.json
PROPERTY = "associated-gradient"
CASE_RE = re.compile(r"^case-[0-9a-f]{40}\.json$")
INLINE_MAX = 256          # inputs with at most this many elements are stored in the JSON as hex floats
_VERDICTS = ("SMOOTH_OK", "ASSOCIATED", "SMOOTH_WRONG", "NOT_ASSOCIATED", "NONLINEAR_VJP", "ROUNDING_BRANCH",
             "UNKNOWN")
_BUGS = ("SMOOTH_WRONG", "NOT_ASSOCIATED", "NONLINEAR_VJP")
_CHECK_OPTIONS = ("wrt", "neighbours", "max_pieces", "forward_mode", "rtol", "atol", "rlimit", "torch_seed")
_KINDS = ("zoo", "net", "import", "traced")


class CorpusError(CheckInputError):
    """A case file that cannot be read, built or replayed. ``path`` names the file."""

    def __init__(self, path, message: str):
        self.path = Path(path) if path is not None else None
        super().__init__(f"{path}: {message}" if path is not None else message)


class NeedsTrust(CorpusError):
    """A case whose program would be imported from code that ships with the case (its
    ``search_path``) and that stores no traced program: not run without ``trust_imports``."""


@dataclass
class Case:
    """One corpus case. ``inputs`` and ``weights`` hold torch tensors, bit-exact."""

    program: dict                       # {"kind": "zoo"|"net"|"import", ...}; see docs/corpus.md
    inputs: list                        # torch tensors
    dtype: str                          # the program's dtype, e.g. "float64"
    expected: dict                      # {"verdict": ..., "witness": ..., "pattern": [...], ...}
    weights: dict | None = None         # state_dict (name -> tensor) for programs with parameters
    property: str = PROPERTY
    options: dict = field(default_factory=dict)     # keyword arguments of mtcheck.check
    seed: int = 0
    training: bool = False
    versions: dict = field(default_factory=dict)
    origin: dict = field(default_factory=dict)      # free-form: test node id, stable key, campaign
    schema: int = SCHEMA_VERSION
    path: Path | None = field(default=None, compare=False, repr=False)
    traced: Any = None                  # a mtcheck.program.Program: the program itself, replayable without imports
    certificate: dict | None = None     # the check's certificate (JSON-able), verified again on replay
    fixed_in: dict | None = None        # {"torch": X, "verdict": ...}: the finding is fixed from torch X on

    @builtins.property
    def verdict(self) -> str:
        return self.expected.get("verdict", "UNKNOWN")

    @builtins.property
    def finding_kind(self) -> str | None:
        """What the case records: ``"wrong_gradient"`` (a bug verdict), ``"forward_reverse"`` (forward
        mode disagrees with reverse mode, whatever the verdict: a finding of its own kind),
        ``"rounding"`` (ROUNDING_BRANCH), or None (a passing case). Written by the campaign as
        ``origin["finding_kind"]``; derived from the expectation for older cases."""
        k = (self.origin or {}).get("finding_kind")
        if k:
            return str(k)
        if self.verdict in _BUGS:
            return "wrong_gradient"
        if self.expected.get("forward_matches_reverse") is False:
            return "forward_reverse"
        if self.verdict == "ROUNDING_BRANCH":
            return "rounding"
        return None

    @builtins.property
    def case_id(self) -> str:
        """sha1 of the case's identity (everything but the expectation, versions and origin)."""
        ident = {
            "schema": _IDENTITY_VERSION, "property": self.property,
            "program": {k: v for k, v in self.program.items() if k != "search_path"},
            "options": self.options, "dtype": self.dtype, "training": self.training,
            "inputs": [_tensor_digest(t) for t in self.inputs],
            "weights": sorted([k, *_tensor_digest(v)] for k, v in (self.weights or {}).items()),
        }
        return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()

    @builtins.property
    def label(self) -> str:
        """A short name of the program: ``zoo:paper-boustany``, ``pkg.mod:Net``, ``net``."""
        p = self.program
        if p.get("kind") == "zoo":
            return f"zoo:{p.get('name')}"
        if p.get("kind") == "import":
            return str(p.get("target"))
        if p.get("kind") == "traced" and p.get("name"):
            return f"traced:{p.get('name')}"
        return str(p.get("kind"))

    def updated(self, report) -> "Case":
        """This case with its expectation (and versions, and certificate) replaced by ``report``'s."""
        return dataclasses.replace(self, expected=expectation(report), versions=_versions(), path=self.path,
                                   certificate=_json_certificate(report), schema=SCHEMA_VERSION)

    def marked_fixed(self, report) -> "Case":
        """This case marked "fixed in torch X" (X: the running torch) by ``report``, a passing check of it.
        The recorded finding is kept: an older torch still replays it as a known finding."""
        import torch

        return dataclasses.replace(self, path=self.path, fixed_in={
            "torch": torch.__version__, "verdict": str(report.verdict), "summary": report.summary(),
            "certificate_ok": getattr(report, "certificate_ok", None), "recorded_torch": self.versions.get("torch")})


@dataclass
class ReplayResult:
    status: str                     # 'reproduces' | 'changed' | 'error' | 'needs-trust'
    old_verdict: str
    new_verdict: str | None
    text: str
    case: Case | None = None
    report: Any = None
    source: str = ""                # how the program was rebuilt: 'zoo', 'net', 'import', 'traced'
    certificate: str = ""           # 'ok', 'none', 'failed: ...', 'not verified: ...'
    fixed_in: str = ""              # status 'fixed': the torch version from which the finding is gone
    marked: bool = False            # status 'fixed': the case already records it (its 'fixed_in' field)


# ---------------------------------------------------------------------------- writing

def save_case(directory, case: Case) -> Path:
    """Write ``case`` into ``directory`` (created if needed) as ``case-<sha1>.json`` (+ sidecar).

    Atomic: each file goes to a temp file in ``directory`` and is renamed over the target,
    so concurrent writers of the same case leave one intact file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cid = case.case_id
    json_path = directory / f"case-{cid}.json"
    side_name = f"case-{cid}.safetensors"
    tensors = {}
    enc_inputs = []
    for i, t in enumerate(case.inputs):
        if t.numel() <= INLINE_MAX and not t.is_complex():
            enc_inputs.append(_encode_inline(t))
        else:
            key = f"input/{i}"
            tensors[key] = t.detach().contiguous().clone()
            enc_inputs.append({"dtype": _dtype_name(t.dtype), "shape": list(t.shape), "tensor": key})
    enc_weights = None
    digests = {}
    if case.weights:
        enc_weights = {}
        for name, t in case.weights.items():
            key = f"weight/{name}"
            tensors[key] = t.detach().contiguous().clone()
            enc_weights[name] = key
            digests.setdefault(tuple(map(str, _tensor_digest(t))), key)
    traced_doc = None
    if case.traced is not None:
        # the traced program's constants that equal a weight are stored once, as that weight
        traced_doc, more = case.traced.to_doc(lambda t: digests.get(tuple(map(str, _tensor_digest(t)))))
        tensors.update(more)
    doc: dict = {
        "mtcheck_case": SCHEMA_VERSION,
        "property": case.property,
        "program": case.program,
        "dtype": case.dtype,
        "training": bool(case.training),
        "options": case.options,
        "seed": int(case.seed),
        "inputs": enc_inputs,
        "weights": enc_weights,
        "expected": case.expected,
        "versions": case.versions or _versions(),
        "origin": case.origin,
    }
    if traced_doc is not None:
        doc["traced"] = traced_doc
    if case.fixed_in is not None:
        doc["fixed_in"] = case.fixed_in
    if case.certificate is not None:
        blob = json.dumps(case.certificate, sort_keys=True, separators=(",", ":")).encode()
        if len(blob) > CERT_INLINE_MAX:
            cert_name = f"case-{cid}.certificate.json"
            _atomic_write(directory / cert_name, blob)
            doc["certificate"] = {"file": cert_name, "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
        else:
            doc["certificate"] = {"inline": case.certificate}
    if tensors:
        from safetensors.torch import save as st_save

        blob = st_save(tensors)
        doc["tensors"] = {"file": side_name, "sha256": hashlib.sha256(blob).hexdigest()}
        _atomic_write(directory / side_name, blob)
    _atomic_write(json_path, (_dumps(doc) + "\n").encode())
    case.path = json_path
    return json_path


def _dumps(obj, level: int = 0) -> str:
    """JSON, one key per line, lists of scalars on one line (readable diffs, compact tensors)."""
    pad, pad1 = " " * level, " " * (level + 1)
    if isinstance(obj, dict) and obj:
        items = [f"{pad1}{json.dumps(str(k))}: {_dumps(v, level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in obj):
        return "[\n" + ",\n".join(pad1 + _dumps(v, level + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ---------------------------------------------------------------------------- reading

def load_case(path) -> Case:
    """Read one case. Raises :class:`CorpusError` naming the file when it is missing,
    truncated or corrupt, of a newer schema, or its tensors file is missing or damaged.
    Never imports or runs the case's program."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CorpusError(path, f"cannot read the case file ({e.strerror or e})") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorpusError(path, f"not valid JSON, the file is truncated or corrupt ({e})") from None
    if not isinstance(doc, dict) or "mtcheck_case" not in doc:
        raise CorpusError(path, "not an mtcheck case (no 'mtcheck_case' schema version)")
    ver = doc["mtcheck_case"]
    if not isinstance(ver, int) or isinstance(ver, bool) or ver < 1:
        raise CorpusError(path, f"invalid schema version {ver!r}")
    if ver > SCHEMA_VERSION:
        from . import __version__

        raise CorpusError(path, f"schema version {ver} is newer than this mtcheck ({__version__}) reads "
                                f"(up to {SCHEMA_VERSION}); upgrade mtcheck to replay it")
    for key, typ in (("program", dict), ("dtype", str), ("inputs", list), ("expected", dict)):
        if not isinstance(doc.get(key), typ):
            raise CorpusError(path, f"field '{key}' is missing or not a {typ.__name__} (corrupt case)")
    kind = doc["program"].get("kind")
    if kind not in _KINDS:
        raise CorpusError(path, f"unknown program kind {kind!r} (expected 'zoo', 'net', 'import' or 'traced')")
    if kind == "traced" and not isinstance(doc.get("traced"), dict):
        raise CorpusError(path, "program kind 'traced' but the case stores no traced program")
    verdict = doc["expected"].get("verdict")
    if verdict not in _VERDICTS:
        raise CorpusError(path, f"expected verdict {verdict!r} is not one of {', '.join(_VERDICTS)}")

    tensors = {}
    if doc.get("tensors"):
        tensors = _load_sidecar(path, doc["tensors"])
    try:
        inputs = [_decode_input(e, tensors) for e in doc["inputs"]]
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CorpusError(path, f"an input cannot be decoded ({e.__class__.__name__}: {e})") from None
    weights = None
    if doc.get("weights"):
        weights = {}
        for name, key in doc["weights"].items():
            if key not in tensors:
                raise CorpusError(path, f"weight '{name}' is not in the tensors file")
            weights[name] = tensors[key]
    if not _is_dtype_name(doc["dtype"]):
        raise CorpusError(path, f"unknown dtype {doc['dtype']!r}")
    opts = doc.get("options") or {}
    bad = sorted(set(opts) - set(_CHECK_OPTIONS))
    if bad:
        raise CorpusError(path, f"unknown check options {bad}")
    traced = None
    if doc.get("traced") is not None:
        from .program import Program, ProgramError

        try:
            traced = Program.from_doc(doc["traced"], tensors)
        except ProgramError as e:
            raise CorpusError(path, f"its traced program cannot be read ({e})") from None
    certificate = _load_certificate(path, doc.get("certificate"))
    fixed_in = doc.get("fixed_in")
    if fixed_in is not None and not (isinstance(fixed_in, dict) and isinstance(fixed_in.get("torch"), str)
                                     and fixed_in.get("verdict") in _VERDICTS):
        raise CorpusError(path, "field 'fixed_in' must be an object with 'torch' (a version) and 'verdict' "
                                "(corrupt case)")
    return Case(program=doc["program"], inputs=inputs, dtype=doc["dtype"], expected=doc["expected"],
                weights=weights, property=doc.get("property", PROPERTY), options=opts,
                seed=int(doc.get("seed", 0)), training=bool(doc.get("training", False)),
                versions=doc.get("versions") or {}, origin=doc.get("origin") or {}, schema=ver, path=path,
                traced=traced, certificate=certificate, fixed_in=fixed_in)


def _load_certificate(path: Path, ref):
    """The certificate of a case: inline, or from its sidecar (sha256 checked); None when absent."""
    if ref is None:
        return None
    if not isinstance(ref, dict):
        raise CorpusError(path, "field 'certificate' is not an object (corrupt case)")
    if "inline" in ref:
        return ref["inline"]
    name = ref.get("file")
    if not isinstance(name, str) or os.path.basename(name) != name or not name.endswith(".certificate.json"):
        raise CorpusError(path, f"invalid certificate file reference {name!r}")
    try:
        blob = (path.parent / name).read_bytes()
    except FileNotFoundError:
        raise CorpusError(path, f"its certificate file {name} is missing") from None
    except OSError as e:
        raise CorpusError(path, f"cannot read its certificate file {name} ({e.strerror or e})") from None
    if ref.get("sha256") and hashlib.sha256(blob).hexdigest() != ref["sha256"]:
        raise CorpusError(path, f"its certificate file {name} does not match the recorded sha256")
    try:
        return json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorpusError(path, f"its certificate file {name} is not valid JSON ({e})") from None


def _load_sidecar(path: Path, ref) -> dict:
    name = ref.get("file") if isinstance(ref, dict) else None
    if not isinstance(name, str) or os.path.basename(name) != name or not name.endswith(".safetensors"):
        raise CorpusError(path, f"invalid tensors file reference {name!r}")
    side = path.parent / name
    try:
        blob = side.read_bytes()
    except FileNotFoundError:
        raise CorpusError(path, f"its tensors file {name} (weights and large inputs) is missing") from None
    except OSError as e:
        raise CorpusError(path, f"cannot read its tensors file {name} ({e.strerror or e})") from None
    if ref.get("sha256") and hashlib.sha256(blob).hexdigest() != ref["sha256"]:
        raise CorpusError(path, f"its tensors file {name} does not match the recorded sha256 "
                                "(truncated, corrupt, or from another case)")
    from safetensors.torch import load as st_load

    try:
        return st_load(blob)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise CorpusError(path, f"its tensors file {name} is not valid safetensors ({e})") from None


def iter_cases(paths) -> Iterator[tuple[Path, "Case | CorpusError"]]:
    """Every case under ``paths`` (files, or directories holding ``case-*.json``), in name order.
    Yields ``(path, Case)`` or ``(path, CorpusError)``: one bad file never stops the others."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    for p in paths:
        p = Path(p)
        files = sorted(p.glob("case-*.json")) if p.is_dir() else [p]
        for f in files:
            try:
                yield f, load_case(f)
            except CorpusError as e:
                yield f, e


# ---------------------------------------------------------------------------- building cases

def case_from_report(program_ref, inputs, report, seed: int = 0, *, program=None, options: dict | None = None,
                     origin: dict | None = None, dtype=None, search_path: str | None = None,
                     traced=None) -> Case:
    """A case recording ``report`` (a :class:`mtcheck.Report`) for ``program_ref`` at ``inputs``.

    ``program_ref`` is a dict (the ``program`` field), ``"zoo:<name>"``, ``"package.module:factory"``
    (an import program, called with no arguments), or an object with ``to_dict()`` (a NetSpec).
    ``program`` is the callable that was checked: its ``state_dict`` becomes the case's weights and
    its ``training`` flag is kept. ``options`` are the keyword arguments given to ``mtcheck.check``.

    ``traced``: whether to store the traced program too (:mod:`mtcheck.program`), so that the
    case replays without importing anything. ``None`` (the default): for ``import`` and
    ``traced`` programs when ``program`` is given. A program that cannot be stored is noted
    in ``origin['traced']`` and the case is kept without it.
    """
    import torch

    if isinstance(program_ref, dict):
        prog = dict(program_ref)
    elif isinstance(program_ref, str) and program_ref.startswith("zoo:"):
        prog = {"kind": "zoo", "name": program_ref[4:], "seed": int(seed)}
    elif isinstance(program_ref, str) and ":" in program_ref:
        prog = {"kind": "import", "target": program_ref, "call": True, "kwargs": {}}
    elif hasattr(program_ref, "to_dict"):
        prog = {"kind": "net", "spec": program_ref.to_dict()}
    elif program_ref is None and program is not None:
        prog = {"kind": "traced", "name": _program_name(program)}
    else:
        raise CheckInputError(f"cannot record program reference {program_ref!r}: give 'zoo:<name>', "
                              "'package.module:factory', a NetSpec or a dict")
    if search_path is not None:
        prog["search_path"] = search_path
    inputs = [t.detach().clone() for t in inputs]
    weights = None
    training = False
    if isinstance(program, torch.nn.Module):
        training = bool(program.training)
        sd = program.state_dict()
        if sd:
            weights = {k: v.detach().clone() for k, v in sd.items()}
    if dtype is None:
        fl = [t.dtype for t in inputs if t.is_floating_point()]
        dtype = fl[0] if fl else torch.float64
    opts = {k: v for k, v in (options or {}).items() if k in _CHECK_OPTIONS}
    named_wrt = False
    if "wrt" in opts and opts["wrt"] is not None:
        opts["wrt"], named_wrt = _wrt_json(opts["wrt"])
    origin = dict(origin or {})
    prog_traced = None
    if traced is None:
        traced = program is not None and prog["kind"] in ("import", "traced")
    if traced and program is not None and named_wrt:
        # the traced program is a function of the inputs; a check w.r.t. parameters needs the module
        origin["traced"] = "not stored: the check is with respect to parameters (wrt names them)"
    elif traced and program is not None:
        from .program import ProgramError, record

        from .ops.random_fixed import fixed_draws

        try:
            with fixed_draws(opts.get("torch_seed")):      # the check's draws (torch_seed), if any
                prog_traced = record(program, inputs, opts.get("wrt"),
                                     framework_jacobian=getattr(report, "framework_jacobian", None))
        except (ProgramError, CheckInputError) as e:
            origin["traced"] = f"not stored: {e}"
        except Exception as e:  # noqa: BLE001 - a finding is never lost for want of its traced copy
            origin["traced"] = f"not stored: {type(e).__name__}: {e}"
    if prog["kind"] == "traced" and prog_traced is None:
        raise CheckInputError(f"cannot record the program as a traced program ({origin.get('traced')})")
    return Case(program=prog, inputs=inputs, dtype=_dtype_name(dtype), expected=expectation(report),
                weights=weights, options=opts, seed=int(seed), training=training, versions=_versions(),
                origin=origin, traced=prog_traced, certificate=_json_certificate(report))


def _wrt_json(wrt):
    """``(wrt as JSON data, names parameters?)``: input positions as ints; the named forms of
    :mod:`mtcheck.params` ("parameters", "inputs", "all", parameter names) as strings."""
    import numbers

    if isinstance(wrt, str):
        return wrt, True
    items = [wrt] if isinstance(wrt, numbers.Integral) else list(wrt)
    out = [w if isinstance(w, str) else int(w) for w in items]
    return out, any(isinstance(w, str) for w in out)


def _program_name(fn) -> str:
    import torch

    if isinstance(fn, torch.nn.Module):
        return type(fn).__name__
    return str(getattr(fn, "__qualname__", None) or type(fn).__name__)


def _json_certificate(report):
    """``report.certificate`` when it is JSON data (a dict), else None."""
    cert = getattr(report, "certificate", None)
    if cert is None:
        return None
    try:
        return json.loads(json.dumps(cert))
    except (TypeError, ValueError):
        return None


def expectation(report) -> dict:
    """The ``expected`` field of a case: the verdict and what explains it, as exact strings."""
    from ._exact import fmt

    w = report.witness
    wit = None
    if w is not None:
        wit = {"output_index": int(w.output_index), "direction": [fmt(v) for v in w.direction],
               "framework_rate": fmt(w.framework_rate), "stratum_rate": fmt(w.stratum_rate),
               "h": None if w.h is None else fmt(w.h), "f_x": None if w.f_x is None else fmt(w.f_x),
               "f_x_plus_ht": None if w.f_x_plus_ht is None else fmt(w.f_x_plus_ht), "note": w.note}
    pattern = []
    for e in (report.pattern or []):
        pattern.append({"node": int(getattr(e, "node", -1)), "label": e.label, "kind": e.kind, "where": e.where,
                        "counts": {str(k): int(v) for k, v in e.counts.items()}, "ties": list(e.ties)})
    return {
        "verdict": str(report.verdict),
        "summary": report.summary(),
        "exact_mode": bool(report.exact_mode),
        "tolerance": list(report.tolerance) if report.tolerance else None,
        "tangent_dim": report.tangent_dim,
        "n_inputs": report.n_inputs,
        "n_outputs": report.n_outputs,
        "differentiable": report.differentiable,
        "true_gradient_match": report.true_gradient_match,
        "clarke": report.clarke,
        "forward_matches_reverse": report.forward_matches_reverse,
        "witness": wit,
        "pattern": pattern,
        "rounding_nodes": list(report.rounding_nodes),
        "mismatch": report.mismatch,
        "framework_jacobian": _small_matrix(report.framework_jacobian),
        "certificate_ok": getattr(report, "certificate_ok", None),
    }


def _small_matrix(a, limit: int = 64):
    """A small float matrix as exact rational strings (None when absent or large)."""
    if a is None or getattr(a, "size", limit + 1) > limit:
        return None
    from ._exact import fmt, q

    return [[fmt(q(float(v))) for v in row] for row in a.tolist()]


def _versions() -> dict:
    import platform

    import torch

    from . import __version__

    return {"mtcheck": __version__, "torch": torch.__version__, "python": platform.python_version()}


# ---------------------------------------------------------------------------- replay

def build_program(case: Case, *, trust_imports: bool = False):
    """``(fn, inputs)`` for ``case``; see :func:`resolve_program`."""
    fn, inputs, _ = resolve_program(case, trust_imports=trust_imports)
    return fn, inputs


def resolve_program(case: Case, *, trust_imports: bool = False):
    """``(fn, inputs, source)`` for ``case``. ``source`` says how the program was rebuilt:

    - ``zoo`` / ``net``: mtcheck's own models, or a generated network from its spec;
    - ``import``: the factory is imported (this runs its code) when its module is importable from
      the current environment *without* the case's ``search_path``, or when ``trust_imports``
      (then the ``search_path`` is used too);
    - ``traced``: otherwise, the traced program stored in the case (no import at all).

    A program that could only be imported through its ``search_path`` and stores no traced
    program raises :class:`NeedsTrust`. Other failures raise :class:`CorpusError`."""
    import torch

    p = case.program
    dtype = getattr(torch, case.dtype)
    kind = p.get("kind")
    source = kind
    if kind == "zoo":
        from .zoo import ZOO

        name = p.get("name")
        if name not in ZOO:
            raise CorpusError(case.path, f"zoo program {name!r} does not exist in this mtcheck "
                                         f"(known: {', '.join(sorted(ZOO))})")
        fn, _ = ZOO[name](dtype=dtype, seed=int(p.get("seed", case.seed)))
    elif kind == "net":
        try:
            from .nets import NetSpec
        except ImportError as e:
            raise CorpusError(case.path, f"program kind 'net' needs mtcheck.nets, which cannot be imported ({e})") \
                from None
        try:
            fn = NetSpec.from_dict(p["spec"]).build(dtype=dtype)
        except Exception as e:  # noqa: BLE001 - any failure to build is a bad case
            raise CorpusError(case.path, f"the network spec cannot be built ({e.__class__.__name__}: {e})") from None
    elif kind == "import":
        how = import_policy(case, trust_imports=trust_imports)
        if how == "traced":
            return case.traced.function(), [t.clone() for t in case.inputs], "traced"
        if how == "needs-trust":
            mod = str(p.get("target")).partition(":")[0]
            raise NeedsTrust(case.path, f"not run: it imports {mod} from code that ships with the case "
                                        f"(search_path {p.get('search_path')!r}) and stores no traced program; "
                                        "replay it with --trust-imports (pytest: --mtcheck-trust-imports) "
                                        "if you trust where it comes from")
        fn = _import_program(case, allow_search_path=(how == "import-search-path"))
        source = "import"
    elif kind == "traced":
        if case.traced is None:
            raise CorpusError(case.path, "program kind 'traced' but the case stores no traced program")
        return case.traced.function(), [t.clone() for t in case.inputs], "traced"
    else:
        raise CorpusError(case.path, f"unknown program kind {kind!r}")
    if isinstance(fn, tuple):
        fn = fn[0]
    if isinstance(fn, torch.nn.Module):
        if case.weights:
            try:
                fn.load_state_dict(case.weights, strict=True, assign=True)
            except Exception as e:  # noqa: BLE001
                raise CorpusError(case.path, f"the recorded weights do not fit the program "
                                             f"{case.label} ({str(e).splitlines()[0]})") from None
        fn.train(case.training)
    return fn, [t.clone() for t in case.inputs], source


def import_policy(case: Case, *, trust_imports: bool = False) -> str:
    """How an ``import`` case would be replayed, deciding without running any of its code:
    ``'import'`` (its module is importable from the current environment, without its
    ``search_path``), ``'import-search-path'`` (trusted: the ``search_path`` may be used),
    ``'traced'`` (the stored traced program, no import) or ``'needs-trust'``."""
    p = case.program
    mod_name = str(p.get("target", "")).partition(":")[0]
    if trust_imports:
        return "import-search-path"
    if _importable(mod_name):
        return "import"
    if case.traced is not None:
        return "traced"
    if p.get("search_path"):
        return "needs-trust"
    return "import"         # not importable at all: the import fails with a clear error, running nothing


def _importable(name: str) -> bool:
    """Whether ``import name`` would find the module on the current ``sys.path``. Finding a
    submodule imports its parent packages (from the environment, never from a case's
    search_path, which is not on sys.path unless a trusted replay put it there)."""
    import importlib.util

    if not name or not all(part.isidentifier() for part in name.split(".")):
        return False
    if name in sys.modules:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError, AttributeError):
        return False
    except Exception:  # noqa: BLE001 - a parent package that fails on import: not importable
        return False


def _import_program(case: Case, *, allow_search_path: bool = False):
    p = case.program
    target = p.get("target")
    if not isinstance(target, str) or ":" not in target:
        raise CorpusError(case.path, f"import target {target!r} is not of the form 'package.module:factory'")
    mod_name, _, qual = target.partition(":")
    try:
        mod = _import_module(mod_name, case, allow_search_path)
        obj = mod
        for part in qual.split("."):
            obj = getattr(obj, part)
    except Exception as e:  # noqa: BLE001 - ImportError, AttributeError, or the module's own failure
        raise CorpusError(case.path, f"cannot import the model factory {target} "
                                     f"({e.__class__.__name__}: {e}); is its package installed or on sys.path?") \
            from None
    if not p.get("call", True):
        return obj
    try:
        return obj(**(p.get("kwargs") or {}))
    except Exception as e:  # noqa: BLE001
        raise CorpusError(case.path, f"the model factory {target} failed ({e.__class__.__name__}: {e})") from None


def _import_module(name: str, case: Case, allow_search_path: bool = False):
    try:
        return importlib.import_module(name)
    except ImportError:
        sp = case.program.get("search_path")
        if not sp or case.path is None or not allow_search_path:
            raise
        root = str((case.path.parent / sp).resolve())
        if root not in sys.path:
            sys.path.insert(0, root)
        return importlib.import_module(name)


def verify_certificate(cert) -> tuple:
    """``(ok, reason)`` from :func:`mtcheck.certificate.verify`; ``ok`` is None when the
    verifier is not available in this mtcheck."""
    try:
        from .certificate import verify
    except ImportError as e:
        return None, f"mtcheck.certificate is not available ({e})"
    try:
        res = verify(cert)
    except Exception as e:  # noqa: BLE001 - a verifier crash on a stored certificate is a failure
        return False, f"the verifier raised {type(e).__name__}: {e}"
    ok = getattr(res, "ok", res[0] if isinstance(res, tuple) else res)
    reason = getattr(res, "reason", res[1] if isinstance(res, tuple) and len(res) > 1 else "")
    return bool(ok), str(reason or "")


def replay_case(case: Case, *, trust_imports: bool = False) -> ReplayResult:
    """Rebuild the program, re-run the check with the recorded options and seed, and compare
    the verdict with the recorded one; verify the recorded certificate again.

    ``status``: ``reproduces``, ``changed``, ``error`` (cannot be built or checked, or its
    certificate fails verification), ``needs-trust`` (not run: see :func:`resolve_program`) or
    ``fixed`` (a recorded finding that no longer reproduces in a newer torch, or a case marked
    ``fixed_in`` that passes as marked: "fixed in torch X", not a failure; see :func:`_fixed_outcome`)."""
    from . import check

    old = case.verdict
    source = ""
    try:
        fn, inputs, source = resolve_program(case, trust_imports=trust_imports)
        rep = check(fn, *inputs, seed=case.seed, name=case.label, **case.options)
    except NeedsTrust as e:
        return ReplayResult("needs-trust", old, None, str(e), case, certificate="not verified: not run")
    except CorpusError as e:
        return ReplayResult("error", old, None, str(e), case, source=source)
    except CheckInputError as e:
        return ReplayResult("error", old, None, f"{case.path}: the check cannot run: {e}", case, source=source)
    except Exception as e:  # noqa: BLE001 - a crash in mtcheck must not stop the other cases
        import traceback

        tb = traceback.extract_tb(e.__traceback__)
        at = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
        return ReplayResult("error", old, None, f"{case.path}: mtcheck crashed while replaying it "
                                                f"({type(e).__name__}: {e}{at}); a bug in mtcheck", case,
                            source=source)
    new = str(rep.verdict)
    cert, cert_fail = _certificate_status(case, rep)
    if cert_fail:
        return ReplayResult("error", old, new, f"{case.path}: {cert_fail}", case, rep, source, cert)
    fixed = _fixed_outcome(case, rep, source, cert)
    if fixed is not None:
        return fixed
    if new == old and case.finding_kind == "forward_reverse" and rep.forward_matches_reverse is not False:
        return ReplayResult("changed", old, new, f"{case.path}: forward mode no longer disagrees with reverse mode "
                                                 f"for {case.label} (recorded: they differ; now: "
                                                 f"{rep.forward_matches_reverse}); verdict {new}", case, rep, source,
                            cert)
    if new == old:
        what = ("still reproduces (a known finding)" if old in _BUGS else
                "still reproduces (forward mode != reverse mode)" if case.finding_kind == "forward_reverse" else
                "reproduces")
        return ReplayResult("reproduces", old, new, f"{case.path}: {what}: {new}", case, rep, source, cert)
    return ReplayResult("changed", old, new, changed_text(case, rep), case, rep, source, cert)


def _torch_release(v) -> tuple | None:
    """(major, minor, patch) of a torch version string such as '2.14.1+cu130' or '2.13.0+cpu'."""
    m = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", str(v or ""))
    return None if m is None else (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def _fixed_outcome(case: Case, rep, source, cert):
    """A ``fixed`` result ("fixed in torch X", not a failure), a ``changed`` one for a fixed finding
    that is back, or None (the ordinary comparison with the recorded verdict decides).

    - A case marked ``fixed_in`` torch X, replayed under torch >= X: passing with the verdict the
      mark records is ``fixed``; anything else is ``changed`` (with the bug back: a regression).
      Under an older torch the recorded finding is expected, as for an unmarked case.
    - An unmarked case whose recorded finding (a bug verdict) no longer reproduces, under a torch
      release newer than the one that recorded it, with a passing verdict and a certificate that
      verifies: ``fixed`` in the running torch (mark it: ``mtcheck replay --mark-fixed``)."""
    import torch

    old, new, now = case.verdict, str(rep.verdict), torch.__version__
    rec = case.versions.get("torch")
    cur_rel = _torch_release(now)
    if case.fixed_in is not None:
        fx = case.fixed_in.get("torch")
        fx_rel = _torch_release(fx)
        if cur_rel is None or fx_rel is None or cur_rel < fx_rel:
            return None
        fr_back = case.finding_kind == "forward_reverse" and rep.forward_matches_reverse is False
        if new == case.fixed_in.get("verdict") and not fr_back:
            return ReplayResult("fixed", old, new, f"{case.path}: fixed in torch {fx} (recorded {old} with torch "
                                                   f"{rec or '?'}; now {new} with torch {now}; marked in the case)",
                                case, rep, source, cert, fixed_in=str(fx), marked=True)
        what = (f"the finding is back: marked fixed in torch {fx}, it reproduces again with torch {now} "
                "(a regression)" if new == old else f"marked fixed in torch {fx} with verdict "
                                                    f"{case.fixed_in.get('verdict')}, now {new} with torch {now}")
        return ReplayResult("changed", old, new, f"{case.path}: {what}\n" + changed_text(case, rep), case, rep,
                            source, cert)
    rec_rel = _torch_release(rec)
    if (old in _BUGS and new in ("SMOOTH_OK", "ASSOCIATED") and getattr(rep, "certificate_ok", True) is not False
            and rec_rel is not None and cur_rel is not None and cur_rel > rec_rel):
        return ReplayResult("fixed", old, new, f"{case.path}: fixed in torch {now}: recorded {old} with torch {rec}, "
                                               f"now {new} (not a failure; record it in the case with "
                                               "`mtcheck replay --mark-fixed` or pytest --mtcheck-update-corpus)",
                            case, rep, source, cert, fixed_in=now, marked=False)
    if (case.finding_kind == "forward_reverse" and new in ("SMOOTH_OK", "ASSOCIATED")
            and rep.forward_matches_reverse is True and getattr(rep, "certificate_ok", True) is not False
            and rec_rel is not None and cur_rel is not None and cur_rel > rec_rel):
        return ReplayResult("fixed", old, new, f"{case.path}: fixed in torch {now}: recorded forward mode != reverse "
                                               f"mode with torch {rec}, now they agree ({new}; not a failure; record "
                                               "it with `mtcheck replay --mark-fixed` or pytest --mtcheck-update-corpus)",
                            case, rep, source, cert, fixed_in=now, marked=False)
    return None


def _certificate_status(case: Case, rep):
    """(status text, failure message or '') for the recorded certificate and the new report's."""
    parts, fail = [], ""
    if case.certificate is not None:
        ok, why = verify_certificate(case.certificate)
        if ok is None:
            parts.append(f"recorded: not verified ({why})")
        elif ok:
            parts.append("recorded: ok")
        else:
            parts.append(f"recorded: failed ({why})")
            fail = f"its recorded certificate fails verification ({why})"
    new_ok = getattr(rep, "certificate_ok", None)
    if new_ok is not None:
        parts.append("new: ok" if new_ok else "new: failed")
        if new_ok is False and not fail:
            fail = "the new check's certificate fails verification"
    return ("; ".join(parts) or "none"), fail


def changed_text(case: Case, rep) -> str:
    """Old and new side by side."""
    import torch

    from . import __version__

    new = expectation(rep)
    old = case.expected

    def wit(e):
        w = e.get("witness")
        if not w:
            return "-"
        from fractions import Fraction

        try:   # rates along t scaled to max |t_i| = 1, so that long rationals read as numbers
            d = [Fraction(v) for v in w["direction"]]
            sc = max((abs(v) for v in d), default=Fraction(1)) or Fraction(1)
            a, b = Fraction(w["framework_rate"]) / sc, Fraction(w["stratum_rate"]) / sc
        except (ValueError, ZeroDivisionError, KeyError, TypeError):
            return "?"
        return f"J t = {_short(str(a))} vs J_S t = {_short(str(b))}"

    rows = [("verdict", old.get("verdict"), new["verdict"]),
            ("tangent dim", f"{old.get('tangent_dim')}/{old.get('n_inputs')}",
             f"{new['tangent_dim']}/{new['n_inputs']}"),
            ("comparison", "exact" if old.get("exact_mode") else "tolerance",
             "exact" if new["exact_mode"] else "tolerance"),
            ("witness", wit(old), wit(new)),
            ("torch", case.versions.get("torch", "?"), torch.__version__),
            ("mtcheck", case.versions.get("mtcheck", "?"), __version__)]
    w1 = max(len(str(r[1])) for r in rows + [("", "recorded", "")])
    lines = [f"{case.path}: verdict changed for {case.label}: recorded {old.get('verdict')}, now {new['verdict']}",
             f"  {'':<12} {'recorded':<{w1}}   now"]
    lines += [f"  {a:<12} {str(b):<{w1}}   {c}" for a, b, c in rows]
    if rep.mismatch:
        lines.append("now: " + rep.mismatch.replace("\n", "\n  "))
    lines.append("If the new verdict is right (fixed in torch, or an intended change), re-run with "
                 "--mtcheck-update-corpus to rewrite the expectation.")
    return "\n".join(lines)


def _short(s: str, n: int = 40) -> str:
    s = str(s)
    if len(s) <= n:
        return s
    try:
        num, _, den = s.partition("/")
        val = int(num) / int(den or 1)
        return f"~{val:.6g}"
    except (ValueError, OverflowError, ZeroDivisionError):
        return s[:n] + "..."


# ---------------------------------------------------------------------------- tensors

def _is_dtype_name(name) -> bool:
    import torch

    # vars(), not getattr(): no lazy torch submodule is imported for a name read from a file
    return isinstance(name, str) and isinstance(vars(torch).get(name), torch.dtype)


def _dtype_name(dt) -> str:
    return str(dt).replace("torch.", "")


def _tensor_digest(t) -> list:
    import torch

    t = t.detach().contiguous()
    data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return [_dtype_name(t.dtype), list(t.shape), hashlib.sha256(data).hexdigest()]


def _encode_inline(t) -> dict:
    d = {"dtype": _dtype_name(t.dtype), "shape": list(t.shape)}
    flat = t.detach().reshape(-1)
    if t.is_floating_point():
        d["hex"] = [float(v).hex() for v in flat.double().tolist()]
    else:
        d["int"] = [int(v) for v in flat.tolist()]
    return d


def _decode_input(e: dict, tensors: dict):
    import torch

    if not _is_dtype_name(e["dtype"]):
        raise ValueError(f"unknown dtype {e['dtype']!r}")
    dt = getattr(torch, e["dtype"])
    shape = tuple(int(s) for s in e["shape"])
    if "tensor" in e:
        t = tensors.get(e["tensor"])
        if t is None:
            raise KeyError(f"input {e['tensor']} is not in the tensors file")
        if t.dtype != dt or tuple(t.shape) != shape:
            raise ValueError(f"input {e['tensor']} is {t.dtype}{list(t.shape)}, expected {dt}{list(shape)}")
        return t
    if "hex" in e:
        vals = [float.fromhex(s) for s in e["hex"]]
        t = torch.tensor(vals, dtype=torch.float64).to(dt)
    else:
        t = torch.tensor([int(v) for v in e["int"]], dtype=dt)
    return t.reshape(shape)


__all__ = ["SCHEMA_VERSION", "Case", "CorpusError", "NeedsTrust", "ReplayResult", "save_case", "load_case",
           "iter_cases", "case_from_report", "build_program", "resolve_program", "import_policy", "replay_case",
           "verify_certificate"]
