"""The node and the replay run the same code: the same frames through the real rclpy node and through
the bag replay give the same messages, compared by value, on the same topics and types."""

from __future__ import annotations

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from test_ros_node import CAM, TARGET, Harness, wait_for  # noqa: E402

from vggt_ros.bag.replay import OUTPUT_BAG_NAME, ReplayOptions, load_params, replay_bag  # noqa: E402
from vggt_ros.core.oracle import OraclePredictor  # noqa: E402
from vggt_ros.messages.builders import msg_to_fields, to_rclpy  # noqa: E402
from vggt_ros.messages.camera_info import camera_info_fields  # noqa: E402
from vggt_ros.messages.stamps import stamp_ns_of  # noqa: E402
from vggt_ros.sim.bags import write_sequence_bag  # noqa: E402
from vggt_ros.sim.sequences import make_sequence  # noqa: E402

H, W = 120, 160
N = 12  # bootstrap 6 + two windows of 3: no end-of-stream flush, which a live node never does
PARAMS = dict(predictor="oracle", checkpoint="", window_size=6, stride=3, skip_policy="keep_all",
              num_track_queries=8, publish_confidence=True, publish_depth_rgb=True, target_size=TARGET,
              camera_frame=CAM, scale_source="fixed", fixed_scale=1.0,
              odom_frame="odom", base_frame="base_link")  # the defaults; no mount in TF: our own frame
COMPARED = ("odometry", "depth/image", "depth/camera_info", "depth/confidence", "depth/rgb", "points")




def assert_same(a, b, where: str = "msg") -> None:
    """Recursive equality of two field trees (dicts, lists, arrays, scalars) from msg_to_fields."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: fields {sorted(a)} vs {sorted(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
        return
    if isinstance(a, (list, tuple)) and a and isinstance(a[0], dict):
        assert len(a) == len(b), f"{where}: {len(a)} vs {len(b)} elements"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
        return
    if isinstance(a, (bytes, bytearray)) or isinstance(b, (bytes, bytearray)):
        a = np.frombuffer(bytes(a), np.uint8) if isinstance(a, (bytes, bytearray)) else np.asarray(a)
        b = np.frombuffer(bytes(b), np.uint8) if isinstance(b, (bytes, bytearray)) else np.asarray(b)
    if isinstance(a, str) or isinstance(b, str):
        assert a == b, f"{where}: {a!r} vs {b!r}"
        return
    np.testing.assert_array_equal(np.asarray(a).reshape(-1), np.asarray(b).reshape(-1), err_msg=where)


def read_bag(path) -> tuple[dict[str, list], dict[str, str]]:
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    from vggt_ros.messages.tracks import register_custom_types

    ts = get_typestore(Stores.ROS2_JAZZY)
    register_custom_types(ts)
    msgs: dict[str, list] = {}
    with AnyReader([path], default_typestore=ts) as r:
        types = {c.topic: c.msgtype for c in r.connections}
        for conn, _t, raw in r.messages():
            msgs.setdefault(conn.topic, []).append(r.deserialize(raw, conn.msgtype))
    return msgs, types


def test_node_and_replay_publish_the_same_messages(ctx, tmp_path):
    seq = make_sequence("orbit", N, height=H, width=W, fps=10.0)
    bag = write_sequence_bag(seq, tmp_path / "in", fmt="mcap")
    opts = ReplayOptions(params=load_params(None, PARAMS), predictor=OraclePredictor(seq, target_size=TARGET))
    replay_bag(bag, tmp_path / "out", opts)
    written, types = read_bag(tmp_path / "out" / OUTPUT_BAG_NAME)

    h = Harness(ctx, "/vggt", dict(PARAMS), predictor=OraclePredictor(seq, target_size=TARGET))
    try:
        # the intrinsics first: an image that overtook its CameraInfo would use predicted intrinsics
        h.info_pub.publish(to_rclpy(h.CameraInfo, camera_info_fields(seq.K, H, W, 0, CAM)))
        wait_for(lambda: h.node.stats().get("camera_infos", 0) >= 1, 5.0, "camera_info")
        h.play(seq, range(N))
        wait_for(lambda: all(len(h.got(t)) == N for t in COMPARED), 30.0, h.state)
        wait_for(lambda: len(h.got("tracks")) == 3 and h.got("path")
                 and len(h.got("path")[-1].poses) == N and h.got("map")
                 and stamp_ns_of(h.got("map")[-1]) == int(seq.stamps_ns[-1]) and h.got("grid")
                 and stamp_ns_of(h.got("grid")[-1]) == int(seq.stamps_ns[-1]), 10.0,
                 "tracks, the whole path, the map and the grid of every frame")
        # topics and types: what the replay writes is what the node publishes
        node_topics = {name: t[0] for name, t in h.node.get_publisher_names_and_types_by_node(
            "vggt_node", "/vggt")
            if name not in ("/rosout", "/parameter_events", "/vggt/vggt_node/transition_event")}  # ROS's own
        # (loop_closures is advertised by the node and written by the replay when a loop closes:
        # none in this short orbit)
        assert node_topics.items() >= types.items()
        assert set(node_topics) - set(types) == {"/vggt/loop_closures"}

        for topic in COMPARED:
            got = sorted(h.got(topic), key=stamp_ns_of)
            want = written[f"/vggt/{topic}"]
            assert [stamp_ns_of(m) for m in got] == [stamp_ns_of(m) for m in want] == \
                [int(s) for s in seq.stamps_ns]
            for a, b in zip(got, want, strict=True):
                assert_same(msg_to_fields(a), msg_to_fields(b), topic)
        # the builder's TF: each frame's odom -> camera and each window's map -> odom (the periodic
        # republication of the latest map -> odom, stamped now, is the node's alone)
        tfs = [t for t in h.tf() if stamp_ns_of(t) <= int(seq.stamps_ns[-1])]
        want_tf = [t for m in written["/tf"] for t in m.transforms]
        assert len(tfs) == len(want_tf) == N + 3
        for a, b in zip(tfs, want_tf, strict=True):
            assert_same(msg_to_fields(a), msg_to_fields(b), "tf")
        for a, b in zip(h.got("tracks"), written["/vggt/tracks"], strict=True):
            assert_same(msg_to_fields(a), msg_to_fields(b), "tracks")
        assert_same(msg_to_fields(h.got("path")[-1]), msg_to_fields(written["/vggt/path"][-1]), "path")
        assert_same(msg_to_fields(h.got("map")[-1]), msg_to_fields(written["/vggt/map"][-1]), "map")
        assert_same(msg_to_fields(h.got("grid")[-1]), msg_to_fields(written["/vggt/grid"][-1]), "grid")
    finally:
        h.close()
