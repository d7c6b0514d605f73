"""``python3 -m vggt_ros.ros.sim_camera``: a synthetic camera driver (no hardware needed).

Publishes the closed orbit of :mod:`vggt_ros.sim.periodic` as ``sensor_msgs/Image`` (rgb8) and
``CameraInfo`` at ``--rate`` Hz with live stamps, like a camera driver; optionally the static TF tree
of a RealSense-like driver on ``/tf_static`` (``camera_link -> camera_color_frame ->
camera_color_optical_frame``), so that a user (or a test) can see what the node does next to a
driver that owns its frames. Used by the process-level tests and the long-run benchmark; also a demo
source: ``ros2 launch vggt_ros vggt.launch.py`` plus this script, with the oracle node.

    python3 -m vggt_ros.ros.sim_camera [--rate 30] [--frames N] [--width 160 --height 120]
        [--image-topic /camera/image_raw] [--info-topic /camera/camera_info] [--driver-tf]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from vggt_ros.messages.builders import to_rclpy
from vggt_ros.messages.camera_info import camera_info_fields
from vggt_ros.messages.images import rgb_image_fields
from vggt_ros.messages.poses import transform_stamped_fields
from vggt_ros.sim.periodic import PeriodicOrbit

OPTICAL_FRAME = "camera_color_optical_frame"
# A RealSense-like static tree: (parent, child, 4x4). The optical frame is z forward, x right.
DRIVER_TREE = (
    ("camera_link", "camera_color_frame", np.eye(4)),
    ("camera_color_frame", OPTICAL_FRAME,
     np.array([[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])),
)


def build_arg_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="sim_camera", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=30.0, help="frames per second")
    ap.add_argument("--frames", type=int, default=0, help="frames to publish (0: until stopped)")
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--height", type=int, default=120)
    ap.add_argument("--image-topic", default="/camera/image_raw")
    ap.add_argument("--info-topic", default="/camera/camera_info")
    ap.add_argument("--frame-id", default=OPTICAL_FRAME)
    ap.add_argument("--driver-tf", action="store_true", help="publish the driver's static tree on /tf_static")
    ap.add_argument("--wait-subscriber", type=float, default=10.0, metavar="S",
                    help="wait up to S seconds for a subscriber of the image topic before publishing")
    ap.add_argument("--settle", type=float, default=1.0, metavar="S",
                    help="then S seconds more: each side of a DDS match discovers the other on its own, "
                         "and a best-effort reader drops samples of a writer it has not matched yet")
    ap.add_argument("--reliable", action="store_true",
                    help="reliable QoS, depth 100 (tests that count frames); default: sensor data")
    return ap


class SimCamera(Node):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__("sim_camera")
        self.args = args
        self.orbit = PeriodicOrbit(args.rate, args.height, args.width)
        self.orbit.prerender()  # publishing at the rate, not at the renderer's speed
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE) if args.reliable \
            else qos_profile_sensor_data
        self.image_pub = self.create_publisher(Image, args.image_topic, qos)
        self.info_pub = self.create_publisher(CameraInfo, args.info_topic, qos)
        if args.driver_tf:
            from tf2_msgs.msg import TFMessage  # a ROS install's; tests build a stand-in package

            latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                                 reliability=ReliabilityPolicy.RELIABLE)
            self.static_pub = self.create_publisher(TFMessage, "/tf_static", latched)
            now = self.get_clock().now().nanoseconds
            self.static_pub.publish(to_rclpy(TFMessage, {"transforms": [
                transform_stamped_fields(T, now, parent, child) for parent, child, T in DRIVER_TREE]}))

    def publish_frame(self, stamp_ns: int) -> None:
        rgb, _ = self.orbit.frame(stamp_ns)
        fid = self.args.frame_id
        h, w = rgb.shape[:2]
        self.info_pub.publish(to_rclpy(CameraInfo, camera_info_fields(self.orbit.seq.K, h, w, stamp_ns, fid)))
        self.image_pub.publish(to_rclpy(Image, rgb_image_fields(rgb, stamp_ns, fid)))


def main(argv: Sequence[str] | None = None) -> int:
    args, ros_args = build_arg_parser().parse_known_args(argv)
    rclpy.init(args=ros_args or None)
    node = SimCamera(args)
    period = node.orbit.period_ns
    sent = late = first = 0
    worst = 0.0
    try:
        end = time.monotonic() + args.wait_subscriber
        while node.image_pub.get_subscription_count() == 0 and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(args.settle if node.image_pub.get_subscription_count() else 0.0)
        stamp = first = node.orbit.first_stamp()
        while rclpy.ok() and (args.frames <= 0 or sent < args.frames):
            delay = (stamp - time.time_ns()) / 1e9
            if delay > 0:
                time.sleep(delay)
            elif -delay > period / 1e9:
                late += 1  # published over a frame period after its stamp (this process was starved)
            worst = max(worst, -delay)
            node.publish_frame(stamp)
            sent += 1
            stamp += period
    except KeyboardInterrupt:
        pass
    finally:
        print(f"sim_camera: published {sent} frames ({late} late by over a frame period, the latest "
              f"{worst * 1e3:.0f} ms), first stamp {first}, period {period} ns", flush=True)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
