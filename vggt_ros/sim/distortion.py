"""A generated distorted camera: pinhole renders warped by a known distortion model (for tests).

:func:`distort` is the forward model of :mod:`vggt_ros.core.undistort`: for each pixel of the
distorted image, its undistorted (pinhole) coordinate is found with ``cv2.undistortPoints`` (100
iterations; ``cv2.fisheye.undistortPoints`` for equidistant) and the pinhole image is sampled there.
"""

from __future__ import annotations

import cv2
import numpy as np

from vggt_ros.messages.camera_info import CameraModel

EXAMPLE_D = {  # moderate lens distortions, as calibrated cameras report them
    "plumb_bob": np.array([-0.28, 0.09, 0.0008, -0.0006, -0.012]),
    "rational_polynomial": np.array([-0.25, 0.06, 0.0005, -0.0004, 0.0, 0.02, 0.01, 0.004]),
    "equidistant": np.array([-0.02, 0.01, -0.004, 0.001]),
}


def example_camera(K: np.ndarray, hw: tuple[int, int], model: str) -> CameraModel:
    return CameraModel(np.asarray(K, np.float64), (int(hw[0]), int(hw[1])), model, EXAMPLE_D[model].copy())


def distortion_map(cam: CameraModel) -> tuple[np.ndarray, np.ndarray]:
    """float32 (map_x, map_y): for each distorted pixel, the pinhole pixel it shows."""
    h, w = cam.hw
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    pts = np.stack([u.ravel(), v.ravel()], -1).reshape(-1, 1, 2)
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-10)
    if cam.distortion_model == "equidistant":
        und = cv2.fisheye.undistortPoints(pts, cam.K, cam.D, R=np.eye(3), P=cam.K, criteria=crit)
    else:
        und = cv2.undistortPoints(pts, cam.K, cam.D, R=np.eye(3), P=cam.K, criteria=crit)
    und = und.reshape(h, w, 2).astype(np.float32)
    return und[..., 0], und[..., 1]


def distort(image: np.ndarray, cam: CameraModel, nearest: bool = False) -> np.ndarray:
    """The image the distorted camera ``cam`` sees of the pinhole ``image`` (depth: ``nearest``, NaN
    outside)."""
    mx, my = distortion_map(cam)
    if nearest:
        return cv2.remap(np.asarray(image, np.float32), mx, my, cv2.INTER_NEAREST,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)
    return cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
