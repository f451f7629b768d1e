"""What changed at the kinks between two torch versions: ``mtcheck catalogue --diff OLD.json [NEW.json]``.

Two catalogues (the JSON ``mtcheck catalogue --format json`` writes, each naming the torch it
was made with) are compared op by op and tie shape by tie shape: the rule at ties (and the
gradient the probe observed), the verdict, Clarke, forward vs reverse mode, and for every tie
shape the verdict, the framework Jacobian and the forward-mode Jacobian. When NEW is omitted,
the catalogue of the current environment is built for the ops of OLD.

Every entry gets one status:

* ``unchanged``;
* ``changed, both associated``: the gradient at the tie changed, and both versions' gradients
  are associated (or smooth and right): both are correct, they choose differently;
* ``finding: fixed``: not associated (or wrong) in OLD, associated in NEW;
* ``finding: regression``: associated in OLD, not associated (or wrong) in NEW;
* ``finding: changed, both not associated``: wrong in both versions, differently;
* ``changed, undecided``: one side refused, UNKNOWN or an error, neither side a bug; or the only
  change is Clarke going between decided and undecided (the neighbour enumeration's budget, which
  is not torch's doing);
* ``added`` / ``removed``: an op or tie shape one catalogue has and the other lacks.

A row where one side is not associated is a finding. The report also lists every finding
the NEW catalogue still has (a bug verdict, or forward mode differing from reverse mode).

Public API::

    load_catalogue(path) -> dict                      # raises CatalogueDiffError with a clear reason
    diff_catalogues(old, new) -> dict                 # plain JSON data
    render_markdown(diff) -> str
    render_json(diff) -> str
    check_expected(diff, expectations) -> list        # against properties/torch_versions.json
    with_diff_option(command) -> click.Command        # the catalogue command, with --diff, --expect, --record
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["CatalogueDiffError", "load_catalogue", "check_catalogue", "diff_catalogues", "render_markdown",
           "render_json", "with_diff_option", "diff_signature", "check_expected", "torch_release", "STATUSES",
           "DIFF_FORMAT"]

DIFF_FORMAT = 1
CATALOGUE_FORMATS = (1,)          # the catalogue JSON formats this module reads (no marker: format 1)
BUG_VERDICTS = ("SMOOTH_WRONG", "NOT_ASSOCIATED", "NONLINEAR_VJP")
PASSING = ("ASSOCIATED", "SMOOTH_OK")
STATUSES = ("unchanged", "changed, both associated", "finding: fixed", "finding: regression",
            "finding: changed, both not associated", "changed, undecided", "added", "removed")
FINDING_STATUSES = ("finding: fixed", "finding: regression", "finding: changed, both not associated")

# what is compared, per op row and per tie shape, with the words the report uses
_ROW_FIELDS = (("rule", "rule at ties"), ("observed", "observed at the probe"), ("verdict", "verdict"),
               ("clarke", "Clarke"), ("forward_reverse", "forward/reverse"))
_CASE_FIELDS = (("verdict", "verdict"), ("framework_jacobian", "reverse-mode Jacobian"),
                ("forward_matches_reverse", "forward = reverse"), ("forward_jacobian", "forward-mode Jacobian"),
                ("clarke", "Clarke"))
_OPINFO_FIELDS = (("status", "status"), ("verdict", "verdict at ties"), ("checks", "checks"), ("ties", "ties"),
                  ("forward_reverse", "forward/reverse"), ("reason", "not modelled"))


class CatalogueDiffError(ValueError):
    """A catalogue that cannot be compared: unreadable, corrupt, not a catalogue, or not comparable."""


# ----------------------------------------------------------------- reading

def load_catalogue(path) -> dict:
    """Read and check one catalogue JSON file; the error names the file and what is wrong."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as e:
        raise CatalogueDiffError(f"{path}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise CatalogueDiffError(f"{path}: not a text file (expected the JSON of `mtcheck catalogue --format json`)") \
            from None
    if raw.lstrip().startswith("#"):
        raise CatalogueDiffError(f"{path}: this is a Markdown catalogue; --diff compares the JSON one: "
                                 "make it with `mtcheck catalogue --format json --output FILE`")
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as e:
        raise CatalogueDiffError(f"{path}: not valid JSON, the file is truncated or corrupt ({e})") from None
    return check_catalogue(doc, str(path))


def check_catalogue(doc, where: str = "catalogue") -> dict:
    """``doc`` when it is a catalogue this module can compare; else a :class:`CatalogueDiffError`."""
    if not isinstance(doc, dict):
        raise CatalogueDiffError(f"{where}: not an mtcheck catalogue (a JSON {type(doc).__name__}, expected an object "
                                 "with 'torch' and 'rows')")
    if "mtcheck_case" in doc:
        raise CatalogueDiffError(f"{where}: this is a corpus case, not a catalogue (replay it with `mtcheck replay`)")
    if "ops" in doc and "rows" not in doc:
        raise CatalogueDiffError(f"{where}: this is an OpInfo sweep (`mtcheck opinfo`), not a catalogue: merge it "
                                 "into one with `mtcheck catalogue --format json --sweep FILE --output CAT.json`")
    if "diff_format" in doc:
        raise CatalogueDiffError(f"{where}: this is a catalogue diff, not a catalogue")
    fmt = doc.get("mtcheck_catalogue", 1)
    if fmt not in CATALOGUE_FORMATS:
        raise CatalogueDiffError(f"{where}: catalogue format {fmt!r} is not one this mtcheck reads "
                                 f"({', '.join(map(str, CATALOGUE_FORMATS))})")
    rows = doc.get("rows")
    if not isinstance(rows, list):
        raise CatalogueDiffError(f"{where}: not an mtcheck catalogue (no 'rows' list; make one with "
                                 "`mtcheck catalogue --format json`)")
    tv = doc.get("torch")
    if not isinstance(tv, str) or not tv:
        raise CatalogueDiffError(f"{where}: the catalogue does not record its torch version ('torch' is "
                                 f"{tv!r}); re-make it with `mtcheck catalogue --format json`")
    seen = set()
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or not isinstance(r.get("op"), str):
            raise CatalogueDiffError(f"{where}: row {i} is not an op row (no 'op' name): corrupt catalogue")
        if not isinstance(r.get("cases", []), list) or any(not isinstance(c, dict) or not isinstance(c.get("shape"), str)
                                                            for c in r.get("cases", [])):
            raise CatalogueDiffError(f"{where}: row {r['op']!r} has malformed tie shapes ('cases'): corrupt catalogue")
        if r["op"] in seen:
            raise CatalogueDiffError(f"{where}: op {r['op']!r} appears twice: corrupt catalogue")
        seen.add(r["op"])
        if r.get("torch") not in (None, tv):
            raise CatalogueDiffError(f"{where}: row {r['op']!r} was made with torch {r.get('torch')}, the catalogue "
                                     f"says torch {tv}: one catalogue must come from one torch")
    op_rows = doc.get("opinfo", [])
    if not isinstance(op_rows, list) or any(not isinstance(r, dict) or not isinstance(r.get("op"), str)
                                            for r in op_rows):
        raise CatalogueDiffError(f"{where}: its 'opinfo' rows are malformed: corrupt catalogue")
    return doc


# ----------------------------------------------------------------- comparing

def _side(verdict) -> str:
    """'ok', 'bug' or 'undecided' for a case verdict or a row verdict."""
    v = str(verdict or "")
    if v in PASSING or v == "associated":
        return "ok"
    if v in BUG_VERDICTS or v.startswith("NOT associated"):
        return "bug"
    return "undecided"


def _status(old_side: str, new_side: str) -> str:
    if old_side == new_side == "ok":
        return "changed, both associated"
    if old_side == "bug" and new_side == "ok":
        return "finding: fixed"
    if old_side == "ok" and new_side == "bug":
        return "finding: regression"
    if old_side == new_side == "bug":
        return "finding: changed, both not associated"
    if "bug" in (old_side, new_side):     # a bug against an undecided side: still one side is not associated
        return "finding: fixed" if old_side == "bug" else "finding: regression"
    return "changed, undecided"


def _case_view(c: dict) -> dict:
    v = {k: c.get(k) for k, _ in _CASE_FIELDS}
    if not c.get("clarke_exact", True):        # the catalogue trusts Clarke only where the floats are exact
        v["clarke"] = None
    if c.get("forward_matches_reverse") is not False:
        v["forward_jacobian"] = None
    return v


def _changes(old: dict, new: dict, fields) -> list:
    return [{"field": name, "old": old.get(k), "new": new.get(k)} for k, name in fields if old.get(k) != new.get(k)]


def _undecided_only(c: dict) -> bool:
    """A change between decided and undecided (a solver budget, not torch): Clarke None against a
    value, or the row's 'yes' against 'yes where decided (k/n)' or 'undecided'; or an OpInfo row's
    counts of checks and ties (how many checks ran within the sweep's time budget)."""
    if c["field"] in ("checks", "ties"):
        return True
    if c["field"] != "Clarke":
        return False
    if c["old"] is None or c["new"] is None:
        return True
    vague = lambda v: str(v).startswith("yes") or str(v) == "undecided"  # noqa: E731
    return vague(c["old"]) and vague(c["new"])


def _entry_status(old: dict, new: dict, changes: list) -> str:
    if not changes:
        return "unchanged"
    if all(_undecided_only(c) for c in changes):
        return "changed, undecided"
    return _status(_side(old.get("verdict")), _side(new.get("verdict")))


def diff_catalogues(old: dict, new: dict) -> dict:
    """Every op and tie shape of the two catalogues, with what changed and its status (plain JSON data)."""
    old = check_catalogue(old, "OLD")
    new = check_catalogue(new, "NEW")
    ot, nt = old["torch"], new["torch"]
    o_rows = {r["op"]: r for r in old["rows"]}
    n_rows = {r["op"]: r for r in new["rows"]}
    o_info = {r["op"]: r for r in old.get("opinfo", [])}
    n_info = {r["op"]: r for r in new.get("opinfo", [])}
    if (o_rows or n_rows) and not (set(o_rows) & set(n_rows)) and not (set(o_info) & set(n_info)):
        raise CatalogueDiffError(f"the two catalogues (torch {ot} and torch {nt}) share no op: they were made for "
                                 "different --op selections; make both for the same ops")
    entries = []
    for op in list(o_rows) + [k for k in n_rows if k not in o_rows]:
        a, b = o_rows.get(op), n_rows.get(op)
        fam = (a or b).get("family", "")
        if a is None or b is None:
            r = a or b
            entries.append({"scope": "op", "op": op, "family": fam, "tie_shape": None,
                            "status": "added" if a is None else "removed",
                            "changes": [], "old": None if a is None else _row_view(a),
                            "new": None if b is None else _row_view(b),
                            "shapes": [c["shape"] for c in r.get("cases", [])]})
            continue
        ch = _changes(a, b, _ROW_FIELDS)
        entries.append({"scope": "op", "op": op, "family": fam, "tie_shape": None,
                        "status": _entry_status(a, b, ch), "changes": ch, "old": _row_view(a), "new": _row_view(b)})
        oc = {c["shape"]: c for c in a.get("cases", [])}
        nc = {c["shape"]: c for c in b.get("cases", [])}
        for shape in list(oc) + [s for s in nc if s not in oc]:
            ca, cb = oc.get(shape), nc.get(shape)
            e = {"scope": "case", "op": op, "family": fam, "tie_shape": shape,
                 "inputs": (cb or ca).get("inputs"), "id": (cb or ca).get("id")}
            if ca is None or cb is None:
                e.update(status="added" if ca is None else "removed", changes=[],
                         old=None if ca is None else _case_view(ca), new=None if cb is None else _case_view(cb))
            else:
                va, vb = _case_view(ca), _case_view(cb)
                chc = _changes(va, vb, _CASE_FIELDS)
                e.update(status=_entry_status(va, vb, chc), changes=chc, old=va, new=vb)
                if ca.get("inputs") != cb.get("inputs"):
                    e["note"] = f"different inputs: {ca.get('inputs')} (torch {ot}) vs {cb.get('inputs')} (torch {nt})"
            entries.append(e)
    for op in list(o_info) + [k for k in n_info if k not in o_info]:
        a, b = o_info.get(op), n_info.get(op)
        e = {"scope": "opinfo", "op": op, "family": "OpInfo", "tie_shape": None}
        if a is None or b is None:
            e.update(status="added" if a is None else "removed", changes=[],
                     old=None if a is None else _info_view(a), new=None if b is None else _info_view(b))
        else:
            va, vb = _info_view(a), _info_view(b)
            ch = _changes(va, vb, _OPINFO_FIELDS)
            e.update(status=_entry_status(va, vb, ch), changes=ch, old=va, new=vb)
        entries.append(e)
    counts = {s: sum(1 for e in entries if e["status"] == s) for s in STATUSES}
    return {"diff_format": DIFF_FORMAT, "old_torch": ot, "new_torch": nt,
            "old_mtcheck": old.get("mtcheck"), "new_mtcheck": new.get("mtcheck"),
            "same_torch": ot == nt, "summary": counts,
            "findings": sum(counts[s] for s in FINDING_STATUSES),
            "entries": entries, "new_findings": _findings_of(new, old)}


def _row_view(r: dict) -> dict:
    return {k: r.get(k) for k, _ in _ROW_FIELDS}


def _info_view(r: dict) -> dict:
    return {k: r.get(k) for k, _ in _OPINFO_FIELDS}


def _findings_of(doc: dict, other: dict) -> list:
    """Every finding of ``doc`` (a bug verdict, forward != reverse), marked whether ``other`` has it too."""
    other_cases = {(r["op"], c["shape"]): c for r in other["rows"] for c in r.get("cases", [])}
    out = []
    for r in doc["rows"]:
        for c in r.get("cases", []):
            kinds = ([c["verdict"]] if c.get("verdict") in BUG_VERDICTS else []) + \
                    (["forward != reverse"] if c.get("forward_matches_reverse") is False else [])
            for k in kinds:
                o = other_cases.get((r["op"], c["shape"]))
                if o is None:
                    was = "absent"
                elif k == "forward != reverse":
                    was = "same" if o.get("forward_matches_reverse") is False else "not a finding"
                else:
                    was = "same" if o.get("verdict") == c.get("verdict") else f"was {o.get('verdict')}"
                f = {"op": r["op"], "tie_shape": c["shape"], "kind": k, "verdict": c.get("verdict"),
                     "inputs": c.get("inputs"), "in_other": was}
                w = c.get("witness")
                if k in BUG_VERDICTS and w:
                    f["witness"] = (f"t = ({', '.join(w.get('direction') or [])}), output {w.get('output')}: "
                                    f"J t = {w.get('framework_rate')}, J_S t = {w.get('stratum_rate')}")
                out.append(f)
    for r in doc.get("opinfo", []):
        if str(r.get("verdict", "")).startswith("NOT associated") or r.get("forward_reverse") == "differ":
            o = next((x for x in other.get("opinfo", []) if x["op"] == r["op"]), None)
            k = r["verdict"] if str(r.get("verdict", "")).startswith("NOT associated") else "forward != reverse"
            was = "absent" if o is None else ("same" if (o.get("verdict"), o.get("forward_reverse")) ==
                                              (r.get("verdict"), r.get("forward_reverse")) else "changed")
            out.append({"op": f"{r['op']} (OpInfo)", "tie_shape": "-", "kind": k, "verdict": r.get("verdict"),
                        "inputs": None, "in_other": was})
    return out


# ----------------------------------------------------------------- rendering

def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def _md(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _change_text(c: dict) -> str:
    none = {"Clarke": "undecided", "forward-mode Jacobian": "= reverse"}.get(c["field"], "-")
    show = lambda v: none if v is None else _fmt(v)  # noqa: E731
    return f"{c['field']}: {show(c['old'])} → {show(c['new'])}"


def render_markdown(diff: dict) -> str:
    ot, nt = diff["old_torch"], diff["new_torch"]
    s = diff["summary"]
    out = [f"# Tie semantics: torch {ot} → torch {nt}", "",
           f"Generated by `mtcheck catalogue --diff` (mtcheck.catalogue_diff) from two catalogues: torch {ot} (old) "
           f"and torch {nt} (new). Each catalogue entry is derived from the gradients that torch version returns at "
           "exact ties; every verdict is certified (SPEC.md). *Changed, both associated*: the gradient at the tie "
           "changed and both versions' gradients are associated, so both are correct (they choose differently). "
           "*Finding*: one side is not associated (or wrong where the program is smooth).", ""]
    if diff.get("same_torch"):
        out += [f"Both catalogues were made with torch {ot}: any change below comes from mtcheck, not from torch.", ""]
    out += ["## Summary", "", "| status | entries |", "|---|---|"]
    out += [f"| {st} | {s.get(st, 0)} |" for st in STATUSES]
    out += ["", f"Findings (one side not associated): {diff['findings']}.", ""]
    changed = [e for e in diff["entries"] if e["status"] != "unchanged"]
    groups = (("Changed, both associated", ("changed, both associated",)),
              ("Findings: one side not associated", FINDING_STATUSES),
              ("Changed, undecided on one side", ("changed, undecided",)),
              ("Added and removed", ("added", "removed")))
    for title, sts in groups:
        es = [e for e in changed if e["status"] in sts]
        out += [f"## {title}", ""]
        if not es:
            out += ["None.", ""]
            continue
        out += [f"| op | tie shape | what changed (torch {_md(ot)} → torch {_md(nt)}) | torch {_md(ot)} | "
                f"torch {_md(nt)} | status |", "|---|---|---|---|---|---|"]
        for e in es:
            shape = e["tie_shape"] or ("(OpInfo row)" if e["scope"] == "opinfo" else "(op: rule at ties)")
            if e["status"] in ("added", "removed"):
                what = (f"only in torch {nt}" if e["status"] == "added" else f"only in torch {ot}")
                side = e["new"] or e["old"] or {}
                if side.get("verdict"):
                    what += f" (verdict {side['verdict']})"
            else:
                what = "; ".join(_change_text(c) for c in e["changes"])
                if e.get("note"):
                    what += f" ({e['note']})"
            if e["scope"] == "case" and e.get("inputs") and e["status"] not in ("added", "removed"):
                what += f" — inputs {e['inputs']}"
            sides = [_md((x or {}).get("verdict") or "-") if x is not None else "absent" for x in (e["old"], e["new"])]
            out.append(f"| `{_md(e['op'])}` | {_md(shape)} | {_md(what)} | {sides[0]} | {sides[1]} | "
                       f"{_md(e['status'])} |")
        out.append("")
    nf = diff.get("new_findings", [])
    out += [f"## Findings torch {nt} still has", ""]
    if not nf:
        out += [f"None: every gradient at every tie tried is associated in torch {nt}, and forward mode agrees with "
                "reverse mode.", ""]
    else:
        out += [f"| op | tie shape | finding | in torch {_md(ot)} |", "|---|---|---|---|"]
        for f in nf:
            what = f["kind"] if f["kind"] != "forward != reverse" else f"forward mode ≠ reverse mode (verdict {f['verdict']})"
            if f.get("witness"):
                what += f"; witness {f['witness']}"
            if f.get("inputs"):
                what += f"; inputs {f['inputs']}"
            was = {"same": "the same", "absent": "not in that catalogue"}.get(f["in_other"], f["in_other"])
            out.append(f"| `{_md(f['op'])}` | {_md(f['tie_shape'])} | {_md(what)} | {_md(was)} |")
        out.append("")
    out += ["Regenerate: `mtcheck catalogue --format json [--sweep OPINFO.json] --output OLD.json` under each torch, "
            "then `mtcheck catalogue --diff OLD.json NEW.json --format md` (`make test-torch TORCH_SPEC=torch==X` "
            "does all of it, in build/torch-matrix/, and checks the diff against properties/torch_versions.json)."]
    return "\n".join(out) + "\n"


def render_json(diff: dict) -> str:
    return json.dumps(diff, indent=1, default=str) + "\n"


# ----------------------------------------------------------------- expected per-version differences

def torch_release(v) -> str:
    """'2.14.1' for '2.14.1+cu130' (the key of a version in properties/torch_versions.json)."""
    import re

    m = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", str(v or ""))
    if m is None:
        raise CatalogueDiffError(f"cannot read the torch version {v!r}")
    return f"{m.group(1)}.{m.group(2)}.{m.group(3) or 0}"


def diff_signature(diff: dict) -> dict:
    """What a version's record holds: every changed entry (op, tie shape, status, changed fields), budget-only
    changes left out, and every finding of the new catalogue (op, tie shape, kind)."""
    changes = [{"op": e["op"], "tie_shape": e["tie_shape"], "status": e["status"],
                "fields": [c["field"] for c in e.get("changes", []) if not _undecided_only(c)]}
               for e in diff["entries"] if e["status"] not in ("unchanged", "changed, undecided")]
    findings = [{"op": f["op"], "tie_shape": f["tie_shape"], "kind": f["kind"]} for f in diff["new_findings"]]
    return {"catalogue_changes": changes, "catalogue_findings": findings}


def check_expected(diff: dict, expectations: dict) -> list:
    """The differences between ``diff`` and the record of its two torch versions in ``expectations`` (the
    JSON of properties/torch_versions.json): an empty list when the diff is exactly the recorded one."""
    base = expectations.get("baseline")
    old, new = torch_release(diff["old_torch"]), torch_release(diff["new_torch"])
    if base is not None and old != base:
        return [f"the old catalogue is torch {old}, the record's baseline is torch {base}"]
    rec = expectations.get("versions", {}).get(new)
    if rec is None:
        return [f"no record for torch {new} in the expectations (recorded: "
                f"{', '.join(expectations.get('versions', {})) or 'none'}): add one with --record"]
    got = diff_signature(diff)
    out = []
    for key in ("catalogue_changes", "catalogue_findings"):
        want = rec.get(key, [])
        canon = lambda xs: {json.dumps(x, sort_keys=True) for x in xs}  # noqa: E731
        for x in sorted(canon(got[key]) - canon(want)):
            out.append(f"{key}: not recorded for torch {new}: {x}")
        for x in sorted(canon(want) - canon(got[key])):
            out.append(f"{key}: recorded for torch {new} but not seen: {x}")
    return out


# ----------------------------------------------------------------- the command

def _write(text: str, output, what: str) -> None:
    import os
    import tempfile

    import click

    if not output:
        click.echo(text, nl=False)
        return
    d = os.path.dirname(os.path.abspath(output))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".catalogue-diff-")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, output)
    click.echo(f"mtcheck catalogue --diff: {what} written to {output}", err=True)


