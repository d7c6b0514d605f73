"""Thin stand-ins for the ROS pieces that have no PyPI wheels (tf2_ros, the built KeypointTracks
message), injected into the real rclpy node through its factory arguments."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from vggt_ros.messages.builders import to_rclpy
from vggt_ros.messages.poses import transform_stamped_fields
from vggt_ros.messages.tracks import keypoint_tracks_schema


class RecordingTfBroadcaster:
    """Records what ``tf2_ros.TransformBroadcaster.sendTransform`` would have sent."""

    def __init__(self, node: Any = None) -> None:
        self.lock = threading.Lock()
        self.transforms: list[Any] = []  # geometry_msgs/TransformStamped

    def sendTransform(self, transforms: Any) -> None:  # noqa: N802 - tf2_ros name
        if not isinstance(transforms, (list, tuple)):
            transforms = [transforms]
        with self.lock:
            self.transforms.extend(transforms)

    def snapshot(self) -> list[Any]:
        with self.lock:
            return list(self.transforms)


class LookupFailed(Exception):
    """What tf2 raises when a transform is unknown (LookupException in tf2_ros)."""


class FunctionTfBuffer:
    """``lookup_transform(target, source, time, timeout)`` answered by python functions of the stamp.

    transforms: {(target, source): 4x4 or callable(stamp_ns) -> 4x4 target_T_source}.
    """

    def __init__(self, transforms: dict[tuple[str, str], Any]) -> None:
        self.transforms = transforms
        self.calls: list[tuple[str, str, int]] = []

    def lookup_transform(self, target: str, source: str, time: Any, timeout: Any = None) -> Any:
        from geometry_msgs.msg import TransformStamped

        stamp_ns = int(time.nanoseconds)
        self.calls.append((target, source, stamp_ns))
        if (target, source) not in self.transforms:
            raise LookupFailed(f"no transform {target} <- {source}")
        T = self.transforms[(target, source)]
        T = T(stamp_ns) if callable(T) else T
        return to_rclpy(TransformStamped, transform_stamped_fields(np.asarray(T), stamp_ns, target,
                                                                   source))


# .msg field type -> the type name rosidl generates for it (only the types KeypointTracks uses).
_ROSIDL_TYPES = {
    "std_msgs/Header": "std_msgs/Header",
    "builtin_interfaces/Time[]": "sequence<builtin_interfaces/Time>",
    "uint32": "uint32",
    "int64[]": "sequence<int64>",
    "float32[]": "sequence<float>",
}
# Field types of msg/KeypointTracks.msg as rosidl would generate them, read from the .msg itself.
KEYPOINT_TRACKS_FIELD_TYPES = {name: _ROSIDL_TYPES[ftype] for ftype, name in keypoint_tracks_schema()}


class KeypointTracks:
    """Stand-in for the generated ``vggt_ros.msg.KeypointTracks`` class (fields only)."""

    __slots__ = tuple(KEYPOINT_TRACKS_FIELD_TYPES)

    def __init__(self, **kwargs: Any) -> None:
        for name in KEYPOINT_TRACKS_FIELD_TYPES:
            setattr(self, name, kwargs.pop(name, None))
        if kwargs:
            raise TypeError(f"KeypointTracks has no fields {sorted(kwargs)}")

    @classmethod
    def get_fields_and_field_types(cls) -> dict[str, str]:
        return dict(KEYPOINT_TRACKS_FIELD_TYPES)


class RecordingPublisher:
    """Stands in for an rclpy publisher of a message type without type support."""

    def __init__(self, node: Any = None, msg_type: Any = None, topic: str = "", qos: Any = None) -> None:
        self.topic = topic
        self.lock = threading.Lock()
        self.messages: list[Any] = []

    def publish(self, msg: Any) -> None:
        with self.lock:
            self.messages.append(msg)

    def snapshot(self) -> list[Any]:
        with self.lock:
            return list(self.messages)
