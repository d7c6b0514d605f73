"""The integration examples in config/integration/ (installed to share/vggt_ros/config/integration):
their topics and frames are checked against the node's own tables, the outputs table
(``vggt_ros.outputs.plan``) and the parameter table's frame defaults, so a renamed output or frame
fails here. Nav2, robot_localization and RTAB-Map are not installable here: the YAML files are parsed
and the launch file is compiled and read with ``ast``.
"""

from __future__ import annotations

import ast
import py_compile
from pathlib import Path

import numpy as np
import pytest
import yaml

from vggt_ros.outputs.plan import OUTPUTS_BY_KEY, full_topic
from vggt_ros.outputs.pose_frames import PoseFrames
from vggt_ros.params.table import PARAMS_BY_NAME
from vggt_ros.params.validation import validate_params
from vggt_ros.params.yaml_file import load_params_yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "config" / "integration"
NAMESPACE = "/vggt"  # the launch file's default namespace, which the examples assume
MAP, ODOM, BASE = (PARAMS_BY_NAME[n].default for n in ("map_frame", "odom_frame", "base_frame"))


def topic(key: str) -> str:
    """Our output ``key``'s topic under the default namespace."""
    return full_topic(OUTPUTS_BY_KEY[key], NAMESPACE)


def world_frame(params: dict) -> str:
    """The frame of our odometry, path, map and grid for validated ``params`` (the node's policy)."""
    return PoseFrames(params, np.eye(4), None).world_frame


def default_params() -> dict:
    return validate_params(load_params_yaml(ROOT / "config" / "vggt.yaml"))


def test_examples_are_installed():
    # CMakeLists.txt installs config/ (with config/integration/) to share/vggt_ros
    assert "DIRECTORY launch config" in (ROOT / "CMakeLists.txt").read_text()
    names = {p.name for p in EXAMPLES.iterdir() if p.is_file()}
    assert {"nav2_costmaps.yaml", "ekf.yaml", "vggt_map_to_odom.yaml", "rtabmap.launch.py"} <= names
    for path in (EXAMPLES / n for n in names):  # each explains its wiring in a header comment
        assert path.read_text().lstrip().startswith(("#", '"""')), path.name
    readme = (ROOT / "README.md").read_text()
    assert "## Integration" in readme
    for name in names:
        assert f"config/integration/{name}" in readme, name


# ----------------------------------------------------------------------------------------------- Nav2


def nav2_costmap(which: str) -> dict:
    doc = yaml.safe_load((EXAMPLES / "nav2_costmaps.yaml").read_text())
    return doc[which][which]["ros__parameters"]


def check_observation_source(layer: dict) -> None:
    sources = layer["observation_sources"].split()
    assert sources
    points = OUTPUTS_BY_KEY["points"]
    for name in sources:
        src = layer[name]
        assert src["topic"] == topic("points")
        assert src["data_type"] == points.msg_type.rsplit("/", 1)[-1] == "PointCloud2"
        # "": the cloud's header frame, which is the camera optical frame for our per-frame cloud
        assert src["sensor_frame"] == ""
        assert src["marking"] is True and src["clearing"] is True
        assert 0 <= src["min_obstacle_height"] < src["max_obstacle_height"]
        assert src["obstacle_max_range"] <= src["raytrace_max_range"]


def test_nav2_local_costmap():
    params = default_params()
    cfg = nav2_costmap("local_costmap")
    assert cfg["global_frame"] == ODOM == world_frame(params)  # the node's default: odom -> base_link
    assert cfg["robot_base_frame"] == BASE and cfg["rolling_window"] is True
    assert "voxel_layer" in cfg["plugins"]
    layer = cfg["voxel_layer"]
    assert layer["plugin"] == "nav2_costmap_2d::VoxelLayer"
    check_observation_source(layer)
    assert all(layer[s]["max_obstacle_height"] <= layer["max_obstacle_height"]
               for s in layer["observation_sources"].split())


def test_nav2_global_costmap():
    cfg = nav2_costmap("global_costmap")
    # the grid is in the node's world frame: odom by default (map with publish_map_to_odom)
    assert cfg["global_frame"] == world_frame(default_params()) == ODOM
    assert cfg["robot_base_frame"] == BASE
    assert cfg["plugins"][0] == "static_layer"  # the static map first, obstacles on top of it
    static = cfg["static_layer"]
    assert static["plugin"] == "nav2_costmap_2d::StaticLayer"
    assert static["map_topic"] == topic("grid")
    assert static["map_subscribe_transient_local"] is True  # our grid is latched (transient local)
    assert OUTPUTS_BY_KEY["grid"].qos == "latched"
    assert OUTPUTS_BY_KEY["grid"].msg_type == "nav_msgs/msg/OccupancyGrid"
    assert cfg["obstacle_layer"]["plugin"] == "nav2_costmap_2d::ObstacleLayer"
    check_observation_source(cfg["obstacle_layer"])
    text = (EXAMPLES / "nav2_costmaps.yaml").read_text()
    assert "publish_map_to_odom" in text and "global_frame to map" in text


