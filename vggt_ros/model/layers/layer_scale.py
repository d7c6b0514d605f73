"""Per-channel learned residual scaling (CaiT/DINOv2 "layer scale")."""

from __future__ import annotations

import torch
from torch import nn


class LayerScale(nn.Module):
    """``x * gamma`` with a learned per-channel ``gamma`` (state-dict key ``gamma``)."""

    def __init__(self, dim: int, init_value: float = 1.0) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma
