"""Multi-head self-attention with packed qkv, optional per-head qk LayerNorm and optional 2D RoPE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vggt_ros.model.layers.rope import RopeTable


class Attention(nn.Module):
    """``proj(SDPA(rope(q_norm(q)), rope(k_norm(k)), v))`` over ``[B, N, C]`` tokens.

    Parameter names (``qkv``, ``q_norm``, ``k_norm``, ``proj``) match the checkpoint. The qkv rows are
    ``[q | k | v]``, heads contiguous within each. Uses PyTorch's fused scaled-dot-product attention
    (default scale 1/sqrt(head_dim)); any SDPA backend agrees with the reference to float tolerance.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, proj_bias: bool = True,
                 qk_norm: bool = False, qk_norm_eps: float = 1e-5) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=qk_norm_eps) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, eps=qk_norm_eps) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def forward(self, x: torch.Tensor, rope: RopeTable | None = None) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, heads, N, head_dim]
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rope.apply(q), rope.apply(k)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))
