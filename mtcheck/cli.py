"""The ``mtcheck`` command line: ``fuzz``, ``replay``, ``check``, ``zoo``, ``catalogue``.

Exit codes (all commands): 0 nothing found / everything reproduces, 1 findings or
changed cases, 2 usage error or unloadable input, 130 interrupted (everything
found so far is kept).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .campaign import DEFAULT_TARGETS, EXIT_FINDINGS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

_DTYPES = ("float64", "float32", "float16", "bfloat16")


def _physical_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mtcheck")
def main():
    """mtcheck: are PyTorch's gradients at kinks ones the mathematics allows?"""


@main.command()
@click.option("--model", "models", multiple=True, metavar="TARGET",
              help="zoo:<name>, package.module:factory, or 'generated'; repeatable. Default: the built-in campaign.")
@click.option("--input-shape", default=None, help="Input shape for a factory that returns a bare model, e.g. 1,3,32,32.")
@click.option("--dtype", type=click.Choice(_DTYPES), default=None, help="dtype of built models and inputs.")
@click.option("--max-time", type=float, default=60.0, show_default=True, help="Wall-clock budget in seconds (0: none).")
@click.option("--max-examples", type=int, default=None, help="Stop after this many checks.")
@click.option("-n", "--numprocesses", type=int, default=None, help="Worker processes (default: available cores).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--stop-on-failure", is_flag=True, help="Stop at the first new finding.")
@click.option("--corpus", type=click.Path(path_type=Path), default=Path("mtcheck-corpus"), show_default=True)
@click.option("--stats", type=click.Path(path_type=Path), default=None,
              help="Machine-readable statistics, rewritten as the campaign runs (default: CORPUS/stats.json).")
@click.option("--full", is_flag=True, help="Also decide differentiability, Clarke and forward mode (slower).")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="Run the campaign's batches on an existing Dask cluster (pip install 'mtcheck[dask]'); "
                   "the corpus and statistics stay here. Default: local worker processes (-n).")
@click.option("--wrt", default=None, metavar="WRT",
              help="What the gradients are taken with respect to, for models (nn.Module targets): 'inputs' "
                   "(default), 'parameters', 'all', or a comma-separated list of parameter names and input "
                   "positions (fc.weight,fc.bias). Function targets keep their inputs.")
def fuzz(models, input_shape, dtype, max_time, max_examples, numprocesses, seed, stop_on_failure, corpus, stats,
         full, scheduler, wrt):
    """Run a fuzz campaign; findings are saved, deduplicated, to the corpus.

    Exit status: 0 nothing found, 1 findings, 2 usage error, 130 interrupted.
    """
    from .campaign import Campaign, Config, resolve_target

    targets = list(models) or list(DEFAULT_TARGETS)
    shape = tuple(int(s) for s in input_shape.split(",")) if input_shape else None
    wrt_opt = _parse_wrt(wrt)
    for t in targets:
        if t == "generated":
            continue
        try:
            made = resolve_target(t, dtype, shape)
            if wrt_opt is not None:
                import torch

                from .params import resolve

                if isinstance(made[0], torch.nn.Module):
                    resolve(made[0], made[1], wrt_opt)          # a bad --wrt is a usage error, up front
        except Exception as e:  # noqa: BLE001
            click.echo(f"mtcheck fuzz: --model {t}: {type(e).__name__}: {e}", err=True)
            sys.exit(EXIT_USAGE)
    cfg = Config(targets=targets, corpus=corpus, max_time=max_time or None, max_examples=max_examples,
                 workers=numprocesses or _physical_cores(), seed=seed, stop_on_failure=stop_on_failure,
                 stats=stats or corpus / "stats.json", dtype=dtype, input_shape=shape, full=full,
                 scheduler=scheduler, wrt=wrt_opt)
    if scheduler:
        try:
            import distributed  # noqa: F401
        except ImportError:
            click.echo("mtcheck fuzz: --scheduler needs Dask's distributed package: pip install 'mtcheck[dask]'",
                       err=True)
            sys.exit(EXIT_USAGE)
    ui = _StatusUI(cfg)
    camp = Campaign(cfg, ui=ui.update)
    ui.start()
    try:
        code = camp.run()
    except OSError as e:                       # the scheduler cannot be reached
        ui.stop()
        click.echo(f"mtcheck fuzz: --scheduler {scheduler}: {type(e).__name__}: {e}", err=True)
        sys.exit(EXIT_USAGE)
    ui.stop()
    _final_table(camp.stats, cfg, code)
    sys.exit(code)


