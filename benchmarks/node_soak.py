"""Sustained operation of the node process: a long 30 Hz stream, output rate, latency and RSS over time.

    source /tmp/vggt_ros_ws/install/setup.bash     # (scripts/colcon_build.sh) for the node and the camera
    python3 benchmarks/node_soak.py [--frames 3000] [--rate 30] [--json out.json]

Three processes as a user runs them: the node (``vggt_ros.ros.oracle_node``: the real node, started
with the launch file's command line and the shipped YAML, answered by the oracle so a CPU keeps up),
the synthetic camera (``vggt_ros.ros.sim_camera``, stamps = wall clock) and this script, which
subscribes to ``odometry`` (one message per processed frame) and samples the node's RSS every
second. Per fifth of the stream (by frame stamp): output rate, latency (receive time - image stamp,
so it includes the wait for a window's frames) p50 / p90, and RSS; the last fifth is compared with
the first.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vggt_ros.ros.launch_config import node_command, node_launch_config  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def params_file() -> str:
    prefix = os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)
    for p in prefix:
        f = Path(p) / "share" / "vggt_ros" / "config" / "vggt.yaml"
        if f.exists():
            return str(f)
    return str(Path(__file__).resolve().parents[1] / "config" / "vggt.yaml")


def soak(frames: int, rate: float, overrides: dict, workdir: Path) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from nav_msgs.msg import Odometry
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    launch = node_launch_config({"namespace": "vggt"}, params_file())
    launch.parameters[1].update({"predictor": "oracle", "checkpoint": "", **overrides})
    cmd = node_command("oracle_node", launch, str(workdir / "overrides.yaml"))
    node_log = open(workdir / "node.log", "w")
    node = subprocess.Popen([sys.executable, "-m", "vggt_ros.ros.oracle_node", "--rate", str(rate), *cmd[1:]],
                            stdout=node_log, stderr=subprocess.STDOUT, start_new_session=True)
    rclpy.init()
    probe = rclpy.create_node("vggt_soak_probe")
    got: list[tuple[int, int]] = []  # (stamp, receive time) per odometry message
    lock = threading.Lock()

    def on_odom(msg) -> None:
        t = time.time_ns()
        with lock:
            got.append((msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec, t))

    diag: dict[str, str] = {}
    diag_timeline: list[tuple[float, float, float]] = []  # (input Hz, output Hz, latency p50 s) windowed

    def on_diag(msg) -> None:
        for status in msg.status:
            if "vggt" in status.name:
                diag.clear()
                diag.update({kv.key: kv.value for kv in status.values}, level=str(status.level[0]),
                            message=status.message)
                diag_timeline.append(tuple(float(diag.get(k, "nan")) for k in (
                    "input_rate_hz", "output_rate_hz", "latency_p50_s")))

    reliable = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    probe.create_subscription(Odometry, "/vggt/odometry", on_odom, reliable)
    probe.create_subscription(DiagnosticArray, "/diagnostics", on_diag, reliable)
    ex = SingleThreadedExecutor()
    ex.add_node(probe)
    spin = threading.Thread(target=ex.spin, daemon=True)
    spin.start()
    while "vggt node up" not in (workdir / "node.log").read_text() and node.poll() is None:
        time.sleep(0.1)
    cam_log = open(workdir / "camera.log", "w")
    cam = subprocess.Popen([sys.executable, "-m", "vggt_ros.ros.sim_camera", "--rate", str(rate), "--frames",
                            str(frames)], stdout=cam_log, stderr=subprocess.STDOUT, start_new_session=True)
    rss: list[tuple[int, float]] = []
    while cam.poll() is None:
        rss.append((time.time_ns(), rss_mib(node.pid)))
        time.sleep(1.0)
    time.sleep(3.0)
    rss.append((time.time_ns(), rss_mib(node.pid)))
    node.send_signal(signal.SIGINT)
    rc = node.wait(30)
    ex.shutdown()
    probe.destroy_node()
    rclpy.try_shutdown()
    with lock:
        data = np.array(sorted(got), dtype=np.int64)
    if len(data) < 10:
        log = (workdir / "node.log").read_text()[-2000:]
        raise RuntimeError(f"only {len(data)} outputs; node log: {log}")
    t0, t1 = data[0, 0], data[-1, 0]
    edges = np.linspace(t0, t1 + 1, 6)
    fifths = []
    rss_arr = np.array(rss)
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        sel = data[(data[:, 0] >= a) & (data[:, 0] < b)]
        lat = (sel[:, 1] - sel[:, 0]) / 1e6
        in_fifth = rss_arr[(rss_arr[:, 0] >= a) & (rss_arr[:, 0] < b + 2e9), 1]
        fifths.append({"outputs": int(len(sel)), "rate_hz": len(sel) / ((b - a) / 1e9),
                       "latency_p50_ms": float(np.percentile(lat, 50)),
                       "latency_p90_ms": float(np.percentile(lat, 90)),
                       "rss_mib": float(in_fifth.max()) if len(in_fifth) else float("nan")})
    timeline = []  # 5 s bins: outputs, latency p50 (ms)
    for a in range(int(t0), int(t1) + 1, 5 * 10**9):
        sel = data[(data[:, 0] >= a) & (data[:, 0] < a + 5 * 10**9)]
        if len(sel):
            timeline.append([len(sel) / 5.0, float(np.median((sel[:, 1] - sel[:, 0]) / 1e6))])
    keys = ("frames_received", "frames_accepted", "frames_skipped", "frames_published", "windows",
            "windows_rejected", "map_points", "graph_keyframes", "loop_candidates", "loop_closures", "level",
            "message")
    return {"frames": frames, "rate": rate, "outputs": int(len(data)), "node_exit": rc, "fifths": fifths,
            "diagnostics": {k: diag.get(k) for k in keys}, "timeline_5s": timeline,
            "node_timeline": diag_timeline, "camera": (workdir / "camera.log").read_text().strip()[-200:],
            "rate_ratio": fifths[-1]["rate_hz"] / fifths[0]["rate_hz"],
            "latency_ratio": fifths[-1]["latency_p50_ms"] / fifths[0]["latency_p50_ms"],
            "rss_growth_mib": fifths[-1]["rss_mib"] - fifths[0]["rss_mib"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--json", default=None, help="also write the result here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        r = soak(args.frames, args.rate, {"window_size": args.window, "stride": args.stride}, Path(tmp))
    print(f"# node_soak: {args.frames} frames at {args.rate:g} Hz, window {args.window} / stride "
          f"{args.stride}, {r['outputs']} outputs, node exit {r['node_exit']}")
    print(f"# last diagnostics: {r['diagnostics']}")
    print(f"# camera: {r['camera']}")
    print("| fifth | outputs | output Hz | latency p50 / p90 ms | node RSS MiB |")
    print("|---:|---:|---:|---|---:|")
    for i, f in enumerate(r["fifths"], 1):
        print(f"| {i} | {f['outputs']} | {f['rate_hz']:.2f} | {f['latency_p50_ms']:.0f} / "
              f"{f['latency_p90_ms']:.0f} | {f['rss_mib']:.0f} |")
    print(f"last/first fifth: output rate x{r['rate_ratio']:.3f}, latency p50 x{r['latency_ratio']:.3f}, "
          f"RSS {r['rss_growth_mib']:+.1f} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
