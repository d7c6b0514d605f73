"""End-to-end tests of StreamingPipeline on synthetic sequences with the oracle predictor."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vggt_ros.core.config import PipelineConfig
from vggt_ros.core.frames import REP103_R_OPTICAL
from vggt_ros.core.oracle import OraclePredictor
from vggt_ros.core.pipeline import StreamingPipeline
from vggt_ros.core.types import Frame, WindowOutput
from vggt_ros.core.window_types import WindowJob
from vggt_ros.eval.metrics import ate
from vggt_ros.prediction import Prediction
from vggt_ros.sim.sequences import make_sequence

H, W, NET = 96, 128, 126  # small images, network input 126 wide keeps the oracle fast
ROT_NOISE_DEG, TRANS_NOISE, DEPTH_NOISE = 0.5, 0.01, 0.02


def _oracle(seq, **kw) -> OraclePredictor:
    args = dict(pose_noise_rot_deg=ROT_NOISE_DEG, pose_noise_trans=TRANS_NOISE, depth_noise=DEPTH_NOISE,
                random_scale=(0.5, 2.0), target_size=NET, seed=7)
    args.update(kw)
    return OraclePredictor(seq, **args)


def _per_window_noise_m(seq, frames: Sequence[Frame], window: int = 8) -> float:
    """RMS position noise the oracle puts on one frame (metres): sqrt(3) * sigma * mean point distance."""
    clean = OraclePredictor(seq, target_size=NET)
    dists = []
    for i in range(0, len(frames) - window, window):
        chunk = frames[i:i + window]
        clean.predict([f.image for f in chunk], None, [f.stamp_ns for f in chunk])
        dists.append(1.0 / clean.last_scale)
    return float(np.sqrt(3.0) * TRANS_NOISE * np.mean(dists))


def _run(pipe: StreamingPipeline, frames: Sequence[Frame], predictor, every: int = 1) -> list[WindowOutput]:
    """Stream frames; ask for a window only every ``every`` frames (simulates slow inference)."""
    outs = []
    for k, f in enumerate(frames):
        pipe.add_frame(f)
        if (k + 1) % every == 0:
            job = pipe.next_window()
            while job is not None:
                outs.append(pipe.run_window(job, predictor))
                job = pipe.next_window() if every == 1 else None
    job = pipe.flush()
    if job is not None:
        outs.append(pipe.run_window(job, predictor))
    return outs


def _trajectory(outs: list[WindowOutput], seq) -> tuple[np.ndarray, np.ndarray, list[int]]:
    est = {fo.stamp_ns: fo.world_T_camera for o in outs for fo in o.frames}
    stamps = sorted(est)
    idx = [seq.index_of(s) for s in stamps]
    return np.stack([est[s] for s in stamps]), seq.world_T_camera[idx], stamps


def _rot_err_deg(E: np.ndarray, G: np.ndarray) -> np.ndarray:
    rel = np.einsum("nji,njk->nik", G[:, :3, :3], E[:, :3, :3])
    return np.degrees(np.linalg.norm(Rotation.from_matrix(rel).as_rotvec(), axis=1))


def _units_per_metre(outs: list[WindowOutput], oracle_scales: list[float]) -> float:
    return outs[0].scale * oracle_scales[0]


class _Recording:
    """Wraps the oracle to remember its per-window scale (window units per metre)."""

    def __init__(self, inner: OraclePredictor) -> None:
        self.inner = inner
        self.scales: list[float] = []

    def predict(self, images, query_points=None, frame_keys=None) -> Prediction:
        p = self.inner.predict(images, query_points, frame_keys)
        self.scales.append(self.inner.last_scale)
        return p


@pytest.mark.parametrize("kind", ["forward", "orbit"])
def test_stitched_trajectory_ate_within_noise(kind: str) -> None:
    seq = make_sequence(kind, 160, height=H, width=W, fps=10)
    frames = seq.to_frames()
    pipe = StreamingPipeline(PipelineConfig(voxel_size=0.05))
    outs = _run(pipe, frames, _oracle(seq))
    E, G, stamps = _trajectory(outs, seq)
    assert stamps == [f.stamp_ns for f in frames]  # every frame published exactly once
    assert all(o.accepted for o in outs)
    noise = _per_window_noise_m(seq, frames)
    res = ate(E, G, align="sim3")
    print(f"{kind}: ATE rmse {res['rmse']:.4f} m vs per-window noise {noise:.4f} m "
          f"(ratio {res['rmse'] / noise:.2f}), keyframes {pipe.counters()['keyframes']}")
    assert res["rmse"] <= 1.5 * noise
    # oracle seeds 1-7: forward ATE 1.12-1.20x, rotation 0.96-1.10x; orbit 1.01-1.25x, 1.25-1.74x
    assert np.sqrt(np.mean(_rot_err_deg(E, G) ** 2)) <= 2.5 * ROT_NOISE_DEG


@pytest.mark.parametrize("kind", ["rotation", "static"])
def test_pure_rotation_and_near_static(kind: str) -> None:
    seq = make_sequence(kind, 120, height=H, width=W, fps=10)
    frames = seq.to_frames()
    pipe = StreamingPipeline(PipelineConfig(voxel_size=0.05))
    rec = _Recording(_oracle(seq))
    outs = _run(pipe, frames, rec)
    assert all(o.accepted for o in outs)
    E, G, stamps = _trajectory(outs, seq)
    assert stamps == [f.stamp_ns for f in frames]  # every frame published exactly once
    upm = _units_per_metre(outs, rec.scales)
    pos_err = np.linalg.norm(E[:, :3, 3] / upm - G[:, :3, 3], axis=1)  # metres, no alignment needed
    noise = _per_window_noise_m(seq, frames)
    rot = _rot_err_deg(E, G)
    kf = pipe.counters()["keyframes"]
    print(f"{kind}: position rmse {np.sqrt(np.mean(pos_err**2)):.4f} m vs noise {noise:.4f} m, "
          f"rotation rmse {np.sqrt(np.mean(rot**2)):.3f} deg vs {ROT_NOISE_DEG} deg, keyframes {kf}")
    # Sim(3) ATE is degenerate here (the true positions barely move), so positions are checked in
    # metres without alignment. A full turn takes ~30 windows, each handing the chain over with
    # fresh per-window noise (a random walk), hence the looser position bound for pure rotation.
    # Measured over oracle seeds 1-7 (oldest covisible keyframe as anchor, inverse-variance
    # placement and fusion): rotation position 1.28-1.56x (seed 7: 1.55x), rotation 1.14-1.58x
    # (latest keyframe as anchor, running-mean fusion before: 1.77-2.20x and 1.2-2.2x); static
    # position 0.93-1.05x, rotation 0.96-1.09x. The optimal causal least-squares estimate for this
    # window structure (8 frames, 4 new, the oracle's per-window noise varying 1.6-5.5 m of scene
    # depth along the turn) is ~1.3x in expectation, so 1.5x on every seed is out of reach.
    bound_pos, bound_rot = (1.75, 2.0) if kind == "rotation" else (1.25, 1.5)
    assert np.sqrt(np.mean(pos_err**2)) <= bound_pos * noise
    assert np.sqrt(np.mean(rot**2)) <= bound_rot * ROT_NOISE_DEG
    # The bound, ATE after alignment <= 1.5x: with the true positions (nearly) fixed a Sim(3)
    # fit cannot observe the scale (it shrinks the estimate onto the truth), so the scale is fixed to
    # the known one and only the rigid part is fitted (SE(3) in metres). Seeds 1-7: rotation
    # 1.05-1.33x.
    E_m = E.copy()
    E_m[:, :3, 3] /= upm
    rigid = ate(E_m, G, align="se3")["rmse"]
    print(f"{kind}: ATE after rigid alignment at the known scale {rigid / noise:.2f}x noise")
    assert rigid <= 1.5 * noise
    assert ate(E, G, align="sim3")["rmse"] <= 1.5 * noise
    if kind == "rotation":  # 45 deg/s turn: the view changes, so keyframes must follow
        assert kf >= 8
    else:  # a static camera must not spawn keyframes beyond the max-gap rule
        assert kf <= 1 + len(frames) // PipelineConfig().max_keyframe_gap + 1


def test_anchor_is_oldest_covisible_keyframe() -> None:
    """Pure rotation: windows anchor on an older keyframe while it still sees the newest view, never on
    one that no longer does; anchor_min_overlap=1 restores the latest keyframe as anchor."""
    seq = make_sequence("rotation", 48, height=H, width=W, fps=10)
    frames = seq.to_frames()
    ages = {}
    for overlap in (0.2, 1.0):
        pipe = StreamingPipeline(PipelineConfig(voxel_size=0.05, anchor_min_overlap=overlap))
        oracle, keyframes, older = _oracle(seq), [], 0
        ages[overlap] = []
        for f in frames:
            pipe.add_frame(f)
            job = pipe.next_window()
            if job is None:
                continue
            if not job.is_bootstrap:
                anchor = job.frame_keys[0]
                assert anchor in keyframes and not job.new_mask[0]
                if overlap == 1.0:
                    assert anchor == keyframes[-1]
                older += anchor != keyframes[-1]
                ages[overlap].append(seq.index_of(job.frame_keys[-1]) - seq.index_of(anchor))
            out = pipe.run_window(job, oracle)
            assert out.accepted
            keyframes += [fo.stamp_ns for fo in out.frames if fo.is_keyframe]
        if overlap < 1.0:
            assert older >= len(ages[overlap]) // 2
    # 3 deg per frame, 65 deg field of view: an anchor more than ~60 deg (20 frames) back sees nothing
    assert max(ages[0.2]) <= 20 and np.mean(ages[0.2]) >= np.mean(ages[1.0]) + 3


def test_scale_drift_below_one_percent_per_100_keyframes() -> None:
    seq = make_sequence("orbit", 400, height=48, width=64, fps=10)
    frames = seq.to_frames()
    cfg = PipelineConfig(voxel_size=0.1, min_rotation_deg=5.0, min_parallax_px=5.0, min_valid_pixels=100)
    pipe = StreamingPipeline(cfg)
    rec = _Recording(_oracle(seq, target_size=70))
    outs = _run(pipe, frames, rec)
    chain = np.array([o.scale * s for o, s in zip(outs, rec.scales)])  # output units per metre, per window
    kf = pipe.counters()["keyframes"]
    drift = np.max(np.abs(np.log(chain / chain[0])))
    print(f"scale drift {100 * drift:.3f} % over {kf} keyframes ({100 * drift * 100 / kf:.3f} % per 100)")
    assert kf >= 50
    assert drift * 100.0 / kf <= 0.01


def test_slow_inference_skips_frames_but_keeps_chain() -> None:
    seq = make_sequence("forward", 200, height=H, width=W, fps=10)
    frames = seq.to_frames()
    pipe = StreamingPipeline(PipelineConfig(voxel_size=0.05))
    outs = _run(pipe, frames, _oracle(seq), every=10)  # inference 10 frames slow
    c = pipe.counters()
    E, G, stamps = _trajectory(outs, seq)
    assert c["skipped"] > 50 and all(o.accepted for o in outs)
    assert len(stamps) == len(set(stamps)) and len(stamps) + c["skipped"] == c["accepted"]
    assert ate(E, G)["rmse"] <= 1.5 * _per_window_noise_m(seq, frames)


class _Corrupting:
    """Returns garbage for one window index (a model failure)."""

    def __init__(self, inner, bad_call: int) -> None:
        self.inner, self.bad, self.calls = inner, bad_call, 0

    def predict(self, images, query_points=None, frame_keys=None) -> Prediction:
        p = self.inner.predict(images, query_points, frame_keys)
        if self.calls == self.bad:
            rng = np.random.default_rng(0)
            p.depth = (p.depth * rng.uniform(0.1, 5.0, p.depth.shape)).astype(np.float32)
            p.extrinsics[1:, :3, 3] += rng.normal(0, 3.0, p.extrinsics[1:, :3, 3].shape).astype(np.float32)
        self.calls += 1
        return p


def test_corrupted_window_rejected_chain_intact() -> None:
    seq = make_sequence("orbit", 100, height=H, width=W, fps=10)
    frames = seq.to_frames()
    pipe = StreamingPipeline(PipelineConfig(voxel_size=0.05))
    outs = _run(pipe, frames, _Corrupting(_oracle(seq), bad_call=6))
    bad = [o for o in outs if not o.accepted]
    assert len(bad) == 1 and bad[0].window_index == 6 and bad[0].rejection_reason == "residual_too_large"
    assert bad[0].frames == [] and pipe.counters()["windows_rejected"] == 1
    assert all(o.accepted for o in outs[7:])
    E, G, stamps = _trajectory(outs, seq)
    assert len(stamps) == len(frames) - pipe.config.stride  # the rejected window's new frames
    assert ate(E, G)["rmse"] <= 1.5 * _per_window_noise_m(seq, frames)


def test_frame_outputs_depth_points_intrinsics_and_convention() -> None:
    seq = make_sequence("forward", 24, height=H, width=W, fps=10)
    frames = seq.to_frames(with_depth=True)
    cfg = PipelineConfig(scale_source="depth", depth_width=64, world_frame_convention="rep103",
                         conf_percentile=0, num_track_queries=32)
    pipe = StreamingPipeline(cfg)
    outs = _run(pipe, frames, _oracle(seq, pose_noise_rot_deg=0, pose_noise_trans=0, depth_noise=0))
    assert pipe.is_metric
    for o in outs:
        for fo in o.frames:
            assert fo.metric and fo.depth.shape == (48, 64) and fo.rgb.shape == (48, 64, 3)
            assert fo.image_hw == (H, W)
            np.testing.assert_allclose(fo.intrinsics, seq.K)
            np.testing.assert_allclose(fo.depth_intrinsics[0, 0], seq.K[0, 0] / 2)
            gt = seq.render_frame(seq.index_of(fo.stamp_ns))[1][::2, ::2]  # 2x2 blocks ~ nearest sample
            ok = np.isfinite(fo.depth) & np.isfinite(gt) & (gt > 0)
            assert ok.mean() > 0.8
            assert np.median(np.abs(fo.depth[ok] / gt[ok] - 1)) < 0.03  # metres
            # points: back-projected depth pixels in the camera optical frame
            Kd = fo.depth_intrinsics
            uv = fo.points[:, :2] / fo.points[:, 2:3] * [Kd[0, 0], Kd[1, 1]] + [Kd[0, 2], Kd[1, 2]]
            u, v = np.rint(uv).astype(int).T
            np.testing.assert_allclose(fo.depth[v, u], fo.points[:, 2], rtol=1e-5)
            assert len(fo.colors) == len(fo.points)
            # REP 103 world: camera optical axes rotated; GT pose mapped with the same fixed rotation
            G = seq.world_T_camera[seq.index_of(fo.stamp_ns)]
            np.testing.assert_allclose(fo.world_T_camera[:3, :3], REP103_R_OPTICAL @ G[:3, :3], atol=1e-3)
            np.testing.assert_allclose(fo.world_T_camera[:3, 3], REP103_R_OPTICAL @ G[:3, 3], atol=0.02)
    # tracks: one per window, persistent ids continue through the shared anchor
    tr = [o.tracks for o in outs]
    assert all(t is not None and t.positions.shape == (len(t.stamps_ns), 32, 2) for t in tr)
    continued = [len(np.intersect1d(a.track_ids, b.track_ids)) for a, b in zip(tr, tr[1:])]
    assert min(continued) >= 8


@pytest.mark.parametrize("source", ["fixed", "depth", "odometry"])
def test_scale_sources_give_metric_output(source: str) -> None:
    seq = make_sequence("forward", 60, height=H, width=W, fps=10)
    frames = seq.to_frames(with_depth=source == "depth", with_odometry=source == "odometry")
    fixed = 1.0
    if source == "fixed":  # the user knows metres per world unit (here: from the first window's oracle)
        probe = _oracle(seq)
        probe.predict([f.image for f in frames[:8]], None, [f.stamp_ns for f in frames[:8]])
        fixed = 1.0 / probe.last_scale
    pipe = StreamingPipeline(PipelineConfig(scale_source=source, fixed_scale=fixed, voxel_size=0.05))
    outs = _run(pipe, frames, _oracle(seq))
    assert pipe.is_metric and all(fo.metric for o in outs[-3:] for fo in o.frames)
    E, G, _ = _trajectory(outs, seq)
    errs = np.linalg.norm(E[:, :3, 3] - G[:, :3, 3], axis=1)
    travel = np.linalg.norm(G[-1, :3, 3])
    print(f"{source}: scale {pipe.scale:.4f}, position error max {errs.max():.3f} m over {travel:.2f} m")
    assert travel > 4.0 and errs[len(errs) // 2:].max() < 0.1 * travel
    fo = outs[-1].frames[-1]
    gt = seq.render_frame(seq.index_of(fo.stamp_ns))[1]
    ok = np.isfinite(fo.depth) & (gt > 0)
    assert abs(np.median(fo.depth[ok] / gt[ok]) - 1) < 0.03


def test_pipeline_bad_input_and_map_bound() -> None:
    seq = make_sequence("orbit", 40, height=H, width=W, fps=10)
    frames = seq.to_frames()
    pipe = StreamingPipeline(PipelineConfig(voxel_size=0.01, map_max_points=3000, map_update="all"))
    assert pipe.add_frame(frames[0])
    assert not pipe.add_frame(frames[0])  # duplicate stamp
    assert not pipe.add_frame(Frame(frames[0].stamp_ns - 1, frames[1].image))  # out of order
    assert not pipe.add_frame(Frame(frames[1].stamp_ns, np.zeros((0, 0, 3), np.uint8)))
    assert not pipe.add_frame(Frame(frames[1].stamp_ns, np.zeros((H // 2, W // 2, 3), np.uint8)))
    outs = _run(pipe, frames[1:], _oracle(seq))
    c = pipe.counters()
    assert c["rejected_duplicate_stamp"] == 1 and c["rejected_out_of_order"] == 1
    assert c["rejected_empty_image"] == 1 and c["rejected_size_change"] == 1 and c["rejected"] == 4
    assert sum(len(o.frames) for o in outs) == len(frames)
    assert len(pipe.world_map) == 3000 and c["map_points_dropped"] > 0
    assert pipe.world_map.nbytes <= 3000 * 31
    pipe.reset()
    assert len(pipe.world_map) == 0 and pipe.next_window() is None


def test_job_api_and_bad_prediction_rejected() -> None:
    seq = make_sequence("forward", 12, height=H, width=W, fps=10)
    pipe = StreamingPipeline(PipelineConfig())
    for f in seq.to_frames()[:8]:
        pipe.add_frame(f)
    job = pipe.next_window()
    assert isinstance(job, WindowJob) and job.new_mask == [True] * 8 and job.query_points is None
    assert job.frame_keys == [int(s) for s in seq.stamps_ns[:8]] and len(job.images) == 8
    pred = _oracle(seq).predict(job.images, None, job.frame_keys)
    pred.extrinsics = pred.extrinsics[:5]
    out = pipe.process(job, pred)
    assert not out.accepted and out.rejection_reason == "bad_prediction_shape"


def test_point_head_cloud_matches_depth_cloud_and_falls_back_when_missing():
    """points_source=point_head: same pixels and positions as depth + camera for a consistent predictor;
    a predictor without world_points falls back to depth, counted."""
    seq = make_sequence("forward", 12, height=H, width=W)
    frames = seq.to_frames()
    clouds = {}
    for source in ("depth", "point_head"):
        cfg = PipelineConfig(window_size=4, stride=2, target_size=NET, points_source=source,
                             fixed_scale=1.0, scale_source="fixed")
        pipe = StreamingPipeline(cfg)
        outs = _run(pipe, frames, _oracle(seq, pose_noise_rot_deg=0, pose_noise_trans=0, depth_noise=0))
        clouds[source] = {fo.stamp_ns: fo.points for o in outs for fo in o.frames}
    assert clouds["depth"].keys() == clouds["point_head"].keys() and len(clouds["depth"]) >= 8
    for stamp, pts in clouds["depth"].items():
        other = clouds["point_head"][stamp]
        assert pts.shape == other.shape and len(pts) > 100
        np.testing.assert_allclose(other[:, 2], pts[:, 2], rtol=1e-4)
        # the point head is sampled at the nearest network pixel: x/y agree to about one pixel's footprint
        footprint = pts[:, 2] / seq.K[0, 0]
        assert np.all(np.abs(other[:, :2] - pts[:, :2]) <= 1.5 * footprint[:, None] + 1e-6)
        assert np.median(np.abs(other[:, :2] - pts[:, :2])) <= 0.5 * np.median(footprint)

    class _NoWorldPoints:
        def __init__(self, inner):
            self.inner = inner

        def predict(self, images, query_points=None, frame_keys=None):
            pred = self.inner.predict(images, query_points, frame_keys)
            pred.world_points = None
            return pred

    pipe = StreamingPipeline(
        PipelineConfig(window_size=4, stride=2, target_size=NET, points_source="point_head"))
    outs = _run(pipe, frames[:6], _NoWorldPoints(_oracle(seq)))
    assert sum(len(fo.points) > 0 for o in outs for fo in o.frames) >= 4
    assert pipe.counters()["point_head_missing"] >= 4
    with pytest.raises(ValueError, match="points_source"):
        PipelineConfig(points_source="lidar")


def _stream_windows(pipe: StreamingPipeline, frames: Sequence[Frame], predictor, deferred: bool
                    ) -> list[WindowOutput]:
    """Serial (``process``) or pipelined: window k is emitted only after window k+1 was taken,
    predicted and placed, as the node's output thread does while the next window is predicted."""
    outs, held = [], None
    for f in frames:
        pipe.add_frame(f)
        job = pipe.next_window()
        if job is None:
            continue
        pred = predictor.predict(job.images, job.query_points, job.frame_keys)
        if not deferred:
            outs.append(pipe.process(job, pred))
            continue
        placed = pipe.place(job, pred)
        if held is not None:
            outs.append(pipe.emit(held))
        held = placed
    if held is not None:
        outs.append(pipe.emit(held))
    return outs


