"""`mtcheck check --plot out.png`: the program along the witness direction, with both rates."""

from pathlib import Path

HERE = Path(__file__).parent


def test_check_plot_writes_a_png(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from mtcheck.cli import main

    monkeypatch.syspath_prepend(str(HERE))
    out = tmp_path / "w.png"
    r = CliRunner().invoke(main, ["check", "--model", "planted_models:planted", "--plot", str(out)],
                           catch_exceptions=False)
    assert r.exit_code == 1, r.output                  # the planted bug: NOT_ASSOCIATED at its example input
    assert "NOT_ASSOCIATED" in r.output and f"plot: {out}" in r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def test_plot_samples_follow_the_program():
    import torch

    from mtcheck.plot import samples, witness_dict

    w = witness_dict({"output_index": 0, "direction": ["1", "0"], "framework_rate": "2", "stratum_rate": "1",
                      "h": "1/4", "f_x": "0", "f_x_plus_ht": "1/4"})
    hs, vals, H = samples(lambda x: torch.relu(x).sum(), [torch.zeros(2, dtype=torch.float64)], w)
    assert H == 1.0 and hs[0] == -1.0 and hs[-1] == 1.0
    assert all(v == max(h, 0.0) for h, v in zip(hs, vals))
