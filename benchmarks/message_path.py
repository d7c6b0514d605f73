"""Speed of the message path (CPU) against baselines measured in the same run.

    python3 benchmarks/message_path.py [--repeat 15]

Issue 6 targets, per row marked with a target: >= 10x a naive per-point Python build, and within 3x
of a plain memcpy of the same bytes, at 518x392 and 1280x720.

Rows (per size):
* depth -> PointCloud2: the fused public path ``depth_to_pointcloud2_fields`` (unorganised, valid
  pixels only, and the organised H x W variant with NaN at invalid pixels), the two-step
  ``backproject_depth`` + ``pointcloud2_fields``, packing alone, and the floor of the unorganised path
  (one boolean compress of ready-made 16-byte records: the data-dependent gather any unorganised
  build must do), and for information the same compress and a plain memcpy split over 2 threads
  (what a second core buys on this machine; the 3x baseline stays the single-threaded memcpy).
* production path: the core ``window_outputs.sampled_depth_points`` (confidence-masked depth, the default
  stride 4 / 20000 points, and full resolution) + colour gather + ``pointcloud2_fields``, exactly what the
  node and the bag writer run.
* depth Image + CameraInfo fields (and the rclpy build when rclpy is installed).
* map voxel update: ``WorldMap.add`` of one full-resolution frame into a map already holding 200k
  voxels, against a per-point Python dict voxel update with the same semantics; and its floor: the
  batch's packed voxel keys alone (``pack_voxel_keys``), which any vectorised voxel update computes
  before it can group anything.
Then, for a 1280x720 frame: image decoding (rgb8, padded bgr8, JPEG) and preprocessing to the
network input (time per frame).

Baselines. Naive: per-point Python (``struct.pack`` per point; dict per voxel), checked to give the
same result. Memcpy of the same number of bytes, two ways: ``np.copy`` (fresh allocation, like the
functions under test, whose outputs are new arrays owned by the message) and ``np.copyto`` into a
preallocated buffer; the ratio uses the FASTER of the two (the stricter baseline). Both baselines are
single-threaded. Best-of-N wall times (min), one numpy thread and ``cv2.setNumThreads(1)``; the
back-projection rows are given for 1 thread and for its default ``backprojection.CLOUD_THREADS`` (its
own row bands on a small thread pool), every other row runs on one thread. The speckle scene (10 % invalid
pixels at random) is the worst case for the boolean compress; the production rows use a spatially
smooth confidence field (VGGT confidence is smooth) cut at its 25th percentile, as the pipeline does.
A memcpy of a buffer that fits the CPU cache (518x392: 2.9 MB) is unrealistically fast, so the
1280x720 ratios are the meaningful ones.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one numpy/BLAS thread (before numpy is imported)

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vggt_ros.core import backprojection, window_outputs  # noqa: E402
from vggt_ros.core.backprojection import (  # noqa: E402
    backproject_depth,
    depth_to_cloud_records,
    finite_positive_depth_mask,
)
from vggt_ros.core.world_map import WorldMap, pack_voxel_keys  # noqa: E402
from vggt_ros.messages.builders import to_rclpy  # noqa: E402
from vggt_ros.messages.camera_info import camera_info_fields  # noqa: E402
from vggt_ros.messages.images import compressed_to_rgb, depth_image_fields, image_to_rgb  # noqa: E402
from vggt_ros.messages.point_clouds import (  # noqa: E402
    XYZRGB_FIELDS,
    depth_to_pointcloud2_fields,
    pointcloud2_data,
    pointcloud2_fields,
    pointcloud2_to_xyz_rgb,
)

VOXEL = 0.02


def best_ms(fn: Callable[[], object], repeat: int, setup: Callable[[], object] | None = None) -> float:
    """Best-of-``repeat`` wall time of ``fn`` in ms (after one warm-up); ``setup`` runs untimed before
    each call and its result is passed to ``fn``."""
    def once() -> float:
        arg = setup() if setup is not None else None
        t0 = time.perf_counter()
        fn(arg) if setup is not None else fn()
        return time.perf_counter() - t0

    once()  # warm-up
    return min(once() for _ in range(repeat)) * 1e3


def memcpy_ms(nbytes: int, repeat: int) -> tuple[float, float]:
    """(np.copy, np.copyto) of ``nbytes`` bytes: fresh allocation and preallocated destination."""
    src = np.random.default_rng(7).integers(0, 256, nbytes, dtype=np.uint8)
    dst = np.empty_like(src)
    return best_ms(lambda: np.copy(src), repeat), best_ms(lambda: np.copyto(dst, src), repeat)


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


def naive_voxel_update(vox: dict, tick: int, points: np.ndarray, colors: np.ndarray, voxel: float) -> int:
    """Per-point Python dict voxel update with WorldMap's semantics: batch mean per voxel, new voxels
    inserted, known voxels only refresh their tick. Returns the number of new voxels."""
    batch: dict[tuple[int, int, int], list] = {}
    for (x, y, z), (r, g, b) in zip(points.tolist(), colors.tolist(), strict=True):
        if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(z)):
            continue
        key = (math.floor(x / voxel), math.floor(y / voxel), math.floor(z / voxel))
        acc = batch.get(key)
        if acc is None:
            batch[key] = [x, y, z, r, g, b, 1]
        else:
            acc[0] += x
            acc[1] += y
            acc[2] += z
            acc[3] += r
            acc[4] += g
            acc[5] += b
            acc[6] += 1
    new = 0
    for key, (sx, sy, sz, sr, sg, sb, n) in batch.items():
        entry = vox.get(key)
        if entry is None:
            vox[key] = [sx / n, sy / n, sz / n, round(sr / n), round(sg / n), round(sb / n), tick]
            new += 1
        else:
            entry[6] = tick
    return new


def scene(w: int, h: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.3, 8.0, (h, w)).astype(np.float32)
    depth[rng.uniform(size=(h, w)) < 0.1] = np.nan  # 10 % invalid, speckled (worst case for compress)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    K = np.array([[0.9 * w, 0, (w - 1) / 2], [0, 0.9 * w, (h - 1) / 2], [0, 0, 1.0]])
    return depth, rgb, K


def confidence_masked(depth: np.ndarray, seed: int = 1) -> np.ndarray:
    """Depth with NaN where a smooth confidence field is below its 25th percentile (as the pipeline's
    ``valid_conf_mask`` does with VGGT's spatially smooth confidence)."""
    h, w = depth.shape
    noise = np.random.default_rng(seed).standard_normal((h, w)).astype(np.float32)
    conf = cv2.GaussianBlur(noise, (0, 0), 0.02 * w)
    mask = window_outputs.valid_conf_mask(conf, 25.0, -np.inf)
    return np.where(mask, depth, np.float32(np.nan)).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--naive-repeat", type=int, default=1)
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    R = args.repeat

    # (what, size, ms, baseline name, baseline ms, target)  target: "10x", "3x" or ""
    rows: list[tuple[str, str, float, str, float, str]] = []

    def row(what: str, size: str, ms: float, base_name: str, base_ms: float, target: str = "") -> None:
        rows.append((what, size, ms, base_name, base_ms, target))

    def mem_rows(what: str, size: str, ms: float, nbytes: int, target: str = "") -> None:
        t_copy, t_copyto = memcpy_ms(nbytes, R)
        name = "np.copy" if t_copy <= t_copyto else "np.copyto"
        row(what, size, ms, f"memcpy ({name}, {nbytes / 1e6:.1f} MB)", min(t_copy, t_copyto), target)

    try:
        import sensor_msgs.msg as sensor_msgs
    except ImportError:  # rclpy wheels not installed: skip the rclpy build rows
        sensor_msgs = None

    # Allocator warm-up: glibc raises its mmap/trim thresholds only after freeing large blocks, so the
    # first calls of a process page-fault every fresh multi-MB array (a long-running node reaches the
    # steady state after its first frames). Run each timed path once at the largest size first, so
    # that the rows do not depend on the order they are measured in.
    depth, rgb, K = scene(1280, 720)
    for organized in (False, True):
        depth_to_pointcloud2_fields(depth, K, rgb, 0, "cam", organized=organized)
    pointcloud2_fields(*backproject_depth(depth, K, rgb), 0, "cam")
    wp, wf = window_outputs.sampled_depth_points(depth, K, 1, 0)
    WorldMap(VOXEL).add(wp, rgb.reshape(-1, 3)[wf])

    for w, h in ((518, 392), (1280, 720)):
        size = f"{w}x{h}"
        depth, rgb, K = scene(w, h)

        # --- conversions: depth -> PointCloud2 -----------------------------------------------------
        fields = depth_to_pointcloud2_fields(depth, K, rgb, 0, "cam")
        data = fields["data"]
        ref = naive_cloud(depth, K, rgb)
        n_ref = len(ref) // 16  # same cloud (coordinates to float32 rounding: naive is float64)
        ref_xyz, ref_rgb = pointcloud2_to_xyz_rgb(XYZRGB_FIELDS, 1, n_ref, 16, len(ref), ref)
        got_xyz, got_rgb = pointcloud2_to_xyz_rgb(fields["fields"], 1, fields["width"], 16,
                                                  fields["row_step"], data)
        assert np.allclose(ref_xyz, got_xyz, rtol=1e-6, atol=1e-6), "clouds differ"
        assert np.array_equal(ref_rgb, got_rgb), "cloud colours differ"
        pts, cols = backproject_depth(depth, K, rgb)
        assert np.array_equal(pointcloud2_data(pts, cols), data), "two-step and fused paths differ"
        nbytes = data.nbytes
        label = f"{fields['width']} pts, {nbytes / 1e6:.1f} MB"

        t_naive = best_ms(lambda depth=depth, K=K, rgb=rgb: naive_cloud(depth, K, rgb), args.naive_repeat)
        org = depth_to_pointcloud2_fields(depth, K, rgb, 0, "cam", organized=True)
        for threads in (1, None):  # None: the default, backprojection.CLOUD_THREADS (small images: 1)
            for organized in (False, True):
                got = depth_to_pointcloud2_fields(depth, K, rgb, 0, "cam", organized=organized,
                                                  threads=threads)
                assert np.array_equal(got["data"], org["data"] if organized else data), "threads differ"
            used = backprojection._bands(h, w, backprojection._cloud_threads(threads))[0]
            tag = f"{'default, ' if threads is None else ''}{used} thread{'s' if used > 1 else ''}"
            t_fused = best_ms(lambda depth=depth, K=K, rgb=rgb, threads=threads:
                              depth_to_pointcloud2_fields(depth, K, rgb, 0, "cam", threads=threads), R)
            row(f"depth->PointCloud2 fused, {tag} ({label})", size, t_fused, "naive per-point", t_naive,
                "10x")
            mem_rows("  same", size, t_fused, nbytes, "3x")
            t_org = best_ms(lambda depth=depth, K=K, rgb=rgb, threads=threads:
                            depth_to_pointcloud2_fields(depth, K, rgb, 0, "cam", organized=True,
                                                        threads=threads), R)
            mem_rows(f"  organised {h}x{w}, NaN invalid, {tag}", size, t_org, org["data"].nbytes, "3x")

        def two_step(depth=depth, K=K, rgb=rgb):
            p, c = backproject_depth(depth, K, rgb)
            return pointcloud2_fields(p, c, 0, "cam")

        mem_rows("  backproject_depth + pointcloud2_fields", size, best_ms(two_step, R), nbytes)
        mem_rows("    backproject_depth only", size, best_ms(
            lambda depth=depth, K=K, rgb=rgb: backproject_depth(depth, K, rgb), R), nbytes)
        mem_rows("    pack only (pointcloud2_data)", size, best_ms(
            lambda pts=pts, cols=cols: pointcloud2_data(pts, cols), R), nbytes, "3x")
        records = depth_to_cloud_records(depth, K, rgb, organized=True).reshape(-1).view("V16")
        valid = finite_positive_depth_mask(depth).reshape(-1)
        mem_rows("  floor: bool compress of ready 16-B records", size, best_ms(
            lambda records=records, valid=valid: records[valid], R), nbytes)
        # Information only (never the 3x baseline): what a second thread buys on this machine, for
        # the same compress (each half into its own array) and for a plain copy of the same bytes.
        halves = [(0, len(records) // 2), (len(records) // 2, len(records))]
        mem_rows("  floor, 2 threads: the same compress, two halves", size, best_ms(
            lambda records=records, valid=valid, halves=halves: backprojection._run_shared(
                lambda ab: records[ab[0]:ab[1]][valid[ab[0]:ab[1]]], halves, 2), R), nbytes)
        src, dst = np.ones(nbytes, np.uint8), np.empty(nbytes, np.uint8)
        cuts = [(0, nbytes // 2), (nbytes // 2, nbytes)]
        mem_rows("  (info) memcpy on 2 threads, np.copyto halves", size, best_ms(
            lambda src=src, dst=dst, cuts=cuts: backprojection._run_shared(
                lambda ab: np.copyto(dst[ab[0]:ab[1]], src[ab[0]:ab[1]]), cuts, 2), R), nbytes)
        if sensor_msgs is not None:
            t_rcl = best_ms(lambda f=fields: to_rclpy(sensor_msgs.PointCloud2, f), R)
            mode = "checked" if os.environ.get("ROS_PYTHON_CHECK_FIELDS") == "1" else "unchecked"
            mem_rows(f"  fields->rclpy PointCloud2 ({mode})", size, t_rcl, nbytes)

        # --- production path: core points (confidence mask) -> PointCloud2 ---------------------------
        masked = confidence_masked(depth)
        for stride, max_points in ((4, 20000), (1, 0)):
            def production(masked=masked, K=K, rgb=rgb, stride=stride, max_points=max_points):
                p, flat = window_outputs.sampled_depth_points(masked, K, stride, max_points)
                # colours gathered as the pipeline does (FrameOutputBuilder.frame_output)
                return pointcloud2_fields(p, np.take(rgb.reshape(-1, 3), flat, axis=0), 0, "cam")

            f = production()
            what = f"production stride {stride}, max {max_points} ({f['width']} pts)"
            t_prod = best_ms(production, R)
            if stride == 1:
                ref = naive_cloud(masked, K, rgb)
                assert len(ref) == f["data"].nbytes, "production cloud size differs from the naive build"
                t_pn = best_ms(lambda masked=masked, K=K, rgb=rgb: naive_cloud(masked, K, rgb),
                               args.naive_repeat)
                row(what, size, t_prod, "naive per-point", t_pn, "10x")
                what = "  same"
            mem_rows(what, size, t_prod, f["data"].nbytes, "3x")
            if stride == 1:  # for comparison: the colour gather as 2-D fancy indexing (same result)
                def production_fancy(masked=masked, K=K, rgb=rgb):
                    p, flat = window_outputs.sampled_depth_points(masked, K, 1, 0)
                    return pointcloud2_fields(p, rgb.reshape(-1, 3)[flat], 0, "cam")

                assert np.array_equal(production_fancy()["data"], f["data"])
                mem_rows("  same, colours by fancy indexing (not used)", size, best_ms(production_fancy, R),
                         f["data"].nbytes)

        # --- depth image + CameraInfo ------------------------------------------------------------------
        def depth_msgs(depth=depth, K=K, w=w, h=h):
            return depth_image_fields(depth, 0, "cam"), camera_info_fields(K, h, w, 0, "cam")

        mem_rows("depth Image + CameraInfo fields", size, best_ms(depth_msgs, R), depth.nbytes, "3x")
        if sensor_msgs is not None:
            def depth_rclpy(depth=depth, K=K, w=w, h=h):
                di, ci = depth_msgs(depth, K, w, h)
                return to_rclpy(sensor_msgs.Image, di), to_rclpy(sensor_msgs.CameraInfo, ci)

            mem_rows("  + rclpy Image/CameraInfo build", size, best_ms(depth_rclpy, R), depth.nbytes)

        # --- map voxel update ---------------------------------------------------------------------------
        mp, flat = window_outputs.sampled_depth_points(depth, K, 1, 0)
        mc = rgb.reshape(-1, 3)[flat]
        rng = np.random.default_rng(3)
        base_p = rng.uniform(-4, 4, (200_000, 3)).astype(np.float32)
        base_c = rng.integers(0, 256, (200_000, 3), dtype=np.uint8)
        base = WorldMap(VOXEL, 2_000_000)
        base.add(base_p, base_c)
        base_dict: dict = {}
        naive_voxel_update(base_dict, 1, base_p, base_c, VOXEL)
        assert len(base_dict) == len(base), "naive and vectorised maps differ"
        n_new = copy.deepcopy(base).add(mp, mc)
        assert naive_voxel_update(dict(base_dict), 2, mp, mc, VOXEL) == n_new, "new voxel counts differ"
        t_map = best_ms(lambda m, mp=mp, mc=mc: m.add(mp, mc), min(R, 5),
                        setup=lambda base=base: copy.deepcopy(base))
        t_map_naive = best_ms(lambda d, mp=mp, mc=mc: naive_voxel_update(d, 2, mp, mc, VOXEL),
                              args.naive_repeat, setup=lambda base_dict=base_dict: dict(base_dict))
        what = f"map voxel update ({len(mp)} pts -> {len(base)} voxel map)"
        row(what, size, t_map, "naive per-point dict", t_map_naive, "10x")
        mem_rows("  same", size, t_map, mp.nbytes + mc.nbytes, "3x")
        # what any vectorised voxel update pays before grouping anything: the batch's voxel keys alone
        mem_rows("  floor: voxel keys only (divide, floor, pack)", size,
                 best_ms(lambda mp=mp: pack_voxel_keys(mp, VOXEL), R), mp.nbytes + mc.nbytes)

    # --- image decode and preprocessing of a 1280x720 frame -------------------------------------------
    w, h = 1280, 720
    size = f"{w}x{h}"
    rgb = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    raw = rgb.tobytes()
    mem_rows("image decode rgb8", size, best_ms(lambda: image_to_rgb("rgb8", h, w, 3 * w, raw), R),
             len(raw))
    padded = np.zeros((h, 3 * w + 64), np.uint8)
    padded[:, : 3 * w] = rgb[:, :, ::-1].reshape(h, -1)
    pbytes = padded.tobytes()
    mem_rows("image decode bgr8, padded step", size,
             best_ms(lambda: image_to_rgb("bgr8", h, w, 3 * w + 64, pbytes), R), len(raw))
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)
    jpeg = cv2.imencode(".jpg", smooth, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    t_jpeg = best_ms(lambda: compressed_to_rgb("jpeg", jpeg), R)
    t_jpeg_cv = best_ms(lambda: cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), R)
    row("CompressedImage jpeg decode", size, t_jpeg, "bare cv2.imdecode", t_jpeg_cv)

    import torch
    from PIL import Image

    from vggt_ros.model import preprocessing

    torch.set_num_threads(1)
    frame = compressed_to_rgb("jpeg", jpeg)
    t_pre = best_ms(lambda: preprocessing.preprocess_images([frame], "crop", 518), R)
    t_pre_u8 = best_ms(lambda: preprocessing.preprocess_images_uint8([frame], "crop", 518), R)
    new_w, new_h = 518, round(h * (518 / w) / 14) * 14
    t_pil = best_ms(lambda: Image.fromarray(frame).resize((new_w, new_h), Image.Resampling.BICUBIC), R)
    row("preprocess -> network float tensor (crop 518)", size, t_pre, "bare PIL bicubic resize", t_pil)
    row("  preprocess -> uint8 network image", size, t_pre_u8, "bare PIL bicubic resize", t_pil)
    row("  jpeg decode + preprocess, per frame", size, t_jpeg + t_pre, "bare PIL bicubic resize", t_pil)

    print(f"{'what':<52} {'size':>9} {'ms':>8}   {'baseline':<33} {'ms':>8} {'ratio':>15}  target")
    for what, size, ms, base_name, base_ms, target in rows:
        faster = "naive" in base_name
        ratio = base_ms / ms if faster else ms / base_ms
        kind = "x faster" if faster else "x base"
        verdict = ""
        if target == "10x":
            verdict = f">=10x naive: {'met' if ratio >= 10 else 'NOT met'}"
        elif target == "3x":
            verdict = f"<=3x memcpy: {'met' if ratio <= 3 else 'NOT met'}"
        print(f"{what:<52} {size:>9} {ms:8.3f}   {base_name:<33} {base_ms:8.3f} {ratio:7.2f} {kind:<8} "
              f"{verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
