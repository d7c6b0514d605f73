"""Unit tests of the streaming core's building blocks with small synthetic data of their own."""

from __future__ import annotations

import logging
import struct
import threading

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vggt_ros.core.alignment import ContextRef, align_window, poses_from_similarity, umeyama, weighted_median
from vggt_ros.core.config import PipelineConfig
from vggt_ros.core.frame_buffer import FrameBuffer
from vggt_ros.core.frames import REP103_R_OPTICAL, to_output_pose, world_T_optical_world
from vggt_ros.core.keyframes import KeyframeSelector
from vggt_ros.core.scale import MetricScale
from vggt_ros.core.tracks import TrackIdRegistry, grid_points, make_queries
from vggt_ros.core.types import Frame
from vggt_ros.core.world_map import WorldMap
from vggt_ros.prediction import Prediction, PreprocessInfo


def _img(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------- config
def test_config_defaults_and_validation() -> None:
    c = PipelineConfig()
    assert c.window_size == 8 and c.stride == 4 and c.num_context_frames == 4 and c.pose_graph
    with pytest.raises(ValueError, match="stride"):
        PipelineConfig(window_size=4, stride=4)
    with pytest.raises(ValueError, match="skip_policy"):
        PipelineConfig(skip_policy="drop_everything")
    with pytest.raises(ValueError, match="scale_source"):
        PipelineConfig(scale_source="gps")
    with pytest.raises(ValueError, match="base_T_camera"):
        PipelineConfig(base_T_camera=np.ones((4, 4)))
    with pytest.raises(ValueError, match="max_keyframe_gap"):
        PipelineConfig(min_keyframe_gap=5, max_keyframe_gap=2)


def test_config_from_params_flat_dict() -> None:
    b = np.eye(4)
    b[:3, 3] = [0.1, 0.0, 0.5]
    c = PipelineConfig.from_params({
        "window_size": 10, "stride": 3.0, "sim3_refine": "false", "voxel_size": 0,
        "base_T_camera": list(b.ravel()),
        "skip_policy": "keep_all", "not_a_core_param": 42,
    })
    assert c.window_size == 10 and c.stride == 3 and isinstance(c.stride, int)
    assert c.sim3_refine is False and c.voxel_size == 0.0 and c.skip_policy == "keep_all"
    np.testing.assert_allclose(c.base_T_camera, b)
    assert c.extra == {"not_a_core_param": 42}
    assert PipelineConfig.from_params({"base_T_camera": []}).base_T_camera is None
    with pytest.raises(ValueError, match="integer"):
        PipelineConfig.from_params({"window_size": 7.5})


# ---------------------------------------------------------------------------------------------- frames
def test_rep103_rotation_and_base() -> None:
    # optical z (forward) -> REP 103 x; optical x (right) -> -y (y is left); optical y (down) -> -z
    np.testing.assert_allclose(REP103_R_OPTICAL @ [0, 0, 1], [1, 0, 0])
    np.testing.assert_allclose(REP103_R_OPTICAL @ [1, 0, 0], [0, -1, 0])
    np.testing.assert_allclose(REP103_R_OPTICAL @ [0, 1, 0], [0, 0, -1])
    assert np.isclose(np.linalg.det(REP103_R_OPTICAL), 1.0)
    T = np.eye(4)
    T[:3, 3] = [0, 0, 2.0]  # camera moved 2 units forward
    out = to_output_pose(T, 0.5, world_T_optical_world("rep103"))
    np.testing.assert_allclose(out[:3, 3], [1.0, 0, 0])  # 1 m forward along REP 103 x
    base = np.eye(4)
    base[:3, :3] = REP103_R_OPTICAL  # camera optical in base: optical z = base x
    base[:3, 3] = [0.2, 0, 1.0]
    out = to_output_pose(T, 1.0, world_T_optical_world("optical", base))
    np.testing.assert_allclose(out[:3, 3], [2.2, 0, 1.0])


# ---------------------------------------------------------------------------------------------- buffer
def test_buffer_rejects_bad_input_with_counters(caplog: pytest.LogCaptureFixture) -> None:
    buf = FrameBuffer(4, 2, log_interval_s=60)
    assert buf.add_frame(Frame(100, _img()))
    with caplog.at_level(logging.WARNING):
        assert not buf.add_frame(Frame(100, _img()))  # duplicate
        assert not buf.add_frame(Frame(50, _img()))  # out of order
        assert not buf.add_frame(Frame(200, np.zeros((0, 0, 3), np.uint8)))
        assert not buf.add_frame(Frame(201, _img().astype(np.float32)))
        assert not buf.add_frame(Frame(202, _img()[..., 0]))
        assert not buf.add_frame(Frame(203, _img(60, 80)))  # size change
        assert not buf.add_frame(Frame(204, _img(), intrinsics=np.full((3, 3), np.nan)))
        assert not buf.add_frame(Frame(205, _img(), odometry_pose=np.eye(3)))
        assert not buf.add_frame(Frame(206, _img(60, 80)))  # size change again: rate-limited warning
    c = buf.counters.snapshot()
    assert c["rejected_duplicate_stamp"] == 1 and c["rejected_out_of_order"] == 1
    assert c["rejected_empty_image"] == 1 and c["rejected_bad_dtype"] == 1 and c["rejected_bad_channels"] == 1
    assert c["rejected_size_change"] == 2 and c["rejected_bad_intrinsics"] == 1
    assert c["rejected_bad_odometry_pose"] == 1 and c["rejected"] == 9 and c["accepted"] == 1
    assert sum("size_change" in r.getMessage() for r in caplog.records) == 1  # rate limited
    assert buf.add_frame(Frame(300, _img()))  # a later, valid frame still goes through


def test_buffer_keep_newest_skips_but_keeps_anchor() -> None:
    buf = FrameBuffer(4, 2, "keep_newest", recent_frames=0)
    for s in range(4):
        buf.add_frame(Frame(s, _img()))
    ctx, new = buf.take_window()
    assert ctx == [] and [f.stamp_ns for f in new] == [0, 1, 2, 3]
    for f in new:
        buf.mark_placed(f, is_keyframe=f.stamp_ns in (0, 3))
    for s in range(10, 20):  # slow inference: 10 frames arrive before the next request
        buf.add_frame(Frame(s, _img()))
    ctx, new = buf.take_window()
    assert [f.stamp_ns for f in new] == [18, 19]  # newest kept
    assert ctx[0].stamp_ns == 3 and [f.stamp_ns for f in ctx] == [3, 0]  # anchor = last keyframe first
    assert buf.counters.get("skipped") == 8
    assert buf.take_window() is None


def _buffer_with_keyframes_0_2_4(recent_frames: int) -> FrameBuffer:
    """Frames 0-5 placed (keyframes 0, 2, 4) and 6, 7 pending, in a 6-frame / stride-2 buffer."""
    buf = FrameBuffer(6, 2, "keep_all", recent_frames=recent_frames)
    for s in range(6):
        buf.add_frame(Frame(s, _img()))
    _ctx, new = buf.take_window()
    for f in new:
        buf.mark_placed(f, is_keyframe=f.stamp_ns in (0, 2, 4))
    for s in (6, 7):
        buf.add_frame(Frame(s, _img()))
    return buf


def test_buffer_context_recent_frames_first() -> None:
    """The newest placed frames come before older keyframes, so each frame is predicted again."""
    buf = _buffer_with_keyframes_0_2_4(recent_frames=2)
    ctx, _ = buf.take_window(covisible=lambda f, n: f.stamp_ns >= 2)
    # latest keyframe 4, the 2 newest others (5, 3), then older keyframes (2); anchor: keyframe 2
    assert [f.stamp_ns for f in ctx] == [2, 3, 4, 5]


def test_buffer_anchor_is_oldest_covisible_keyframe() -> None:
    buf = _buffer_with_keyframes_0_2_4(recent_frames=0)
    asked = []

    def covisible(f: Frame, num_new: int) -> bool:
        asked.append((f.stamp_ns, num_new))
        return f.stamp_ns >= 2  # keyframe 0 no longer sees the new view
    ctx, new = buf.take_window(covisible=covisible)
    assert [f.stamp_ns for f in new] == [6, 7]
    assert [f.stamp_ns for f in ctx] == [2, 0, 4, 5]  # oldest covisible keyframe first, rest in time order
    assert asked == [(0, 2), (2, 2)]  # oldest first, stops at the first covisible one
    buf.add_frame(Frame(8, _img()))
    buf.add_frame(Frame(9, _img()))
    ctx, _ = buf.take_window(covisible=lambda f, n: False)
    assert ctx[0].stamp_ns == 4  # nothing covisible: the latest keyframe anchors


def test_buffer_keep_all_bounded() -> None:
    buf = FrameBuffer(4, 2, "keep_all", max_pending_frames=5)
    for s in range(8):
        buf.add_frame(Frame(s, _img()))
    assert buf.pending_count() == 5 and buf.counters.get("dropped_queue_full") == 3
    _, new = buf.take_window()
    assert [f.stamp_ns for f in new] == [3, 4, 5, 6]


def test_buffer_thread_safe() -> None:
    buf = FrameBuffer(4, 2, "keep_all", max_pending_frames=100000)
    got: list[int] = []
    stop = threading.Event()

    def consumer() -> None:
        while not stop.is_set() or buf.pending_count() >= 2:
            w = buf.take_window()
            if w is not None:
                got.extend(f.stamp_ns for f in w[1])
                for f in w[1]:
                    buf.mark_placed(f, True)

    th = threading.Thread(target=consumer)
    th.start()
    img = _img()
    for s in range(3000):
        buf.add_frame(Frame(s, img))
    stop.set()
    th.join()
    assert got == sorted(got) and len(set(got)) == len(got) and len(got) >= 2996


# ---------------------------------------------------------------------------------------------- keyframes
def test_keyframes_flow_rotation_and_gaps() -> None:
    rng = np.random.default_rng(1)
    base = (rng.random((120, 160)) * 255).astype(np.uint8)
    import cv2

    base = cv2.GaussianBlur(base, (5, 5), 1.5)
    rgb = np.repeat(base[..., None], 3, 2)
    sel = KeyframeSelector(min_parallax_px=10, min_rotation_deg=5, min_translation=0.1, min_gap=1, max_gap=5,
                           flow_width=160)
    assert sel.decide(rgb, np.eye(4)).is_keyframe  # first frame
    sel.set_keyframe(rgb, np.eye(4), median_depth=2.0)
    same = sel.decide(rgb, np.eye(4))
    assert not same.is_keyframe and same.parallax_px < 0.5
    shifted = np.roll(rgb, 15, axis=1)  # the view moved 15 px (e.g. a pure rotation)
    d = sel.decide(shifted, np.eye(4))
    assert d.is_keyframe and d.reason == "parallax" and 13 < d.parallax_px < 17
    rot = np.eye(4)
    rot[:3, :3] = Rotation.from_euler("y", 6, degrees=True).as_matrix()
    d = sel.decide(rgb, rot)
    assert d.is_keyframe and d.reason == "rotation"
    tr = np.eye(4)
    tr[:3, 3] = [0.3, 0, 0]  # 0.15 of the median depth
    assert sel.decide(rgb, tr).reason == "translation"
    for _ in range(4):
        assert not sel.decide(rgb, np.eye(4)).is_keyframe
        sel.advance()
    assert sel.decide(rgb, np.eye(4)).reason == "max_gap"


# ---------------------------------------------------------------------------------------------- alignment
def _synthetic_window(S: int, scale: float, hw: tuple[int, int] = (30, 40), seed: int = 0):
    """World cameras + a plane-ish depth; returns world poses (world units) and a window prediction."""
    rng = np.random.default_rng(seed)
    h, w = hw
    K = np.array([[40.0, 0, w / 2], [0, 40.0, h / 2], [0, 0, 1]])
    poses = []
    for i in range(S):
        T = np.eye(4)
        T[:3, :3] = Rotation.from_euler("xyz", rng.normal(0, 5, 3), degrees=True).as_matrix()
        T[:3, 3] = rng.normal(0, 0.2, 3) + [0.1 * i, 0, 0]
        poses.append(T)
    poses = np.stack(poses)
    depth_world = (3.0 + rng.random((S, h, w))).astype(np.float32)
    win_T = np.linalg.inv(poses[0]) @ poses  # window = frame 0, world units
    win_T[:, :3, 3] /= scale  # window units
    E = np.linalg.inv(win_T)[:, :3, :]
    info = PreprocessInfo((h, w), (h, w), (1.0, 1.0), (0.0, 0.0))
    pred = Prediction(E.astype(np.float32), np.repeat(K[None], S, 0).astype(np.float32),
                      depth_world / scale, np.full((S, h, w), 5.0, np.float32), [info] * S)
    return poses, depth_world, K, pred


@pytest.mark.parametrize("refine", [False, True])
def test_alignment_recovers_scale_and_poses(refine: bool) -> None:
    poses, depth, K, pred = _synthetic_window(6, scale=3.7)
    anchor = ContextRef(0, poses[0], depth[0], np.full(depth[0].shape, 5.0), K)
    other = ContextRef(1, poses[1], depth[1], np.full(depth[1].shape, 5.0), K)
    al = align_window(pred, anchor, [other], sim3_refine=refine)
    assert al.accepted and abs(al.scale - 3.7) < 1e-4 and al.residual < 1e-4
    np.testing.assert_allclose(al.camera_poses(pred.extrinsics), poses, atol=1e-4)


def test_alignment_averages_all_context_frames_and_drops_outlier() -> None:
    """The placement is the weighted mean over context frames, not the anchor alone; outliers dropped."""
    scale = 2.0
    poses, depth, K, pred = _synthetic_window(6, scale=scale)

    def ref(i: int, err_deg: float, weight: float = 1.0) -> ContextRef:
        T = poses[i].copy()  # stored pose off by a world rotation about z
        T[:3, :3] = Rotation.from_euler("z", err_deg, degrees=True).as_matrix() @ T[:3, :3]
        return ContextRef(i, T, depth[i], np.full(depth[i].shape, 5.0), K, weight)

    def rot_err(al) -> float:
        R = al.camera_poses(pred.extrinsics)[0][:3, :3]
        return float(np.degrees(Rotation.from_matrix(poses[0][:3, :3].T @ R).magnitude()))

    # anchor +1 deg, two frames -1 / 0 deg, one frame 20 deg off (dropped): the mean is exact
    refs = [ref(0, 1.0), ref(1, -1.0), ref(2, 0.0), ref(3, 20.0)]
    al = align_window(pred, refs[0], refs[1:], max_residual=1.0)
    assert al.accepted and abs(al.scale - scale) < 1e-3
    assert rot_err(al) < 0.05
    anchor_only = align_window(pred, refs[0], refs[1:], max_residual=1.0, sim3_refine=False)
    assert abs(rot_err(anchor_only) - 1.0) < 0.05
    # weights: well-established frames count more (3:1 -> 0.5 deg)
    al = align_window(pred, ref(0, 1.0, 3.0), [ref(1, -1.0, 1.0)], max_residual=1.0)
    assert abs(rot_err(al) - 0.5) < 0.05


def test_alignment_rejects_inconsistent_window() -> None:
    poses, depth, K, pred = _synthetic_window(6, scale=2.0)
    pred.depth[1] *= np.random.default_rng(3).uniform(0.2, 3.0, pred.depth[1].shape).astype(np.float32)
    pred.extrinsics[1, :3, 3] += 5.0
    refs = [ContextRef(i, poses[i], depth[i], np.full(depth[i].shape, 5.0), K) for i in range(2)]
    al = align_window(pred, refs[0], refs[1:], max_residual=0.1)
    assert not al.accepted and al.reason == "residual_too_large" and al.residual > 0.1
    few = align_window(pred, refs[0], [], min_valid_pixels=10**6)
    assert not few.accepted and few.reason == "insufficient_overlap"


def test_umeyama_and_weighted_median() -> None:
    rng = np.random.default_rng(0)
    src = rng.normal(size=(100, 3))
    R = Rotation.random(random_state=1).as_matrix()
    dst = 2.5 * src @ R.T + [1, 2, 3]
    s, R1, t = umeyama(src, dst)
    assert abs(s - 2.5) < 1e-9 and np.allclose(R1, R) and np.allclose(t, [1, 2, 3])
    assert weighted_median(np.array([1.0, 2.0, 100.0]), np.array([1.0, 5.0, 1.0])) == 2.0
    E = np.eye(4)[None, :3, :].repeat(2, 0)
    E[1, :3, 3] = [0, 0, -1]  # camera 1 one unit forward
    out = poses_from_similarity(2.0, np.eye(3), np.zeros(3), E)
    np.testing.assert_allclose(out[1, :3, 3], [0, 0, 2.0])


# ---------------------------------------------------------------------------------------------- scale
def test_metric_scale_sources() -> None:
    assert not MetricScale("none").is_metric and MetricScale("none").scale == 1.0
    f = MetricScale("fixed", fixed_scale=0.25)
    assert f.is_metric and f.scale == 0.25
    d = MetricScale("depth", freeze_samples=3, min_pixels=10)
    world = np.random.default_rng(0).uniform(1, 2, 500)
    assert not d.is_metric
    d.add_depth(world * 0.5, world)
    d.add_depth(world * 0.6, world)
    d.add_depth(world * 0.5, world)
    assert d.is_metric and abs(d.scale - 0.5) < 1e-9 and d.frozen
    d.add_depth(world * 9.0, world)  # frozen: ignored
    assert abs(d.scale - 0.5) < 1e-9
    o = MetricScale("odometry", min_motion=0.1)
    for k in range(5):
        Tw, To = np.eye(4), np.eye(4)
        Tw[:3, 3] = [k * 0.1, 0, 0]  # world units
        To[:3, 3] = [k * 0.3, 0, 0]  # metres
        o.add_odometry_keyframe(Tw, To)
    assert o.is_metric and abs(o.scale - 3.0) < 1e-9


# ---------------------------------------------------------------------------------------------- world map
def test_world_map_voxels_bound_and_ply(tmp_path) -> None:
    m = WorldMap(voxel_size=0.1, max_points=1000)
    pts = np.array([[0.01, 0.01, 0.01], [0.02, 0.03, 0.04], [0.5, 0.5, 0.5], [np.nan, 0, 0]], np.float32)
    cols = np.array([[10, 0, 0], [20, 0, 0], [0, 255, 0], [1, 1, 1]], np.uint8)
    assert m.add(pts, cols) == 2 and len(m) == 2 and m.rejected == 1
    assert m.add(pts[:2] + 0.01, cols[:2]) == 0  # same voxel again
    i = int(np.argmin(m.points[:, 0]))
    assert m.colors[i, 0] == 15  # mean colour of the two points in the voxel
    rng = np.random.default_rng(0)
    for _ in range(20):
        m.add(rng.uniform(-10, 10, (500, 3)), rng.integers(0, 255, (500, 3)))
    assert len(m) == 1000 and m.dropped > 0
    assert m.nbytes <= 1000 * (12 + 3 + 8 + 8)
    newest = rng.uniform(20, 30, (10, 3))
    m.add(newest, np.zeros((10, 3)))
    assert np.all(np.any(np.all(np.abs(m.points[:, None] - newest[None].astype(np.float32)) < 0.1, -1), 0))
    path = tmp_path / "map.ply"
    m.save_ply(path)
    raw = path.read_bytes()
    head, body = raw.split(b"end_header\n", 1)
    assert b"binary_little_endian" in head and f"element vertex {len(m)}".encode() in head
    assert len(body) == len(m) * 15
    x, y, z, r, g, b = struct.unpack("<fffBBB", body[:15])
    np.testing.assert_allclose([x, y, z], m.points[0]) and (r, g, b) == tuple(m.colors[0])
    m.rescale(2.0)
    assert len(m) <= 1000 and np.nanmax(np.abs(m.points)) > 40


def _naive_world_map(batches, voxel: float, max_points: int):
    """Per-point dict reference of WorldMap's voxel semantics: batch mean per voxel, known voxels only
    refresh their tick, least recently seen dropped beyond max_points (ties: lowest cell key)."""
    import math

    vox: dict = {}
    for tick, (pts, cols) in enumerate(batches, start=1):
        batch: dict = {}
        for p, c in zip(pts.astype(np.float32).tolist(), cols.tolist(), strict=True):
            cell = [math.floor(v / voxel) if math.isfinite(v) else None for v in p]
            if None in cell or any(abs(k) >= (1 << 20) - 1 for k in cell):
                continue
            acc = batch.setdefault(tuple(cell), [0.0] * 6 + [0])
            for k in range(3):
                acc[k] += p[k]
                acc[3 + k] += c[k]
            acc[6] += 1
        for key, acc in batch.items():
            if key in vox:
                vox[key][2] = tick
            else:
                n = acc[6]
                vox[key] = [[a / n for a in acc[:3]], [round(a / n) for a in acc[3:6]], tick]
        if len(vox) > max_points:
            for key in sorted(vox, key=lambda k: (vox[k][2], k))[:len(vox) - max_points]:
                del vox[key]
    return vox


def test_world_map_matches_per_point_reference() -> None:
    rng = np.random.default_rng(5)
    voxel, bound = 0.25, 150
    batches = []
    for step in range(8):
        n = int(rng.integers(0, 120))
        pts = rng.normal(step * 0.2, 1.0, (n, 3))
        if n:
            pts[rng.uniform(size=n) < 0.05, 1] = np.nan
            pts[rng.uniform(size=n) < 0.03, 2] = 1e9  # outside the representable cell range
        batches.append((pts, rng.integers(0, 256, (n, 3)).astype(np.uint8)))
    m = WorldMap(voxel_size=voxel, max_points=bound)
    for pts, cols in batches:
        m.add(pts, cols)
    ref = _naive_world_map(batches, voxel, bound)
    assert len(m) == len(ref) and m.dropped > 0 and m.rejected > 0
    cells = np.floor(m.points.astype(np.float64) / voxel).astype(np.int64)
    for cell, p, c in zip(cells.tolist(), m.points, m.colors, strict=True):
        rp, rc, _ = ref[tuple(cell)]
        np.testing.assert_allclose(p, rp, rtol=1e-6, atol=1e-6)
        assert list(c) == rc


def test_world_map_grouping_order_is_a_stable_key_sort() -> None:
    """The radix grouping (one or two 16-bit passes over a batch-local key) and the argsort fallback
    for wide batches all return the stable order of the packed keys."""
    from vggt_ros.core import world_map as wm

    rng = np.random.default_rng(12)
    for scale, n in ((3, 5000), (40, 8000), (300, 8000), (1 << 19, 3000)):  # spans: 2^8, 2^19, 2^26, >2^32
        cells = rng.integers(-scale, scale, (3, n))
        cells[:, : n // 4] = cells[:, n // 4: n // 2]  # many repeated voxels
        keys = wm._pack_cells(cells)
        order = wm._stable_key_order(cells, keys)
        np.testing.assert_array_equal(order, np.argsort(keys, kind="stable"))
    c = np.array([[5], [-7], [1 << 19]])  # a single point
    assert wm._stable_key_order(c, wm._pack_cells(c)).tolist() == [0]


def test_world_map_radix_and_fallback_grouping_build_the_same_map(monkeypatch) -> None:
    """Frame-like batches (radix path), wide batches (fallback), NaN and out-of-range points, batches
    larger and smaller than the map (both lookup directions): the map equals the per-point reference
    exactly (sums run in input order in both), and forcing the fallback changes no bit."""
    from vggt_ros.core import world_map as wm

    rng = np.random.default_rng(13)
    voxel = 0.05
    batches = []
    for step in range(10):
        n = int(rng.integers(1, 3000)) if step % 3 else int(rng.integers(3000, 6000))
        spread = (0.1, 4.0, 2e4)[step % 3]  # one pass, two passes, fallback (span > 2^32)
        pts = rng.normal(0.1 * step, spread, (n, 3)).astype(np.float32)
        pts[: n // 3] = pts[n // 3: 2 * (n // 3)] + rng.uniform(-0.01, 0.01, (n // 3, 3))  # shared voxels
        if step == 4:  # a structured plane: many points per voxel
            g = np.stack(np.meshgrid(np.arange(60), np.arange(50)), -1).reshape(-1, 2) * 0.013
            pts = np.column_stack([g, np.full(len(g), 1.5)]).astype(np.float32)
            n = len(pts)
        pts[rng.uniform(size=n) < 0.03, 0] = np.nan
        pts[rng.uniform(size=n) < 0.02, 2] = 1e9  # outside the representable cell range
        batches.append((pts, rng.integers(0, 256, (n, 3)).astype(np.uint8)))
    bound = 6000
    maps = {}
    for mode in ("radix", "fallback"):
        monkeypatch.setattr(wm, "_RADIX_MAX_SPAN", 1 << 32 if mode == "radix" else 0)
        m = WorldMap(voxel_size=voxel, max_points=bound)
        maps[mode] = m
        for pts, cols in batches:
            m.add(pts, cols)
    a, b = maps["radix"], maps["fallback"]
    for name in ("_keys", "_points", "_colors", "_seen"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.rejected, a.dropped) == (b.rejected, b.dropped) and a.rejected > 0 and a.dropped > 0
    assert np.all(np.diff(a._keys) > 0)  # sorted, unique
    ref = _naive_world_map(batches, voxel, bound)
    assert len(a) == len(ref)
    cells = np.floor(a.points.astype(np.float64) / voxel).astype(np.int64)
    for cell, p, c in zip(cells.tolist(), a.points, a.colors, strict=True):
        rp, rc, _ = ref[tuple(cell)]
        np.testing.assert_array_equal(p, np.array(rp, np.float32))
        assert list(c) == rc


# ---------------------------------------------------------------------------------------------- tracks
def test_track_queries_and_persistent_ids() -> None:
    g = grid_points((48, 64), 12)
    assert g.shape == (12, 2) and g[:, 0].min() > 0 and g[:, 0].max() < 64
    reg = TrackIdRegistry(match_px=3.0)
    q0 = make_queries(_img(), 12, "grid")
    ids0 = reg.assign(100, q0)
    assert list(ids0) == list(range(12))
    pos = np.stack([q0, q0 + [5, 0], q0 + [10, 0]])
    vis = np.ones((3, 12), np.float32)
    vis[2, :4] = 0  # four tracks not visible in the frame that becomes the next anchor
    reg.update([100, 200, 300], ids0, pos, vis)
    carried = reg.carried_positions(300)
    assert len(carried) == 8
    q1 = make_queries(_img(), 12, "corners", carried)
    ids1 = reg.assign(300, q1)
    np.testing.assert_array_equal(ids1[:8], ids0[4:])  # continued
    assert np.all(ids1[8:] >= 12)  # fresh ids
    assert np.all(reg.assign(999, q1) >= 16)  # anchor not in the last window: all fresh
