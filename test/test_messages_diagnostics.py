"""DiagnosticStatus / DiagnosticArray fields (vggt_ros.messages.diagnostics).

Messages are checked against the real ROS 2 message definitions: built as rosbags messages and
serialised to CDR, and as rclpy messages (ROS_PYTHON_CHECK_FIELDS=1, set in conftest.py); all
comparisons are by value, never by CDR bytes.
"""

from __future__ import annotations

import pytest

from vggt_ros.messages.diagnostics import diagnostic_status_fields


def test_diagnostics_fields():
    s = diagnostic_status_fields(
        "n", {"f": 0.5, "b": False, "i": 7, "s": "x"}, level="error", message="m"
    )
    assert s["level"] == 2
    assert s["values"] == [
        {"key": "f", "value": "0.5"},
        {"key": "b", "value": "false"},
        {"key": "i", "value": "7"},
        {"key": "s", "value": "x"},
    ]
    with pytest.raises(ValueError, match="level"):
        diagnostic_status_fields("n", {}, level=7)
    with pytest.raises(ValueError, match="level"):
        diagnostic_status_fields("n", {}, level="fatal")
