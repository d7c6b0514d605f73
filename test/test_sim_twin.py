"""Twin corridor: a real render whose second half repeats the first half one period further on."""

from __future__ import annotations

import numpy as np
import pytest
from test_sim import _reprojection_agreement

from vggt_ros.core.oracle import OraclePredictor
from vggt_ros.sim.raycaster import render
from vggt_ros.sim.twin import TWIN_PERIOD, make_twin_sequence, twin_pose, twin_scene

H, W = 48, 64


@pytest.fixture(scope="module")
def seq():
    return make_twin_sequence(24, height=H, width=W, fps=4.0, seed=1)


def test_second_half_repeats_first_half_one_period_away(seq):
    half = seq.twin_offset
    assert half == 12 and seq.period_m == TWIN_PERIOD
    for i in range(0, half, 3):
        a, da = seq.render_frame(i)
        b, db = seq.render_frame(i + half)
        diff = np.abs(a.astype(float) - b).mean()
        assert diff < 1.0, (i, diff)
        np.testing.assert_allclose(da, db, rtol=1e-4)
        dist = np.linalg.norm(seq.world_T_camera[i + half, :3, 3] - seq.world_T_camera[i, :3, 3])
        assert dist == pytest.approx(TWIN_PERIOD, abs=1e-9)
        # Control: a quarter period away the image is very different (the similarity is not trivial).
        c = seq.render_frame(i + half // 2)[0]
        assert np.abs(a.astype(float) - c).mean() > 20.0


def test_scene_is_periodic_for_any_nearby_pose():
    scene = twin_scene(seed=3)
    K = make_twin_sequence(2, height=H, width=W).K
    rng = np.random.default_rng(0)
    for x in rng.uniform(0.0, TWIN_PERIOD, 4):
        T = twin_pose(x)
        T[:3, 3] += rng.uniform(-0.1, 0.1, 3)
        S = T.copy()
        S[0, 3] += TWIN_PERIOD
        a, da = render(scene, K, T, H, W)
        b, db = render(scene, K, S, H, W)
        assert np.abs(a.astype(float) - b).mean() < 1.0
        assert np.all(np.isfinite(da)) and np.all(np.isfinite(db))


def test_trajectory_is_continuous_and_depth_consistent(seq):
    p = seq.world_T_camera[:, :3, 3]
    steps = np.linalg.norm(np.diff(p, axis=0), axis=1)
    # No teleports: every step is about P / (N / 2), the whole run about two periods.
    assert steps.max() < 1.2 * TWIN_PERIOD / seq.twin_offset
    assert 1.8 * TWIN_PERIOD < steps.sum() < 2.2 * TWIN_PERIOD
    for i in range(len(seq)):
        assert np.all(np.isfinite(seq.render_frame(i)[1])), i
    frac, med, col = _reprojection_agreement(seq, 4, 5)
    assert frac > 0.8 and med < 2e-3 and col < 0.5, (frac, med, col)
    np.testing.assert_array_equal(np.diff(seq.stamps_ns), round(1e9 / 4.0))


def test_oracle_and_frames_accept_the_twin_sequence(seq):
    frames = seq.to_frames(indices=[0, 1, 12])
    assert [f.stamp_ns for f in frames] == [int(seq.stamps_ns[i]) for i in (0, 1, 12)]
    pred = OraclePredictor(seq.ground_truth(), target_size=70, normalize_scale=False).predict(
        [f.image for f in frames], frame_keys=[f.stamp_ns for f in frames])
    # Metric window (first frame = origin): the twin frame is one period away from frame 0.
    R, t = pred.extrinsics[2, :, :3], pred.extrinsics[2, :, 3]
    assert np.linalg.norm(-R.T @ t) == pytest.approx(TWIN_PERIOD, rel=1e-3)
    with pytest.raises(ValueError, match="num_frames"):
        make_twin_sequence(1)
