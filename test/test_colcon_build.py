"""The colcon install space of this repository, built by scripts/colcon_build.sh (README, .ci/run).

Everything runs in subprocesses with the install space's environment (test/colcon_install.py), so
the generated messages, the installed package and real DDS traffic are those a ROS user gets after
`colcon build`. A missing install space fails here with the command that builds it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from colcon_install import REPO, environment

# Our own DDS domain range (test/conftest.py uses 100..199), so a DDS test here never sees another
# test run's /tf.
DOMAIN_ID = 200 + os.getpid() % 30
TIMEOUT = 120  # seconds for one subprocess on a loaded 2-core machine




@pytest.fixture()
def env(space, tmp_path):
    return environment(space, DOMAIN_ID, log_dir=str(tmp_path / "ros_log"))


def run_python(code: str, env: dict[str, str], timeout: float = TIMEOUT) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


# rosidl's names for the .msg primitive types (get_fields_and_field_types).
_PRIMITIVES = {"float32": "float", "float64": "double"}


def msg_fields(path: Path) -> dict[str, str]:
    """Field name -> rosidl type string, parsed from a .msg file (the subset of the syntax we use)."""
    fields = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        ftype, name = line.split()[:2]
        assert "=" not in name, f"constants are not handled: {line}"
        m = re.fullmatch(r"([\w/]+)(\[(<=)?(\d*)\])?", ftype)
        assert m, line
        base = _PRIMITIVES.get(m.group(1), m.group(1))
        if m.group(2) is None:
            fields[name] = base
        elif m.group(3):
            fields[name] = f"sequence<{base}, {m.group(4)}>"
        elif m.group(4):
            fields[name] = f"{base}[{m.group(4)}]"
        else:
            fields[name] = f"sequence<{base}>"
    return fields


def test_keypoint_tracks_from_install_space(space, env):
    out = run_python(
        """
        import array, json
        from rclpy.serialization import deserialize_message, serialize_message
        from vggt_ros.msg import KeypointTracks
        import vggt_ros.msg as m
        msg = KeypointTracks(query_frame_index=1, num_frames=2, num_tracks=3)
        msg.header.frame_id = "cam_optical"
        msg.track_ids = [5, 6, 1 << 40]
        msg.positions = array.array("f", [0.5 * i for i in range(12)])
        back = deserialize_message(serialize_message(msg), KeypointTracks)
        assert back == msg, (back, msg)
        print(json.dumps({"fields": KeypointTracks.get_fields_and_field_types(), "file": m.__file__}))
        """,
        env,
    )
    got = json.loads(out)
    assert got["fields"] == msg_fields(REPO / "msg" / "KeypointTracks.msg")
    assert Path(got["file"]).resolve().is_relative_to(space.prefix.resolve())


def test_installed_files(space):
    assert (space.share / "package.xml").read_text() == (REPO / "package.xml").read_text()
    assert space.params_yaml.read_text() == (REPO / "config" / "vggt.yaml").read_text()
    assert (space.share / "launch" / "vggt.launch.py").read_text() == (
        REPO / "launch" / "vggt.launch.py"
    ).read_text()
    assert (space.share / "msg" / "KeypointTracks.msg").is_file()
    index = space.prefix / "share" / "ament_index" / "resource_index"
    assert (index / "packages" / "vggt_ros").is_file()
    assert "msg/KeypointTracks.msg" in (index / "rosidl_interfaces" / "vggt_ros").read_text()
    for exe in (space.vggt_node, space.replay):
        assert exe.is_file(), exe
        assert os.access(exe, os.X_OK), f"{exe} is not executable"


def test_installed_python_package_is_the_repository_code(space, env):
    out = run_python(
        """
        import json, os, vggt_ros
        print(json.dumps(os.path.dirname(vggt_ros.__file__)))
        """,
        env,
    )
    # the package imported first (vggt_ros extends its path with other copies on sys.path: a checkout's)
    pkg = Path(json.loads(out))
    assert pkg.resolve() == (space.site_packages / "vggt_ros").resolve()
    assert pkg.resolve().is_relative_to(space.prefix.resolve())

    def modules(root: Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(root)): p.read_bytes()
            for p in root.rglob("*.py")
            if "__pycache__" not in p.parts and p.relative_to(root).parts[0] != "msg"
        }

    ours, installed = modules(REPO / "vggt_ros"), modules(pkg)
    assert ours, "no modules found in the repository"
    assert sorted(installed) == sorted(ours), "install space is stale: rerun scripts/colcon_build.sh"
    stale = [name for name in ours if installed[name] != ours[name]]
    assert not stale, f"installed modules differ from the repository (rerun scripts/colcon_build.sh): {stale}"


def test_node_executable_runs_from_install_space(space, env):
    # The installed entry script imports the installed package: --help exits before ROS starts.
    proc = subprocess.run(
        [str(space.replay), "--help"], env=env, cwd="/", capture_output=True, text=True, timeout=TIMEOUT
    )
    assert proc.returncode == 0, proc.stderr
    assert "--out" in proc.stdout


def test_setup_bash_sources(space, tmp_path):
    # What the README tells a ROS user: source install/setup.bash, then import the messages.
    env = environment(space, DOMAIN_ID, log_dir=str(tmp_path / "ros_log"))
    for name in ("PYTHONPATH", "LD_LIBRARY_PATH", "COLCON_PREFIX_PATH"):
        env.pop(name, None)
    env["AMENT_PREFIX_PATH"] = str(space.ros_prefix)
    script = (
        f'source "{space.prefix}/setup.bash" && '
        f'"{sys.executable}" -c '
        '"import tf2_msgs.msg, vggt_ros.msg as m; m.KeypointTracks(); print(m.__file__)"'
    )
    proc = subprocess.run(
        ["bash", "-c", script], env=env, cwd="/", capture_output=True, text=True, timeout=TIMEOUT
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).resolve().is_relative_to(space.prefix.resolve()), proc.stdout


SUBSCRIBER = """
import json, sys, time
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from tf2_msgs.msg import TFMessage

