"""The keyframe pose graph and loop closure through the stream runner (the node's and the replay's
loop), on generated sequences with the noisy oracle (issue 15)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vggt_ros.core.alignment import umeyama
from vggt_ros.core.config import PipelineConfig
from vggt_ros.core.frames import rotation_angle_deg
from vggt_ros.core.oracle import OraclePredictor
from vggt_ros.core.pipeline import StreamingPipeline
from vggt_ros.core.types import PredictorBase
from vggt_ros.eval.metrics import ate
from vggt_ros.graph.loop_closure import LoopDetector
from vggt_ros.graph.pose_graph import EdgeNoise, KeyframeGraph
from vggt_ros.graph.trajectory import FrameObservations
from vggt_ros.runner.stream_runner import StreamRunner
from vggt_ros.sim.sequences import make_sequence
from vggt_ros.sim.twin import make_twin_sequence

H, W, NET = 96, 128, 126
NOISE = {"pose_noise_rot_deg": 0.5, "pose_noise_trans": 0.01, "depth_noise": 0.02, "random_scale": (0.5, 2.0)}


def _run(seq: Any, oracle: Any, **cfg: Any) -> dict[str, Any]:
    # the graph's configuration: every frame predicted by about 1 + 3 / 2 windows
    cfg = {"stride": 2, "context_recent_frames": 3, "pose_graph": True, **cfg}
    pipe = StreamingPipeline(PipelineConfig(target_size=NET, **cfg))
    est: dict[int, np.ndarray] = {}
    loops: list[Any] = []
    corrections: list[np.ndarray] = []

    def on_output(out: Any, _latency: float) -> None:
        for fo in out.frames:
            est[fo.stamp_ns] = fo.world_T_camera
        loops.extend(out.loop_closures)
        if out.map_T_odom is not None:
            corrections.append(out.map_T_odom)

    runner = StreamRunner(pipe, oracle, on_output)
    for f in seq.to_frames():
        runner.add_frame(f)
        runner.run_ready()
    runner.finish()
    stamps = sorted(est)
    opt = pipe.optimised_trajectory()
    G = seq.world_T_camera[[seq.index_of(s) for s in stamps]]
    return {"pipe": pipe, "stamps": stamps, "odom": np.stack([est[s] for s in stamps]), "gt": G,
            "opt": np.stack([opt[s] for s in stamps]) if opt else None, "loops": loops,
            "corrections": corrections}


def _noise_m(seq: Any, window: int = 8) -> float:
    """RMS position noise the oracle puts on one frame: sqrt(3) * sigma * mean point distance."""
    clean = OraclePredictor(seq, target_size=NET)
    frames = seq.to_frames()
    d = []
    for i in range(0, len(frames) - window, window):
        chunk = frames[i:i + window]
        clean.predict([f.image for f in chunk], None, [f.stamp_ns for f in chunk])
        d.append(1.0 / clean.last_scale)
    return float(np.sqrt(3.0) * NOISE["pose_noise_trans"] * np.mean(d))


def _end_error(T: np.ndarray, G: np.ndarray) -> float:
    """End-vs-start error (metres) after a Sim(3) fit to the ground truth."""
    s, R, t = umeyama(T[:, :3, 3], G[:, :3, 3])
    P = s * T[:, :3, 3] @ R.T + t
    return float(np.linalg.norm((P[-1] - P[0]) - (G[-1, :3, 3] - G[0, :3, 3])))


@pytest.mark.parametrize("kind", ["forward", "orbit"])
def test_graph_averages_overlapping_windows(kind: str) -> None:
    """Every frame is predicted by about 2.5 windows: the optimised trajectory's ATE is at most 0.75
    times one window's per-frame noise, where the odometry's is about one."""
    seq = make_sequence(kind, 150, H, W, fps=30.0, seed=0)
    r = _run(seq, OraclePredictor(seq, target_size=NET, seed=7, **NOISE))
    noise = _noise_m(seq)
    odom, opt = ate(r["odom"], r["gt"])["rmse"] / noise, ate(r["opt"], r["gt"])["rmse"] / noise
    print(f"{kind}: ATE / per-frame noise: odometry {odom:.3f}, pose graph {opt:.3f}")
    assert opt <= 0.75 and opt < 0.8 * odom
    assert r["pipe"].counters()["graph_keyframes"] >= 5


def test_bounded_graph_keeps_every_frame_and_its_accuracy() -> None:
    """graph_max_keyframes bounds the graph (its oldest half leaves, their frames keep the poses
    optimised so far): every frame still has an optimised pose, as accurate as without the bound."""
    seq = make_sequence("orbit", 150, H, W, fps=30.0, seed=0)
    oracle = OraclePredictor(seq, target_size=NET, seed=7, **NOISE)
    free, bounded = _run(seq, oracle), _run(seq, oracle, graph_max_keyframes=8)
    c = bounded["pipe"].counters()
    assert c["graph_keyframes"] <= 8 and c["graph_keyframes_dropped"] >= 8
    assert free["pipe"].counters()["graph_keyframes"] > 16
    assert len(bounded["opt"]) == len(free["opt"]) == len(seq)
    e_free, e_bounded = ate(free["opt"], free["gt"])["rmse"], ate(bounded["opt"], bounded["gt"])["rmse"]
    print(f"ATE: graph {e_free * 1e3:.1f} mm, bounded to 8 keyframes {e_bounded * 1e3:.1f} mm")
    assert e_bounded <= 1.15 * e_free
    # what a loop closure re-publishes: the newest frames (the Path's bound) and the map's keyframes
    pipe = bounded["pipe"]
    after_loop, everything = pipe.optimised_trajectory(newest=10), pipe.optimised_trajectory()
    clouds = set(pipe._kf_clouds.stamps())
    assert set(after_loop) == set(bounded["stamps"][-10:]) | clouds and len(everything) == len(seq)
    for s in after_loop:
        np.testing.assert_allclose(after_loop[s], everything[s])


def test_rebuilt_graph_keeps_its_newest_half_and_prior() -> None:
    """drop_oldest: the newest max_keyframes // 2 stay, with their estimates; a chain continued
    after it ends as close to the truth as the unbounded graph's (mean of 5 noisy chains)."""
    def pose(rv: Any, t: Any) -> np.ndarray:
        T = np.eye(4)
        T[:3, :3] = Rotation.from_rotvec(rv).as_matrix()
        T[:3, 3] = t
        return T

    ends = {0: [], 10: []}
    for seed in range(5):
        rng = np.random.default_rng(seed)
        gt = [pose([0, 0, 0.05 * i], [0.3 * i, 0.1 * np.sin(i), 0]) for i in range(60)]
        meas = [(a, i, np.linalg.solve(gt[a], gt[i]) @ pose(rng.normal(0, 0.005, 3), rng.normal(0, 0.01, 3)))
                for i in range(1, 60) for a in (i - 1, i - 2, i - 3) if a >= 0]
        for cap in ends:
            g = KeyframeGraph(cap)
            g.add_keyframe(0, gt[0])
            for i in range(1, 60):
                g.add_keyframe(i, g.pose(i - 1) @ np.linalg.solve(gt[i - 1], gt[i]))
                for a, b, rel in meas:
                    if b == i and a in g:
                        g.add_relative(a, b, rel, EdgeNoise(0.005, 0.01))
                g.update()
                if g.over_capacity():
                    before = {s: g.pose(s) for s in g.stamps()}
                    dropped = g.drop_oldest()
                    assert dropped == sorted(before)[: len(before) - 5] and g.stamps() == sorted(before)[-5:]
                    for s in g.stamps():  # rebuilt around the same estimates (within the noise: the
                        # factors from dropped to kept keyframes other than the oldest kept one go)
                        assert np.linalg.norm(g.pose(s)[:3, 3] - before[s][:3, 3]) < 0.05
                        assert rotation_angle_deg(g.pose(s)[:3, :3].T @ before[s][:3, :3]) < 1.0
            assert len(g) <= (cap or 60)
            ends[cap].append(np.linalg.norm(g.pose(59)[:3, 3] - gt[59][:3, 3]))
    print({cap: round(float(np.mean(e)), 4) for cap, e in ends.items()})
    assert np.mean(ends[10]) <= 1.2 * np.mean(ends[0])