def current_catalogue(old: dict, *, clarke=True, ops=(), sweep=None) -> dict:
    """The catalogue of the current environment for the ops of ``old`` (or ``ops``), as its JSON."""
    from . import catalogue

    want = set(r["op"] for r in old["rows"])
    chosen = [v for v in catalogue.variants() if (v.key in want if not ops else any(o in v.key for o in ops))]
    rows = catalogue.build_catalogue(chosen, clarke=clarke)
    return json.loads(catalogue.render_json(rows, sweep))


def with_diff_option(command):
    """A copy of the ``catalogue`` click command with ``--diff OLD.json [NEW.json]`` (exit status: 0 no
    finding in the diff, 1 findings, 2 unreadable or mismatched input)."""
    import click

    inner = command.callback

    def callback(diff_path=None, new_path=None, expect_path=None, record=False, **kw):
        ctx = click.get_current_context()
        if diff_path is None:
            if new_path is not None or expect_path is not None or record:
                raise click.UsageError("NEW.json, --expect and --record go with --diff OLD.json")
            return inner(**kw)
        if record and expect_path is None:
            raise click.UsageError("--record needs --expect FILE")
        try:
            old = load_catalogue(diff_path)
            if new_path is not None:
                new = load_catalogue(new_path)
            else:
                sweep = json.loads(Path(kw["sweep_path"]).read_text()) if kw.get("sweep_path") else None
                new = current_catalogue(old, clarke=not kw.get("no_clarke"), ops=kw.get("ops") or (), sweep=sweep)
            diff = diff_catalogues(old, new)
        except CatalogueDiffError as e:
            click.echo(f"mtcheck catalogue --diff: {e}", err=True)
            ctx.exit(2)
        text = render_markdown(diff) if kw.get("fmt", "md") == "md" else render_json(diff)
        _write(text, kw.get("output"), f"{len(diff['entries'])} entries")
        s = diff["summary"]
        click.echo(f"mtcheck catalogue --diff: torch {diff['old_torch']} -> torch {diff['new_torch']}: "
                   f"{s['changed, both associated']} changed, both associated; {diff['findings']} finding(s); "
                   f"{s['unchanged']} unchanged; {s['added']} added, {s['removed']} removed", err=True)
        if expect_path is None:
            ctx.exit(1 if diff["findings"] else 0)
        try:
            expectations = json.loads(Path(expect_path).read_text())
            if record:
                expectations.setdefault("versions", {}).setdefault(torch_release(diff["new_torch"]), {}).update(
                    diff_signature(diff))
                Path(expect_path).write_text(json.dumps(expectations, indent=1, ensure_ascii=False) + "\n")
                click.echo(f"mtcheck catalogue --diff: recorded torch {torch_release(diff['new_torch'])} in "
                           f"{expect_path}", err=True)
                ctx.exit(0)
            problems = check_expected(diff, expectations)
        except (OSError, json.JSONDecodeError, CatalogueDiffError) as e:
            click.echo(f"mtcheck catalogue --diff: --expect {expect_path}: {e}", err=True)
            ctx.exit(2)
        for p in problems:
            click.echo(f"mtcheck catalogue --diff: UNEXPECTED {p}", err=True)
        click.echo(f"mtcheck catalogue --diff: the diff is {'NOT ' if problems else ''}the one recorded in "
                   f"{expect_path} for torch {torch_release(diff['new_torch'])}", err=True)
        ctx.exit(1 if problems else 0)

    params = list(command.params) + [
        click.Option(["--diff", "diff_path"], type=click.Path(dir_okay=False), default=None, metavar="OLD.json",
                     help="Compare the catalogue OLD.json (made under another torch) with NEW.json, or with this "
                          "environment's catalogue when NEW.json is omitted: what changed at ties, per op and tie "
                          "shape. Exit status 1 when a changed entry has a side that is not associated."),
        click.Option(["--expect", "expect_path"], type=click.Path(dir_okay=False), default=None, metavar="FILE",
                     help="With --diff: check the diff against the per-version record in FILE "
                          "(properties/torch_versions.json); exit status 0 when it is exactly the recorded one."),
        click.Option(["--record"], is_flag=True,
                     help="With --diff --expect FILE: write this diff as the record of the new torch in FILE."),
        click.Argument(["new_path"], required=False, type=click.Path(dir_okay=False), metavar="[NEW.json]"),
    ]
    return click.Command(command.name, callback=callback, params=params, help=command.help,
                         short_help=command.short_help, context_settings=command.context_settings)
