"""Loop closure announcements as ``diagnostic_msgs/DiagnosticArray`` (topic ``loop_closures``).

Why a standard message: every ROS 2 tool can echo, record and filter it without our interface
package, and one status per closure carries everything a listener needs as key/values: which
keyframes were linked (stamps), how confident the match was, the measured relative pose and how far
the ``map -> odom`` correction moved.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from vggt_ros.messages.diagnostics import diagnostic_array_fields, diagnostic_status_fields
from vggt_ros.messages.stamps import Fields

LOOP_STATUS_NAME = "vggt_ros: loop closure"


def loop_closure_fields(closures: Sequence[Any], stamp_ns: int, frame_id: str = "") -> Fields:
    """One status per :class:`vggt_ros.graph.loop_closure.LoopClosure` (output units), stamped with the
    window that accepted them."""
    statuses = []
    for c in closures:
        T = np.asarray(c.match_T_query, np.float64)
        q = Rotation.from_matrix(T[:3, :3]).as_quat()
        values = {
            "index": c.index, "query_stamp_ns": c.query_stamp_ns, "match_stamp_ns": c.match_stamp_ns,
            "score": c.score, "overlap": c.overlap,
            "correction_translation": c.correction_translation,
            "correction_rotation_deg": c.correction_rotation_deg,
            "relative_x": T[0, 3], "relative_y": T[1, 3], "relative_z": T[2, 3],
            "relative_qx": q[0], "relative_qy": q[1], "relative_qz": q[2], "relative_qw": q[3],
            "verify_s": c.seconds,
        }
        msg = f"keyframe {c.query_stamp_ns} -> {c.match_stamp_ns}"
        statuses.append(diagnostic_status_fields(LOOP_STATUS_NAME, values, 0, msg))
    return diagnostic_array_fields(statuses, stamp_ns, frame_id)