@pytest.mark.parametrize("kind", ["rotation", "static"])
def test_graph_no_regression_without_translation(kind: str) -> None:
    seq = make_sequence(kind, 90, H, W, fps=30.0, seed=0)
    r = _run(seq, OraclePredictor(seq, target_size=NET, seed=7, **NOISE))
    rot = [np.degrees(np.linalg.norm(_rotvec(np.linalg.solve(g, o)))) for g, o in zip(r["gt"], r["opt"])]
    rot_odom = [np.degrees(np.linalg.norm(_rotvec(np.linalg.solve(g, o))))
                for g, o in zip(r["gt"], r["odom"])]
    print(f"{kind}: rotation error RMS odometry {np.sqrt(np.mean(np.square(rot_odom))):.3f} deg, "
          f"graph {np.sqrt(np.mean(np.square(rot))):.3f} deg")
    assert np.sqrt(np.mean(np.square(rot))) <= 1.05 * np.sqrt(np.mean(np.square(rot_odom))) + 0.02
    assert np.max(np.linalg.norm(r["opt"][:, :3, 3] - r["odom"][:, :3, 3], axis=1)) < 0.1


def _rotvec(T: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(T[:3, :3]).as_rotvec()


def test_loop_closure_pulls_the_loop_together() -> None:
    """An 8 m loop: the revisit is found, verified and closed; the end-vs-start error of the optimised
    trajectory drops well below the odometry's and the correction is announced."""
    fps = 10.0
    seq = make_sequence("loop", int(np.ceil(16 * fps)) + 3, H, W, fps=fps, seed=0)
    oracle = OraclePredictor(seq, target_size=NET, seed=8, **NOISE)
    closed = _run(seq, oracle)
    open_ = _run(seq, oracle, loop_closure=False)
    assert len(closed["loops"]) >= 1 and not open_["loops"]
    assert closed["pipe"].counters()["loop_closures"] == len(closed["loops"])
    e_closed, e_open = _end_error(closed["opt"], closed["gt"]), _end_error(open_["opt"], open_["gt"])
    e_odom = _end_error(closed["odom"], closed["gt"])
    print(f"end vs start: odometry {e_odom * 1e3:.1f} mm, graph without loops {e_open * 1e3:.1f} mm, "
          f"with loops {e_closed * 1e3:.1f} mm")
    # one closure (loop_cooldown_keyframes): a verification window's few measurements, each with a
    # frame's own error, against 8 m of drift
    assert e_closed < 0.6 * e_odom and e_closed < 0.8 * e_open
    ev = closed["loops"][0]
    assert ev.match_stamp_ns < ev.query_stamp_ns and ev.overlap >= 0.3 and ev.correction_translation > 0
    # the correction moved at the closure and the odometry itself stayed continuous
    jumps = np.linalg.norm(np.diff(closed["odom"][:, :3, 3], axis=0), axis=1)
    assert jumps.max() < 5 * np.median(jumps) + 0.05


def test_twin_rooms_are_not_a_loop() -> None:
    """Two identical corridor cells 5 m apart: the descriptors match (candidates), geometry rejects."""
    fps = 10.0
    seq = make_twin_sequence(int(20 * fps), H, W, fps=fps)
    r = _run(seq, OraclePredictor(seq.ground_truth(), target_size=NET, seed=7, **NOISE))
    c = r["pipe"].counters()
    assert c.get("loop_candidates", 0) > 0 and c.get("loop_closures", 0) == 0 and not r["loops"]


class _Fooled(PredictorBase):
    """A predictor fooled by look-alike places: in a verification window (its frames span more than
    half a cell) it predicts the newer frames as if they stood at their twins (the same images 5 m
    back), i.e. at the matched place."""

    def __init__(self, seq: Any, oracle: OraclePredictor) -> None:
        self.seq, self.oracle = seq, oracle

    def predict(self, images: Any, query_points: Any, frame_keys: Any) -> Any:
        idx = [self.seq.index_of(k) for k in frame_keys]
        half = self.seq.twin_offset // 2
        if max(idx) - min(idx) > half:
            idx = [i - self.seq.twin_offset if i >= min(idx) + half else i for i in idx]
        return self.oracle.predict(images, query_points, [int(self.seq.stamps_ns[i]) for i in idx])


def test_look_alike_loop_rejected_by_the_graph_gate() -> None:
    """Even when the pair prediction says "same place", the loop is 5 m off the graph's own estimate,
    far outside its uncertainty: rejected by the gate, counted, never added."""
    fps = 10.0
    seq = make_twin_sequence(int(20 * fps), H, W, fps=fps)
    oracle = OraclePredictor(seq.ground_truth(), target_size=NET, seed=7, **NOISE)
    r = _run(seq, _Fooled(seq, oracle))
    c = r["pipe"].counters()
    assert c.get("loop_rejected_gate", 0) > 0 and c.get("loop_closures", 0) == 0


def test_graph_off_keeps_the_odometry_only() -> None:
    seq = make_sequence("forward", 40, H, W, fps=30.0, seed=0)
    r = _run(seq, OraclePredictor(seq, target_size=NET, seed=7, **NOISE), pose_graph=False)
    assert r["opt"] is None and not r["corrections"] and "graph_keyframes" not in r["pipe"].counters()


def test_loop_detector_window_and_cooldown() -> None:
    """A candidate's verification window: the match first, its stored neighbours, the newest
    keyframes with the query last; after a closure the next loop_cooldown_keyframes search none."""
    det = LoopDetector(min_score=0.5, min_keyframe_gap=5, max_keyframes=100, cooldown_keyframes=3)
    rng = np.random.default_rng(0)
    place = [rng.normal(size=8) for _ in range(5)]
    img = np.zeros((8, 8, 3), np.uint8)
    state = (np.ones((4, 4)), np.ones((4, 4)))
    for k in range(12):  # keyframes 0..11 see places 0..4, then 0.. again (a revisit)
        det.add_keyframe(k, img, place[k % 5] + 0.01 * rng.normal(size=8))
    job = det.candidate(11, state)  # keyframe 11 sees place 1, like 1 and 6 (7..11: the newest 5)
    assert job is not None and job.match == 6 and job.frame_keys[0] == 6 and job.frame_keys[-1] == 11
    assert sorted(job.frame_keys[:3]) == [4, 5, 6] and job.frame_keys[3:] == [9, 10, 11]
    assert len(job.images) == len(job.frame_keys)
    det.closed()
    for k in (12, 13):
        det.add_keyframe(k, img, place[k % 5])
        assert det.candidate(k, state) is None  # cooling down
    det.add_keyframe(14, img, place[4])
    assert det.candidate(14, state) is not None and det.candidate(14, state) is None  # asked once


def test_batched_frame_poses_equal_one_by_one() -> None:
    """The rebuilt path's batch gives each frame the weighted mean of its measurements (rotation:
    chordal mean), as the one-frame call does; keyframes are the graph's; order as asked."""
    rng = np.random.default_rng(3)

    def pose(scale: float) -> np.ndarray:
        T = np.eye(4)
        T[:3, :3] = Rotation.from_rotvec(rng.normal(scale=scale, size=3)).as_matrix()
        T[:3, 3] = rng.normal(size=3)
        return T

    kf = {100: pose(0.5), 200: pose(0.5)}
    obs = FrameObservations(10)
    for s in (150, 160, 170):
        obs.placed(s, pose(0.5))
        for a in (100, 200):
            obs.observe(s, a, pose(0.05), float(rng.uniform(0.5, 2)))
    obs.placed(180, pose(0.5))  # no measurement yet: its odometry
    batch = obs.poses([170, 100, 150, 180, 160], kf.__getitem__, kf.__contains__)
    assert list(batch) == [170, 100, 150, 180, 160]
    np.testing.assert_allclose(batch[100], kf[100])
    np.testing.assert_allclose(batch[180], obs.odometry(180))
    for s in (150, 160, 170):
        one = obs.pose(s, kf.__getitem__, kf.__contains__)
        np.testing.assert_allclose(batch[s], one, atol=1e-12)
        Ts = [kf[a] @ rel for a, rel, _ in obs._obs[s]]
        w = np.array([w for _, _, w in obs._obs[s]])
        np.testing.assert_allclose(batch[s][:3, 3], np.average([T[:3, 3] for T in Ts], 0, w), atol=1e-12)
        R = Rotation.from_matrix(np.stack([T[:3, :3] for T in Ts])).mean(weights=w).as_matrix()
        assert rotation_angle_deg(batch[s][:3, :3].T @ R) < 0.01  # chordal vs quaternion mean: close
        assert abs(np.linalg.det(batch[s][:3, :3]) - 1) < 1e-9


def test_keyframe_clouds_rebuild_at_the_current_metric_scale() -> None:
    """A cloud kept at 0.5 m per world unit, rebuilt at 1.0: twice as far from its camera."""
    from vggt_ros.core.world_map import WorldMap
    from vggt_ros.graph.keyframe_clouds import KeyframeClouds

    clouds = KeyframeClouds(100)
    pts = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 2.0]])
    clouds.add(7, pts, np.zeros((2, 3), np.uint8), 0.5)
    T = np.eye(4)
    T[:3, 3] = [10.0, 0.0, 0.0]
    world = WorldMap(voxel_size=0.0)
    assert clouds.rebuild(world, {7: T}.get, 1.0) == 1
    np.testing.assert_allclose(np.sort(world.points, axis=0), np.sort(2.0 * pts + T[:3, 3], axis=0),
                               atol=1e-6)


