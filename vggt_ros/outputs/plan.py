"""The table of everything the node publishes (and the replay writes): one row per output.

Topics are relative to the node's namespace unless absolute. ``enabled_by`` names the boolean
parameter that switches the output on; ``period_param`` the parameter giving the publication period
of accumulating outputs (the others are published once per frame or per window); ``qos`` is
``reliable`` (depth ``qos_depth``), ``latched`` (transient local, depth 1) or ``tf`` (sent through a
tf2 broadcaster: the message is a list of ``geometry_msgs/TransformStamped``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vggt_ros.messages.tracks import KEYPOINT_TRACKS_TYPE


@dataclass(frozen=True)
class OutputSpec:
    key: str
    topic: str
    msg_type: str
    enabled_by: str
    qos: str = "reliable"
    period_param: str = ""


OUTPUTS: tuple[OutputSpec, ...] = (
    OutputSpec("tf", "/tf", "tf2_msgs/msg/TFMessage", "publish_tf", qos="tf"),
    OutputSpec("odometry", "odometry", "nav_msgs/msg/Odometry", "publish_odometry"),
    OutputSpec("path", "path", "nav_msgs/msg/Path", "publish_path", period_param="path_publish_period_s"),
    OutputSpec("depth", "depth/image", "sensor_msgs/msg/Image", "publish_depth"),
    OutputSpec("depth_info", "depth/camera_info", "sensor_msgs/msg/CameraInfo", "publish_depth"),
    OutputSpec("confidence", "depth/confidence", "sensor_msgs/msg/Image", "publish_confidence"),
    OutputSpec("depth_rgb", "depth/rgb", "sensor_msgs/msg/Image", "publish_depth_rgb"),
    OutputSpec("points", "points", "sensor_msgs/msg/PointCloud2", "publish_cloud"),
    OutputSpec("map", "map", "sensor_msgs/msg/PointCloud2", "publish_map", qos="latched",
               period_param="map_publish_period_s"),
    OutputSpec("grid", "grid", "nav_msgs/msg/OccupancyGrid", "publish_grid", qos="latched",
               period_param="grid_publish_period_s"),
    OutputSpec("tracks", "tracks", KEYPOINT_TRACKS_TYPE, "publish_tracks"),
    OutputSpec("loops", "loop_closures", "diagnostic_msgs/msg/DiagnosticArray", "publish_loop_closures"),
    OutputSpec("diagnostics", "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", "publish_diagnostics",
               period_param="diagnostics_period_s"),
)
OUTPUTS_BY_KEY: dict[str, OutputSpec] = {o.key: o for o in OUTPUTS}


def enabled_outputs(params: Mapping[str, Any]) -> tuple[OutputSpec, ...]:
    """The outputs the parameters switch on (tracks also need ``num_track_queries`` > 0)."""
    on = []
    for o in OUTPUTS:
        if not params[o.enabled_by]:
            continue
        if o.key == "tracks" and params["num_track_queries"] <= 0:
            continue
        if o.key == "loops" and not (params["pose_graph"] and params["loop_closure"]):
            continue
        on.append(o)
    return tuple(on)


def full_topic(spec: OutputSpec, namespace: str) -> str:
    """The absolute topic of an output for a node in ``namespace`` (e.g. '/vggt')."""
    if spec.topic.startswith("/"):
        return spec.topic
    ns = namespace.strip("/")
    return f"/{ns}/{spec.topic}" if ns else f"/{spec.topic}"