def _parse_wrt(text):
    """``--wrt``: None, 'inputs' / 'parameters' / 'all', or a comma-separated list of parameter
    names and input positions."""
    if text is None or text.strip() in ("", "inputs"):
        return None
    text = text.strip()
    if text in ("parameters", "all"):
        return text
    items = [p.strip() for p in text.split(",") if p.strip()]
    return [int(p) if p.isdigit() else p for p in items]


class _StatusUI:
    """A status line users read at a glance (rich when on a terminal, plain lines otherwise)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.live = None
        self.last_plain = 0.0

    def start(self):
        import time

        from rich.console import Console

        self.console = Console(stderr=True)
        self.t0 = time.time()
        where = (f"Dask scheduler {self.cfg.scheduler}" if self.cfg.scheduler else f"{self.cfg.workers} worker(s)")
        click.echo(f"mtcheck fuzz: {len(self.cfg.targets)} target(s), {where}, seed {self.cfg.seed}, "
                   f"corpus {self.cfg.corpus}, stats {self.cfg.stats}", err=True)
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live("", console=self.console, refresh_per_second=4, transient=True)
            self.live.start()

    def line(self, s) -> str:
        import time

        v = s.verdicts
        return (f"{s.elapsed():6.0f}s  {s.rate():6.1f} checks/s  workers {s.workers}  checks {s.checks}  "
                f"ok {v['SMOOTH_OK'] + v['ASSOCIATED']}  unknown {v['UNKNOWN']}  "
                f"strata {len(s.strata)}  tie kinds {len(s.tie_kinds)}  deepest tie L{s.deepest_tie}  "
                f"new {time.time() - s.last_new:4.0f}s ago  findings {len(s.findings)}")

    def update(self, s, final=False):
        import time

        if self.live is not None:
            self.live.update(self.line(s))
        elif time.time() - self.last_plain > 10:
            self.last_plain = time.time()
            click.echo(self.line(s), err=True)

    def stop(self):
        if self.live is not None:
            self.live.stop()


def _final_table(stats, cfg, code):
    from rich.console import Console
    from rich.table import Table

    con = Console(width=max(100, Console().width))
    con.print(f"mtcheck fuzz: {stats.checks} checks in {stats.elapsed():.1f}s ({stats.rate():.1f} checks/s, "
              f"{stats.workers} worker(s), {stats.engine})")
    t = Table()
    t.add_column("verdict")
    t.add_column("cases", justify="right")
    for k, v in sorted(stats.verdicts.items()):
        t.add_row(k, str(v))
    con.print(t)
    con.print(f"distinct strata {len(stats.strata)}, tie kinds {dict((f'{a}/{b}', n) for (a, b), n in stats.tie_kinds.items())}, "
              f"deepest tied layer {stats.deepest_tie}")
    if stats.findings:
        ft = Table(title="findings")
        for c in ("verdict", "program", "kinks", "count", "case file"):
            ft.add_column(c)
        for key, f in stats.findings.items():
            ft.add_row(f["verdict"], f["program"], key.split("|")[-1], str(f["count"]),
                       f["path"] + (" (earlier run)" if f.get("previous_run") else ""))
        con.print(ft)
        con.print(f"replay with: mtcheck replay {cfg.corpus}")
    if stats.errors:
        con.print("errors: " + "; ".join(f"{k} (x{v})" for k, v in list(stats.errors.items())[:5]))
    if code == EXIT_INTERRUPTED:
        con.print("interrupted: everything found so far is in the corpus")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--update", is_flag=True, help="Rewrite the expectation of cases whose verdict changed.")
@click.option("--mark-fixed", is_flag=True,
              help="Record 'fixed in torch X' (the running torch) in cases whose finding no longer reproduces "
                   "in this newer torch (their 'fixed_in' field; the recorded finding is kept for older torch).")
@click.option("--trust-imports", is_flag=True,
              help="Import model factories from the code a case ships with (its search_path). Without it, such a "
                   "case runs its stored traced program (no import), or is reported as 'needs trust' and not run.")
def replay(paths, update, mark_fixed, trust_imports):
    """Re-run saved cases (files or directories): which still reproduce, which changed, which fail to load.

    A case runs its factory's code only when the module is importable from this environment
    (without the case's search_path) or with --trust-imports; otherwise its traced program.
    A recorded finding that no longer reproduces in a newer torch is reported as "fixed in
    torch X", not as a failure (--mark-fixed records it in the case).

    Exit status: 0 all reproduce (or are fixed in this torch), 1 some changed, failed to load,
    or were not run (need trust).
    """
    import torch

    from .corpus import CorpusError, iter_cases, replay_case, save_case

    counts = {"reproduces": 0, "fixed": 0, "changed": 0, "error": 0, "needs-trust": 0}
    click.echo(f"mtcheck replay: torch {torch.__version__}")
    for path, case in iter_cases(list(paths)):
        if isinstance(case, CorpusError):
            counts["error"] += 1
            click.echo(f"LOAD ERROR  {path}: {case}")
            continue
        res = replay_case(case, trust_imports=trust_imports)
        counts[res.status] += 1
        tag = {"reproduces": "REPRODUCES", "changed": "CHANGED   ", "error": "ERROR     ",
               "needs-trust": "NEEDS TRUST", "fixed": "FIXED     "}[res.status]
        how = f"  [{res.source or '-'}; certificate {res.certificate or 'none'}]" if res.status != "needs-trust" else ""
        rec = case.versions.get("torch", "?")
        fixed = f"  fixed in torch {res.fixed_in}" if res.status == "fixed" else ""
        click.echo(f"{tag}  {path}  {case.label}: {res.old_verdict} -> {res.new_verdict or 'not run'}{how}"
                   f"  (recorded with torch {rec}){fixed}")
        if res.status not in ("reproduces", "fixed"):
            click.echo("    " + res.text.replace("\n", "\n    "))
        if update and res.status == "changed" and res.report is not None:
            # a case's file name hashes what was checked, not the verdict: this rewrites it in place
            save_case(Path(path).parent, case.updated(res.report))
            click.echo("    updated the expectation")
        if mark_fixed and res.status == "fixed" and not res.marked and res.report is not None:
            save_case(Path(path).parent, case.marked_fixed(res.report))
            click.echo(f"    marked fixed in torch {res.fixed_in} (the recorded finding is kept for older torch)")
    trust = f", {counts['needs-trust']} need trust (not run; --trust-imports)" if counts["needs-trust"] else ""
    fixed = f", {counts['fixed']} fixed in a newer torch" if counts["fixed"] else ""
    click.echo(f"{counts['reproduces']} reproduce{fixed}, {counts['changed']} changed, {counts['error']} failed to "
               "load or run" + trust)
    sys.exit(EXIT_OK if counts["changed"] == counts["error"] == counts["needs-trust"] == 0 else EXIT_FINDINGS)


@main.command()
@click.option("--model", "target", default=None, help="zoo:<name> or package.module:factory.")
@click.option("--case", "case_path", type=click.Path(exists=True, path_type=Path), default=None,
              help="A saved corpus case to check.")
@click.option("--input", "input_path", type=click.Path(exists=True, path_type=Path), default=None,
              help="Inputs saved as .npz (allow_pickle=False) or .safetensors; default: the model's example inputs.")
@click.option("--dtype", type=click.Choice(_DTYPES), default=None)
@click.option("--input-shape", default=None)
@click.option("--max-pieces", type=int, default=8, show_default=True)
@click.option("--trust-imports", is_flag=True, help="With --case: import the factory from the case's search_path.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), default=None,
              help="Write a picture of the program along the witness direction (PNG).")
def check(target, case_path, input_path, dtype, input_shape, max_pieces, trust_imports, plot_path):
    """Run the exact checker on one model and one input and print the full report."""
    import mtcheck

    from .campaign import resolve_target

    if (target is None) == (case_path is None):
        click.echo("mtcheck check: give exactly one of --model and --case", err=True)
        sys.exit(EXIT_USAGE)
    try:
        if case_path is not None:
            from .corpus import build_program, load_case

            case = load_case(case_path)
            prog, inputs = build_program(case, trust_imports=trust_imports)
        else:
            shape = tuple(int(s) for s in input_shape.split(",")) if input_shape else None
            prog, inputs, _ = resolve_target(target, dtype, shape)
            if input_path is not None:
                inputs = _load_inputs(input_path)
        rep = mtcheck.check(prog, *inputs, max_pieces=max_pieces)
    except mtcheck.CheckInputError as e:
        click.echo(f"mtcheck check: {e}", err=True)
        sys.exit(EXIT_USAGE)
    except (KeyError, ValueError, ImportError) as e:
        click.echo(f"mtcheck check: {e}", err=True)
        sys.exit(EXIT_USAGE)
    click.echo(rep.explain())
    if plot_path is not None:
        from .plot import plot_witness

        try:
            plot_witness(prog, inputs, rep, plot_path)
            click.echo(f"plot: {plot_path}")
        except Exception as e:  # noqa: BLE001 - a picture must never hide the verdict
            click.echo(f"mtcheck check: no plot ({type(e).__name__}: {e})", err=True)
    sys.exit(EXIT_OK if rep.verdict.passed else EXIT_FINDINGS)


def _load_inputs(path: Path):
    import numpy as np
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        d = load_file(str(path))
        return tuple(d[k] for k in sorted(d))
    with np.load(path, allow_pickle=False) as z:
        return tuple(torch.from_numpy(z[k]) for k in sorted(z.files))


@main.command(name="report")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("report.html"), show_default=True)
@click.option("--no-replay", is_flag=True, help="Do not replay the cases (the page shows their recorded state).")
@click.option("--trust-imports", is_flag=True, help="As for replay: import factories from a case's search_path.")
def report_cmd(paths, output, no_replay, trust_imports):
    """Write one static HTML page about a corpus: findings, pictures, replay status, campaign statistics."""
    from .html_report import write_report

    out = write_report(list(paths), output, replay=not no_replay, trust_imports=trust_imports)
    click.echo(f"mtcheck report: wrote {out}")


@main.command(name="zoo")
def zoo_cmd():
    """List the built-in models."""
    from . import zoo

    for name, f in sorted(zoo.ZOO.items()):
        prog, inputs = f()
        shapes = ", ".join(str(tuple(x.shape)) for x in inputs)
        click.echo(f"zoo:{name:16} inputs {shapes}")


try:  # the catalogue lives with the property suite's op tables
    from .catalogue import catalogue_command as _catalogue
    from .catalogue_diff import with_diff_option as _with_diff

    main.add_command(_with_diff(_catalogue), name="catalogue")    # + --diff OLD.json [NEW.json]
except Exception:  # noqa: BLE001 - optional until the catalogue module exists
    pass


@main.command(name="opinfo", add_help_option=False, context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def opinfo_cmd(args):
    """Sweep PyTorch's OpInfo database: samples moved onto ties, every op judged (see --help).

    Prints `decided X/Y ops (Z%), N internal crashes`; exit status 0 without internal crashes,
    1 with, 2 usage error. The sweep lives in properties/opinfo_sweep.py (needs `expecttest`).
    """
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "properties" / "opinfo_sweep.py"
    if not path.exists():
        click.echo(f"mtcheck opinfo: {path} not found (the sweep ships with the source tree)", err=True)
        sys.exit(EXIT_USAGE)
    spec = importlib.util.spec_from_file_location("opinfo_sweep", path)
    mod = sys.modules["opinfo_sweep"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.exit(mod.main(list(args)))


if __name__ == "__main__":  # pragma: no cover
    main()
