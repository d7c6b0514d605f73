"""Configuration of the VGGT network.

The defaults describe the official VGGT-1B checkpoint (``facebook/VGGT-1B``); smaller configurations
(e.g. the golden test fixtures' "small" one) change widths/depths only. Field names follow
``test/data/golden/configs.json`` so that ``VGGTConfig(**json_dict)`` works directly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class VGGTConfig:
    """Hyper-parameters of VGGT; the defaults build the 1B checkpoint layout.

    Not configurable (fixed in the reference too): 4 camera iterations, tracker stride 2, the flow
    normaliser 518, the DPT ``output_conv2`` hidden width 32 and all LayerNorm eps values.
    """

    img_size: int = 518
    patch_size: int = 14
    embed_dim: int = 1024
    dino_depth: int = 24
    dino_num_heads: int = 16
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4
    rope_freq: float = 100
    intermediate_layer_idx: tuple[int, ...] = (4, 11, 17, 23)
    dpt_features: int = 256
    dpt_out_channels: tuple[int, ...] = (256, 512, 1024, 1024)
    camera_trunk_depth: int = 4
    camera_num_heads: int = 16
    track_features: int = 128
    track_iters: int = 4
    track_corr_levels: int = 7
    track_corr_radius: int = 4
    track_hidden_size: int = 384
    track_depth: int = 6
    track_num_heads: int = 8
    track_num_virtual_tracks: int = 64
    enable_camera: bool = True
    enable_point: bool = True
    enable_depth: bool = True
    enable_track: bool = True

    def __post_init__(self) -> None:
        # JSON gives lists; keep tuples so the config is hashable-ish and cannot be mutated in place.
        self.intermediate_layer_idx = tuple(int(i) for i in self.intermediate_layer_idx)
        self.dpt_out_channels = tuple(int(c) for c in self.dpt_out_channels)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the offending field(s) if the network cannot be built."""
        positive = (
            "img_size", "patch_size", "embed_dim", "dino_depth", "dino_num_heads", "depth", "num_heads",
            "num_register_tokens", "dpt_features", "camera_trunk_depth", "camera_num_heads",
            "track_features", "track_iters", "track_corr_levels", "track_hidden_size", "track_depth",
            "track_num_heads", "track_num_virtual_tracks",
        )
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"VGGTConfig.{name} must be a positive int, got {value!r}")
        if not self.mlp_ratio > 0:
            raise ValueError(f"VGGTConfig.mlp_ratio must be > 0, got {self.mlp_ratio!r}")
        if not self.rope_freq > 0:
            raise ValueError(f"VGGTConfig.rope_freq must be > 0, got {self.rope_freq!r}")
        radius = self.track_corr_radius
        if isinstance(radius, bool) or not isinstance(radius, int) or radius < 0:
            raise ValueError(f"VGGTConfig.track_corr_radius must be an int >= 0, got {radius!r}")
        if self.img_size % self.patch_size:
            raise ValueError(
                f"img_size ({self.img_size}) must be a multiple of patch_size ({self.patch_size})")
        if self.embed_dim % self.dino_num_heads:
            raise ValueError(
                f"embed_dim ({self.embed_dim}) must be divisible by dino_num_heads ({self.dino_num_heads})")
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})")
        head_dim = self.embed_dim // self.num_heads
        if head_dim % 4:
            raise ValueError(
                f"aggregator head dim embed_dim/num_heads = {head_dim} must be divisible by 4 for 2D RoPE "
                "(two axes, rotate-half pairs)")
        if (2 * self.embed_dim) % self.camera_num_heads:
            raise ValueError(
                f"camera trunk width 2*embed_dim ({2 * self.embed_dim}) must be divisible by "
                f"camera_num_heads ({self.camera_num_heads})")
        if len(self.intermediate_layer_idx) != 4:
            raise ValueError(
                f"intermediate_layer_idx needs exactly 4 layers (DPT heads fuse 4 levels), "
                f"got {self.intermediate_layer_idx}")
        bad = [i for i in self.intermediate_layer_idx if not 0 <= i < self.depth]
        if bad:
            raise ValueError(f"intermediate_layer_idx {bad} out of range [0, depth={self.depth})")
        if len(self.dpt_out_channels) != 4 or any(c <= 0 for c in self.dpt_out_channels):
            raise ValueError(f"dpt_out_channels needs 4 positive widths, got {self.dpt_out_channels}")
        if self.dpt_features % 2:
            raise ValueError(f"dpt_features ({self.dpt_features}) must be even (output_conv1 halves it)")
        if self.track_features % 4:
            raise ValueError(
                f"track_features ({self.track_features}) must be divisible by 4 (sin/cos flow embedding)")
        if self.track_hidden_size % self.track_num_heads:
            raise ValueError(
                f"track_hidden_size ({self.track_hidden_size}) must be divisible by "
                f"track_num_heads ({self.track_num_heads})")

    @property
    def patch_start_idx(self) -> int:
        """Index of the first patch token in each frame's aggregator sequence (camera + registers)."""
        return 1 + self.num_register_tokens

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the init fields (lists for tuple fields), e.g. for JSON/YAML."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out
