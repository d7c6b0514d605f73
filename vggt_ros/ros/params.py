"""Every parameter of the VGGT node in one declarative table (ROS-free).

Why one table: the rclpy node declares its parameters from it, ``config/vggt.yaml`` documents it
(a test checks the YAML keys equal the table's), and the bag replay validates the same YAML through
the same functions, so the node and the offline tools can never disagree on a name or a default.

The streaming-core parameters map 1:1 onto :class:`vggt_ros.core.config.PipelineConfig` fields
(their defaults are read from the dataclass, so they cannot drift); the others are the node's own
(model, frames, topics, publishers, rates).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from vggt_ros.core.config import PipelineConfig

logger = logging.getLogger(__name__)

DEFAULT_NODE_NAME = "vggt_node"


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "a boolean", list: "a list"}


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter.

    type: ``bool``, ``int``, ``float``, ``str`` or ``list`` (a list of floats, ROS ``double[]``).
    choices: allowed values (strings); pattern: regular expression a string must fully match;
    low/high: inclusive numeric bounds unless ``low_open``/``high_open``; group: section in the YAML.
    """

    name: str
    default: Any
    type: type
    description: str
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    group: str = "node"

    def allowed(self) -> str:
        """Human-readable allowed range, used in error messages and the YAML comments."""
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.pattern is not None:
            return f"a string matching the regular expression {self.pattern}"
        if self.type is bool:
            return "true or false"
        if self.type is list:
            return "a list of numbers"
        if self.low is None and self.high is None:
            return "any string" if self.type is str else f"any {_TYPE_WORDS[self.type]}"
        lo = "-inf" if self.low is None else repr(self.low)
        hi = "inf" if self.high is None else repr(self.high)
        lb = "(" if self.low_open or self.low is None else "["
        rb = ")" if self.high_open or self.high is None else "]"
        return f"{_TYPE_WORDS[self.type]} in {lb}{lo}, {hi}{rb}"


def _p(name: str, default: Any, typ: type, description: str, group: str, **kw: Any) -> ParamSpec:
    return ParamSpec(name=name, default=default, type=typ, description=description, group=group, **kw)


# ---------------------------------------------------------------------------------------------------
# Node parameters (everything that is not a PipelineConfig field)
# ---------------------------------------------------------------------------------------------------

