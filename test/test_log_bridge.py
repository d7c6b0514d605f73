"""vggt_ros.ros.log_bridge with real rclpy: Python records of the vggt_ros loggers reach /rosout."""

from __future__ import annotations

import logging
import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy")

from vggt_ros.ros.log_bridge import (  # noqa: E402
    RclLogHandler,
    attach_rcl_logging,
    detach_rcl_logging,
    rcl_method,
)


class RosoutProbe:
    """A probe node recording /rosout (rcl_interfaces/Log) on its own executor thread."""

    def __init__(self, ctx) -> None:
        from rcl_interfaces.msg import Log
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        self.node = rclpy.create_node("rosout_probe", context=ctx)
        self.records: list[tuple[str, int, str]] = []
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(Log, "/rosout", lambda m: self.records.append((m.name, m.level, m.msg)),
                                      qos)
        self.executor = SingleThreadedExecutor(context=ctx)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def wait_for(self, pred, timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(pred(r) for r in list(self.records)):
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.thread.join(5)


def test_level_mapping():
    assert [rcl_method(v) for v in (5, 10, 15, 20, 30, 40, 50, 60)] == [
        "debug", "debug", "debug", "info", "warning", "error", "fatal", "fatal"]


def test_core_warning_reaches_rosout(ctx):
    node = rclpy.create_node("log_bridge_node", context=ctx)
    probe = RosoutProbe(ctx)
    py_logger = logging.getLogger("vggt_ros")
    level_before = py_logger.level
    try:
        handler = attach_rcl_logging(node)
        assert isinstance(handler, RclLogHandler) and handler.attached
        assert attach_rcl_logging(node) is handler  # no second handler for the same node
        assert sum(isinstance(h, RclLogHandler) for h in py_logger.handlers) == 1
        # The probe's subscription has to be matched before the first record is published: resend
        # until one arrives (bounded), then check the text, level and node name.
        got = False
        end = time.monotonic() + 15.0
        while not got and time.monotonic() < end:
            logging.getLogger("vggt_ros.core.x").warning("hello %d", 3)
            got = probe.wait_for(lambda r: "hello 3" in r[2], timeout=0.5)
        assert got, f"/rosout never carried the record; got {probe.records[-5:]}"
        name, level, msg = next(r for r in probe.records if "hello 3" in r[2])
        assert msg == "[vggt_ros.core.x] hello 3"
        assert level == 30 and name == "log_bridge_node"  # rcl_interfaces/Log.WARN
        # INFO passes at the node's default INFO level, DEBUG does not; exceptions carry the traceback.
        logging.getLogger("vggt_ros.model.checkpoint").info("info %s", "text")
        logging.getLogger("vggt_ros.model.checkpoint").debug("debug text")
        try:
            raise KeyError("boom")
        except KeyError:
            logging.getLogger("vggt_ros.runner").exception("failed")
        assert probe.wait_for(lambda r: r[2] == "[vggt_ros.model.checkpoint] info text" and r[1] == 20)
        assert probe.wait_for(lambda r: r[2].startswith("[vggt_ros.runner] failed\nTraceback")
                              and "KeyError: 'boom'" in r[2] and r[1] == 40)
        assert not any("debug text" in r[2] for r in probe.records)
        # Loggers outside the hierarchy are not forwarded.
        logging.getLogger("other.module").warning("not ours")
        # Detach: idempotent, the level is restored, later records stay in Python.
        handler.detach()
        detach_rcl_logging(handler)
        detach_rcl_logging(None)
        assert not handler.attached and py_logger.level == level_before
        logging.getLogger("vggt_ros.core.x").warning("after detach")
        time.sleep(0.5)
        assert not any("after detach" in r[2] or "not ours" in r[2] for r in probe.records)
    finally:
        for h in [h for h in py_logger.handlers if isinstance(h, RclLogHandler)]:
            detach_rcl_logging(h)
        probe.close()
        node.destroy_node()
