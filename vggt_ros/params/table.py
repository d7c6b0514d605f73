"""The table: every vggt_ros parameter with its default, bounds and documentation, written once.

Why one table: the rclpy node declares its parameters from it, ``config/vggt.yaml`` is generated from
it, the replay and the benchmarks validate through it, and :class:`vggt_ros.core.config.PipelineConfig`
takes its field defaults and value checks from it, so no two places can disagree on a name, a default
or a bound. The ``pipeline`` group maps 1:1 (same order) onto the PipelineConfig fields; the other
groups are the node's own (model, frames, topics, publishers, rates).
"""

from __future__ import annotations

from typing import Any

from vggt_ros.params.spec import ParamSpec

DEFAULT_NODE_NAME = "vggt_node"
DEFAULT_NAMESPACE = "/vggt"  # the launch file's default namespace (launch/vggt.launch.py)

# Parameters every rclpy node has (or tools add); accepted in YAML files and ignored by validation.
ROS_RESERVED_PARAMS = frozenset({"use_sim_time", "start_type_description_service"})

# Choices of the string parameters (the core imports them from here).
SKIP_POLICIES = ("keep_newest", "keep_all")
SCALE_SOURCES = ("none", "fixed", "depth", "odometry")
WORLD_CONVENTIONS = ("optical", "rep103")
TRACK_QUERY_MODES = ("grid", "corners")
MAP_UPDATE_MODES = ("keyframes", "all")
PREPROCESS_MODES = ("crop", "pad")
POINTS_SOURCES = ("depth", "point_head")
PREDICTORS = ("vggt", "oracle")
MODEL_CONFIGS = ("default", "small")
DTYPES = ("auto", "float32", "bfloat16", "float16")
COMPILE_MODES = ("none", "blocks", "full")
IMAGE_TRANSPORTS = ("raw", "compressed")


def _p(name: str, default: Any, typ: type, description: str, group: str, **kw: Any) -> ParamSpec:
    return ParamSpec(name=name, default=default, type=typ, description=description, group=group, **kw)


