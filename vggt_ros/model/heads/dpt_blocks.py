"""DPT refinement building blocks: residual conv unit and feature fusion block (spec 5.3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualConvUnit(nn.Module):
    """``relu(x) + conv2(relu(conv1(relu(x))))``.

    The skip carries the *rectified* input: the checkpoint was trained with an in-place ReLU that
    overwrote the input before it was added back (checklist 9.1). We reproduce the value without
    mutating the caller's tensor.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, stride=1, padding=1, bias=True)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, stride=1, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rectified = F.relu(x)
        return self.conv2(F.relu(self.conv1(rectified))) + rectified


class FeatureFusionBlock(nn.Module):
    """Fuse a coarser path with a skip map, refine, upsample (bilinear, align_corners) and project."""

    def __init__(self, features: int, has_residual: bool = True) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, kernel_size=1, stride=1, padding=0, bias=True)
        if has_residual:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)
        self.has_residual = has_residual

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor | None = None, size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """``size`` None means exactly 2× each side (the last fusion step)."""
        if self.has_residual:
            if skip is None:
                raise ValueError("this fusion block expects a skip map")
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            size = (x.shape[-2] * 2, x.shape[-1] * 2)
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
        return self.out_conv(x)
