"""Optimised poses of every frame, not only of the keyframes in the graph.

Why not every frame in the graph: the anchor of every window is a keyframe, so a frame that is not
a keyframe is only ever measured relative to keyframes: in the graph it would be a leaf that moves
no keyframe. Its optimised pose is then exactly the weighted mean of its measurements, each
composed with its (optimised) anchor: computed when asked, from a few 4x4 matrices per frame,
instead of one more graph variable per camera frame (an hour at 30 Hz is 108,000 frames).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

import numpy as np
from scipy.spatial.transform import Rotation

MAX_OBSERVATIONS = 8  # per frame (a frame is in about 1 + recent / stride windows)

PoseOf = Callable[[int], np.ndarray]  # keyframe stamp -> optimised 4x4


class FrameObservations:
    """Per frame: (anchor keyframe stamp, anchor_T_frame, weight) of each window that saw it, and
    its pose at placement (the odometry), bounded to ``capacity`` frames (oldest forgotten)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self._obs: OrderedDict[int, list[tuple[int, np.ndarray, float]]] = OrderedDict()
        self._odometry: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._odometry)

    def __contains__(self, stamp: int) -> bool:
        return int(stamp) in self._odometry

    def clear(self) -> None:
        self._obs.clear()
        self._odometry.clear()

    def placed(self, stamp: int, world_T_camera: np.ndarray) -> None:
        """A frame's first (published) pose: its odometry."""
        stamp = int(stamp)
        self._odometry[stamp] = np.asarray(world_T_camera, np.float64).copy()
        self._obs.setdefault(stamp, [])
        while len(self._odometry) > self.capacity:
            old, _ = self._odometry.popitem(last=False)
            self._obs.pop(old, None)

    def observe(self, stamp: int, anchor: int, anchor_T_frame: np.ndarray, weight: float) -> None:
        obs = self._obs.get(int(stamp))
        if obs is None:
            return
        obs.append((int(anchor), np.asarray(anchor_T_frame, np.float64).copy(), float(weight)))
        del obs[:-MAX_OBSERVATIONS]

    def odometry(self, stamp: int) -> np.ndarray | None:
        return self._odometry.get(int(stamp))

    def stamps(self) -> list[int]:
        return list(self._odometry)

    def pose(self, stamp: int, keyframe_pose: PoseOf,
             is_keyframe: Callable[[int], bool]) -> np.ndarray | None:
        """Optimised pose of a frame: the graph's for a keyframe, else the weighted mean of its
        measurements composed with their optimised anchors (its odometry while it has none)."""
        stamp = int(stamp)
        if is_keyframe(stamp):
            return keyframe_pose(stamp)
        odom = self._odometry.get(stamp)
        if odom is None:
            return None
        obs = [(a, rel, w) for a, rel, w in self._obs.get(stamp, []) if is_keyframe(a)]
        if not obs:
            return odom.copy()
        Ts = np.stack([keyframe_pose(a) @ rel for a, rel, _ in obs])
        w = np.array([w for _, _, w in obs], np.float64)
        out = np.eye(4)
        out[:3, :3] = Rotation.from_matrix(Ts[:, :3, :3]).mean(weights=w).as_matrix()
        out[:3, 3] = (w[:, None] * Ts[:, :3, 3]).sum(0) / w.sum()
        return out

    def poses(self, stamps: Iterable[int], keyframe_pose: PoseOf,
              is_keyframe: Callable[[int], bool]) -> dict[int, np.ndarray]:
        out = {}
        for s in stamps:
            T = self.pose(s, keyframe_pose, is_keyframe)
            if T is not None:
                out[int(s)] = T
        return out
