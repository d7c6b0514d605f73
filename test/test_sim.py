"""Ray caster and synthetic sequences: exact geometry and view-consistent textures."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vggt_ros.core.types import Frame
from vggt_ros.sim.raycaster import Box, Scene, plane, project_points, render
from vggt_ros.sim.sequences import SEQUENCE_KINDS, default_intrinsics, make_sequence


def _pose(rotvec, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = t
    return T


def test_plane_depth_matches_analytic_ray_plane_intersection():
    H, W = 60, 80
    K = np.array([[70.0, 0.0, 41.3], [0.0, 65.0, 28.7], [0.0, 0.0, 1.0]])
    n = np.array([0.2, -0.3, -1.0])
    n /= np.linalg.norm(n)
    p0 = np.array([0.5, -0.2, 6.0])
    scene = Scene([plane(p0, n)])
    T = _pose([0.05, -0.1, 0.02], [0.3, 0.1, -0.5])
    rgb, depth = render(scene, K, T, H, W)
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    assert depth.shape == (H, W) and depth.dtype == np.float32
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    d_cam = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3) @ np.linalg.inv(K).T  # z = 1
    d_world = d_cam @ T[:3, :3].T
    t = (n @ (p0 - T[:3, 3])) / (d_world @ n)
    np.testing.assert_allclose(depth.reshape(-1), t, rtol=2e-5)
    # Textured (not a flat colour): features for optical flow.
    assert rgb.std() > 10


def test_miss_gives_nan_depth_and_background():
    K = default_intrinsics(40, 50)
    box = Box(centre=[0, 0, 5], half_size=[0.5, 0.5, 0.5])
    rgb, depth, ids = render(Scene([box], background_rgb=(1, 2, 3)), K, np.eye(4), 40, 50, return_ids=True)
    miss = ids < 0
    assert miss.any() and (~miss).any()
    assert np.all(np.isnan(depth[miss])) and np.all(np.isfinite(depth[~miss]))
    assert np.all(rgb[miss] == [1, 2, 3])
    # The front face (z = 4.5) is what the centre ray sees.
    assert depth[20, 25] == pytest.approx(4.5, rel=1e-5)


def test_box_point_projects_to_pixel_with_its_depth_and_colour():
    H, W = 120, 160
    K = default_intrinsics(H, W)
    R_box = Rotation.from_euler("zyx", [25, -15, 10], degrees=True).as_matrix()
    target = Box(centre=[0.4, -0.2, 4.0], half_size=[0.6, 0.5, 0.4], rotation=R_box,
                 color=(0.2, 0.8, 0.4), texture_amplitude=0.0)
    room = Box(centre=[0, 0, 0], half_size=[10, 10, 10], color=(0.5, 0.5, 0.5), seed=3)
    scene = Scene([room, target])
    T = _pose([0.02, 0.1, -0.03], [0.1, 0.05, -0.3])
    rgb, depth, ids = render(scene, K, T, H, W, return_ids=True)
    # Points on the box faces that look towards the camera.
    cam = T[:3, 3]
    checked = 0
    for axis in range(3):
        for sign in (-1, 1):
            normal = R_box[:, axis] * sign
            centre = target.centre + normal * target.half_size[axis]
            if normal @ (cam - centre) <= 0:
                continue
            uv, z = project_points(K, T, centre[None])
            u, v = np.rint(uv[0]).astype(int)
            assert 0 <= u < W and 0 <= v < H
            assert ids[v, u] == 1
            assert depth[v, u] == pytest.approx(z[0], rel=0.05)
            # Exact: the ray of pixel (u, v) meets the face plane at the rendered depth.
            d_world = T[:3, :3] @ np.linalg.inv(K) @ np.array([u, v, 1.0])
            t_face = normal @ (centre - cam) / (normal @ d_world)
            assert depth[v, u] == pytest.approx(t_face, rel=1e-5)
            np.testing.assert_array_equal(rgb[v, u], np.rint(np.array(target.color) * 255).astype(np.uint8))
            checked += 1
    assert checked >= 2
    assert (ids == 0).any()  # the room is visible around the box


def _reprojection_agreement(seq, i: int, j: int) -> tuple[float, float, float]:
    """Project frame i's depth into frame j: (agreeing fraction, median rel err, colour err / control)."""
    K = seq.K
    Ti, Tj = seq.world_T_camera[i], seq.world_T_camera[j]
    rgb_i, d_i = seq.render_frame(i)
    rgb_j, d_j = seq.render_frame(j)
    H, W = d_i.shape
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    pc = (np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3) @ np.linalg.inv(K).T) * d_i.reshape(-1, 1)
    pw = pc @ Ti[:3, :3].T + Ti[:3, 3]
    uv, z = project_points(K, Tj, pw)
    ui, vi = np.rint(uv[:, 0]).astype(int), np.rint(uv[:, 1]).astype(int)
    inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] <= W - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= H - 1)
    # Bilinear depth of frame j at the projected sub-pixel position (exact on smooth surfaces).
    x, y = uv[inside, 0], uv[inside, 1]
    x0 = np.clip(np.floor(x).astype(int), 0, W - 2)
    y0 = np.clip(np.floor(y).astype(int), 0, H - 2)
    fx, fy = x - x0, y - y0
    dj = ((d_j[y0, x0] * (1 - fx) + d_j[y0, x0 + 1] * fx) * (1 - fy)
          + (d_j[y0 + 1, x0] * (1 - fx) + d_j[y0 + 1, x0 + 1] * fx) * fy)
    zi = z[inside]
    visible = zi <= dj * 1.02  # not occluded in frame j
    rel = np.abs(dj[visible] - zi[visible]) / zi[visible]
    good = rel < 0.005
    src = rgb_i.reshape(-1, 3)[inside][visible][good].astype(float)
    col_err = np.abs(rgb_j[vi[inside], ui[inside]][visible][good].astype(float) - src)
    # Control: the same comparison 4 px off shows how much a wrong correspondence costs.
    ctrl = np.abs(rgb_j[vi[inside], np.clip(ui[inside] + 4, 0, W - 1)][visible][good].astype(float) - src)
    return float(np.mean(rel < 0.01)), float(np.median(rel)), float(np.mean(col_err)) / float(np.mean(ctrl))


