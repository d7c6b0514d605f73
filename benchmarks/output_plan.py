"""Per-frame cost of the output plan with a short and a long Path: does it grow with the stream?

    python3 benchmarks/output_plan.py [--poses 100 10000] [--frames 300] [--factory rclpy rosbags]

For each path length the builder first holds that many poses; then ``--frames`` one-frame windows
(160x120 depth, cloud, odometry, TF) go through :class:`vggt_ros.outputs.builder.OutputBuilder` as
the node runs it at 30 Hz: the window's messages every frame, the Path every
``path_publish_period_s`` (1 s = 30 frames), each message serialised as it would be published
(rclpy: ``serialize_message``; rosbags: CDR). Printed: ms per frame and the ratio long/short.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vggt_ros.core.types import FrameOutput, WindowOutput  # noqa: E402
from vggt_ros.outputs.builder import OutputBuilder  # noqa: E402
from vggt_ros.outputs.pose_frames import PoseFrames  # noqa: E402
from vggt_ros.params.validation import validate_params  # noqa: E402

RATE_HZ = 30.0


def frame_output(i: int, h: int = 120, w: int = 160) -> FrameOutput:
    rng = np.random.default_rng(i)
    K = np.array([[100.0, 0, w / 2], [0, 100.0, h / 2], [0, 0, 1]])
    T = np.eye(4)
    T[:3, 3] = [0.01 * i, 0.0, 0.0]
    depth = (1.0 + rng.random((h, w))).astype(np.float32)
    pts = rng.random((2000, 3)).astype(np.float32)
    return FrameOutput(stamp_ns=10**9 + i * 33_333_333, frame_id="cam", world_T_camera=T,
                       pose_covariance=np.diag([1e-4] * 3 + [3e-4] * 3), intrinsics=K,
                       image_hw=(h, w), depth=depth, depth_conf=np.ones_like(depth), depth_intrinsics=K,
                       rgb=np.zeros((h, w, 3), np.uint8), points=pts, colors=np.zeros((2000, 3), np.uint8),
                       is_keyframe=False, metric=True)


def make_factory(kind: str):
    """(factory, serialise(outgoing)) as the node (rclpy) or the replay (rosbags) uses them."""
    if kind == "rclpy":
        from rclpy.serialization import serialize_message

        from vggt_ros.ros.factories import RclpyMessages

        def ser(m) -> None:
            if isinstance(m.message, bytes):  # the Path: published as it is
                return
            for msg in m.message if m.key == "tf" else [m.message]:
                serialize_message(msg)

        return RclpyMessages(), ser
    from rosbags.typesys import Stores, get_typestore

    from vggt_ros.bag.writer import RosbagsMessages
    from vggt_ros.outputs.plan import OUTPUTS_BY_KEY

    ts = get_typestore(Stores.ROS2_JAZZY)
    factory = RosbagsMessages(ts)

    def ser_rosbags(m) -> None:
        if isinstance(m.message, bytes):  # the Path: written as it is
            return
        if m.key == "tf":
            for msg in m.message:
                ts.serialize_cdr(msg, "geometry_msgs/msg/TransformStamped")
        else:
            ts.serialize_cdr(m.message, OUTPUTS_BY_KEY[m.key].msg_type)

    return factory, ser_rosbags


def per_frame_ms(kind: str, poses: int, frames: int, params: dict) -> float:
    factory, ser = make_factory(kind)
    builder = OutputBuilder(params, factory, PoseFrames(params, np.eye(4), None))
    fo = frame_output(0)
    for i in range(poses):  # the path of a long stream so far
        fo.stamp_ns = i
        builder.window(WindowOutput(i, True, [fo]))
    builder.path()
    per_path = max(1, int(round(params["path_publish_period_s"] * RATE_HZ)))
    times = []
    outs = [frame_output(i) for i in range(frames)]
    for i, f in enumerate(outs):
        f.stamp_ns = poses + i
        t0 = time.perf_counter()
        for m in builder.window(WindowOutput(poses + i, True, [f])):
            ser(m)
        if i % per_path == per_path - 1:
            m = builder.path()
            ser(m)
        times.append(time.perf_counter() - t0)
    # mean over whole path periods (the Path's cost is spread over the frames of its period)
    return statistics.fmean(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--poses", type=int, nargs=2, default=[100, 10000])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--factory", nargs="+", default=["rclpy", "rosbags"], choices=["rclpy", "rosbags"])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    params = validate_params(dict(predictor="oracle", checkpoint="", path_max_poses=20000))
    print(f"# output_plan: {args.frames} frames at {RATE_HZ:g} Hz, Path every "
          f"{params['path_publish_period_s']} s, best of {args.repeats}")
    print("| factory | ms/frame, " + " | ms/frame, ".join(f"{n} poses" for n in args.poses) + " | ratio |")
    print("|---|---:|---:|---:|")
    for kind in args.factory:
        ms = [min(per_frame_ms(kind, n, args.frames, params) for _ in range(args.repeats))
              for n in args.poses]
        print(f"| {kind} | {ms[0]:.3f} | {ms[1]:.3f} | {ms[1] / ms[0]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
