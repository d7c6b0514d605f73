"""The rclpy node: a thin shell over :class:`vggt_ros.core.pipeline.StreamingPipeline`.

Why this shape: everything that can be tested without ROS (windows, alignment, scale, the map,
message field conversions, the parameter table) lives in the core; this module only wires topics,
TF, services and timers to it. ROS is imported lazily (``VggtNode`` is built on first access), so
``import vggt_ros.ros.node`` works on machines without ROS.

Threads: subscription callbacks only decode the message and call ``pipeline.add_frame`` (cheap,
thread-safe; the core applies the queue policy ``skip_policy``). One worker thread takes windows
(``next_window``), runs the predictor and places the result (``place``: poses, keyframes, scale).
With ``overlap_outputs`` (default) an output thread then builds the frames' outputs, updates the map
(``emit``) and publishes while the worker already predicts the next window; the queue between them
holds at most ``OUTPUT_QUEUE_SIZE`` placed windows, beyond that the worker waits (nothing dropped).
Without it the worker does all of it serially. Timers publish the map and diagnostics. Node-side
shared state (path, intrinsics, statistics) sits behind ``self._lock``; the map is read under
``self._pipeline_lock``, which the output step holds only while emitting, never during inference.

Every per-frame output carries the stamp of the source image; the map carries the stamp of the newest
integrated image.
"""

from __future__ import annotations

import logging
import os
import queue
import resource
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from vggt_ros.core.frames import invert_pose, world_T_optical_world
from vggt_ros.core.types import Frame, WindowOutput
from vggt_ros.model.factory import device_name
from vggt_ros.params.table import DEFAULT_NODE_NAME, PARAMS
from vggt_ros.params.validation import pipeline_config_from_params, validate_params
from vggt_ros.ros import conversions as conv

logger = logging.getLogger(__name__)

DEFAULT_CAMERA_FRAME = "camera_optical_frame"
OUTPUT_QUEUE_SIZE = 2  # placed windows waiting for the output thread before the worker waits


# ---------------------------------------------------------------------------------------------------
# ROS-free helpers (used by the node; testable without rclpy)
# ---------------------------------------------------------------------------------------------------


def trim_job(job: Any, max_frames: int) -> tuple[Any, int]:
    """A copy of a window job with at most ``max_frames`` frames, and how many new frames it dropped.

    Why: after a GPU out-of-memory error the window must shrink without breaking the chain. Context
    frames go first (oldest first), the anchor (index 0 of a non-bootstrap window, it defines the
    window frame) is always kept; only then the oldest new frames are dropped (they are lost, and
    counted by the caller).
    """
    frames, mask = list(job.frames), list(job.new_mask)
    max_frames = max(2, int(max_frames))
    if len(frames) <= max_frames:
        return job, 0
    keep = list(range(len(frames)))
    bootstrap = all(mask)
    # 1) context frames other than the anchor, oldest (lowest index after the anchor) first
    while len(keep) > max_frames:
        ctx = [i for i in keep if not mask[i] and i != 0]
        if not ctx:
            break
        keep.remove(ctx[0])
    # 2) then the oldest new frames (a bootstrap window keeps its newest frames)
    dropped = 0
    while len(keep) > max_frames:
        new = [i for i in keep if mask[i]]
        if len(new) <= 1:
            break
        keep.remove(new[0])
        dropped += 1
    trimmed = replace(job, frames=[frames[i] for i in keep], new_mask=[mask[i] for i in keep])
    if bootstrap and job.query_points is not None and keep[0] != 0:
        trimmed.query_points = None  # the queries were chosen in a frame that is gone
    return trimmed, dropped


def oom_exception_types() -> tuple[type[BaseException], ...]:
    """Exception types meaning "the accelerator ran out of memory" (engine's own, torch's)."""
    types: list[type[BaseException]] = []
    try:
        from vggt_ros.model.engine import InferenceOutOfMemory

        types.append(InferenceOutOfMemory)
    except ImportError:  # engine unavailable (no torch): only the oracle can run anyway
        pass
    torch = sys.modules.get("torch")
    oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None) if torch is not None else None
    if isinstance(oom, type):
        types.append(oom)
    return tuple(types)


