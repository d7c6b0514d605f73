"""Accumulated coloured point map: voxel-downsampled, hard memory bound, binary PLY export.

One point per voxel (the first observation's mean position and colour within its batch); a voxel
seen again only refreshes its "last seen" tick. Voxel keys are integer cell indices packed into one
int64 (21 bits per axis, +-2^20 cells), kept sorted so that merging a batch is a vectorised
``np.searchsorted``. When more than ``max_points`` voxels exist, the least recently seen ones are
dropped (counter ``dropped``), so memory is bounded by roughly ``max_points * 36`` bytes.
Points are stored in the published world frame and units (the pipeline rescales the map in place
when the metric factor changes).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

_BITS = 21
_OFF = 1 << (_BITS - 1)
_MASK = (1 << _BITS) - 1


def pack_voxel_keys(points: np.ndarray, voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Packed int64 voxel keys of ``points`` and a mask of points inside the representable range."""
    cells = np.divide(points, voxel_size, dtype=np.float64)  # a new float64 array: floor in place
    np.floor(cells, out=cells)
    inside = np.abs(cells) < _OFF - 1  # False for NaN and inf too
    ok = inside[:, 0] & inside[:, 1] & inside[:, 2]
    c = (cells if ok.all() else cells[ok]).astype(np.int64)
    c += _OFF
    keys = c[:, 0] << (2 * _BITS)
    keys |= c[:, 1] << _BITS
    keys |= c[:, 2]
    return keys, ok


def _records(a: np.ndarray) -> np.ndarray:
    """1-D view of a C-contiguous array with one opaque item per row: boolean/fancy indexing of rows
    then copies whole records (several times faster than indexing a 2-D array's first axis)."""
    width = int(np.prod(a.shape[1:], dtype=np.int64))
    return a.reshape(len(a), width).view(f"V{a.itemsize * width}").reshape(len(a))


