"""Composable transformer layers of the VGGT network (one concept per module)."""

from vggt_ros.model.layers.attention import Attention
from vggt_ros.model.layers.block import Block
from vggt_ros.model.layers.layer_scale import LayerScale
from vggt_ros.model.layers.mlp import Mlp
from vggt_ros.model.layers.rope import RopeTable, grid_positions, rope_frequencies
from vggt_ros.model.layers.vision_transformer import DinoVisionTransformer, PatchEmbed

__all__ = [
    "Attention", "Block", "DinoVisionTransformer", "LayerScale", "Mlp", "PatchEmbed", "RopeTable",
    "grid_positions", "rope_frequencies",
]
