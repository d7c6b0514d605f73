"""ROS package files: the custom message, package.xml, CMakeLists.txt, entry scripts, launch, RViz, Docker.

The message is checked three independent ways: parsed by rosbags (CDR round trip), decoded by
mcap_ros2 from an MCAP schema, and compiled by the real rosidl toolchain (rosidl_adapter ->
rosidl_generator_py) into an rclpy message class that the conversions fill with strict field checks.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import py_compile
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml

from vggt_ros.core.types import TrackOutput
from vggt_ros.messages.builders import to_rclpy, to_rosbags
from vggt_ros.messages.tracks import (
    KEYPOINT_TRACKS_TYPE,
    keypoint_tracks_fields,
    keypoint_tracks_msg_path,
    keypoint_tracks_msg_text,
    keypoint_tracks_msg_to_output,
    register_custom_types,
)

ROOT = Path(__file__).resolve().parents[1]
MSG = ROOT / "msg" / "KeypointTracks.msg"


def tracks() -> TrackOutput:
    rng = np.random.default_rng(11)
    s, n = 3, 4
    return TrackOutput(
        stamps_ns=[10_000_000_000 + 50_000_000 * i for i in range(s)],
        query_frame_index=2,
        track_ids=np.array([3, 1, 4, 1_000_000_000_007], dtype=np.int64),
        positions=rng.uniform(-5, 700, size=(s, n, 2)).astype(np.float32),
        visibility=rng.uniform(size=(s, n)).astype(np.float32),
        confidence=rng.uniform(size=(s, n)).astype(np.float32),
        frame_id="cam_optical",
    )


def assert_tracks_equal(a: TrackOutput, b: TrackOutput) -> None:
    assert a.stamps_ns == b.stamps_ns
    assert a.query_frame_index == b.query_frame_index and a.frame_id == b.frame_id
    for name in ("track_ids", "positions", "visibility", "confidence"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


# ------------------------------------------------------------------------------------------ message


def test_msg_file_is_the_registered_definition():
    assert keypoint_tracks_msg_path() == MSG.resolve()
    assert MSG.read_text() == keypoint_tracks_msg_text()


def test_msg_fields_and_layout_documented():
    text = MSG.read_text()
    fields = [line.split()[:2] for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert fields == [
        ["std_msgs/Header", "header"],
        ["builtin_interfaces/Time[]", "stamps"],
        ["uint32", "query_frame_index"],
        ["int64[]", "track_ids"],
        ["uint32", "num_frames"],
        ["uint32", "num_tracks"],
        ["float32[]", "positions"],
        ["float32[]", "visibility"],
        ["float32[]", "confidence"],
    ]
    assert "[num_frames][num_tracks][2]" in text and "row-major" in text


def test_msg_parsed_by_rosbags_roundtrip():
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    ts.register(get_types_from_msg(MSG.read_text(), "vggt_ros/msg/KeypointTracks"))
    ref = tracks()
    msg = to_rosbags(ts, "vggt_ros/msg/KeypointTracks", keypoint_tracks_fields(ref))
    raw = ts.serialize_cdr(msg, "vggt_ros/msg/KeypointTracks")
    assert_tracks_equal(
        keypoint_tracks_msg_to_output(ts.deserialize_cdr(raw, "vggt_ros/msg/KeypointTracks")), ref
    )


def test_msg_in_mcap_decoded_by_mcap_ros2(tmp_path):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    register_custom_types(ts)
    register_custom_types(ts)  # idempotent
    ref = tracks()
    with Writer(tmp_path / "bag", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        con = writer.add_connection("/vggt/tracks", KEYPOINT_TRACKS_TYPE, typestore=ts)
        msg = to_rosbags(ts, KEYPOINT_TRACKS_TYPE, keypoint_tracks_fields(ref))
        writer.write(con, ref.stamps_ns[-1], ts.serialize_cdr(msg, KEYPOINT_TRACKS_TYPE))
    (path,) = (tmp_path / "bag").glob("*.mcap")
    with open(path, "rb") as fh:
        decoded = [
            (s, d)
            for s, _c, _m, d in make_reader(fh, decoder_factories=[DecoderFactory()]).iter_decoded_messages()
        ]
    assert len(decoded) == 1
    schema, msg = decoded[0]
    assert schema.name == "vggt_ros/msg/KeypointTracks" and schema.encoding == "ros2msg"
    assert_tracks_equal(keypoint_tracks_msg_to_output(msg), ref)


def test_msg_compiles_with_rosidl_and_fills_rclpy_class(tmp_path):
    """msg -> IDL (rosidl_adapter) -> Python class (rosidl_generator_py), as colcon would build it."""
    adapter = pytest.importorskip("rosidl_adapter.msg")
    generator = pytest.importorskip("rosidl_generator_py")
    share = Path(sys.prefix) / "share"
    deps = {
        "std_msgs": share / "std_msgs/msg/Header.idl",
        "builtin_interfaces": share / "builtin_interfaces/msg/Time.idl",
    }
    templates = share / "rosidl_generator_py/resource"
    if not templates.is_dir() or not all(p.is_file() for p in deps.values()):
        pytest.skip("rosidl templates / dependency IDLs not installed")
    adapter.convert_msg_to_idl(ROOT, "vggt_ros", Path("msg/KeypointTracks.msg"), tmp_path / "idl" / "msg")
    args = tmp_path / "args.json"
    args.write_text(
        json.dumps(
            {
                "package_name": "vggt_ros",
                "idl_tuples": [f"{tmp_path / 'idl'}:msg/KeypointTracks.idl"],
                "ros_interface_dependencies": [f"{k}:{v}" for k, v in deps.items()],
                "output_dir": str(tmp_path / "py"),
                "template_dir": str(templates),
                "target_dependencies": [],
            }
        )
    )
    generator.generate_py(str(args), ["c"])
    spec = importlib.util.spec_from_file_location(
        "_vggt_keypoint_tracks", tmp_path / "py/msg/_keypoint_tracks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls = module.KeypointTracks
    assert cls.get_fields_and_field_types()["positions"] == "sequence<float>"
    assert os.environ.get("ROS_PYTHON_CHECK_FIELDS") == "1"
    ref = tracks()
    msg = to_rclpy(cls, keypoint_tracks_fields(ref))
    assert msg.positions.typecode == "f" and msg.track_ids.typecode == "q"
    assert_tracks_equal(keypoint_tracks_msg_to_output(msg), ref)
    with pytest.raises(AssertionError):  # strict checks really are on for this class
        msg.num_frames = 1.5


# ---------------------------------------------------------------------------------------- package.xml


def test_package_xml():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "vggt_ros"
    assert root.find("export/build_type").text == "ament_cmake"
    assert root.findtext("member_of_group") == "rosidl_interface_packages"

    def tags(*names):
        return {e.text for n in names for e in root.findall(n)}

    assert {"ament_cmake", "ament_cmake_python", "rosidl_default_generators"} <= tags("buildtool_depend")
    run = tags("depend", "exec_depend")
    assert {
        "rosidl_default_runtime",
        "rclpy",
        "std_msgs",
        "builtin_interfaces",
        "sensor_msgs",
        "geometry_msgs",
        "nav_msgs",
        "std_srvs",
        "diagnostic_msgs",
        "tf2_ros",
        "tf2_msgs",
        "launch",
        "launch_ros",
        "rviz2",
        "python3-numpy",
        "python3-scipy",
        "python3-opencv",
        "python3-yaml",
        "python3-pil",
        "python3-tqdm",
        "python3-matplotlib",
    } <= run
    assert {"std_msgs", "builtin_interfaces"} <= tags("depend", "build_depend")  # needed by rosidl at build
    assert root.findtext("license")
    # same version as the pip package
    setup_py = (ROOT / "setup.py").read_text()
    assert f'version="{root.findtext("version")}"' in setup_py


# -------------------------------------------------------------------------------------- CMakeLists.txt


def test_cmakelists():
    text = (ROOT / "CMakeLists.txt").read_text()
    assert "project(vggt_ros)" in text
    m = re.search(r"rosidl_generate_interfaces\(\$\{PROJECT_NAME\}(.*?)\)", text, re.S)
    assert m and '"msg/KeypointTracks.msg"' in m.group(1)
    assert re.search(r"DEPENDENCIES\s+std_msgs\s+builtin_interfaces", m.group(1))
    # the Python package is installed after (and not with a second ament_python_install_package call)
    assert text.index("rosidl_generate_interfaces") < text.index("DIRECTORY vggt_ros/")
    assert "ament_python_install_package(" not in re.sub(r"#.*", "", text)
    assert re.search(
        r"PROGRAMS\s+scripts/vggt_node\s+scripts/replay\s+DESTINATION\s+lib/\$\{PROJECT_NAME\}", text
    )
    assert re.search(r"DIRECTORY\s+launch\s+config\s+DESTINATION\s+share/\$\{PROJECT_NAME\}", text)
    assert text.rstrip().endswith("ament_package()")
    for path in (
        "msg/KeypointTracks.msg",
        "scripts/vggt_node",
        "scripts/replay",
        "launch",
        "config",
        "vggt_ros",
    ):
        assert (ROOT / path).exists(), path


@pytest.mark.parametrize(
    ("script", "module"), [("vggt_node", "vggt_ros.ros.node"), ("replay", "vggt_ros.bag.cli")]
)
def test_entry_scripts(script, module):
    path = ROOT / "scripts" / script
    assert os.access(path, os.X_OK), f"{path} is not executable"
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env python3\n")
    tree = ast.parse(text)
    imports = [(n.module, [a.name for a in n.names]) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert (module, ["main"]) in imports


# -------------------------------------------------------------------------------------------- launch


def test_launch_file_compiles_and_is_a_thin_wrapper(tmp_path):
    path = ROOT / "launch" / "vggt.launch.py"
    py_compile.compile(str(path), cfile=str(tmp_path / "launch.pyc"), doraise=True)
    tree = ast.parse(path.read_text())
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in funcs
    imports = {(n.module, a.name) for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
    wanted = {("vggt_ros.ros.launch_config", name) for name in ("ARGUMENTS", "node_launch_config")}
    assert wanted <= imports
    assert len(path.read_text().splitlines()) < 50
    src = path.read_text()
    for needle in ('package="vggt_ros"', 'executable="vggt_node"', 'executable="rviz2"', "IfCondition",
                   '"config", "vggt.yaml"', '"config", "vggt.rviz"'):
        assert needle in src, needle
    from vggt_ros.ros.launch_config import ARGUMENTS

    # every argument defaulting to None gets its share/ file from SHARE_DEFAULTS
    share_defaults = next(n.value for n in tree.body if isinstance(n, ast.Assign)
                          and getattr(n.targets[0], "id", "") == "SHARE_DEFAULTS")
    none_defaults = {name for name, default, _ in ARGUMENTS if default is None}
    assert {k.value for k in share_defaults.keys} == none_defaults
    assert 'arguments=["-d", rviz_config]' in src and 'LaunchConfiguration("rviz_config")' in src


def test_launch_arguments_and_their_handling(tmp_path):
    from vggt_ros.ros.launch_config import ARGUMENTS, node_command, node_launch_config

    names = {name: default for name, default, _ in ARGUMENTS}
    assert set(names) == {"image_topic", "camera_info_topic", "checkpoint", "params_file", "namespace",
                          "use_sim_time", "rviz", "rviz_config"}
    assert names["rviz"] == "false" and names["use_sim_time"] == "false" and names["params_file"] is None
    assert names["rviz_config"] is None  # the launch file's default: share/vggt_ros/config/vggt.rviz
    args = {"image_topic": "/cam/color/image_raw/", "camera_info_topic": "/cam/color/camera_info",
            "checkpoint": "", "params_file": "", "namespace": "vggt", "use_sim_time": "True", "rviz": "false"}
    cfg = node_launch_config(args, "/share/vggt.yaml")
    assert cfg.name == "vggt_node" and cfg.namespace == "vggt"
    assert cfg.parameters == ["/share/vggt.yaml", {"use_sim_time": True}]  # empty checkpoint: the file's
    assert cfg.remappings == [("image", "/cam/color/image_raw/"),
                              ("image/compressed", "/cam/color/image_raw/compressed"),
                              ("camera_info", "/cam/color/camera_info")]
    cfg = node_launch_config({**args, "checkpoint": "/w/model.pt", "params_file": "/mine.yaml",
                              "use_sim_time": "0"}, "/share/vggt.yaml")
    assert cfg.parameters == ["/mine.yaml", {"use_sim_time": False, "checkpoint": "/w/model.pt"}]
    with pytest.raises(ValueError, match="use_sim_time"):
        node_launch_config({**args, "use_sim_time": "maybe"}, "/share/vggt.yaml")
    cmd = node_command("vggt_node", cfg, str(tmp_path / "o.yaml"))
    assert cmd[:6] == ["vggt_node", "--ros-args", "-r", "__node:=vggt_node", "-r", "__ns:=/vggt"]
    assert cmd[6:10] == ["--params-file", "/mine.yaml", "--params-file", str(tmp_path / "o.yaml")]
    assert "image:=/cam/color/image_raw/" in cmd
    assert yaml.safe_load((tmp_path / "o.yaml").read_text()) == {
        "/**": {"ros__parameters": {"use_sim_time": False, "checkpoint": "/w/model.pt"}}}


# ---------------------------------------------------------------------------------------------- rviz


def grid_topic() -> str:
    """/vggt/grid: from the outputs table once the grid output is in it (then also checked to be a
    transient local OccupancyGrid), until then the topic name 'grid' it is being added under."""
    from vggt_ros.outputs.plan import OUTPUTS_BY_KEY, OutputSpec, full_topic

    spec = OUTPUTS_BY_KEY.get("grid")
    if spec is None:
        spec = OutputSpec("grid", "grid", "nav_msgs/msg/OccupancyGrid", "publish_grid", qos="latched")
        return full_topic(spec, "/vggt")
    assert spec.msg_type == "nav_msgs/msg/OccupancyGrid" and spec.qos == "latched"
    return full_topic(spec, "/vggt")


@pytest.mark.parametrize(("name", "fixed_frame_param"),
                         [("vggt.rviz", "odom_frame"), ("vggt_map_to_odom.rviz", "map_frame")])
def test_rviz_config(name, fixed_frame_param):
    from vggt_ros.outputs.plan import OUTPUTS_BY_KEY, full_topic
    from vggt_ros.params.table import PARAMS_BY_NAME

    cfg = yaml.safe_load((ROOT / "config" / name).read_text())
    manager = cfg["Visualization Manager"]
    # the world frame of each TF mode: odom (odom -> base_link, the default) or map (publish_map_to_odom)
    assert manager["Global Options"]["Fixed Frame"] == PARAMS_BY_NAME[fixed_frame_param].default
    displays = {d["Name"]: d for d in manager["Displays"]}
    classes = [d["Class"] for d in manager["Displays"]]
    for cls in ("rviz_default_plugins/TF", "rviz_default_plugins/Image", "rviz_default_plugins/Path",
                "rviz_default_plugins/Map"):
        assert cls in classes
    assert classes.count("rviz_default_plugins/PointCloud2") == 2
    topics = {name: d["Topic"]["Value"] for name, d in displays.items() if "Topic" in d}
    assert topics == {
        "Depth": "/vggt/depth/image",
        "Points (current frame)": "/vggt/points",
        "Map": "/vggt/map",
        "Path": "/vggt/path",
        "Occupancy grid": "/vggt/grid",
    }
    ours = {"Depth": "depth", "Points (current frame)": "points", "Map": "map", "Path": "path"}
    for display, key in ours.items():  # the hard-coded names above are the outputs table's
        assert topics[display] == full_topic(OUTPUTS_BY_KEY[key], "/vggt")
    assert topics["Occupancy grid"] == grid_topic()
    assert displays["Occupancy grid"]["Class"] == "rviz_default_plugins/Map"
    for latched in ("Map", "Occupancy grid"):  # transient local publishers: late subscribers get the last
        assert displays[latched]["Topic"]["Durability Policy"] == "Transient Local"
    assert all(displays[n]["Color Transformer"] == "RGB8" for n in ("Map", "Points (current frame)"))


def test_rviz_configs_differ_only_in_the_fixed_frame():
    def body(name):
        return [line for line in (ROOT / "config" / name).read_text().splitlines()
                if not line.startswith("#") and "Fixed Frame:" not in line]

    assert body("vggt.rviz") == body("vggt_map_to_odom.rviz")


# -------------------------------------------------------------------------------------------- docker


def test_dockerfile():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM ros:jazzy", text, re.M)
    assert "ARG TORCH_VERSION=2.13.0" in text and '"torch==${TORCH_VERSION}"' in text
    assert "download.pytorch.org/whl/cu12" in text
    assert "rosdep install --from-paths src" in text
    assert "colcon build --packages-select vggt_ros" in text
    assert "source /ws/install/setup.bash" in text and "ENTRYPOINT" in text
