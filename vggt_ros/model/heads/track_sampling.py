"""Bilinear point sampling and the multi-level correlation lookup of the tracker (spec 6.2, 6.3).

Coordinates are pixel indices of the sampled map (integer values hit cell centres), i.e.
``grid_sample(align_corners=True)`` after ``x → x·2/(W−1) − 1``. Features use border padding,
correlations zeros padding (checklist 9.11).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def normalise_coords(coords: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel (x, y) → grid_sample's [−1, 1] range, align_corners convention."""
    scale = torch.tensor(
        [2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], dtype=coords.dtype, device=coords.device
    )
    return coords * scale - 1


def sample_points(maps: torch.Tensor, points: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Bilinearly sample ``maps [B, C, H, W]`` at ``points [B, N, 2]`` (x, y) → ``[B, N, C]``."""
    grid = normalise_coords(points.to(maps.dtype), maps.shape[-2], maps.shape[-1]).unsqueeze(1)  # B,1,N,2
    out = F.grid_sample(maps, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)
    return out[:, :, 0].permute(0, 2, 1)


def window_offsets(radius: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``[(2r+1)², 2]`` (dx, dy) window offsets; the x offset is the outer (slow) index, as trained."""
    lin = torch.linspace(-radius, radius, 2 * radius + 1, dtype=dtype, device=device)
    outer, inner = torch.meshgrid(lin, lin, indexing="ij")
    return torch.stack([outer, inner], dim=-1).reshape(-1, 2)


class CorrelationPyramid:
    """Average-pooled feature pyramid plus windowed correlation lookup.

    ``sample`` returns, per (b, s, n), the correlation of the track feature with each level's map on a
    (2r+1)² window around the (level-scaled) coordinate, concatenated over levels. Per level it picks
    the cheaper of two equivalent evaluations (bilinear sampling is linear, so
    sample(⟨f, map⟩) = ⟨f, sample(map)⟩): a full correlation volume for small maps, or sampling the
    feature map at the window points for large ones. Both are fully vectorised over points and offsets.
    """

    def __init__(self, fmaps: torch.Tensor, num_levels: int, radius: int, method: str = "auto") -> None:
        """``method``: "auto" (cheaper per level), "volume" or "sampled" (forced, for tests)."""
        if method not in ("auto", "volume", "sampled"):
            raise ValueError(f"unknown correlation method {method!r}")
        if fmaps.dim() != 5:
            raise ValueError(f"fmaps must be [B,S,C,H,W], got {tuple(fmaps.shape)}")
        batch, frames, channels, height, width = fmaps.shape
        self.radius = radius
        self.method = method
        self.levels = [fmaps]
        current = fmaps.reshape(batch * frames, channels, height, width)
        for level in range(1, num_levels):
            if min(current.shape[-2:]) < 2:
                raise ValueError(
                    f"feature map {height}x{width} too small for {num_levels} correlation levels "
                    f"(level {level} would be empty); use a larger input image"
                )
            current = F.avg_pool2d(current, 2, stride=2)
            self.levels.append(current.reshape(batch, frames, channels, *current.shape[-2:]))

    def sample(self, track_feats: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """``track_feats [B,S,N,C]``, ``coords [B,S,N,2]`` (level-0 pixels) → ``[B,S,N,levels·(2r+1)²]``."""
        batch, frames, num_points, channels = track_feats.shape
        offsets = window_offsets(self.radius, coords.dtype, coords.device)
        window = offsets.shape[0]
        out = []
        for level, fmap in enumerate(self.levels):
            height, width = fmap.shape[-2:]
            points = coords / 2**level
            points = points.unsqueeze(-2) + offsets  # B,S,N,K,2
            grid = normalise_coords(points, height, width)
            use_volume = (
                height * width <= channels * window if self.method == "auto" else self.method == "volume"
            )
            if use_volume:
                corr = torch.matmul(track_feats, fmap.reshape(batch, frames, channels, height * width))
                corr = (corr / math.sqrt(channels)).reshape(batch * frames * num_points, 1, height, width)
                grid = grid.reshape(batch * frames * num_points, 1, window, 2)
                sampled = F.grid_sample(corr, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
                sampled = sampled.reshape(batch, frames, num_points, window)
            else:
                maps = fmap.reshape(batch * frames, channels, height, width)
                grid = grid.reshape(batch * frames, num_points, window, 2)
                feats = F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
                sampled = torch.einsum(
                    "bcnk,bnc->bnk", feats, track_feats.reshape(batch * frames, num_points, -1)
                )
                sampled = (sampled / math.sqrt(channels)).reshape(batch, frames, num_points, window)
            out.append(sampled)
        return torch.cat(out, dim=-1)
