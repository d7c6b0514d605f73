"""WorldMap voxel update (the vectorised path) against an independent per-point reference.

The reference below is a plain Python dict over points: cells ``floor(x / voxel)`` in float64, float64
sums in input order, one point per voxel (the batch mean of a new voxel, rounded to float32, and the
rounded mean colour), known voxels only refresh their tick, the least recently seen voxels dropped
beyond the bound (ties: lowest cell). Every comparison is bit-exact: keys, points, colours, ticks,
counters and order.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from vggt_ros.core import world_map as wm
from vggt_ros.core.world_map import WorldMap

_LIMIT = (1 << 20) - 1  # |cell| must stay below this to be representable


class RefMap:
    """Per-point reference with the map's full state (sorted like the packed keys)."""

    def __init__(self, voxel: float, max_points: int) -> None:
        self.voxel, self.max_points = voxel, max_points
        self.vox: dict[tuple[int, int, int], list] = {}
        self.tick = self.rejected = self.dropped = 0

    def add(self, pts: np.ndarray, cols: np.ndarray) -> int:
        self.tick += 1
        batch: dict[tuple[int, int, int], list] = {}
        p32 = np.asarray(pts, np.float32).reshape(-1, 3)
        for p, c in zip(p32.tolist(), np.asarray(cols, np.uint8).reshape(-1, 3).tolist(), strict=True):
            if not all(math.isfinite(v) for v in p):
                self.rejected += 1
                continue
            cell = tuple(math.floor(v / self.voxel) for v in p)
            if any(abs(k) >= _LIMIT for k in cell):
                self.rejected += 1
                continue
            acc = batch.setdefault(cell, [0.0] * 6 + [0])
            for k in range(3):
                acc[k] += p[k]
                acc[3 + k] += c[k]
            acc[6] += 1
        n_new = 0
        for cell, acc in batch.items():
            if cell in self.vox:
                self.vox[cell][2] = self.tick
            else:
                n = acc[6]
                self.vox[cell] = [[a / n for a in acc[:3]], [round(a / n) for a in acc[3:6]], self.tick]
                n_new += 1
        excess = len(self.vox) - self.max_points
        if excess > 0:
            for cell in sorted(self.vox, key=lambda k: (self.vox[k][2], k))[:excess]:
                del self.vox[cell]
            self.dropped += excess
        return n_new

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        cells = sorted(self.vox)
        keys = np.array([((x + (1 << 20)) << 42) | ((y + (1 << 20)) << 21) | (z + (1 << 20))
                         for x, y, z in cells], np.int64).reshape(-1)
        pts = np.array([self.vox[k][0] for k in cells], np.float64).reshape(-1, 3).astype(np.float32)
        cols = np.array([self.vox[k][1] for k in cells], np.uint8).reshape(-1, 3)
        seen = np.array([self.vox[k][2] for k in cells], np.int64).reshape(-1)
        return keys, pts, cols, seen


def _same(m: WorldMap, ref: RefMap) -> None:
    keys, pts, cols, seen = ref.arrays()
    np.testing.assert_array_equal(m._keys, keys)
    assert m.points.dtype == np.float32 and m.points.tobytes() == pts.tobytes()  # bits, -0.0 included
    np.testing.assert_array_equal(m.colors, cols)
    np.testing.assert_array_equal(m._seen, seen)
    assert (m.rejected, m.dropped, m._tick) == (ref.rejected, ref.dropped, ref.tick)


def _run(batches, voxel: float, bound: int) -> tuple[WorldMap, RefMap]:
    m, ref = WorldMap(voxel, bound), RefMap(voxel, bound)
    for pts, cols in batches:
        assert m.add(pts, cols) == ref.add(pts, cols)
        _same(m, ref)
    return m, ref


def _cols(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, (n, 3)).astype(np.uint8)


def _depth_like(rng: np.random.Generator, w: int = 64, h: int = 48, z0: float = 1.2) -> np.ndarray:
    """A smooth back-projected depth image: neighbouring pixels share voxels (many points each)."""
    v, u = np.mgrid[0:h, 0:w]
    z = z0 + 0.3 * np.sin(u / 9.0) + 0.2 * np.cos(v / 7.0) + rng.normal(0, 0.002, (h, w))
    f = 0.9 * w
    pts = np.stack([(u - w / 2) / f * z, (v - h / 2) / f * z, z], -1).reshape(-1, 3)
    return pts.astype(np.float32)