_NODE_PARAMS: list[ParamSpec] = [
    # model
    _p("predictor", "vggt", str, "Who predicts each window: 'vggt' (the network) or 'oracle' (ground "
       "truth; only for tests/bag replay, the caller must construct it because it needs GT)", "model",
       choices=("vggt", "oracle")),
    _p("checkpoint", "facebook/VGGT-1B", str, "VGGT weights: a Hugging Face repo id (facebook/VGGT-1B, "
       "facebook/VGGT-1B-Commercial), a .pt/.pth/.safetensors file or a directory holding one. Empty "
       "only with predictor 'oracle' or model_config 'small' (random weights)", "model"),
    _p("model_config", "default", str, "Network size: 'default' (the VGGT-1B layout) or 'small' (a tiny "
       "configuration for tests and CPU demos; random weights unless checkpoint is set)", "model",
       choices=("default", "small")),
    _p("device", "auto", str, "Torch device: auto (cuda if available, else cpu), cpu, cuda or cuda:N",
       "model", pattern=r"auto|cpu|cuda(:\d+)?"),
    _p("dtype", "auto", str, "Inference dtype: auto (bfloat16 on GPUs that support it, else float16 on "
       "GPU, float32 on CPU), float32, bfloat16 or float16", "model",
       choices=("auto", "float32", "bfloat16", "float16")),
    _p("dpt_autocast", False, bool, "Run the depth (and point) DPT head in the GPU autocast dtype instead "
       "of float32 as the reference does: a little faster (22 vs 26 ms per 16-frame window on an H200) "
       "but less exact (on the 1B golden cases the depth error against the fp32 reference grows from "
       "0.014-0.018 with the default bf16 path to 0.11)", "model"),
    _p("compile", "none", str, "torch.compile: none, blocks (regional: the transformer blocks, about "
       "1.3x faster on an H200 after a warm-up of tens of seconds; new window shapes recompile once) or "
       "full (the whole model, a longer warm-up)", "model", choices=("none", "blocks", "full")),
    # frames
    _p("map_frame", "map", str, "World frame of poses, paths and the map (the first keyframe)", "frames",
       pattern=r"[A-Za-z0-9_./-]+"),
    _p("odom_frame", "", str, "If set together with base_frame, TF publishes odom_frame -> base_frame "
       "(the camera pose composed with the static base_frame -> camera transform from tf2) instead of "
       "map_frame -> camera", "frames"),
    _p("base_frame", "", str, "Robot base frame (e.g. base_link) for the odom/map -> base TF; empty: "
       "publish map_frame -> camera optical frame", "frames"),
    _p("publish_map_to_odom", False, bool, "With odom_frame and base_frame set: publish map_frame -> "
       "odom_frame (the correction against an external odom -> base TF, looked up at each image stamp) "
       "instead of odom_frame -> base_frame", "frames"),
    _p("camera_frame", "", str, "Override of the camera optical frame id (empty: the image header's "
       "frame_id)", "frames"),
    _p("tf_timeout_s", 0.05, float, "How long a tf2 lookup (base -> camera, odom -> base) may wait, s",
       "frames", low=0.0, high=10.0),
    # topics
    _p("image_transport", "raw", str, "'raw': subscribe sensor_msgs/Image on 'image'; 'compressed': "
       "sensor_msgs/CompressedImage on 'image/compressed'", "topics", choices=("raw", "compressed")),
    _p("qos_depth", 10, int, "History depth of the publishers and the camera_info subscription (the "
       "image subscription uses the sensor-data QoS profile)", "topics", low=1, high=1000),
    _p("path_max_poses", 10000, int, "Most poses kept in the published nav_msgs/Path (oldest dropped; "
       "0 = unbounded)", "topics", low=0),
    # publishers
    _p("publish_tf", True, bool, "Publish the camera (or base) pose on /tf", "publish"),
    _p("publish_odometry", True, bool, "Publish nav_msgs/Odometry on 'odometry'", "publish"),
    _p("publish_path", True, bool, "Publish nav_msgs/Path on 'path'", "publish"),
    _p("publish_depth", True, bool, "Publish 'depth/image' (32FC1; metres, or the pipeline's world "
       "units when scale_source is none: see diagnostics 'metric') with 'depth/camera_info'", "publish"),
    _p("publish_confidence", False, bool, "Publish 'depth/confidence' (32FC1) at depth resolution",
       "publish"),
    _p("publish_depth_rgb", False, bool, "Publish 'depth/rgb' (rgb8), the image at depth resolution",
       "publish"),
    _p("publish_cloud", True, bool, "Publish the per-frame 'points' PointCloud2 (camera optical frame)",
       "publish"),
    _p("publish_map", True, bool, "Publish the accumulated 'map' PointCloud2 (map_frame, transient "
       "local)", "publish"),
    _p("publish_tracks", True, bool, "Publish vggt_ros/KeypointTracks on 'tracks' (needs "
       "num_track_queries > 0)", "publish"),
    _p("publish_diagnostics", True, bool, "Publish diagnostic_msgs/DiagnosticArray on /diagnostics",
       "publish"),
    _p("overlap_outputs", True, bool, "Build the per-frame outputs, update the map and publish on a "
       "second thread while the worker predicts the next window (placement stays on the worker, in "
       "order; at most 2 placed windows wait, then the worker waits: nothing is dropped). false: the "
       "worker does everything serially", "publish"),
    _p("map_publish_period_s", 2.0, float, "Period of the map cloud publication, s", "publish",
       low=0.0, low_open=True, high=3600.0),
    _p("diagnostics_period_s", 1.0, float, "Period of the diagnostics publication, s", "publish",
       low=0.0, low_open=True, high=3600.0),
    _p("map_save_path", "vggt_map.ply", str, "Where the ~/save_map service writes the map (PLY; "
       "'~' expanded, relative paths from the node's working directory). Change it at run time with "
       "ros2 param set", "publish"),
]

# ---------------------------------------------------------------------------------------------------
# PipelineConfig parameters: description and allowed range per field (defaults from the dataclass)
# ---------------------------------------------------------------------------------------------------

