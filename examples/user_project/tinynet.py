"""A small CNN with a hand-written max-pool whose backward is wrong only at ties.

``TieMaxPool2d.backward`` sends the incoming gradient to *every* entry of a window that
attains the maximum. Off ties a window has one maximum and this is exactly PyTorch's
max-pool gradient; at a tie (two equal entries) the gradient is counted twice, which no
representation of the program explains (mtcheck: NOT_ASSOCIATED).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class TieMaxPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        out = F.max_pool2d(x, 2)
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        winners = (x == F.interpolate(out, scale_factor=2, mode="nearest")).to(grad.dtype)
        return winners * F.interpolate(grad, scale_factor=2, mode="nearest")   # bug: all tied winners


class TinyNet(nn.Module):
    """conv -> relu -> (custom) max-pool -> residual block -> max-pool -> linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.b1 = nn.Conv2d(4, 4, 3, padding=1)
        self.b2 = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4 * 2 * 2, 3)

    def forward(self, x):
        x = TieMaxPool2d.apply(F.relu(self.stem(x)))
        y = F.relu(self.b1(x))
        x = F.relu(x + self.b2(y))
        x = F.max_pool2d(x, 2)
        return self.head(x.flatten(1))
