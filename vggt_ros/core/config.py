"""The streaming core's parameters as one typed object (defaults and bounds from the table).

Why no defaults or range checks written here: :mod:`vggt_ros.params.table` owns every parameter's
default, bounds and choices; each field's default is read from it and every value is coerced by its
:class:`~vggt_ros.params.spec.ParamSpec`, so a value passed here, to the node or to the replay meets
exactly the same rules. Only the cross-field rules (stride < window_size, ...) live here, once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from vggt_ros.params.table import PARAMS_BY_NAME, PIPELINE_PARAM_NAMES, default_of

logger = logging.getLogger(__name__)

_d = default_of


@dataclass
class PipelineConfig:
    """Parameters of :class:`vggt_ros.core.pipeline.StreamingPipeline` (meaning, unit and bounds of
    each field: :mod:`vggt_ros.params.table`).

    Window: each window holds ``window_size`` frames, ``stride`` of them new; the other
    ``window_size - stride`` are already-placed frames (the first is the anchor keyframe: the oldest
    context keyframe that still sees ``anchor_min_overlap`` of the newest view, 1 = always the latest).
    """

    # --- window and queue --------------------------------------------------------------------------
    window_size: int = _d("window_size")
    stride: int = _d("stride")
    skip_policy: str = _d("skip_policy")
    max_pending_frames: int = _d("max_pending_frames")
    # --- keyframes -----------------------------------------------------------------------------------
    min_parallax_px: float = _d("min_parallax_px")
    min_rotation_deg: float = _d("min_rotation_deg")
    min_translation: float = _d("min_translation")
    min_keyframe_gap: int = _d("min_keyframe_gap")
    max_keyframe_gap: int = _d("max_keyframe_gap")
    flow_width: int = _d("flow_width")
    # --- alignment of a window into the world ---------------------------------------------------------
    align_conf_quantile: float = _d("align_conf_quantile")
    min_valid_pixels: int = _d("min_valid_pixels")
    max_alignment_residual: float = _d("max_alignment_residual")
    sim3_refine: bool = _d("sim3_refine")
    context_pose_averaging: bool = _d("context_pose_averaging")
    anchor_min_overlap: float = _d("anchor_min_overlap")
    context_recent_frames: int = _d("context_recent_frames")
    # --- metric scale -------------------------------------------------------------------------------
    scale_source: str = _d("scale_source")
    fixed_scale: float = _d("fixed_scale")
    scale_freeze_samples: int = _d("scale_freeze_samples")
    scale_min_motion: float = _d("scale_min_motion")
    scale_min_pixels: int = _d("scale_min_pixels")
    # --- frames -------------------------------------------------------------------------------------
    base_T_camera: np.ndarray | None = None  # the table's [] (none); a 4x4 array once validated
    world_frame_convention: str = _d("world_frame_convention")
    # --- outputs ------------------------------------------------------------------------------------
    depth_width: int = _d("depth_width")
    depth_height: int = _d("depth_height")
    depth_scale_factor: float = _d("depth_scale_factor")
    conf_percentile: float = _d("conf_percentile")
    conf_min: float = _d("conf_min")
    cloud_stride: int = _d("cloud_stride")
    cloud_max_points: int = _d("cloud_max_points")
    points_source: str = _d("points_source")
    pose_rot_sigma_deg: float = _d("pose_rot_sigma_deg")
    pose_trans_sigma_rel: float = _d("pose_trans_sigma_rel")
    # --- world map ----------------------------------------------------------------------------------
    voxel_size: float = _d("voxel_size")
    map_max_points: int = _d("map_max_points")
    map_update: str = _d("map_update")
    # --- tracks -------------------------------------------------------------------------------------
    num_track_queries: int = _d("num_track_queries")
    track_query_mode: str = _d("track_query_mode")
    track_match_px: float = _d("track_match_px")
    # --- model input --------------------------------------------------------------------------------
    preprocess_mode: str = _d("preprocess_mode")
    target_size: int = _d("target_size")
    # --- diagnostics --------------------------------------------------------------------------------
    log_interval_s: float = _d("log_interval_s")
    # --- pose graph and loop closure ----------------------------------------------------------------
    pose_graph: bool = _d("pose_graph")
    loop_closure: bool = _d("loop_closure")
    loop_min_score: float = _d("loop_min_score")
    loop_min_keyframe_gap: int = _d("loop_min_keyframe_gap")
    loop_cooldown_keyframes: int = _d("loop_cooldown_keyframes")
    loop_min_overlap: float = _d("loop_min_overlap")
    loop_gate_sigmas: float = _d("loop_gate_sigmas")
    loop_max_keyframes: int = _d("loop_max_keyframes")
    graph_max_keyframes: int = _d("graph_max_keyframes")
    graph_max_frames: int = _d("graph_max_frames")
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # unknown keys, kept for logs

    def __post_init__(self) -> None:
        # Every field through the table's coercion (type, bounds, choices; the message names the
        # parameter and its allowed values), then the cross-field rules, which live only here.
        for name in PIPELINE_PARAM_NAMES:
            value = getattr(self, name)
            if name == "base_T_camera" and value is None:
                continue
            setattr(self, name, PARAMS_BY_NAME[name].coerce(value))

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"PipelineConfig: {msg}")

        need(
            self.stride < self.window_size,
            f"stride must be in [1, window_size - 1] (one frame anchors the window), got {self.stride}",
        )
        need(
            self.max_pending_frames >= self.stride,
            f"max_pending_frames ({self.max_pending_frames}) must be >= stride ({self.stride})",
        )
        need(self.max_keyframe_gap >= self.min_keyframe_gap, "max_keyframe_gap must be >= min_keyframe_gap")
        if self.base_T_camera is not None:
            b = np.asarray(self.base_T_camera, dtype=np.float64)
            if b.size == 0:
                self.base_T_camera = None
            else:
                need(b.size == 16, f"base_T_camera must be 4x4 (16 values), got {b.size} values")
                b = b.reshape(4, 4)
                need(np.allclose(b[3], [0, 0, 0, 1]), "base_T_camera last row must be [0, 0, 0, 1]")
                r = b[:3, :3]
                need(
                    np.allclose(r @ r.T, np.eye(3), atol=1e-4) and np.linalg.det(r) > 0,
                    "base_T_camera rotation is not a proper rotation",
                )
                self.base_T_camera = b

    @property
    def num_context_frames(self) -> int:
        """Already-placed frames per window (the anchor keyframe plus older context)."""
        return int(self.window_size) - int(self.stride)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> PipelineConfig:
        """Build a config from a flat ``{field_name: value}`` dict; unknown keys are ignored (logged).

        Values are coerced by the table (ROS gives ints for whole floats, lists for arrays);
        ``base_T_camera`` accepts 16 values (row-major) or a 4x4 array; an empty list means none.
        """
        known = {f.name for f in fields(cls) if f.name != "extra"}
        kwargs = {k: v for k, v in params.items() if k in known}
        unknown = {k: v for k, v in params.items() if k not in known}
        if unknown:
            logger.debug("PipelineConfig.from_params ignores unknown keys: %s", sorted(unknown))
        return cls(**kwargs, extra=unknown)
