"""The VGGT network: aggregator + camera, depth, point and track heads (spec sections 1 and 7).

``VGGT()`` builds the layout of the official ``facebook/VGGT-1B`` checkpoint (strict-loadable state
dict). Disabled heads are ``None``: they have no parameters, are not run, and the aggregator keeps only
the layers the enabled heads read.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from vggt_ros.model.aggregator import Aggregator
from vggt_ros.model.config import VGGTConfig
from vggt_ros.model.heads.camera_head import CameraHead
from vggt_ros.model.heads.dpt_head import DPTHead
from vggt_ros.model.heads.track_head import TrackHead

logger = logging.getLogger(__name__)

HEAD_NAMES = ("camera", "depth", "point", "track")


class VGGT(nn.Module):
    """Visual Geometry Grounded Transformer (Wang et al., CVPR 2025)."""

    def __init__(self, config: VGGTConfig | None = None) -> None:
        super().__init__()
        cfg = config or VGGTConfig()
        self.config = cfg
        dim_in = 2 * cfg.embed_dim
        dpt_kwargs: dict[str, Any] = {
            "patch_size": cfg.patch_size,
            "features": cfg.dpt_features,
            "out_channels": cfg.dpt_out_channels,
            "intermediate_layer_idx": cfg.intermediate_layer_idx,
            "conf_activation": "expp1",
        }
        self.aggregator = Aggregator(cfg)
        self.camera_head = CameraHead(cfg) if cfg.enable_camera else None
        self.point_head = (
            DPTHead(dim_in, output_dim=4, activation="inv_log", **dpt_kwargs) if cfg.enable_point else None
        )
        self.depth_head = (
            DPTHead(dim_in, output_dim=2, activation="exp", **dpt_kwargs) if cfg.enable_depth else None
        )
        self.track_head = TrackHead(cfg) if cfg.enable_track else None

    @classmethod
    def empty(cls, config: VGGTConfig | None = None, device: torch.device | str = "cpu") -> VGGT:
        """A model with *uninitialised* parameters on ``device``, to be filled by ``load_state_dict``.

        Skips the random initialisation of ~1.3 B parameters (seconds on CPU) and avoids a second
        full-size copy; the non-persistent normalisation buffers are written properly.
        """
        with torch.device("meta"):
            model = cls(config)
        model = model.to_empty(device=device)
        model.aggregator.reset_buffers()
        return model

    def required_layers(self, with_tracks: bool, heads: set[str] | frozenset[str] | None = None) -> set[int]:
        """Aggregator layers the heads to run read (tracks only when query points are given).

        ``heads``: the runtime selection (None = every enabled head).
        """
        layers: set[int] = set()
        if self._runs("camera", heads):
            layers.add(self.config.depth - 1)
        dense = self._runs("point", heads) or self._runs("depth", heads)
        if dense or (with_tracks and self._runs("track", heads)):
            layers.update(self.config.intermediate_layer_idx)
        return layers

    def _runs(self, name: str, heads: set[str] | frozenset[str] | None) -> bool:
        """Whether head ``name`` runs: enabled in the config and in the selection (None = all)."""
        return getattr(self, f"{name}_head") is not None and (heads is None or name in heads)

    def _select_heads(self, heads: Iterable[str] | None, with_tracks: bool) -> frozenset[str] | None:
        """Validate a runtime head selection: known names, enabled heads, tracks iff query points."""
        if heads is None:
            return None
        if isinstance(heads, str):
            heads = (heads,)
        selected = frozenset(heads)
        unknown = sorted(selected - set(HEAD_NAMES))
        if unknown:
            raise ValueError(f"unknown heads {unknown}; choose from {HEAD_NAMES}")
        disabled = sorted(h for h in selected if getattr(self, f"{h}_head") is None)
        if disabled:
            raise ValueError(f"heads {disabled} requested but disabled in the config (enable_<head>=False)")
        if with_tracks and "track" not in selected:
            raise ValueError("query_points given but 'track' is not in the selected heads")
        if "track" in selected and not with_tracks:
            raise ValueError("the track head needs query_points")
        return selected

    def forward(self, images: torch.Tensor, query_points: torch.Tensor | None = None,
                patch_tokens: torch.Tensor | None = None, track_iters: int | None = None,
                heads: Iterable[str] | None = None, frames_chunk_size: int | None = 8,
                dpt_autocast: bool = False) -> dict[str, Any]:
        """Predict cameras, depth, points (and tracks of ``query_points``) for each scene.

        Args:
            images: ``[B, S, 3, H, W]`` or ``[S, 3, H, W]``, RGB in [0, 1], H and W multiples of 14.
            query_points: optional ``[B, N, 2]`` or ``[N, 2]`` pixel (x, y) in frame 0 (track head).
            patch_tokens: optional cached ``aggregator.embed_patches(images)`` output ``[B, S, h*w, E]``.
            track_iters: tracker refinement iterations (default ``config.track_iters``).
            heads: subset of ``{"camera", "depth", "point", "track"}`` to run (None = all enabled ones;
                "track" only with ``query_points``). Heads not run cost nothing (their aggregator
                layers are not even computed if no other head reads them) and their keys are absent.
            frames_chunk_size: frames per DPT-head chunk (None = all at once); bounds peak memory only.
            dpt_autocast: run the depth/point DPT heads inside the caller's autocast (bf16 convolutions)
                instead of float32 as the reference does. Faster on GPUs; outputs then differ from the
                reference by bf16 rounding (the final activations stay float32). The camera head, which
                costs little, always runs in float32.

        Returns:
            dict with ``pose_enc`` [B,S,9], ``pose_enc_list`` (4 x [B,S,9]), ``depth`` [B,S,H,W,1],
            ``depth_conf`` [B,S,H,W], ``world_points`` [B,S,H,W,3], ``world_points_conf`` [B,S,H,W],
            with queries ``track`` [B,S,N,2], ``track_list``, ``vis`` and ``conf`` [B,S,N], and in eval
            mode ``images``. Keys of disabled heads are absent.
        """
        if images.ndim == 4:
            images = images.unsqueeze(0)
        if query_points is not None:
            if self.track_head is None:
                raise ValueError("query_points given but the track head is disabled (enable_track=False)")
            if query_points.ndim == 2:
                query_points = query_points.unsqueeze(0)
            b = images.shape[0]
            if query_points.ndim != 3 or query_points.shape[-1] != 2 or query_points.shape[0] != b:
                raise ValueError(f"query_points must be [B, N, 2], B={b}; got {tuple(query_points.shape)}")
        if patch_tokens is not None and patch_tokens.ndim == 3:
            patch_tokens = patch_tokens.unsqueeze(0)

        selected = self._select_heads(heads, with_tracks=query_points is not None)

        def runs(name: str) -> bool:
            return self._runs(name, selected)

        keep = self.required_layers(with_tracks=query_points is not None, heads=selected)
        tokens, patch_start_idx = self.aggregator(images, keep_layers=keep, patch_tokens=patch_tokens)

        predictions: dict[str, Any] = {}
        # Camera/depth/point heads in float32 regardless of the caller's autocast (as the reference);
        # the DPT heads optionally keep the caller's autocast (dpt_autocast).
        with torch.autocast(device_type=images.device.type, enabled=False):
            if runs("camera"):
                pose_enc_list = self.camera_head(tokens)
                predictions["pose_enc"] = pose_enc_list[-1]
                predictions["pose_enc_list"] = pose_enc_list
        dpt_context = contextlib.nullcontext() if dpt_autocast else torch.autocast(
            device_type=images.device.type, enabled=False)
        with dpt_context:
            if runs("depth"):
                depth, depth_conf = self.depth_head(tokens, images=images, patch_start_idx=patch_start_idx,
                                                    frames_chunk_size=frames_chunk_size)
                predictions["depth"] = depth
                predictions["depth_conf"] = depth_conf
            if runs("point"):
                points, points_conf = self.point_head(tokens, images=images, patch_start_idx=patch_start_idx,
                                                      frames_chunk_size=frames_chunk_size)
                predictions["world_points"] = points
                predictions["world_points_conf"] = points_conf
        if query_points is not None and runs("track"):
            track_list, vis, conf = self.track_head(
                tokens, images=images, patch_start_idx=patch_start_idx, query_points=query_points,
                iters=track_iters,
            )
            predictions["track"] = track_list[-1]
            predictions["track_list"] = track_list
            predictions["vis"] = vis
            predictions["conf"] = conf
        if not self.training:
            predictions["images"] = images
        return predictions
