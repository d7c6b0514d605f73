"""Cheap keyframe selection: sparse optical flow vs the last keyframe plus predicted relative motion.

A frame becomes a keyframe when at least ``min_keyframe_gap`` processed frames passed since the last
keyframe and any of these holds:

* the median sparse-flow magnitude (raw, *not* rotation compensated, so a pure rotation that changes
  the view counts) is >= ``min_parallax_px`` camera pixels, or fewer than 30 % of the keyframe's
  features could be tracked (the view changed a lot);
* the predicted rotation vs the last keyframe is >= ``min_rotation_deg``;
* the predicted translation vs the last keyframe, divided by the keyframe's median depth, is >=
  ``min_translation`` (scale free, so it works before a metric scale is known);
* ``max_keyframe_gap`` processed frames passed (bounds drift of a near-static camera).

Flow runs on a grey image downscaled to ``flow_width`` px (goodFeaturesToTrack once per keyframe,
pyramidal Lucas-Kanade per frame), a few milliseconds per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vggt_ros.core.frames import rotation_angle_deg

MIN_TRACKED_FRACTION = 0.3
MAX_FEATURES = 200


def small_grey(image: np.ndarray, width: int) -> tuple[np.ndarray, float]:
    """Grey uint8 image downscaled to ``width`` px wide; also the factor camera px per small px."""
    h, w = image.shape[:2]
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if w <= width:
        return grey, 1.0
    hs = max(8, round(h * width / w))
    return cv2.resize(grey, (int(width), int(hs)), interpolation=cv2.INTER_AREA), w / float(width)


def detect_features(grey: np.ndarray) -> np.ndarray:
    """Corner features ``[N, 1, 2]`` float32 (possibly empty) for LK tracking."""
    min_dist = max(2.0, grey.shape[1] / 40.0)
    pts = cv2.goodFeaturesToTrack(grey, maxCorners=MAX_FEATURES, qualityLevel=0.01, minDistance=min_dist)
    if pts is None:
        return np.zeros((0, 1, 2), np.float32)
    return pts.astype(np.float32)


def median_flow(ref_grey: np.ndarray, ref_pts: np.ndarray, grey: np.ndarray) -> tuple[float, float]:
    """Median flow magnitude (small-image px) of the tracked features and the tracked fraction."""
    if len(ref_pts) == 0:
        return float("nan"), 0.0
    nxt, status, _err = cv2.calcOpticalFlowPyrLK(
        ref_grey, grey, ref_pts, None, winSize=(15, 15), maxLevel=3,
        criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03),
    )
    if nxt is None or status is None:
        return float("nan"), 0.0
    ok = status.reshape(-1).astype(bool)
    h, w = grey.shape[:2]
    p = nxt.reshape(-1, 2)
    ok &= (p[:, 0] >= 0) & (p[:, 0] < w) & (p[:, 1] >= 0) & (p[:, 1] < h)
    if not np.any(ok):
        return float("nan"), 0.0
    mag = np.linalg.norm(p[ok] - ref_pts.reshape(-1, 2)[ok], axis=1)
    return float(np.median(mag)), float(ok.mean())


@dataclass
class KeyframeDecision:
    is_keyframe: bool
    reason: str
    gap: int
    parallax_px: float
    tracked_fraction: float
    rotation_deg: float
    translation_rel: float


class KeyframeSelector:
    """Decides keyframes in stream order; holds the last keyframe's small image and features."""

    def __init__(
        self,
        min_parallax_px: float,
        min_rotation_deg: float,
        min_translation: float,
        min_gap: int,
        max_gap: int,
        flow_width: int,
    ) -> None:
        # No defaults of its own: the pipeline passes the table's values (vggt_ros/params/table.py).
        self.min_parallax_px = float(min_parallax_px)
        self.min_rotation_deg = float(min_rotation_deg)
        self.min_translation = float(min_translation)
        self.min_gap = int(min_gap)
        self.max_gap = int(max_gap)
        self.flow_width = int(flow_width)
        self.reset()

    def reset(self) -> None:
        self._kf_grey: np.ndarray | None = None
        self._kf_pts = np.zeros((0, 1, 2), np.float32)
        self._kf_pose: np.ndarray | None = None
        self._kf_depth = float("nan")
        self._gap = 0

    @property
    def has_keyframe(self) -> bool:
        return self._kf_pose is not None

    def set_keyframe(self, image: np.ndarray, world_T_camera: np.ndarray, median_depth: float) -> None:
        """Make this frame the reference for the following decisions."""
        self._kf_grey, _ = small_grey(image, self.flow_width)
        self._kf_pts = detect_features(self._kf_grey)
        self._kf_pose = np.asarray(world_T_camera, np.float64).copy()
        self._kf_depth = float(median_depth)
        self._gap = 0

    def decide(self, image: np.ndarray, world_T_camera: np.ndarray) -> KeyframeDecision:
        """Keyframe decision for the next processed frame (does not change the reference)."""
        if self._kf_pose is None:
            return KeyframeDecision(True, "first", 0, 0.0, 1.0, 0.0, 0.0)
        gap = self._gap + 1
        grey, factor = small_grey(image, self.flow_width)
        if self._kf_grey is not None and grey.shape == self._kf_grey.shape:
            flow, frac = median_flow(self._kf_grey, self._kf_pts, grey)
        else:
            flow, frac = float("nan"), 0.0
        parallax = flow * factor
        rel = np.linalg.inv(self._kf_pose) @ np.asarray(world_T_camera, np.float64)
        rot = rotation_angle_deg(rel[:3, :3])
        depth = self._kf_depth if np.isfinite(self._kf_depth) and self._kf_depth > 0 else np.nan
        trans = float(np.linalg.norm(rel[:3, 3]) / depth) if np.isfinite(depth) else 0.0
        reason = ""
        if gap >= self.max_gap:
            reason = "max_gap"
        elif gap >= self.min_gap:
            if len(self._kf_pts) >= 8 and frac < MIN_TRACKED_FRACTION:
                reason = "lost_tracking"
            elif np.isfinite(parallax) and parallax >= self.min_parallax_px:
                reason = "parallax"
            elif rot >= self.min_rotation_deg:
                reason = "rotation"
            elif trans >= self.min_translation:
                reason = "translation"
        return KeyframeDecision(bool(reason), reason, gap, float(parallax), float(frac), rot, trans)

    def advance(self) -> None:
        """Count one processed non-keyframe."""
        self._gap += 1
