"""How ``launch/vggt.launch.py`` starts the node, as plain data (no ``launch`` import).

Why here: the launch file stays a thin wrapper around :func:`node_launch_config`, whose argument
handling is unit-tested without ``launch_ros``; :func:`node_command` gives the equivalent command
line, which the process-level tests use to start the built node exactly as the launch file does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

NODE_NAME = "vggt_node"
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")

# (name, default, description) of the launch arguments; a default of None = the package's file (the
# launch file's SHARE_DEFAULTS: config/vggt.yaml for params_file, config/vggt.rviz for rviz_config)
ARGUMENTS: tuple[tuple[str, str | None, str], ...] = (
    ("image_topic", "/camera/image_raw",
     "sensor_msgs/Image topic (image_topic + '/compressed' with image_transport 'compressed')"),
    ("camera_info_topic", "/camera/camera_info", "sensor_msgs/CameraInfo topic of the same camera"),
    ("checkpoint", "", "VGGT weights: HF repo id or local file/directory; empty = the params file's value"),
    ("params_file", None, "Parameter YAML (default share/vggt_ros/config/vggt.yaml)"),
    ("namespace", "vggt", "Namespace of the node and its topics"),
    ("use_sim_time", "false", "Use /clock (true when replaying a bag with `ros2 bag play --clock`)"),
    ("rviz", "false", "Start RViz with config/vggt.rviz"),
    ("rviz_config", None, "RViz config file (default share/vggt_ros/config/vggt.rviz, fixed frame odom; "
     "config/vggt_map_to_odom.rviz for publish_map_to_odom)"),
)


def parse_bool(name: str, text: str) -> bool:
    value = str(text).strip().lower()
    if value not in TRUE + FALSE:
        raise ValueError(f"launch argument {name!r}: expected true or false, got {text!r}")
    return value in TRUE


@dataclass
class NodeLaunch:
    """What launch_ros's ``Node`` action gets: parameter files / dicts in order, remappings."""

    namespace: str
    parameters: list[Any] = field(default_factory=list)  # a params file path, then a dict of overrides
    remappings: list[tuple[str, str]] = field(default_factory=list)
    name: str = NODE_NAME


def node_launch_config(args: Mapping[str, str], default_params_file: str) -> NodeLaunch:
    """The node's launch configuration from the resolved launch arguments (strings, as launch gives
    them). An empty ``params_file`` or ``checkpoint`` keeps the default file / the file's value."""
    params_file = args.get("params_file") or default_params_file
    sim_time = parse_bool("use_sim_time", args.get("use_sim_time", "false"))
    overrides: dict[str, Any] = {"use_sim_time": sim_time}
    if args.get("checkpoint"):
        overrides["checkpoint"] = args["checkpoint"]
    image_topic = args.get("image_topic") or "/camera/image_raw"
    return NodeLaunch(
        namespace=args.get("namespace", "vggt"),
        parameters=[params_file, overrides],
        remappings=[("image", image_topic), ("image/compressed", image_topic.rstrip("/") + "/compressed"),
                    ("camera_info", args.get("camera_info_topic") or "/camera/camera_info")],
    )


def node_command(executable: str, launch: NodeLaunch, overrides_file: str) -> list[str]:
    """The command line launch_ros runs for ``launch`` (its overrides dict written to
    ``overrides_file`` under ``/**``, as launch_ros writes parameter dicts)."""
    import yaml

    params_file, overrides = launch.parameters
    with open(overrides_file, "w", encoding="utf-8") as fh:
        yaml.safe_dump({"/**": {"ros__parameters": overrides}}, fh)
    ns = "/" + launch.namespace.strip("/")
    cmd = [executable, "--ros-args", "-r", f"__node:={launch.name}", "-r", f"__ns:={ns}",
           "--params-file", str(params_file), "--params-file", overrides_file]
    for src, dst in launch.remappings:
        cmd += ["-r", f"{src}:={dst}"]
    return cmd
