"""The one stand-in left: tf2_ros's Buffer (no PyPI wheel), injected into the real rclpy node through
its ``tf_buffer_factory`` argument. TF broadcasting and the KeypointTracks message are real (the
node's own TF publisher, the colcon-built message)."""

from __future__ import annotations

from typing import Any

import numpy as np

from vggt_ros.messages.builders import to_rclpy
from vggt_ros.messages.poses import transform_stamped_fields


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
