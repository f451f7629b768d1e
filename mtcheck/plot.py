"""Pictures of a finding: the program along the witness direction.

``h -> f(x + h t)`` around ``h = 0`` for the witness's output and direction ``t`` (a
tangent direction of the stratum), evaluated by the program itself in its own dtype,
with two lines through ``f(x)``: slope ``J_fw t`` (PyTorch's gradient) and slope
``J_S t`` (the program's rate on the stratum, exact). When the gradient is wrong the
curve follows the stratum's line and the framework's line leaves it. The exact point
``(h, f(x + h t))`` the checker evaluated is marked.

matplotlib is imported here only (Agg, no pyplot state), when a picture is asked for.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path


def _frac(v) -> Fraction:
    if v is None:
        return None
    if isinstance(v, Fraction):
        return v
    if isinstance(v, (int, str)):
        return Fraction(v)
    if isinstance(v, float):
        return Fraction(v)
    p, q = getattr(v, "p", None), getattr(v, "q", None)       # flint.fmpq
    if p is not None and q is not None:
        return Fraction(int(p), int(q))
    return Fraction(str(v))


def witness_dict(w) -> dict | None:
    """A :class:`mtcheck.Witness` or a case's ``expected.witness`` as one dict of Fractions."""
    if w is None:
        return None
    if isinstance(w, dict):
        get = w.get
        out_i = int(get("output_index", 0))
        t = get("direction") or []
    else:
        def get(k, d=None):
            return getattr(w, k, d)
        out_i = int(w.output_index)
        t = w.direction
    return {"output_index": out_i, "direction": [_frac(v) for v in t],
            "framework_rate": _frac(get("framework_rate")), "stratum_rate": _frac(get("stratum_rate")),
            "h": _frac(get("h")), "f_x": _frac(get("f_x")), "f_x_plus_ht": _frac(get("f_x_plus_ht"))}


def _wrt(inputs, wrt):
    if wrt is not None:
        return [wrt] if isinstance(wrt, int) else list(wrt)
    floats = [i for i, x in enumerate(inputs) if x.is_floating_point()]
    marked = [i for i in floats if x_requires(inputs[i])]
    return marked or floats


def x_requires(x) -> bool:
    return bool(getattr(x, "requires_grad", False))


def samples(fn, inputs, w: dict, wrt=None, n: int = 161):
    """``(hs, values, H)``: the program's output ``w['output_index']`` at ``x + h t`` for ``n``
    steps ``h`` in ``[-H, H]``, computed by the program in its own dtype."""
    import torch
    import torch.utils._pytree as pytree

    wrt = _wrt(inputs, wrt)
    t = [float(v) for v in w["direction"]]
    scale = max((abs(v) for v in t), default=1.0) or 1.0
    H = float(w["h"]) * 4 if w.get("h") else 0.25 / scale
    hs = [H * (2 * k / (n - 1) - 1) for k in range(n)]
    vals = []
    base = [x.detach().to(torch.float64).reshape(-1) for x in inputs]
    for h in hs:
        ys, off = [], 0
        for i, x in enumerate(inputs):
            if i in wrt:
                k = x.numel()
                d = torch.tensor(t[off:off + k], dtype=torch.float64)
                ys.append((base[i] + h * d).to(x.dtype).reshape(x.shape))
                off += k
            else:
                ys.append(x.detach())
        with torch.no_grad():
            out = fn(*ys)
        flat = [o.detach().reshape(-1).to(torch.float64) for o in pytree.tree_leaves(out)
                if isinstance(o, torch.Tensor) and o.is_floating_point()]
        vals.append(float(torch.cat(flat)[w["output_index"]]) if flat else float("nan"))
    return hs, vals, H


