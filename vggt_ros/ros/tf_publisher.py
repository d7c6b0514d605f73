"""TfPublisher: what ``tf2_ros.TransformBroadcaster`` does, and never a frame another node owns.

It publishes ``tf2_msgs/TFMessage`` on ``/tf`` (depth 100, as tf2_ros does; so only ``tf2_msgs`` is
needed, not ``tf2_ros``) and listens to ``/tf`` and ``/tf_static``: a transform whose child frame
another node publishes (a camera driver's optical frame, a robot's base) is never sent, because tf2
would replace the owner's transform by ours and cut its tree. Refusals go to ``on_refused(child)``
(the node counts and logs them). Our own messages come back on ``/tf`` too; they are recognised by
(child, stamp) among the recently sent ones.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

RECENT_SENT = 2000  # (child, stamp) pairs remembered to recognise our own messages on /tf


class TfPublisher:
    def __init__(self, node: Node, on_refused: Callable[[str], None]) -> None:
        from tf2_msgs.msg import TFMessage  # every ROS install has it; tests build a stand-in

        self._msg = TFMessage
        self._on_refused = on_refused
        self._lock = threading.Lock()
        self._foreign: set[str] = set()
        self._sent: deque[tuple[str, int]] = deque()
        self._sent_set: set[tuple[str, int]] = set()
        self._pub = node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100))
        static = QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                            reliability=ReliabilityPolicy.RELIABLE)
        self._subs = [node.create_subscription(TFMessage, "/tf", self._seen, QoSProfile(depth=100)),
                      node.create_subscription(TFMessage, "/tf_static", self._seen, static)]

    @staticmethod
    def _key(t: Any) -> tuple[str, int]:
        s = t.header.stamp
        return t.child_frame_id, s.sec * 1_000_000_000 + s.nanosec

    def _seen(self, msg: Any) -> None:
        with self._lock:
            for t in msg.transforms:
                if self._key(t) not in self._sent_set:
                    self._foreign.add(t.child_frame_id)

    def foreign_children(self) -> set[str]:
        """Child frames other nodes publish, as seen so far."""
        with self._lock:
            return set(self._foreign)

    def sendTransform(self, transforms: Sequence[Any]) -> None:  # noqa: N802 - tf2_ros's name
        with self._lock:
            keep = [t for t in transforms if t.child_frame_id not in self._foreign]
            refused = [t.child_frame_id for t in transforms if t.child_frame_id in self._foreign]
            for t in keep:
                key = self._key(t)
                self._sent.append(key)
                self._sent_set.add(key)
                if len(self._sent) > RECENT_SENT:
                    self._sent_set.discard(self._sent.popleft())
        for child in refused:
            self._on_refused(child)
        if keep:
            self._pub.publish(self._msg(transforms=list(keep)))