def test_dense_depth_like_batch_many_points_per_voxel() -> None:
    rng = np.random.default_rng(0)
    pts = _depth_like(rng, 128, 96)
    m, ref = _run([(pts, _cols(rng, len(pts)))], 0.08, 100_000)
    assert len(pts) / len(m) > 8  # really many points per voxel
    assert np.all(np.diff(m._keys) > 0)


def test_sums_run_in_input_order() -> None:
    """Voxels of 8 points ``[t, t, 2^-21, 4, 4, 0, 0, 0]`` (t = 0.75 * 2^-50, x in the cell [0, 8)),
    each in its own random order: the float64 sum, divided by 8, lands on a float32 rounding tie or
    just past it depending on the order of the additions. So only sums in input order reproduce the
    reference; a reversed run or ``np.add.reduceat`` (pairwise inner loop) would change bits, which
    the test checks on the data itself first."""
    rng = np.random.default_rng(1)
    base = np.array([0.75 * 2.0**-50, 0.75 * 2.0**-50, 2.0**-21, 4, 4, 0, 0, 0], np.float32)
    nv = 300
    xs = np.stack([rng.permutation(base) for _ in range(nv)])  # [voxel, point]

    def seq_mean(v: np.ndarray) -> np.float32:
        acc = 0.0
        for a in v.tolist():
            acc += a
        return np.float32(acc / len(v))

    fwd = np.array([seq_mean(v) for v in xs])
    rev = np.array([seq_mean(v[::-1]) for v in xs])
    pairwise = (np.add.reduceat(xs.reshape(-1).astype(np.float64), np.arange(nv) * 8) / 8).astype(np.float32)
    assert np.any(fwd != rev) and np.any(fwd != pairwise)  # the data is order-sensitive
    pts = np.zeros((nv, 8, 3), np.float32)
    pts[:, :, 0] = xs
    pts[:, :, 1] = (8.0 * np.arange(nv) + 1.0)[:, None]  # one voxel per row (y cell), exact sums
    pts[:, :, 2] = 1.0
    mix = rng.permutation(nv * 8)  # interleave the voxels; input order inside each voxel is kept below
    mix = np.concatenate([np.sort(part) for part in np.array_split(mix, 4)])
    flat = pts.reshape(-1, 3)[mix]
    m, _ = _run([(flat, _cols(rng, len(flat)))], 8.0, 10_000)
    assert len(m) == nv and len(np.unique(m.points[:, 0])) == 2


def test_batches_hitting_existing_voxels_refresh_ticks_only() -> None:
    rng = np.random.default_rng(2)
    a = rng.uniform(-1, 1, (3000, 3)).astype(np.float32)
    b = np.concatenate([a[:1500] + rng.uniform(-0.004, 0.004, (1500, 3)).astype(np.float32),
                        rng.uniform(1, 2, (500, 3)).astype(np.float32)])
    m, ref = _run([(a, _cols(rng, len(a))), (b, _cols(rng, len(b))), (a[:10], _cols(rng, 10))], 0.1, 10**6)
    assert np.count_nonzero(m._seen == 2) > 0 and np.count_nonzero(m._seen == 3) > 0


def test_small_batches_into_a_large_map_and_large_into_small() -> None:
    """Both lookup directions (batch voxels searched in the map, and map voxels in the batch)."""
    rng = np.random.default_rng(3)
    big = rng.normal(0, 1.0, (6000, 3)).astype(np.float32)
    batches = [(big[:50], _cols(rng, 50)), (big, _cols(rng, 6000)), (big[100:140] + 0.01, _cols(rng, 40)),
               (rng.normal(0, 1.0, (30, 3)), _cols(rng, 30))]
    _run(batches, 0.04, 10**6)


def test_empty_and_all_rejected_batches() -> None:
    rng = np.random.default_rng(4)
    pts = rng.uniform(-1, 1, (500, 3)).astype(np.float32)
    bad = np.full((20, 3), np.nan, np.float32)
    bad[5:10, 0] = np.inf
    bad[10:15] = 1e9  # finite but outside the representable cell range
    batches = [(np.zeros((0, 3)), np.zeros((0, 3))), (bad, _cols(rng, 20)), (pts, _cols(rng, 500)),
               (bad[:3], _cols(rng, 3)), (np.zeros((0, 3)), np.zeros((0, 3)))]
    m, ref = _run(batches, 0.1, 10**6)
    assert m.rejected == 23 and m._tick == 5


