"""The built node as users run it: its own process, started as the launch file starts it, fed by a
separate camera process and watched by a separate probe process over real DDS.

Everything runs from the colcon install space (test/colcon_install.py): the ``vggt_node`` executable,
the shipped ``share/vggt_ros/config/vggt.yaml``, the generated ``vggt_ros/msg/KeypointTracks`` and
``tf2_msgs/TFMessage`` (the test-only stand-in package when no real one is installed).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from colcon_install import environment

from vggt_ros.ros.launch_config import node_command, node_launch_config

DOMAIN_ID = 230 + os.getpid() % 2  # FastDDS accepts domain ids up to 232; conftest: 100-199, colcon: 200-229
PROBE = Path(__file__).resolve().parent / "ros_probe.py"
NODE_UP = "vggt node up"
DRIVER_CHILDREN = {"camera_color_frame", "camera_color_optical_frame"}  # vggt_ros.ros.sim_camera tree
TOPICS = {
    "/tf": "tf2_msgs/msg/TFMessage", "/tf_static": "tf2_msgs/msg/TFMessage",
    "/vggt/odometry": "nav_msgs/msg/Odometry", "/vggt/depth/image": "sensor_msgs/msg/Image",
    "/vggt/depth/confidence": "sensor_msgs/msg/Image", "/vggt/tracks": "vggt_ros/msg/KeypointTracks",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}




@pytest.fixture()
def run(space, tmp_path):
    r = Run(space, tmp_path)
    yield r
    r.close()


def wait_for(pred, timeout: float, what) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what() if callable(what) else what}")


class Run:
    """The processes of one test, their logs, and their clean-up."""

    def __init__(self, space, tmp_path: Path) -> None:
        self.space, self.tmp = space, tmp_path
        self.env = environment(space, DOMAIN_ID, log_dir=str(tmp_path / "ros_log"))
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "w")
        p = subprocess.Popen(cmd, env=self.env, cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs[name] = p
        return p

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def node(self, overrides: dict, *, oracle: bool = False, params_file: Path | None = None,
             namespace: str = "vggt") -> subprocess.Popen:
        """The node exactly as launch/vggt.launch.py starts it (vggt_ros.ros.launch_config: the params
        file, then the launch overrides and ours as a second file, the camera topics remapped)."""
        args = {"params_file": str(params_file or ""), "namespace": namespace}
        launch = node_launch_config(args, str(self.space.params_yaml))
        launch.parameters[1].update(overrides)
        exe = str(self.space.vggt_node)
        cmd = node_command(exe, launch, str(self.tmp / "overrides.yaml"))
        if oracle:  # the same node and arguments, answered by the oracle (vggt_ros.ros.oracle_node)
            cmd = [sys.executable, "-m", "vggt_ros.ros.oracle_node", *cmd[1:]]
        p = self.start("node", cmd)
        wait_for(lambda: NODE_UP in self.log("node") or p.poll() is not None, 120, "the node to start")
        assert p.poll() is None, self.log("node")
        return p

    def camera(self, frames: int, rate: float = 30.0, driver_tf: bool = False) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "vggt_ros.ros.sim_camera", "--rate", str(rate), "--frames", str(frames),
               "--reliable"] + (["--driver-tf"] if driver_tf else [])
        return self.start("camera", cmd)

    def probe(self, topics: dict[str, str]) -> Path:
        out = self.tmp / "probe.json"
        self.start("probe", [sys.executable, str(PROBE), str(out), *(f"{t}={k}" for t, k in topics.items())])
        wait_for(lambda: Path(str(out) + ".ready").exists(), 60, lambda: self.log("probe"))
        return out

    def stop(self, name: str, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        p = self.procs[name]
        if p.poll() is None:
            p.send_signal(sig)
        return p.wait(timeout)

    def probe_result(self, out: Path) -> dict:
        self.stop("probe")
        return json.loads(out.read_text())

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)


def arrivals(run: Run, depth: list[dict]) -> str:
    """Which camera frames came out (indices from the camera's first stamp), the camera's own report
    and the node's log: a lost start (discovery) reads differently from lost bursts (a starved process)."""
    cam = run.log("camera")
    m = re.search(r"first stamp (\d+), period (\d+)", cam)
    idx = sorted(round((d["stamp"] - int(m[1])) / int(m[2])) for d in depth) if m else "?"
    return f"frames out {idx}\n{cam.strip()}\nnode log:\n{run.log('node')[-3000:]}"


def test_shipped_yaml_applies_under_any_namespace(run, space):
    """The shipped file's key is /**: a value changed in it reaches the node in /vggt and in
    /robot1/vggt (a bare `vggt_node:` key would reach neither)."""
    shipped = yaml.safe_load(space.params_yaml.read_text())
    assert list(shipped) == ["/**"]
    assert shipped["/**"]["ros__parameters"]["publish_confidence"] is False
    shipped["/**"]["ros__parameters"]["publish_confidence"] = True
    edited = run.tmp / "edited.yaml"
    edited.write_text(yaml.safe_dump(shipped))
    for ns in ("vggt", "robot1/vggt"):
        run.node({"predictor": "oracle", "checkpoint": ""}, oracle=True, params_file=edited, namespace=ns)
        out = subprocess.run(
            [sys.executable, "-c", "import rclpy, sys, time\n"
             "from rclpy.node import Node\nrclpy.init()\nn = Node('q')\nend = time.time() + 30\n"
             "while time.time() < end:\n"
             "    names = [t for t, _ in n.get_topic_names_and_types()]\n"
             f"    if '/{ns}/depth/confidence' in names: print('confidence'); break\n"
             "    time.sleep(0.2)\n"],
            env=run.env, capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == "confidence", (ns, out.stderr, run.log("node"))
        assert run.stop("node") == 0


@pytest.mark.parametrize("frames", ["default", "camera_mode"])
def test_oracle_node_process_outputs_and_a_drivers_tf_tree(run, frames):
    """Oracle node process + camera process with a RealSense-like static tree: every frame comes out,
    TF goes on the wire, and it never names a frame the driver publishes: by default (odom -> base,
    here without a mount in TF: our own camera frame), and in camera mode, where map -> the image's
    frame would cut the driver's tree (refused, counted, logged)."""
    out = run.probe(TOPICS)
    mode = {} if frames == "default" else {"odom_frame": "", "base_frame": ""}
    run.node({"predictor": "oracle", "checkpoint": "", "window_size": 6, "stride": 3,
              "skip_policy": "keep_all", "num_track_queries": 8, **mode}, oracle=True)
    cam = run.camera(frames=45, driver_tf=True)
    assert cam.wait(60) == 0
    wait_for(lambda: "published 45 frames" in run.log("camera"), 10, "camera done")
    time.sleep(2.0)
    res = run.probe_result(out)
    assert run.stop("node") == 0, run.log("node")
    depth = res["/vggt/depth/image"]
    # the image subscription is best effort (sensor-data QoS): frames may be lost on the way when the
    # processes share 2 busy cores (32 of 45 arrived once in CI)
    diag = res["/diagnostics"][-1]["values"][0]
    received, pending = int(diag["frames_received"]), int(diag["queue_depth"])
    assert received >= 27, f"{received} received\n{arrivals(run, depth)}"
    assert len(depth) == int(diag["frames_published"]) >= received - 3 - pending, arrivals(run, depth)
    assert len(res["/vggt/tracks"]) >= 5 and all(m["num_tracks"] > 0 for m in res["/vggt/tracks"])
    driver = {e[1] for m in res["/tf_static"] for e in m["edges"]}
    assert DRIVER_CHILDREN <= driver
    ours = [e for m in res["/tf"] for e in m["edges"]]
    assert not {child for _, child, _ in ours} & DRIVER_CHILDREN, ours[:3]
    odo = res["/vggt/odometry"]
    if frames == "default":  # the odometry at each frame, the pose graph's map -> odom per window
        odom = [e for e in ours if e[0] == "odom"]
        assert len(odom) == len(depth)
        assert {(p, c) for p, c, _ in ours} == {("odom", "vggt_camera_optical_frame"), ("map", "odom")}
        assert {(m["frame_id"], m["child_frame_id"]) for m in odo} == {(p, c) for p, c, _ in odom}
    else:
        assert ours == [] and len(odo) == len(depth)  # poses still on odometry
        assert "not publishing a transform to 'camera_color_optical_frame'" in run.log("node")


@pytest.mark.parametrize("signals", [("SIGINT",), ("SIGINT", "SIGINT"), ("SIGTERM",)])
def test_signals_stop_the_node_cleanly(run, signals):
    """Ctrl-C, a double Ctrl-C (ros2 launch) and SIGTERM while frames flow: exit 0, no traceback,
    threads joined."""
    run.node({"predictor": "oracle", "checkpoint": ""}, oracle=True)
    run.camera(frames=0)
    time.sleep(3.0)  # windows in flight
    p = run.procs["node"]
    for i, name in enumerate(signals):
        p.send_signal(getattr(signal, name))
        if i + 1 < len(signals):
            time.sleep(0.05)
    rc = p.wait(30)
    log = run.log("node")
    assert rc == 0, log
    assert "Traceback" not in log, log
    assert "threads joined" in log, log


def test_small_vggt_node_process_publishes_generated_tracks(run):
    """The built executable with the small random network on the CPU: depth and the generated
    KeypointTracks message on the wire."""
    out = run.probe({t: TOPICS[t] for t in ("/vggt/depth/image", "/vggt/tracks")})
    run.node({"predictor": "vggt", "model_config": "small", "checkpoint": "", "device": "cpu",
              "window_size": 3, "stride": 1, "num_track_queries": 4, "max_alignment_residual": 1e6,
              "min_valid_pixels": 3, "target_size": 126, "skip_policy": "keep_all"})
    run.camera(frames=8, rate=5.0)
    wait_for(lambda: "published 8 frames" in run.log("camera"), 30, "camera done")
    time.sleep(5.0)
    res = run.probe_result(out)
    assert run.stop("node") == 0, run.log("node")
    assert len(res["/vggt/depth/image"]) >= 3, run.log("node")
    assert res["/vggt/tracks"] and res["/vggt/tracks"][0]["num_tracks"] > 0


BAD_IMAGES = r'''
import struct, sys, time, zlib
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", b"") + chunk(b"IEND", b""))
rclpy.init()
n = rclpy.create_node("bad_camera")
qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
pub = n.create_publisher(CompressedImage, "/camera/image_raw/compressed", qos)
end = time.time() + 30
while pub.get_subscription_count() == 0 and time.time() < end:
    time.sleep(0.05)
time.sleep(0.3)
for i, (fmt, data) in enumerate([("png", bomb), ("jpeg", b"\xff\xd8garbage"), ("png", b""), ("bmp", b"BM")]):
    m = CompressedImage(format=fmt, data=data)
    m.header.stamp.sec, m.header.frame_id = 10 + i, "cam"
    pub.publish(m)
    time.sleep(0.1)
time.sleep(1.0)
print("sent 4", flush=True)
'''


def test_malformed_images_into_the_real_node_are_counted_and_it_keeps_running(run):
    """A 57-byte PNG claiming 1.6 gigapixels, a broken JPEG, an empty PNG and an unknown format on
    the compressed image topic: the node process counts them and stays up."""
    out = run.probe({"/diagnostics": TOPICS["/diagnostics"]})
    node = run.node({"predictor": "oracle", "checkpoint": "", "image_transport": "compressed",
                     "diagnostics_period_s": 0.2}, oracle=True)
    sender = run.start("bad", [sys.executable, "-c", BAD_IMAGES])
    assert sender.wait(60) == 0, run.log("bad")
    time.sleep(1.0)
    res = run.probe_result(out)
    assert node.poll() is None, run.log("node")  # still running
    last = res["/diagnostics"][-1]["values"][0]
    assert int(last["messages_rejected"]) == 4, last
    assert int(last["messages_rejected_bad_image"]) == 3
    assert int(last["messages_rejected_unsupported_encoding"]) == 1
    assert run.stop("node") == 0 and "Traceback" not in run.log("node")


@pytest.mark.slow
def test_sustained_stream_keeps_rate_latency_and_memory(space, tmp_path):
    """benchmarks/node_soak.py on 450 frames at 15 Hz (the 3000-frame 30 Hz run is in BENCHMARKS.md):
    the node process keeps publishing, its latency and RSS do not grow from the first fifth to the
    last. Bounds are loose, a guard against growth, not a throughput figure: on a 2-core machine the
    three processes compete and best-effort images are lost in bursts (600 frames at 30 Hz once gave
    288 outputs, with the latency and RSS flat)."""
    env = environment(space, DOMAIN_ID, log_dir=str(tmp_path / "ros_log"))
    out = tmp_path / "soak.json"
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "node_soak.py"
    r = subprocess.run([sys.executable, str(bench), "--frames", "450", "--rate", "15", "--json", str(out)],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    assert res["node_exit"] == 0 and res["outputs"] >= 0.4 * 450, r.stdout
    first, last = res["fifths"][0], res["fifths"][-1]
    assert last["latency_p50_ms"] < 2.0 * first["latency_p50_ms"] + 100, r.stdout
    assert res["rss_growth_mib"] < 40, r.stdout
    # the orbit comes round every 12 s: the shipped configuration closes loops, at most one per
    # loop_cooldown_keyframes keyframes
    diag = res["diagnostics"]
    assert 1 <= int(diag["loop_closures"]) <= int(diag["graph_keyframes"]) // 10 + 1, r.stdout
