"""``vggt_node``: VGGT on a camera stream, as an rclpy node.

The node is a shell: frames go into the shared :class:`~vggt_ros.runner.stream_runner.StreamRunner`
(the same loop the bag replay runs), and every output is built by the shared
:class:`~vggt_ros.outputs.builder.OutputBuilder` from the table in :mod:`vggt_ros.outputs.plan`.

Topics (relative names live in the node's namespace, ``/vggt`` with the launch file):

* inputs (sensor-data QoS): ``image`` (sensor_msgs/Image) or ``image/compressed``
  (``image_transport: compressed``), ``camera_info``, and ``metric_depth`` with
  ``scale_source: depth`` (paired with the images by stamp, ``depth_sync_tolerance_s``);
* outputs: ``odometry`` (nav_msgs/Odometry), ``path`` (nav_msgs/Path, every
  ``path_publish_period_s``), ``depth/image`` (32FC1, REP 118) with ``depth/camera_info``,
  ``depth/confidence``, ``depth/rgb``, ``points`` (per frame, camera optical frame), ``map``
  (transient local, every ``map_publish_period_s``), ``grid`` (nav_msgs/OccupancyGrid, transient
  local, every ``grid_publish_period_s``), ``tracks`` (vggt_ros/KeypointTracks),
  ``/diagnostics`` (every ``diagnostics_period_s``).

TF: ``map_frame -> camera optical frame``; with ``odom_frame``/``base_frame``:
``odom_frame -> base_frame`` (``base_frame -> camera`` looked up from TF), or with
``publish_map_to_odom`` the correction ``map_frame -> odom_frame``.

Services: ``~/reset`` (new world at the next frame), ``~/save_map`` (PLY to ``map_save_path``).

Parameter groups (``config/vggt.yaml``, generated from :mod:`vggt_ros.params.table`): model, frames
and TF, topics and QoS, publishers and rates, streaming core.

Lifecycle (a managed node): configure = frames, TF, publishers, services and the predictor (weights
loaded, warmed up at the first window); activate = subscriptions, timers and inference; deactivate,
cleanup and shutdown undo them. ``autostart`` (default true) configures and activates at start-up;
false leaves the transitions to a lifecycle manager (nav2_lifecycle_manager, ``ros2 lifecycle set``).

Threads: subscription callbacks only decode messages and add frames (cheap); inference runs on the
runner's worker, outputs on its output thread (``overlap_outputs``); timers publish the path, the map
and diagnostics.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import uninstall_signal_handlers
from rclpy.time import Time
from rclpy.timer import Timer
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import Trigger

from vggt_ros.core.frame_buffer import Counters, RateLimitedLogger
from vggt_ros.core.frames import world_T_optical_world
from vggt_ros.core.pipeline import StreamingPipeline
from vggt_ros.core.types import Frame, Predictor, WindowOutput
from vggt_ros.messages.poses import transform_msg_to_matrix, transform_stamped_fields
from vggt_ros.messages.tracks import KEYPOINT_TRACKS_TYPE
from vggt_ros.model.factory import build_engine, device_name
from vggt_ros.outputs.builder import Outgoing, OutputBuilder
from vggt_ros.outputs.plan import enabled_outputs
from vggt_ros.outputs.pose_frames import FALLBACK_CAMERA_FRAME, PoseFrames
from vggt_ros.params.table import DEFAULT_NODE_NAME
from vggt_ros.params.validation import pipeline_config_from_params
from vggt_ros.ros.camera_input import CameraInput
from vggt_ros.ros.factories import (
    RclpyMessages,
    default_tf_buffer,
    default_tracks_msg_type,
)
from vggt_ros.ros.log_bridge import attach_rcl_logging, detach_rcl_logging
from vggt_ros.ros.node_parameters import read_node_params
from vggt_ros.ros.tf_publisher import TfPublisher
from vggt_ros.runner.diagnostics import RateMeter, StreamHealth, diagnostics_report
from vggt_ros.runner.stream_runner import StreamRunner


class VggtNode(LifecycleNode):
    """VGGT on a camera stream: poses on TF/odometry/path, depth, clouds, map, grid, tracks, diagnostics.

    A managed (lifecycle) node: configure = check the frames and TF, create the publishers and
    services, build (load) the predictor; activate = subscriptions and timers live, inference runs;
    deactivate / cleanup / shutdown undo them. With ``autostart`` (default) it configures and
    activates itself at construction: a plain node for users without a lifecycle manager.

    Arguments besides ROS's: ``params`` (overrides, like ``parameter_overrides``), ``predictor``
    (any :class:`vggt_ros.core.types.Predictor`; required for predictor 'oracle'; default: the VGGT
    engine of the parameters), and the injectable ROS pieces ``tf_broadcaster_factory(node)``,
    ``tf_buffer_factory(node)`` and ``tracks_msg_type`` (defaults: our TF publisher, tf2_ros's buffer
    and vggt_ros.msg of the colcon build).
    """

    def __init__(self, node_name: str = DEFAULT_NODE_NAME, *, params: Mapping[str, Any] | None = None,
                 predictor: Any = None, tf_broadcaster_factory: Callable[[Node], Any] | None = None,
                 tf_buffer_factory: Callable[[Node], Any] | None = None, tracks_msg_type: type | None = None,
                 **node_kwargs: Any) -> None:
        overrides = list(node_kwargs.pop("parameter_overrides", None) or [])
        overrides += [Parameter(name, value=value) for name, value in (params or {}).items()]
        super().__init__(node_name, parameter_overrides=overrides, **node_kwargs)
        self.runner: StreamRunner | None = None
        self._log_bridge = None
        self._predictor = predictor
        self._tf_broadcaster_factory = tf_broadcaster_factory or (lambda n: TfPublisher(n, self._tf_refused))
        self._tf_buffer_factory = tf_buffer_factory or default_tf_buffer
        self._tracks_msg_type = tracks_msg_type
        self._inputs: list[Any] = []  # subscriptions and timers of the active state
        self._configure_error: Exception | None = None
        try:
            self.params = read_node_params(self)  # cheap checks first: nothing is loaded yet
            self._log_bridge = attach_rcl_logging(self)  # the core's Python warnings reach /rosout
            if self.params["autostart"]:
                if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                    raise self._configure_error or RuntimeError("configure failed")
                self.trigger_activate()
        except Exception as exc:
            self.get_logger().fatal(f"vggt node cannot start: {exc}")
            detach_rcl_logging(self._log_bridge)
            Node.destroy_node(self)
            raise

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except Exception as exc:  # reported by the caller (autostart) or the lifecycle manager
            self._configure_error = exc
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._create_inputs()
        self.runner.start()
        self.get_logger().info("vggt node active")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inputs()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inputs()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _stop_inputs(self) -> None:
        """No more frames in; the threads finish what they hold (outputs of placed windows go out)."""
        for entity in self._inputs:
            if isinstance(entity, Timer):
                self.destroy_timer(entity)
            else:
                self.destroy_subscription(entity)
        self._inputs = []
        if self.runner is not None:
            if self.runner.stop():
                self.get_logger().info("vggt node stopped: threads joined")
            else:
                self.get_logger().error("vggt node stopped: the inference or output thread did not end")

    def _release(self) -> None:
        """Back to unconfigured: publishers, services, the predictor and the pipeline go."""
        for pub in self._pubs.values():
            self.destroy_publisher(pub)
        for srv in self._trigger_services:
            self.destroy_service(srv)
        self._pubs, self._trigger_services, self.runner = {}, [], None

    def _configure(self) -> None:
        p = self.params
        if p["scale_source"] == "odometry" and not (p["odom_frame"] and p["publish_map_to_odom"]):
            raise ValueError("parameter 'scale_source' odometry needs an external odometry on TF: set "
                             "odom_frame, base_frame and publish_map_to_odom true (the camera pose in "
                             "odom_frame is looked up at each image stamp)")
        if self._predictor is None and p["predictor"] == "oracle":
            raise ValueError("predictor 'oracle' needs ground truth: pass predictor=OraclePredictor(...) to "
                             "VggtNode (the command-line node can only run 'vggt')")
        self._output_lock = threading.Lock()  # the builder: its path, map and frame state (timers too)
        self._counters = Counters()
        self._warnings = RateLimitedLogger(self.get_logger(), p["log_interval_s"])
        self._rate = RateMeter()
        self._device = "n/a (oracle)" if p["predictor"] == "oracle" else device_name(p["device"])
        config = pipeline_config_from_params(p)

        self._tf_broadcaster = self._tf_broadcaster_factory(self) if p["publish_tf"] else None
        self._tf_buffer = self._tf_buffer_factory(self) if p["odom_frame"] else None
        if self._tf_buffer is None and p["publish_map_to_odom"]:
            raise RuntimeError("publish_map_to_odom needs tf2_ros to look up odom -> base_frame; it is not "
                               "importable: source a ROS 2 install")
        if self._tf_buffer is None and p["odom_frame"]:
            self.get_logger().warning(f"tf2_ros is not importable: {p['base_frame']} -> camera cannot be "
                                      f"looked up, the camera is published as {p['odom_frame']} -> "
                                      f"{FALLBACK_CAMERA_FRAME}")
        classes = {}
        tracks_on = p["publish_tracks"] and p["num_track_queries"] > 0
        if tracks_on:
            msg_type = self._tracks_msg_type or default_tracks_msg_type()
            if msg_type is None:
                self.get_logger().error("publish_tracks: vggt_ros.msg.KeypointTracks is not available "
                                        "(package not built with colcon?); tracks are not published")
                tracks_on = False
            else:
                classes[KEYPOINT_TRACKS_TYPE] = msg_type
        frames = PoseFrames(p, world_T_optical_world(config.world_frame_convention, config.base_T_camera),
                            self._lookup if self._tf_buffer is not None else None)
        self.factory = RclpyMessages(classes)
        self.builder = OutputBuilder({**p, "publish_tracks": tracks_on}, self.factory, frames)
        self._create_publishers()

        pipeline = StreamingPipeline(config)
        predictor = self._predictor if self._predictor is not None else build_engine(p)
        self.runner = StreamRunner(pipeline, predictor, self._on_output, overlap_outputs=p["overlap_outputs"],
                                   log=self.get_logger(), health=StreamHealth.from_params(p),
                                   time_jump_s=p["time_jump_reset_s"], on_reset=self._reset_outputs,
                                   path_max_poses=p["path_max_poses"])
        self.camera_input = CameraInput(p, self._counters, self._warn, self._add_frame, self._lookup)
        units = "metres" if pipeline.is_metric else "VGGT world units (scale_source none)" \
            if p["scale_source"] == "none" else "VGGT world units until the metric scale is known"
        self.get_logger().info(
            f"vggt node up: predictor {p['predictor']} on {self._device}, window {p['window_size']}/"
            f"stride {p['stride']}, world frame '{frames.world_frame}', depth in {units}")

    def _create_publishers(self) -> None:
        q = self.params["qos_depth"]
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        self._pubs: dict[str, Any] = {}
        for spec in enabled_outputs(self.params):
            if spec.key == "tf" or spec.key not in self.builder.enabled:
                continue  # TF goes through the broadcaster
            cls = self.factory.message_class(spec.msg_type)
            qos = latched if spec.qos == "latched" else q
            self._pubs[spec.key] = self.create_lifecycle_publisher(cls, spec.topic, qos)
        group = MutuallyExclusiveCallbackGroup()
        self._trigger_services = [
            self.create_service(Trigger, "~/reset", self._on_reset, callback_group=group),
            self.create_service(Trigger, "~/save_map", self._on_save_map, callback_group=group)]

    def _create_inputs(self) -> None:
        p, cam = self.params, self.camera_input
        inputs, timers = MutuallyExclusiveCallbackGroup(), MutuallyExclusiveCallbackGroup()
        sensor = qos_profile_sensor_data
        if p["image_transport"] == "compressed":
            subs = [self.create_subscription(CompressedImage, "image/compressed", cam.on_image, sensor,
                                             callback_group=inputs)]
        else:
            subs = [self.create_subscription(Image, "image", cam.on_image, sensor, callback_group=inputs)]
        subs.append(self.create_subscription(CameraInfo, "camera_info", cam.on_camera_info, sensor,
                                             callback_group=inputs))
        if cam.depth_pairing is not None:
            subs.append(self.create_subscription(Image, "metric_depth", cam.on_metric_depth, sensor,
                                                 callback_group=inputs))
        periodic = [(p["path_publish_period_s"], self._publish_path),
                    (p["map_publish_period_s"], self._publish_map),
                    (p["grid_publish_period_s"], self._publish_grid),
                    (p["diagnostics_period_s"], self._publish_diagnostics)]
        corrects = p["publish_map_to_odom"] or (p["pose_graph"] and p["odom_frame"])  # map -> odom is ours
        if corrects and self._tf_broadcaster is not None:
            periodic.append((p["map_to_odom_period_s"], self._republish_map_to_odom))
        self._inputs = subs + [self.create_timer(t, fn, callback_group=timers) for t, fn in periodic]

    # ------------------------------------------------------------------ bookkeeping
    @property
    def pipeline(self) -> StreamingPipeline:
        return self.runner.pipeline

    def stats(self) -> dict[str, int]:
        """The node's counters (rejected messages by reason, published outputs...) and the runner's
        (out-of-memory events, worker errors, warm-up failures)."""
        return {**self.runner.stats(), **self._counters.snapshot()}

    def counters(self) -> dict[str, int]:
        """Pipeline counters merged with the node's (the node's are prefixed ``node_``)."""
        out = self.pipeline.counters()
        out.update({f"node_{k}": v for k, v in self.stats().items()})
        return out

    def _warn(self, key: str, msg: str) -> None:
        """Counted warning, rate-limited per key (rclpy's throttle keys on the call site, which is
        shared here, so one kind of bad input would hide another)."""
        self._counters.add(f"warning_{key}")
        self._warnings.warning(key, msg)

    # ------------------------------------------------------------------ inputs
    def _add_frame(self, frame: Frame) -> None:
        if not self.runner.add_frame(frame):
            self._counters.add("rejected_frames")  # reason counted by the pipeline (rejected_<reason>)

    def _lookup(self, target: str, source: str, stamp_ns: int, timeout_s: float | None = None
                ) -> np.ndarray | None:
        """target_T_source at the stamp via tf2, or None (counted, warned)."""
        timeout_s = self.params["tf_timeout_s"] if timeout_s is None else timeout_s
        try:
            t = self._tf_buffer.lookup_transform(target, source, Time(nanoseconds=int(stamp_ns)),
                                                 Duration(seconds=float(timeout_s)))
            return transform_msg_to_matrix(t.transform)
        except Exception as exc:  # tf2 raises several exception types
            self._counters.add("tf_lookup_failures")
            self._warn("tf_lookup", f"tf lookup {target} <- {source} at {stamp_ns} ns failed: {exc}")
            return None

    # ------------------------------------------------------------------ outputs
    def _on_output(self, output: WindowOutput, latency_s: float) -> None:
        """Runner callback (output thread): publish a window's messages."""
        if not output.accepted:
            self._counters.add("windows_not_published")
            return
        with self._output_lock:
            messages = self.builder.window(output)
            fallback, self.builder.frames.fallback_reason = self.builder.frames.fallback_reason, ""
        if fallback:  # once per world: the mount is decided at its first frame
            self.get_logger().warning(f"TF: {fallback}")
        for m in messages:
            self._publish(m)
        self._counters.add("frames_published", len(output.frames))
        self._rate.add(len(output.frames))

    def _publish(self, m: Outgoing) -> None:
        if m.key == "tf":
            self._tf_broadcaster.sendTransform(m.message)
        else:
            self._pubs[m.key].publish(m.message)
        self._counters.add(f"{m.key}_published")

    def _tf_refused(self, child: str) -> None:
        """The TF publisher did not send a transform: another node publishes ``child``."""
        self._counters.add("tf_refused_foreign_frame")
        self._warn("tf_foreign", f"TF: not publishing a transform to '{child}': another node (a camera "
                   "driver?) publishes that frame, and tf2 would cut its tree. Set odom_frame and base_frame "
                   "(base_frame: the driver's root frame, e.g. camera_link)")

    def _republish_map_to_odom(self) -> None:
        """The latest map -> odom correction, future-dated by transform_tolerance_s (slam_toolbox,
        AMCL): consumers can transform up to now although corrections come per window."""
        T = self.builder.frames.last_map_to_odom  # replaced whole by the builder, never changed in place
        if T is None:
            return
        p = self.params
        stamp = self.get_clock().now().nanoseconds + int(p["transform_tolerance_s"] * 1e9)
        msg = self.factory.build("geometry_msgs/msg/TransformStamped",
                                 transform_stamped_fields(T, stamp, p["map_frame"], p["odom_frame"]))
        self._tf_broadcaster.sendTransform([msg])

    def _publish_path(self) -> None:
        with self._output_lock:
            m = self.builder.path()
        if m is not None:
            self._publish(m)

    def _publish_map(self) -> None:
        with self._output_lock:
            due = self.builder.map_due()
        if not due:
            return
        points, colors = self.pipeline.map_snapshot()
        with self._output_lock:
            m = self.builder.map(points, colors)
        if m is not None:
            self._publish(m)

    def _publish_grid(self) -> None:
        with self._output_lock:
            m = self.builder.grid()
        if m is not None:
            self._publish(m)

    def diagnostics_values(self) -> dict[str, Any]:
        """What the diagnostics message reports (also handy for tests and logs)."""
        return self._diagnostics().values

    def _diagnostics(self) -> Any:
        return diagnostics_report(self.pipeline, self.runner, self.stats(), output_rate_hz=self._rate.rate(),
                                  device=self._device, scale_source=self.params["scale_source"])

    def _publish_diagnostics(self) -> None:
        m = self.builder.diagnostics(self._diagnostics(), self.get_clock().now().nanoseconds,
                                     f"{self.get_name()}: vggt pipeline", self._device)
        if m is not None:
            self._publish(m)

    # ------------------------------------------------------------------ services
    def _reset_outputs(self) -> None:
        """The runner's reset hook (the service, or stamps jumping back): the old world's path, map
        schedule, TF mount and waiting depth images go too."""
        with self._output_lock:
            self.builder.reset()
        self.camera_input.clear()

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.runner.reset()
        self._counters.add("resets")
        response.success = True
        response.message = "pipeline reset: the next frame starts a new world"
        self.get_logger().info(response.message)
        return response

    def _on_save_map(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        path = os.path.abspath(os.path.expanduser(str(self.get_parameter("map_save_path").value)))
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            n = self.pipeline.save_map(path)
        except OSError as exc:
            response.success = False
            response.message = f"could not save the map to {path}: {exc}"
            self.get_logger().error(response.message)
            return response
        response.success = True
        response.message = f"saved {n} points to {path} (frame of the core's world, " + (
            "metres)" if self.pipeline.is_metric else "VGGT world units)")
        self.get_logger().info(response.message)
        return response

    # ------------------------------------------------------------------ lifetime
    def destroy_node(self) -> None:
        self._stop_inputs()
        detach_rcl_logging(self._log_bridge)
        super().destroy_node()


def _ignore_signals() -> None:
    """From here on the process is shutting down: a second Ctrl-C (``ros2 launch`` forwards every
    SIGINT, then escalates to SIGTERM) must not raise inside the threads' join."""
    uninstall_signal_handlers()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def main(args: Sequence[str] | None = None, predictor: Predictor | None = None) -> int:
    """Entry point (``ros2 run vggt_ros vggt_node``): spin the node on a single-threaded executor.

    SIGINT and SIGTERM end it with exit status 0 after the inference and output threads are joined;
    invalid parameters or an unavailable checkpoint exit with status 2 and the reason on stderr.
    ``predictor``: a ready predictor (the oracle node), else the VGGT engine of the parameters.
    """
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = VggtNode(predictor=predictor)
        except (ValueError, RuntimeError) as exc:
            print(f"vggt_node: {exc}", file=sys.stderr)
            return 2
        # One thread: every callback is short (inference and output building run in the runner's
        # threads; tf2's listener spins its own). rclpy's MultiThreadedExecutor cost 2.5 times the
        # CPU here (its dispatch loop held the GIL for half of a soak; 13.8 s vs 5.5 s of CPU per
        # 20 s at 15 Hz), and that lost images once the node fell behind.
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        # Start-up objects (modules, weights' wrappers, tables) live for the whole run: out of the cyclic
        # collector's reach, its full collections stop walking them. On a 2-core CPU one walk held the
        # GIL for about 140 ms every few seconds, enough to lose best-effort images (sensor-data QoS).
        gc.collect()
        gc.freeze()
        try:
            executor.spin()
        except ExternalShutdownException:
            pass
        except RCLError:  # the signal's shutdown invalidated the context while a wait set was being built
            if rclpy.ok():
                raise
        return 0
    except KeyboardInterrupt:  # a signal while rclpy's handlers were not installed yet
        return 0
    finally:
        _ignore_signals()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