# -------------------------------------------------------------------------------- robot_localization


def test_ekf_fuses_our_odometry():
    doc = yaml.safe_load((EXAMPLES / "ekf.yaml").read_text())
    (cfg,) = (section["ros__parameters"] for section in doc.values())
    assert (cfg["map_frame"], cfg["odom_frame"], cfg["base_link_frame"]) == (MAP, ODOM, BASE)
    assert cfg["world_frame"] == ODOM and cfg["publish_tf"] is True  # the EKF owns odom -> base_link
    assert cfg["odom0"] == topic("odometry")
    assert OUTPUTS_BY_KEY["odometry"].msg_type == "nav_msgs/msg/Odometry"
    for sensor in ("odom0", "imu0"):
        flags = cfg[f"{sensor}_config"]
        assert len(flags) == 15 and all(isinstance(f, bool) for f in flags) and any(flags)
    odom = cfg["odom0_config"]
    # our pose is in our own world frame, not the EKF's odom: fused differentially (x, y, yaw)
    assert odom[:6] == [True, True, False, False, False, True] and cfg["odom0_differential"] is True
    assert not any(odom[6:12])  # not its twist as well: the same motion twice
    assert cfg["imu0"] and cfg["imu0_differential"] is False
    assert "publish_map_to_odom: true" in (EXAMPLES / "ekf.yaml").read_text()


def test_map_to_odom_overlay_validates():
    overlay = EXAMPLES / "vggt_map_to_odom.yaml"
    assert load_params_yaml(overlay) == {"publish_map_to_odom": True}
    # merged over the shipped parameters as a second --params-file (later files override)
    merged = validate_params({**load_params_yaml(ROOT / "config" / "vggt.yaml"), **load_params_yaml(overlay)})
    assert merged["publish_map_to_odom"] is True and merged["publish_tf"] is True
    # alone as params_file:=...: the rest are the table's defaults, the same result
    assert validate_params(load_params_yaml(overlay)) == merged
    # the node now publishes map -> odom (not the EKF's odom -> base_link) and its outputs are in map
    assert (merged["map_frame"], merged["odom_frame"], merged["base_frame"]) == (MAP, ODOM, BASE)
    assert world_frame(merged) == MAP
    assert world_frame(default_params()) == ODOM
    # it also loads for the node under another namespace
    assert load_params_yaml(overlay, node_fqn="/robot/vggt_node") == {"publish_map_to_odom": True}


def test_overlay_variant_without_tf_validates():
    merged = validate_params({**load_params_yaml(ROOT / "config" / "vggt.yaml"), "publish_tf": False})
    assert merged["publish_tf"] is False


# -------------------------------------------------------------------------------------------- RTAB-Map


def launch_literals(path: Path) -> dict:
    tree = ast.parse(path.read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return out


def test_rtabmap_launch(tmp_path):
    path = EXAMPLES / "rtabmap.launch.py"
    py_compile.compile(str(path), cfile=str(tmp_path / "rtabmap.pyc"), doraise=True)
    tree = ast.parse(path.read_text())
    assert "generate_launch_description" in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    lits = launch_literals(path)
    remap = dict(lits["REMAPPINGS"])
    assert len(remap) == len(lits["REMAPPINGS"])
    assert remap == {
        "odom": topic("odometry"),
        "rgb/image": topic("depth_rgb"),  # at the depth resolution: registered with the depth image
        "rgb/camera_info": topic("depth_info"),
        "depth/image": topic("depth"),
    }
    params = lits["PARAMETERS"]
    assert params["frame_id"] == BASE and params["map_frame_id"] == MAP
    assert params["odom_frame_id"] == ""  # odometry from our topic
    assert params["subscribe_depth"] is True and params["subscribe_rgb"] is True
    assert params["publish_tf"] is True  # map -> odom: our node must keep publishing odom -> base_link
    assert world_frame(default_params()) == ODOM
    # only the SLAM node (and its viewer), no rgbd_odometry: visual odometry off
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Node"]
    started = {(kw.value.value) for c in calls for kw in c.keywords if kw.arg == "package"}
    assert started == {"rtabmap_slam", "rtabmap_viz"}
    for call in calls:
        kws = {kw.arg: kw.value for kw in call.keywords}
        assert isinstance(kws["remappings"], ast.Name) and kws["remappings"].id == "REMAPPINGS"
    text = path.read_text()
    assert "visual_odometry:=false" in text and f"odom_topic:={topic('odometry')}" in text


@pytest.mark.parametrize("name", ["nav2_costmaps.yaml", "ekf.yaml", "vggt_map_to_odom.yaml"])
def test_yaml_examples_parse(name):
    assert isinstance(yaml.safe_load((EXAMPLES / name).read_text()), dict)
