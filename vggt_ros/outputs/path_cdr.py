"""nav_msgs/Path as CDR bytes assembled from per-pose pieces serialised once.

Why: a Path carries every kept pose, so building and serialising it as a message costs O(poses) in
Python each time (about 70 ms with rclpy and 100 ms with rosbags at 10,000 poses): a long stream would
slow down the node. Here each pose is encoded once when it arrives; a Path message is the header
plus a join of the stored pieces (a memory copy). rclpy publishes the bytes as they are
(``Publisher.publish(bytes)``) and the bag writer stores them, so node and replay send the same bytes.

Encoding: XCDR1 little-endian (encapsulation ``00 01 00 00``), alignment relative to the payload.
A ``PoseStamped``'s float64 part is 8-aligned, so its padding depends on where the element starts:
each pose keeps its encoding for a start at 0 and at 4 modulo 8.
"""

from __future__ import annotations

import struct
from collections import deque

import numpy as np

from vggt_ros.messages.poses import matrix_to_translation_quaternion
from vggt_ros.messages.stamps import ns_to_stamp

ENCAPSULATION = b"\x00\x01\x00\x00"  # CDR, little endian


def _string(text: str) -> bytes:
    raw = text.encode("utf-8") + b"\x00"
    return struct.pack("<I", len(raw)) + raw


def _header(stamp_ns: int, frame_id: str) -> bytes:
    """std_msgs/Header starting 4-aligned (it needs no more): Time then the frame id."""
    sec, nanosec = ns_to_stamp(stamp_ns)
    return struct.pack("<iI", sec, nanosec) + _string(frame_id)


def _pose_stamped(header: bytes, T: np.ndarray, start_mod8: int) -> bytes:
    t, q = matrix_to_translation_quaternion(T)
    pad = -(start_mod8 + len(header)) % 8
    return header + b"\x00" * pad + struct.pack("<7d", *t, *q)


class PathCdr:
    """The poses of a Path (at most ``max_poses``, oldest dropped; None = unbounded).

    A pose piece ends 8-aligned whatever its start, so only the first element can start at 4 modulo
    8: every later one uses its 0-aligned encoding, and the body is one ``join`` of those.
    """

    def __init__(self, frame_id: str, max_poses: int | None) -> None:
        self.frame_id = frame_id
        self._at0: deque[bytes] = deque(maxlen=max_poses)
        self._at4: deque[bytes] = deque(maxlen=max_poses)

    def __len__(self) -> int:
        return len(self._at0)

    def add(self, T: np.ndarray, stamp_ns: int) -> None:
        """Append a pose (4x4 ``frame_id <- pose``) stamped ``stamp_ns``."""
        header = _header(stamp_ns, self.frame_id)
        self._at0.append(_pose_stamped(header, T, 0))
        self._at4.append(_pose_stamped(header, T, 4))

    def clear(self) -> None:
        self._at0.clear()
        self._at4.clear()

    def serialize(self, stamp_ns: int) -> bytes:
        """The whole Path, header stamped ``stamp_ns``, as a serialised ROS 2 message."""
        head = _header(stamp_ns, self.frame_id)
        head += b"\x00" * (-len(head) % 4) + struct.pack("<I", len(self._at0))
        if not self._at0 or len(head) % 8 == 0:
            return b"".join((ENCAPSULATION, head, *self._at0))
        body = b"".join(self._at0)
        return b"".join((ENCAPSULATION, head, self._at4[0], memoryview(body)[len(self._at0[0]):]))