class DepthSync:
    """Pairs colour images with metric depth images of the same stamp, keeping the image order.

    Images wait (FIFO) until their depth arrives; an image that waited for ``max_wait`` newer images
    is released without depth (counted by the caller), so a missing depth stream cannot stall the node.
    """

    def __init__(self, tolerance_ns: int = 1_000_000, max_wait: int = 5, max_depths: int = 30) -> None:
        self.tolerance_ns = int(tolerance_ns)
        self.max_wait = int(max_wait)
        self._depths: deque[tuple[int, np.ndarray]] = deque(maxlen=max_depths)
        self._waiting: deque[Frame] = deque()
        self._lock = threading.Lock()

    def _match(self, stamp_ns: int) -> np.ndarray | None:
        for s, d in self._depths:
            if abs(s - stamp_ns) <= self.tolerance_ns:
                return d
        return None

    def _release(self) -> list[Frame]:
        out = []
        while self._waiting:
            head = self._waiting[0]
            depth = self._match(head.stamp_ns)
            if depth is not None:
                head.metric_depth = depth
            elif len(self._waiting) <= self.max_wait:
                break
            out.append(self._waiting.popleft())
        return out

    def add_image(self, frame: Frame) -> list[Frame]:
        """Queue an image; returns the frames ready for the pipeline, oldest first."""
        with self._lock:
            self._waiting.append(frame)
            return self._release()

    def add_depth(self, stamp_ns: int, depth: np.ndarray) -> list[Frame]:
        """Store a depth image; returns frames that became ready."""
        with self._lock:
            self._depths.append((int(stamp_ns), depth))
            return self._release()

    def clear(self) -> None:
        with self._lock:
            self._depths.clear()
            self._waiting.clear()


