import torch

from tinynet import TinyNet


def test_gradients_at_ties(mtcheck):
    torch.manual_seed(0)
    model = TinyNet().eval()              # float32 weights from PyTorch's own initialisation
    x = torch.randn(1, 1, 8, 8)           # an ordinary example input: no ties
    mtcheck.fuzz(model, x, max_examples=10)
