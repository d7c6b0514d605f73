"""Pose, Transform, Odometry and Path fields and back (vggt_ros.messages.poses).

Messages are checked against the real ROS 2 message definitions: built as rosbags messages and
serialised to CDR, and as rclpy messages (ROS_PYTHON_CHECK_FIELDS=1, set in conftest.py); all
comparisons are by value, never by CDR bytes.
"""

from __future__ import annotations

import numpy as np
import pytest
from message_samples import STAMP, make_typestore, random_pose

from vggt_ros.messages.builders import to_rosbags
from vggt_ros.messages.poses import (
    matrix_to_translation_quaternion,
    odometry_fields,
    path_fields,
    pose_msg_to_matrix,
    transform_msg_to_matrix,
    transform_stamped_fields,
    translation_quaternion_to_matrix,
)


@pytest.fixture(scope="module")
def typestore():
    return make_typestore()


def test_pose_roundtrip():
    rng = np.random.default_rng(3)
    for _ in range(20):
        T = random_pose(rng)
        t, q = matrix_to_translation_quaternion(T)
        assert q[3] >= 0 and abs(np.linalg.norm(q) - 1) < 1e-12
        np.testing.assert_allclose(translation_quaternion_to_matrix(t, q), T, atol=1e-12)
    t, q = matrix_to_translation_quaternion(np.eye(4))
    np.testing.assert_array_equal(q, [0, 0, 0, 1])
    # 90 degrees about z: x axis -> y axis
    Rz = np.eye(4)
    Rz[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    np.testing.assert_allclose(
        matrix_to_translation_quaternion(Rz)[1], [0, 0, np.sqrt(0.5), np.sqrt(0.5)]
    )
    with pytest.raises(ValueError, match="4x4"):
        matrix_to_translation_quaternion(np.eye(3))
    with pytest.raises(ValueError, match="quaternion"):
        translation_quaternion_to_matrix([0, 0, 0], [0, 0, 0, 0])


def test_pose_messages_back_to_matrix(typestore):
    T = random_pose(np.random.default_rng(5))
    tf = to_rosbags(
        typestore, "geometry_msgs/msg/TransformStamped", transform_stamped_fields(T, STAMP, "map", "cam")
    )
    tf = typestore.deserialize_cdr(typestore.serialize_cdr(tf, tf.__msgtype__), tf.__msgtype__)
    assert (tf.header.frame_id, tf.child_frame_id) == ("map", "cam")
    np.testing.assert_allclose(transform_msg_to_matrix(tf.transform), T, atol=1e-12)
    odom = to_rosbags(typestore, "nav_msgs/msg/Odometry", odometry_fields(T, STAMP, "odom", "base"))
    np.testing.assert_allclose(pose_msg_to_matrix(odom.pose.pose), T, atol=1e-12)
    np.testing.assert_array_equal(odom.pose.covariance, np.zeros(36))
    path = path_fields([T, np.eye(4)], [5, 6], "map")
    assert path["header"]["stamp"] == {"sec": 0, "nanosec": 6}
    with pytest.raises(ValueError, match="stamps"):
        path_fields([T], [1, 2], "map")
    with pytest.raises(ValueError, match="36"):
        odometry_fields(T, STAMP, "odom", "base", pose_covariance=np.eye(3))
