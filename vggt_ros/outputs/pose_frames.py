"""Which frames carry a pose (REP 105): the TF edge and the odometry frames of each published pose.

Base mode (the default: ``odom_frame`` and ``base_frame`` set): the pose of the robot base in
``odom_frame``, composed with the mount ``base_frame -> camera`` looked up from TF once, at the
first frame after start or reset (a bare camera: ``base_frame`` = the driver's root, e.g.
``camera_link``). Published as ``odom_frame -> base_frame``, or with ``publish_map_to_odom`` as the
correction ``map_frame -> odom_frame`` against an external odometry looked up at each stamp (and the
node republishes the latest correction periodically, future-dated, as slam_toolbox and AMCL do).
Where the mount cannot be looked up (no TF tree, no tf2_ros, the bag replay), the camera itself is
published under our own frame :data:`FALLBACK_CAMERA_FRAME`, never under a frame another node may own.

Camera mode (``odom_frame`` and ``base_frame`` empty): ``map_frame -> camera optical frame``; the
node's TF publisher refuses it when another node (a camera driver) publishes that frame.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from vggt_ros.core.frames import invert_pose

FALLBACK_CAMERA_FRAME = "vggt_camera_optical_frame"  # ours: the camera when its mount is unknown
MOUNT_LOOKUP_WAIT_S = 1.0  # the first mount lookup may wait for a driver's static TF

# lookup(target, source, stamp_ns, timeout_s) -> target_T_source, or None (counted by the caller)
Lookup = Callable[[str, str, int, float], "np.ndarray | None"]


@dataclass
class PlacedPose:
    """One pose as published: odometry ``world_frame -> child`` and the TF edge (None: no TF now)."""

    pose: np.ndarray
    child_frame: str
    tf: tuple[np.ndarray, str, str] | None  # (parent_T_child, parent, child)


class PoseFrames:
    """Frame policy of published poses; ``world_T_optical`` maps the core's optical world into its
    output world (see :func:`vggt_ros.core.frames.world_T_optical_world`)."""

    def __init__(self, params: Mapping[str, Any], world_T_optical: np.ndarray, lookup: Lookup | None) -> None:
        self.map_frame = str(params["map_frame"])
        self.odom_frame = str(params["odom_frame"])
        self.base_frame = str(params["base_frame"])
        self.map_to_odom = bool(params["publish_map_to_odom"])
        self.tf_timeout_s = float(params["tf_timeout_s"])
        self.base_mode = bool(self.odom_frame)
        self.world_frame = self.odom_frame if self.base_mode and not self.map_to_odom else self.map_frame
        self._optical_T_world = invert_pose(world_T_optical)
        self._lookup = lookup
        self._mount: np.ndarray | None = None  # base_T_camera, decided at the first frame
        self.child_frame = self.base_frame
        self.last_map_to_odom: np.ndarray | None = None
        self.graph_correction = np.eye(4)  # the pose graph's map <- odom, published frames
        self.fallback_reason = ""

    def reset(self) -> None:
        """A new world: the mount is looked up again at the next frame."""
        self._mount = None
        self.child_frame = self.base_frame
        self.last_map_to_odom = None
        self.graph_correction = np.eye(4)
        self.fallback_reason = ""

    def _decide_mount(self, camera_frame: str, stamp_ns: int) -> None:
        mount = None
        if self.base_frame == camera_frame:
            mount = np.eye(4)
        elif self._lookup is not None:
            mount = self._lookup(self.base_frame, camera_frame, stamp_ns, max(self.tf_timeout_s,
                                                                              MOUNT_LOOKUP_WAIT_S))
        if mount is None:
            why = "no TF lookups here" if self._lookup is None else "not in TF"
            self.fallback_reason = (
                f"{self.base_frame} -> {camera_frame} is {why}: the camera is published as "
                f"{self.odom_frame} -> {FALLBACK_CAMERA_FRAME} (set base_frame to the camera driver's root "
                f"frame, e.g. camera_link, or publish the mount, then call ~/reset)")
            self.child_frame = FALLBACK_CAMERA_FRAME
            mount = np.eye(4)
        self._mount = mount

    def place(self, world_T_camera: np.ndarray, camera_frame: str, stamp_ns: int) -> PlacedPose | None:
        """The published pose of a camera pose of the core; None when TF cannot place it yet."""
        if not self.base_mode:
            return PlacedPose(world_T_camera, camera_frame, (world_T_camera, self.world_frame, camera_frame))
        if self._mount is None:
            self._decide_mount(camera_frame, stamp_ns)
        w_T_base = self.published_pose(world_T_camera)
        assert w_T_base is not None  # the mount is decided
        if not self.map_to_odom:
            return PlacedPose(w_T_base, self.child_frame, (w_T_base, self.odom_frame, self.child_frame))
        odom_T_base = None
        if self._lookup is not None and self.child_frame == self.base_frame:
            odom_T_base = self._lookup(self.odom_frame, self.base_frame, stamp_ns, self.tf_timeout_s)
        if odom_T_base is None:
            return PlacedPose(w_T_base, self.child_frame, None)
        # the node also republishes it; the pose graph's correction moves our pose into the map first
        self.last_map_to_odom = self.graph_correction @ w_T_base @ invert_pose(odom_T_base)
        tf = (self.last_map_to_odom, self.map_frame, self.odom_frame)
        return PlacedPose(w_T_base, self.child_frame, tf)

    def correction_tf(self, map_T_odom: np.ndarray) -> tuple[np.ndarray, str, str] | None:
        """The pose graph's correction (the core's published world) as ``map_frame -> odom_frame``.

        Base mode only, once the mount is known. With an external odometry (``publish_map_to_odom``)
        the correction is folded into the next map -> odom instead (None here). Camera mode has no
        odom frame to carry it: the corrected map and path are in the map frame, poses are not."""
        if not self.base_mode:
            self.graph_correction = np.asarray(map_T_odom, np.float64)
            return None
        if self._mount is None:
            return None
        G = self._mount @ self._optical_T_world
        C = G @ np.asarray(map_T_odom, np.float64) @ invert_pose(G)
        self.graph_correction = C
        if self.map_to_odom:
            return None
        self.last_map_to_odom = C
        return (C, self.map_frame, self.odom_frame)

    def published_pose(self, world_T_camera: np.ndarray) -> np.ndarray | None:
        """A core pose as published (the child frame's pose), without deciding anything; None while
        the mount is unknown in base mode."""
        if not self.base_mode:
            return world_T_camera
        if self._mount is None:
            return None
        return self._mount @ self._optical_T_world @ world_T_camera @ invert_pose(self._mount)

    def map_points(self, points: np.ndarray) -> np.ndarray | None:
        """Map points of the core's world in the published world; None while that is unknown."""
        if not self.base_mode:
            return points
        if self._mount is None:
            return None
        G = self._mount @ self._optical_T_world
        return (points.astype(np.float64) @ G[:3, :3].T + G[:3, 3]).astype(np.float32)