_PIPELINE_DOCS: dict[str, tuple[str, dict[str, Any]]] = {
    "window_size": ("Frames per VGGT window (context + new)", {"low": 2, "high": 256}),
    "stride": ("New frames per window (per inference); must be < window_size", {"low": 1}),
    "skip_policy": ("When inference is slower than the camera: keep_newest drops older pending frames, "
                    "keep_all queues up to max_pending_frames (oldest dropped beyond)", {}),
    "max_pending_frames": ("Bound of the pending-frame queue (>= stride)", {"low": 1}),
    "min_parallax_px": ("Keyframe when the median sparse flow vs the last keyframe exceeds this, camera "
                        "pixels", {"low": 0.0}),
    "min_rotation_deg": ("Keyframe when the rotation vs the last keyframe exceeds this, degrees",
                         {"low": 0.0}),
    "min_translation": ("Keyframe when the translation vs the last keyframe exceeds this fraction of its "
                        "median depth", {"low": 0.0}),
    "min_keyframe_gap": ("Processed frames between keyframes, at least", {"low": 1}),
    "max_keyframe_gap": ("Processed frames between keyframes, at most (forces a keyframe)", {"low": 1}),
    "flow_width": ("Width of the grey image used for the sparse keyframe flow, px", {"low": 16}),
    "align_conf_quantile": ("Only pixels above this confidence quantile in both predictions align a "
                            "window", {"low": 0.0, "high": 1.0, "high_open": True}),
    "min_valid_pixels": ("Overlapping confident pixels needed to align a window", {"low": 3}),
    "max_alignment_residual": ("Reject a window whose median relative depth disagreement with the world "
                               "exceeds this", {"low": 0.0, "low_open": True}),
    "context_pose_averaging": ("Fuse a context frame's stored pose with each later window's estimate of it "
                               "(inverse-variance weights; less drift; published poses are not changed)",
                               {}),
    "sim3_refine": ("Place the window by a robust inverse-variance weighted mean over all its already-placed "
                    "frames instead of the anchor alone (scale stays the depth ratio)", {}),
    "anchor_min_overlap": ("The window's anchor (its first frame) is the oldest context keyframe whose "
                           "view still covers this fraction of the predicted newest view (fewer hand-overs, "
                           "less drift); 1: always the latest keyframe", {"low": 0.0, "high": 1.0}),
    "scale_source": ("Metric scale: none (VGGT units), fixed (fixed_scale metres per unit), depth "
                     "(metric_depth of RGB-D frames), odometry (external odometry translation)", {}),
    "fixed_scale": ("Metres per world unit for scale_source fixed", {"low": 0.0, "low_open": True}),
    "scale_freeze_samples": ("Scale samples after which the metric scale is frozen (0: rolling median)",
                             {"low": 0}),
    "scale_min_motion": ("Odometry translation between keyframes needed for a scale sample, m",
                         {"low": 0.0, "low_open": True}),
    "scale_min_pixels": ("Valid metric depth pixels needed for a scale sample", {"low": 1}),
    "base_T_camera": ("Robot base <- camera optical frame, 16 numbers row-major (4x4, metres); empty: "
                      "none (the world is the first keyframe's camera)", {}),
    "world_frame_convention": ("World axes: optical (OpenCV x right, y down, z forward) or rep103 (x "
                               "forward, y left, z up)", {}),
    "depth_width": ("Published depth width, px (0 with depth_height 0: camera size times "
                    "depth_scale_factor)", {"low": 0}),
    "depth_height": ("Published depth height, px (see depth_width)", {"low": 0}),
    "depth_scale_factor": ("Published depth size relative to the camera image when depth_width and "
                           "depth_height are 0", {"low": 0.0, "low_open": True}),
    "conf_percentile": ("Per frame, depth pixels below this confidence percentile are invalid (NaN)",
                        {"low": 0.0, "high": 100.0, "high_open": True}),
    "conf_min": ("Absolute depth confidence floor (pixels below are invalid)", {}),
    "cloud_stride": ("Per-frame point cloud: every n-th depth pixel in u and v", {"low": 1}),
    "cloud_max_points": ("Per-frame point cloud bound (evenly subsampled beyond)", {"low": 0}),
    "points_source": ("Coloured points from depth + camera (default, usually more accurate) or from "
                      "VGGT's point head (runs that head too)", {}),
    "voxel_size": ("World map voxel edge, output units (0: no voxel downsampling)", {"low": 0.0}),
    "map_max_points": ("Hard bound of the world map (least recently seen voxels dropped)", {"low": 1}),
    "map_update": ("Which frames feed the world map: keyframes or all", {}),
    "num_track_queries": ("Keypoints tracked per window (0: tracking off)", {"low": 0}),
    "track_query_mode": ("How track queries are chosen: grid or corners", {}),
    "track_match_px": ("A query within this distance of a previous track's end continues it, px",
                       {"low": 0.0}),
    "preprocess_mode": ("Model input: crop (width to target_size, centre crop) or pad (long side to "
                        "target_size, padded square)", {}),
    "target_size": ("Model input size, px (a multiple of 14; 518 for VGGT-1B)", {"low": 14}),
    "log_interval_s": ("Rate limit of repeated warnings, s", {"low": 0.0}),
}