def test_map_rebuilt_after_a_loop_keeps_the_metric_scale_it_moved_to() -> None:
    """A depth camera whose scale changes mid-loop (the metric factor follows, rolling median): the
    map rebuilt at the loop closure holds the early keyframes at the new scale, on the scene."""
    import dataclasses

    fps = 10.0
    seq = make_sequence("loop", int(np.ceil(16 * fps)) + 3, H, W, fps=fps, seed=0)
    frames = seq.to_frames(with_depth=True)
    half = len(frames) // 2
    frames = frames[:half] + [dataclasses.replace(f, metric_depth=2.0 * f.metric_depth)
                              for f in frames[half:]]
    pipe = StreamingPipeline(PipelineConfig(
        target_size=NET, pose_graph=True, scale_source="depth", scale_freeze_samples=0,
        world_frame_convention="optical"))
    loops: list[Any] = []
    runner = StreamRunner(pipe, OraclePredictor(seq, target_size=NET, seed=7),
                          lambda out, _lat: loops.extend(out.loop_closures))
    for f in frames:
        runner.add_frame(f)
        runner.run_ready()
    runner.finish()
    assert loops and pipe.is_metric and pipe.scale > 0
    points, _colors = pipe.map_snapshot()
    # the world is the first camera's optical frame, at twice the metres: halved, the points lie on
    # the surfaces the first camera sees (the map holds the whole room: the ones in front of it)
    p = points / 2.0
    K, depth = seq.K, seq.render_frame(0)[1]
    u = K[0, 0] * p[:, 0] / p[:, 2] + K[0, 2]
    v = K[1, 1] * p[:, 1] / p[:, 2] + K[1, 2]
    seen = (p[:, 2] > 0.1) & (u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1)
    assert seen.sum() > 200
    d = depth[np.rint(v[seen]).astype(int), np.rint(u[seen]).astype(int)]
    rel = np.abs(p[seen, 2] - d) / d
    print(f"{seen.sum()} map points in view of the first camera: median depth error {np.median(rel):.3%}")
    assert np.median(rel) < 0.02
