"""The rclpy pieces the node builds its outputs with: a message factory of rclpy classes, and the
defaults of its injectable ROS parts (the tf2_ros buffer, the generated tracks message), which tests
replace with stand-ins where PyPI has no wheel."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from rclpy.node import Node

from vggt_ros.messages.builders import to_rclpy


class RclpyMessages:
    """Message factory of the output builder: rclpy classes by ROS type name ('nav_msgs/msg/Path');
    ``classes`` overrides the lookup (a tracks class from elsewhere)."""

    def __init__(self, classes: Mapping[str, type] | None = None) -> None:
        self._classes: dict[str, type] = dict(classes or {})

    def message_class(self, msg_type: str) -> type:
        cls = self._classes.get(msg_type)
        if cls is None:
            pkg, _, name = msg_type.split("/")
            cls = getattr(importlib.import_module(f"{pkg}.msg"), name)
            self._classes[msg_type] = cls
        return cls

    def build(self, msg_type: str, fields: Mapping[str, Any]) -> Any:
        return to_rclpy(self.message_class(msg_type), fields)


def default_tf_buffer(node: Node) -> Any:
    """A ``tf2_ros.Buffer`` fed by a ``TransformListener`` (kept alive on ``node``), or None without
    tf2_ros (then nothing can be looked up: the node says what that costs).

    The listener has its own node and thread (``spin_thread``): a lookup waits up to tf_timeout_s in
    the image callback, and on the node's single-threaded executor the transforms it waits for
    could not arrive meanwhile."""
    try:
        import tf2_ros
    except ImportError:
        return None
    buffer = tf2_ros.Buffer()
    node._tf_listener = tf2_ros.TransformListener(buffer, None, spin_thread=True)
    return buffer


def default_tracks_msg_type() -> type | None:
    """``vggt_ros.msg.KeypointTracks`` when the package was built with colcon, else None."""
    try:
        from vggt_ros.msg import KeypointTracks  # type: ignore[attr-defined]
    except ImportError:
        return None
    return KeypointTracks