class WorldMap:
    """Voxel map with a hard point bound."""

    def __init__(self, voxel_size: float = 0.02, max_points: int = 500_000) -> None:
        if max_points < 1:
            raise ValueError("max_points must be >= 1")
        if voxel_size < 0:
            raise ValueError("voxel_size must be >= 0")
        self.voxel_size = float(voxel_size)
        self.max_points = int(max_points)
        self.clear()

    def clear(self) -> None:
        self._keys = np.zeros(0, np.int64)  # sorted (voxel mode) / insertion ids (no-voxel mode)
        self._points = np.zeros((0, 3), np.float32)
        self._colors = np.zeros((0, 3), np.uint8)
        self._seen = np.zeros(0, np.int64)
        self._tick = 0
        self._next_id = 0
        self.dropped = 0  # points removed by the memory bound
        self.rejected = 0  # non-finite / out of range points refused

    def __len__(self) -> int:
        return len(self._points)

    @property
    def points(self) -> np.ndarray:
        """``[N, 3]`` float32 in the published world frame."""
        return self._points

    @property
    def colors(self) -> np.ndarray:
        """``[N, 3]`` uint8 RGB."""
        return self._colors

    @property
    def nbytes(self) -> int:
        return int(self._keys.nbytes + self._points.nbytes + self._colors.nbytes + self._seen.nbytes)

    def add(self, points: np.ndarray, colors: np.ndarray) -> int:
        """Insert a batch of points (world frame) and colours; returns the number of new voxels."""
        p = np.asarray(points, np.float32).reshape(-1, 3)
        c = np.asarray(colors, np.uint8).reshape(-1, 3)
        if len(p) != len(c):
            raise ValueError(f"points ({len(p)}) and colors ({len(c)}) differ in length")
        self._tick += 1
        if len(p) == 0:
            return 0
        if self.voxel_size > 0:
            n_new = self._add_voxels(p, c)
        else:
            ok = np.all(np.isfinite(p), axis=1)
            self.rejected += int((~ok).sum())
            p, c = p[ok], c[ok]
            n_new = len(p)
            ids = np.arange(self._next_id, self._next_id + n_new, dtype=np.int64)
            self._next_id += n_new
            self._keys = np.concatenate([self._keys, ids])
            self._points = np.concatenate([self._points, p])
            self._colors = np.concatenate([self._colors, c])
            self._seen = np.concatenate([self._seen, np.full(n_new, self._tick, np.int64)])
        self._enforce_bound()
        return n_new

    def _add_voxels(self, p: np.ndarray, c: np.ndarray) -> int:
        """Voxel-mode insert. Vectorised: one sort of the batch keys groups its points (segment sums
        by ``reduceat``), one ``searchsorted`` finds voxels already in the map, and the new ones are
        merged into the sorted arrays at their insert positions (O(map + batch), no re-sort)."""
        keys, ok = pack_voxel_keys(p, self.voxel_size)
        if not ok.all():
            p, c = p[ok], c[ok]
        self.rejected += int(len(ok) - len(keys))
        if len(keys) == 0:
            return 0
        order = np.argsort(keys)
        sk = np.take(keys, order)
        first = np.empty(len(sk), bool)
        first[0] = True
        np.not_equal(sk[1:], sk[:-1], out=first[1:])
        start = np.flatnonzero(first)
        ukeys = sk[start]
        counts = np.diff(np.append(start, len(sk)))[:, None]
        # float64 segment sums: exact for float32 inputs of similar magnitude, so order-independent
        # np.take along axis 0 moves whole rows (~3x faster than p[order] fancy indexing)
        mean = np.add.reduceat(np.take(p, order, axis=0), start, axis=0, dtype=np.float64) / counts
        col = np.add.reduceat(np.take(c, order, axis=0), start, axis=0, dtype=np.float64) / counts
        col = np.round(col).astype(np.uint8)
        pos = np.searchsorted(self._keys, ukeys)
        hit = pos < len(self._keys)
        hit[hit] = self._keys[pos[hit]] == ukeys[hit]
        self._seen[pos[hit]] = self._tick
        new = ~hit
        n_new = int(np.count_nonzero(new))
        if n_new == 0:
            return 0
        # new voxel j lands at its insert position plus the number of new voxels before it
        ins = pos[new] + np.arange(n_new)
        old_slots = np.ones(len(self._keys) + n_new, bool)
        old_slots[ins] = False

        def merged(old: np.ndarray, added: np.ndarray) -> np.ndarray:
            out = np.empty((len(old_slots), *old.shape[1:]), old.dtype)
            rec = _records(out)
            rec[ins] = _records(np.ascontiguousarray(added))
            rec[old_slots] = _records(old)
            return out

        self._keys = merged(self._keys, ukeys[new])
        new_mean = _records(mean)[new].view(np.float64).reshape(-1, 3)
        self._points = merged(self._points, new_mean.astype(np.float32))
        self._colors = merged(self._colors, _records(col)[new].view(np.uint8).reshape(-1, 3))
        self._seen = merged(self._seen, np.full(n_new, self._tick, np.int64))
        return n_new

    def _enforce_bound(self) -> None:
        excess = len(self._points) - self.max_points
        if excess <= 0:
            return
        # Drop the least recently seen voxels (ties: the lowest key / oldest insertion). Ticks are
        # small integers, so a histogram finds the cut tick in O(N) instead of a full stable sort.
        lo = int(self._seen.min())
        cum = np.cumsum(np.bincount(self._seen - lo))
        cut = int(np.searchsorted(cum, excess))  # ticks below lo + cut are dropped entirely
        keep = self._seen > lo + cut
        at_cut = np.flatnonzero(self._seen == lo + cut)
        keep[at_cut[excess - (int(cum[cut - 1]) if cut else 0):]] = True
        self._keys = self._keys[keep]
        self._points = self._points[keep]
        self._colors = self._colors[keep]
        self._seen = self._seen[keep]
        self.dropped += int(excess)

    def rescale(self, factor: float, center: np.ndarray | None = None) -> None:
        """Scale every point about ``center`` (metric factor update); voxels are re-merged."""
        if factor == 1.0 or len(self._points) == 0:
            return
        ctr = np.zeros(3) if center is None else np.asarray(center, np.float64)
        pts = (self._points.astype(np.float64) - ctr) * float(factor) + ctr
        cols, seen = self._colors, self._seen
        tick = self._tick
        self.clear_points()
        if self.voxel_size > 0:
            keys, ok = pack_voxel_keys(pts, self.voxel_size)
            pts, cols, seen = pts[ok], cols[ok], seen[ok]
            uk, first = np.unique(keys, return_index=True)
            self._keys, self._points = uk, pts[first].astype(np.float32)
            self._colors, self._seen = cols[first], seen[first]
        else:
            self._keys = np.arange(len(pts), dtype=np.int64)
            self._next_id = len(pts)
            self._points, self._colors, self._seen = pts.astype(np.float32), cols, seen
        self._tick = tick
        self._enforce_bound()

    def clear_points(self) -> None:
        """Remove all points, keeping the counters."""
        dropped, rejected, tick = self.dropped, self.rejected, self._tick
        self.clear()
        self.dropped, self.rejected, self._tick = dropped, rejected, tick

    def save_ply(self, path: str | Path) -> None:
        """Binary little-endian PLY: x y z float32, red green blue uint8."""
        n = len(self._points)
        rec = np.empty(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                 ("red", "u1"), ("green", "u1"), ("blue", "u1")])
        rec["x"], rec["y"], rec["z"] = self._points[:, 0], self._points[:, 1], self._points[:, 2]
        rec["red"], rec["green"], rec["blue"] = self._colors[:, 0], self._colors[:, 1], self._colors[:, 2]
        header = (
            "ply\nformat binary_little_endian 1.0\n"
            f"element vertex {n}\n"
            "property float x\nproperty float y\nproperty float z\n"
            "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
        )
        with open(path, "wb") as f:
            f.write(header.encode("ascii"))
            f.write(rec.tobytes())