def test_pipelined_place_then_emit_equals_serial_process() -> None:
    """Emitting a window after the next one was placed gives exactly the serial outputs and map,
    including the map rescale when the metric scale (depth source) changes between windows."""
    seq = make_sequence("forward", 40, height=H, width=W, fps=10)
    frames = seq.to_frames(with_depth=True)
    results = {}
    for deferred in (False, True):
        pipe = StreamingPipeline(PipelineConfig(scale_source="depth", voxel_size=0.05,
                                                scale_freeze_samples=50, num_track_queries=16))
        outs = _stream_windows(pipe, frames, _oracle(seq), deferred)
        results[deferred] = (outs, pipe)
    (serial, p_serial), (piped, p_piped) = results[False], results[True]
    assert len(serial) == len(piped) >= 8 and all(o.accepted for o in serial + piped)
    scales = {o.scale for o in serial}
    assert len(scales) > 3  # the metric factor moved while windows were in flight
    for a, b in zip(serial, piped):
        assert [f.stamp_ns for f in a.frames] == [f.stamp_ns for f in b.frames]
        assert a.scale == b.scale
        for fa, fb in zip(a.frames, b.frames):
            np.testing.assert_array_equal(fa.world_T_camera, fb.world_T_camera)
            np.testing.assert_array_equal(fa.depth, fb.depth)
            np.testing.assert_array_equal(fa.points, fb.points)
            assert fa.metric == fb.metric
        np.testing.assert_array_equal(a.tracks.positions, b.tracks.positions)
        assert {"place", "alignment", "keyframes", "emit", "outputs", "map"} <= set(b.timings)
    assert len(p_serial.world_map) > 1000
    np.testing.assert_array_equal(p_serial.world_map.points, p_piped.world_map.points)
    np.testing.assert_array_equal(p_serial.world_map.colors, p_piped.world_map.colors)
    assert p_serial.counters()["frames_out"] == p_piped.counters()["frames_out"] == len(frames)


