"""VGGT aggregator: per-frame DINOv2 patch tokens + alternating frame/global attention (spec section 3).

The patch embedding is a separate method (:meth:`Aggregator.embed_patches`) because it is purely
per-frame: a sliding-window caller can cache each frame's patch tokens and pass them back through
``forward(..., patch_tokens=...)`` instead of re-running the 24 DINOv2 blocks for overlapping frames.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from vggt_ros.model.config import VGGTConfig
from vggt_ros.model.layers.block import Block
from vggt_ros.model.layers.rope import RopeTable
from vggt_ros.model.layers.vision_transformer import DinoVisionTransformer

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_images(images: torch.Tensor, patch_size: int) -> None:
    """Raise ``ValueError`` unless ``images`` is float ``[B, S, 3, H, W]``, H and W multiples of the patch."""
    if images.ndim != 5 or images.shape[2] != 3:
        raise ValueError(f"images must be [B, S, 3, H, W], got shape {tuple(images.shape)}")
    if not torch.is_floating_point(images):
        raise ValueError(f"images must be a float tensor in [0, 1], got {images.dtype}")
    h, w = images.shape[-2:]
    if h % patch_size or w % patch_size:
        raise ValueError(f"image size {h}x{w} must be a multiple of the patch size {patch_size}")


class Aggregator(nn.Module):
    """Images ``[B, S, 3, H, W]`` in [0, 1] -> per-layer tokens ``{i: [B, S, P, 2E]}``, P = 1 + R + h*w.

    Frame 0 of each scene gets its own camera/register tokens (slot 0); the others share slot 1.
    Layer output i is ``concat(frame-attention output, global-attention output)`` along channels.
    """

    def __init__(self, config: VGGTConfig | None = None) -> None:
        super().__init__()
        cfg = config or VGGTConfig()
        self.config = cfg
        e = cfg.embed_dim
        self.patch_size = cfg.patch_size
        self.depth = cfg.depth
        self.patch_start_idx = cfg.patch_start_idx
        self.head_dim = e // cfg.num_heads
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, e))
        self.register_token = nn.Parameter(torch.zeros(1, 2, cfg.num_register_tokens, e))
        self.patch_embed = DinoVisionTransformer(
            img_size=cfg.img_size, patch_size=cfg.patch_size, embed_dim=e, depth=cfg.dino_depth,
            num_heads=cfg.dino_num_heads, mlp_ratio=cfg.mlp_ratio,
            num_register_tokens=cfg.num_register_tokens, norm_eps=1e-6,
        )

        def make_blocks() -> nn.ModuleList:
            return nn.ModuleList(
                Block(e, cfg.num_heads, cfg.mlp_ratio, norm_eps=1e-5, qk_norm=True, layer_scale_init=0.01)
                for _ in range(cfg.depth)
            )

        self.frame_blocks = make_blocks()
        self.global_blocks = make_blocks()
        # Non-persistent: not in the checkpoint's state dict.
        self.register_buffer("image_mean", torch.empty(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.empty(1, 1, 3, 1, 1), persistent=False)
        self.reset_buffers()
        if not self.camera_token.is_meta:
            nn.init.normal_(self.camera_token, std=1e-6)
            nn.init.normal_(self.register_token, std=1e-6)

    @torch.no_grad()
    def reset_buffers(self) -> None:
        """(Re)write the ImageNet normalisation constants, e.g. after ``to_empty`` from the meta device."""
        if self.image_mean.is_meta:
            return
        self.image_mean.copy_(torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1))
        self.image_std.copy_(torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1))

    def embed_patches(self, images: torch.Tensor) -> torch.Tensor:
        """DINOv2 patch tokens ``[B, S, h*w, E]`` of images ``[B, S, 3, H, W]`` in [0, 1].

        Purely per frame (no cross-frame interaction), hence cacheable per frame by the caller.
        """
        check_images(images, self.patch_size)
        b, s = images.shape[:2]
        x = (images - self.image_mean) / self.image_std
        tokens = self.patch_embed(x.flatten(0, 1))
        return tokens.unflatten(0, (b, s))

    def special_tokens(self, batch: int, frames: int) -> torch.Tensor:
        """Camera + register tokens per frame ``[B*S, 1 + R, E]``: slot 0 for frame 0, slot 1 otherwise."""
        special = torch.cat([self.camera_token, self.register_token], dim=2)  # [1, 2, 1 + R, E]
        per_frame = torch.cat([special[:, :1], special[:, 1:].expand(1, frames - 1, -1, -1)], dim=1)
        return per_frame.expand(batch, -1, -1, -1).flatten(0, 1)

    def forward(self, images: torch.Tensor, keep_layers: Iterable[int] | None = None,
                patch_tokens: torch.Tensor | None = None) -> tuple[dict[int, torch.Tensor], int]:
        """Run the alternating-attention trunk.

        Args:
            images: ``[B, S, 3, H, W]`` in [0, 1] (only the shape is used when ``patch_tokens`` is given).
            keep_layers: layer indices to return (``None`` = all). Blocks after the last requested layer
                are skipped, and unrequested layers are not stored (saves memory).
            patch_tokens: optional precomputed :meth:`embed_patches` output ``[B, S, h*w, E]``.

        Returns:
            ``({layer: [B, S, P, 2E]}, patch_start_idx)``.
        """
        check_images(images, self.patch_size)
        b, s, _, height, width = images.shape
        h, w = height // self.patch_size, width // self.patch_size
        keep = set(range(self.depth)) if keep_layers is None else {int(i) for i in keep_layers}
        bad = sorted(i for i in keep if not 0 <= i < self.depth)
        if bad:
            raise ValueError(f"keep_layers {bad} out of range [0, {self.depth})")
        if patch_tokens is None:
            patch_tokens = self.embed_patches(images)
        else:
            expected = (b, s, h * w, self.camera_token.shape[-1])
            if tuple(patch_tokens.shape) != expected:
                raise ValueError(f"patch_tokens shape {tuple(patch_tokens.shape)} does not match the images: "
                                 f"expected {expected}")
        if not keep:
            return {}, self.patch_start_idx

        tokens = torch.cat([self.special_tokens(b, s), patch_tokens.flatten(0, 1)], dim=1)  # [B*S, P, E]
        p, e = tokens.shape[1:]
        rope_frame = RopeTable.for_grid(h, w, self.patch_start_idx, self.head_dim, self.config.rope_freq,
                                        device=tokens.device)
        rope_global = rope_frame.repeat(s)

        outputs: dict[int, torch.Tensor] = {}
        for i in range(max(keep) + 1):
            frame_out = self.frame_blocks[i](tokens, rope=rope_frame)  # each frame attends to itself
            global_out = self.global_blocks[i](frame_out.reshape(b, s * p, e), rope=rope_global)
            tokens = global_out.reshape(b * s, p, e)
            if i in keep:
                outputs[i] = torch.cat(
                    [frame_out.reshape(b, s, p, e), global_out.reshape(b, s, p, e)], dim=-1)
        return outputs, self.patch_start_idx
