"""Poses as 4x4 matrices <-> ``geometry_msgs`` Pose / Transform(Stamped) / PoseStamped and
``nav_msgs`` Odometry / Path fields.

Why here: one quaternion convention (``x y z w``, ``w >= 0``) for /tf, odometry and paths, shared
by the node, the bag writer and the ground-truth readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from vggt_ros.messages.errors import MessageError, decoding, float_array
from vggt_ros.messages.stamps import Fields, header_fields


def _check_pose(T: np.ndarray) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.isfinite(T).all():
        raise ValueError(f"pose must be a finite 4x4 matrix, got shape {T.shape}")
    return T


def matrix_to_translation_quaternion(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4x4 pose -> (translation [3], unit quaternion [x, y, z, w] with w >= 0), float64."""
    T = _check_pose(T)
    q = Rotation.from_matrix(T[:3, :3]).as_quat()
    if q[3] < 0:
        q = -q
    return T[:3, 3].copy(), q


def translation_quaternion_to_matrix(t: Any, q_xyzw: Any) -> np.ndarray:
    """(translation [3], quaternion [x, y, z, w]) -> 4x4 float64 pose (quaternion normalised).

    Raises :class:`MessageError` unless the translation is 3 finite numbers and the quaternion 4
    finite numbers, not all zero."""
    q = float_array(q_xyzw, "quaternion")
    if q.shape != (4,) or not np.isfinite(q).all() or np.abs(q).max() == 0:
        raise MessageError(f"quaternion must be 4 finite values, not all zero, got {q}")
    scale = np.abs(q).max()
    q = q / scale  # no overflow in the norm for huge components
    if scale < 1e-12 / np.linalg.norm(q):  # the quaternion's norm below 1e-12, without overflow
        raise MessageError(f"quaternion must be 4 finite values, not all zero, got {q * scale}")
    t = float_array(t, "translation").reshape(-1)
    if t.shape != (3,) or not np.isfinite(t).all():
        raise MessageError(f"translation must be 3 finite values, got {t}")
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(q).as_matrix()
    T[:3, 3] = t
    return T


def _xyz(v: np.ndarray) -> Fields:
    return {"x": float(v[0]), "y": float(v[1]), "z": float(v[2])}


def _xyzw(q: np.ndarray) -> Fields:
    return {"x": float(q[0]), "y": float(q[1]), "z": float(q[2]), "w": float(q[3])}


def pose_fields(T: np.ndarray) -> Fields:
    """``geometry_msgs/Pose`` fields from a 4x4 pose."""
    t, q = matrix_to_translation_quaternion(T)
    return {"position": _xyz(t), "orientation": _xyzw(q)}


def transform_fields(T: np.ndarray) -> Fields:
    """``geometry_msgs/Transform`` fields from a 4x4 ``parent_T_child``."""
    t, q = matrix_to_translation_quaternion(T)
    return {"translation": _xyz(t), "rotation": _xyzw(q)}


def transform_stamped_fields(T: np.ndarray, stamp_ns: int, parent_frame: str, child_frame: str) -> Fields:
    """``geometry_msgs/TransformStamped`` fields (for /tf): ``T`` = parent_T_child."""
    return {
        "header": header_fields(stamp_ns, parent_frame),
        "child_frame_id": str(child_frame),
        "transform": transform_fields(T),
    }


def pose_stamped_fields(T: np.ndarray, stamp_ns: int, frame_id: str) -> Fields:
    """``geometry_msgs/PoseStamped`` fields."""
    return {"header": header_fields(stamp_ns, frame_id), "pose": pose_fields(T)}


def _covariance36(cov: Any) -> np.ndarray:
    if cov is None:
        return np.zeros(36)
    c = np.asarray(cov, dtype=np.float64).reshape(-1)
    if c.size != 36:
        raise ValueError(f"covariance must have 36 values (6x6), got {c.size}")
    return c.copy()


def odometry_fields(
    T: np.ndarray,
    stamp_ns: int,
    frame_id: str,
    child_frame_id: str,
    pose_covariance: np.ndarray | None = None,
    twist_linear: np.ndarray | None = None,
    twist_angular: np.ndarray | None = None,
    twist_covariance: np.ndarray | None = None,
) -> Fields:
    """``nav_msgs/Odometry`` fields: pose of ``child_frame_id`` in ``frame_id``; covariances row-major
    6x6 (zeros when unknown), twist in the child frame (zeros when not given)."""
    return {
        "header": header_fields(stamp_ns, frame_id),
        "child_frame_id": str(child_frame_id),
        "pose": {"pose": pose_fields(T), "covariance": _covariance36(pose_covariance)},
        "twist": {
            "twist": {
                "linear": _xyz(np.zeros(3) if twist_linear is None else np.asarray(twist_linear, float)),
                "angular": _xyz(np.zeros(3) if twist_angular is None else np.asarray(twist_angular, float)),
            },
            "covariance": _covariance36(twist_covariance),
        },
    }


def path_fields(
    poses: Sequence[np.ndarray] | np.ndarray,
    stamps_ns: Sequence[int],
    frame_id: str,
    stamp_ns: int | None = None,
) -> Fields:
    """``nav_msgs/Path`` fields: one PoseStamped per pose; header stamp = ``stamp_ns`` or the last
    pose's stamp."""
    poses = list(poses)
    stamps = [int(s) for s in stamps_ns]
    if len(poses) != len(stamps):
        raise ValueError(f"{len(poses)} poses but {len(stamps)} stamps")
    if stamp_ns is None:
        stamp_ns = stamps[-1] if stamps else 0
    return {
        "header": header_fields(stamp_ns, frame_id),
        "poses": [pose_stamped_fields(T, s, frame_id) for T, s in zip(poses, stamps, strict=True)],
    }


def pose_msg_to_matrix(pose: Any) -> np.ndarray:
    """``geometry_msgs/Pose``-like (``.position``, ``.orientation``) -> 4x4; :class:`MessageError`
    for missing, non-numeric or non-finite fields and an all-zero quaternion."""
    with decoding("Pose"):
        p, o = pose.position, pose.orientation
        return translation_quaternion_to_matrix([p.x, p.y, p.z], [o.x, o.y, o.z, o.w])


def transform_msg_to_matrix(transform: Any) -> np.ndarray:
    """``geometry_msgs/Transform``-like (``.translation``, ``.rotation``) -> 4x4; :class:`MessageError`
    for missing, non-numeric or non-finite fields and an all-zero quaternion."""
    with decoding("Transform"):
        t, r = transform.translation, transform.rotation
        return translation_quaternion_to_matrix([t.x, t.y, t.z], [r.x, r.y, r.z, r.w])
