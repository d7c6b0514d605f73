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

MAX_OBSERVATIONS = 8  # per frame (a frame is in about 1 + recent / stride windows)

PoseOf = Callable[[int], np.ndarray]  # keyframe stamp -> optimised 4x4


class FrameObservations:
    """Per frame: (anchor keyframe stamp, anchor_T_frame, weight) of each window that saw it, and
    its pose at placement (the odometry), bounded to ``capacity`` frames (oldest forgotten)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self._obs: OrderedDict[int, list[tuple[int, np.ndarray, float]]] = OrderedDict()
        self._odometry: OrderedDict[int, np.ndarray] = OrderedDict()
        self._fixed: dict[int, np.ndarray] = {}  # final poses of frames whose keyframes left the graph

    def __len__(self) -> int:
        return len(self._odometry)

    def __contains__(self, stamp: int) -> bool:
        return int(stamp) in self._odometry

    def clear(self) -> None:
        self._obs.clear()
        self._odometry.clear()
        self._fixed.clear()

    def placed(self, stamp: int, world_T_camera: np.ndarray) -> None:
        """A frame's first (published) pose: its odometry."""
        stamp = int(stamp)
        self._odometry[stamp] = np.asarray(world_T_camera, np.float64).copy()
        self._obs.setdefault(stamp, [])
        while len(self._odometry) > self.capacity:
            old, _ = self._odometry.popitem(last=False)
            self._obs.pop(old, None)
            self._fixed.pop(old, None)

    def observe(self, stamp: int, anchor: int, anchor_T_frame: np.ndarray, weight: float) -> None:
        obs = self._obs.get(int(stamp))
        if obs is None:
            return
        obs.append((int(anchor), np.asarray(anchor_T_frame, np.float64).copy(), float(weight)))
        del obs[:-MAX_OBSERVATIONS]

    def anchored_on(self, keyframes: set[int]) -> list[int]:
        """Frames measured from any of ``keyframes`` (and those keyframes themselves, if kept)."""
        return [s for s, obs in self._obs.items() if s in keyframes or any(o[0] in keyframes for o in obs)]

    def fix(self, poses: dict[int, np.ndarray]) -> None:
        """Final poses for frames whose anchors leave the graph: their measurements go."""
        for s, T in poses.items():
            if s in self._odometry:
                self._fixed[s] = np.asarray(T, np.float64).copy()
                self._obs[s] = []

    def odometry(self, stamp: int) -> np.ndarray | None:
        return self._odometry.get(int(stamp))

    def stamps(self) -> list[int]:
        return list(self._odometry)

    def pose(self, stamp: int, keyframe_pose: PoseOf,
             is_keyframe: Callable[[int], bool]) -> np.ndarray | None:
        """Optimised pose of one frame (see :meth:`poses`)."""
        return self.poses([stamp], keyframe_pose, is_keyframe).get(int(stamp))

    def poses(self, stamps: Iterable[int], keyframe_pose: PoseOf,
              is_keyframe: Callable[[int], bool]) -> dict[int, np.ndarray]:
        """Optimised poses: the graph's for a keyframe, else the weighted mean of the frame's
        measurements composed with their optimised anchors (its odometry while it has none).

        One batch for all frames (a rebuilt path after a loop closure asks for every kept frame):
        the anchors' poses are looked up once, the compositions and the means are array operations
        (rotations: the weighted chordal mean, the SVD projection of the weighted sum).
        """
        out: dict[int, np.ndarray] = {}
        anchors: dict[int, np.ndarray] = {}
        rows: list[int] = []  # per observation: index of its frame in ``leaves``
        keys: list[int] = []
        rels: list[np.ndarray] = []
        weights: list[float] = []
        leaves: list[int] = []
        order = [int(s) for s in stamps]
        for s in order:
            if is_keyframe(s):
                out[s] = keyframe_pose(s)
                continue
            if s in self._fixed:
                out[s] = self._fixed[s]
                continue
            odom = self._odometry.get(s)
            if odom is None:
                continue
            obs = [o for o in self._obs.get(s, ()) if o[0] in anchors or is_keyframe(o[0])]
            if not obs:
                out[s] = odom.copy()
                continue
            for a, rel, w in obs:
                if a not in anchors:
                    anchors[a] = keyframe_pose(a)
                rows.append(len(leaves))
                keys.append(a)
                rels.append(rel)
                weights.append(w)
            leaves.append(s)
        if leaves:
            out.update(zip(leaves, self._means(anchors, keys, rels, weights, rows, len(leaves))))
        return {s: out[s] for s in order if s in out}  # in the order asked (a path's order)

    @staticmethod
    def _means(anchors: dict[int, np.ndarray], keys: list[int], rels: list[np.ndarray],
               weights: list[float], rows: list[int], n: int) -> np.ndarray:
        A = np.stack([anchors[a] for a in keys])
        Ts = A @ np.stack(rels)
        w = np.asarray(weights, np.float64)
        row = np.asarray(rows, np.int64)
        wsum = np.bincount(row, w, minlength=n)
        pos = np.stack([np.bincount(row, w * Ts[:, i, 3], minlength=n) for i in range(3)], 1)
        M = np.zeros((n, 3, 3))
        np.add.at(M, row, w[:, None, None] * Ts[:, :3, :3])
        U, _, Vt = np.linalg.svd(M)
        D = np.ones((n, 3))
        D[:, 2] = np.sign(np.linalg.det(U @ Vt))
        poses = np.tile(np.eye(4), (n, 1, 1))
        poses[:, :3, :3] = (U * D[:, None, :]) @ Vt
        poses[:, :3, 3] = pos / wsum[:, None]
        return poses
