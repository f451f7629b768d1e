"""Programs with deliberately wrong backward rules, for campaign and plugin tests."""

import torch
import torch.nn as nn


class MaxBoth(torch.autograd.Function):
    """max over the last dim whose backward gives the full gradient to every tied entry."""

    @staticmethod
    def forward(ctx, x):
        m = x.amax(dim=-1, keepdim=True)
        ctx.save_for_backward(x, m)
        return m.squeeze(-1)

    @staticmethod
    def backward(ctx, g):
        x, m = ctx.saved_tensors
        return g.unsqueeze(-1) * (x == m).to(g.dtype)


class PlantedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 0, 1.0]]))
            self.lin.bias.zero_()

    def forward(self, x):
        return MaxBoth.apply(torch.relu(self.lin(x)))


def planted():
    """A model that is wrong only at ties (rows 0 and 1 always tie): (model, example inputs)."""
    return PlantedNet().double().eval(), (torch.tensor([[0.5, 0.25, -1.0, 0.0]], dtype=torch.float64),)


def slow_ok():
    """A correct model, for interrupt tests."""
    m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2)).double().eval()
    from mtcheck import zoo

    zoo.dyadic_(m)
    return m, (torch.zeros(1, 8, dtype=torch.float64),)
