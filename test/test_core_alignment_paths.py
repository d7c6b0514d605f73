"""Fast paths of the alignment: they must give exactly what the plain computation gives."""

from __future__ import annotations

import numpy as np

from vggt_ros.core.alignment import (
    ContextRef,
    _weighted_median_sorted,
    align_window,
    stored_usable,
    weighted_median,
)
from vggt_ros.core.frames import invert_pose
from vggt_ros.core.oracle import OraclePredictor
from vggt_ros.sim.sequences import make_sequence


def test_weighted_median_bracketing_equals_the_full_sort() -> None:
    rng = np.random.default_rng(3)
    for trial in range(120):
        n = int(rng.integers(4096, 60000))
        kind = trial % 4
        if kind == 0:
            v = rng.normal(size=n).astype(np.float32)
        elif kind == 1:  # heavy ties
            v = rng.integers(0, 30, size=n).astype(np.float32)
        elif kind == 2:  # two modes with most weight far from the unweighted median
            v = np.concatenate([rng.normal(size=n // 2), rng.normal(5, 0.1, size=n - n // 2)])
            v = v.astype(np.float32)
        else:  # sorted input: the strided subsample sees only part of the range's structure
            v = np.sort(rng.normal(size=n)).astype(np.float32)
        w = rng.random(n)
        if trial % 3 == 0:
            w[rng.random(n) < 0.5] = 0.0
        if trial % 5 == 0:
            w = w**8  # a few points carry most of the weight
        assert weighted_median(v, w) == _weighted_median_sorted(v, w), trial
    # the bracket check must catch a subsample that misses the answer: one point holds half the weight
    v = rng.normal(size=20000)
    w = np.full(20000, 1e-6)
    w[12345] = 1.0
    assert weighted_median(v, w) == _weighted_median_sorted(v, w) == v[12345]
    # degenerate inputs take the reference path
    v[7] = np.nan
    assert np.isnan(weighted_median(v, w)) == np.isnan(_weighted_median_sorted(v, w))
    assert weighted_median(np.arange(5000.0), np.zeros(5000)) == np.median(np.arange(5000.0))
    assert weighted_median(np.array([1.0, 2.0, 100.0]), np.array([1.0, 5.0, 1.0])) == 2.0


def test_cached_usable_pixels_give_the_same_alignment() -> None:
    """``ContextRef.usable`` (computed once per stored frame by the pipeline) changes nothing."""
    seq = make_sequence("forward", 12, height=96, width=128, fps=10)
    frames = seq.to_frames()
    oracle = OraclePredictor(seq, target_size=126, pose_noise_rot_deg=0.5, pose_noise_trans=0.01,
                             depth_noise=0.02, random_scale=(0.5, 2.0), seed=2)
    first = oracle.predict([f.image for f in frames[:8]], None, [f.stamp_ns for f in frames[:8]])
    second = oracle.predict([f.image for f in frames[4:12]], None, [f.stamp_ns for f in frames[4:12]])
    # frames 4..7 placed by the first window (world = its frame), seen again as second's 0..3
    rng = np.random.default_rng(0)
    refs = []
    for j in range(4, 8):  # stored confidence that varies, and a few invalid stored depths
        depth = first.depth[j].copy()
        depth[rng.random(depth.shape) < 0.05] = np.nan
        conf = first.depth_conf[j] * rng.uniform(0.5, 1.5, depth.shape).astype(np.float32)
        refs.append(ContextRef(j - 4, invert_pose(np.asarray(first.extrinsics[j], np.float64)), depth, conf,
                               np.asarray(first.intrinsics[j], np.float64)))
    plain = align_window(second, refs[0], refs[1:], 0.5)
    for r in refs:
        r.usable = stored_usable(r, 0.5)
        assert 0 < r.usable.sum() < r.usable.size
    usable_before = [r.usable.copy() for r in refs]
    cached = align_window(second, refs[0], refs[1:], 0.5)
    assert plain.accepted and cached.accepted
    assert plain.scale == cached.scale and plain.residual == cached.residual
    assert plain.num_pixels == cached.num_pixels
    np.testing.assert_array_equal(plain.rotation, cached.rotation)
    np.testing.assert_array_equal(plain.translation, cached.translation)
    for r, before in zip(refs, usable_before):  # the cache is not modified by the alignment
        np.testing.assert_array_equal(r.usable, before)