# Choices for string fields come from the core's own constants, so they cannot drift.
_PIPELINE_CHOICES_ATTR = {
    "skip_policy": "SKIP_POLICIES",
    "scale_source": "SCALE_SOURCES",
    "world_frame_convention": "WORLD_CONVENTIONS",
    "track_query_mode": "TRACK_QUERY_MODES",
    "map_update": "MAP_UPDATE_MODES",
    "points_source": "POINTS_SOURCES",
    "preprocess_mode": "PREPROCESS_MODES",
}


def _pipeline_specs() -> list[ParamSpec]:
    import vggt_ros.core.config as core_config

    specs = []
    for f in dataclasses.fields(PipelineConfig):
        if f.name == "extra":
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:  # pragma: no cover - every PipelineConfig field has a default
            raise TypeError(f"PipelineConfig.{f.name} has no default")
        if f.name == "base_T_camera" or default is None or isinstance(default, (list, tuple, np.ndarray)):
            typ: type = list
            default = [] if default is None else [float(v) for v in np.asarray(default).reshape(-1)]
        else:
            typ = type(default)
        description, extra = _PIPELINE_DOCS.get(
            f.name, (f"PipelineConfig.{f.name} (see vggt_ros/core/config.py)", {}))
        choices = None
        if f.name in _PIPELINE_CHOICES_ATTR:
            choices = tuple(getattr(core_config, _PIPELINE_CHOICES_ATTR[f.name]))
        specs.append(ParamSpec(name=f.name, default=default, type=typ, description=description,
                               choices=choices, group="pipeline", **extra))
    return specs


PIPELINE_PARAM_NAMES: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(PipelineConfig) if f.name != "extra")

PARAMS: tuple[ParamSpec, ...] = (*_NODE_PARAMS, *_pipeline_specs())
PARAMS_BY_NAME: dict[str, ParamSpec] = {p.name: p for p in PARAMS}
if len(PARAMS_BY_NAME) != len(PARAMS):  # pragma: no cover - caught at import by every test
    raise RuntimeError("duplicate parameter names in the vggt_ros parameter table")


# Parameters every rclpy node has (or tools add); accepted in YAML files and ignored here.
ROS_RESERVED_PARAMS = frozenset({"use_sim_time", "start_type_description_service"})


def defaults() -> dict[str, Any]:
    """Every parameter with its default value (lists copied)."""
    return {p.name: (list(p.default) if isinstance(p.default, list) else p.default) for p in PARAMS}


# ---------------------------------------------------------------------------------------------------
# YAML
# ---------------------------------------------------------------------------------------------------


def _flatten(prefix: str, d: Mapping[str, Any], out: dict[str, Any]) -> None:
    # ROS nests dotted parameter names in YAML ("a: {b: 1}" is parameter "a.b").
    for key, value in d.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            _flatten(name, value, out)
        else:
            out[name] = value


def load_params_yaml(path: str | os.PathLike[str], node_name: str = DEFAULT_NODE_NAME) -> dict[str, Any]:
    """Read a ROS 2 parameter file (``<node>: ros__parameters: {...}``) into a flat dict.

    Sections for ``/**`` (all nodes) are applied first, then the node's own (``vggt_node``,
    ``/vggt_node`` or a namespaced ``/ns/vggt_node``), as ROS does. Values are not validated here
    (see :func:`validate_params`); a file without a matching section raises ``ValueError``.
    """
    import yaml

    with open(path, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh) or {}
    if not isinstance(doc, Mapping):
        raise ValueError(f"{path}: a ROS parameter file must map node names to sections, "
                         f"got {type(doc).__name__}")
    bare = node_name.strip("/").split("/")[-1]
    wildcard, own = [], []
    for key, section in doc.items():
        k = str(key)
        if not isinstance(section, Mapping) or "ros__parameters" not in section:
            raise ValueError(f"{path}: section {k!r} has no 'ros__parameters' mapping")
        if k in ("/**", "**"):
            wildcard.append(section["ros__parameters"])
        elif k.strip("/").split("/")[-1] == bare or k.strip("/") == node_name.strip("/"):
            own.append(section["ros__parameters"])
    if not wildcard and not own:
        raise ValueError(f"{path}: no parameters for node {node_name!r} (sections: {list(doc)})")
    out: dict[str, Any] = {}
    for section in (*wildcard, *own):
        _flatten("", section or {}, out)
    return out


