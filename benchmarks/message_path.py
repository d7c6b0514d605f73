"""Speed of the message path (vggt_ros.ros.conversions) against baselines measured in the same run.

    python3 benchmarks/message_path.py [--repeat 15]

Rows:
* depth -> points -> PointCloud2 data: back-projection + packing (the public functions), against a
  naive per-point Python build (struct.pack per point, the classic approach) and a plain memcpy of
  the same number of bytes (np.copy and bytes()). Targets: >= 10x the naive build; the packing alone
  within 3x of memcpy.
* depth image + CameraInfo fields (and the rclpy message build when rclpy is installed) vs memcpy.
* image decode of a 1280x720 frame (rgb8, bgr8 with padded step, JPEG) vs memcpy.
Best-of-N wall times (min), one thread of numpy; memcpy of a buffer that fits the CPU cache is
unrealistically fast at the smaller size, so the 1280x720 ratio is the meaningful one.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vggt_ros.ros import conversions as conv  # noqa: E402


def best_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3


def naive_cloud(depth: np.ndarray, K: np.ndarray, rgb: np.ndarray) -> bytes:
    """Per-point Python build: what a straightforward implementation does."""
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    out = bytearray()
    h, w = depth.shape
    d = depth.tolist()
    c = rgb.tolist()
    for v in range(h):
        row, crow = d[v], c[v]
        for u in range(w):
            z = row[u]
            if z > 0 and z == z and z != float("inf"):
                r, g, b = crow[u]
                out += struct.pack("<fffI", (u - cx) / fx * z, (v - cy) / fy * z, z, (r << 16) | (g << 8) | b)
    return bytes(out)


def scene(w: int, h: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.3, 8.0, (h, w)).astype(np.float32)
    depth[rng.uniform(size=(h, w)) < 0.1] = np.nan  # 10 % invalid, as after a confidence filter
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    K = np.array([[0.9 * w, 0, (w - 1) / 2], [0, 0.9 * w, (h - 1) / 2], [0, 0, 1.0]])
    return depth, rgb, K


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--naive-repeat", type=int, default=1)
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)

    rows: list[tuple[str, str, float, str, float]] = []

    def row(what: str, size: str, ms: float, base_name: str, base_ms: float) -> None:
        rows.append((what, size, ms, base_name, base_ms))

    try:
        import sensor_msgs.msg as sensor_msgs
    except ImportError:  # rclpy wheels not installed: skip the rclpy build rows
        sensor_msgs = None

    for w, h in ((518, 392), (1280, 720)):
        size = f"{w}x{h}"
        depth, rgb, K = scene(w, h)
        pts, cols = conv.depth_to_points(depth, K, rgb)
        data = conv.pointcloud2_data(pts, cols)
        ref = naive_cloud(depth, K, rgb)
        # same cloud (coordinates to float32 rounding: the naive build computes in float64)
        n_ref = len(ref) // 16
        ref_xyz, ref_rgb = conv.pointcloud2_to_xyz_rgb(conv.XYZRGB_FIELDS, 1, n_ref, 16, len(ref), ref)
        assert np.allclose(ref_xyz, pts, rtol=1e-6, atol=1e-6), "clouds differ"
        assert np.array_equal(ref_rgb, cols), "cloud colours differ"
        nbytes = data.nbytes

        def full(depth=depth, K=K, rgb=rgb):
            p, c = conv.depth_to_points(depth, K, rgb)
            return conv.pointcloud2_fields(p, c, 0, "cam")

        t_full = best_ms(full, args.repeat)
        t_naive = best_ms(lambda depth=depth, K=K, rgb=rgb: naive_cloud(depth, K, rgb), args.naive_repeat)
        t_pack = best_ms(lambda pts=pts, cols=cols: conv.pointcloud2_data(pts, cols), args.repeat)
        t_d2p = best_ms(lambda depth=depth, K=K, rgb=rgb: conv.depth_to_points(depth, K, rgb), args.repeat)
        t_copy = best_ms(lambda data=data: np.copy(data), args.repeat)
        t_bytes = best_ms(lambda data=data: bytes(data), args.repeat)
        label = f"{len(pts)} pts, {nbytes / 1e6:.1f} MB"
        row(f"depth->points->PointCloud2 ({label})", size, t_full, "naive per-point", t_naive)
        row("  same", size, t_full, "np.copy of the bytes", t_copy)
        row("  points+colors->PointCloud2 data (pack only)", size, t_pack, "np.copy of the bytes", t_copy)
        row("  pack only", size, t_pack, "bytes() of the bytes", t_bytes)
        row("  depth->points only", size, t_d2p, "np.copy of the bytes", t_copy)
        if sensor_msgs is not None:
            f = conv.pointcloud2_fields(pts, cols, 0, "cam")
            t_rcl = best_ms(lambda f=f: conv.to_rclpy(sensor_msgs.PointCloud2, f), args.repeat)
            mode = "checked" if os.environ.get("ROS_PYTHON_CHECK_FIELDS") == "1" else "unchecked"
            row(f"  fields->rclpy PointCloud2 ({mode})", size, t_rcl, "np.copy of the bytes", t_copy)

        # depth image + CameraInfo
        dbytes = depth.nbytes

        def depth_msgs(depth=depth, K=K, w=w, h=h):
            return conv.depth_image_fields(depth, 0, "cam"), conv.camera_info_fields(K, h, w, 0, "cam")

        t_dimg = best_ms(depth_msgs, args.repeat)
        t_dcopy = best_ms(lambda depth=depth: np.copy(depth), args.repeat)
        what = f"depth Image + CameraInfo fields ({dbytes / 1e6:.1f} MB)"
        row(what, size, t_dimg, "np.copy of depth", t_dcopy)
        if sensor_msgs is not None:

            def depth_rclpy(depth=depth, K=K, w=w, h=h):
                di, ci = depth_msgs(depth, K, w, h)
                return conv.to_rclpy(sensor_msgs.Image, di), conv.to_rclpy(sensor_msgs.CameraInfo, ci)

            t_drcl = best_ms(depth_rclpy, args.repeat)
            row("  + rclpy Image/CameraInfo build", size, t_drcl, "np.copy of depth", t_dcopy)

    # image decode, 1280x720
    w, h = 1280, 720
    rgb = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    raw = rgb.tobytes()
    t_rcopy = best_ms(lambda: np.frombuffer(raw, np.uint8).copy(), args.repeat)
    t_rgb8 = best_ms(lambda: conv.image_to_rgb("rgb8", h, w, 3 * w, raw), args.repeat)
    padded = np.zeros((h, 3 * w + 64), np.uint8)
    padded[:, : 3 * w] = rgb[:, :, ::-1].reshape(h, -1)
    pbytes = padded.tobytes()
    t_bgr8 = best_ms(lambda: conv.image_to_rgb("bgr8", h, w, 3 * w + 64, pbytes), args.repeat)
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)
    jpeg = cv2.imencode(".jpg", smooth, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    t_jpeg = best_ms(lambda: conv.compressed_to_rgb("jpeg", jpeg), args.repeat)
    t_jpeg_cv = best_ms(lambda: cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), args.repeat)
    row("image decode rgb8", "1280x720", t_rgb8, "np.copy of the bytes", t_rcopy)
    row("image decode bgr8, padded step", "1280x720", t_bgr8, "np.copy of the bytes", t_rcopy)
    row("CompressedImage jpeg decode", "1280x720", t_jpeg, "bare cv2.imdecode", t_jpeg_cv)

    print(f"{'what':<58} {'size':>9} {'ms':>9}   {'baseline':<24} {'ms':>9} {'ratio':>9}")
    for what, size, ms, base_name, base_ms in rows:
        ratio = base_ms / ms if "naive" in base_name else ms / base_ms
        kind = "x faster" if "naive" in base_name else "x base"
        print(f"{what:<58} {size:>9} {ms:9.3f}   {base_name:<24} {base_ms:9.3f} {ratio:7.2f} {kind}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
