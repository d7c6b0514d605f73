"""Fixed frame conventions: OpenCV optical world -> published world (REP 103 / robot base).

Internally the core works in the *optical world*: the OpenCV camera frame of the first keyframe
(x right, y down, z forward). The published world is one of:

* ``optical``: the optical world itself;
* ``rep103``: same origin, axes rotated to REP 103 (x forward, y left, z up):
  ``x_rep = z_opt``, ``y_rep = -x_opt``, ``z_rep = -y_opt``;
* with ``base_T_camera`` configured (camera optical frame in the robot base, metres): the robot base
  at the first keyframe, i.e. ``world_T_optical_world = base_T_camera`` (REP 103 by definition of
  base_link). Its translation is in metres, so it is meant for metric pipelines.

Camera poses keep the camera's *optical* frame as child: ``world_T_camera = W @ optical_T_camera``.
"""

from __future__ import annotations

import numpy as np

# Rows: REP 103 axes expressed in optical coordinates; rep103 = R @ optical.
REP103_R_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def rep103_T_optical() -> np.ndarray:
    """4x4 rotation taking OpenCV optical coordinates to REP 103 (x forward, y left, z up)."""
    t = np.eye(4)
    t[:3, :3] = REP103_R_OPTICAL
    return t


def world_T_optical_world(convention: str, base_T_camera: np.ndarray | None = None) -> np.ndarray:
    """Fixed transform from the internal optical world to the published world frame."""
    if base_T_camera is not None:
        return np.asarray(base_T_camera, dtype=np.float64).reshape(4, 4).copy()
    if convention == "optical":
        return np.eye(4)
    if convention == "rep103":
        return rep103_T_optical()
    raise ValueError(f"unknown world_frame_convention {convention!r} (optical | rep103)")


def scale_pose(T: np.ndarray, scale: float) -> np.ndarray:
    """A rigid pose with its translation multiplied by ``scale`` (change of length unit)."""
    out = np.array(T, dtype=np.float64, copy=True)
    out[:3, 3] *= scale
    return out


def to_output_pose(
    optical_world_T_camera: np.ndarray, scale: float, world_T_optical: np.ndarray
) -> np.ndarray:
    """Internal pose (optical world, world units) -> published pose (published world, output units)."""
    return world_T_optical @ scale_pose(optical_world_T_camera, scale)


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to ``[N, 3]`` points (vectorised, float64 maths, input dtype out)."""
    p = np.asarray(points)
    out = p.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
    return out.astype(p.dtype if p.dtype in (np.float32, np.float64) else np.float64)


def invert_pose(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform."""
    out = np.eye(4)
    r = T[:3, :3]
    out[:3, :3] = r.T
    out[:3, 3] = -r.T @ T[:3, 3]
    return out


def rotation_angle_deg(R: np.ndarray) -> float:
    """Rotation angle of a 3x3 rotation matrix in degrees (robust to rounding)."""
    c = (np.trace(R) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))
