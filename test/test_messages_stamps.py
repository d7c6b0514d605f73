"""Time and Header fields (vggt_ros.messages.stamps).

Messages are checked against the real ROS 2 message definitions: built as rosbags messages and
serialised to CDR, and as rclpy messages (ROS_PYTHON_CHECK_FIELDS=1, set in conftest.py); all
comparisons are by value, never by CDR bytes.
"""

from __future__ import annotations

import pytest
from message_samples import STAMP

from vggt_ros.messages.stamps import ns_to_stamp, stamp_ns_of, stamp_to_ns


@pytest.mark.parametrize("ns", [0, 1, 999_999_999, 1_000_000_000, STAMP, -1, -1_500_000_000])
def test_stamps(ns):
    sec, nanosec = ns_to_stamp(ns)
    assert 0 <= nanosec < 1_000_000_000
    assert stamp_to_ns(sec, nanosec) == ns
    assert stamp_ns_of({"header": {"stamp": {"sec": sec, "nanosec": nanosec}}}) == ns


def test_stamp_overflow_and_lookup():
    with pytest.raises(ValueError, match="int32"):
        ns_to_stamp(2**31 * 1_000_000_000)
    assert ns_to_stamp(STAMP) == (1_700_000_123, 456_789_012)
    with pytest.raises(TypeError, match="stamp"):
        stamp_ns_of(object())
