"""Two-layer perceptron (Linear -> exact GELU -> Linear), the MLP of every transformer block."""

from __future__ import annotations

import torch
from torch import nn


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` with biases; GELU is the exact erf form (the checkpoint was trained so)."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None,
                 bias: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
