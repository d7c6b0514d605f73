"""``sensor_msgs/CameraInfo``: intrinsics and distortion to fields and back.

Why here: the node and the bag reader take the camera from CameraInfo with the same validity rule
(:class:`UncalibratedCamera` lets callers fall back to the predicted intrinsics deliberately).
Distortion models: ``plumb_bob`` (D = k1 k2 p1 p2 k3), ``rational_polynomial`` (k1 k2 p1 p2 k3 k4 k5
k6) and ``equidistant`` (fisheye k1 k2 k3 k4); an all-zero or empty D is a pinhole camera whatever
the model's name. Another model or a D of the wrong length is refused (:class:`MessageError`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vggt_ros.messages.errors import (
    MAX_IMAGE_PIXELS,
    MessageError,
    decoding,
    float_array,
    int_field,
    short_repr,
)
from vggt_ros.messages.stamps import Fields, header_fields


class UncalibratedCamera(MessageError):
    """CameraInfo without usable intrinsics (K all zero, non-finite or non-positive focal lengths,
    or a zero image size); a :class:`MessageError`, hence a ``ValueError``."""


class UnsupportedDistortion(UncalibratedCamera):
    """CameraInfo with a distortion model other than :data:`DISTORTION_MODELS`, or a D of the wrong
    length or with non-finite values: its calibration cannot be used (an :class:`UncalibratedCamera`,
    so callers skip it as they skip one without intrinsics)."""


DISTORTION_MODELS = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}  # model -> len(D)


@dataclass(frozen=True, eq=False)
class CameraModel:
    """A calibrated camera: K (3x3), image size (height, width), distortion model and D (float64).
    ``distorted`` is False for a pinhole camera (D empty or all zero); the undistorted image has
    the same K (``new_K``, see :mod:`vggt_ros.core.undistort`)."""

    K: np.ndarray
    hw: tuple[int, int]
    distortion_model: str = "plumb_bob"
    D: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def distorted(self) -> bool:
        return bool(self.D.size) and bool(np.any(self.D != 0))

    @property
    def new_K(self) -> np.ndarray:
        return self.K


def distortion_from_fields(model: Any, d: Any) -> tuple[str, np.ndarray]:
    """(model, D) of a CameraInfo, validated: an all-zero/empty D -> ("plumb_bob", empty)."""
    if not isinstance(model, str):
        raise MessageError(f"CameraInfo: distortion_model must be a string, got {type(model).__name__}")
    D = float_array(d, "CameraInfo: d").reshape(-1)
    if not np.isfinite(D).all():
        raise UnsupportedDistortion(f"CameraInfo: d has non-finite values {short_repr(D.tolist())}")
    if not D.size or not np.any(D != 0):
        return "plumb_bob", np.zeros(0)
    n = DISTORTION_MODELS.get(model)
    if n is None:
        raise UnsupportedDistortion(
            f"CameraInfo: distortion_model {model!r} is not supported (supported: "
            f"{', '.join(DISTORTION_MODELS)}); the camera's distortion cannot be removed")
    if D.size != n:
        raise UnsupportedDistortion(f"CameraInfo: distortion_model {model!r} takes {n} coefficients in d, "
                                    f"got {D.size} ({short_repr(D.tolist())})")
    return model, D


def camera_info_fields(
    K: np.ndarray,
    height: int,
    width: int,
    stamp_ns: int,
    frame_id: str,
    distortion: np.ndarray | None = None,
    distortion_model: str = "plumb_bob",
) -> Fields:
    """``sensor_msgs/CameraInfo`` fields for a pinhole camera: D zeros (5, plumb_bob) unless given,
    R identity, P = [K | 0] (monocular)."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all():
        raise ValueError(f"K must be a finite 3x3 matrix, got shape {K.shape}")
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"camera size must be positive, got {height}x{width}")
    d = np.zeros(5) if distortion is None else np.asarray(distortion, dtype=np.float64).reshape(-1)
    P = np.zeros((3, 4))
    P[:, :3] = K
    return {
        "header": header_fields(stamp_ns, frame_id),
        "height": int(height),
        "width": int(width),
        "distortion_model": str(distortion_model),
        "d": d.astype(np.float64),
        "k": K.reshape(-1).copy(),
        "r": np.eye(3).reshape(-1),
        "p": P.reshape(-1),
    }


def camera_info_to_intrinsics(k: Any, height: int, width: int) -> tuple[np.ndarray, tuple[int, int]]:
    """CameraInfo ``k`` (9 values, row-major) and size -> (3x3 float64 K, (height, width)).

    Raises :class:`UncalibratedCamera` for an all-zero/invalid K or a zero/negative size, so callers
    can fall back to the predicted intrinsics deliberately, and :class:`MessageError` for a
    malformed message (K not 9 numbers, non-integer sizes, more than
    :data:`~vggt_ros.messages.errors.MAX_IMAGE_PIXELS` pixels).
    """
    K = float_array(k, "CameraInfo: k")  # a copy, never a view of the message
    if K.size != 9:
        raise MessageError(f"CameraInfo: k has {K.size} values (shape {K.shape}), expected 9 (3x3)")
    K = K.reshape(3, 3)
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise UncalibratedCamera(f"CameraInfo has no valid intrinsics (fx={K[0, 0]}, fy={K[1, 1]})")
    height, width = int_field(height, "CameraInfo: height"), int_field(width, "CameraInfo: width")
    if height <= 0 or width <= 0:
        raise UncalibratedCamera(f"CameraInfo has zero size ({height}x{width})")
    if height * width > MAX_IMAGE_PIXELS:
        raise MessageError(f"CameraInfo: {height}x{width} is over the limit of {MAX_IMAGE_PIXELS} pixels")
    return K, (height, width)


def camera_info_msg_to_intrinsics(msg: Any) -> tuple[np.ndarray, tuple[int, int]]:
    """A CameraInfo message (any flavour) -> (K, (height, width)); see :func:`camera_info_to_intrinsics`.

    ROS 1 spells the matrix ``K``, ROS 2 ``k``; both are accepted. A missing field raises
    :class:`MessageError`. Distortion is not looked at: see :func:`camera_info_msg_to_model`.
    """
    with decoding("CameraInfo message"):
        k = msg.k if hasattr(msg, "k") else msg.K
        return camera_info_to_intrinsics(k, msg.height, msg.width)


def camera_info_msg_to_model(msg: Any) -> CameraModel:
    """A CameraInfo message (any flavour) -> :class:`CameraModel` (K and size as
    :func:`camera_info_msg_to_intrinsics`, plus the validated distortion, ``d`` or ROS 1's ``D``).
    A message without ``distortion_model``/``d`` fields is a pinhole camera."""
    K, hw = camera_info_msg_to_intrinsics(msg)
    with decoding("CameraInfo message"):
        d = msg.d if hasattr(msg, "d") else getattr(msg, "D", ())
        model, D = distortion_from_fields(getattr(msg, "distortion_model", "plumb_bob"), d)
    return CameraModel(K, hw, model, D)
