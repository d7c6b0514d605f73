"""The output plan and builder: the table, the serialised Path, bounded accumulating outputs."""

from __future__ import annotations

import numpy as np
import pytest

from vggt_ros.messages.poses import path_fields
from vggt_ros.outputs.path_cdr import PathCdr
from vggt_ros.outputs.plan import OUTPUTS, enabled_outputs, full_topic
from vggt_ros.params.table import PARAMS_BY_NAME
from vggt_ros.params.validation import validate_params


def _poses(n: int, seed: int = 0) -> list[np.ndarray]:
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        T = np.eye(4)
        T[:3, :3] = Rotation.from_rotvec(rng.normal(size=3)).as_matrix()
        T[:3, 3] = rng.normal(size=3) * 10
        out.append(T)
    return out


@pytest.mark.parametrize("frame_id", ["m", "map", "odom", "world_frame", "a/b/c/d/e/f/g"])
@pytest.mark.parametrize("n", [0, 1, 2, 5])
def test_serialised_path_is_byte_identical_to_the_generic_serialisers(frame_id, n):
    from rosbags.typesys import Stores, get_typestore

    from vggt_ros.messages.builders import to_rosbags

    ts = get_typestore(Stores.ROS2_JAZZY)
    poses, stamps = _poses(n), [1_700_000_000_123_456_789 + 33_333_333 * i for i in range(n)]
    path = PathCdr(frame_id, None)
    for T, s in zip(poses, stamps, strict=True):
        path.add(T, s)
    fields = path_fields(poses, stamps, frame_id, 42_000_000_007)
    want = ts.serialize_cdr(to_rosbags(ts, "nav_msgs/msg/Path", fields), "nav_msgs/msg/Path")
    assert path.serialize(42_000_000_007) == bytes(want)


def test_serialised_path_is_what_rclpy_serialises_and_keeps_the_newest_poses():
    rclpy_serialization = pytest.importorskip("rclpy.serialization")
    from nav_msgs.msg import Path

    from vggt_ros.messages.builders import to_rclpy

    poses, stamps = _poses(7, seed=1), list(range(100, 107))
    path = PathCdr("map", 4)
    for T, s in zip(poses, stamps, strict=True):
        path.add(T, s)
    assert len(path) == 4
    msg = to_rclpy(Path, path_fields(poses[3:], stamps[3:], "map", 106))
    raw = path.serialize(106)
    assert len(raw) == len(rclpy_serialization.serialize_message(msg))  # same layout (padding bytes of
    back = rclpy_serialization.deserialize_message(raw, Path)  # Fast CDR are not zeroed, so by value)
    assert back == msg
    assert [p.header.stamp.nanosec for p in back.poses] == stamps[3:]


def test_the_plan_names_real_parameters_and_follows_them():
    for o in OUTPUTS:
        assert PARAMS_BY_NAME[o.enabled_by].type is bool
        if o.period_param:
            assert PARAMS_BY_NAME[o.period_param].type is float
    params = validate_params({"predictor": "oracle", "checkpoint": ""})
    keys = {o.key for o in enabled_outputs(params)}
    assert "tracks" not in keys and "confidence" not in keys and {"tf", "odometry", "path", "map"} <= keys
    params = validate_params({"predictor": "oracle", "checkpoint": "", "num_track_queries": 4,
                              "publish_path": False})
    keys = {o.key for o in enabled_outputs(params)}
    assert "tracks" in keys and "path" not in keys
    topics = {o.key: full_topic(o, "/vggt") for o in OUTPUTS}
    assert topics["tf"] == "/tf" and topics["odometry"] == "/vggt/odometry"
    assert topics["diagnostics"] == "/diagnostics" and full_topic(OUTPUTS[1], "") == "/odometry"
