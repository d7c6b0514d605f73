"""Which frames carry a pose (REP 105): the TF edge and the odometry frames of each published pose.

Camera mode (no ``odom_frame``): ``map_frame -> camera optical frame``. Base mode (``odom_frame`` and
``base_frame``): the pose of the robot base, composed with ``base_frame -> camera`` looked up once
from TF; published as ``odom_frame -> base_frame``, or with ``publish_map_to_odom`` as the correction
``map_frame -> odom_frame`` against an external odometry looked up at each stamp.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from vggt_ros.core.frames import invert_pose

# target_T_source at a stamp from TF, or None when it is not available (counted by the caller)
Lookup = Callable[[str, str, int], "np.ndarray | None"]


@dataclass
class PlacedPose:
    """One pose as published: odometry ``world_frame -> child`` and the TF edge (None: no TF now)."""

    pose: np.ndarray
    child_frame: str
    tf: tuple[np.ndarray, str, str] | None  # (parent_T_child, parent, child)


class PoseFrames:
    """Frame policy of published poses; ``world_T_optical`` maps the core's optical world into the
    published world (see :func:`vggt_ros.core.frames.world_T_optical_world`)."""

    def __init__(self, params: Mapping[str, Any], world_T_optical: np.ndarray, lookup: Lookup | None) -> None:
        self.map_frame = str(params["map_frame"])
        self.odom_frame = str(params["odom_frame"])
        self.base_frame = str(params["base_frame"])
        self.map_to_odom = bool(params["publish_map_to_odom"])
        self.base_mode = bool(self.odom_frame)
        if self.base_mode and lookup is None:
            raise ValueError("odom_frame/base_frame need TF lookups (base_frame -> camera), which this "
                             "output has not")
        self.world_frame = self.odom_frame if self.base_mode and not self.map_to_odom else self.map_frame
        self._optical_T_world = invert_pose(world_T_optical)
        self._lookup = lookup
        self._base_T_camera: np.ndarray | None = None

    def _world_T_core(self, camera_frame: str, stamp_ns: int) -> np.ndarray | None:
        """Published world <- core world (base mode: the base at the first keyframe), or None while
        base_frame -> camera is unknown. The static mount is looked up once, then cached."""
        if self._base_T_camera is None:
            assert self._lookup is not None
            self._base_T_camera = self._lookup(self.base_frame, camera_frame, stamp_ns)
            if self._base_T_camera is None:
                return None
        return self._base_T_camera @ self._optical_T_world

    def place(self, world_T_camera: np.ndarray, camera_frame: str, stamp_ns: int) -> PlacedPose | None:
        """The published pose of a camera pose of the core; None when TF cannot place it yet."""
        if not self.base_mode:
            return PlacedPose(world_T_camera, camera_frame, (world_T_camera, self.world_frame, camera_frame))
        G = self._world_T_core(camera_frame, stamp_ns)
        if G is None:
            return None
        assert self._base_T_camera is not None
        w_T_base = G @ world_T_camera @ invert_pose(self._base_T_camera)
        if not self.map_to_odom:
            return PlacedPose(w_T_base, self.base_frame, (w_T_base, self.odom_frame, self.base_frame))
        assert self._lookup is not None
        odom_T_base = self._lookup(self.odom_frame, self.base_frame, stamp_ns)
        tf = None if odom_T_base is None else (
            w_T_base @ invert_pose(odom_T_base), self.map_frame, self.odom_frame)
        return PlacedPose(w_T_base, self.base_frame, tf)

    def map_points(self, points: np.ndarray) -> np.ndarray | None:
        """Map points of the core's world in the published world; None while that is unknown."""
        if not self.base_mode:
            return points
        if self._base_T_camera is None:
            return None
        G = self._base_T_camera @ self._optical_T_world
        return (points.astype(np.float64) @ G[:3, :3].T + G[:3, 3]).astype(np.float32)
