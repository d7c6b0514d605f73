"""Thin stand-ins for the ROS pieces that have no PyPI wheels (tf2_ros, the built KeypointTracks
message), injected into the real rclpy node through its factory arguments."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from vggt_ros.ros import conversions as conv


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
        return conv.to_rclpy(TransformStamped, conv.transform_stamped_fields(np.asarray(T), stamp_ns, target,
                                                                              source))


# Field types of msg/KeypointTracks.msg as rosidl would generate them.
KEYPOINT_TRACKS_FIELD_TYPES = {
    "header": "std_msgs/Header",
    "stamps": "sequence<builtin_interfaces/Time>",
    "query_frame_index": "uint32",
    "track_ids": "sequence<int64>",
    "num_frames": "uint32",
    "num_tracks": "uint32",
    "positions": "sequence<float>",
    "visibility": "sequence<float>",
    "confidence": "sequence<float>",
}


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
