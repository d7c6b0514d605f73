"""The replay CLI end to end with the oracle predictor, checked independently through the output MCAP."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from bag_fixtures import FAST, FAST_PARAMS, NUM_FRAMES, bags  # noqa: F401 - fixture

from vggt_ros.bag.cli import main
from vggt_ros.bag.replay import OUTPUT_BAG_NAME, load_params
from vggt_ros.core.oracle import OraclePredictor
from vggt_ros.core.pipeline import StreamingPipeline
from vggt_ros.eval.metrics import associate, ate
from vggt_ros.eval.tum import read_tum
from vggt_ros.params.validation import pipeline_config_from_params

# Oracle without noise: the only error left is float32 rounding in the predictions and the 9-digit
# TUM text, so the ATE must be essentially zero. Measured ~1.5e-7 of the trajectory length.
ATE_BOUND_RELATIVE = 1e-5


@pytest.fixture(scope="module")
def oracle_run(bags, tmp_path_factory):  # noqa: F811
    """ROS 1 TUM-like bag, GT from /tf, tracks and every optional publisher enabled."""
    out = tmp_path_factory.mktemp("replay_ros1")
    rc = main(
        [
            str(bags.ros1),
            "--out",
            str(out),
            "--predictor",
            "oracle",
            "--gt-topic",
            "/tf:world.kinect",
            *FAST,
            "--set",
            "num_track_queries=16",
            "--set",
            "publish_confidence=true",
            "--set",
            "publish_depth_rgb=true",
            "--set",  # camera mode: map -> the camera's own frame (the default base mode has its own test)
            "odom_frame=",
            "--set",
            "base_frame=",
            "--no-progress",
        ]
    )
    assert rc == 0
    return out, json.loads((out / "metrics.json").read_text())


def test_oracle_replay_ate_is_near_zero(oracle_run, bags):  # noqa: F811
    out, m = oracle_run
    t = m["trajectory"]
    assert m["frames_processed"] == NUM_FRAMES and t["matched"] == NUM_FRAMES
    assert t["alignment"] == "sim3" and not m["metric"]
    assert t["gt_length"] > 0.5
    assert t["ate"]["rmse"] / t["gt_length"] < ATE_BOUND_RELATIVE
    assert t["rpe"]["rot_rmse_deg"] < 1e-3
    # depth in world units vs GT metres: after median scaling it matches (edges aside)
    assert m["depth"]["frames"] == NUM_FRAMES
    assert m["depth"]["per_sequence_median_scale"]["abs_rel"] < 0.01
    assert m["depth"]["per_sequence_median_scale"]["delta1"] > 0.99
    # the window scale found by Sim(3) is the one VGGT-like normalisation applied, not 1
    assert t["scale_factor"] > 1.5
    stamps, poses = read_tum(out / "trajectory.tum")
    np.testing.assert_array_equal(stamps, bags.seq.stamps_ns)
    kstamps, _ = read_tum(out / "keyframes.tum")
    assert 1 <= len(kstamps) == m["keyframes"] and set(kstamps) <= set(stamps)
    for name in ("summary.md", "map.ply", "trajectory.png"):
        assert (out / name).stat().st_size > 0
    assert "ATE RMSE" in (out / "summary.md").read_text()
    perf = m["performance"]
    assert (
        perf["frames_per_s"] > 0 and perf["window_latency_s"]["n"] == 1 + (NUM_FRAMES - 6) // 3
    )  # bootstrap + stride 3
    assert perf["window_latency_s"]["p50"] <= perf["window_latency_s"]["p99"] and perf["peak_rss_mib"] > 0


def test_output_mcap_decodes_independently(oracle_run, bags):  # noqa: F811
    """mcap_ros2 (not rosbags) decodes every topic; stamps are the input's; ATE recomputed from Odometry."""
    from mcap_ros2.reader import read_ros2_messages
    from scipy.spatial.transform import Rotation

    out, m = oracle_run
    seq = bags.seq
    mcap = out / OUTPUT_BAG_NAME / f"{OUTPUT_BAG_NAME}.mcap"
    topics: dict[str, int] = {}
    odo_stamps, odo_poses, depth_stamps = [], [], []
    for msg in read_ros2_messages(str(mcap)):
        topic = msg.channel.topic
        topics[topic] = topics.get(topic, 0) + 1
        r = msg.ros_msg
        if topic == "/vggt/odometry":
            stamp = r.header.stamp.sec * 10**9 + r.header.stamp.nanosec
            assert msg.log_time_ns == stamp
            p, o = r.pose.pose.position, r.pose.pose.orientation
            T = np.eye(4)
            T[:3, :3] = Rotation.from_quat([o.x, o.y, o.z, o.w]).as_matrix()
            T[:3, 3] = [p.x, p.y, p.z]
            odo_stamps.append(stamp)
            odo_poses.append(T)
            assert r.header.frame_id == "map" and r.child_frame_id == "openni_rgb_optical_frame"
        elif topic == "/vggt/depth/image":
            depth_stamps.append(r.header.stamp.sec * 10**9 + r.header.stamp.nanosec)
            assert r.encoding == "32FC1" and (r.height, r.width) == (120, 160)
        elif topic == "/vggt/tracks":
            assert r.num_tracks > 0 and len(r.positions) == 2 * r.num_frames * r.num_tracks
        elif topic == "/vggt/points":
            assert r.width > 0 and r.point_step == 16
        elif topic == "/tf":
            assert r.transforms[0].child_frame_id == "openni_rgb_optical_frame"
        elif topic == "/vggt/grid":
            assert r.header.frame_id == "map" and len(r.data) == r.info.width * r.info.height > 0
    expected = {
        "/tf",
        "/vggt/odometry",
        "/vggt/path",
        "/vggt/depth/image",
        "/vggt/depth/camera_info",
        "/vggt/depth/confidence",
        "/vggt/depth/rgb",
        "/vggt/points",
        "/vggt/map",
        "/vggt/grid",
        "/vggt/tracks",
        "/diagnostics",
    }
    assert set(topics) == expected
    for t in ("/tf", "/vggt/odometry", "/vggt/depth/image", "/vggt/points"):
        assert topics[t] == NUM_FRAMES
    assert odo_stamps == [int(s) for s in seq.stamps_ns] == depth_stamps
    ia, ib = associate(np.array(odo_stamps), seq.stamps_ns, 1)
    a = ate(np.stack(odo_poses)[ia], seq.world_T_camera[ib], align="sim3")
    assert a["n"] == NUM_FRAMES
    assert a["rmse"] == pytest.approx(m["trajectory"]["ate"]["rmse"], rel=0.05, abs=1e-7)
    assert a["rmse"] / m["trajectory"]["gt_length"] < ATE_BOUND_RELATIVE


