"""DPT dense prediction head (spec section 5): depth, world points, or track features.

Reads four aggregator layers, turns their patch tokens into a 4-level feature pyramid
(×4, ×2, ×1, ×½ of the patch grid), fuses it coarse-to-fine and resizes to the input resolution
(or a fraction of it). Frames are independent, so they are processed in chunks to bound memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vggt_ros.model.heads.activations import activate_confidence, activate_values
from vggt_ros.model.heads.dpt_blocks import FeatureFusionBlock
from vggt_ros.model.heads.embeddings import add_dpt_position_embedding

OUTPUT_CONV2_HIDDEN = 32  # fixed in the reference, not configurable


class _Scratch(nn.Module):
    """Container that reproduces the checkpoint's ``scratch.*`` key layout."""

    def __init__(
        self, out_channels: Sequence[int], features: int, feature_only: bool, output_dim: int
    ) -> None:
        super().__init__()
        for i, oc in enumerate(out_channels, start=1):
            self.add_module(
                f"layer{i}_rn", nn.Conv2d(oc, features, kernel_size=3, stride=1, padding=1, bias=False)
            )
        self.refinenet1 = FeatureFusionBlock(features)
        self.refinenet2 = FeatureFusionBlock(features)
        self.refinenet3 = FeatureFusionBlock(features)
        self.refinenet4 = FeatureFusionBlock(features, has_residual=False)
        if feature_only:
            self.output_conv1 = nn.Conv2d(features, features, kernel_size=3, stride=1, padding=1)
        else:
            half = features // 2
            self.output_conv1 = nn.Conv2d(features, half, kernel_size=3, stride=1, padding=1)
            self.output_conv2 = nn.Sequential(
                nn.Conv2d(half, OUTPUT_CONV2_HIDDEN, kernel_size=3, stride=1, padding=1),
                nn.ReLU(),
                nn.Conv2d(OUTPUT_CONV2_HIDDEN, output_dim, kernel_size=1, stride=1, padding=0),
            )


