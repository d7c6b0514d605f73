"""Undistortion of calibrated cameras before the network (ROS-free; the node and the replay use it).

VGGT, the oracle and every downstream step (back-projection, clouds, the published ``depth/camera_info``)
assume a pinhole camera. A camera whose CameraInfo carries a distortion model (``plumb_bob``,
``rational_polynomial`` or ``equidistant``, see :class:`~vggt_ros.messages.camera_info.CameraModel`)
is therefore undistorted once, where a :class:`~vggt_ros.core.types.Frame` is made: the frame's image
(and its paired metric depth) become the undistorted ones and its intrinsics the undistorted camera's.

New camera matrix: the **same K** (not ``getOptimalNewCameraMatrix``): the undistorted image has the
input's size, focal lengths and principal point, so a known K is used unchanged and the published
depth CameraInfo is ``K``, ``D = 0`` (plumb_bob). With barrel distortion (k1 < 0, every fisheye) the
rim of the wide field of view beyond the pinhole frame is cut; with pincushion distortion the corners
that no input pixel covers are black (depth NaN).

Cost: one ``cv2.remap`` per image (bilinear; depth nearest) from a map cached per
(model, K, D, size): 640x480 RGB about 1.5-3 ms per frame on a 2-core CPU (2.7 ms with one thread),
depth about 1 ms, the map 2-20 ms once per camera (test/test_undistort.py measures the frame cost).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict

import cv2
import numpy as np

from vggt_ros.core.types import Frame
from vggt_ros.messages.camera_info import CameraModel

_MAX_MAPS = 8  # cached remaps (one per camera in practice; a few when CameraInfo changes)


def _key(cam: CameraModel) -> tuple:
    return (cam.distortion_model, cam.K.tobytes(), cam.D.tobytes(), cam.hw)


class Undistorter:
    """Cached undistortion maps: ``image(img, cam)``, ``depth(d, cam)``, ``frame(frame, cam)``.
    Thread-safe (the node's callbacks may run in parallel)."""

    def __init__(self, max_maps: int = _MAX_MAPS) -> None:
        self._maps: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._max = max_maps
        self._lock = threading.Lock()

    def maps(self, cam: CameraModel) -> tuple[np.ndarray, np.ndarray]:
        """(map1, map2) for ``cv2.remap``: for each undistorted pixel, where it lies in the input image."""
        key = _key(cam)
        with self._lock:
            if key in self._maps:
                self._maps.move_to_end(key)
                return self._maps[key]
        h, w = cam.hw
        if cam.distortion_model == "equidistant":
            m1, m2 = cv2.fisheye.initUndistortRectifyMap(cam.K, cam.D, np.eye(3), cam.K, (w, h), cv2.CV_16SC2)
        else:  # plumb_bob (5) / rational_polynomial (8): cv2's order k1 k2 p1 p2 k3 [k4 k5 k6]
            m1, m2 = cv2.initUndistortRectifyMap(cam.K, cam.D, None, cam.K, (w, h), cv2.CV_16SC2)
        with self._lock:
            self._maps[key] = (m1, m2)
            while len(self._maps) > self._max:
                self._maps.popitem(last=False)
        return m1, m2

    def image(self, image: np.ndarray, cam: CameraModel) -> np.ndarray:
        """The undistorted image (bilinear; pixels no input pixel covers are 0)."""
        if not cam.distorted:
            return image
        self._check(image, cam)
        m1, m2 = self.maps(cam)
        return cv2.remap(image, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def depth(self, depth: np.ndarray, cam: CameraModel) -> np.ndarray:
        """The undistorted depth image (nearest, never mixing depths across edges; outside: NaN)."""
        if not cam.distorted:
            return depth
        self._check(depth, cam)
        m1, m2 = self.maps(cam)
        d = np.asarray(depth, np.float32)
        return cv2.remap(d, m1, m2, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)

    def frame(self, frame: Frame, cam: CameraModel) -> Frame:
        """The frame with its image (and metric depth) undistorted and the intrinsics of the result."""
        if not cam.distorted:
            return dataclasses.replace(frame, intrinsics=cam.K)
        depth = frame.metric_depth
        if depth is not None and depth.shape[:2] == cam.hw:
            depth = self.depth(depth, cam)
        return dataclasses.replace(frame, image=self.image(frame.image, cam), intrinsics=cam.new_K,
                                   metric_depth=depth)

    @staticmethod
    def _check(image: np.ndarray, cam: CameraModel) -> None:
        if tuple(image.shape[:2]) != cam.hw:
            raise ValueError(f"image is {image.shape[:2]}, the camera model {cam.hw}")
