"""The core's per-frame cloud (window_outputs.sampled_depth_points, cloud_pixels) vs per-pixel reference."""

from __future__ import annotations

import numpy as np
import pytest

from vggt_ros.core.window_outputs import cloud_pixels, sampled_depth_points


def _reference(depth: np.ndarray, K: np.ndarray, stride: int,
               max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel loop: every stride-th finite positive depth, evenly thinned, float64 math, float32 out."""
    h, w = depth.shape
    sel = [(v, u) for v in range(0, h, stride) for u in range(0, w, stride)
           if np.isfinite(depth[v, u]) and depth[v, u] > 0]
    if max_points and len(sel) > max_points:
        sel = [sel[i] for i in np.linspace(0, len(sel) - 1, max_points).astype(np.int64)]
    pts, flat = [], []
    for v, u in sel:
        z = float(depth[v, u])
        y = (v - K[1, 2]) / K[1, 1]
        x = (u - K[0, 2] - K[0, 1] * y) / K[0, 0]
        pts.append([x * z, y * z, z])
        flat.append(v * w + u)
    return np.array(pts, np.float64).reshape(-1, 3).astype(np.float32), np.array(flat, np.int64)


def _depth(h: int, w: int, seed: int, dtype=np.float32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    d = rng.uniform(0.2, 9.0, (h, w))
    bad = ((np.nan, 0.15), (np.inf, 0.05), (-np.inf, 0.03), (0.0, 0.05), (-1.5, 0.05), (-0.0, 0.02))
    for value, frac in bad:
        d[rng.uniform(size=(h, w)) < frac] = value
    return d.astype(dtype)


@pytest.mark.parametrize("stride,max_points,skew", [(1, 0, 0.0), (3, 0, 0.0), (2, 40, 0.0), (1, 25, 1.5),
                                                     (4, 7, 0.0)])
def test_sampled_depth_points_matches_per_pixel_reference(stride: int, max_points: int, skew: float) -> None:
    depth = _depth(23, 37, seed=stride * 10 + max_points)
    K = np.array([[31.0, skew, 17.3], [0.0, 29.0, 10.8], [0.0, 0.0, 1.0]])
    pts, flat = sampled_depth_points(depth, K, stride, max_points)
    ref_pts, ref_flat = _reference(depth, K, stride, max_points)
    np.testing.assert_array_equal(flat, ref_flat)
    assert pts.dtype == np.float32 and pts.shape == ref_pts.shape
    np.testing.assert_array_equal(pts, ref_pts)  # same float64 arithmetic, rounded once: bit-identical
    v, u = cloud_pixels(np.isfinite(depth) & (depth > 0), stride, max_points)
    np.testing.assert_array_equal(v * depth.shape[1] + u, ref_flat)


def test_sampled_depth_points_edge_cases() -> None:
    K = np.array([[10.0, 0, 2.0], [0, 10.0, 1.0], [0, 0, 1]])
    pts, flat = sampled_depth_points(np.full((4, 5), np.nan, np.float32), K, 1, 0)
    assert pts.shape == (0, 3) and pts.dtype == np.float32 and flat.shape == (0,)
    depth64 = _depth(9, 11, seed=5, dtype=np.float64)  # float64 depth: same rule, float32 points
    pts, flat = sampled_depth_points(depth64, K, 2, 0)
    ref_pts, ref_flat = _reference(depth64, K, 2, 0)
    np.testing.assert_array_equal(flat, ref_flat)
    np.testing.assert_array_equal(pts, ref_pts)