class DPTHead(nn.Module):
    """Dense head over aggregator tokens.

    ``forward`` returns ``(preds [B,S,H,W,output_dim-1], conf [B,S,H,W])``, or with ``feature_only``
    the feature maps ``[B,S,features,H/down_ratio,W/down_ratio]``.
    """

    def __init__(
        self,
        dim_in: int,
        patch_size: int = 14,
        output_dim: int = 4,
        activation: str = "inv_log",
        conf_activation: str = "expp1",
        features: int = 256,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        intermediate_layer_idx: Sequence[int] = (4, 11, 17, 23),
        pos_embed: bool = True,
        feature_only: bool = False,
        down_ratio: int = 1,
    ) -> None:
        super().__init__()
        out_channels = tuple(int(c) for c in out_channels)
        if len(out_channels) != 4 or len(intermediate_layer_idx) != 4:
            raise ValueError("DPTHead needs exactly 4 out_channels and 4 intermediate layers")
        if not feature_only and output_dim < 2:
            raise ValueError("output_dim must include at least one value channel and the confidence")
        self.patch_size = patch_size
        self.activation = activation
        self.conf_activation = conf_activation
        self.intermediate_layer_idx = tuple(int(i) for i in intermediate_layer_idx)
        self.pos_embed = pos_embed
        self.feature_only = feature_only
        self.down_ratio = down_ratio

        self.norm = nn.LayerNorm(dim_in, eps=1e-5)
        self.projects = nn.ModuleList(
            nn.Conv2d(dim_in, oc, kernel_size=1, stride=1, padding=0) for oc in out_channels
        )
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(out_channels[0], out_channels[0], kernel_size=4, stride=4, padding=0),
                nn.ConvTranspose2d(out_channels[1], out_channels[1], kernel_size=2, stride=2, padding=0),
                nn.Identity(),
                nn.Conv2d(out_channels[3], out_channels[3], kernel_size=3, stride=2, padding=1),
            ]
        )
        self.scratch = _Scratch(out_channels, features, feature_only, output_dim)

    def forward(
        self,
        aggregated_tokens: Mapping[int, torch.Tensor] | Sequence[torch.Tensor],
        images: torch.Tensor,
        patch_start_idx: int,
        frames_chunk_size: int | None = 8,
    ) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        """Run the head; ``frames_chunk_size`` (None = all at once) only bounds memory."""
        if images.dim() != 5:
            raise ValueError(f"images must be [B,S,3,H,W], got shape {tuple(images.shape)}")
        height, width = images.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"image size {height}x{width} is not a multiple of patch size {self.patch_size}")
        layers = []
        for idx in self.intermediate_layer_idx:
            try:
                layers.append(aggregated_tokens[idx])
            except (KeyError, IndexError) as exc:
                raise KeyError(f"DPTHead needs aggregator layer {idx}, which was not provided") from exc
        num_frames = images.shape[1]
        if frames_chunk_size is None or frames_chunk_size >= num_frames:
            return self._forward_frames(layers, height, width, patch_start_idx)
        if frames_chunk_size < 1:
            raise ValueError(f"frames_chunk_size must be >= 1 or None, got {frames_chunk_size}")
        chunks = [
            self._forward_frames(
                [t[:, s : s + frames_chunk_size] for t in layers], height, width, patch_start_idx
            )
            for s in range(0, num_frames, frames_chunk_size)
        ]
        if self.feature_only:
            return torch.cat(chunks, dim=1)
        return torch.cat([c[0] for c in chunks], dim=1), torch.cat([c[1] for c in chunks], dim=1)

    def _forward_frames(
        self, layers: list[torch.Tensor], height: int, width: int, patch_start_idx: int
    ) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        batch, frames = layers[0].shape[:2]
        patch_h, patch_w = height // self.patch_size, width // self.patch_size
        pyramid = []
        for k, tokens in enumerate(layers):
            x = tokens[:, :, patch_start_idx:]
            if x.shape[2] != patch_h * patch_w:
                raise ValueError(
                    f"layer has {x.shape[2]} patch tokens, expected {patch_h}x{patch_w} "
                    f"for a {height}x{width} image"
                )
            x = self.norm(x.reshape(batch * frames, patch_h * patch_w, x.shape[-1]))
            x = x.permute(0, 2, 1).reshape(batch * frames, -1, patch_h, patch_w)
            x = self.projects[k](x)
            if self.pos_embed:
                x = add_dpt_position_embedding(x, width, height)
            pyramid.append(self.resize_layers[k](x))

        out = self._fuse(pyramid)
        out_size = (
            int(patch_h * self.patch_size / self.down_ratio),
            int(patch_w * self.patch_size / self.down_ratio),
        )
        out = F.interpolate(out, size=out_size, mode="bilinear", align_corners=True)
        if self.pos_embed:
            out = add_dpt_position_embedding(out, width, height)
        if self.feature_only:
            return out.reshape(batch, frames, *out.shape[1:])

        # float32 activations even when the convolutions ran under autocast (no-op in float32)
        out = self.scratch.output_conv2(out).permute(0, 2, 3, 1).float()
        out = out.reshape(batch, frames, *out.shape[1:])
        preds = activate_values(out[..., :-1], self.activation)
        conf = activate_confidence(out[..., -1], self.conf_activation)
        return preds, conf

    def _fuse(self, pyramid: list[torch.Tensor]) -> torch.Tensor:
        s = self.scratch
        r1, r2, r3, r4 = (getattr(s, f"layer{i}_rn")(x) for i, x in enumerate(pyramid, start=1))
        f = s.refinenet4(r4, size=r3.shape[-2:])
        f = s.refinenet3(f, r3, size=r2.shape[-2:])
        f = s.refinenet2(f, r2, size=r1.shape[-2:])
        f = s.refinenet1(f, r1)
        return s.output_conv1(f)
