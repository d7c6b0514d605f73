"""A 2D occupancy grid (``nav_msgs/OccupancyGrid``, for Nav2) from keyframe points, ROS-free.

Frame: the published world (:meth:`PoseFrames.map_points <vggt_ros.outputs.pose_frames.PoseFrames>`),
assumed gravity-aligned with **z up**: base mode (the default) when the mount ``base_frame <- camera``
is known and the base is level (REP 103: the world is the base frame at the first keyframe), or
``world_frame_convention: rep103`` with ``base_T_camera``. In camera mode with the optical world (z
forward) the grid is a slice of the wrong plane. Lengths are the pipeline's units: metres once the
scale is metric (``scale_source``), VGGT units before.

Per keyframe (:meth:`OccupancyGrid2D.integrate`), with integer log-odds per cell:

* occupied evidence (``+HIT``): every cell holding a point whose z is in the height band
  ``[min_z, max_z]`` (relative to the world origin);
* free evidence (``-MISS``): every cell crossed by the part inside the height band of the 3D ray from
  the camera to a point (any point: floor and ceiling rays free the cells their in-band part crosses),
  rays subsampled evenly to at most ``max_rays``, the crossing cells found by a vectorised DDA
  (one sample per cell step along the longer axis, like Bresenham), and never in a cell hit in the
  same keyframe;
* each cell gets at most one hit or one miss per keyframe, clamped to ``+-CLAMP``.

A cell reads 100 (occupied) with positive log-odds, 0 (free) with negative, -1 (unknown) otherwise
(never observed, or balanced evidence). Occupied evidence weighs more than free (``HIT > MISS``):
a 2D grid cannot tell a ray passing over a low obstacle from a ray through empty space.

Bounded cost: a keyframe costs O(its points + max_rays x the grid side) whatever was integrated
before. Bounded size: the grid grows (in chunks of ``CHUNK`` cells) to cover new observations, each
side at most ``isqrt(max_cells)`` cells (so at most ``max_cells`` cells); when a side is full the
grid keeps its cells and the window around the camera, and points outside it are dropped (counted in
``dropped_points``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from vggt_ros.messages.poses import pose_fields
from vggt_ros.messages.stamps import header_fields, time_fields

HIT = 4  # log-odds units added to a cell holding an in-band point (once per keyframe)
MISS = 1  # log-odds units removed from a cell an in-band ray crosses (once per keyframe)
CLAMP = 40  # |log-odds| bound, so a cell can change its mind after a bounded number of keyframes
CHUNK = 32  # growth granularity, cells per side
OCCUPIED, FREE, UNKNOWN = 100, 0, -1


def _axis_extent(cur: tuple[int, int] | None, need: tuple[int, int], cam: int, side: int) -> tuple[int, int]:
    """[lo, hi) global cell range along one axis covering ``cur`` (kept) and ``need`` (padded by
    CHUNK where it grows), at most ``side`` cells: a window around ``cam`` containing ``cur``."""
    if cur is None:
        lo, hi, c0, c1 = need[0] - CHUNK, need[1] + CHUNK, cam, cam + 1
    else:
        c0, c1 = cur
        lo = need[0] - CHUNK if need[0] < c0 else c0
        hi = need[1] + CHUNK if need[1] > c1 else c1
    if hi - lo > side:
        start = cam - side // 2
        if cur is not None:
            start = min(max(start, c1 - side), c0)
        lo, hi = max(lo, start), min(hi, start + side)
    return lo, hi


class OccupancyGrid2D:
    """Integer log-odds occupancy grid on the z = 0 plane of a z-up world (see the module doc)."""

    def __init__(self, resolution: float, max_cells: int, min_z: float, max_z: float, max_rays: int) -> None:
        if not resolution > 0 or max_cells < 1 or not max_z > min_z or max_rays < 1:
            raise ValueError("OccupancyGrid2D needs resolution > 0, max_cells >= 1, max_z > min_z, "
                             "max_rays >= 1")
        self.resolution = float(resolution)
        self.max_cells = int(max_cells)
        self.side = max(1, math.isqrt(self.max_cells))
        self.min_z, self.max_z = float(min_z), float(max_z)
        self.max_rays = int(max_rays)
        self.clear()

    def clear(self) -> None:
        self._lo = np.zeros((0, 0), np.int16)  # [row = y, column = x] log-odds
        self._x0 = self._y0 = 0  # global cell index of column 0 / row 0
        self.dropped_points = 0
        self.keyframes = 0

    # ------------------------------------------------------------------ geometry
    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in cells."""
        return self._lo.shape  # type: ignore[return-value]

    @property
    def origin_xy(self) -> tuple[float, float]:
        """World position of the corner of cell (0, 0) (the message's ``info.origin``)."""
        return self._x0 * self.resolution, self._y0 * self.resolution

    def _grow(self, cx: np.ndarray, cy: np.ndarray, cam: tuple[int, int]) -> None:
        """Cover the global cells (cx, cy) within the size bound."""
        if cx.size == 0:
            return
        h, w = self._lo.shape
        cur_x = None if w == 0 else (self._x0, self._x0 + w)
        cur_y = None if h == 0 else (self._y0, self._y0 + h)
        nx = (int(cx.min()), int(cx.max()) + 1)
        ny = (int(cy.min()), int(cy.max()) + 1)
        if cur_x is not None and cur_y is not None and cur_x[0] <= nx[0] and nx[1] <= cur_x[1] \
                and cur_y[0] <= ny[0] and ny[1] <= cur_y[1]:
            return
        x0, x1 = _axis_extent(cur_x, nx, cam[0], self.side)
        y0, y1 = _axis_extent(cur_y, ny, cam[1], self.side)
        if (x0, x1, y0, y1) == (self._x0, self._x0 + w, self._y0, self._y0 + h):
            return
        new = np.zeros((y1 - y0, x1 - x0), np.int16)
        if w and h:
            new[self._y0 - y0:self._y0 - y0 + h, self._x0 - x0:self._x0 - x0 + w] = self._lo
        self._lo, self._x0, self._y0 = new, x0, y0

    def _flat(self, cx: np.ndarray, cy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flat indices of global cells inside the grid, and the inside mask."""
        h, w = self._lo.shape
        ix, iy = cx - self._x0, cy - self._y0
        inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
        return iy[inside] * w + ix[inside], inside

    # ------------------------------------------------------------------ integration
    def _rays(self, pts: np.ndarray, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start and end (cell units, [M, 2]) of the in-band parts of the rays origin -> pts."""
        if len(pts) > self.max_rays:
            pts = pts[np.linspace(0, len(pts) - 1, self.max_rays).astype(np.int64)]
        d = pts - origin
        dz = d[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            ta = (self.min_z - origin[2]) / dz
            tb = (self.max_z - origin[2]) / dz
        flat = np.abs(dz) < 1e-12
        band_o = self.min_z <= origin[2] <= self.max_z
        t0 = np.where(flat, 0.0 if band_o else 1.0, np.clip(np.minimum(ta, tb), 0.0, 1.0))
        t1 = np.where(flat, 1.0 if band_o else 0.0, np.clip(np.maximum(ta, tb), 0.0, 1.0))
        keep = t1 > t0
        a = origin[None, :2] + t0[keep, None] * d[keep, :2]
        b = origin[None, :2] + t1[keep, None] * d[keep, :2]
        return a / self.resolution, b / self.resolution

    @staticmethod
    def _dda(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global cells crossed by the segments a -> b (cell units): one sample per cell step along
        the longer axis, both ends included."""
        if len(a) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        d = b - a
        n = np.ceil(np.abs(d).max(axis=1)).astype(np.int64)
        counts = n + 1
        ray = np.repeat(np.arange(len(a)), counts)
        k = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        t = k / np.maximum(n, 1)[ray]
        p = a[ray] + t[:, None] * d[ray]
        c = np.floor(p).astype(np.int64)
        return c[:, 0], c[:, 1]

    def integrate(self, points_world: np.ndarray, camera_origin_world: np.ndarray) -> None:
        """One keyframe: its points (world, [N, 3]) seen from the camera at ``camera_origin_world``."""
        pts = np.asarray(points_world, np.float64).reshape(-1, 3)
        pts = pts[np.isfinite(pts).all(axis=1)]
        o = np.asarray(camera_origin_world, np.float64).reshape(3)
        if not np.isfinite(o).all():
            return
        self.keyframes += 1
        r = self.resolution
        band = pts[(pts[:, 2] >= self.min_z) & (pts[:, 2] <= self.max_z)]
        hx = np.floor(band[:, 0] / r).astype(np.int64)
        hy = np.floor(band[:, 1] / r).astype(np.int64)
        a, b = self._rays(pts, o)
        fx, fy = self._dda(a, b)
        cam = (int(math.floor(o[0] / r)), int(math.floor(o[1] / r)))
        self._grow(np.concatenate([hx, fx, [cam[0]]]), np.concatenate([hy, fy, [cam[1]]]), cam)
        hit, inside = self._flat(hx, hy)
        self.dropped_points += int((~inside).sum())
        free, _ = self._flat(fx, fy)
        lo = self._lo.reshape(-1)
        before = lo[hit]
        # fancy assignment with repeated indices writes each cell once: one miss per cell per keyframe
        lo[free] = np.maximum(lo[free] - MISS, -CLAMP)
        lo[hit] = np.minimum(before + HIT, CLAMP)  # hit cells: not freed by this keyframe's rays

    # ------------------------------------------------------------------ output
    def values(self) -> np.ndarray:
        """[height, width] int8: 100 occupied, 0 free, -1 unknown (row-major from cell (0, 0))."""
        out = np.full(self._lo.shape, UNKNOWN, np.int8)
        out[self._lo > 0] = OCCUPIED
        out[self._lo < 0] = FREE
        return out

    def fields(self, stamp_ns: int, frame_id: str) -> dict[str, Any]:
        """``nav_msgs/OccupancyGrid`` fields (origin: cell (0, 0)'s corner at z = 0, no rotation)."""
        h, w = self._lo.shape
        origin = np.eye(4)
        origin[:2, 3] = self.origin_xy
        return {
            "header": header_fields(stamp_ns, frame_id),
            "info": {"map_load_time": time_fields(stamp_ns), "resolution": self.resolution,
                     "width": int(w), "height": int(h), "origin": pose_fields(origin)},
            "data": self.values().reshape(-1),
        }
