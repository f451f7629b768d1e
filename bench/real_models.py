"""Cost of the exact check on real-weight float32 models, against gradcheck and a full Jacobian.

    python bench/real_models.py [--models lenet-f32,vgg-f32] [--repeat N] [--gradcheck-vgg11]

Models (``mtcheck.zoo``): PyTorch default-initialised float32 networks, not rounded, at
tie-heavy inputs: ``lenet-f32`` (LeNet-5-like on a digit-like 1x28x28 image, zero
background), ``lenet-f32-bad-maxpool`` (the same, with a planted max-pool backward that
gives every tied entry the full gradient: expect NOT_ASSOCIATED with a witness),
``resnet-bn-f32`` (a small residual CNN with BatchNorm, non-trivial running statistics),
``vgg-f32`` (VGG-style 16-32-64) and ``vgg11-f32`` (VGG11, 9.2M weights), the last three at
a 3x32x32 image of constant 8x8 blocks.

Per model, in one fresh single-threaded process (``--one NAME``, started by this script,
so that the peak RSS is that model's alone; every timing of a model is taken in its process):

* check: ``mtcheck.check(model, x)`` with default options, the median of ``--repeat`` runs
  (default 3) after one warm-up check; its verdict, the number of inputs and of ties
  (``rep.pattern.n_ties``);
* gradcheck: one ``torch.autograd.gradcheck`` of a float64 copy of the model at the
  float64 input (``fast_mode=False``, eps=1e-6, atol=1e-5, rtol=1e-3), timed once; skipped
  for vgg11-f32 (3072 inputs, 9.2M weights: 6144 forward passes) unless ``--gradcheck-vgg11``;
* jacobian: one forward and one reverse-mode VJP per output (``torch.autograd.grad``,
  ``retain_graph=True``) of the float32 model, the median of 5;
* peak RSS: ``ru_maxrss`` of the model's process (torch and mtcheck imports included), MB.

It prints check/gradcheck and check/jacobian and the targets beside each row: lenet
check <= 0.5x gradcheck, <= 50x jacobian and RSS < 500 MB; resnet and vgg <= 1x
gradcheck; vgg11 <= 30 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

MODELS = ("lenet-f32", "lenet-f32-bad-maxpool", "resnet-bn-f32", "vgg-f32", "vgg11-f32", "lenet-f32-ce",
          "transformer-f32")


class _WithLoss(torch.nn.Module):
    """``F.cross_entropy(model(x), label)``: a scalar loss, as users check a model with its loss."""

    def __init__(self, model, label):
        super().__init__()
        self.model, self.label = model, label

    def forward(self, x):
        return torch.nn.functional.cross_entropy(self.model(x), self.label)


def _lenet_ce():
    from mtcheck import zoo

    m, (x,) = zoo.lenet_f32()
    return _WithLoss(m, torch.tensor([3])).eval(), (x,)


def _transformer():
    """nn.TransformerEncoderLayer(d_model=64, nhead=4), default init, eval, float32, on 16 tokens
    of which tokens 0 and 1 are equal and token 2 is zero."""
    torch.manual_seed(0)
    m = torch.nn.TransformerEncoderLayer(64, 4, batch_first=True).eval()
    x = torch.randn(1, 16, 64)
    x[0, 1] = x[0, 0]
    x[0, 2] = 0
    return m, (x,)


_EXTRA = {"lenet-f32-ce": _lenet_ce, "transformer-f32": _transformer}
JACOBIAN_REPEAT = 5
VGG11_TARGET_S = 30.0


def _median_time(fn, repeat):
    ts, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), out


def _jacobian(model, x):
    xx = x.detach().requires_grad_()
    y = model(xx).reshape(-1)
    rows = [torch.autograd.grad(y[i], xx, retain_graph=True)[0] for i in range(y.numel())]
    return torch.stack(rows)


def measure(name: str, repeat: int, gradcheck_vgg11: bool) -> dict:
    """Every measurement of one model, in this process."""
    import copy
    import resource

    import mtcheck
    from mtcheck import zoo

    model, (x,) = _EXTRA[name]() if name in _EXTRA else zoo.ZOO[name]()
    row = {"model": name, "n": x.numel(), "params": sum(p.numel() for p in model.parameters())}
    try:
        mtcheck.check(model, x)                                         # warm-up (imports, caches)
        row["check_s"], rep = _median_time(lambda: mtcheck.check(model, x), repeat)
        row["verdict"] = str(rep.verdict)
        pat = getattr(rep, "pattern", None)
        row["ties"] = getattr(pat, "n_ties", None)
        row["witness"] = getattr(rep, "witness", None) is not None
        row["certificate_ok"] = getattr(rep, "certificate_ok", None)
        timings = getattr(rep, "timings", None) or {}
        row["stages"] = {k: round(float(v), 4) for k, v in timings.items()}
    except Exception as e:  # noqa: BLE001 - the engine may be mid-rewrite: report, measure the rest
        row["check_s"] = None
        row["verdict"] = f"ERROR {type(e).__name__}: {str(e).strip().splitlines()[0][:80] if str(e).strip() else ''}"

    if name == "vgg11-f32" and not gradcheck_vgg11:
        row["gradcheck_s"], row["gradcheck"] = None, "skipped (--gradcheck-vgg11)"
    else:
        m64 = copy.deepcopy(model).double()
        x64 = x.detach().double().requires_grad_()
        t = time.perf_counter()
        ok = torch.autograd.gradcheck(m64, (x64,), eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=False,
                                      fast_mode=False)
        row["gradcheck_s"] = time.perf_counter() - t
        row["gradcheck"] = "passed" if ok else "FAILED"
        del m64

    _jacobian(model, x)                                                 # warm-up
    row["jacobian_s"], _ = _median_time(lambda: _jacobian(model, x), JACOBIAN_REPEAT)
    row["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KB on Linux
    return row


def _targets(r) -> str:
    """The targets of a row, each marked ok / MISSED / ? (not measured)."""
    def mark(cond):
        return "?" if cond is None else ("ok" if cond else "MISSED")

    c, g, j = r.get("check_s"), r.get("gradcheck_s"), r.get("jacobian_s")
    cg = c / g if c is not None and g else None
    cj = c / j if c is not None and j else None
    name = r["model"]
    out = []
    if name == "lenet-f32-ce":
        out.append(f"<=1x gc {mark(None if cg is None else cg <= 1.0)}")
    elif name.startswith("lenet"):
        out.append(f"<=0.5x gc {mark(None if cg is None else cg <= 0.5)}")
        out.append(f"<=50x jac {mark(None if cj is None else cj <= 50)}")
        out.append(f"RSS<500MB {mark(None if r.get('rss_mb') is None else r['rss_mb'] < 500)}")
        if name == "lenet-f32-bad-maxpool":
            v = r.get("verdict", "")
            out.append(f"NOT_ASSOCIATED {mark(v == 'NOT_ASSOCIATED')}")
    elif name == "vgg11-f32":
        out.append(f"<={VGG11_TARGET_S:.0f}s {mark(None if c is None else c <= VGG11_TARGET_S)}")
    elif name == "transformer-f32":
        out.append(f"<=5s {mark(None if c is None else c <= 5.0)}")
    else:
        out.append(f"<=1x gc {mark(None if cg is None else cg <= 1.0)}")
    return ", ".join(out)


def _fmt_s(v):
    return f"{v:9.3f}s" if v is not None else f"{'-':>10}"


def _ratio(a, b):
    return f"{a / b:9.2f}" if a is not None and b else f"{'-':>9}"


def print_table(rows):
    print(f"{'model':22} {'n':>5} {'ties':>5} {'verdict':15} {'check':>10} {'gradcheck':>10} {'jacobian':>10} "
          f"{'chk/gc':>9} {'chk/jac':>9} {'RSS MB':>7}  targets")
    for r in rows:
        if "failed" in r:
            print(f"{r['model']:22} run failed: {r['failed']}")
            continue
        ties = r.get("ties")
        print(f"{r['model']:22} {r['n']:5d} {ties if ties is not None else '-':>5} {r['verdict'][:15]:15} "
              f"{_fmt_s(r.get('check_s'))} {_fmt_s(r.get('gradcheck_s'))} {_fmt_s(r.get('jacobian_s'))} "
              f"{_ratio(r.get('check_s'), r.get('gradcheck_s'))} {_ratio(r.get('check_s'), r.get('jacobian_s'))} "
              f"{r['rss_mb']:7.0f}  {_targets(r)}")
    for r in rows:
        if "failed" in r:
            continue
        notes = [f"gradcheck {r['gradcheck']}", f"{r['params']} weights"]
        if r["model"] == "lenet-f32-bad-maxpool":
            notes.append(f"witness {'present' if r.get('witness') else 'absent'}")
            notes.append(f"certificate_ok {r.get('certificate_ok')}")
        if r["model"] == "vgg11-f32" and r.get("check_s") is not None:
            notes.append(f"check {r['check_s']:.1f} s against the {VGG11_TARGET_S:.0f} s target")
        if r["verdict"].startswith("ERROR"):
            notes.append(r["verdict"])
        print(f"{r['model']}: " + "; ".join(notes))
        if r.get("stages"):
            print("  check stages: " + ", ".join(f"{k} {v * 1e3:.0f}ms" for k, v in r["stages"].items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    ap.add_argument("--repeat", type=int, default=3, help="timed checks per model (median; after one warm-up)")
    ap.add_argument("--gradcheck-vgg11", action="store_true", help="also run gradcheck on vgg11-f32 (slow)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per model process (default: none)")
    ap.add_argument("--one", metavar="NAME", help=argparse.SUPPRESS)   # internal: measure one model, print JSON
    args = ap.parse_args()

    if args.one:
        torch.set_num_threads(1)
        print("RESULT " + json.dumps(measure(args.one, args.repeat, args.gradcheck_vgg11)), flush=True)
        return

    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    rows = []
    for name in names:
        cmd = [sys.executable, os.path.abspath(__file__), "--one", name, "--repeat", str(args.repeat)]
        if args.gradcheck_vgg11:
            cmd.append("--gradcheck-vgg11")
        t = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            rows.append({"model": name, "failed": f"timed out after {args.timeout:.0f} s"})
            continue
        res = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
        if p.returncode != 0 or not res:
            tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
            rows.append({"model": name, "failed": f"exit {p.returncode}: {tail[:150]}"})
            continue
        rows.append(json.loads(res[-1][len("RESULT "):]))
        print(f"# {name} measured in {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    print(f"torch {torch.__version__}, 1 thread; check: median of {args.repeat} after a warm-up; "
          f"gradcheck: 1 call, float64 copy; jacobian: median of {JACOBIAN_REPEAT}")
    print_table(rows)


if __name__ == "__main__":
    main()
