"""The catalogue: rows derived from observed gradients, its renderings, its command, and the
checked-in docs/catalogue.md."""

import json
from pathlib import Path

from click.testing import CliRunner

from mtcheck import catalogue

from _mtprops import load_findings

DOC = Path(__file__).parent.parent / "docs" / "catalogue.md"


def _rows(*keys):
    return catalogue.build_catalogue([v for v in catalogue.variants() if v.key in keys], clarke=False)


def test_rows_are_derived_from_gradients():
    rows = _rows("torch.cummax", "F.prelu (constant slope 1/4)", "Tensor.scatter_reduce(amax, include_self=False)")
    by = {r["op"]: r for r in rows}
    assert by["torch.cummax"]["rule"] == "last index"
    assert by["torch.cummax"]["verdict"] == "associated"
    assert by["F.prelu (constant slope 1/4)"]["rule"] == "the left slope"
    assert by["F.prelu (constant slope 1/4)"]["forward_reverse"].startswith("differ")
    assert by["Tensor.scatter_reduce(amax, include_self=False)"]["verdict"].startswith("NOT associated")
    for r in rows:
        assert r["torch"] and r["cases"]


def test_renderings():
    rows = _rows("torch.cummax", "Tensor.scatter_reduce(amax, include_self=False)")
    md = catalogue.render_markdown(rows)
    assert "| `torch.cummax` | last index" in md and "## Findings" in md and "SMOOTH_WRONG" in md
    doc = json.loads(catalogue.render_json(rows))
    assert [r["op"] for r in doc["rows"]] == ["torch.cummax", "Tensor.scatter_reduce(amax, include_self=False)"]


def test_command(tmp_path):
    out = tmp_path / "c.json"
    res = CliRunner().invoke(catalogue.catalogue_command,
                             ["--format", "json", "--output", str(out), "--no-clarke", "--op", "torch.cummin"])
    assert res.exit_code == 0, res.output
    assert [r["op"] for r in json.loads(out.read_text())["rows"]] == ["torch.cummin"]
    res = CliRunner().invoke(catalogue.catalogue_command, ["--op", "no such op"])
    assert res.exit_code != 0 and "--op" in res.output


def test_checked_in_catalogue_covers_every_variant_and_finding():
    text = DOC.read_text()
    for v in catalogue.variants():
        assert f"`{v.key}`" in text, v.key
    for f in load_findings():
        assert f["op"] in text and f["tie_shape"] in text, f["id"]