def test_output_ate_with_evo(oracle_run, bags):  # noqa: F811
    """Optional third opinion (evo is GPL, an optional extra): same ATE on trajectory.tum vs GT."""
    pytest.importorskip("evo")
    from evo.core import metrics, sync
    from evo.tools import file_interface

    out, m = oracle_run
    est = file_interface.read_tum_trajectory_file(str(out / "trajectory.tum"))
    ref = file_interface.read_tum_trajectory_file(str(bags.gt))
    ref, est = sync.associate_trajectories(ref, est, max_diff=0.02)
    est.align(ref, correct_scale=True)
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((ref, est))
    rmse = ape.get_statistic(metrics.StatisticsType.rmse)
    assert rmse / m["trajectory"]["gt_length"] < ATE_BOUND_RELATIVE


def test_noisy_oracle_replay_matches_the_core(bags, tmp_path):  # noqa: F811
    """Same frames, same oracle noise: the replay reproduces the core's own run exactly."""
    noise = {"pose_noise_rot_deg": 0.5, "pose_noise_trans": 0.01, "depth_noise": 0.02}
    rc = main(
        [
            str(bags.mcap),
            "--out",
            str(tmp_path),
            "--predictor",
            "oracle",
            "--gt",
            str(bags.gt),
            *FAST,
            "--oracle-rot-noise-deg",
            "0.5",
            "--oracle-trans-noise",
            "0.01",
            "--oracle-depth-noise",
            "0.02",
            "--no-progress",
        ]
    )
    assert rc == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    params = load_params(None, {"predictor": "oracle", **FAST_PARAMS})
    pipe = StreamingPipeline(pipeline_config_from_params(params))
    oracle = OraclePredictor(
        bags.seq,
        preprocess_mode=params["preprocess_mode"],
        target_size=params["target_size"],
        seed=0,
        **noise,
    )
    stamps, poses = [], []
    for fr in bags.seq.to_frames(frame_id="camera_rgb_optical_frame"):
        assert pipe.add_frame(fr)
        while (job := pipe.next_window()) is not None:
            for f in pipe.run_window(job, oracle).frames:
                stamps.append(f.stamp_ns)
                poses.append(f.world_T_camera)
    while (job := pipe.flush()) is not None:
        for f in pipe.run_window(job, oracle).frames:
            stamps.append(f.stamp_ns)
            poses.append(f.world_T_camera)
    core = ate(np.stack(poses), bags.seq.world_T_camera, align="sim3")
    assert len(stamps) == NUM_FRAMES == m["frames_processed"]
    # noise shows (far above the noise-free bound) and the replay agrees with the core
    assert core["rmse"] / m["trajectory"]["gt_length"] > 1e-3
    assert m["trajectory"]["ate"]["rmse"] == pytest.approx(core["rmse"], rel=1e-4)
    assert m["trajectory"]["scale_factor"] == pytest.approx(core["scale"], rel=1e-4)
    # the pose graph's trajectory next to the odometry's: its file, its ATE, the summary line; the
    # same as the core's own graph gives (no loop in this short bag)
    opt = pipe.optimised_trajectory()
    core_opt = ate(np.stack([opt[s] for s in stamps]), bags.seq.world_T_camera, align="sim3")
    o = m["trajectory_optimised"]
    assert o["frames"] == NUM_FRAMES and o["loop_closures"] == 0
    assert o["ate"]["rmse"] == pytest.approx(core_opt["rmse"], rel=1e-4)
    assert o["ate"]["rmse"] != pytest.approx(m["trajectory"]["ate"]["rmse"], rel=1e-3)  # averaged
    tum_stamps, _ = read_tum(tmp_path / "trajectory_optimised.tum")
    assert len(tum_stamps) == NUM_FRAMES
    assert "ATE RMSE, pose graph (trajectory_optimised.tum)" in (tmp_path / "summary.md").read_text()


