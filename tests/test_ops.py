"""Every op of the exact model: its exact forward replays float64 exactly on dyadic
data, and PyTorch's gradient at tie-heavy inputs is associated."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mtcheck
from mtcheck import Verdict, zoo

D = torch.float64


def grid(*shape, seed=0, lo=-2, hi=2, den=2):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(lo * den, hi * den + 1, shape, generator=g) / den).to(D)


def ties(*shape, seed=0):
    """Values from a coarse grid, so that windows and kinks tie often."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-1, 2, shape, generator=g).to(D)


def dy(m, seed=0):
    return zoo.dyadic_(m.to(D), seed, bits=2).eval()


W = grid(4, 3, seed=1)
B = grid(4, seed=2)

PROGRAMS = {
    "linear": (lambda x: F.linear(x, W, B), ties(2, 3)),
    "linear-1d": (lambda x: F.linear(x, W), ties(3)),
    "mm": (lambda x: x @ W.T, ties(2, 3)),
    "matmul-batched": (lambda x: torch.matmul(x, W.T), ties(2, 2, 3)),
    "bmm": (lambda x: torch.bmm(x, x.transpose(1, 2)), ties(2, 2, 3)),
    "addmm": (lambda x: torch.addmm(B, x, W.T, beta=0.5, alpha=2.0), ties(2, 3)),
    "conv1d": (dy(nn.Conv1d(2, 3, 3, stride=2, padding=1, dilation=1)), ties(1, 2, 7)),
    "conv2d": (dy(nn.Conv2d(2, 4, 3, stride=1, padding=1, groups=2)), ties(1, 2, 5, 5)),
    "conv2d-dilated": (dy(nn.Conv2d(1, 2, 2, stride=2, dilation=2, bias=False)), ties(2, 1, 6, 6)),
    "add-sub-neg-mul-div": (lambda x: (x + 1) - (-x) * 3 / 4 - x / 2, ties(5)),
    "mul-div-of-inputs": (lambda x: torch.relu(x * x.flip(0)) + x / (x.abs() + 2), ties(5)),
    "sum-mean": (lambda x: torch.stack([x.sum(), x.mean(), x.sum(0).mean()]), ties(3, 4)),
    "views": (lambda x: x.view(2, 6).reshape(3, 4).flatten().reshape(2, 2, 3).permute(2, 0, 1).transpose(0, 1)
              .unsqueeze(0).squeeze(0).expand(2, 3, 2).contiguous(), ties(12)),
    "indexing": (lambda x: torch.cat([x[1:3], x[0:1], x.select(0, 2).unsqueeze(0)]).narrow(0, 1, 2), ties(4, 3)),
    "stack": (lambda x: torch.stack([x, 2 * x], dim=1), ties(3)),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 2, stride=1, padding=1, count_include_pad=False), ties(1, 1, 4, 4)),
    "avg_pool2d-ceil": (lambda x: F.avg_pool2d(x, 3, stride=2, ceil_mode=True, padding=1), ties(1, 2, 5, 5)),
    "avg_pool1d": (lambda x: F.avg_pool1d(x, 2), ties(1, 2, 6)),
    "batch_norm-eval": (lambda x: F.batch_norm(x, torch.tensor([0.5, -1.0], dtype=D), torch.tensor([0.25, 4.0], dtype=D),
                                               torch.tensor([2.0, 1.0], dtype=D), torch.tensor([0.0, 1.0], dtype=D),
                                               training=False, eps=0.0), ties(2, 2, 3)),
    "dropout-eval": (dy(nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))), ties(2, 3)),
    "relu": (torch.relu, ties(6)),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.25), ties(6)),
    "hardtanh": (lambda x: F.hardtanh(x, -1.0, 0.5), ties(6)),
    "relu6": (lambda x: F.relu6(6 * x), ties(6)),
    "clamp-scalar": (lambda x: torch.clamp(x, -1.0, 1.0), ties(6)),
    "clamp-tensor": (lambda x: torch.clamp(x[0], min=x[1], max=x[2] + 1), ties(3, 4)),
    "clamp_min": (lambda x: x.clamp_min(0.0), ties(5)),
    "abs": (torch.abs, ties(6)),
    "max-all": (lambda x: x.max(), ties(2, 3)),
    "min-all": (lambda x: x.min(), ties(2, 3)),
    "amax": (lambda x: torch.amax(x, dim=1), ties(3, 4)),
    "amin-keepdim": (lambda x: torch.amin(x, dim=(0, 2), keepdim=True), ties(2, 2, 3)),
    "max-dim": (lambda x: x.max(dim=0).values, ties(3, 4)),
    "min-dim-keepdim": (lambda x: x.min(dim=1, keepdim=True).values, ties(3, 4)),
    "maximum": (lambda x: torch.maximum(x[0], x[1]), ties(2, 5)),
    "minimum-broadcast": (lambda x: torch.minimum(x, x[:1]), ties(3, 2)),
    "fmax-fmin": (lambda x: torch.fmax(x[0], x[1]) + torch.fmin(x[0], x[1]), ties(2, 5)),
    "max_pool1d": (lambda x: F.max_pool1d(x, 3, stride=1, padding=1), ties(1, 1, 7)),
    "max_pool2d": (lambda x: F.max_pool2d(x, 2), ties(1, 2, 4, 4)),
    "max_pool2d-overlap-pad-dil-ceil": (lambda x: F.max_pool2d(x, 3, stride=2, padding=1, dilation=1, ceil_mode=True),
                                        ties(1, 1, 6, 6)),
    "max_pool2d-dilation": (lambda x: F.max_pool2d(x, 2, stride=1, dilation=2), ties(1, 1, 5, 5)),
    "max_pool3d": (lambda x: F.max_pool3d(x, 2), ties(1, 1, 2, 4, 4)),
    "adaptive_max_pool1d": (lambda x: F.adaptive_max_pool1d(x, 3), ties(1, 2, 7)),
    "adaptive_max_pool2d": (lambda x: F.adaptive_max_pool2d(x, (2, 3)), ties(1, 1, 5, 5)),
    "adaptive_avg_pool2d": (lambda x: F.adaptive_avg_pool2d(x, 2), ties(1, 1, 5, 5)),
    "where-comparison": (lambda x: torch.where(x > 0, x, 0.5 * x) + torch.where(x <= x.flip(0), x, -x), ties(6)),
    "python-branch": (zoo.max1, ties(5)),
    "pad": (lambda x: F.pad(x, (1, 2), value=0.5), ties(2, 3)),
    "residual-cnn": (zoo.residual_cnn()[0], zoo.residual_cnn()[1][0]),
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_op_is_exact_and_associated(name):
    fn, x = PROGRAMS[name]
    rep = mtcheck.check(fn, x, neighbours=False)
    assert rep.verdict in (Verdict.SMOOTH_OK, Verdict.ASSOCIATED), rep.explain()
    assert rep.exact_mode or rep.notes, rep.explain()