def _yaml_scalar(value: Any) -> str:
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    if text.endswith("..."):
        text = text[:-3].strip()
    return text


def params_yaml_text(values: Mapping[str, Any] | None = None, node_name: str = DEFAULT_NODE_NAME) -> str:
    """The documented ROS parameter YAML for the table (defaults, or ``values`` where given)."""
    import textwrap

    values = dict(defaults(), **(values or {}))
    titles = {"model": "Model", "frames": "Frames and TF", "topics": "Topics and QoS",
              "publish": "Publishers and rates",
              "pipeline": "Streaming core (vggt_ros.core.config.PipelineConfig)"}
    lines = ["# Parameters of the vggt_ros node (generated from vggt_ros/ros/params.py; each parameter",
             "# documented with its allowed values). Invalid values stop the node at start-up.",
             f"{node_name}:", "  ros__parameters:"]
    for group, title in titles.items():
        lines.append(f"    # --- {title} " + "-" * max(3, 90 - len(title)))
        for p in PARAMS:
            if p.group != group:
                continue
            doc = f"{p.description}. Allowed: {p.allowed()}."
            for row in textwrap.wrap(doc, 100):
                lines.append(f"    # {row}")
            lines.append(f"    {p.name}: {_yaml_scalar(values[p.name])}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------


def _coerce(spec: ParamSpec, value: Any) -> Any:
    name = spec.name

    def bad(why: str) -> ValueError:
        return ValueError(f"parameter {name!r}: {why} (got {value!r}; allowed: {spec.allowed()})")

    if spec.type is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise bad("expected a boolean")
    numeric = (int, float, np.integer, np.floating)
    if spec.type is int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numeric):
            raise bad("expected an integer")
        if not math.isfinite(float(value)) or float(value) != int(value):
            raise bad("expected an integer")
        value = int(value)
    elif spec.type is float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numeric):
            raise bad("expected a number")
        value = float(value)
        if not math.isfinite(value):
            raise bad("expected a finite number")
    elif spec.type is str:
        if not isinstance(value, str):
            raise bad("expected a string")
        if spec.choices is not None and value not in spec.choices:
            raise bad("not an allowed value")
        if spec.pattern is not None and value and not re.fullmatch(spec.pattern, value):
            raise bad("malformed")
        if spec.pattern is not None and not value and spec.name in ("map_frame", "device"):
            raise bad("must not be empty")
        return value
    elif spec.type is list:
        if value is None:
            return []
        try:
            arr = np.asarray(value, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise bad("expected a list of numbers") from None
        if not np.all(np.isfinite(arr)):
            raise bad("expected finite numbers")
        return [float(v) for v in arr]
    if spec.low is not None and (value < spec.low or (spec.low_open and value == spec.low)):
        raise bad("out of range")
    if spec.high is not None and (value > spec.high or (spec.high_open and value == spec.high)):
        raise bad("out of range")
    return value


def validate_params(params: Mapping[str, Any], *, allow_unknown: bool = False) -> dict[str, Any]:
    """Fill defaults, check every value and the cross-parameter rules; return a clean flat dict.

    Raises ``ValueError`` naming the parameter and its allowed values for anything invalid, including
    unknown names (a typo would otherwise silently keep a default) unless ``allow_unknown``.
    """
    unknown = sorted(k for k in set(params) - set(PARAMS_BY_NAME)
                     if k not in ROS_RESERVED_PARAMS and not k.startswith("qos_overrides."))
    if unknown and not allow_unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; known parameters are listed in config/vggt.yaml")
    out = defaults()
    for name, value in params.items():
        if name in PARAMS_BY_NAME:
            out[name] = _coerce(PARAMS_BY_NAME[name], value)
    # Cross-parameter rules.
    if not out["checkpoint"].strip() and out["predictor"] == "vggt" and out["model_config"] != "small":
        raise ValueError("parameter 'checkpoint' is empty: set a Hugging Face repo id or a weights file "
                         "(empty is only allowed with predictor 'oracle' or model_config 'small')")
    if bool(out["odom_frame"]) != bool(out["base_frame"]):
        raise ValueError("parameters 'odom_frame' and 'base_frame' must be set together (both empty: "
                         f"publish map -> camera); got odom_frame={out['odom_frame']!r}, "
                         f"base_frame={out['base_frame']!r}")
    if out["publish_map_to_odom"] and not out["odom_frame"]:
        raise ValueError("parameter 'publish_map_to_odom' needs 'odom_frame' and 'base_frame'")
    if out["odom_frame"] and out["odom_frame"] == out["map_frame"]:
        raise ValueError(f"parameters 'odom_frame' and 'map_frame' must differ (both {out['map_frame']!r})")
    pipeline_config_from_params(out)  # the core's own cross-field checks (stride < window_size, ...)
    return out


def pipeline_config_from_params(params: Mapping[str, Any]) -> PipelineConfig:
    """The :class:`PipelineConfig` of a (validated or partial) flat parameter dict.

    Errors from the core are re-raised as ``ValueError`` with the parameter context.
    """
    sub = {k: params[k] for k in PIPELINE_PARAM_NAMES if k in params}
    try:
        return PipelineConfig.from_params(sub)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid streaming parameters: {exc}") from exc


# ---------------------------------------------------------------------------------------------------
# Predictor
# ---------------------------------------------------------------------------------------------------

# The tiny network used with model_config 'small' (same layout as the golden test fixtures' "small").
SMALL_MODEL_CONFIG: dict[str, Any] = {
    "img_size": 518, "patch_size": 14, "embed_dim": 64, "dino_depth": 2, "dino_num_heads": 2, "depth": 6,
    "num_heads": 4, "mlp_ratio": 4.0, "num_register_tokens": 2, "rope_freq": 100,
    "intermediate_layer_idx": [1, 2, 4, 5], "dpt_features": 32, "dpt_out_channels": [24, 32, 48, 64],
    "camera_trunk_depth": 2, "camera_num_heads": 4, "track_features": 32, "track_iters": 2,
    "track_corr_levels": 4, "track_corr_radius": 3, "track_hidden_size": 64, "track_depth": 2,
    "track_num_heads": 4, "track_num_virtual_tracks": 8,
}


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; other values unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def make_predictor(params: Mapping[str, Any], *, seed: int = 0) -> Any:
    """Build the VGGT inference engine described by validated parameters.

    predictor 'vggt': the network of ``model_config`` with the ``checkpoint`` weights (random seeded
    weights for 'small' with an empty checkpoint), on ``device``/``dtype``, preprocessing from the
    pipeline parameters. predictor 'oracle' raises ``ValueError``: the oracle answers from ground
    truth, which only the caller has (construct :class:`vggt_ros.core.oracle.OraclePredictor` and pass
    it to the node / replay).
    """
    params = validate_params(params, allow_unknown=True)
    if params["predictor"] == "oracle":
        raise ValueError("predictor 'oracle' needs ground truth: construct "
                         "vggt_ros.core.oracle.OraclePredictor (e.g. from a bag's GT or a synthetic "
                         "sequence) and pass it in; make_predictor only builds the VGGT engine")
    from vggt_ros.model import VGGT, VGGTConfig
    from vggt_ros.model.engine import InferenceEngine

    device = resolve_device(params["device"])
    checkpoint = params["checkpoint"].strip()
    if params["model_config"] == "small":
        config = VGGTConfig(**SMALL_MODEL_CONFIG)
    else:
        config = VGGTConfig()
    if checkpoint:
        from vggt_ros.model.checkpoint import load_checkpoint

        logger.info("loading VGGT weights from %s", checkpoint)
        model = load_checkpoint(checkpoint, config=config)
    else:
        from vggt_ros.model.synthetic_weights import SEED_SMALL, fill_state_dict

        logger.warning("model_config 'small' without checkpoint: synthetic weights (seed %d), outputs are "
                       "meaningless except for testing the plumbing", SEED_SMALL + seed)
        model = VGGT(config)
        fill_state_dict(model, SEED_SMALL + seed)
    # The point head only runs when the clouds come from it (faster, less memory otherwise).
    world_points = params["points_source"] == "point_head"
    compile_mode = {"none": False, "blocks": "blocks", "full": True}[params["compile"]]
    return InferenceEngine(model, device=device, dtype=params["dtype"], world_points=world_points,
                           preprocess_mode=params["preprocess_mode"], target_size=params["target_size"],
                           dpt_autocast=params["dpt_autocast"], compile=compile_mode)
