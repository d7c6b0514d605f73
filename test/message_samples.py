"""Shared samples for the test_messages_* files: message cases of every family, a typestore with
the custom types, and a field-by-field comparison."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vggt_ros.core.types import TrackOutput
from vggt_ros.messages.camera_info import camera_info_fields
from vggt_ros.messages.diagnostics import diagnostic_array_fields, diagnostic_status_fields
from vggt_ros.messages.images import confidence_image_fields, depth_image_fields, rgb_image_fields
from vggt_ros.messages.point_clouds import pointcloud2_fields
from vggt_ros.messages.poses import (
    odometry_fields,
    path_fields,
    pose_stamped_fields,
    transform_stamped_fields,
)
from vggt_ros.messages.tracks import KEYPOINT_TRACKS_TYPE, keypoint_tracks_fields, register_custom_types

rosbags_typesys = pytest.importorskip("rosbags.typesys")


def make_typestore():
    ts = rosbags_typesys.get_typestore(rosbags_typesys.Stores.ROS2_JAZZY)
    register_custom_types(ts)
    return ts


RNG = np.random.default_rng(7)
K = np.array([[525.0, 0.0, 319.5], [0.0, 523.0, 239.5], [0.0, 0.0, 1.0]])
STAMP = 1_700_000_123_456_789_012


def random_pose(rng: np.random.Generator) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=rng.integers(1 << 30)).as_matrix()
    T[:3, 3] = rng.normal(size=3) * 3
    return T


def sample_tracks() -> TrackOutput:
    s, n = 4, 5
    return TrackOutput(
        stamps_ns=[STAMP + i * 33_000_000 for i in range(s)],
        query_frame_index=1,
        track_ids=np.arange(100, 100 + n, dtype=np.int64),
        positions=RNG.uniform(0, 640, size=(s, n, 2)).astype(np.float32),
        visibility=RNG.uniform(size=(s, n)).astype(np.float32),
        confidence=RNG.uniform(size=(s, n)).astype(np.float32),
        frame_id="camera_optical_frame",
    )


def sample_depth() -> np.ndarray:
    d = RNG.uniform(0.5, 5.0, size=(6, 7)).astype(np.float32)
    d[0, 0] = np.nan
    d[3, 4] = np.nan
    return d


def cases() -> list[tuple[str, str, dict]]:
    """(rosbags type, rclpy module.Class or '' if no rclpy wheel, fields)."""
    pts = RNG.normal(size=(9, 3)).astype(np.float32)
    cols = RNG.integers(0, 256, size=(9, 3), dtype=np.uint8)
    poses = [random_pose(RNG) for _ in range(3)]
    return [
        (
            "sensor_msgs/msg/Image",
            "sensor_msgs.msg.Image",
            rgb_image_fields(RNG.integers(0, 256, (5, 4, 3), dtype=np.uint8), STAMP, "cam"),
        ),
        (
            "sensor_msgs/msg/Image",
            "sensor_msgs.msg.Image",
            depth_image_fields(sample_depth(), STAMP, "cam"),
        ),
        (
            "sensor_msgs/msg/Image",
            "sensor_msgs.msg.Image",
            confidence_image_fields(RNG.uniform(1, 9, (6, 7)).astype(np.float32), STAMP, "cam"),
        ),
        (
            "sensor_msgs/msg/CameraInfo",
            "sensor_msgs.msg.CameraInfo",
            camera_info_fields(K, 480, 640, STAMP, "cam"),
        ),
        (
            "sensor_msgs/msg/PointCloud2",
            "sensor_msgs.msg.PointCloud2",
            pointcloud2_fields(pts, cols, STAMP, "cam"),
        ),
        (
            "sensor_msgs/msg/PointCloud2",
            "sensor_msgs.msg.PointCloud2",
            pointcloud2_fields(pts, None, STAMP, "map"),
        ),
        (
            "geometry_msgs/msg/TransformStamped",
            "geometry_msgs.msg.TransformStamped",
            transform_stamped_fields(poses[0], STAMP, "map", "cam"),
        ),
        (
            "geometry_msgs/msg/PoseStamped",
            "geometry_msgs.msg.PoseStamped",
            pose_stamped_fields(poses[1], STAMP, "map"),
        ),
        (
            "nav_msgs/msg/Odometry",
            "nav_msgs.msg.Odometry",
            odometry_fields(poses[2], STAMP, "map", "cam", pose_covariance=np.diag(np.arange(1.0, 7.0))),
        ),
        (
            "nav_msgs/msg/Path",
            "nav_msgs.msg.Path",
            path_fields(poses, [STAMP + i for i in range(3)], "map"),
        ),
        (
            "tf2_msgs/msg/TFMessage",
            "",  # no tf2_msgs wheel: rosbags only
            {
                "transforms": [
                    transform_stamped_fields(T, STAMP, "map", f"c{i}") for i, T in enumerate(poses)
                ]
            },
        ),
        (
            "diagnostic_msgs/msg/DiagnosticArray",
            "diagnostic_msgs.msg.DiagnosticArray",
            diagnostic_array_fields(
                [
                    diagnostic_status_fields(
                        "vggt: window",
                        {"latency_s": 0.123456789, "ok": True, "n": 3},
                        level="WARN",
                        message="slow",
                        hardware_id="gpu0",
                    ),
                    diagnostic_status_fields("vggt: map", {}, level=0),
                ],
                STAMP,
            ),
        ),
        (KEYPOINT_TRACKS_TYPE, "", keypoint_tracks_fields(sample_tracks())),
    ]


def assert_fields_match(expected, actual, path="msg"):
    """Every field in ``expected`` equals the one in ``actual`` (actual may hold more defaults)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected a message, got {type(actual)}"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} missing"
            assert_fields_match(value, actual[key], f"{path}.{key}")
        return
    if isinstance(expected, (list, tuple)) and (not expected or isinstance(expected[0], dict)):
        actual = list(actual)
        assert len(actual) == len(expected), f"{path}: length {len(actual)} != {len(expected)}"
        for i, (e, a) in enumerate(zip(expected, actual)):
            assert_fields_match(e, a, f"{path}[{i}]")
        return
    if isinstance(expected, np.ndarray):
        a = np.asarray(actual).reshape(-1)
        e = expected.reshape(-1)
        assert a.size == e.size, f"{path}: size {a.size} != {e.size}"
        if e.dtype.kind in "iub":
            np.testing.assert_array_equal(a.astype(np.int64), e.astype(np.int64), err_msg=path)
        else:
            np.testing.assert_array_equal(a.astype(np.float64), e.astype(np.float64), err_msg=path)
        return
    if isinstance(expected, float):
        assert float(actual) == expected, f"{path}: {actual} != {expected}"
        return
    assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def rclpy_class(path: str):
    mod, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(mod), name)