def render(path, hs, vals, w: dict, *, title: str = "", subtitle: str = "") -> Path:
    """Draw the curve and the two rate lines into ``path`` (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    fx = float(w["f_x"]) if w.get("f_x") is not None else vals[len(vals) // 2]
    ax.plot(hs, vals, color="black", lw=2, label="f(x + h t)  (the program)")
    if w.get("stratum_rate") is not None:
        sr = float(w["stratum_rate"])
        ax.plot(hs, [fx + h * sr for h in hs], color="tab:green", ls="--", lw=1.5,
                label=f"stratum's rate J_S t = {_num(w['stratum_rate'])}")
    if w.get("framework_rate") is not None:
        fr = float(w["framework_rate"])
        ax.plot(hs, [fx + h * fr for h in hs], color="tab:red", ls="-.", lw=1.5,
                label=f"framework's rate J t = {_num(w['framework_rate'])}")
    ax.plot([0], [fx], "o", color="black")
    if w.get("h") is not None and w.get("f_x_plus_ht") is not None:
        ax.plot([float(w["h"])], [float(w["f_x_plus_ht"])], "s", color="tab:blue", ms=6,
                label="exact f(x + h t) checked")
    ax.axvline(0, color="0.8", lw=0.8, zorder=0)
    ax.set_xlabel("h  (step along the witness direction t)")
    ax.set_ylabel(f"output[{w['output_index']}]")
    ax.set_title(title or "the program along the witness direction", fontsize=10)
    if subtitle:
        fig.text(0.5, 0.005, subtitle, ha="center", va="bottom", fontsize=7, color="0.3")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _num(v) -> str:
    f = _frac(v)
    s = str(f)
    return s if len(s) <= 14 else f"{float(f):.6g}"


def plot_witness(fn, inputs, rep, path, wrt=None) -> Path:
    """``mtcheck check --plot``: the picture of ``rep`` (a Report) for ``fn`` at ``inputs``. Without a
    witness (a passing verdict), the program along the first input coordinate, with the framework's
    rate for output 0."""
    import torch

    w = witness_dict(rep.witness)
    sub = ""
    if w is None:
        n = sum(x.numel() for i, x in enumerate(inputs) if i in _wrt(inputs, wrt))
        J = rep.framework_jacobian
        w = {"output_index": 0, "direction": [Fraction(1)] + [Fraction(0)] * (n - 1),
             "framework_rate": Fraction(float(J[0, 0])) if J is not None and J.size else None,
             "stratum_rate": None, "h": None, "f_x": None, "f_x_plus_ht": None}
        sub = f"{rep.verdict}: no witness (the gradient is not wrong along a stratum direction); t = e_0"
    hs, vals, _ = samples(fn, [x if isinstance(x, torch.Tensor) else torch.as_tensor(x) for x in inputs], w, wrt)
    title = f"{rep.program or 'program'}: {rep.verdict}"
    return render(path, hs, vals, w, title=title, subtitle=sub or _direction_text(w))


def _direction_text(w) -> str:
    t = w["direction"]
    shown = ", ".join(_num(v) for v in t[:8]) + (", ..." if len(t) > 8 else "")
    return f"t = ({shown})"


def plot_case(case, path=None, *, trust_imports: bool = False) -> Path | None:
    """The picture of a saved finding (its recorded witness), next to the case as ``case-<sha1>.png``
    unless ``path`` is given. None when the case has no witness. Builds the program with
    :func:`mtcheck.corpus.resolve_program` (never importing untrusted code unless told)."""
    from .corpus import resolve_program

    w = witness_dict(case.expected.get("witness"))
    if w is None or not w["direction"]:
        return None
    fn, inputs, _ = resolve_program(case, trust_imports=trust_imports)
    if path is None:
        if case.path is None:
            raise ValueError("the case has no file: give path=")
        path = case.path.with_suffix(".png")
    hs, vals, _ = samples(fn, inputs, w, case.options.get("wrt"))
    return render(path, hs, vals, w, title=f"{case.label}: {case.verdict}", subtitle=_direction_text(w))


__all__ = ["plot_witness", "plot_case", "render", "samples", "witness_dict"]