_NODE = (
    # model
    _p("autostart", True, bool, "Configure (load the weights, warm up) and activate (subscriptions and "
       "publishers live) at start-up. false: a managed node that waits for its lifecycle transitions "
       "(nav2_lifecycle_manager, or `ros2 lifecycle set`)", "lifecycle"),
    _p("predictor", "vggt", str, "Who predicts each window: 'vggt' (the network) or 'oracle' (ground "
       "truth; only for tests/bag replay, the caller must construct it because it needs GT)", "model",
       choices=PREDICTORS),
    _p("checkpoint", "facebook/VGGT-1B", str, "VGGT weights: a Hugging Face repo id (facebook/VGGT-1B, "
       "facebook/VGGT-1B-Commercial), a .pt/.pth/.safetensors file or a directory holding one. Empty "
       "only with predictor 'oracle' or model_config 'small' (random weights)", "model"),
    _p("model_config", "default", str, "Network size: 'default' (the VGGT-1B layout) or 'small' (a tiny "
       "configuration for tests and CPU demos; random weights unless checkpoint is set)", "model",
       choices=MODEL_CONFIGS),
    _p("device", "auto", str, "Torch device: auto (cuda if available, else cpu), cpu, cuda or cuda:N",
       "model", pattern=r"auto|cpu|cuda(:\d+)?"),
    _p("dtype", "auto", str, "Inference dtype: auto (bfloat16 on GPUs that support it, else float16 on "
       "GPU, float32 on CPU), float32, bfloat16 or float16", "model", choices=DTYPES),
    _p("dpt_autocast", False, bool, "Run the depth (and point) DPT head in the GPU autocast dtype instead "
       "of float32 as the reference does: a little faster (22 vs 26 ms per 16-frame window on an H200) "
       "but less exact (on the 1B golden cases the depth error against the fp32 reference grows from "
       "0.014-0.018 with the default bf16 path to 0.11)", "model"),
    _p("compile", "none", str, "torch.compile: none, blocks (regional: the transformer blocks, about "
       "1.3x faster on an H200 after a warm-up of tens of seconds; new window shapes recompile once) or "
       "full (the whole model, a longer warm-up)", "model", choices=COMPILE_MODES),
    # frames
    _p("map_frame", "map", str, "World frame of poses, paths and the map (the first keyframe)", "frames",
       pattern=r"[A-Za-z0-9_./-]+"),
    _p("odom_frame", "odom", str, "Odometry frame (REP 105): TF publishes odom_frame -> base_frame, the "
       "robot base's pose. Empty together with base_frame: publish map_frame -> camera optical frame "
       "(refused when another node, e.g. the camera driver, publishes that frame)", "frames"),
    _p("base_frame", "base_link", str, "Robot base frame whose pose is published; base_frame -> camera is "
       "looked up from TF at the first frame (a bare camera: the driver's root frame, e.g. camera_link). "
       "Without such a transform the camera is published as odom_frame -> vggt_camera_optical_frame",
       "frames"),
    _p("publish_map_to_odom", False, bool, "With odom_frame and base_frame set: publish map_frame -> "
       "odom_frame (the correction against an external odom -> base TF, looked up at each image stamp, "
       "and republished every map_to_odom_period_s) instead of odom_frame -> base_frame", "frames"),
    _p("map_to_odom_period_s", 0.05, float, "Period of the map_frame -> odom_frame republication, s",
       "frames", low=0.0, low_open=True, high=60.0),
    _p("transform_tolerance_s", 0.1, float, "How far into the future the republished map_frame -> "
       "odom_frame is stamped (as slam_toolbox and AMCL do), s", "frames", low=0.0, high=10.0),
    _p("camera_frame", "", str, "Override of the camera optical frame id (empty: the image header's "
       "frame_id)", "frames"),
    _p("tf_timeout_s", 0.05, float, "How long a tf2 lookup (base -> camera, odom -> base) may wait, s",
       "frames", low=0.0, high=10.0),
    # topics
    _p("image_transport", "raw", str, "'raw': subscribe sensor_msgs/Image on 'image'; 'compressed': "
       "sensor_msgs/CompressedImage on 'image/compressed'", "topics", choices=IMAGE_TRANSPORTS),
    _p("depth_sync_tolerance_s", 0.02, float, "Most stamp difference between a colour image and the "
       "metric depth image paired with it (the nearest within this); images without one go on without "
       "depth (counted)", "topics", low=0.0, high=1.0),
    _p("time_jump_reset_s", 1.0, float, "Image stamps going back by more than this (a bag played in a "
       "loop with use_sim_time, a restarted clock) reset the pipeline automatically (counted, logged); "
       "smaller reorders are rejected frame by frame. 0: never reset, s", "topics", low=0.0, high=3600.0),
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
    _p("publish_grid", True, bool, "Publish a nav_msgs/OccupancyGrid on 'grid' (transient local, for "
       "Nav2) in the map's frame, from the keyframes' points: needs a z-up published world (base mode "
       "with the mount base_frame <- camera known and the base level, or world_frame_convention rep103 "
       "with base_T_camera)", "publish"),
    _p("publish_tracks", True, bool, "Publish vggt_ros/KeypointTracks on 'tracks' (needs "
       "num_track_queries > 0)", "publish"),
    _p("publish_loop_closures", True, bool, "Announce each accepted loop closure on 'loop_closures' "
       "(diagnostic_msgs/DiagnosticArray, one status per closure; needs pose_graph and loop_closure)",
       "publish"),
    _p("publish_diagnostics", True, bool, "Publish diagnostic_msgs/DiagnosticArray on /diagnostics",
       "publish"),
    _p("overlap_outputs", True, bool, "Build the per-frame outputs, update the map and publish on a "
       "second thread while the worker predicts the next window (placement stays on the worker, in "
       "order; at most 2 placed windows wait, then the worker waits: nothing is dropped). false: the "
       "worker does everything serially", "publish"),
    _p("path_publish_period_s", 1.0, float, "Period of the Path publication (when it has new poses), s: "
       "a Path carries every kept pose, so it is not sent per frame", "publish", low=0.0, low_open=True,
       high=3600.0),
    _p("map_publish_period_s", 2.0, float, "Period of the map cloud publication, s", "publish",
       low=0.0, low_open=True, high=3600.0),
    _p("grid_publish_period_s", 2.0, float, "Period of the occupancy grid publication (when keyframes "
       "were added), s", "publish", low=0.0, low_open=True, high=3600.0),
    _p("grid_resolution", 0.05, float, "Occupancy grid cell edge, m (the pipeline's units before the "
       "scale is metric)", "publish", low=0.001, high=10.0),
    _p("grid_max_cells", 4_000_000, int, "Size bound of the occupancy grid: each side at most "
       "sqrt(grid_max_cells) cells (4e6: 100 m x 100 m at 0.05 m); beyond it the grid keeps its cells "
       "and the window around the camera, points outside are dropped (counted)", "publish",
       low=1, high=25_000_000),
    _p("grid_min_z", 0.1, float, "Bottom of the occupancy grid's height band, m above the world "
       "origin (base mode: the base frame at the first keyframe, z up): points below (the floor) are "
       "not obstacles", "publish", low=-100.0, high=100.0),
    _p("grid_max_z", 2.0, float, "Top of the occupancy grid's height band, m above the world origin: "
       "points above (the ceiling, overhangs the robot passes under) are not obstacles; must exceed "
       "grid_min_z", "publish", low=-100.0, high=100.0),
    _p("grid_max_rays", 5000, int, "Most free-space rays cast per keyframe (evenly subsampled from "
       "its points): bounds the grid's cost per keyframe", "publish", low=1, high=1_000_000),
    _p("diagnostics_period_s", 1.0, float, "Period of the diagnostics publication, s", "publish",
       low=0.0, low_open=True, high=3600.0),
    _p("diagnostics_window_s", 10.0, float, "Sliding window of the diagnostics level, s: the level "
       "(OK/WARN/ERROR/STALE) and the windowed rates and ratios come from the last diagnostics_window_s "
       "seconds only, so an old event does not latch a level; STALE when no input arrived within it. "
       "The bag replay measures it on the bag's clock", "publish", low=0.0, low_open=True, high=3600.0),
    _p("diagnostics_max_latency_s", 2.0, float, "Diagnostics WARN when the median window latency "
       "(inference to outputs built) over diagnostics_window_s exceeds this, s (hardware dependent)",
       "publish", low=0.0, low_open=True, high=3600.0),
    _p("map_save_path", "vggt_map.ply", str, "Where the ~/save_map service writes the map (PLY; "
       "'~' expanded, relative paths from the node's working directory). Change it at run time with "
       "ros2 param set", "publish"),
)