def test_nan_inf_negative_coordinates_and_signed_zero() -> None:
    rng = np.random.default_rng(5)
    pts = rng.uniform(-3, 0.5, (5000, 3)).astype(np.float32)
    pts[rng.uniform(size=5000) < 0.05, 0] = np.nan
    pts[rng.uniform(size=5000) < 0.05, 1] = -np.inf
    pts[rng.uniform(size=5000) < 0.05, 2] = np.inf
    pts[:4] = [[-0.0, -0.0, -0.0], [-0.0, 5.0, 5.0], [-1e-30, 6.0, 6.0], [-0.0, -0.0, 7.0]]  # lone points
    m, ref = _run([(pts, _cols(rng, 5000))], 0.05, 10**6)
    assert m.rejected > 500 and np.any(m.points < -2.9)
    assert not np.signbit(m.points[np.isin(m.points[:, 2], [0.0, 5.0])]).any()  # -0.0 summed to +0.0


def test_all_one_point_voxels_and_the_representable_range_edge() -> None:
    """A sparse batch (every voxel one point, including -0.0 coordinates, which the reference's
    ``0.0 + x`` sum turns into +0.0) and cells at the edge of the representable range (|cell| =
    2^20 - 2 kept, 2^20 - 1 rejected)."""
    rng = np.random.default_rng(10)
    ids = rng.choice(100**3, 2000, replace=False)  # distinct cells
    pts = (np.stack(np.unravel_index(ids, (100, 100, 100)), 1) - 50 + rng.uniform(0.1, 0.9, (2000, 3)))
    pts = pts.astype(np.float32)
    pts[:3] = [[-0.0, 10.5, 10.5], [-0.0, -0.0, 20.5], [30.5, -0.0, -0.0]]
    m, ref = _run([(pts, _cols(rng, 2000))], 1.0, 10**6)
    assert len(m) == len(np.unique(np.floor(pts), axis=0)) == 2000  # all one-point voxels
    assert np.count_nonzero(m.points == 0) == 5 and not np.signbit(m.points).any(where=m.points == 0)
    edge = np.array([[_LIMIT - 1, 0, 0], [_LIMIT - 0.5, 0, 0], [_LIMIT, 1, 1], [-(_LIMIT - 1), 2, 2],
                     [-(_LIMIT - 1) - 0.5, 3, 3], [0, 0, -_LIMIT]], np.float32)
    m, ref = _run([(edge, _cols(rng, len(edge)))], 1.0, 10**6)
    assert m.rejected == 3 and len(m) == 2


def test_wide_batch_uses_the_fallback_and_matches() -> None:
    """Spans beyond the radix key (2^32 cells) take the comparison-sort fallback: same map."""
    rng = np.random.default_rng(6)
    pts = rng.normal(0, 2e3, (3000, 3)).astype(np.float32)
    pts[:1000] = pts[1000:2000] + rng.uniform(-0.002, 0.002, (1000, 3)).astype(np.float32)
    cells, _ = wm._voxel_cells(pts, 0.01)
    span = [int(r.max()) - int(r.min()) + 1 for r in cells]
    assert span[0] * span[1] * span[2] > wm._RADIX_MAX_SPAN
    _run([(pts, _cols(rng, 3000)), (pts[::3] * np.float32(1.0001), _cols(rng, 1000))], 0.01, 10**6)


@pytest.mark.parametrize("spread", [0.05, 1.0, 30.0])  # one radix pass, two passes, fallback
def test_radix_passes_and_fallback_agree(monkeypatch, spread: float) -> None:
    rng = np.random.default_rng(7)
    batches = []
    for _ in range(4):
        pts = rng.normal(0, spread, (3000, 3)).astype(np.float32)
        pts[:1000] = pts[1000:2000]
        batches.append((pts, _cols(rng, 3000)))
    maps = []
    for limit in (wm._RADIX_MAX_SPAN, 0):
        monkeypatch.setattr(wm, "_RADIX_MAX_SPAN", limit)
        maps.append(_run(batches, 0.004, 9000)[0])
    for name in ("_keys", "_points", "_colors", "_seen"):
        assert getattr(maps[0], name).tobytes() == getattr(maps[1], name).tobytes()


def test_repeated_adds_with_the_bound_enforced() -> None:
    rng = np.random.default_rng(8)
    batches = []
    for step in range(12):
        n = int(rng.integers(0, 2500))
        pts = rng.normal(0.15 * step, 0.8, (n, 3)).astype(np.float32)
        if n:
            pts[: n // 3] = pts[n // 3: 2 * (n // 3)]
            pts[rng.uniform(size=n) < 0.02, 1] = np.nan
        batches.append((pts, _cols(rng, n)))
    m, ref = _run(batches, 0.1, 1500)
    assert m.dropped > 0 and len(m) == 1500
