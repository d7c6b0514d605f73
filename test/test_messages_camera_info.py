"""CameraInfo fields and intrinsics (vggt_ros.messages.camera_info).

Messages are checked against the real ROS 2 message definitions: built as rosbags messages and
serialised to CDR, and as rclpy messages (ROS_PYTHON_CHECK_FIELDS=1, set in conftest.py); all
comparisons are by value, never by CDR bytes.
"""

from __future__ import annotations

import numpy as np
import pytest
from message_samples import STAMP, K

from vggt_ros.messages.camera_info import UncalibratedCamera, camera_info_fields, camera_info_to_intrinsics


def test_camera_info_fields_and_back():
    f = camera_info_fields(K, 480, 640, STAMP, "cam")
    assert f["distortion_model"] == "plumb_bob"
    np.testing.assert_array_equal(f["d"], np.zeros(5))
    np.testing.assert_array_equal(f["r"], np.eye(3).ravel())
    np.testing.assert_array_equal(np.asarray(f["p"]).reshape(3, 4), np.hstack([K, np.zeros((3, 1))]))
    K2, hw = camera_info_to_intrinsics(f["k"], f["height"], f["width"])
    np.testing.assert_array_equal(K2, K)
    assert hw == (480, 640)
    with pytest.raises(UncalibratedCamera, match="no valid intrinsics"):
        camera_info_to_intrinsics(np.zeros(9), 480, 640)
    with pytest.raises(ValueError, match="3x3"):
        camera_info_fields(np.eye(4), 480, 640, STAMP, "cam")
