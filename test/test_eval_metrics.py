"""Trajectory/depth metrics and TUM files."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vggt_ros.eval.metrics import (
    align_trajectory,
    associate,
    ate,
    depth_metrics,
    rotation_angle_deg,
    rpe,
    umeyama_alignment,
)
from vggt_ros.eval.tum import read_tum, write_tum


def _random_poses(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    T = np.tile(np.eye(4), (n, 1, 1))
    T[:, :3, :3] = Rotation.from_rotvec(rng.normal(0, 0.5, (n, 3))).as_matrix()
    T[:, :3, 3] = np.cumsum(rng.normal(0, 0.3, (n, 3)), axis=0)
    return T


def _sim3(R, t, s, poses):
    out = poses.copy()
    out[:, :3, :3] = R @ poses[:, :3, :3]
    out[:, :3, 3] = s * poses[:, :3, 3] @ R.T + t
    return out


def test_umeyama_recovers_known_sim3_and_se3():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(50, 3))
    R = Rotation.from_euler("xyz", [30, -50, 120], degrees=True).as_matrix()
    t = np.array([1.0, -2.0, 0.5])
    s = 2.5
    dst = s * src @ R.T + t
    R2, t2, s2 = umeyama_alignment(src, dst, with_scale=True)
    np.testing.assert_allclose(R2, R, atol=1e-10)
    np.testing.assert_allclose(t2, t, atol=1e-10)
    assert s2 == pytest.approx(s)
    R3, t3, s3 = umeyama_alignment(src, src @ R.T + t, with_scale=False)
    np.testing.assert_allclose(R3, R, atol=1e-10)
    np.testing.assert_allclose(t3, t, atol=1e-10)
    assert s3 == 1.0
    # A reflection in the data never yields an improper rotation.
    Rr, _, _ = umeyama_alignment(src, src * np.array([1, 1, -1]), with_scale=True)
    assert np.linalg.det(Rr) == pytest.approx(1.0)


def test_umeyama_degenerate_inputs():
    R, t, s = umeyama_alignment(np.zeros((1, 3)), np.array([[1.0, 2.0, 3.0]]), with_scale=True)
    np.testing.assert_allclose(R, np.eye(3))
    np.testing.assert_allclose(t, [1, 2, 3])
    assert s == 1.0
    same = np.ones((4, 3))
    R, t, s = umeyama_alignment(same, same + 2.0, with_scale=True)
    np.testing.assert_allclose(t, [2, 2, 2])
    assert s == 1.0
    # Collinear points: the fit is still exact on the points themselves, with a proper rotation.
    line = np.outer(np.linspace(0, 1, 5), [1.0, 2.0, 0.5])
    Rz = Rotation.from_euler("z", 40, degrees=True).as_matrix()
    dst = 3.0 * line @ Rz.T + 1.0
    R, t, s = umeyama_alignment(line, dst, with_scale=True)
    np.testing.assert_allclose(s * line @ R.T + t, dst, atol=1e-9)
    assert s == pytest.approx(3.0) and np.linalg.det(R) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        umeyama_alignment(np.zeros((0, 3)), np.zeros((0, 3)), True)
    with pytest.raises(ValueError):
        umeyama_alignment(np.zeros((3, 3)), np.zeros((4, 3)), True)


def test_ate_zero_for_identical_and_for_sim3_copies():
    gt = _random_poses(30)
    r = ate(gt, gt, align="none")
    assert r["rmse"] == 0.0 and r["n"] == 30
    R = Rotation.from_euler("xyz", [10, 20, 30], degrees=True).as_matrix()
    est = _sim3(R, np.array([5.0, 0, -1]), 0.3, gt)
    r = ate(est, gt, align="sim3")
    assert r["rmse"] < 1e-9
    assert r["scale"] == pytest.approx(1 / 0.3)
    assert ate(est, gt, align="se3")["rmse"] > 0.1  # SE(3) cannot undo the scale
    aligned, R2, _, s2 = align_trajectory(est, gt, "sim3")
    np.testing.assert_allclose(aligned, gt, atol=1e-9)  # rotations are aligned too


def test_ate_known_value_for_known_perturbation():
    gt = _random_poses(40, seed=2)
    est = gt.copy()
    # Alternate +-d along x: the centroid stays and no rotation/scale explains it away.
    d = 0.1
    est[:, 0, 3] += d * np.where(np.arange(40) % 2 == 0, 1.0, -1.0)
    r = ate(est, gt, align="none")
    assert r["rmse"] == pytest.approx(d) and r["mean"] == pytest.approx(d) and r["max"] == pytest.approx(d)
    assert r["std"] == pytest.approx(0.0, abs=1e-12)
    # A constant offset is removed by SE(3) alignment, not without it.
    shifted = gt.copy()
    shifted[:, :3, 3] += [0.2, 0.0, 0.0]
    assert ate(shifted, gt, align="none")["rmse"] == pytest.approx(0.2)
    assert ate(shifted, gt, align="se3")["rmse"] < 1e-9
    # Positions only are accepted too.
    assert ate(est[:, :3, 3], gt[:, :3, 3], align="none")["rmse"] == pytest.approx(d)
    with pytest.raises(ValueError, match="align"):
        ate(est, gt, align="bogus")


def test_rpe_identical_constant_drift_and_rotation_error():
    gt = _random_poses(20, seed=3)
    assert rpe(gt, gt)["trans_rmse"] < 1e-12 and rpe(gt, gt)["rot_rmse_deg"] < 1e-6
    # A global rigid transform of the whole trajectory does not change RPE.
    G = np.eye(4)
    G[:3, :3] = Rotation.from_euler("y", 70, degrees=True).as_matrix()
    G[:3, 3] = [3, 1, 2]
    r = rpe(G @ gt, gt)
    assert r["trans_rmse"] < 1e-9 and r["rot_rmse_deg"] < 1e-5 and r["n"] == 19
    # Every relative motion gets an extra 0.05 m along its local x: RPE trans = 0.05 exactly.
    rel = np.linalg.inv(gt[:-1]) @ gt[1:]
    bump = np.eye(4)
    bump[0, 3] = 0.05
    est = [gt[0]]
    for m in rel:
        est.append(est[-1] @ m @ bump)
    r = rpe(np.stack(est), gt)
    assert r["trans_rmse"] == pytest.approx(0.05) and r["trans_max"] == pytest.approx(0.05)
    # An extra 2 deg yaw per step: rotation RPE = 2 deg.
    bump = np.eye(4)
    bump[:3, :3] = Rotation.from_euler("z", 2, degrees=True).as_matrix()
    est = [gt[0]]
    for m in rel:
        est.append(est[-1] @ m @ bump)
    assert rpe(np.stack(est), gt)["rot_rmse_deg"] == pytest.approx(2.0)
    # Up-to-scale estimates: sim3 alignment restores the scale before measuring.
    scaled = gt.copy()
    scaled[:, :3, 3] *= 0.25
    assert rpe(scaled, gt)["trans_rmse"] > 0.05
    assert rpe(scaled, gt, align="sim3")["trans_rmse"] < 1e-9
    assert rpe(gt[:1], gt[:1])["n"] == 0
    assert rotation_angle_deg(np.eye(3)) == pytest.approx(0.0)


def test_associate_matches_nearest_unique_within_tolerance():
    a = np.array([100, 200, 300, 400, 1000])
    b = np.array([205, 95, 302, 303, 650])
    ia, ib = associate(a, b, max_diff_ns=10)
    assert ia.tolist() == [0, 1, 2]
    assert ib.tolist() == [1, 0, 2]  # 300 takes 302 (closer than 303); 400 and 1000 have no partner
    ia, ib = associate(a, b, max_diff_ns=1000)
    assert len(set(ib.tolist())) == len(ib)  # one-to-one
    assert associate(np.array([], dtype=np.int64), b, 5)[0].size == 0


def test_depth_metrics_values_and_alignment():
    rng = np.random.default_rng(0)
    gt = rng.uniform(1.0, 5.0, size=(3, 20, 30))
    assert depth_metrics(gt, gt, align="none")["abs_rel"] == 0.0
    r = depth_metrics(gt * 1.1, gt, align="none")
    assert r["abs_rel"] == pytest.approx(0.1) and r["delta1"] == 1.0 and r["n"] == gt.size
    r = depth_metrics(gt * 1.3, gt, align="none")
    assert r["delta1"] == 0.0 and r["delta2"] == 1.0
    # Median alignment removes a per-frame scale exactly...
    per_frame = gt * np.array([0.2, 3.0, 7.0])[:, None, None]
    r = depth_metrics(per_frame, gt, align="median", per_frame=True)
    assert r["abs_rel"] < 1e-12 and r["delta1"] == 1.0
    # ...but one sequence-wide factor cannot undo different per-frame scales.
    assert depth_metrics(per_frame, gt, align="median", per_frame=False)["abs_rel"] > 0.3
    seq_scaled = gt * 4.0
    r = depth_metrics(seq_scaled, gt, align="median", per_frame=False)
    assert r["abs_rel"] < 1e-12 and r["scale"] == pytest.approx(0.25)
    # Invalid pixels (NaN / zero / out of range) are excluded.
    g = gt[0].copy()
    p = g.copy()
    g[0, :5] = np.nan
    p[1, :4] = 0.0
    p[2, 0] = 1000.0
    r = depth_metrics(p, g, align="none", max_depth=4.0)
    expected_n = int((np.isfinite(g) & (g < 4.0) & (p > 0)).sum())
    assert r["n"] == expected_n
    assert depth_metrics(np.zeros((4, 4)), np.ones((4, 4)))["n"] == 0
    with pytest.raises(ValueError):
        depth_metrics(np.ones((2, 2)), np.ones((3, 3)))


def test_tum_round_trip_and_parsing(tmp_path):
    poses = _random_poses(10, seed=5)
    stamps = np.array([1_700_000_000_123_456_789 + i * 33_333_333 for i in range(10)], dtype=np.int64)
    path = tmp_path / "traj.txt"
    write_tum(path, stamps, poses)
    s2, p2 = read_tum(path)
    np.testing.assert_array_equal(s2, stamps)  # exact nanoseconds, no float rounding
    np.testing.assert_allclose(p2, poses, atol=1e-7)
    first = path.read_text().splitlines()[1].split()
    assert first[0] == "1700000000.123456789" and len(first) == 8
    # Hand-written file: comments, blank lines, identity quaternion (scalar last).
    path.write_text("# comment\n\n1.5 1 2 3 0 0 0 1\n2.25 0 0 0 0 0 0.7071067811865476 0.7071067811865476\n")
    s3, p3 = read_tum(path)
    assert s3.tolist() == [1_500_000_000, 2_250_000_000]
    np.testing.assert_allclose(p3[0, :3, 3], [1, 2, 3])
    Rz = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    np.testing.assert_allclose(p3[1, :3, :3], Rz, atol=1e-9)
    path.write_text("1.0 1 2 3\n")
    with pytest.raises(ValueError, match=":1: expected 8 values"):
        read_tum(path)
