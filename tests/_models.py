"""Small real torch models shared by the graph and distance tests."""
import numpy as np
import torch
from torch import nn


def small_mlp(seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """nn.Sequential(Linear(4,5), Tanh, Linear(5,3)) with N(0,1) parameters from ``seed``."""
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).to(dtype)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=dtype))
    return model


def flat(model: nn.Module) -> np.ndarray:
    """The model's parameters as a fresh numpy vector (torch's parameters_to_vector order)."""
    return nn.utils.parameters_to_vector(model.parameters()).detach().numpy().copy()
