"""Fields -> rclpy / rosbags messages and back (vggt_ros.messages.builders), for every family at once.

Messages are checked against the real ROS 2 message definitions: built as rosbags messages and
serialised to CDR, and as rclpy messages (ROS_PYTHON_CHECK_FIELDS=1, set in conftest.py); all
comparisons are by value, never by CDR bytes.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from message_samples import (
    RNG,
    STAMP,
    assert_fields_match,
    cases,
    make_typestore,
    random_pose,
    rclpy_class,
    rosbags_typesys,
    sample_tracks,
)

from vggt_ros.messages.builders import msg_to_fields, to_rclpy, to_rosbags
from vggt_ros.messages.poses import odometry_fields
from vggt_ros.messages.tracks import KEYPOINT_TRACKS_TYPE, keypoint_tracks_msg_to_output


@pytest.fixture(scope="module")
def typestore():
    return make_typestore()


def test_check_fields_enabled():
    assert os.environ.get("ROS_PYTHON_CHECK_FIELDS") == "1"


@pytest.mark.parametrize("case", range(len(cases())))
def test_rosbags_cdr_roundtrip(typestore, case):
    msgtype, _, fields = cases()[case]
    msg = to_rosbags(typestore, msgtype, fields)
    back = typestore.deserialize_cdr(typestore.serialize_cdr(msg, msgtype), msgtype)
    assert_fields_match(fields, msg_to_fields(back))


@pytest.mark.parametrize("case", [i for i, c in enumerate(cases()) if c[1]])
def test_rclpy_build_and_serialize(typestore, case):
    """rclpy message with strict field checks, serialised by rclpy's C type support, read by rosbags."""
    from rclpy.serialization import deserialize_message, serialize_message

    msgtype, cls_path, fields = cases()[case]
    cls = rclpy_class(cls_path)
    msg = to_rclpy(cls, fields)
    assert_fields_match(fields, msg_to_fields(msg))
    raw = serialize_message(msg)
    assert_fields_match(fields, msg_to_fields(typestore.deserialize_cdr(raw, msgtype)))
    assert_fields_match(fields, msg_to_fields(deserialize_message(raw, cls)))


def test_mcap_decoded_independently(typestore, tmp_path):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    from rosbags.rosbag2 import StoragePlugin, Writer

    all_cases = cases()
    with Writer(tmp_path / "bag", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for i, (msgtype, _, fields) in enumerate(all_cases):
            con = writer.add_connection(f"/topic{i}", msgtype, typestore=typestore)
            writer.write(
                con, STAMP + i, typestore.serialize_cdr(to_rosbags(typestore, msgtype, fields), msgtype)
            )
    (mcap_path,) = (tmp_path / "bag").glob("*.mcap")
    seen = set()
    with open(mcap_path, "rb") as fh:
        reader = make_reader(fh, decoder_factories=[DecoderFactory()])
        for schema, channel, _message, decoded in reader.iter_decoded_messages():
            i = int(channel.topic.removeprefix("/topic"))
            assert schema.name == all_cases[i][0]
            assert_fields_match(all_cases[i][2], msg_to_fields(decoded), f"mcap {channel.topic}")
            seen.add(i)
            if schema.name == KEYPOINT_TRACKS_TYPE:
                tracks = keypoint_tracks_msg_to_output(decoded)
                ref = sample_tracks()
                np.testing.assert_array_equal(
                    tracks.positions,
                    keypoint_tracks_msg_to_output(
                        to_rosbags(typestore, schema.name, all_cases[i][2])
                    ).positions,
                )
                assert tracks.positions.shape == ref.positions.shape
    assert seen == set(range(len(all_cases)))


def test_builders_reject_unknown_fields(typestore):
    import sensor_msgs.msg

    with pytest.raises(KeyError, match="colour"):
        to_rosbags(typestore, "sensor_msgs/msg/Image", {"colour": 1})
    with pytest.raises(KeyError, match="colour"):
        to_rclpy(sensor_msgs.msg.Image, {"colour": 1})
    with pytest.raises(KeyError, match="register_custom_types"):
        to_rosbags(
            rosbags_typesys.get_typestore(rosbags_typesys.Stores.ROS2_JAZZY), KEYPOINT_TRACKS_TYPE, {}
        )
    with pytest.raises(ValueError, match="9"):
        to_rclpy(sensor_msgs.msg.CameraInfo, {"k": np.zeros(4)})


def test_cross_flavour_conversion(typestore):
    """rclpy message -> fields -> rosbags message: the generic path the bag tools use."""
    import nav_msgs.msg

    fields = odometry_fields(random_pose(RNG), STAMP, "odom", "base", pose_covariance=np.eye(6))
    rcl = to_rclpy(nav_msgs.msg.Odometry, fields)
    rb = to_rosbags(typestore, "nav_msgs/msg/Odometry", msg_to_fields(rcl))
    assert_fields_match(fields, msg_to_fields(rb))
