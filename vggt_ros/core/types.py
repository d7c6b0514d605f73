"""Data passed between the camera stream, the predictor and the publishers (ROS-free).

The streaming core (``vggt_ros.core``) turns :class:`Frame` objects into :class:`WindowOutput`
objects; the node and the bag replay only convert these to and from messages.

World frame: the OpenCV optical frame of the first keyframe's camera (x right, y down, z forward),
unless a base<-camera extrinsic is configured (then the robot base at the first keyframe, REP 103).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from vggt_ros.prediction import Prediction


@dataclass
class Frame:
    """One camera image as it arrives, before any model preprocessing.

    image: HxWx3 uint8 RGB. intrinsics: 3x3 from CameraInfo at this image's resolution, if known.
    metric_depth: HxW float32 metres aligned with the image (RGB-D), for ``scale_source='depth'``.
    odometry_pose: 4x4 odom_T_camera from an external odometry at this stamp, for
    ``scale_source='odometry'``.
    """

    stamp_ns: int
    image: np.ndarray
    frame_id: str = "camera_optical_frame"
    intrinsics: np.ndarray | None = None
    metric_depth: np.ndarray | None = None
    odometry_pose: np.ndarray | None = None


@runtime_checkable
class Predictor(Protocol):
    """Anything that predicts a window: the VGGT engine or the oracle.

    ``frame_keys`` are stable ids of the frames (the stream uses stamps in ns): the engine uses them
    to reuse per-frame work across overlapping windows, the oracle to look up ground truth.
    ``query_points`` are (x, y) pixels of frame 0 of the window at the *camera's own* resolution;
    the predictor maps them to its input. The returned ``Prediction.tracks``/``query_points`` are at
    the network resolution (map back with ``Prediction.preprocess[s]``).
    """

    def predict(
        self,
        images: Sequence[np.ndarray],
        query_points: np.ndarray | None = None,
        frame_keys: Sequence[int] | None = None,
    ) -> Prediction: ...

    def prefetch(self, images: Sequence[np.ndarray], frame_keys: Sequence[int]) -> object:
        """Start preparing frames before their window is predicted (non-blocking)."""

    def warmup(self, window_size: int, stride: int, image_hw: tuple[int, int] | None = None,
               eager_on_recompile: bool = False) -> dict[str, Any]:
        """Prepare every window shape of the stream (compilation); the report says what was done."""

    def clear_caches(self) -> None:
        """Forget per-frame caches: frame keys may now come back with other images (a reset)."""


class PredictorBase:
    """The hooks of :class:`Predictor` for predictors with nothing to prefetch, compile or cache
    (the oracle, test doubles): subclass it and implement ``predict``."""

    def prefetch(self, images: Sequence[np.ndarray], frame_keys: Sequence[int]) -> None:
        return None

    def warmup(self, window_size: int, stride: int, image_hw: tuple[int, int] | None = None,
               eager_on_recompile: bool = False) -> dict[str, Any]:
        return {"compiled": False}

    def clear_caches(self) -> None:
        return None


@dataclass
class FrameOutput:
    """Everything published for one processed frame.

    world_T_camera: 4x4 float64 pose of the camera optical frame in the world frame.
    pose_covariance: 6x6 float64 covariance of that pose (x, y, z, roll, pitch, yaw, row-major as
    ``nav_msgs/Odometry``), metres^2 and rad^2 when ``metric`` else world units^2 and rad^2; isotropic
    per block, so it holds in any frame the pose is re-expressed in
    (:func:`vggt_ros.core.pose_state.pose_covariance`).
    intrinsics: 3x3 at the camera's own resolution ``image_hw``.
    depth: [hd, wd] float32 z-depth (metres when ``metric`` else VGGT/world units), NaN = invalid;
    depth_conf: [hd, wd]; depth_intrinsics: 3x3 for the depth resolution; rgb: [hd, wd, 3] uint8.
    points: [N, 3] float32 in the camera optical frame (same units as depth), colors: [N, 3] uint8.
    """

    stamp_ns: int
    frame_id: str
    world_T_camera: np.ndarray
    pose_covariance: np.ndarray
    intrinsics: np.ndarray
    image_hw: tuple[int, int]
    depth: np.ndarray
    depth_conf: np.ndarray
    depth_intrinsics: np.ndarray
    rgb: np.ndarray
    points: np.ndarray
    colors: np.ndarray
    is_keyframe: bool
    metric: bool


@dataclass
class TrackOutput:
    """Keypoint tracks of one window.

    positions: [S, N, 2] float32 pixels (x, y) at the camera's resolution, one row per window frame;
    visibility, confidence: [S, N] float32 in [0, 1]; track_ids: [N] int64, persistent where the
    same query continues from the previous window.
    """

    stamps_ns: list[int]
    query_frame_index: int
    track_ids: np.ndarray
    positions: np.ndarray
    visibility: np.ndarray
    confidence: np.ndarray
    frame_id: str = ""


@dataclass
class WindowOutput:
    """Result of integrating one window: the frames to publish (each frame once) and its tracks."""

    window_index: int
    accepted: bool
    frames: list[FrameOutput] = field(default_factory=list)
    tracks: TrackOutput | None = None
    scale: float = float("nan")
    residual: float = float("nan")
    rejection_reason: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    # the pose graph's map <- odom correction (published world and units; None: no graph) and the loop
    # closures accepted with this window (vggt_ros.graph.loop_closure.LoopClosure)
    map_T_odom: np.ndarray | None = None
    loop_closures: list[Any] = field(default_factory=list)
    optimised_poses: dict[int, np.ndarray] | None = None  # after a loop closure: the corrected trajectory
