"""The node's ROS parameters: every row of the parameter table declared on the node, then validated
by the table's own rules (so an invalid value stops the node at start-up naming the parameter)."""

from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node

from vggt_ros.params.table import PARAMS
from vggt_ros.params.validation import validate_params


def read_node_params(node: Node) -> dict[str, Any]:
    """Declare every table parameter on ``node`` and return the validated values.

    Types are dynamic (ROS would otherwise refuse ``1`` for a float); :func:`validate_params`
    checks them, so an invalid value fails here with a message naming the parameter.
    """
    raw = {}
    for p in PARAMS:
        desc = ParameterDescriptor(
            description=p.description, additional_constraints=f"allowed: {p.allowed()}", dynamic_typing=True,
            read_only=p.name != "map_save_path",
        )
        default = list(p.default) if isinstance(p.default, list) else p.default
        node.declare_parameter(p.name, default, desc)
        raw[p.name] = node.get_parameter(p.name).value
    return validate_params(raw)
