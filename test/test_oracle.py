"""Oracle predictor: ground truth shaped like a VGGT prediction (window frame, scale, network size)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vggt_ros.core.oracle import OraclePredictor, _official_preprocess_info, preprocess_info
from vggt_ros.core.types import Predictor
from vggt_ros.prediction import Prediction
from vggt_ros.sim.raycaster import project_points
from vggt_ros.sim.sequences import make_sequence

H0, W0 = 240, 320


@pytest.fixture(scope="module")
def orbit():
    return make_sequence("orbit", 16, height=H0, width=W0, seed=2)


def _window(seq, idx):
    frames = seq.to_frames(indices=idx)
    return [f.image for f in frames], [f.stamp_ns for f in frames]


def _inv(T):
    return np.linalg.inv(T)


@pytest.mark.parametrize(
    ("hw", "mode", "net_hw", "offset"),
    [
        ((480, 640), "crop", (392, 518), (0, 0)),
        ((640, 480), "crop", (518, 518), (0, -84)),
        ((1080, 1920), "crop", (294, 518), (0, 0)),
        ((57, 74), "crop", (392, 518), (0, 0)),  # 28.5 patches -> 28 (round half to even)
        ((1000, 1000), "crop", (518, 518), (0, 0)),
        ((480, 640), "pad", (518, 518), (0, 63)),
        ((640, 480), "pad", (518, 518), (63, 0)),
    ],
)
def test_official_preprocess_sizing(hw, mode, net_hw, offset):
    info = _official_preprocess_info(hw, mode, 518)
    assert info.network_hw == net_hw
    assert info.offset_xy == pytest.approx(offset)
    # The project's implementation (when present) must agree with the official sizing.
    other = preprocess_info(hw, mode, 518)
    assert other.network_hw == info.network_hw
    np.testing.assert_allclose(other.scale_xy, info.scale_xy, rtol=1e-9)
    np.testing.assert_allclose(other.offset_xy, info.offset_xy, atol=1e-9)


def test_noise_free_prediction_matches_ground_truth(orbit):
    idx = [3, 6, 9, 12]
    images, keys = _window(orbit, idx)
    oracle = OraclePredictor(orbit)
    assert isinstance(oracle, Predictor)
    pred = oracle.predict(images, frame_keys=keys)
    assert isinstance(pred, Prediction)
    S = len(idx)
    hn, wn = 392, 518
    assert pred.extrinsics.shape == (S, 3, 4) and pred.intrinsics.shape == (S, 3, 3)
    assert pred.depth.shape == (S, hn, wn) and pred.depth_conf.shape == (S, hn, wn)
    assert pred.world_points.shape == (S, hn, wn, 3) and pred.images.shape == (S, hn, wn, 3)
    assert pred.images.dtype == np.uint8 and pred.depth.dtype == np.float32
    assert len(pred.preprocess) == S and pred.preprocess[0].network_hw == (hn, wn)

    # VGGT scale normalisation: mean distance of the window's points from camera 0 is 1.
    valid = pred.depth > 0
    assert valid.all()  # closed room: every pixel has depth
    assert np.linalg.norm(pred.world_points[valid], axis=-1).mean() == pytest.approx(1.0, rel=1e-4)
    s = oracle.last_scale

    # Poses: camera-from-window = inv(gt_i) @ gt_0, translation scaled by s.
    gt0 = orbit.world_T_camera[idx[0]]
    for k, i in enumerate(idx):
        cam_T_win = _inv(orbit.world_T_camera[i]) @ gt0
        np.testing.assert_allclose(pred.extrinsics[k, :, :3], cam_T_win[:3, :3], atol=1e-5)
        np.testing.assert_allclose(pred.extrinsics[k, :, 3], cam_T_win[:3, 3] * s, atol=1e-5)
    np.testing.assert_allclose(pred.extrinsics[0], np.eye(4)[:3], atol=1e-6)

    # Intrinsics at the network resolution: 320 -> 518 is a pure scale here (240 -> 392 rows, x1.62).
    K = orbit.K
    sx, sy = 518 / W0, 392 / H0
    np.testing.assert_allclose(pred.intrinsics[0, 0, 0], K[0, 0] * sx, rtol=1e-6)
    np.testing.assert_allclose(pred.intrinsics[0, 1, 1], K[1, 1] * sy, rtol=1e-6)
    np.testing.assert_allclose(pred.intrinsics[0, 0, 2], (K[0, 2] + 0.5) * sx - 0.5, rtol=1e-6)

    # Depth = ground truth (nearest pixel) x s: check at network pixels that map to exact original pixels.
    d_gt = orbit.render_frame(idx[2])[1]
    u_net = np.array([10, 200, 400])
    v_net = np.array([5, 150, 380])
    uv_orig = pred.preprocess[2].network_to_original_pixels(np.stack([u_net, v_net], 1))
    ui, vi = np.rint(uv_orig).astype(int).T
    np.testing.assert_allclose(pred.depth[2, v_net, u_net], d_gt[vi, ui] * s, rtol=1e-5)
    np.testing.assert_array_equal(pred.depth_conf[valid], 10.0)


def test_depth_and_points_consistent_with_extrinsics(orbit):
    images, keys = _window(orbit, [0, 5, 10])
    pred = OraclePredictor(orbit, random_scale=(2.0, 3.0), seed=4).predict(images, frame_keys=keys)
    # world_points == unproject(depth, K, extrinsics) for every frame.
    for k in range(3):
        E, K, d = pred.extrinsics[k].astype(np.float64), pred.intrinsics[k].astype(np.float64), pred.depth[k]
        h, w = d.shape
        u, v = np.meshgrid(np.arange(w), np.arange(h))
        pc = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T * d[..., None]
        pw = (pc - E[:, 3]) @ E[:, :3]
        np.testing.assert_allclose(pred.world_points[k], pw, atol=2e-4 * np.abs(pw).max())
    # Frame 2's points seen from frame 0 land where frame 0 sees the same depth.
    pts = pred.world_points[2].reshape(-1, 3).astype(np.float64)
    E0 = pred.extrinsics[0].astype(np.float64)
    pc0 = pts @ E0[:, :3].T + E0[:, 3]
    uvw = pc0 @ pred.intrinsics[0].astype(np.float64).T
    uv = uvw[:, :2] / uvw[:, 2:3]
    ui, vi = np.rint(uv).astype(int).T
    h, w = pred.depth.shape[1:]
    inside = (pc0[:, 2] > 0) & (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
    assert inside.mean() > 0.3
    d0 = pred.depth[0][vi[inside], ui[inside]]
    rel = np.abs(d0 - pc0[inside, 2]) / pc0[inside, 2]
    assert np.mean(rel < 0.02) > 0.85
    # The random window scale changes units, not geometry: the mean point distance is in [2, 3].
    m = np.linalg.norm(pred.world_points[pred.depth > 0], axis=-1).mean()
    assert 2.0 <= m <= 3.0


def test_tracks_land_at_ground_truth_reprojection(orbit):
    idx = [0, 4, 8, 12]
    images, keys = _window(orbit, idx)
    # Scene points on object surfaces: take frame 0 pixels, their depth, and the world points.
    d0 = orbit.render_frame(idx[0])[1]
    q = np.array([[40.0, 60.0], [160.0, 120.0], [250.5, 170.25], [300.0, 30.0]])
    # Exact 3D points from the analytic ray + depth at integer pixels (queries 0, 1, 3).
    pred = OraclePredictor(orbit).predict(images, query_points=q, frame_keys=keys)
    assert pred.tracks.shape == (4, 4, 2) and pred.track_vis.shape == (4, 4)
    assert pred.track_conf.shape == (4, 4)
    np.testing.assert_allclose(pred.query_points, pred.preprocess[0].original_to_network_pixels(q), atol=1e-4)
    np.testing.assert_allclose(pred.tracks[0], pred.query_points, atol=1e-4)
    Kinv = np.linalg.inv(orbit.K)
    for n in (0, 1, 3):
        u, v = q[n].astype(int)
        Xc = Kinv @ np.array([u, v, 1.0]) * d0[v, u]
        Xw = orbit.world_T_camera[idx[0]][:3, :3] @ Xc + orbit.world_T_camera[idx[0]][:3, 3]
        for k, i in enumerate(idx):
            uv, z = project_points(orbit.K, orbit.world_T_camera[i], Xw[None])
            expected = pred.preprocess[k].original_to_network_pixels(uv)[0]
            if 0 <= uv[0, 0] < W0 - 1 and 0 <= uv[0, 1] < H0 - 1:
                np.testing.assert_allclose(pred.tracks[k, n], expected, atol=2e-3)
                # Visible unless something is in front of it.
                seen = orbit.render_frame(i)[1][int(round(uv[0, 1])), int(round(uv[0, 0]))]
                assert pred.track_vis[k, n] == float(seen >= z[0] * 0.97)
    assert pred.track_conf.min() == 1.0  # all queries have depth


def test_track_visibility_off_image_and_invalid_query():
    seq = make_sequence("rotation", 31, height=H0, width=W0)
    images, keys = _window(seq, [0, 30])  # 45 deg yaw between the two
    q = np.array([[5.0, 120.0], [315.0, 120.0], [-50.0, 10.0]])
    pred = OraclePredictor(seq).predict(images, query_points=q, frame_keys=keys)
    # A point near one image edge leaves the image after a 45 deg turn; one near the other stays.
    assert pred.track_vis[0, :2].tolist() == [1.0, 1.0]
    assert sorted(pred.track_vis[1, :2].tolist()) == [0.0, 1.0]
    # A query outside the image has no depth: no confidence, not visible.
    assert pred.track_conf[:, 2].max() == 0.0 and pred.track_vis[:, 2].max() == 0.0
    assert np.all(np.isfinite(pred.tracks))


def test_unknown_key_and_bad_input_errors(orbit):
    images, keys = _window(orbit, [0, 1])
    oracle = OraclePredictor(orbit)
    with pytest.raises(KeyError, match="no ground truth for frame key 42"):
        oracle.predict(images, frame_keys=[keys[0], 42])
    with pytest.raises(ValueError, match="frame_keys"):
        oracle.predict(images)
    with pytest.raises(ValueError, match="2 images but 1 frame keys"):
        oracle.predict(images, frame_keys=keys[:1])
    with pytest.raises(ValueError, match="image resolution"):
        oracle.predict([images[0][:100], images[1]], frame_keys=keys)
    with pytest.raises(ValueError, match="random_scale"):
        OraclePredictor(orbit, random_scale=(0.0, 1.0))
    with pytest.raises(TypeError):
        OraclePredictor([1, 2, 3])


def test_from_gt_arrays_equals_sequence_oracle(orbit):
    idx = [2, 7]
    images, keys = _window(orbit, idx)
    arr = OraclePredictor.from_gt_arrays(
        orbit.stamps_ns, orbit.world_T_camera, orbit.K, orbit.depth, random_scale=(0.5, 2.0), seed=9)
    ref = OraclePredictor.from_sequence(orbit, random_scale=(0.5, 2.0), seed=9)
    a = arr.predict(images, frame_keys=keys)
    b = ref.predict(images, frame_keys=keys)
    np.testing.assert_allclose(a.extrinsics, b.extrinsics)
    np.testing.assert_allclose(a.depth, b.depth)
    with pytest.raises(ValueError, match="poses must be"):
        OraclePredictor.from_gt_arrays(orbit.stamps_ns, orbit.world_T_camera[:3], orbit.K, orbit.depth)


def test_noise_is_seeded_and_has_the_requested_size(orbit):
    idx = list(range(0, 16))
    images, keys = _window(orbit, idx)
    kw = dict(pose_noise_rot_deg=2.0, pose_noise_trans=0.05, depth_noise=0.1, seed=3)
    a = OraclePredictor(orbit, **kw).predict(images, frame_keys=keys)
    b = OraclePredictor(orbit, **kw).predict(images, frame_keys=keys)
    clean = OraclePredictor(orbit).predict(images, frame_keys=keys)
    np.testing.assert_array_equal(a.extrinsics, b.extrinsics)  # deterministic per (seed, window)
    np.testing.assert_allclose(a.extrinsics[0], clean.extrinsics[0], atol=1e-6)  # frame 0 stays exact
    dR = np.einsum("nij,nkj->nik", a.extrinsics[1:, :, :3], clean.extrinsics[1:, :, :3])
    ang = Rotation.from_matrix(dR).magnitude()
    assert 0.8 < np.degrees(np.sqrt(np.mean(ang**2))) < 3.5
    valid = clean.depth > 0
    rel = a.depth[valid] / clean.depth[valid] - 1
    assert rel.std() == pytest.approx(0.1, rel=0.05)
    c = OraclePredictor(orbit, **{**kw, "seed": 4}).predict(images, frame_keys=keys)
    assert not np.allclose(a.extrinsics, c.extrinsics)


def test_pad_mode_marks_padding_invalid():
    seq = make_sequence("static", 2, height=H0, width=W0)
    images, keys = _window(seq, [0, 1])
    pred = OraclePredictor(seq, preprocess_mode="pad").predict(images, frame_keys=keys)
    assert pred.depth.shape == (2, 518, 518)
    x0, y0, x1, y1 = pred.preprocess[0].valid_network_box()
    assert (x0, y0, x1, y1) == (0, 63, 518, 455)
    assert np.all(pred.depth[:, :y0] == 0) and np.all(pred.depth_conf[:, :y0] == 1.0)
    assert np.all(pred.depth[:, y0:y1] > 0)
    assert np.all(pred.images[:, :y0] == 255)  # white padding like the official loader