token = sys.argv[1]
rclpy.init()
node = rclpy.create_node("vggt_ros_test_tf_listener")
got = []
node.create_subscription(
    TFMessage, "/tf", lambda msg: got.extend(t for t in msg.transforms if t.child_frame_id == token),
    QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE),
)
print("READY", flush=True)
deadline = time.monotonic() + float(sys.argv[2])
while not got and time.monotonic() < deadline:
    rclpy.spin_once(node, timeout_sec=0.2)
if not got:
    sys.exit("no TFMessage with child frame " + token + " on /tf")
t = got[0]
print(json.dumps({
    "parent": t.header.frame_id, "child": t.child_frame_id,
    "stamp": [t.header.stamp.sec, t.header.stamp.nanosec],
    "translation": [t.transform.translation.x, t.transform.translation.y, t.transform.translation.z],
    "rotation": [t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z,
                 t.transform.rotation.w],
}), flush=True)
node.destroy_node()
rclpy.shutdown()
"""

PUBLISHER = """
import sys, time
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from geometry_msgs.msg import TransformStamped
from tf2_msgs.msg import TFMessage

token = sys.argv[1]
rclpy.init()
node = rclpy.create_node("vggt_ros_test_tf_broadcaster")
pub = node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
t = TransformStamped()
t.header.frame_id = "world"
t.header.stamp.sec, t.header.stamp.nanosec = 1234, 5678
t.child_frame_id = token
t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = 1.0, -2.0, 0.5
t.transform.rotation.z, t.transform.rotation.w = 0.6, 0.8
print("READY", flush=True)
# Publish until the parent stops us (or the deadline): discovery may take seconds on a loaded machine.
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    pub.publish(TFMessage(transforms=[t]))
    rclpy.spin_once(node, timeout_sec=0.1)
node.destroy_node()
rclpy.shutdown()
"""


def _wait_ready(proc: subprocess.Popen, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == "READY":
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}: {proc.stderr.read()}")
    raise AssertionError(f"{what} not ready after {timeout} s")


def test_tf_message_over_dds_between_two_processes(space, env):
    run_python("from tf2_msgs.msg import TFMessage; TFMessage()", env)
    token = f"vggt_ros_test_{os.getpid()}_{time.monotonic_ns()}"
    popen = dict(env=env, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sub = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, token, str(TIMEOUT)], **popen)
    pub = None
    try:
        _wait_ready(sub, "subscriber", TIMEOUT)
        pub = subprocess.Popen([sys.executable, "-c", PUBLISHER, token, str(TIMEOUT + 30)], **popen)
        out, err = sub.communicate(timeout=TIMEOUT + 30)
        assert sub.returncode == 0, f"subscriber exit {sub.returncode}\n{out}\n{err}"
    finally:
        for proc in (sub, pub):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
    got = json.loads(out.strip().splitlines()[-1])
    assert got == {
        "parent": "world",
        "child": token,
        "stamp": [1234, 5678],
        "translation": [1.0, -2.0, 0.5],
        "rotation": [0.0, 0.0, 0.6, 0.8],
    }
