"""Track head (spec section 6): half-resolution DPT feature extractor + iterative tracker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from vggt_ros.model.heads.dpt_head import DPTHead
from vggt_ros.model.heads.tracker import TRACK_STRIDE, Tracker


class TrackHead(nn.Module):
    """Tracks frame-0 query points through all frames of each scene.

    ``config`` needs the ``VGGTConfig`` fields embed_dim, patch_size, dpt_out_channels,
    intermediate_layer_idx and the ``track_*`` fields.
    """

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.iters = int(config.track_iters)
        self.feature_extractor = DPTHead(
            2 * config.embed_dim,
            patch_size=config.patch_size,
            features=config.track_features,
            out_channels=config.dpt_out_channels,
            intermediate_layer_idx=config.intermediate_layer_idx,
            pos_embed=False,
            feature_only=True,
            down_ratio=TRACK_STRIDE,
        )
        self.tracker = Tracker(
            latent_dim=config.track_features,
            corr_levels=config.track_corr_levels,
            corr_radius=config.track_corr_radius,
            hidden_size=config.track_hidden_size,
            depth=config.track_depth,
            num_heads=config.track_num_heads,
            num_virtual_tracks=config.track_num_virtual_tracks,
        )

    def forward(
        self,
        aggregated_tokens: Mapping[int, torch.Tensor] | Sequence[torch.Tensor],
        images: torch.Tensor,
        patch_start_idx: int,
        query_points: torch.Tensor,
        iters: int | None = None,
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Track ``query_points [B,N,2]`` (frame-0 input pixels); ``iters`` None = config.track_iters.

        Returns (track_list: ``[B,S,N,2]`` input pixels per iteration, vis ``[B,S,N]``, conf ``[B,S,N]``).
        """
        fmaps = self.feature_extractor(aggregated_tokens, images, patch_start_idx)
        return self.tracker(query_points, fmaps, iters=self.iters if iters is None else iters)
