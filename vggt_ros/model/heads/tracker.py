"""Iterative point tracker of the track head (CoTracker/VGGSfM style, spec 6.1–6.3).

Works in feature-map units (stride 2). Each iteration looks up multi-level correlations around the
current estimates, embeds the motion relative to frame 0, and lets the update former predict
coordinate and feature deltas. The coordinate arithmetic order is part of the contract: the flow
embedding's high frequencies amplify any rounding difference (checklist 9.15).
"""

from __future__ import annotations

import torch
from torch import nn

from vggt_ros.model.heads.embeddings import flow_embedding, grid_position_embedding
from vggt_ros.model.heads.track_blocks import Mlp
from vggt_ros.model.heads.track_sampling import CorrelationPyramid, sample_points
from vggt_ros.model.heads.update_former import UpdateFormer

TRACK_STRIDE = 2
FLOW_NORMALISER = 518.0  # fixed constant of the checkpoint, not the image size


class Tracker(nn.Module):
    """Predicts tracks of frame-0 query points through all frames from feature maps."""

    def __init__(
        self,
        latent_dim: int = 128,
        corr_levels: int = 7,
        corr_radius: int = 4,
        hidden_size: int = 384,
        depth: int = 6,
        num_heads: int = 8,
        num_virtual_tracks: int = 64,
    ) -> None:
        super().__init__()
        if latent_dim % 4:
            raise ValueError(f"latent_dim must be a multiple of 4, got {latent_dim}")
        self.latent_dim = latent_dim
        self.corr_levels = corr_levels
        self.corr_radius = corr_radius
        self.flows_emb_dim = latent_dim // 2
        self.transformer_dim = 3 * latent_dim + 4
        corr_dim = corr_levels * (2 * corr_radius + 1) ** 2

        self.query_ref_token = nn.Parameter(torch.zeros(1, 2, self.transformer_dim))
        self.corr_mlp = Mlp(corr_dim, hidden_size, latent_dim)
        self.updateformer = UpdateFormer(
            self.transformer_dim, hidden_size, latent_dim + 2, depth, num_heads, num_virtual_tracks
        )
        self.fmap_norm = nn.LayerNorm(latent_dim, eps=1e-5)
        self.ffeat_norm = nn.GroupNorm(1, latent_dim, eps=1e-5)
        self.ffeat_updater = nn.Sequential(nn.Linear(latent_dim, latent_dim), nn.GELU())
        self.vis_predictor = nn.Sequential(nn.Linear(latent_dim, 1))
        self.conf_predictor = nn.Sequential(nn.Linear(latent_dim, 1))

    def forward(
        self, query_points: torch.Tensor, fmaps: torch.Tensor, iters: int = 4, corr_method: str = "auto"
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """``query_points [B,N,2]`` input pixels in frame 0, ``fmaps [B,S,C,HH,WW]`` (HH = H/2).

        Returns (per-iteration coordinates ``[B,S,N,2]`` in input pixels, vis ``[B,S,N]``, conf ``[B,S,N]``).
        """
        if query_points.dim() != 3 or query_points.shape[-1] != 2:
            raise ValueError(f"query_points must be [B,N,2], got {tuple(query_points.shape)}")
        if fmaps.dim() != 5 or fmaps.shape[2] != self.latent_dim:
            raise ValueError(f"fmaps must be [B,S,{self.latent_dim},H,W], got {tuple(fmaps.shape)}")
        if iters < 1:
            raise ValueError(f"iters must be >= 1, got {iters}")
        batch, num_points, _ = query_points.shape
        frames, channels, height, width = fmaps.shape[1:]
        if fmaps.shape[0] != batch:
            raise ValueError(f"batch mismatch: {batch} query sets for {fmaps.shape[0]} scenes")

        fmaps = self.fmap_norm(fmaps.permute(0, 1, 3, 4, 2)).permute(0, 1, 4, 2, 3)
        queries = query_points / float(TRACK_STRIDE)
        coords = queries.reshape(batch, 1, num_points, 2).repeat(1, frames, 1, 1)

        query_feats = sample_points(fmaps[:, 0], queries)  # B,N,C
        track_feats = query_feats.unsqueeze(1).repeat(1, frames, 1, 1)  # B,S,N,C
        pyramid = CorrelationPyramid(fmaps, self.corr_levels, self.corr_radius, method=corr_method)

        grid_pe = grid_position_embedding(self.transformer_dim, height, width, device=fmaps.device)
        pos = sample_points(grid_pe.to(fmaps.dtype).expand(batch, -1, -1, -1), queries)  # B,N,D
        pos = pos.reshape(batch * num_points, 1, self.transformer_dim)
        ref = torch.cat(
            [self.query_ref_token[:, 0:1], self.query_ref_token[:, 1:2].expand(-1, frames - 1, -1)], dim=1
        )

        coord_preds = []
        for _ in range(iters):
            corrs = pyramid.sample(track_feats, coords)  # B,S,N,L*K
            corrs = corrs.permute(0, 2, 1, 3).reshape(batch * num_points, frames, -1)
            corr_emb = self.corr_mlp(corrs)

            flows = (coords - coords[:, 0:1]).permute(0, 2, 1, 3).reshape(batch * num_points, frames, 2)
            flows_emb = flow_embedding(flows, self.flows_emb_dim)
            flows_emb = torch.cat([flows_emb, flows / FLOW_NORMALISER, flows / FLOW_NORMALISER], dim=-1)

            feats_bn = track_feats.permute(0, 2, 1, 3).reshape(batch * num_points, frames, channels)
            x = torch.cat([flows_emb, corr_emb, feats_bn], dim=-1)
            x = x + pos
            x = x + ref.to(x.dtype)
            delta = self.updateformer(x.reshape(batch, num_points, frames, -1))  # B,N,S,C+2

            delta_coords = delta[..., :2]
            delta_feats = delta[..., 2:].reshape(batch * num_points * frames, channels)
            feats_bn = feats_bn.reshape(batch * num_points * frames, channels)
            feats_bn = self.ffeat_updater(self.ffeat_norm(delta_feats)) + feats_bn
            track_feats = feats_bn.reshape(batch, num_points, frames, channels).permute(0, 2, 1, 3)

            coords = coords + delta_coords.permute(0, 2, 1, 3)
            coords[:, 0] = queries
            coord_preds.append(coords * TRACK_STRIDE)

        vis = torch.sigmoid(self.vis_predictor(track_feats).squeeze(-1))
        conf = torch.sigmoid(self.conf_predictor(track_feats).squeeze(-1))
        return coord_preds, vis, conf
