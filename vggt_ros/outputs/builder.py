"""OutputBuilder: window outputs, the map and diagnostics -> the messages of the output plan.

One builder serves the node (rclpy message classes) and the replay (a rosbags typestore): both give
a :class:`MessageFactory` and publish/write the :class:`Outgoing` messages it returns, so what a bag
replay writes is what the node publishes. The Path is accumulating: each pose is serialised once
and kept (at most ``path_max_poses``, :mod:`vggt_ros.outputs.path_cdr`), so a Path message costs a
memory copy, not a rebuild of every pose; it is published every ``path_publish_period_s`` when it
has new poses, as serialised bytes. The occupancy grid (:mod:`vggt_ros.outputs.occupancy`) integrates
each keyframe's points in the published world as the window is built, and is published like the map.

Odometry (REP 105, ``nav_msgs/Odometry``): the published pose of the child frame in the published
world, its covariance (:attr:`FrameOutput.pose_covariance <vggt_ros.core.types.FrameOutput>`: isotropic
per block, so the same in the published world as in the core's, base mode included; the position
error that a rotation error causes through the base <- camera lever arm is not added), and the twist
of the child frame in the child frame from the previous published pose of the same child
(:func:`body_twist`). A child's first message, or one whose stamp does not follow its previous one,
carries zero twist with ``FIRST_TWIST_VARIANCE`` on the covariance diagonal, so fusers ignore it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy.spatial.transform import Rotation

from vggt_ros.core.types import WindowOutput
from vggt_ros.messages.camera_info import camera_info_fields
from vggt_ros.messages.diagnostics import diagnostic_array_fields, diagnostic_status_fields
from vggt_ros.messages.images import confidence_image_fields, depth_image_fields, rgb_image_fields
from vggt_ros.messages.loop_closures import loop_closure_fields
from vggt_ros.messages.point_clouds import pointcloud2_fields
from vggt_ros.messages.poses import odometry_fields, transform_stamped_fields
from vggt_ros.messages.tracks import keypoint_tracks_fields
from vggt_ros.outputs.occupancy import OccupancyGrid2D
from vggt_ros.outputs.path_cdr import PathCdr
from vggt_ros.outputs.plan import OUTPUTS_BY_KEY, enabled_outputs
from vggt_ros.outputs.pose_frames import PoseFrames
from vggt_ros.runner.diagnostics import DiagnosticsReport

FIRST_TWIST_VARIANCE = 1e3  # twist covariance diagonal of a message without a previous pose (unknown)
MAX_TWIST_CHILDREN = 64  # child frames whose previous pose is kept for the twist (oldest forgotten)


def body_twist(T0: np.ndarray, T1: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """(linear, angular) velocity of the moving frame in its own frame, from its poses ``T0`` then
    ``T1`` (4x4, in one fixed frame) ``dt`` seconds apart: the SE(3) log of ``T0^-1 T1`` over ``dt``,
    exact for a constant body twist (the twist of ``nav_msgs/Odometry``, in ``child_frame_id``)."""
    rel = np.linalg.solve(T0, T1)
    phi = Rotation.from_matrix(rel[:3, :3]).as_rotvec()
    th = float(np.linalg.norm(phi))
    if th < 1e-4:
        b, c = 0.5 - th * th / 24.0, 1.0 / 6.0 - th * th / 120.0
    else:
        b, c = (1.0 - np.cos(th)) / th**2, (th - np.sin(th)) / th**3
    P = np.array([[0.0, -phi[2], phi[1]], [phi[2], 0.0, -phi[0]], [-phi[1], phi[0], 0.0]])
    V = np.eye(3) + b * P + c * P @ P
    return np.linalg.solve(V, rel[:3, 3]) / dt, phi / dt


def twist_covariance(R1: np.ndarray, cov0: np.ndarray, cov1: np.ndarray, dt: float) -> np.ndarray:
    """Covariance of :func:`body_twist` from the two poses' covariances (in the fixed frame; errors
    taken as independent, which is conservative for frames of one window), rotated into the moving
    frame at ``T1`` (rotation ``R1``), over ``dt^2``."""
    Rb = np.zeros((6, 6))
    Rb[:3, :3] = Rb[3:, 3:] = R1.T
    return Rb @ (np.asarray(cov0, np.float64) + np.asarray(cov1, np.float64)) @ Rb.T / (dt * dt)


class MessageFactory(Protocol):
    def build(self, msg_type: str, fields: Mapping[str, Any]) -> Any:
        """A message of ``msg_type`` ('nav_msgs/msg/Path') from a fields dict (values may already be
        messages of this factory)."""


class FieldsOnly:
    """A message factory returning the fields dicts themselves: what the builder produces without a
    ROS message library (benchmarks of the message cost, tests of the message contents)."""

    def build(self, msg_type: str, fields: Mapping[str, Any]) -> Mapping[str, Any]:
        return fields


@dataclass
class Outgoing:
    """One message to publish on the output ``key`` of the plan; ``tf`` carries a list of
    TransformStamped (what a tf2 broadcaster sends), ``path`` serialised bytes, every other key one
    message of the factory."""

    key: str
    message: Any
    stamp_ns: int


class OutputBuilder:
    """Messages of the enabled outputs (see :mod:`vggt_ros.outputs.plan`)."""

    def __init__(self, params: Mapping[str, Any], factory: MessageFactory, frames: PoseFrames) -> None:
        self.factory = factory
        self.frames = frames
        self.enabled = frozenset(o.key for o in enabled_outputs(params))
        # with the pose graph, the path and the map are its corrected ones, in the map frame
        self.corrected_frame = frames.map_frame if params["pose_graph"] else frames.world_frame
        self._path = PathCdr(self.corrected_frame, int(params["path_max_poses"]) or None)
        self._path_new = False
        self._newest_stamp: int | None = None
        self._map_new = False
        self.grid_map = OccupancyGrid2D(params["grid_resolution"], params["grid_max_cells"],
                                        params["grid_min_z"], params["grid_max_z"], params["grid_max_rays"])
        self._grid_new = False
        # child frame -> (stamp ns, published pose, its covariance) of its last odometry message
        self._last_pose: OrderedDict[str, tuple[int, np.ndarray, np.ndarray]] = OrderedDict()

    def _msg(self, key: str, fields: Mapping[str, Any], stamp_ns: int) -> Outgoing:
        return Outgoing(key, self.factory.build(OUTPUTS_BY_KEY[key].msg_type, fields), int(stamp_ns))

    @property
    def newest_stamp_ns(self) -> int | None:
        """Stamp of the newest published frame (the map's stamp)."""
        return self._newest_stamp

    def reset(self) -> None:
        self.frames.reset()
        self._path.clear()
        self._path_new = self._map_new = self._grid_new = False
        self.grid_map.clear()
        self._newest_stamp = None
        self._last_pose.clear()

    def _odometry(self, pose: np.ndarray, cov: np.ndarray, stamp_ns: int, child: str) -> dict[str, Any]:
        """Odometry fields of ``pose`` (published world -> ``child``) with its covariance and the twist
        since the child's previous message (none: zero twist, ``FIRST_TWIST_VARIANCE``)."""
        prev = self._last_pose.pop(child, None)
        self._last_pose[child] = (stamp_ns, pose, cov)
        while len(self._last_pose) > MAX_TWIST_CHILDREN:
            self._last_pose.popitem(last=False)
        if prev is None or stamp_ns <= prev[0]:
            lin, ang = np.zeros(3), np.zeros(3)
            tcov = np.eye(6) * FIRST_TWIST_VARIANCE
        else:
            dt = (stamp_ns - prev[0]) * 1e-9
            lin, ang = body_twist(prev[1], pose, dt)
            tcov = twist_covariance(pose[:3, :3], prev[2], cov, dt)
        return odometry_fields(pose, stamp_ns, self.frames.world_frame, child, cov, lin, ang, tcov)

    # ------------------------------------------------------------------ per window
    def window(self, output: WindowOutput) -> list[Outgoing]:
        """Per-frame messages of an accepted window, in frame order, then its tracks."""
        if not output.accepted:
            return []
        out: list[Outgoing] = []
        on = self.enabled
        for fo in output.frames:
            s, cam = int(fo.stamp_ns), fo.frame_id
            placed = self.frames.place(fo.world_T_camera, cam, s)
            if placed is not None:
                if "tf" in on and placed.tf is not None:
                    T, parent, child = placed.tf
                    tf = self.factory.build("geometry_msgs/msg/TransformStamped",
                                            transform_stamped_fields(T, s, parent, child))
                    out.append(Outgoing("tf", [tf], s))
                if "odometry" in on:
                    odom = self._odometry(placed.pose, fo.pose_covariance, s, placed.child_frame)
                    out.append(self._msg("odometry", odom, s))
                if "path" in on and not output.optimised_poses:
                    self._path.add(self.frames.graph_correction @ placed.pose, s)
                    self._path_new = True
            if "grid" in on and fo.is_keyframe:
                self._integrate_grid(fo)
            if "depth" in on:
                hd, wd = fo.depth.shape
                out.append(self._msg("depth", depth_image_fields(fo.depth, s, cam), s))
                info = camera_info_fields(fo.depth_intrinsics, hd, wd, s, cam)
                out.append(self._msg("depth_info", info, s))
            if "confidence" in on:
                out.append(self._msg("confidence", confidence_image_fields(fo.depth_conf, s, cam), s))
            if "depth_rgb" in on:
                out.append(self._msg("depth_rgb", rgb_image_fields(fo.rgb, s, cam), s))
            if "points" in on:
                out.append(self._msg("points", pointcloud2_fields(fo.points, fo.colors, s, cam), s))
            self._newest_stamp = s if self._newest_stamp is None else max(self._newest_stamp, s)
            self._map_new = True
        if output.frames:
            out += self._graph_outputs(output, int(output.frames[-1].stamp_ns))
        tracks = output.tracks
        if "tracks" in on and tracks is not None and tracks.positions.shape[1] > 0:
            fields = keypoint_tracks_fields(tracks)
            out.append(self._msg("tracks", fields, int(tracks.stamps_ns[-1])))
        return out

    def _graph_outputs(self, output: WindowOutput, stamp: int) -> list[Outgoing]:
        """The pose graph's correction as TF, its loop closures, and after a loop the whole path
        again from the optimised poses."""
        out: list[Outgoing] = []
        if output.map_T_odom is not None:
            tf = self.frames.correction_tf(output.map_T_odom)
            if tf is not None and "tf" in self.enabled:
                fields = transform_stamped_fields(tf[0], stamp, tf[1], tf[2])
                msg = self.factory.build("geometry_msgs/msg/TransformStamped", fields)
                out.append(Outgoing("tf", [msg], stamp))
        if output.loop_closures and "loops" in self.enabled:
            out.append(self._msg("loops", loop_closure_fields(output.loop_closures, stamp,
                                                              self.corrected_frame), stamp))
        if output.optimised_poses and "path" in self.enabled:
            self._path.clear()
            for s in sorted(output.optimised_poses):
                T = self.frames.published_pose(output.optimised_poses[s])
                if T is not None:
                    self._path.add(T, s)
            self._path_new = True
        return out

    def _integrate_grid(self, fo: Any) -> None:
        """A keyframe's points and camera origin, in the published world, into the grid."""
        T = np.asarray(fo.world_T_camera, np.float64)
        pts = np.asarray(fo.points, np.float64).reshape(-1, 3) @ T[:3, :3].T + T[:3, 3]
        both = self.frames.map_points(np.vstack([pts, T[None, :3, 3]]))
        if both is None:  # the published world is not known yet
            return
        self.grid_map.integrate(both[:-1], both[-1])
        self._grid_new = True

    # ------------------------------------------------------------------ accumulating outputs
    def path(self) -> Outgoing | None:
        """The Path (every kept pose, serialised), when poses were added since the last one."""
        if "path" not in self.enabled or not self._path_new or self._newest_stamp is None:
            return None
        self._path_new = False
        stamp = self._newest_stamp
        return Outgoing("path", self._path.serialize(stamp), stamp)

    def map_due(self) -> bool:
        """Frames were integrated since the last map message."""
        return "map" in self.enabled and self._map_new and self._newest_stamp is not None

    def map(self, points: np.ndarray, colors: np.ndarray | None) -> Outgoing | None:
        """The accumulated map (core world points, e.g. ``pipeline.map_snapshot()``) in the published
        world frame, stamped with the newest frame; None when not due or not placeable yet."""
        if not self.map_due():
            return None
        pts = self.frames.map_points(np.asarray(points, np.float32).reshape(-1, 3))
        if pts is None:
            return None
        self._map_new = False
        stamp = int(self._newest_stamp)  # type: ignore[arg-type]
        cols = None if colors is None else np.asarray(colors, np.uint8).reshape(-1, 3)
        return self._msg("map", pointcloud2_fields(pts, cols, stamp, self.corrected_frame), stamp)

    def grid(self) -> Outgoing | None:
        """The occupancy grid in the published world frame, stamped with the newest frame, when
        keyframes were integrated since the last one."""
        if "grid" not in self.enabled or not self._grid_new or self._newest_stamp is None:
            return None
        self._grid_new = False
        stamp = int(self._newest_stamp)
        return self._msg("grid", self.grid_map.fields(stamp, self.frames.world_frame), stamp)

    def diagnostics(self, report: DiagnosticsReport, stamp_ns: int, name: str, hardware_id: str
                    ) -> Outgoing | None:
        if "diagnostics" not in self.enabled:
            return None
        status = diagnostic_status_fields(name, report.values, report.level, report.message, hardware_id)
        return self._msg("diagnostics", diagnostic_array_fields([status], int(stamp_ns)), stamp_ns)
