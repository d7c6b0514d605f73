"""A separate process that records what the node publishes, for the process-level tests.

    python3 test/ros_probe.py OUT.json TOPIC=TYPE [TOPIC=TYPE ...] [--duration S]

TYPE is a ROS type name (``nav_msgs/msg/Odometry``). Runs until SIGINT/SIGTERM or ``--duration``,
then writes per topic: the message count and, per message, the header stamp, the receive time
(wall clock, ns), header.frame_id, child_frame_id (Odometry), the TF edges (TFMessage), the
diagnostics level and message, and the number of tracks (KeypointTracks). Writes ``OUT.json.ready``
once every subscription exists, so the test can start publishing.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import threading
import time
from pathlib import Path

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy


def msg_class(type_name: str) -> type:
    pkg, _, name = type_name.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def stamp_ns(msg) -> int:
    s = msg.header.stamp
    return s.sec * 10**9 + s.nanosec


def record(topic: str, msg) -> dict:
    r: dict = {"t": time.time_ns()}
    if hasattr(msg, "transforms"):  # TFMessage
        r["edges"] = [[t.header.frame_id, t.child_frame_id, stamp_ns(t)] for t in msg.transforms]
        return r
    if hasattr(msg, "status"):  # DiagnosticArray
        r["stamp"] = stamp_ns(msg)
        r["levels"] = [s.level[0] if isinstance(s.level, bytes) else int(s.level) for s in msg.status]
        r["messages"] = [s.message for s in msg.status]
        r["values"] = [{kv.key: kv.value for kv in s.values} for s in msg.status]
        return r
    r["stamp"] = stamp_ns(msg)
    r["frame_id"] = msg.header.frame_id
    if hasattr(msg, "child_frame_id"):
        r["child_frame_id"] = msg.child_frame_id
    if hasattr(msg, "num_tracks"):
        r["num_tracks"] = int(msg.num_tracks)
    return r


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("topics", nargs="+")
    ap.add_argument("--duration", type=float, default=600.0)
    args = ap.parse_args()
    rclpy.init()
    node = Node("vggt_test_probe")
    lock = threading.Lock()
    got: dict[str, list] = {}
    subs = []
    for spec in args.topics:
        topic, type_name = spec.split("=")
        got[topic] = []
        latched = topic in ("/tf_static", "/vggt/map")
        durability = DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=durability)

        def cb(msg, topic=topic) -> None:
            r = record(topic, msg)
            with lock:
                got[topic].append(r)

        subs.append(node.create_subscription(msg_class(type_name), topic, cb, qos))
    Path(args.out + ".ready").write_text("ready")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    end = time.monotonic() + args.duration
    try:
        while not stop.is_set() and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
    except ExternalShutdownException:
        pass
    with lock:
        Path(args.out).write_text(json.dumps(got))
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