def test_reset_between_place_and_emit_drops_the_stale_window() -> None:
    """A window placed (or only taken) before a reset is rejected with reason 'reset' and never
    reaches the new world's map or poses."""
    seq = make_sequence("forward", 24, height=H, width=W, fps=10)
    frames = seq.to_frames()
    oracle = _oracle(seq)
    pipe = StreamingPipeline(PipelineConfig(voxel_size=0.05))
    for f in frames[:8]:
        pipe.add_frame(f)
    job = pipe.next_window()
    placed = pipe.place(job, oracle.predict(job.images, None, job.frame_keys))
    assert placed.accepted
    pipe.reset()
    out = pipe.emit(placed)
    assert not out.accepted and out.rejection_reason == "reset" and not out.frames
    assert len(pipe.world_map) == 0
    # taken before the reset, placed after it: rejected too (its context would belong to the old world)
    for f in frames[8:16]:
        pipe.add_frame(f)
    job = pipe.next_window()
    pipe.reset()
    placed = pipe.place(job, oracle.predict(job.images, None, job.frame_keys))
    assert not placed.accepted and placed.rejected.rejection_reason == "reset"
    assert pipe.counters()["windows_rejected_reset"] == 2 and pipe.counters()["windows"] == 1
    # the new world starts cleanly at the next frames
    for f in frames[16:24]:
        pipe.add_frame(f)
    job = pipe.next_window()
    assert job.is_bootstrap
    out = pipe.emit(pipe.place(job, oracle.predict(job.images, None, job.frame_keys)))
    assert out.accepted and [f.stamp_ns for f in out.frames] == [f.stamp_ns for f in frames[16:24]]
    assert len(pipe.world_map) > 0