class RateMeter:
    """Events per second over a sliding time window (for the diagnostics' output rate)."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = float(window_s)
        self._t: deque[float] = deque()

    def add(self, n: int = 1, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._t.extend([now] * n)
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._t and now - self._t[0] > self.window_s:
            self._t.popleft()

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._trim(now)
        if len(self._t) < 2:
            return 0.0
        span = max(now - self._t[0], 1e-6)
        return len(self._t) / span


def _process_rss_mb() -> float:
    # ru_maxrss is KiB on Linux (peak resident set), good enough to spot leaks in diagnostics.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---------------------------------------------------------------------------------------------------
# Default factories (real ROS install)
# ---------------------------------------------------------------------------------------------------


def default_tf_broadcaster_factory(node: Any) -> Any:
    """A ``tf2_ros.TransformBroadcaster`` (``sendTransform(list[TransformStamped])``)."""
    try:
        import tf2_ros
    except ImportError as exc:
        raise RuntimeError("publish_tf is true but tf2_ros is not importable: source a ROS 2 install or set "
                           "publish_tf false") from exc
    return tf2_ros.TransformBroadcaster(node)


def default_tf_buffer_factory(node: Any) -> Any:
    """A ``tf2_ros.Buffer`` fed by a ``TransformListener`` on ``node`` (kept alive on the node)."""
    try:
        import tf2_ros
    except ImportError as exc:
        raise RuntimeError("odom_frame/base_frame need tf2_ros to look up transforms; it is not importable") \
            from exc
    buffer = tf2_ros.Buffer()
    node._tf_listener = tf2_ros.TransformListener(buffer, node)
    return buffer


def default_tracks_msg_type() -> type | None:
    """``vggt_ros.msg.KeypointTracks`` when the package was built with colcon, else None."""
    try:
        from vggt_ros.msg import KeypointTracks  # type: ignore[attr-defined]
    except ImportError:
        return None
    return KeypointTracks


def read_node_params(node: Any) -> dict[str, Any]:
    """Declare every table parameter on ``node`` and return the validated values.

    Types are dynamic (ROS would otherwise refuse ``1`` for a float); :func:`validate_params`
    checks them, so an invalid value fails here with a message naming the parameter.
    """
    from rcl_interfaces.msg import ParameterDescriptor

    raw = {}
    for p in PARAMS:
        desc = ParameterDescriptor(
            description=p.description, additional_constraints=f"allowed: {p.allowed()}", dynamic_typing=True,
            read_only=p.name != "map_save_path",
        )
        default = list(p.default) if isinstance(p.default, list) else p.default
        node.declare_parameter(p.name, default, desc)
        raw[p.name] = node.get_parameter(p.name).value
    return validate_params(raw)


# ---------------------------------------------------------------------------------------------------
# The node (built lazily so this module imports without ROS)
# ---------------------------------------------------------------------------------------------------


def _build_node_class() -> type:
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import TransformStamped
    from nav_msgs.msg import Odometry, Path
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
    from rclpy.duration import Duration
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from rclpy.time import Time
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
    from std_srvs.srv import Trigger

    class VggtNode(Node):
        """VGGT on a camera stream: poses on TF/odometry/path, depth, clouds, map, tracks, diagnostics.

        Constructor arguments other than ROS's: ``params`` (a dict overriding parameters, same as
        ``parameter_overrides``), ``predictor`` (any :class:`vggt_ros.core.types.Predictor`; required
        for predictor 'oracle'; default: :func:`vggt_ros.model.factory.build_engine`), and the
        injectable ROS pieces ``tf_broadcaster_factory(node)``, ``tf_buffer_factory(node)``,
        ``tracks_msg_type`` and ``tracks_publisher_factory(node, msg_type, topic, qos)`` (defaults: the
        real tf2_ros and vggt_ros.msg on a ROS install).
        """

        def __init__(
            self,
            node_name: str = DEFAULT_NODE_NAME,
            *,
            params: Mapping[str, Any] | None = None,
            predictor: Any = None,
            tf_broadcaster_factory: Callable[[Any], Any] | None = None,
            tf_buffer_factory: Callable[[Any], Any] | None = None,
            tracks_msg_type: type | None = None,
            tracks_publisher_factory: Callable[[Any, type, str, Any], Any] | None = None,
            start_worker: bool = True,
            **node_kwargs: Any,
        ) -> None:
            overrides = list(node_kwargs.pop("parameter_overrides", None) or [])
            for name, value in (params or {}).items():
                overrides.append(Parameter(name, value=value))
            super().__init__(node_name, parameter_overrides=overrides, **node_kwargs)
            self._worker: threading.Thread | None = None
            self._emitter: threading.Thread | None = None
            try:
                self._setup(predictor, tf_broadcaster_factory, tf_buffer_factory, tracks_msg_type,
                            tracks_publisher_factory)
            except Exception as exc:
                self.get_logger().fatal(f"vggt node cannot start: {exc}")
                Node.destroy_node(self)
                raise
            if start_worker:
                self.start_worker()

        def _setup(self, predictor: Any, tf_broadcaster_factory: Any, tf_buffer_factory: Any,
                   tracks_msg_type: Any, tracks_publisher_factory: Any) -> None:
            self.params = read_node_params(self)
            p = self.params
            if p["scale_source"] == "odometry" and not (p["odom_frame"] and p["publish_map_to_odom"]):
                raise ValueError("parameter 'scale_source' odometry needs an external odometry on TF: set "
                                 "odom_frame, base_frame and publish_map_to_odom true (the camera pose in "
                                 "odom_frame is looked up at each image stamp)")
            self._lock = threading.Lock()  # node-side shared state
            self._pipeline_lock = threading.Lock()  # integration vs map reads / reset
            self._stop = threading.Event()
            self._wake = threading.Event()
            self._placed: queue.Queue[tuple[Any, float]] = queue.Queue(maxsize=OUTPUT_QUEUE_SIZE)
            self._stats: dict[str, int] = {}
            self._warned: dict[str, tuple[float | None, int]] = {}
            self._latencies: deque[float] = deque(maxlen=50)
            self._rate = RateMeter()
            self._path_poses: deque[tuple[int, np.ndarray]] = deque(
                maxlen=p["path_max_poses"] or None)
            self._camera_info: tuple[np.ndarray, tuple[int, int]] | None = None
            self._base_T_camera: np.ndarray | None = None
            self._last_stamp_ns: int | None = None
            self._map_dirty = False
            self._max_window_frames = p["window_size"]
            self._warmed_up = False
            self._device = "n/a (oracle)" if p["predictor"] == "oracle" else device_name(p["device"])

            config = pipeline_config_from_params(p)
            from vggt_ros.core.pipeline import StreamingPipeline

            self._pipeline = StreamingPipeline(config)
            self._world_T_optical = world_T_optical_world(config.world_frame_convention, config.base_T_camera)
            if predictor is None:
                if p["predictor"] == "oracle":
                    raise ValueError("predictor 'oracle' needs ground truth: pass "
                                     "predictor=OraclePredictor(...) to VggtNode (the command-line node "
                                     "can only run 'vggt')")
                from vggt_ros.model.factory import build_engine

                predictor = build_engine(p)
            self._predictor = predictor
            self._oom_types = oom_exception_types()

            # frames
            self._base_mode = bool(p["odom_frame"])
            self._world_frame = p["odom_frame"] if self._base_mode and not p["publish_map_to_odom"] \
                else p["map_frame"]
            self._tf_broadcaster = None
            if p["publish_tf"]:
                self._tf_broadcaster = (tf_broadcaster_factory or default_tf_broadcaster_factory)(self)
            self._tf_buffer = None
            if self._base_mode or p["scale_source"] == "odometry":
                self._tf_buffer = (tf_buffer_factory or default_tf_buffer_factory)(self)

            # publishers
            q = p["qos_depth"]
            self._pubs: dict[str, Any] = {}
            if p["publish_odometry"]:
                self._pubs["odometry"] = self.create_publisher(Odometry, "odometry", q)
            if p["publish_path"]:
                self._pubs["path"] = self.create_publisher(Path, "path", q)
            if p["publish_depth"]:
                self._pubs["depth"] = self.create_publisher(Image, "depth/image", q)
                self._pubs["depth_info"] = self.create_publisher(CameraInfo, "depth/camera_info", q)
            if p["publish_confidence"]:
                self._pubs["confidence"] = self.create_publisher(Image, "depth/confidence", q)
            if p["publish_depth_rgb"]:
                self._pubs["depth_rgb"] = self.create_publisher(Image, "depth/rgb", q)
            if p["publish_cloud"]:
                self._pubs["cloud"] = self.create_publisher(PointCloud2, "points", q)
            if p["publish_map"]:
                latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                                     reliability=ReliabilityPolicy.RELIABLE)
                self._pubs["map"] = self.create_publisher(PointCloud2, "map", latched)
            if p["publish_diagnostics"]:
                self._pubs["diagnostics"] = self.create_publisher(DiagnosticArray, "/diagnostics", q)
            self._tracks_msg_type = None
            if p["publish_tracks"] and p["num_track_queries"] > 0:
                msg_type = tracks_msg_type if tracks_msg_type is not None else default_tracks_msg_type()
                if msg_type is None:
                    self.get_logger().error("publish_tracks: vggt_ros.msg.KeypointTracks is not available "
                                            "(package not built with colcon?); tracks are not published")
                else:
                    self._tracks_msg_type = msg_type
                    if tracks_publisher_factory is not None:
                        self._pubs["tracks"] = tracks_publisher_factory(self, msg_type, "tracks", q)
                    else:
                        self._pubs["tracks"] = self.create_publisher(msg_type, "tracks", q)

            # subscriptions, timers, services
            self._input_group = MutuallyExclusiveCallbackGroup()
            self._timer_group = MutuallyExclusiveCallbackGroup()
            if p["image_transport"] == "compressed":
                self._image_sub = self.create_subscription(
                    CompressedImage, "image/compressed", self._on_image, qos_profile_sensor_data,
                    callback_group=self._input_group)
            else:
                self._image_sub = self.create_subscription(
                    Image, "image", self._on_image, qos_profile_sensor_data, callback_group=self._input_group)
            self._info_sub = self.create_subscription(
                CameraInfo, "camera_info", self._on_camera_info, qos_profile_sensor_data,
                callback_group=self._input_group)
            self._depth_sync: DepthSync | None = None
            if p["scale_source"] == "depth":
                self._depth_sync = DepthSync()
                self._depth_sub = self.create_subscription(
                    Image, "metric_depth", self._on_metric_depth, qos_profile_sensor_data,
                    callback_group=self._input_group)
            self._map_timer = self.create_timer(p["map_publish_period_s"], self._publish_map,
                                                callback_group=self._timer_group)
            self._diag_timer = self.create_timer(p["diagnostics_period_s"], self._publish_diagnostics,
                                                 callback_group=self._timer_group)
            self._reset_srv = self.create_service(Trigger, "~/reset", self._on_reset,
                                                  callback_group=self._timer_group)
            self._save_srv = self.create_service(Trigger, "~/save_map", self._on_save_map,
                                                 callback_group=self._timer_group)
            self._msg_types = {"TransformStamped": TransformStamped, "Odometry": Odometry, "Path": Path,
                               "Image": Image, "CameraInfo": CameraInfo, "PointCloud2": PointCloud2,
                               "DiagnosticArray": DiagnosticArray}
            self._Time, self._Duration = Time, Duration
            units = "metres" if self._pipeline.is_metric else "VGGT world units (scale_source none)" \
                if p["scale_source"] == "none" else "VGGT world units until the metric scale is known"
            self.get_logger().info(
                f"vggt node up: predictor {p['predictor']} on {self._device}, window {p['window_size']}/"
                f"stride {p['stride']}, world frame '{self._world_frame}', depth in {units}")

        # ------------------------------------------------------------------ bookkeeping
        def _count(self, name: str, n: int = 1) -> None:
            with self._lock:
                self._stats[name] = self._stats.get(name, 0) + n

        def stats(self) -> dict[str, int]:
            """Node-side counters (rejected messages by reason, published outputs, OOM events...)."""
            with self._lock:
                return dict(self._stats)

        def counters(self) -> dict[str, int]:
            """Pipeline counters merged with the node's (the node's are prefixed ``node_``)."""
            out = self._pipeline.counters()
            out.update({f"node_{k}": v for k, v in self.stats().items()})
            return out

        def _warn(self, key: str, msg: str) -> None:
            """Warning rate-limited per key (rclpy's throttle keys on the call site, which is shared
            here, so one kind of bad input would hide another)."""
            now = time.monotonic()
            with self._lock:
                self._stats[f"warning_{key}"] = self._stats.get(f"warning_{key}", 0) + 1
                last, suppressed = self._warned.get(key, (None, 0))
                if last is not None and now - last < self.params["log_interval_s"]:
                    self._warned[key] = (last, suppressed + 1)
                    return
                self._warned[key] = (now, 0)
            suffix = f" ({suppressed} similar suppressed)" if suppressed else ""
            self.get_logger().warning(msg + suffix)

        @property
        def pipeline(self) -> Any:
            return self._pipeline

        # ------------------------------------------------------------------ input
        def _on_camera_info(self, msg: Any) -> None:
            try:
                K, hw = conv.camera_info_msg_to_intrinsics(msg)
            except ValueError as exc:
                self._count("rejected_camera_info")
                self._warn("camera_info", f"camera_info ignored: {exc}")
                return
            with self._lock:
                self._camera_info = (K, hw)

        def _on_metric_depth(self, msg: Any) -> None:
            try:
                depth = conv.depth_msg_to_array(msg)
            except ValueError as exc:  # includes UnsupportedEncoding
                self._count("rejected_metric_depth")
                self._warn("metric_depth", f"metric depth image rejected: {exc}")
                return
            assert self._depth_sync is not None
            for frame in self._depth_sync.add_depth(conv.stamp_ns_of(msg), depth):
                self._add_frame(frame)

        def _on_image(self, msg: Any) -> None:
            try:
                rgb = conv.image_msg_to_rgb(msg)
            except conv.UnsupportedEncoding as exc:
                self._count("rejected_messages")
                self._count("rejected_unsupported_encoding")
                self._warn("encoding", f"image rejected: {exc}")
                return
            except ValueError as exc:
                self._count("rejected_messages")
                self._count("rejected_bad_image")
                self._warn("bad_image", f"image rejected: {exc}")
                return
            stamp_ns = conv.stamp_ns_of(msg)
            frame_id = self.params["camera_frame"] or msg.header.frame_id
            if not frame_id:
                frame_id = DEFAULT_CAMERA_FRAME
                self._warn("frame_id", f"image without header.frame_id: using '{DEFAULT_CAMERA_FRAME}' (set "
                           "the camera_frame parameter)")
            with self._lock:
                info = self._camera_info
            K = None
            if info is not None:
                if info[1] == rgb.shape[:2]:
                    K = info[0]
                else:
                    self._count("camera_info_size_mismatch")
                    self._warn("camera_info_size", f"camera_info is {info[1]}, image is {rgb.shape[:2]}: "
                               "intrinsics not used for this frame")
            frame = Frame(stamp_ns=stamp_ns, image=rgb, frame_id=frame_id, intrinsics=K)
            if self.params["scale_source"] == "odometry":
                frame.odometry_pose = self._lookup(self.params["odom_frame"], frame_id, stamp_ns)
            if self._depth_sync is not None:
                for f in self._depth_sync.add_image(frame):
                    if f.metric_depth is None:
                        self._count("frames_without_metric_depth")
                    self._add_frame(f)
            else:
                self._add_frame(frame)

        def _add_frame(self, frame: Frame) -> None:
            if not self._pipeline.add_frame(frame):
                self._count("rejected_frames")  # reason counted by the pipeline (rejected_<reason>)
            else:
                prefetch = getattr(self._predictor, "prefetch", None)
                if prefetch is not None:  # engine: preprocess now, in its own thread (non-blocking)
                    prefetch([frame.image], [frame.stamp_ns])
            self._wake.set()

        # ------------------------------------------------------------------ worker
        def start_worker(self) -> None:
            """Start the inference thread and, with ``overlap_outputs``, the output thread (idempotent)."""
            if self._worker is None or not self._worker.is_alive():
                self._stop.clear()
                if self.params["overlap_outputs"] and (self._emitter is None or not self._emitter.is_alive()):
                    self._emitter = threading.Thread(target=self._emit_loop, name="vggt_outputs", daemon=True)
                    self._emitter.start()
                self._worker = threading.Thread(target=self._worker_loop, name="vggt_inference", daemon=True)
                self._worker.start()

        def stop_worker(self, timeout: float = 10.0) -> None:
            """Stop the worker, then let the output thread publish what was already placed."""
            self._stop.set()
            self._wake.set()
            if self._worker is not None:
                self._worker.join(timeout)
            if self._emitter is not None:
                self._emitter.join(timeout)

        def destroy_node(self) -> None:  # noqa: D102 - stop the worker before ROS tears down
            self.stop_worker()
            super().destroy_node()

        def _worker_loop(self) -> None:
            while not self._stop.is_set():
                try:
                    job = self._pipeline.next_window()
                except Exception as exc:  # never let the worker die silently
                    self._count("worker_errors")
                    self.get_logger().error(f"next_window failed: {exc!r}")
                    job = None
                if job is None:
                    self._wake.wait(0.05)
                    self._wake.clear()
                    continue
                if not self._warmed_up:
                    self._warm_up(job)
                try:
                    self._run_job(job)
                except Exception as exc:
                    self._count("worker_errors")
                    self.get_logger().error(f"window {getattr(job, 'window_index', '?')} failed: {exc!r}",
                                            throttle_duration_sec=1.0)

        def _warm_up(self, job: Any) -> None:
            """Once, before the first window: let a compiled engine compile every window shape of the
            stream now (``InferenceEngine.warmup``), so that no later window stalls on compilation.
            Shapes it did not cover (flush, out-of-memory trimming) then run eagerly instead."""
            self._warmed_up = True
            warmup = getattr(self._predictor, "warmup", None)
            if warmup is None:  # e.g. the oracle
                return
            p = self.params
            try:
                report = warmup(p["window_size"], p["stride"], image_hw=tuple(job.images[0].shape[:2]),
                                eager_on_recompile=True)
            except Exception as exc:  # out of memory included: the stream still runs, compiling on use
                self._count("warmup_failures")
                self.get_logger().error(f"model warm-up failed ({exc!r}); windows compile when they occur")
                return
            if report.get("compiled"):
                self.get_logger().info(
                    f"model warm-up: {report['graphs_compiled']} graphs compiled in "
                    f"{report['seconds']:.1f} s (window sizes {report['window_sizes']}, DINOv2 batches "
                    f"{report['dino_buckets']})")

        def _run_job(self, job: Any) -> None:
            t0 = time.perf_counter()
            while True:
                job, dropped = trim_job(job, self._max_window_frames)
                if dropped:
                    self._count("frames_dropped_oom", dropped)
                try:
                    prediction = self._predictor.predict(job.images, job.query_points, job.frame_keys)
                    break
                except self._oom_types as exc:
                    self._count("oom_events")
                    n = len(job.frames)
                    if n <= 2:
                        self._count("frames_dropped_oom", sum(job.new_mask))
                        self.get_logger().error(f"out of memory even with a 2-frame window ({exc}); window "
                                                f"{job.window_index} dropped")
                        return
                    self._max_window_frames = n - 1
                    self.get_logger().warning(
                        f"out of memory with a {n}-frame window: windows now hold at most "
                        f"{self._max_window_frames} frames ({exc})")
            t1 = time.perf_counter()
            placed = self._pipeline.place(job, prediction)  # the next window's context is now known
            if placed.timings is not None:
                placed.timings["predict"] = t1 - t0
            if self._emitter is None:
                self._emit(placed, t0)
                return
            while True:  # back-pressure: wait for the output thread, never drop a placed window
                try:
                    self._placed.put((placed, t0), timeout=0.1)
                    return
                except queue.Full:
                    if self._emitter is None or not self._emitter.is_alive():
                        self._count("worker_errors")
                        self.get_logger().error("output thread is not running: window emitted on the worker")
                        self._emit(placed, t0)
                        return

        def _emit_loop(self) -> None:
            """Output thread: emit and publish placed windows in order; drains the queue on stop."""
            while True:
                try:
                    placed, t0 = self._placed.get(timeout=0.05)
                except queue.Empty:
                    if self._stop.is_set() and (self._worker is None or not self._worker.is_alive()):
                        return
                    continue
                try:
                    self._emit(placed, t0)
                except Exception as exc:  # never let the output thread die silently
                    self._count("worker_errors")
                    self.get_logger().error(f"window {placed.job.window_index} outputs failed: {exc!r}",
                                            throttle_duration_sec=1.0)

        def _emit(self, placed: Any, t0: float) -> None:
            with self._pipeline_lock:
                output = self._pipeline.emit(placed)
            latency = time.perf_counter() - t0
            with self._lock:
                self._latencies.append(latency)
            self._publish_window(output)

        # ------------------------------------------------------------------ outputs
        def _lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray | None:
            """target_T_source at the stamp via tf2, or None (counted, warned)."""
            try:
                t = self._tf_buffer.lookup_transform(
                    target, source, self._Time(nanoseconds=int(stamp_ns)),
                    self._Duration(seconds=float(self.params["tf_timeout_s"])))
                return conv.transform_msg_to_matrix(t.transform)
            except Exception as exc:  # tf2 raises several exception types
                self._count("tf_lookup_failures")
                self._warn("tf_lookup", f"tf lookup {target} <- {source} at {stamp_ns} ns failed: {exc}")
                return None

        def _base_transform(self, camera_frame: str, stamp_ns: int) -> np.ndarray | None:
            """Static base_T_camera (looked up once, then cached)."""
            if self._base_T_camera is None:
                T = self._lookup(self.params["base_frame"], camera_frame, stamp_ns)
                if T is None:
                    return None
                self._base_T_camera = T
            return self._base_T_camera

        def _world_pose(self, world_T_camera: np.ndarray, camera_frame: str, stamp_ns: int
                        ) -> tuple[np.ndarray | None, np.ndarray | None]:
            """(published-world_T_camera, published-world_T_base or None) for one frame.

            Base mode: the published world is the robot base at the first keyframe, i.e. the core's
            optical world moved by ``base_T_camera`` (unless the core already uses that base frame).
            """
            if not self._base_mode:
                return world_T_camera, None
            B = self._base_transform(camera_frame, stamp_ns)
            if B is None:
                return None, None
            G = B @ invert_pose(self._world_T_optical)
            w_T_cam = G @ world_T_camera
            return w_T_cam, w_T_cam @ invert_pose(B)

        def _publish(self, key: str, msg_type: str, fields: Mapping[str, Any]) -> None:
            pub = self._pubs.get(key)
            if pub is None:
                return
            pub.publish(conv.to_rclpy(self._msg_types[msg_type], fields))

        def _publish_window(self, output: WindowOutput) -> None:
            if not output.accepted:
                self._count("windows_not_published")
                return
            for fo in output.frames:
                stamp, cam = fo.stamp_ns, fo.frame_id
                w_T_cam, w_T_base = self._world_pose(fo.world_T_camera, cam, stamp)
                if w_T_cam is not None:
                    self._publish_pose(stamp, cam, w_T_cam, w_T_base)
                if "depth" in self._pubs:
                    hd, wd = fo.depth.shape
                    self._publish("depth", "Image", conv.depth_image_fields(fo.depth, stamp, cam))
                    self._publish("depth_info", "CameraInfo",
                                  conv.camera_info_fields(fo.depth_intrinsics, hd, wd, stamp, cam))
                if "confidence" in self._pubs:
                    self._publish("confidence", "Image",
                                  conv.confidence_image_fields(fo.depth_conf, stamp, cam))
                if "depth_rgb" in self._pubs:
                    self._publish("depth_rgb", "Image", conv.rgb_image_fields(fo.rgb, stamp, cam))
                if "cloud" in self._pubs:
                    self._publish("cloud", "PointCloud2",
                                  conv.pointcloud2_fields(fo.points, fo.colors, stamp, cam))
                self._count("frames_published")
                self._rate.add(1)
                with self._lock:
                    last = self._last_stamp_ns
                    self._last_stamp_ns = stamp if last is None else max(last, stamp)
                    self._map_dirty = True
            if output.tracks is not None and "tracks" in self._pubs and output.tracks.positions.shape[1] > 0:
                fields = conv.keypoint_tracks_fields(output.tracks)
                self._pubs["tracks"].publish(conv.to_rclpy(self._tracks_msg_type, fields))
                self._count("tracks_published")

        def _publish_pose(self, stamp: int, cam: str, w_T_cam: np.ndarray,
                          w_T_base: np.ndarray | None) -> None:
            p = self.params
            child = p["base_frame"] if w_T_base is not None else cam
            pose = w_T_base if w_T_base is not None else w_T_cam
            if self._tf_broadcaster is not None:
                if p["publish_map_to_odom"]:
                    odom_T_base = self._lookup(p["odom_frame"], p["base_frame"], stamp)
                    if odom_T_base is not None:
                        map_T_odom = pose @ invert_pose(odom_T_base)
                        self._send_tf(map_T_odom, stamp, p["map_frame"], p["odom_frame"])
                else:
                    self._send_tf(pose, stamp, self._world_frame, child)
            if "odometry" in self._pubs:
                self._publish("odometry", "Odometry",
                              conv.odometry_fields(pose, stamp, self._world_frame, child))
            if "path" in self._pubs:
                with self._lock:
                    self._path_poses.append((stamp, pose))
                    stamps = [s for s, _ in self._path_poses]
                    poses = [T for _, T in self._path_poses]
                self._publish("path", "Path", conv.path_fields(poses, stamps, self._world_frame, stamp))

        def _send_tf(self, T: np.ndarray, stamp: int, parent: str, child: str) -> None:
            msg = conv.to_rclpy(self._msg_types["TransformStamped"],
                                conv.transform_stamped_fields(T, stamp, parent, child))
            self._tf_broadcaster.sendTransform([msg])
            self._count("tf_published")

        def _publish_map(self) -> None:
            if "map" not in self._pubs:
                return
            with self._lock:
                stamp, dirty = self._last_stamp_ns, self._map_dirty
                self._map_dirty = False
            if stamp is None or not dirty:
                return
            with self._pipeline_lock:
                pts = np.array(self._pipeline.world_map.points, copy=True)
                cols = np.array(self._pipeline.world_map.colors, copy=True)
            if self._base_mode:
                B = self._base_T_camera
                if B is None:
                    return
                G = B @ invert_pose(self._world_T_optical)
                pts = (pts.astype(np.float64) @ G[:3, :3].T + G[:3, 3]).astype(np.float32)
            self._publish("map", "PointCloud2", conv.pointcloud2_fields(pts, cols, stamp, self._world_frame))
            self._count("maps_published")

        def diagnostics_values(self) -> dict[str, Any]:
            """What the diagnostics message reports (also handy for tests and logs)."""
            c = self._pipeline.counters()
            s = self.stats()
            with self._lock:
                lat = list(self._latencies)
            p = self.params
            metric = self._pipeline.is_metric
            values: dict[str, Any] = {
                "queue_depth": c.get("pending", 0),
                "frames_received": c.get("received", 0),
                "frames_accepted": c.get("accepted", 0),
                "frames_skipped": c.get("skipped", 0) + c.get("dropped_queue_full", 0),
                "frames_rejected": c.get("rejected", 0),
                "messages_rejected": s.get("rejected_messages", 0),
                "windows": c.get("windows", 0),
                "windows_rejected": c.get("windows_rejected", 0),
                "keyframes": c.get("keyframes", 0),
                "frames_published": s.get("frames_published", 0),
                "inference_latency_s": lat[-1] if lat else float("nan"),
                "inference_latency_mean_s": float(np.mean(lat)) if lat else float("nan"),
                "output_rate_hz": self._rate.rate(),
                "metric": metric,
                "scale_source": p["scale_source"],
                "scale_m_per_unit": self._pipeline.scale,
                "depth_units": "m" if metric else "VGGT world units",
                "oom_events": s.get("oom_events", 0),
                "frames_dropped_oom": s.get("frames_dropped_oom", 0),
                "max_window_frames": self._max_window_frames,
                "map_points": c.get("map_points", 0),
                "tf_lookup_failures": s.get("tf_lookup_failures", 0),
                "device": self._device,
                "process_peak_rss_mb": _process_rss_mb(),
            }
            for k, v in sorted(c.items()):
                if k.startswith("rejected_"):
                    values[f"frames_{k}"] = v
            for k, v in sorted(s.items()):
                if k.startswith("rejected_") and k != "rejected_messages":
                    values[f"messages_{k}"] = v
            torch = sys.modules.get("torch")
            if torch is not None and self._device.startswith("cuda") and torch.cuda.is_available():
                values["gpu_memory_allocated_mb"] = torch.cuda.memory_allocated() / 2**20
                values["gpu_memory_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
            return values

        def _publish_diagnostics(self) -> None:
            if "diagnostics" not in self._pubs:
                return
            values = self.diagnostics_values()
            problems = []
            if values["oom_events"]:
                problems.append(f"{values['oom_events']} out-of-memory events")
            if values["messages_rejected"] or values["frames_rejected"]:
                problems.append(f"{values['messages_rejected']} messages / "
                                f"{values['frames_rejected']} frames rejected")
            if self.stats().get("worker_errors", 0):
                problems.append(f"{self.stats()['worker_errors']} worker errors")
            units = "metric" if values["metric"] else "not metric (VGGT world units)"
            message = f"{units}; " + ("; ".join(problems) if problems else "ok")
            status = conv.diagnostic_status_fields(
                f"{self.get_name()}: vggt pipeline", values, level="WARN" if problems else "OK",
                message=message, hardware_id=self._device)
            now_ns = self.get_clock().now().nanoseconds
            self._publish("diagnostics", "DiagnosticArray", conv.diagnostic_array_fields([status], now_ns))

        # ------------------------------------------------------------------ services
        def _on_reset(self, request: Any, response: Any) -> Any:
            with self._pipeline_lock:
                self._pipeline.reset()
            clear_caches = getattr(self._predictor, "clear_caches", None)
            if clear_caches is not None:  # the same stamps may now come with other images
                clear_caches()
            with self._lock:
                self._path_poses.clear()
                self._last_stamp_ns = None
                self._map_dirty = False
            if self._depth_sync is not None:
                self._depth_sync.clear()
            self._count("resets")
            response.success = True
            response.message = "pipeline reset: the next frame starts a new world"
            self.get_logger().info(response.message)
            return response

        def _on_save_map(self, request: Any, response: Any) -> Any:
            path = os.path.abspath(os.path.expanduser(str(self.get_parameter("map_save_path").value)))
            try:
                os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                with self._pipeline_lock:
                    n = len(self._pipeline.world_map)
                    self._pipeline.world_map.save_ply(path)
            except OSError as exc:
                response.success = False
                response.message = f"could not save the map to {path}: {exc}"
                self.get_logger().error(response.message)
                return response
            response.success = True
            response.message = f"saved {n} points to {path} (frame of the core's world, " + (
                "metres)" if self._pipeline.is_metric else "VGGT world units)")
            self.get_logger().info(response.message)
            return response

    return VggtNode


_NODE_CLASS: type | None = None


def node_class() -> type:
    """The ``VggtNode`` class (imports rclpy on first use)."""
    global _NODE_CLASS
    if _NODE_CLASS is None:
        _NODE_CLASS = _build_node_class()
    return _NODE_CLASS


def __getattr__(name: str) -> Any:
    if name == "VggtNode":
        return node_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(args: Sequence[str] | None = None) -> int:
    """Entry point (``ros2 run vggt_ros vggt_node``): spin the node on a multi-threaded executor."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    rclpy.init(args=args)
    node = None
    try:
        try:
            node = node_class()()
        except (ValueError, RuntimeError) as exc:
            print(f"vggt_node: {exc}", file=sys.stderr)
            return 2
        executor = MultiThreadedExecutor(num_threads=4)
        executor.add_node(node)
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        return 0
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
