"""A bounded part of the OpInfo sweep (properties/opinfo_sweep.py): PyTorch's own op database,
samples moved onto ties, and no exception out of mtcheck.check that is not one of mtcheck's
documented errors (an internal crash). The full sweep: ``mtcheck opinfo``."""

import json

import pytest

pytest.importorskip("expecttest")     # torch's op database imports it

import opinfo_sweep as S  # noqa: E402

# the ops that crashed mtcheck before issue 11, and one or two of every kind of rule
SUBSET = (
    "dot", "vdot", "inner", "mv", "matmul", "__rmatmul__", "mean", "nn.functional.multi_margin_loss",
    "as_strided", "as_strided.partial_views", "addmv", "linalg.vecdot", "logical_xor", "isfinite",
    "exponential", "resize_", "nn.functional.batch_norm",
    "add", "mul", "mm", "nn.functional.linear", "div.no_rounding_mode", "abs", "nn.functional.relu", "clamp", "maximum", "max.reduction_with_dim",
    "amax", "sort", "topk", "cummax", "nn.functional.max_pool2d", "nn.functional.hardtanh",
    "addcmul", "addcdiv", "addr", "cumprod", "prod", "diff", "diag_embed", "tril", "trace", "rot90",
    "linalg.cross", "index_add", "index_copy", "index_fill", "index_put", "scatter", "scatter_add",
    "select_scatter", "masked_scatter", "nn.functional.pad.reflect", "nn.functional.interpolate.nearest",
    "nn.functional.interpolate.bilinear", "aminmax", "nn.functional.hardshrink", "reciprocal", "nan_to_num",
    "nn.functional.mse_loss", "nn.functional.embedding", "var", "linalg.det", "linalg.solve",
    "scatter_reduce.sum", "mode", "nextafter", "floor", "exp", "sin", "linalg.eigh", "special.zeta",
)


@pytest.fixture(scope="module")
def result():
    return S.sweep(ops=SUBSET, samples=2, budget=2.0, jobs=1)


def test_no_internal_crash(result):
    crashes = [(r["op"], c["strategy"], c["error"], c.get("traceback", ""))
               for r in result["ops"] for c in r["checks"] if c["outcome"] == "crash"]
    assert not crashes, "\n\n".join(f"{op} [{st}]: {err}\n{tb}" for op, st, err, tb in crashes)
    assert not [r for r in result["ops"] if r["status"] == "sweep_error"]


def test_every_chosen_op_was_swept(result):
    names = {r["op"] for r in result["ops"]} | {r["name"] for r in result["ops"]}
    assert set(SUBSET) <= names
    s = result["summary"]
    assert s["with_float_sample"] >= 50
    # most of these are modelled: a guard against a rule or the engine breaking wholesale
    assert s["decided"] >= 0.75 * s["with_float_sample"], S.summary_line(result)


def test_outcomes_are_classified(result):
    by = {r["op"]: r for r in result["ops"]}
    # floor: decided off its jumps (the raw sample), refused on them (the integer grid)
    assert by["floor"]["status"] == "decided" and "jumps at every integer" in by["floor"]["partial"]
    # mode: decided off its jumps (ops/steps_more.py); nextafter jumps at every float
    assert by["mode"]["status"] == "decided"
    assert by["nextafter"]["status"] == "outside"
    assert by["special.zeta"]["status"] == "unsupported" and "irrational" in by["special.zeta"]["reason"]
    assert by["linalg.eigh"]["status"] == "decided"    # enclosed (ops/linalg_eigh.py)
    assert by["exp"]["status"] == "decided"          # enclosed (issue 10)
    assert by["dot"]["status"] == "decided"
    assert by["as_strided.partial_views"]["status"] == "unsupported"
    for r in result["ops"]:
        for c in r["checks"]:
            assert c["outcome"] in ("verdict", "unsupported", "outside", "nonfinite", "input", "mtcheck_error",
                                    "invalid", "timeout", "crash")


def test_summary_line_and_json(result, tmp_path):
    line = S.summary_line(result)
    assert line.startswith("decided ") and line.endswith(" internal crashes") and "%" in line
    out = tmp_path / "r.json"
    S.write_json(result, out)
    assert json.loads(out.read_text())["summary"] == result["summary"]


def test_tie_strategies():
    import torch

    x = torch.tensor([[0.3, -1.6, 2.2], [0.9, 0.4, -0.2]], dtype=torch.float64)
    grid, rep, zer, kin, eq = (S.move(st, [x, x * 2], kinks=(0.5,)) for st in S.STRATEGIES)
    assert (grid[0] == grid[0].round()).all()
    assert rep[0].reshape(-1)[1] == rep[0].reshape(-1)[0]
    assert (zer[0].reshape(-1)[0::2] == 0).all()
    assert (kin[0].reshape(-1)[0::2] == 0.5).all()
    assert (eq[0][1] == eq[0][0]).all() and (eq[1] == eq[0]).all()


def test_command(tmp_path):
    from click.testing import CliRunner

    from mtcheck.cli import main

    out = tmp_path / "o.json"
    res = CliRunner().invoke(main, ["opinfo", "--op", "dot", "--op", "tril", "-n", "1", "--samples", "1",
                                    "--output", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "decided 2/2 ops (100.0%), 0 internal crashes" in res.output
    assert [r["op"] for r in json.loads(out.read_text())["ops"]] == ["dot", "tril"]


def test_catalogue_merges_the_sweep(result):
    from mtcheck import catalogue

    md = "\n".join(catalogue.render_sweep_section(result))
    for r in result["ops"]:
        assert f"| `{r['op']}` |" in md, r["op"]
    rows = {r["op"]: r for r in catalogue.sweep_rows(result)}
    assert rows["nextafter"]["reason"].startswith("discontinuous")
    assert rows["special.zeta"]["reason"].startswith("irrational")
    assert rows["dot"]["verdict"] == "associated"


def test_checked_in_catalogue_has_a_row_for_every_opinfo_op():
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "catalogue.md").read_text()
    section = text.split("## Every OpInfo op", 1)[1]
    missing = [S.op_key(op) for op in S.load_op_db() if f"| `{S.op_key(op)}` |" not in section]
    assert not missing, missing[:20]
