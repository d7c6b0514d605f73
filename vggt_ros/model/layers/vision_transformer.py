"""DINOv2 ViT with register tokens, used as VGGT's per-frame patch embedder (spec section 3.1).

Only the normalised patch tokens are returned; the cls and register outputs are discarded (they still
take part in attention). ``mask_token`` exists for strict checkpoint loading only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vggt_ros.model.layers.block import Block


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection ``Conv(3 -> E, k=s=patch)``, flattened row-major."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {self.patch_size}")
        return self.proj(x).flatten(2).transpose(1, 2)  # [N, h*w, E], token = r*w + c


class DinoVisionTransformer(nn.Module):
    """DINOv2-reg ViT: patch conv, cls + learned 2D pos-embed, registers, blocks, final LayerNorm."""

    def __init__(self, img_size: int = 518, patch_size: int = 14, embed_dim: int = 1024, depth: int = 24,
                 num_heads: int = 16, mlp_ratio: float = 4.0, num_register_tokens: int = 4,
                 norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.grid_size = img_size // patch_size
        self.num_register_tokens = num_register_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid_size**2, embed_dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, norm_eps=norm_eps, qk_norm=False) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        self._init_tokens()

    @torch.no_grad()
    def _init_tokens(self) -> None:
        # Only relevant without a checkpoint (e.g. smoke tests): small random tokens, not zeros.
        if self.pos_embed.is_meta:
            return
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        nn.init.normal_(self.register_tokens, std=1e-6)

    def interpolate_pos_encoding(self, h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
        """Position table ``[1, 1 + h*w, E]`` for an h x w patch grid.

        The stored grid is used unchanged only for exactly the training grid (img_size x img_size);
        otherwise it is resized in float32 with antialiased bicubic to an explicit size. Antialias
        matters even when upsampling (it selects a different cubic kernel).
        """
        pos = self.pos_embed
        if h == self.grid_size and w == self.grid_size:
            return pos.to(dtype)
        e = pos.shape[-1]
        cls_pos = pos[:, :1]
        grid = pos[:, 1:].float().reshape(1, self.grid_size, self.grid_size, e).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
        grid = grid.permute(0, 2, 3, 1).reshape(1, h * w, e)
        return torch.cat([cls_pos, grid.to(cls_pos.dtype)], dim=1).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images ``[N, 3, H, W]`` -> patch tokens ``[N, h*w, E]`` (final norm applied)."""
        n, _, height, width = x.shape
        h, w = height // self.patch_size, width // self.patch_size
        tokens = self.patch_embed(x)
        # torch.cat promotes to the widest dtype: under autocast the half-precision conv output joins
        # the float32 cls/register tokens and the residual stream stays float32 (as in the reference).
        tokens = torch.cat([self.cls_token.expand(n, -1, -1), tokens], dim=1)
        tokens = tokens + self.interpolate_pos_encoding(h, w, tokens.dtype)
        registers = self.register_tokens.expand(n, -1, -1)
        tokens = torch.cat([tokens[:, :1], registers, tokens[:, 1:]], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm(tokens)
        return tokens[:, 1 + self.num_register_tokens:]
