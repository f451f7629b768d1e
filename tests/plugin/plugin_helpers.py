"""Helpers shared by the plugin's tests (a module of its own: `conftest` is not importable by name)."""

import json
import shutil
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

TINY_MODELS = textwrap.dedent('''
    """Tiny programs for the plugin tests: a max over pairs, right and wrong at ties."""
    import torch
    import torch.nn as nn


    class AllTiedMax(torch.autograd.Function):
        """max over consecutive pairs; backward sends the gradient to BOTH entries of a tie (a bug)."""

        @staticmethod
        def forward(ctx, x):
            p = x.reshape(-1, 2)
            out = p.amax(-1)
            ctx.save_for_backward(p, out)
            return out

        @staticmethod
        def backward(ctx, g):
            p, out = ctx.saved_tensors
            return ((p == out[:, None]).to(g.dtype) * g[:, None]).reshape(-1)


    class BadNet(nn.Module):
        def forward(self, x):
            return AllTiedMax.apply(x).sum()


    class GoodNet(nn.Module):
        def forward(self, x):
            return x.reshape(-1, 2).amax(-1).sum()


    class Affine(nn.Module):
        """A module with weights (exercises the safetensors sidecar)."""

        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2)
            with torch.no_grad():
                self.lin.weight.copy_(torch.tensor([[0.5, -0.25, 1.0, 0.0], [0.0, 0.75, -1.0, 0.5]]))
                self.lin.bias.copy_(torch.tensor([0.25, -0.5]))

        def forward(self, x):
            return torch.relu(self.lin(x))


    def make_bad():
        return BadNet(), torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)


    def make_good():
        return GoodNet(), torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
''')

BAD_TEST = textwrap.dedent('''
    import torch
    from tinymodels import BadNet

    def test_bad(mtcheck):
        mtcheck.fuzz(BadNet(), torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64), max_examples=5)
''')

GOOD_TEST = textwrap.dedent('''
    import torch
    from tinymodels import GoodNet

    def test_good(mtcheck):
        mtcheck.fuzz(GoodNet(), torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64))
''')


def case_files(path):
    return sorted(p for p in Path(path).rglob("case-*.json"))


def copy_paper_corpus(dest):
    """The repo's corpus/ (the paper's examples) copied into ``dest``; returns the case paths."""
    import json

    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for p in sorted((REPO / "corpus").glob("case-*.json")):
        if json.loads(p.read_text()).get("origin", {}).get("source") != "the paper":
            continue                      # corpus/ also holds the property suite's findings
        for q in sorted((REPO / "corpus").glob(p.stem + ".*")):
            shutil.copy(q, dest / q.name)
        out.append(dest / p.name)
    return out


def edit_case(path, fn):
    """Rewrite a case file's JSON through ``fn(doc)``."""
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc, indent=1))
