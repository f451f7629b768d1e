"""``mtcheck report CORPUS -o report.html``: one static page about a corpus.

For every case: its verdict, the op and call site of each tie, the witness, the picture of
the program along the witness direction (:mod:`mtcheck.plot`), and its replay status (the
case is replayed now, with the same trust rules as ``mtcheck replay``). Then the campaign's
statistics over time from ``CORPUS/stats.json`` (checks/s, distinct strata, findings).
The page is one file: pictures are embedded as PNG data, no script, no network.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import tempfile
from pathlib import Path

_BUGS = ("SMOOTH_WRONG", "NOT_ASSOCIATED", "NONLINEAR_VJP")
_FINDINGS = _BUGS + ("ROUNDING_BRANCH",)
_COLOURS = {"SMOOTH_OK": "#2e7d32", "ASSOCIATED": "#2e7d32", "SMOOTH_WRONG": "#c62828", "NOT_ASSOCIATED": "#c62828",
            "NONLINEAR_VJP": "#c62828", "ROUNDING_BRANCH": "#ef6c00", "UNKNOWN": "#616161"}
_STATUS_COLOURS = {"reproduces": "#2e7d32", "changed": "#ef6c00", "error": "#c62828", "needs-trust": "#6a1b9a",
                   "not replayed": "#616161"}

CSS = """
body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:22px;margin-bottom:4px} h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:13px} .card{border:1px solid #ddd;border-radius:6px;padding:12px 16px;margin:14px 0}
.badge{display:inline-block;color:#fff;border-radius:4px;padding:2px 8px;font-size:13px;font-weight:600}
.grid{display:grid;grid-template-columns:1fr 420px;gap:16px} .grid img{width:420px;border:1px solid #eee}
table{border-collapse:collapse;font-size:13px} td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:left;
vertical-align:top} code{font-size:12px;background:#f5f5f5;padding:1px 3px;border-radius:3px;word-break:break-all}
.small{font-size:12px;color:#555}
"""


def _e(s) -> str:
    return html.escape(str(s), quote=True)


def _png_data(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _short(s, n=60) -> str:
    s = str(s)
    if len(s) <= n:
        return s
    try:
        from fractions import Fraction

        return f"~{float(Fraction(s)):.6g}"
    except (ValueError, ZeroDivisionError, OverflowError):
        return s[:n] + "..."


def _witness_rows(w: dict) -> str:
    t = w.get("direction") or []
    shown = ", ".join(_short(v, 16) for v in t[:12]) + (", ..." if len(t) > 12 else "")
    rows = [("output", f"output[{w.get('output_index')}]"), ("direction t", f"({shown})"),
            ("framework's rate J t", _short(w.get("framework_rate"))),
            ("stratum's rate J_S t", _short(w.get("stratum_rate")))]
    if w.get("h") is not None:
        rows += [("exact step h", _short(w.get("h"))), ("f(x)", _short(w.get("f_x"))),
                 ("f(x + h t)", _short(w.get("f_x_plus_ht")))]
    if w.get("note"):
        rows.append(("note", w["note"]))
    return "".join(f"<tr><th>{_e(a)}</th><td><code>{_e(b)}</code></td></tr>" for a, b in rows)


def _ties(expected: dict) -> list:
    out = []
    for e in expected.get("pattern") or []:
        counts = e.get("counts") or {}
        if counts.get("tie"):
            out.append(e)
    return out


def _case_card(path: Path, case, res, plot_uri: str | None, plot_note: str) -> str:
    ex = case.expected
    v = case.verdict
    ties = _ties(ex)
    site = ties[0].get("where") if ties else (ex.get("pattern") or [{}])[0].get("where", "-") if ex.get("pattern") \
        else "-"
    ops = "".join(f"<tr><td><code>{_e(e.get('label'))}</code></td><td>{_e(e.get('kind'))}</td>"
                  f"<td><code>{_e(e.get('where'))}</code></td><td>{_e(e.get('counts', {}).get('tie', 0))}</td>"
                  f"<td class=small>{_e('; '.join((e.get('ties') or [])[:2]))}</td></tr>" for e in ties[:8])
    ops_table = (f"<table><tr><th>op</th><th>kind</th><th>call site</th><th>ties</th><th>first ties</th></tr>{ops}"
                 "</table>") if ops else "<p class=small>no tie (the input is off every kink)</p>"
    if res is None:
        status, detail = "not replayed", ""
    else:
        status = res.status
        detail = (f"{_e(res.old_verdict)} &rarr; {_e(res.new_verdict or 'not run')}; "
                  f"program: {_e(res.source or '-')}; certificate: {_e(res.certificate or 'none')}")
        if res.status not in ("reproduces",):
            detail += f"<br><span class=small>{_e(res.text[:600])}</span>"
    wit = ex.get("witness")
    wit_html = f"<table>{_witness_rows(wit)}</table>" if wit else "<p class=small>no witness recorded</p>"
    img = (f"<img alt='the program along the witness direction' src='{plot_uri}'>" if plot_uri
           else f"<p class=small>{_e(plot_note)}</p>")
    origin = case.origin or {}
    count = origin.get("count")
    return f"""
<div class="card finding" id="{_e(path.stem)}">
 <div><span class="badge verdict" style="background:{_COLOURS.get(v, '#616161')}">{_e(v)}</span>
  <b class=program>{_e(case.label)}</b> <span class=small>at <code>{_e(site)}</code></span>
  <span class="badge" style="background:{_STATUS_COLOURS.get(status, '#616161')}">replay: {_e(status)}</span></div>
 <div class=grid>
  <div>
   <p class=small>{_e(ex.get('summary', ''))}</p>
   <h3 style="font-size:14px">ties</h3>{ops_table}
   <h3 style="font-size:14px">witness</h3>{wit_html}
   <p class=small>replay: {detail}</p>
   <p class=small>case <code>{_e(path.name)}</code>{f', found {count} time(s)' if count else ''}
     {(', from ' + _e(origin.get('target') or origin.get('test'))) if origin.get('target') or origin.get('test') else ''}</p>
  </div>
  <div>{img}</div>
 </div>
</div>"""


def _stats_section(stats_path: Path, tmp: Path) -> str:
    try:
        st = json.loads(stats_path.read_text())
    except (OSError, ValueError):
        return "<p class=small>no campaign statistics (stats.json) in this corpus</p>"
    rows = [("checks (this run)", st.get("checks")), ("checks (all runs)", st.get("checks_all_runs")),
            ("checks/s", st.get("checks_per_s")), ("distinct strata", st.get("distinct_strata")),
            ("findings", len(st.get("findings") or [])), ("workers", st.get("workers", "-")),
            ("engine", st.get("engine", "local")), ("elapsed (s)", st.get("elapsed_s")),
            ("verdicts", ", ".join(f"{k} {v}" for k, v in (st.get("verdicts") or {}).items()))]
    table = "<table>" + "".join(f"<tr><th>{_e(a)}</th><td>{_e('-' if b is None else b)}</td></tr>"
                                for a, b in rows) + "</table>"
    hist = [h for h in st.get("history") or [] if isinstance(h, dict) and "time" in h]
    if len(hist) < 2:
        return table + "<p class=small>no time series yet (stats.json keeps one point every few seconds)</p>"
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t0 = hist[0]["time"]
    xs = [(h["time"] - t0) / 60 for h in hist]
    fig = Figure(figsize=(10, 2.8), dpi=100)
    FigureCanvasAgg(fig)
    for i, (key, label) in enumerate((("checks_per_s", "checks/s"), ("strata", "distinct strata"),
                                      ("findings", "findings"))):
        ax = fig.add_subplot(1, 3, i + 1)
        ax.plot(xs, [h.get(key, 0) for h in hist], color=("tab:blue", "tab:purple", "tab:red")[i], lw=1.5)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("minutes", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = tmp / "stats.png"
    fig.savefig(out, format="png")
    return table + f"<p><img class=stats alt='campaign statistics over time' style='width:100%' " \
                   f"src='{_png_data(out)}'></p>"


def write_report(paths, out, *, replay: bool = True, trust_imports: bool = False, plots: bool = True) -> Path:
    """Write the page for the corpora ``paths`` (directories or case files) to ``out``."""
    import torch

    from . import __version__
    from .corpus import CorpusError, iter_cases, replay_case
    from .plot import plot_case

    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    cards, errors, n = [], [], {"findings": 0, "cases": 0}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        entries = list(iter_cases(paths))
        entries.sort(key=lambda pc: (0 if not isinstance(pc[1], CorpusError) and pc[1].verdict in _FINDINGS
                                     else 1, str(pc[0])))
        for path, case in entries:
            if isinstance(case, CorpusError):
                errors.append(f"<li><code>{_e(path.name)}</code>: {_e(str(case)[:300])}</li>")
                continue
            n["cases"] += 1
            n["findings"] += case.verdict in _FINDINGS
            res = replay_case(case, trust_imports=trust_imports) if replay else None
            uri, note = None, "no picture: no witness recorded"
            png = path.with_suffix(".png")
            if plots and case.expected.get("witness"):
                try:
                    if not png.exists():
                        png = plot_case(case, tmp / f"{path.stem}.png", trust_imports=trust_imports)
                    uri = _png_data(png) if png else None
                except CorpusError as e:
                    note = f"no picture: {str(e).split(': ', 1)[-1][:200]}"
                except Exception as e:  # noqa: BLE001 - a picture must not stop the page
                    note = f"no picture ({type(e).__name__}: {e})"
            cards.append(_case_card(path, case, res, uri, note))
        stats = "".join(_stats_section(p / "stats.json", tmp) for p in paths if p.is_dir())
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    page = f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><title>mtcheck report: {_e(', '.join(map(str, paths)))}</title>
<style>{CSS}</style></head><body>
<h1>mtcheck report</h1>
<p class=meta>corpus {_e(', '.join(map(str, paths)))} &middot; {n['cases']} case(s), {n['findings']} finding(s)
 &middot; generated {_e(now)} by mtcheck {_e(__version__)}, torch {_e(torch.__version__)}
 {'&middot; replayed now' if replay else '&middot; not replayed'}</p>
<h2>Campaign statistics</h2>
{stats or '<p class=small>no campaign statistics</p>'}
<h2>Cases</h2>
{''.join(cards) or '<p>no case in this corpus</p>'}
{('<h2>Files that could not be read</h2><ul>' + ''.join(errors) + '</ul>') if errors else ''}
</body></html>
"""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


__all__ = ["write_report"]