@pytest.mark.parametrize("kind", SEQUENCE_KINDS)
def test_sequence_poses_consistent_with_depth(kind):
    seq = make_sequence(kind, 12, height=90, width=120, seed=1)
    assert len(seq) == 12
    np.testing.assert_allclose(seq.world_T_camera[0], np.eye(4), atol=1e-12)
    for T in seq.world_T_camera:
        np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-9)
    frac, med, col = _reprojection_agreement(seq, 0, 11)
    assert frac > 0.9, (kind, frac)
    assert med < 2e-3, (kind, med)
    assert col < 0.5, (kind, col)  # texture is fixed to surfaces: same colour from both views
    # The closed room: every pixel sees something.
    assert np.all(np.isfinite(seq.render_frame(11)[1]))


def test_sequence_motion_kinds_behave_as_named():
    fwd = make_sequence("forward", 31, height=30, width=40)
    rot = make_sequence("rotation", 31, height=30, width=40)
    sta = make_sequence("static", 31, height=30, width=40)
    orb = make_sequence("orbit", 31, height=30, width=40)
    # forward: moves mostly along the first camera's optical axis (+z).
    t = fwd.world_T_camera[-1, :3, 3]
    assert t[2] > 0.5 and abs(t[2]) > 2 * np.linalg.norm(t[:2])
    # rotation: no translation, yaw of ~45 deg/s * 1 s.
    assert np.abs(rot.world_T_camera[:, :3, 3]).max() < 1e-9
    ang = np.degrees(Rotation.from_matrix(rot.world_T_camera[-1, :3, :3]).magnitude())
    assert 40 < ang < 50
    # static: tiny jitter only.
    assert np.abs(sta.world_T_camera[:, :3, 3]).max() < 0.01
    # orbit: the camera centre stays ~3 m from the room centre axis while moving.
    assert np.linalg.norm(orb.world_T_camera[-1, :3, 3]) > 0.5
    # Stamps: start at 1 s, 1/fps apart.
    np.testing.assert_array_equal(np.diff(fwd.stamps_ns), round(1e9 / 30))
    assert fwd.stamps_ns[0] == 1_000_000_000


