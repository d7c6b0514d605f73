"""Pre-norm transformer block with layer scale (DINOv2, aggregator and camera-trunk blocks)."""

from __future__ import annotations

import torch
from torch import nn

from vggt_ros.model.layers.attention import Attention
from vggt_ros.model.layers.layer_scale import LayerScale
from vggt_ros.model.layers.mlp import Mlp
from vggt_ros.model.layers.rope import RopeTable


class Block(nn.Module):
    """``x + ls1(attn(norm1(x)))`` then ``x + ls2(mlp(norm2(x)))``.

    ``norm_eps`` differs between configurations (1e-6 in DINOv2, 1e-5 in the aggregator and camera
    trunk) and must match the checkpoint's training to reproduce its outputs.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, norm_eps: float = 1e-5,
                 qk_norm: bool = False, layer_scale_init: float = 1.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qk_norm=qk_norm)
        self.ls1 = LayerScale(dim, layer_scale_init)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, layer_scale_init)

    def forward(self, x: torch.Tensor, rope: RopeTable | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rope=rope))
        return x + self.ls2(self.mlp(self.norm2(x)))
