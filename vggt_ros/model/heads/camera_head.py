"""Camera head: iterative adaLN-modulated transformer over the frames' camera tokens (spec section 4).

Output per frame is the 9-value "absT_quaR_FoV" encoding: translation (3, camera-from-world),
quaternion (x, y, z, w; not normalised), vertical and horizontal field of view (radians, ReLU).
"""

from __future__ import annotations

import torch
from torch import nn

from vggt_ros.model.config import VGGTConfig
from vggt_ros.model.layers.block import Block
from vggt_ros.model.layers.mlp import Mlp

POSE_ENCODING_DIM = 9


def activate_pose(raw: torch.Tensor) -> torch.Tensor:
    """Translation and quaternion linear, FoV (last two entries) through ReLU."""
    return torch.cat([raw[..., :7], torch.relu(raw[..., 7:])], dim=-1)


class CameraHead(nn.Module):
    """Refines a pose encoding in ``num_iterations`` steps from the last aggregator layer's camera tokens.

    Each step modulates the (fixed) normalised camera tokens with shift/scale/gate derived from the
    embedding of the current *pre-activation* estimate, runs the trunk (attention across the scene's
    frames) and adds a predicted delta.
    """

    def __init__(self, config: VGGTConfig | None = None) -> None:
        super().__init__()
        cfg = config or VGGTConfig()
        dim = 2 * cfg.embed_dim
        self.last_layer = cfg.depth - 1
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, POSE_ENCODING_DIM))
        self.trunk = nn.ModuleList(
            Block(dim, cfg.camera_num_heads, cfg.mlp_ratio, norm_eps=1e-5, layer_scale_init=0.01)
            for _ in range(cfg.camera_trunk_depth)
        )
        self.token_norm = nn.LayerNorm(dim, eps=1e-5)
        self.trunk_norm = nn.LayerNorm(dim, eps=1e-5)
        self.embed_pose = nn.Linear(POSE_ENCODING_DIM, dim)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))
        self.adaln_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim, dim // 2, POSE_ENCODING_DIM)

    def forward(self, tokens: dict[int, torch.Tensor] | torch.Tensor,
                num_iterations: int = 4) -> list[torch.Tensor]:
        """Aggregator layers (dict holding the last layer) or the last layer ``[B, S, P, 2E]`` ->
        list of ``num_iterations`` activated encodings ``[B, S, 9]`` (the last one is the prediction)."""
        if isinstance(tokens, dict):
            if self.last_layer not in tokens:
                raise KeyError(f"camera head needs aggregator layer {self.last_layer}; got {sorted(tokens)}")
            tokens = tokens[self.last_layer]
        if tokens.ndim != 4:
            raise ValueError(f"camera head expects [B, S, P, 2E] tokens, got shape {tuple(tokens.shape)}")
        if num_iterations < 1:
            raise ValueError(f"num_iterations must be >= 1, got {num_iterations}")
        b, s = tokens.shape[:2]
        cam = self.token_norm(tokens[:, :, 0])  # [B, S, 2E], fixed across iterations
        cam_normed = self.adaln_norm(cam)
        raw: torch.Tensor | None = None
        outputs = []
        for _ in range(num_iterations):
            pose_in = self.empty_pose_tokens.expand(b, s, -1) if raw is None else raw
            shift, scale, gate = self.poseLN_modulation(self.embed_pose(pose_in)).chunk(3, dim=-1)
            x = gate * (cam_normed * (1 + scale) + shift) + cam
            for block in self.trunk:
                x = block(x)
            delta = self.pose_branch(self.trunk_norm(x))
            raw = delta if raw is None else raw + delta
            outputs.append(activate_pose(raw))
        return outputs