def test_to_frames_and_ground_truth_mapping():
    seq = make_sequence("orbit", 3, height=24, width=32)
    frames = seq.to_frames(with_depth=True, with_odometry=True)
    assert all(isinstance(f, Frame) for f in frames)
    f1 = frames[1]
    assert f1.stamp_ns == int(seq.stamps_ns[1])
    assert f1.image.shape == (24, 32, 3) and f1.image.dtype == np.uint8
    np.testing.assert_array_equal(f1.metric_depth, seq.render_frame(1)[1])
    np.testing.assert_allclose(f1.intrinsics, seq.K)
    np.testing.assert_allclose(f1.odometry_pose, seq.world_T_camera[1])
    plain = seq.to_frames()
    assert plain[0].metric_depth is None and plain[0].odometry_pose is None
    gt = seq.ground_truth()
    assert len(gt) == 3 and list(gt) == [int(s) for s in seq.stamps_ns]
    pose, K, depth = gt[int(seq.stamps_ns[2])]
    np.testing.assert_allclose(pose, seq.world_T_camera[2])
    with pytest.raises(KeyError):
        gt[12345]
    with pytest.raises(KeyError, match="not in this"):
        seq.index_of(12345)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown sequence kind"):
        make_sequence("spiral", 3)
    with pytest.raises(ValueError, match="num_frames"):
        make_sequence("orbit", 0)
    with pytest.raises(ValueError, match="4x4"):
        render(Scene([]), np.eye(3), np.eye(3), 4, 4)
    with pytest.raises(ValueError, match=">= 0"):
        Box(centre=[0, 0, 0], half_size=[-1, 1, 1])


@pytest.mark.parametrize("fps", [5.0, 30.0])
def test_loop_closes_one_lap_of_8m_with_valid_depth(fps):
    from vggt_ros.sim.sequences import LOOP_PERIMETER, LOOP_SPEED

    n = int(np.ceil(LOOP_PERIMETER / LOOP_SPEED * fps)) + 3
    seq = make_sequence("loop", n, height=48, width=64, fps=fps, seed=2)
    p = seq.world_T_camera[:, :3, 3]
    steps = np.linalg.norm(np.diff(p, axis=0), axis=1)
    assert 7.5 < steps.sum() < 8.5
    # Speed ~0.5 m/s (slightly less: the few extra frames stretch one lap over the sequence).
    assert 0.45 < steps.mean() * fps <= 0.5 + 1e-9
    # The last pose is the first one again: the last frames revisit the first frames' viewpoints.
    assert np.linalg.norm(p[-1] - p[0]) < 0.05
    rel = seq.world_T_camera[-1, :3, :3].T @ seq.world_T_camera[0, :3, :3]
    assert np.degrees(Rotation.from_matrix(rel).magnitude()) < 3.0
    # Halfway round the camera is well away from (and looking away from) the start.
    half = seq.world_T_camera[n // 2]
    assert np.linalg.norm(half[:3, 3]) > 1.8 and half[2, 2] < 0.0
    for i in range(0, n, max(1, n // 6)):
        assert np.all(np.isfinite(seq.render_frame(i)[1])), i
    assert np.all(np.isfinite(seq.render_frame(n - 1)[1]))


def test_loop_stops_at_one_lap_for_long_sequences():
    short = make_sequence("loop", 12, height=8, width=8, fps=30.0)
    long = make_sequence("loop", 400, height=8, width=8, fps=10.0)  # 40 s at 0.5 m/s would be 2.5 laps
    steps = np.linalg.norm(np.diff(long.world_T_camera[:, :3, 3], axis=0), axis=1)
    assert steps.sum() < 8.5 and np.linalg.norm(long.world_T_camera[-1, :3, 3]) < 1e-6
    np.testing.assert_allclose(np.linalg.norm(np.diff(short.world_T_camera[:, :3, 3], axis=0), axis=1) * 30,
                               0.5, rtol=0.05)
