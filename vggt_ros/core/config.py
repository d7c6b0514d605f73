"""Every parameter of the streaming core in one flat, validated dataclass.

The names are flat and explicit on purpose: the node's parameter table maps ROS parameter names 1:1
onto these field names, and :meth:`PipelineConfig.from_params` builds a config from such a flat dict.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

SKIP_POLICIES = ("keep_newest", "keep_all")
SCALE_SOURCES = ("none", "fixed", "depth", "odometry")
WORLD_CONVENTIONS = ("optical", "rep103")
TRACK_QUERY_MODES = ("grid", "corners")
MAP_UPDATE_MODES = ("keyframes", "all")
PREPROCESS_MODES = ("crop", "pad")
POINTS_SOURCES = ("depth", "point_head")


@dataclass
class PipelineConfig:
    """Parameters of :class:`vggt_ros.core.pipeline.StreamingPipeline` (units in the field comments).

    Window: each window holds ``window_size`` frames, ``stride`` of them new; the other
    ``window_size - stride`` are already-placed frames (the first is the anchor keyframe: the oldest
    context keyframe that still sees ``anchor_min_overlap`` of the newest view, 1 = always the latest).
    """

    # --- window and queue --------------------------------------------------------------------------
    window_size: int = 8
    stride: int = 4  # new frames per window (per inference)
    skip_policy: str = "keep_newest"  # keep_newest: drop older pending frames; keep_all: bounded FIFO
    max_pending_frames: int = 64  # keep_all: queue bound, the oldest pending frame is dropped beyond it
    # --- keyframes -----------------------------------------------------------------------------------
    min_parallax_px: float = 30.0  # median sparse-flow magnitude vs the last keyframe, camera pixels
    min_rotation_deg: float = 10.0  # predicted rotation vs the last keyframe
    min_translation: float = 0.1  # predicted translation vs the last keyframe / its median depth
    min_keyframe_gap: int = 1  # processed frames between keyframes, at least
    max_keyframe_gap: int = 30  # processed frames between keyframes, at most (forces a keyframe)
    flow_width: int = 160  # width of the grey image used for the sparse flow
    # --- alignment of a window into the world ---------------------------------------------------------
    align_conf_quantile: float = 0.5  # pixels above this conf quantile in both predictions are used
    min_valid_pixels: int = 200  # overlapping confident pixels needed to align a window
    max_alignment_residual: float = 0.25  # median relative depth disagreement above which we reject
    sim3_refine: bool = True  # re-estimate the anchor-based placement from all context frames (mean)
    context_pose_averaging: bool = True  # fuse context frames' stored poses over the windows seeing them
    anchor_min_overlap: float = 0.2  # oldest context keyframe seeing this much of the newest view anchors
    # --- metric scale -------------------------------------------------------------------------------
    scale_source: str = "none"  # none | fixed | depth | odometry
    fixed_scale: float = 1.0  # metres per world unit for scale_source=fixed
    scale_freeze_samples: int = 30  # samples after which the metric scale is frozen (0: rolling median)
    scale_min_motion: float = 0.2  # metres of odometry translation between keyframes for a sample
    scale_min_pixels: int = 200  # valid pixels of a metric depth image for a sample
    # --- frames -------------------------------------------------------------------------------------
    base_T_camera: np.ndarray | None = None  # 4x4 robot base <- camera optical frame, metres
    world_frame_convention: str = "optical"  # optical (OpenCV) | rep103 (x forward, y left, z up)
    # --- outputs ------------------------------------------------------------------------------------
    depth_width: int = 0  # published depth size; 0 with depth_height 0: camera size * depth_scale_factor
    depth_height: int = 0
    depth_scale_factor: float = 1.0
    conf_percentile: float = 25.0  # per frame, pixels below this confidence percentile are invalid
    conf_min: float = 0.0  # absolute confidence floor
    cloud_stride: int = 4  # per-frame point cloud: every n-th depth pixel in u and v
    cloud_max_points: int = 20000  # per-frame point cloud bound (evenly subsampled beyond)
    points_source: str = "depth"  # depth (depth + camera, usually more accurate) | point_head (VGGT's points)
    # --- world map ----------------------------------------------------------------------------------
    voxel_size: float = 0.02  # world map voxel edge in output units (0: no voxel downsampling)
    map_max_points: int = 500_000  # hard bound of the world map (least recently seen voxels dropped)
    map_update: str = "keyframes"  # keyframes | all: which frames feed the map
    # --- tracks -------------------------------------------------------------------------------------
    num_track_queries: int = 0  # 0 = tracking off
    track_query_mode: str = "grid"  # grid | corners
    track_match_px: float = 3.0  # a query within this distance of a previous track end continues it
    # --- model input --------------------------------------------------------------------------------
    preprocess_mode: str = "crop"
    target_size: int = 518
    # --- diagnostics --------------------------------------------------------------------------------
    log_interval_s: float = 5.0  # rate limit of repeated warnings
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # unknown keys, kept for logs

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"PipelineConfig: {msg}")

        need(int(self.window_size) >= 2, f"window_size must be >= 2, got {self.window_size}")
        need(
            1 <= int(self.stride) < int(self.window_size),
            f"stride must be in [1, window_size - 1] (one frame anchors the window), got {self.stride}",
        )
        need(self.skip_policy in SKIP_POLICIES, f"skip_policy must be one of {SKIP_POLICIES}")
        need(
            int(self.max_pending_frames) >= int(self.stride),
            f"max_pending_frames ({self.max_pending_frames}) must be >= stride ({self.stride})",
        )
        for name in ("min_parallax_px", "min_rotation_deg", "min_translation", "fixed_scale"):
            need(np.isfinite(getattr(self, name)) and getattr(self, name) >= 0, f"{name} must be >= 0")
        need(self.fixed_scale > 0, "fixed_scale must be > 0")
        need(int(self.min_keyframe_gap) >= 1, "min_keyframe_gap must be >= 1")
        need(
            int(self.max_keyframe_gap) >= int(self.min_keyframe_gap),
            "max_keyframe_gap must be >= min_keyframe_gap",
        )
        need(int(self.flow_width) >= 16, "flow_width must be >= 16 px")
        need(0.0 <= self.align_conf_quantile < 1.0, "align_conf_quantile must be in [0, 1)")
        need(int(self.min_valid_pixels) >= 3, "min_valid_pixels must be >= 3")
        need(self.max_alignment_residual > 0, "max_alignment_residual must be > 0")
        need(0.0 <= self.anchor_min_overlap <= 1.0, "anchor_min_overlap must be in [0, 1]")
        need(self.scale_source in SCALE_SOURCES, f"scale_source must be one of {SCALE_SOURCES}")
        need(int(self.scale_freeze_samples) >= 0, "scale_freeze_samples must be >= 0")
        need(self.scale_min_motion > 0, "scale_min_motion must be > 0")
        need(int(self.scale_min_pixels) >= 1, "scale_min_pixels must be >= 1")
        need(
            self.world_frame_convention in WORLD_CONVENTIONS,
            f"world_frame_convention must be one of {WORLD_CONVENTIONS}",
        )
        if self.base_T_camera is not None:
            b = np.asarray(self.base_T_camera, dtype=np.float64)
            if b.size == 0:
                self.base_T_camera = None
            else:
                need(b.size == 16, f"base_T_camera must be 4x4 (16 values), got {b.size} values")
                b = b.reshape(4, 4)
                need(bool(np.all(np.isfinite(b))), "base_T_camera has non-finite values")
                need(np.allclose(b[3], [0, 0, 0, 1]), "base_T_camera last row must be [0, 0, 0, 1]")
                r = b[:3, :3]
                need(
                    np.allclose(r @ r.T, np.eye(3), atol=1e-4) and np.linalg.det(r) > 0,
                    "base_T_camera rotation is not a proper rotation",
                )
                self.base_T_camera = b
        need(int(self.depth_width) >= 0 and int(self.depth_height) >= 0, "depth size must be >= 0")
        need(self.depth_scale_factor > 0, "depth_scale_factor must be > 0")
        need(0.0 <= self.conf_percentile < 100.0, "conf_percentile must be in [0, 100)")
        need(np.isfinite(self.conf_min), "conf_min must be finite")
        need(int(self.cloud_stride) >= 1, "cloud_stride must be >= 1")
        need(int(self.cloud_max_points) >= 0, "cloud_max_points must be >= 0")
        need(self.voxel_size >= 0, "voxel_size must be >= 0")
        need(int(self.map_max_points) >= 1, "map_max_points must be >= 1")
        need(self.map_update in MAP_UPDATE_MODES, f"map_update must be one of {MAP_UPDATE_MODES}")
        need(self.points_source in POINTS_SOURCES, f"points_source must be one of {POINTS_SOURCES}")
        need(int(self.num_track_queries) >= 0, "num_track_queries must be >= 0")
        need(self.track_query_mode in TRACK_QUERY_MODES,
             f"track_query_mode must be one of {TRACK_QUERY_MODES}")
        need(self.track_match_px >= 0, "track_match_px must be >= 0")
        need(self.preprocess_mode in PREPROCESS_MODES, f"preprocess_mode must be one of {PREPROCESS_MODES}")
        need(int(self.target_size) >= 14 and int(self.target_size) % 14 == 0, "target_size must be k*14")
        need(self.log_interval_s >= 0, "log_interval_s must be >= 0")

    @property
    def num_context_frames(self) -> int:
        """Already-placed frames per window (the anchor keyframe plus older context)."""
        return int(self.window_size) - int(self.stride)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> PipelineConfig:
        """Build a config from a flat ``{field_name: value}`` dict; unknown keys are ignored (logged).

        Values are converted to the field's type (ROS gives ints for whole floats, lists for arrays);
        ``base_T_camera`` accepts 16 values (row-major) or a 4x4 array; an empty list means none.
        """
        known = {f.name: f for f in fields(cls) if f.name != "extra"}
        kwargs: dict[str, Any] = {}
        unknown = {}
        for key, value in params.items():
            if key not in known:
                unknown[key] = value
                continue
            default = getattr(cls, key, None) if key != "base_T_camera" else None
            if key == "base_T_camera":
                kwargs[key] = None if value is None or len(value) == 0 else np.asarray(value, np.float64)
            elif isinstance(default, bool):
                if isinstance(value, str):
                    kwargs[key] = value.strip().lower() in ("1", "true", "yes", "on")
                else:
                    kwargs[key] = bool(value)
            elif isinstance(default, int):
                if float(value) != int(float(value)):
                    raise ValueError(f"PipelineConfig: {key} must be an integer, got {value!r}")
                kwargs[key] = int(float(value))
            elif isinstance(default, float):
                kwargs[key] = float(value)
            else:
                kwargs[key] = value
        if unknown:
            logger.debug("PipelineConfig.from_params ignores unknown keys: %s", sorted(unknown))
        return cls(**kwargs, extra=unknown)