def _c(name: str, default: Any, typ: type, description: str, **kw: Any) -> ParamSpec:
    return ParamSpec(name=name, default=default, type=typ, description=description, group="pipeline", **kw)


# The PipelineConfig fields, in field order (vggt_ros.core.config builds its dataclass from these).
_PIPELINE = (
    # window and queue
    _c("window_size", 8, int, "Frames per VGGT window (context + new)", low=2, high=256),
    _c("stride", 4, int, "New frames per window (per inference); must be < window_size. With "
       "context_recent_frames, each frame is seen by about 1 + context_recent_frames / stride windows",
       low=1),
    _c("skip_policy", "keep_newest", str, "When inference is slower than the camera: keep_newest drops "
       "older pending frames, keep_all queues up to max_pending_frames (oldest dropped beyond)",
       choices=SKIP_POLICIES),
    _c("max_pending_frames", 64, int, "Bound of the pending-frame queue (>= stride)", low=1),
    # keyframes
    _c("min_parallax_px", 30.0, float, "Keyframe when the median sparse flow vs the last keyframe exceeds "
       "this, camera pixels", low=0.0),
    _c("min_rotation_deg", 10.0, float, "Keyframe when the rotation vs the last keyframe exceeds this, "
       "degrees", low=0.0),
    _c("min_translation", 0.1, float, "Keyframe when the translation vs the last keyframe exceeds this "
       "fraction of its median depth", low=0.0),
    _c("min_keyframe_gap", 1, int, "Processed frames between keyframes, at least", low=1),
    _c("max_keyframe_gap", 30, int, "Processed frames between keyframes, at most (forces a keyframe)",
       low=1),
    _c("flow_width", 160, int, "Width of the grey image used for the sparse keyframe flow, px", low=16),
    # alignment of a window into the world
    _c("align_conf_quantile", 0.5, float, "Only pixels above this confidence quantile in both "
       "predictions align a window", low=0.0, high=1.0, high_open=True),
    _c("min_valid_pixels", 200, int, "Overlapping confident pixels needed to align a window", low=3),
    _c("max_alignment_residual", 0.25, float, "Reject a window whose median relative depth disagreement "
       "with the world exceeds this", low=0.0, low_open=True),
    _c("sim3_refine", True, bool, "Place the window by a robust inverse-variance weighted mean over all "
       "its already-placed frames instead of the anchor alone (scale stays the depth ratio)"),
    _c("context_pose_averaging", True, bool, "Fuse a context frame's stored pose with each later "
       "window's estimate of it (inverse-variance weights; less drift; published poses are not "
       "changed)"),
    _c("anchor_min_overlap", 0.2, float, "The window's anchor (its first frame) is the oldest context "
       "keyframe whose view still covers this fraction of the predicted newest view (fewer hand-overs, "
       "less drift); 1: always the latest keyframe", low=0.0, high=1.0),
    _c("context_recent_frames", 0, int, "Context frames taken from the most recently placed frames "
       "(the others are older keyframes): every frame is predicted again by the next windows, and the "
       "pose graph averages those estimates", low=0),
    # metric scale
    _c("scale_source", "none", str, "Metric scale: none (VGGT units), fixed (fixed_scale metres per "
       "unit), depth (metric_depth of RGB-D frames), odometry (external odometry translation)",
       choices=SCALE_SOURCES),
    _c("fixed_scale", 1.0, float, "Metres per world unit for scale_source fixed", low=0.0, low_open=True),
    _c("scale_freeze_samples", 30, int, "Scale samples after which the metric scale is frozen (0: "
       "rolling median)", low=0),
    _c("scale_min_motion", 0.2, float, "Odometry translation between keyframes needed for a scale "
       "sample, m", low=0.0, low_open=True),
    _c("scale_min_pixels", 200, int, "Valid metric depth pixels needed for a scale sample", low=1),
    # frames
    _c("base_T_camera", [], list, "Robot base <- camera optical frame, 16 numbers row-major (4x4, "
       "metres); empty: none (the world is the first keyframe's camera)"),
    _c("world_frame_convention", "optical", str, "World axes: optical (OpenCV x right, y down, z "
       "forward) or rep103 (x forward, y left, z up)", choices=WORLD_CONVENTIONS),
    # outputs
    _c("depth_width", 0, int, "Published depth width, px (0 with depth_height 0: camera size times "
       "depth_scale_factor)", low=0),
    _c("depth_height", 0, int, "Published depth height, px (see depth_width)", low=0),
    _c("depth_scale_factor", 1.0, float, "Published depth size relative to the camera image when "
       "depth_width and depth_height are 0", low=0.0, low_open=True),
    _c("conf_percentile", 25.0, float, "Per frame, depth pixels below this confidence percentile are "
       "invalid (NaN)", low=0.0, high=100.0, high_open=True),
    _c("conf_min", 0.0, float, "Absolute depth confidence floor (pixels below are invalid)"),
    _c("cloud_stride", 4, int, "Per-frame point cloud: every n-th depth pixel in u and v", low=1),
    _c("cloud_max_points", 20000, int, "Per-frame point cloud bound (evenly subsampled beyond)", low=0),
    _c("points_source", "depth", str, "Coloured points from depth + camera (default, usually more "
       "accurate) or from VGGT's point head (runs that head too)", choices=POINTS_SOURCES),
    _c("pose_rot_sigma_deg", 1.0, float, "Odometry pose covariance: prior of the rotation noise (std, per "
       "axis) of one window's per-frame pose prediction, degrees; the stream measures it from how much "
       "overlapping windows disagree, starting from this. The published rotation variance is the "
       "measured noise squared (rad^2) times the frame's fused variance in units of that noise",
       low=0.0, low_open=True, high=180.0),
    _c("pose_trans_sigma_rel", 0.05, float, "Odometry pose covariance: prior of the position noise (std, "
       "per axis) of one window's per-frame pose prediction as a fraction of the scene depth (the "
       "window's median depth); measured by the stream like pose_rot_sigma_deg. Published in metres^2 "
       "when the scale is metric, world units^2 with scale_source none", low=0.0, low_open=True,
       high=10.0),
    # world map
    _c("voxel_size", 0.02, float, "World map voxel edge, output units (0: no voxel downsampling)",
       low=0.0),
    _c("map_max_points", 500_000, int, "Hard bound of the world map (least recently seen voxels "
       "dropped)", low=1),
    _c("map_update", "keyframes", str, "Which frames feed the world map: keyframes or all",
       choices=MAP_UPDATE_MODES),
    # tracks
    _c("num_track_queries", 0, int, "Keypoints tracked per window (0: tracking off)", low=0),
    _c("track_query_mode", "grid", str, "How track queries are chosen: grid or corners",
       choices=TRACK_QUERY_MODES),
    _c("track_match_px", 3.0, float, "A query within this distance of a previous track's end continues "
       "it, px", low=0.0),
    # model input
    _c("preprocess_mode", "crop", str, "Model input: crop (width to target_size, centre crop) or pad "
       "(long side to target_size, padded square)", choices=PREPROCESS_MODES),
    _c("target_size", 518, int, "Model input size, px (a multiple of 14; 518 for VGGT-1B)", low=14,
       multiple_of=14),
    # diagnostics
    _c("log_interval_s", 5.0, float, "Rate limit of repeated warnings, s", low=0.0),
    # pose graph and loop closure
    _c("pose_graph", True, bool, "Keep a keyframe pose graph over every window's estimates (gtsam "
       "iSAM2): the optimised trajectory, the map -> odom correction, the corrected map and path"),
    _c("loop_closure", True, bool, "Detect revisited places (global descriptors per keyframe), verify "
       "them with the predictor on one window of both places' keyframes and add loop factors (needs "
       "pose_graph)"),
    _c("loop_min_score", 0.7, float, "Descriptor cosine similarity a loop candidate needs", low=0.0,
       high=1.0),
    _c("loop_min_keyframe_gap", 20, int, "Loop candidates are at least this many keyframes older than "
       "the current one (nearer ones are already linked by the windows)", low=1),
    _c("loop_cooldown_keyframes", 10, int, "After a loop closure, this many new keyframes search no "
       "loop: the graph already ties them to the revisited place (a robot patrolling a mapped room "
       "would otherwise close a loop, and rebuild the map, at every keyframe)", low=0),
    _c("loop_min_overlap", 0.3, float, "Verification: fraction of the candidate's confident points that "
       "the verification window puts inside the current view, at a consistent depth", low=0.0, high=1.0),
    _c("loop_gate_sigmas", 5.0, float, "Verification: the loop's correction must be within this many "
       "standard deviations of the graph's own uncertainty (rejects look-alike places)", low=0.0,
       low_open=True),
    _c("loop_max_keyframes", 5000, int, "Keyframes kept as loop candidates (descriptor and a JPEG "
       "image each); the oldest are forgotten beyond", low=1),
    _c("graph_max_keyframes", 4000, int, "Keyframes in the pose graph (about 20 KB each); beyond, its "
       "oldest half leaves it, their frames keep the poses optimised so far. Loop candidates are "
       "the newest half at most (and at most loop_max_keyframes)", low=2),
    _c("graph_max_frames", 100000, int, "Frames whose optimised pose is kept (corrected path and "
       "trajectory); the oldest are forgotten beyond", low=1),
)

PARAMS: tuple[ParamSpec, ...] = (*_NODE, *_PIPELINE)
PARAMS_BY_NAME: dict[str, ParamSpec] = {p.name: p for p in PARAMS}
if len(PARAMS_BY_NAME) != len(PARAMS):  # pragma: no cover - caught at import by every test
    raise RuntimeError("duplicate parameter names in the vggt_ros parameter table")
PIPELINE_PARAM_NAMES: tuple[str, ...] = tuple(p.name for p in _PIPELINE)


def default_of(name: str) -> Any:
    """The table's default of one parameter (a list copied, so callers cannot change the table)."""
    value = PARAMS_BY_NAME[name].default
    return list(value) if isinstance(value, list) else value


def defaults() -> dict[str, Any]:
    """Every parameter with its default value (lists copied)."""
    return {p.name: default_of(p.name) for p in PARAMS}