def test_batch_and_realtime(bags, tmp_path):  # noqa: F811
    """Two bags -> one subfolder each + summary table; --realtime at 1000x skips frames like a live node."""
    rc = main(
        [
            str(bags.db3),
            str(bags.mcap_file),
            "--out",
            str(tmp_path),
            "--predictor",
            "oracle",
            "--gt",
            str(bags.gt),
            *FAST,
            "--realtime",
            "1000",
            "--no-progress",
        ]
    )
    assert rc == 0
    rows = list(csv.DictReader(open(tmp_path / "summary.csv")))
    assert [r["bag"] for r in rows] == ["seq_db3", "seq_mcap"] and all(r["status"] == "ok" for r in rows)
    assert "| bag |" in (tmp_path / "summary.md").read_text()
    for r in rows:
        m = json.loads((tmp_path / r["bag"] / "metrics.json").read_text())
        assert m["mode"].startswith("realtime")
        # frames arrive every 33 us simulated, inference takes ms: the skip policy must have dropped frames
        assert m["pipeline_counters"]["skipped"] > 0
        assert m["frames_processed"] + m["pipeline_counters"]["skipped"] == NUM_FRAMES
        assert int(r["processed"]) == m["frames_processed"] < NUM_FRAMES
        assert float(r["ate_rmse"]) / m["trajectory"]["gt_length"] < ATE_BOUND_RELATIVE
        assert float(r["ate_rmse_optimised"]) == pytest.approx(m["trajectory_optimised"]["ate"]["rmse"])


def test_vggt_engine_replay_small_random_model(bags, tmp_path):  # noqa: F811
    """The default predictor path (build_engine -> InferenceEngine) runs through the replay. Random
    small weights: only the plumbing is checked (every frame out once, metrics written), not accuracy."""
    rc = main(
        [
            str(bags.mcap),
            "--out",
            str(tmp_path),
            "--predictor",
            "vggt",
            "--checkpoint",
            "",
            "--set",
            "model_config=small",
            "--set",
            "device=cpu",
            "--set",
            "dtype=float32",
            *FAST,
            "--gt",
            str(bags.gt),
            "--max-frames",
            "9",
            "--no-progress",
        ]
    )
    assert rc == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["predictor"] == "vggt" and m["frames_decoded"] == 9
    lost = m["pipeline_counters"].get("frames_lost_rejected", 0)
    assert m["frames_processed"] == 9 - lost and m["frames_processed"] >= 6  # the bootstrap defines the world
    stamps, _ = read_tum(tmp_path / "trajectory.tum")
    assert len(stamps) == m["frames_processed"]
    assert m["trajectory"]["matched"] == m["frames_processed"]


def test_loop_bag_replay_closes_the_loop(tmp_path):
    """An 8 m loop back to its start, replayed with the shipped defaults and a noisy oracle: the
    revisit is verified and closed, announced on loop_closures in the output bag, counted in
    metrics.json, and the pose graph's trajectory beats the odometry's."""
    from rosbags.highlevel import AnyReader

    from vggt_ros.sim.bags import write_groundtruth_tum, write_sequence_bag
    from vggt_ros.sim.sequences import make_sequence

    seq = make_sequence("loop", 163, 96, 128, fps=10.0, seed=0)
    bag = write_sequence_bag(seq, tmp_path / "loop", fmt="mcap")
    gt = write_groundtruth_tum(seq, tmp_path / "gt.tum")
    out = tmp_path / "out"
    noise = ["--oracle-rot-noise-deg", "0.5", "--oracle-trans-noise", "0.01", "--oracle-depth-noise", "0.02"]
    rc = main([str(bag), "--out", str(out), "--predictor", "oracle", "--gt", str(gt),
               "--set", "target_size=126", *noise, "--no-progress"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    odom, opt = m["trajectory"], m["trajectory_optimised"]
    assert opt["loop_closures"] >= 1 and m["pipeline_counters"]["loop_closures"] == opt["loop_closures"]
    assert opt["frames"] == odom["matched"] == len(seq)
    assert opt["ate"]["rmse"] < odom["ate"]["rmse"]
    with AnyReader([out / OUTPUT_BAG_NAME]) as r:
        conns = [c for c in r.connections if c.topic == "/vggt/loop_closures"]
        assert conns and conns[0].msgtype == "diagnostic_msgs/msg/DiagnosticArray"
        announced = [r.deserialize(raw, c.msgtype) for c, _, raw in r.messages(connections=conns)]
    assert sum(len(a.status) for a in announced) == opt["loop_closures"]