def test_exact_forward_values_match_float64():
    from mtcheck._exact import from_tensor
    from mtcheck.model import ExactModel
    from mtcheck.trace import prepare_inputs, trace

    for name, (fn, x) in PROGRAMS.items():
        leaves, wrt = prepare_inputs((x,), None)
        tr = trace(fn, leaves)
        ev = ExactModel(tr).evaluate([from_tensor(leaves[0])])
        exact = ExactModel(tr).output_values(ev)
        if getattr(exact, "rad", None) is not None:
            continue               # irrational values (enclosed): nothing to compare exactly
        got = torch.cat([t.detach().reshape(-1) for t in tr.out_tensors if t is not None])
        dyadic = [int(v.q) & (int(v.q) - 1) == 0 for v in exact.tolist()]
        fw = from_tensor(got)
        for d, e, f in zip(dyadic, exact.tolist(), fw.tolist()):
            if d:      # representable: float64 must give it exactly
                assert e == f, name
            else:      # e.g. an average over 9 entries: float64 rounds it, by at most an ulp or two
                assert abs(float(e) - float(f)) <= 4e-16 * max(1.0, abs(float(e))), name


def test_supported_ops_lists_the_registry():
    ops = mtcheck.supported_ops()
    for op in ("aten.relu.default", "aten.max_pool2d_with_indices.default", "aten.convolution.default",
               "aten.gt.Tensor", "aten.clamp.Tensor", "aten.adaptive_max_pool2d.default"):
        assert op in ops


# the modules that register by what is already loaded (register_new, _reject_new), and a few that
# come after them: since the package fills the registry on import, any first module gives the same
_RULE_MODULES = ["extra", "extra_index", "smooth", "special", "rnn"]


def test_rule_registry_does_not_depend_on_import_order():
    """Importing any rule module first (a test module, a corpus replay or a user's import does)
    gives the same registry as the package's own order: once "two rules for aten.convolution"
    when mtcheck.ops.extra came first, and a replay in one xdist worker saw "two rules for aten.log"."""
    import json
    import subprocess
    import sys

    probe = ("import importlib, json, sys\n"
             "first = sys.argv[1]\n"
             "if first: importlib.import_module('mtcheck.ops.' + first)\n"
             "from mtcheck import ops\n"
             "names = ops.supported_ops()\n"
             "print(json.dumps({n: type(getattr(ops._RULES[n], 'base', ops._RULES[n])).__module__ for n in names}))\n")
    ref = json.loads(subprocess.run([sys.executable, "-c", probe, ""], capture_output=True, text=True,
                                    check=True).stdout)
    for mod in _RULE_MODULES:
        out = subprocess.run([sys.executable, "-c", probe, mod], capture_output=True, text=True)
        assert out.returncode == 0, (mod, out.stderr[-400:])
        got = json.loads(out.stdout)
        assert got == ref, (mod, {n: (ref.get(n), got.get(n)) for n in set(ref) | set(got) if ref.get(n) != got.get(n)})
