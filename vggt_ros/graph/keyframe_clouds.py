"""Each keyframe's points in its own camera frame, so the map can be rebuilt after a loop closure.

Why: the world map is a voxel grid of points already placed with the poses known at the time; when a
loop closes, those poses move and the map would keep the pre-loop ghosts. The map is therefore
anchored per keyframe: its points are kept relative to the keyframe and re-placed with the optimised
poses. Bounded: at most ``max_points`` points in all, the oldest keyframes forgotten beyond.

Units: points arrive in the output units of their window (metres once the metric scale is known);
each cloud keeps the metres per world unit it was made with, so a rebuild after the metric scale
moved places it at the scale of the (rescaled) map and of the optimised poses.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from vggt_ros.core.world_map import WorldMap


class KeyframeClouds:
    """Keyframe stamp -> (points [N, 3] float32 camera frame, colours [N, 3] uint8 or None, metres per
    world unit of the points)."""

    def __init__(self, max_points: int) -> None:
        self.max_points = int(max_points)
        self._clouds: OrderedDict[int, tuple[np.ndarray, np.ndarray | None, float]] = OrderedDict()
        self._count = 0

    def __len__(self) -> int:
        return len(self._clouds)

    @property
    def num_points(self) -> int:
        return self._count

    def clear(self) -> None:
        self._clouds.clear()
        self._count = 0

    def add(self, stamp: int, points: np.ndarray, colors: np.ndarray | None, metres_per_unit: float) -> None:
        pts = np.asarray(points, np.float32).reshape(-1, 3)
        old = self._clouds.pop(int(stamp), None)
        if old is not None:
            self._count -= len(old[0])
        self._clouds[int(stamp)] = (pts, None if colors is None else np.asarray(colors, np.uint8),
                                    float(metres_per_unit))
        self._count += len(pts)
        while self._count > self.max_points and len(self._clouds) > 1:
            _, (p, _c, _m) = self._clouds.popitem(last=False)
            self._count -= len(p)

    def stamps(self) -> list[int]:
        return list(self._clouds)

    def rebuild(self, world_map: WorldMap, pose_of: Callable[[int], np.ndarray | None],
                metres_per_unit: float) -> int:
        """Clear ``world_map`` and insert every kept keyframe's points with ``pose_of(stamp)`` (world
        <- camera, at ``metres_per_unit``; keyframes without a pose are skipped); the number of
        keyframes placed."""
        world_map.clear_points()
        n = 0
        for stamp, (pts, cols, unit) in self._clouds.items():
            T = pose_of(stamp)
            if T is None or not len(pts):
                continue
            R = T[:3, :3] * (float(metres_per_unit) / unit)
            world_map.add(pts.astype(np.float64) @ R.T + T[:3, 3], cols)
            n += 1
        return n
