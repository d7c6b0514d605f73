"""Update former: alternating time / space attention over tracks with virtual tracks (spec 6.3)."""

from __future__ import annotations

import torch
from torch import nn

from vggt_ros.model.heads.track_blocks import CrossAttentionBlock, SelfAttentionBlock


class UpdateFormer(nn.Module):
    """Maps per-(track, frame) tokens ``[B, N, S, in_dim]`` to updates ``[B, N, S, out_dim]``.

    Space attention is routed through a small set of learned virtual tracks (points ↔ virtuals), so its
    cost is linear in the number of query points.
    """

    def __init__(
        self, in_dim: int, hidden_size: int, out_dim: int, depth: int, num_heads: int, num_virtual_tracks: int
    ) -> None:
        super().__init__()
        self.num_virtual_tracks = num_virtual_tracks
        self.virual_tracks = nn.Parameter(
            torch.zeros(1, num_virtual_tracks, 1, hidden_size)
        )  # sic: checkpoint key
        self.input_norm = nn.LayerNorm(in_dim, eps=1e-5)
        self.input_transform = nn.Linear(in_dim, hidden_size)
        self.output_norm = nn.LayerNorm(hidden_size, eps=1e-5)
        self.flow_head = nn.Linear(hidden_size, out_dim)
        self.time_blocks = nn.ModuleList(SelfAttentionBlock(hidden_size, num_heads) for _ in range(depth))
        self.space_virtual_blocks = nn.ModuleList(
            SelfAttentionBlock(hidden_size, num_heads) for _ in range(depth)
        )
        self.space_point2virtual_blocks = nn.ModuleList(
            CrossAttentionBlock(hidden_size, num_heads) for _ in range(depth)
        )
        self.space_virtual2point_blocks = nn.ModuleList(
            CrossAttentionBlock(hidden_size, num_heads) for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, num_points, frames, _ = x.shape
        init_tokens = self.input_transform(self.input_norm(x))
        virtual = self.virual_tracks.expand(batch, -1, frames, -1)
        tokens = torch.cat([init_tokens, virtual], dim=1)
        total = tokens.shape[1]
        dim = tokens.shape[-1]
        for i in range(len(self.time_blocks)):
            tokens = self.time_blocks[i](tokens.reshape(batch * total, frames, dim)).reshape(
                batch, total, frames, dim
            )
            space = tokens.permute(0, 2, 1, 3).reshape(batch * frames, total, dim)
            points, virtual = space[:, :num_points], space[:, num_points:]
            virtual = self.space_virtual2point_blocks[i](virtual, points)
            virtual = self.space_virtual_blocks[i](virtual)
            points = self.space_point2virtual_blocks[i](points, virtual)
            space = torch.cat([points, virtual], dim=1)
            tokens = space.reshape(batch, frames, total, dim).permute(0, 2, 1, 3)
        tokens = tokens[:, :num_points] + init_tokens
        return self.flow_head(self.output_norm(tokens))
