"""Numpy <-> ROS message *fields*, without importing ROS.

One code path for the rclpy node and the offline bag tools: every ``*_fields`` function returns a
plain nested ``dict`` of field values (numpy arrays for numeric sequences, ints, floats, strings,
nested dicts for sub-messages, lists of dicts for message sequences). Two thin builders turn such a
dict into a real message:

* :func:`to_rclpy` for rclpy message classes (sequences become ``array.array`` of the right type
  code, fixed arrays numpy arrays of the right dtype, so ``ROS_PYTHON_CHECK_FIELDS=1`` passes and
  large payloads are copied once, never iterated in Python);
* :func:`to_rosbags` for ``rosbags`` typestore dataclasses (numpy arrays for numeric sequences),
  which the bag tools serialise to CDR.

The readers (``image_to_rgb``, ``pointcloud2_to_xyz_rgb``, ``*_msg_*`` helpers) are duck-typed: they
accept rclpy messages, rosbags dataclasses and ``mcap_ros2`` decoded objects alike, and always return
new arrays (never views of a message buffer). :func:`msg_to_fields` turns any of them back into a
fields dict (so ``to_rosbags(ts, t, msg_to_fields(rclpy_msg))`` converts between flavours).

Fields may share memory with the arrays they were made from (e.g. ``depth_image_fields`` views the
depth array): :func:`to_rclpy` copies, rosbags messages keep the view, so serialise them before
mutating the inputs. Custom type: ``vggt_ros/msg/KeypointTracks`` (register it in a rosbags
typestore with :func:`register_custom_types`).

Conventions: REP 103 (metres, right-handed), REP 118 depth (``32FC1`` metres, NaN = invalid,
little-endian), quaternions ``(x, y, z, w)``, poses as 4x4 ``parent_T_child`` float64 matrices,
stamps as integer nanoseconds.
"""

from __future__ import annotations

import array
import dataclasses
import functools
import importlib
import logging
import math
import os
import re
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from vggt_ros.core.types import TrackOutput

logger = logging.getLogger(__name__)

if sys.byteorder != "little":  # pragma: no cover - every ROS 2 tier-1 platform is little-endian
    raise ImportError("vggt_ros.ros.conversions assumes a little-endian host")

Fields = dict[str, Any]

# ---------------------------------------------------------------------------------------------------
# Stamps and headers
# ---------------------------------------------------------------------------------------------------

NS_PER_S = 1_000_000_000


def ns_to_stamp(stamp_ns: int) -> tuple[int, int]:
    """Integer nanoseconds -> ``(sec, nanosec)`` with ``0 <= nanosec < 1e9`` (floor division, so a
    negative time still has a valid nanosec)."""
    sec, nanosec = divmod(int(stamp_ns), NS_PER_S)
    if not -(2**31) <= sec < 2**31:
        raise ValueError(f"stamp {stamp_ns} ns does not fit builtin_interfaces/Time (int32 seconds)")
    return sec, nanosec


def stamp_to_ns(sec: int, nanosec: int) -> int:
    """``(sec, nanosec)`` -> integer nanoseconds (exact, no float rounding)."""
    return int(sec) * NS_PER_S + int(nanosec)


def time_fields(stamp_ns: int) -> Fields:
    """``builtin_interfaces/Time`` fields."""
    sec, nanosec = ns_to_stamp(stamp_ns)
    return {"sec": sec, "nanosec": nanosec}


def header_fields(stamp_ns: int, frame_id: str) -> Fields:
    """``std_msgs/Header`` fields."""
    return {"stamp": time_fields(stamp_ns), "frame_id": str(frame_id)}


def stamp_ns_of(obj: Any) -> int:
    """Nanoseconds of a Time-like object (``.sec``/``.nanosec``), a header (``.stamp``) or a stamped
    message (``.header.stamp``); also accepts the equivalent dicts."""
    for path in ((), ("stamp",), ("header", "stamp")):
        cur = obj
        try:
            for name in path:
                cur = cur[name] if isinstance(cur, Mapping) else getattr(cur, name)
            if isinstance(cur, Mapping):
                return stamp_to_ns(cur["sec"], cur["nanosec"])
            return stamp_to_ns(cur.sec, cur.nanosec)
        except (AttributeError, KeyError, TypeError):
            continue
    raise TypeError(f"cannot find a stamp in {type(obj).__name__}")


# ---------------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------------


class UnsupportedEncoding(ValueError):
    """An image encoding (or compressed format) this package cannot turn into RGB/depth."""

    def __init__(self, encoding: str, hint: str = "") -> None:
        self.encoding = encoding
        msg = f"unsupported image encoding {encoding!r}"
        super().__init__(f"{msg}: {hint}" if hint else msg)


# encoding -> (channels, OpenCV conversion code to RGB or None when already RGB); all 8-bit.
_COLOR_ENCODINGS: dict[str, tuple[int, str | None]] = {
    "rgb8": (3, None),
    "bgr8": (3, "COLOR_BGR2RGB"),
    "rgba8": (4, "COLOR_RGBA2RGB"),
    "bgra8": (4, "COLOR_BGRA2RGB"),
    "mono8": (1, "COLOR_GRAY2RGB"),
    "8uc1": (1, "COLOR_GRAY2RGB"),
}
_DEPTH_ENCODINGS = {"16uc1", "mono16", "32fc1"}
RGB_ENCODINGS = tuple(k for k in _COLOR_ENCODINGS if k != "8uc1")


def as_uint8_buffer(data: Any) -> np.ndarray:
    """Any message byte payload (``bytes``, ``array.array``, numpy array, list of ints) as a flat
    uint8 numpy array, without copying when the input exposes a buffer."""
    if isinstance(data, np.ndarray):
        if data.dtype == np.uint8:
            return data.reshape(-1)
        return np.ascontiguousarray(data).view(np.uint8).reshape(-1)
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    return np.asarray(data, dtype=np.uint8).reshape(-1)


def _rows(data: Any, height: int, width: int, step: int, bytes_per_pixel: int, what: str) -> np.ndarray:
    """``[height, width * bytes_per_pixel]`` uint8 view of a row-padded image payload."""
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise ValueError(f"{what}: zero-size image ({height}x{width})")
    row_bytes = width * bytes_per_pixel
    if step < row_bytes:
        raise ValueError(f"{what}: step {step} < width {width} * {bytes_per_pixel} bytes per pixel")
    buf = as_uint8_buffer(data)
    need = step * (height - 1) + row_bytes
    if buf.size < need:
        raise ValueError(
            f"{what}: {buf.size} data bytes, expected at least {need} ({height} rows x step {step})"
        )
    # Strided view: row r starts at r * step; padding bytes at the end of each row are skipped.
    return np.lib.stride_tricks.as_strided(buf, shape=(height, row_bytes), strides=(step, 1), writeable=False)


def image_to_rgb(
    encoding: str, height: int, width: int, step: int, data: Any, is_bigendian: int = 0
) -> np.ndarray:
    """``sensor_msgs/Image`` fields -> contiguous HxWx3 uint8 RGB (a copy, safe to keep).

    Supports rgb8, bgr8, rgba8, bgra8 (alpha dropped), mono8/8UC1 (grey replicated); ``step``
    padding is honoured. Depth encodings (16UC1, mono16, 32FC1) are refused with
    :class:`UnsupportedEncoding` (use :func:`image_to_depth`), as is anything else (Bayer, YUV, ...).
    ``is_bigendian`` is irrelevant for 8-bit data.
    """
    enc = str(encoding).strip().lower()
    if enc not in _COLOR_ENCODINGS:
        if enc in _DEPTH_ENCODINGS:
            raise UnsupportedEncoding(encoding, "this is a depth/16-bit encoding, not a colour image "
                                      "(use image_to_depth)")
        raise UnsupportedEncoding(encoding, f"supported colour encodings: {', '.join(RGB_ENCODINGS)}")
    import cv2

    channels, to_rgb = _COLOR_ENCODINGS[enc]
    rows = _rows(data, height, width, step, channels, f"image ({encoding})")
    px = rows.reshape(int(height), int(width), channels)  # a view honouring the row step
    if to_rgb is None:
        return np.array(px, order="C")  # copy: never hand out a view of the message buffer
    return cv2.cvtColor(px, getattr(cv2, to_rgb))  # SIMD channel reorder into a new array


def compressed_to_rgb(format: str, data: Any) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (JPEG or PNG) -> HxWx3 uint8 RGB via OpenCV."""
    import cv2

    fmt = str(format).lower()
    if "compresseddepth" in fmt:
        raise UnsupportedEncoding(format, "compressedDepth images are depth, not colour")
    if not any(k in fmt for k in ("jpeg", "jpg", "png")):
        raise UnsupportedEncoding(format, "CompressedImage format must name jpeg or png")
    buf = as_uint8_buffer(data)
    if buf.size == 0:
        raise ValueError(f"compressed image ({format}): empty data")
    rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10 decodes straight to RGB
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR if rgb_flag is None else rgb_flag)
    if img is None or img.size == 0:
        raise ValueError(f"compressed image ({format}): OpenCV could not decode {buf.size} bytes")
    return img if rgb_flag is not None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def image_msg_to_rgb(msg: Any) -> np.ndarray:
    """An Image or CompressedImage message (any flavour: rclpy, rosbags, mcap_ros2) -> HxWx3 RGB."""
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return compressed_to_rgb(msg.format, msg.data)
    return image_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)


def image_to_depth(
    encoding: str,
    height: int,
    width: int,
    step: int,
    data: Any,
    is_bigendian: int = 0,
    uint16_scale: float = 0.001,
) -> np.ndarray:
    """Depth image fields -> HxW float32 metres, NaN = invalid (REP 118).

    32FC1 is taken as metres (non-finite stays NaN/inf as published); 16UC1/mono16 are multiplied by
    ``uint16_scale`` (millimetres by default) and 0 becomes NaN. Either byte order is accepted.
    """
    enc = str(encoding).strip().lower()
    if enc == "32fc1":
        dtype = np.dtype(">f4" if is_bigendian else "<f4")
    elif enc in ("16uc1", "mono16"):
        dtype = np.dtype(">u2" if is_bigendian else "<u2")
    else:
        raise UnsupportedEncoding(encoding, "supported depth encodings: 32FC1 (metres), 16UC1/mono16")
    rows = _rows(data, height, width, step, dtype.itemsize, f"depth image ({encoding})")
    values = np.ascontiguousarray(rows).view(dtype).reshape(int(height), int(width))
    if enc == "32fc1":
        return values.astype(np.float32)
    depth = values.astype(np.float32) * np.float32(uint16_scale)
    depth[values == 0] = np.nan
    return depth


def depth_msg_to_array(msg: Any, uint16_scale: float = 0.001) -> np.ndarray:
    """A depth Image message -> HxW float32 metres (see :func:`image_to_depth`)."""
    return image_to_depth(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian,
                          uint16_scale)


def image_fields(pixels: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Fields:
    """``sensor_msgs/Image`` fields from HxW or HxWxC pixels already in ``encoding``'s little-endian
    dtype (e.g. uint8 for rgb8, <f4 for 32FC1, <u2 for 16UC1); rows unpadded (step = W * pixel bytes)."""
    pixels = np.ascontiguousarray(pixels)
    h, w = pixels.shape[:2]
    return {
        "header": header_fields(stamp_ns, frame_id),
        "height": h,
        "width": w,
        "encoding": encoding,
        "is_bigendian": 0,
        "step": w * pixels.itemsize * math.prod(pixels.shape[2:]),
        "data": pixels.view(np.uint8).reshape(-1),
    }


def rgb_image_fields(rgb: np.ndarray, stamp_ns: int, frame_id: str) -> Fields:
    """``sensor_msgs/Image`` fields (rgb8) from HxWx3 uint8."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb image must be HxWx3 uint8, got {rgb.shape} {rgb.dtype}")
    return image_fields(rgb, "rgb8", stamp_ns, frame_id)


def float_image_fields(image: np.ndarray, stamp_ns: int, frame_id: str) -> Fields:
    """``sensor_msgs/Image`` fields (32FC1, little-endian, step = 4 * width) from HxW float."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"32FC1 image must be HxW, got shape {image.shape}")
    return image_fields(np.asarray(image, dtype="<f4"), "32FC1", stamp_ns, frame_id)


def depth_image_fields(depth: np.ndarray, stamp_ns: int, frame_id: str) -> Fields:
    """REP 118 depth image fields: 32FC1 metres (or the window's units), NaN = invalid."""
    return float_image_fields(depth, stamp_ns, frame_id)


def confidence_image_fields(conf: np.ndarray, stamp_ns: int, frame_id: str) -> Fields:
    """Per-pixel confidence as a 32FC1 image (same layout as the depth image)."""
    return float_image_fields(conf, stamp_ns, frame_id)


# ---------------------------------------------------------------------------------------------------
# CameraInfo
# ---------------------------------------------------------------------------------------------------


class UncalibratedCamera(ValueError):
    """CameraInfo without usable intrinsics (K all zero or non-positive focal lengths)."""


def camera_info_fields(
    K: np.ndarray,
    height: int,
    width: int,
    stamp_ns: int,
    frame_id: str,
    distortion: np.ndarray | None = None,
    distortion_model: str = "plumb_bob",
) -> Fields:
    """``sensor_msgs/CameraInfo`` fields for a pinhole camera: D zeros (5, plumb_bob) unless given,
    R identity, P = [K | 0] (monocular)."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all():
        raise ValueError(f"K must be a finite 3x3 matrix, got shape {K.shape}")
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"camera size must be positive, got {height}x{width}")
    d = np.zeros(5) if distortion is None else np.asarray(distortion, dtype=np.float64).reshape(-1)
    P = np.zeros((3, 4))
    P[:, :3] = K
    return {
        "header": header_fields(stamp_ns, frame_id),
        "height": int(height),
        "width": int(width),
        "distortion_model": str(distortion_model),
        "d": d.astype(np.float64),
        "k": K.reshape(-1).copy(),
        "r": np.eye(3).reshape(-1),
        "p": P.reshape(-1),
    }


def camera_info_to_intrinsics(k: Any, height: int, width: int) -> tuple[np.ndarray, tuple[int, int]]:
    """CameraInfo ``k`` (9 values, row-major) and size -> (3x3 float64 K, (height, width)).

    Raises :class:`UncalibratedCamera` for an all-zero/invalid K, so callers can fall back to the
    predicted intrinsics deliberately.
    """
    K = np.asarray(k, dtype=np.float64).reshape(3, 3).copy()
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise UncalibratedCamera(f"CameraInfo has no valid intrinsics (fx={K[0, 0]}, fy={K[1, 1]})")
    if int(height) <= 0 or int(width) <= 0:
        raise UncalibratedCamera(f"CameraInfo has zero size ({height}x{width})")
    return K, (int(height), int(width))


def camera_info_msg_to_intrinsics(msg: Any) -> tuple[np.ndarray, tuple[int, int]]:
    """A CameraInfo message (any flavour) -> (K, (height, width)); see :func:`camera_info_to_intrinsics`.

    ROS 1 spells the matrix ``K``, ROS 2 ``k``; both are accepted.
    """
    k = msg.k if hasattr(msg, "k") else msg.K
    return camera_info_to_intrinsics(k, msg.height, msg.width)


# ---------------------------------------------------------------------------------------------------
# Point clouds
# ---------------------------------------------------------------------------------------------------

# sensor_msgs/PointField datatypes
POINTFIELD_INT8, POINTFIELD_UINT8, POINTFIELD_INT16, POINTFIELD_UINT16 = 1, 2, 3, 4
POINTFIELD_INT32, POINTFIELD_UINT32, POINTFIELD_FLOAT32, POINTFIELD_FLOAT64 = 5, 6, 7, 8
_POINTFIELD_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}

XYZ_FIELDS: tuple[Fields, ...] = tuple(
    {"name": n, "offset": 4 * i, "datatype": POINTFIELD_FLOAT32, "count": 1} for i, n in enumerate("xyz")
)
XYZRGB_FIELDS: tuple[Fields, ...] = (
    *XYZ_FIELDS,
    {"name": "rgb", "offset": 12, "datatype": POINTFIELD_FLOAT32, "count": 1},
)


def pack_rgb(colors: np.ndarray) -> np.ndarray:
    """[N, 3] uint8 RGB -> [N] float32 holding ``(r << 16) | (g << 8) | b`` bit-for-bit (PCL/RViz)."""
    c = np.asarray(colors)
    if c.ndim != 2 or c.shape[1] != 3 or c.dtype != np.uint8:
        raise ValueError(f"colors must be [N, 3] uint8, got {c.shape} {c.dtype}")
    return _bgr0(c).view(np.float32).reshape(len(c))


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_rgb` ([N] float32 or uint32 -> [N, 3] uint8)."""
    u = np.ascontiguousarray(packed).view(np.uint32)
    return np.stack([(u >> 16) & 0xFF, (u >> 8) & 0xFF, u & 0xFF], axis=-1).astype(np.uint8)


_WORK = threading.local()


def _work(name: str, shape: tuple[int, ...], dtype: Any, misaligned: bool = False) -> np.ndarray:
    """Per-thread reusable scratch array (uninitialised; reallocated when the shape changes).

    Why: allocating several multi-MB temporaries per frame makes glibc hand the memory back to the
    kernel and page-fault it in again on every call (measured ~4x slower at 1280x720 than reusing).
    The back-projection keeps 1 byte per pixel of the largest image per calling thread (the
    unorganised validity mask), plus ~40 bytes per pixel of its largest band (``_MAX_BAND_PIXELS``)
    per thread that ran a band.

    ``misaligned``: the data starts 4 bytes past a 64-byte boundary, for ``cv2.merge`` outputs that
    are read back at once. ``cv2.merge`` writes a destination aligned to its SIMD width with
    non-temporal (cache bypassing) stores, so records merged into an aligned scratch go to DRAM and
    the ``np.take`` that compresses them right after reads them back from there (measured at
    1280x720: merge + take of a band ~1.8 ns/pixel aligned, ~1.1 misaligned). A misaligned
    destination gets ordinary stores."""
    cache = getattr(_WORK, "arrays", None)
    if cache is None:
        cache = _WORK.arrays = {}
    dt = np.dtype(dtype)
    key = (name, misaligned)
    a = cache.get(key)
    if a is None or a.shape != shape or a.dtype != dt:
        if misaligned:
            nbytes = math.prod(shape) * dt.itemsize
            raw = np.empty(nbytes + 64, np.uint8)
            start = (4 - raw.ctypes.data) % 64
            a = raw[start:start + nbytes].view(dt).reshape(shape)
        else:
            a = np.empty(shape, dt)
        cache[key] = a
    return a


@functools.lru_cache(maxsize=8)
def _nan_plane(h: int, w: int) -> np.ndarray:
    plane = np.full((h, w), np.nan, np.float32)
    plane.flags.writeable = False
    return plane


def _bgr0(rgb: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """[..., 3] uint8 RGB -> [..., 4] uint8 (b, g, r, 0): little-endian uint32 0x00RRGGBB per pixel.

    One SIMD ``cvtColor`` RGB -> BGRA on a single-row view (OpenCV has a per-row cost, so an Nx1
    view would be ~10x slower), then the alpha byte cleared with one uint32 AND. ``out``: optional
    contiguous uint8 buffer of the result's size to write into."""
    import cv2

    shape = rgb.shape[:-1]
    flat = np.ascontiguousarray(rgb, dtype=np.uint8).reshape(1, -1, 3)
    n = flat.shape[1]
    if n == 0:
        return np.zeros((*shape, 4), np.uint8)
    dst = cv2.cvtColor(flat, cv2.COLOR_RGB2BGRA, dst=None if out is None else out.reshape(1, n, 4))
    u = dst.view(np.uint32)
    np.bitwise_and(u, np.uint32(0x00FFFFFF), out=u)
    return dst.reshape(*shape, 4)


@functools.lru_cache(maxsize=16)
def _ray_factors(k: tuple[float, ...], h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-column ``(u - cx) / fx`` and per-row ``(v - cy) / fy`` as float32 (cached per K and size)."""
    fx, cx, fy, cy = k[0], k[2], k[4], k[5]
    xr = ((np.arange(w) - cx) / fx).astype(np.float32)
    yr = ((np.arange(h) - cy) / fy).astype(np.float32).reshape(h, 1)
    xr.flags.writeable = False
    yr.flags.writeable = False
    return xr, yr


def valid_depth_mask(depth: np.ndarray) -> np.ndarray:
    """Pixels with a usable depth: finite and > 0 (NaN, +-inf, 0, negatives are invalid)."""
    with np.errstate(invalid="ignore"):
        return (depth > 0) & (depth < np.inf)


CLOUD_THREADS = min(2, os.cpu_count() or 1)
"""Default number of threads (the caller's included) of the depth -> cloud back-projection
(``threads=None``). The bands release the GIL (numpy ufuncs, ``np.take``, OpenCV), so they run truly
in parallel; images below ``_PARALLEL_MIN_PIXELS`` stay on the calling thread."""
_PARALLEL_MIN_PIXELS = 1 << 18  # measured: 518x392 (203k px) is no faster on 2 threads, 1280x720 is
_MAX_BAND_PIXELS = 1 << 18  # bands of at most 256k pixels: their scratch stays mostly in cache
_FLOAT32_SAFE = 3.4028234663852886e38 / 4  # products below this cannot round up to inf

_POOL_LOCK = threading.Lock()
_POOL: ThreadPoolExecutor | None = None
_POOL_WORKERS = 0


def _cloud_pool(workers: int) -> ThreadPoolExecutor:
    """The module's persistent worker pool (at least ``workers`` threads; created on first use)."""
    global _POOL, _POOL_WORKERS
    with _POOL_LOCK:
        if _POOL is None or _POOL_WORKERS < workers:
            if _POOL is not None:
                _POOL.shutdown(wait=False)
            _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vggt_ros_cloud")
            _POOL_WORKERS = workers
        return _POOL


def _forget_pool_after_fork() -> None:
    """A forked child inherits the pool object but not its threads: start a fresh one on demand."""
    global _POOL, _POOL_WORKERS
    _POOL, _POOL_WORKERS = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _run_shared(fn: Callable[[Any], Any], items: Sequence[Any], threads: int,
                first: Callable[[], None] | None = None) -> list[Any]:
    """``[fn(item) for item in items]`` on ``threads`` threads (the caller's included) that take the
    next item from a shared counter. Why dynamic: when the other core is busy (the model, another
    process), the caller simply processes more bands itself instead of waiting for a starved worker.
    Waits for every item before returning or raising (they write into the caller's arrays).
    ``first``: run by the caller once the workers have started, before it takes items itself (work
    the items may wait for, overlapped with the workers' first items)."""
    results: list[Any] = [None] * len(items)
    lock = threading.Lock()
    nxt = [0]

    def drain() -> None:
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(items):
                return
            results[i] = fn(items[i])

    n = min(threads, len(items))
    if n <= 1:
        if first is not None:
            first()
        drain()
        return results
    futures = [_cloud_pool(n - 1).submit(drain) for _ in range(n - 1)]
    try:
        if first is not None:
            first()
        drain()
    finally:
        wait(futures)
    for f in futures:
        f.result()  # re-raise a worker's exception
    return results


def _cloud_threads(threads: int | None) -> int:
    n = CLOUD_THREADS if threads is None else int(threads)
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return n


def _bands(h: int, w: int, threads: int, organized: bool = True) -> tuple[int, list[tuple[int, int]]]:
    """(threads to use, row bands ``(a, b)``): equal bands of at most ``_MAX_BAND_PIXELS`` (half that
    for the unorganised layout), at least one per thread; one thread below ``_PARALLEL_MIN_PIXELS``.
    Measured: smaller bands keep the scratch in cache but add Python-level calls, each of which hands
    the GIL back and forth; the unorganised layout's 16-byte band records, read back by the
    compress, make half-size bands ~5 % faster there (1280x720), the organised one prefers full."""
    n = 1 if h * w < _PARALLEL_MIN_PIXELS else min(threads, h)
    max_band = _MAX_BAND_PIXELS if organized else max(1, _MAX_BAND_PIXELS // 2)
    count = min(h, max(n, -(-h * w // max_band)))
    return n, [(h * i // count, h * (i + 1) // count) for i in range(count)]


def _band_planes(depth: np.ndarray, z: np.ndarray, a: int, b: int, xr: np.ndarray, yr: np.ndarray,
                 skew: float, rgb: np.ndarray | None, rows: int) -> list[np.ndarray]:
    """x y z (+ packed rgb as float32) planes of rows ``a:b`` in this thread's band scratch."""
    n, w = b - a, depth.shape[1]
    with np.errstate(invalid="ignore", over="ignore"):  # invalid pixels (inf * 0) are dropped / NaN
        x = np.multiply(z, xr, out=_work("band_x", (rows, w), np.float32)[:n])
        y = np.multiply(z, yr[a:b], out=_work("band_y", (rows, w), np.float32)[:n])
        if skew != 0:  # x = (u - cx - s * (v - cy) / fy) / fx * z = xr[u] * z - (s / fx) * y
            sy = np.multiply(y, np.float32(skew), out=_work("band_sy", (rows, w), np.float32)[:n])
            np.subtract(x, sy, out=x)
    planes = [x, y, z]
    if rgb is not None:
        c = _bgr0(rgb[a:b], out=_work("band_bgr0", (rows, w, 4), np.uint8)[:n])
        planes.append(c.view(np.float32).reshape(n, w))
    return planes


def _valid_into(d: np.ndarray, valid: np.ndarray, rows: int) -> float:
    """The validity mask of depth rows ``d`` (finite and > 0, as :func:`valid_depth_mask`) into
    ``valid``; returns the largest depth (NaNs ignored; NaN when all are NaN). Why the maximum first:
    it is needed anyway (see ``is_dense``), and without a +inf among the rows ``d > 0`` alone is the
    mask (NaN compares false): one pass instead of three."""
    zmax = float(np.fmax.reduce(d, axis=None))
    with np.errstate(invalid="ignore"):
        np.greater(d, 0, out=valid)
        if zmax == math.inf:
            finite = _work("band_finite", (rows, d.shape[1]), np.bool_)[:len(d)]
            np.less(d, np.inf, out=finite)
            np.logical_and(valid, finite, out=valid)
    return zmax


def _merge_into(planes: list[np.ndarray], dst: np.ndarray) -> np.ndarray:
    import cv2

    got = cv2.merge(planes, dst=dst)
    if got is not dst and got.ctypes.data != dst.ctypes.data:  # pragma: no cover - reallocated: copy
        np.copyto(dst, got)
    return dst


def _cloud_records(
    depth: np.ndarray, K: np.ndarray, rgb: np.ndarray | None, organized: bool, threads: int | None
) -> tuple[np.ndarray, bool]:
    """:func:`depth_to_cloud_records` plus whether every x y z of the result is finite (the
    PointCloud2 ``is_dense`` flag), found without a pass over the output when a bound on the depth
    proves that x and y cannot overflow.

    Why bands: the image is cut into row bands (see :func:`_bands`) that ``threads`` threads take in
    turn (see :data:`CLOUD_THREADS`, :func:`_run_shared`); each band is written once into the output
    (organised: ``cv2.merge`` straight into the output rows). Unorganised, in two phases: (1) on the
    calling thread, the validity mask and its count per band (the bands' offsets in the output),
    while the workers already prepare their first band's records; (2) per band, on every thread,
    merge into cache-resident, deliberately misaligned band scratch (see :func:`_work`), then one
    ``np.take`` of the valid records into the band's slice of the output (a fully valid band is
    merged straight into it). Measured alternatives that lost: phase 1 per band on the pool (slower
    than serial: it is only ~0.2 ms at 1280x720 with the one-pass mask of :func:`_valid_into`),
    boolean indexing of the records (~2x slower than ``nonzero`` + ``take``, and it cannot write
    into the output), ``np.compress`` (same machinery, slower), indices found in phase 1 (no faster,
    and 8 bytes per pixel kept between the phases), smaller bands (more Python calls per frame),
    precomputed full ray planes instead of broadcasting (no measurable gain for 8 bytes per pixel of
    cache)."""
    import cv2

    depth = np.ascontiguousarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be HxW, got {depth.shape}")
    h, w = depth.shape
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] == 0 or K[1, 1] == 0:
        raise ValueError(f"K must be a finite 3x3 matrix with non-zero focal lengths, got {K.tolist()}")
    if rgb is not None:
        rgb = np.ascontiguousarray(rgb)
        if rgb.shape != (h, w, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be {h}x{w}x3 uint8 matching depth, got {rgb.shape} {rgb.dtype}")
    threads = _cloud_threads(threads)
    nch = 3 if rgb is None else 4
    if h * w == 0:
        return np.zeros((h, w, nch) if organized else (0, nch), np.float32), True
    xr, yr = _ray_factors(tuple(K.reshape(-1).tolist()), h, w)
    skew = float(K[0, 1] / K[0, 0])
    # |x|, |y| <= z * gain (float32 rounding included, see _FLOAT32_SAFE): no overflow below the bound
    gain = float(np.abs(xr).max()) + (abs(skew) + 1.0) * float(np.abs(yr).max()) + 1.0
    threads, bands = _bands(h, w, threads, organized)
    rows = max(b - a for a, b in bands)
    rec_dtype = f"V{4 * nch}"

    def finite_band(zmax: float, out_band: np.ndarray) -> bool:
        if zmax * gain < _FLOAT32_SAFE:  # False for NaN (all-invalid band) and inf: check instead
            return True
        return bool(np.isfinite(out_band).all())

    if organized:
        out = np.empty((h, w, nch), np.float32)  # fresh: the caller owns it

        def organised_band(band: tuple[int, int]) -> bool:
            a, b = band
            n = b - a
            d = depth[a:b]
            valid = _work("band_valid", (rows, w), np.bool_)[:n]
            zmax = _valid_into(d, valid, rows)
            z = d
            all_valid = bool(valid.all())
            if not all_valid:  # NaN depth where invalid, so x and y come out NaN too
                z = _work("band_z", (rows, w), np.float32)[:n]
                np.copyto(z, d)
                invalid = _work("band_invalid", (rows, w), np.bool_)[:n]
                np.logical_not(valid, out=invalid)
                cv2.copyTo(_nan_plane(rows, w)[:n], invalid.view(np.uint8), dst=z)
            planes = _band_planes(depth, z, a, b, xr, yr, skew, rgb, rows)
            _merge_into(planes, out[a:b])
            return all_valid and finite_band(zmax, out[a:b, :, :3])

        return out, all(_run_shared(organised_band, bands, threads))

    # Phase 1 (count_bands) runs on the calling thread once the workers have started (see _run_shared's
    # ``first``): overlapping it with their first band measured ~0.15 ms faster at 1280x720.
    valid = _work("valid", (h, w), np.bool_)
    counted = threading.Event()
    layout: dict[str, Any] = {}

    def count_bands() -> None:
        try:
            layout["zmax"] = _valid_into(depth, valid, h)
            counts = [int(np.count_nonzero(valid[a:b])) for a, b in bands]
            layout["counts"] = counts
            layout["offsets"] = np.concatenate([[0], np.cumsum(counts)]).tolist()
            layout["out"] = np.empty((layout["offsets"][-1], nch), np.float32)  # fresh: the caller's
        finally:
            counted.set()  # also on error: no worker may wait forever

    def unorganised_band(i: int) -> bool:
        """Phase 2: back-project band ``i`` and write its valid records at its offset of the output
        (before phase 1 is done, the records are prepared in scratch and the write waits for it)."""
        a, b = bands[i]
        n = b - a
        known = counted.is_set()
        if known and ("out" not in layout or layout["counts"][i] == 0):
            return True  # phase 1 failed (the caller raises its error) or nothing valid to write
        planes = _band_planes(depth, depth[a:b], a, b, xr, yr, skew, rgb, rows)
        direct = known and layout["counts"][i] == n * w  # every pixel valid: merge into the output
        if not direct:
            rec = _merge_into(planes, _work("band_records", (rows, w, nch), np.float32, misaligned=True)[:n])
        counted.wait()
        if "out" not in layout:
            return True
        count, o, out = layout["counts"][i], layout["offsets"][i], layout["out"]
        if direct:
            _merge_into(planes, out[o:o + count].reshape(n, w, nch))
        elif count:
            idx = valid[a:b].reshape(-1).nonzero()[0]
            # wrap (like clip) writes straight into the output slice (raise would buffer a copy)
            rec.reshape(-1).view(rec_dtype).take(idx, out=out[o:o + count].reshape(-1).view(rec_dtype),
                                                  mode="wrap")
        return finite_band(layout["zmax"], out[o:o + count, :3])

    dense = all(_run_shared(unorganised_band, range(len(bands)), threads, first=count_bands))
    return layout["out"], dense


def depth_to_cloud_records(
    depth: np.ndarray, K: np.ndarray, rgb: np.ndarray | None = None, organized: bool = False,
    threads: int | None = None,
) -> np.ndarray:
    """Back-project a z-depth image through pinhole K (pixel centres at integers, skew honoured)
    straight into PointCloud2 records: float32 ``x y z`` (+ ``rgb`` packed 0x00RRGGBB) per point.

    Unorganised (default): ``[N, 4]`` (``[N, 3]`` without rgb), finite positive depths only, row-major
    pixel order. Organised: ``[h, w, 4|3]``, every pixel, x y z NaN where the depth is invalid (as
    ``depth_image_proc`` publishes). Why records: building the interleaved layout once (one SIMD
    ``cv2.merge`` per band of planes) and compressing once on 16-byte records is several times
    cheaper than compressing each channel and interleaving afterwards. ``threads``: worker threads,
    the caller's included (default :data:`CLOUD_THREADS`); the result does not depend on it."""
    return _cloud_records(depth, K, rgb, organized, threads)[0]


def depth_to_points(
    depth: np.ndarray, K: np.ndarray, rgb: np.ndarray | None = None, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Back-project a z-depth image through pinhole K (pixel centres at integers) to camera-frame
    points [N, 3] float32 (row-major pixel order), keeping finite positive depths; colours [N, 3]
    uint8 from ``rgb``. (For a PointCloud2 use :func:`depth_to_pointcloud2_fields`: no split.)"""
    import cv2

    rec = depth_to_cloud_records(depth, K, rgb, threads=threads)
    n = len(rec)
    if rgb is None:
        return rec, None
    if n == 0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
    pts = cv2.cvtColor(rec.reshape(1, n, 4), cv2.COLOR_BGRA2BGR).reshape(n, 3)  # drop channel 3
    cols = np.empty((n, 3), np.uint8)
    # record bytes 12, 13, 14 are b, g, r
    cv2.mixChannels([rec.view(np.uint8).reshape(1, n, 16)], [cols.reshape(1, n, 3)], [14, 0, 13, 1, 12, 2])
    return pts, cols


def pointcloud2_data(points: np.ndarray, colors: np.ndarray | None = None) -> np.ndarray:
    """The PointCloud2 payload as a flat uint8 array: [x y z (rgb)] float32 little-endian per point.

    ``points`` [N, 3] or organised [H, W, 3]; ``colors`` of the same leading shape, uint8 RGB."""
    import cv2

    pts = np.asarray(points)
    if pts.ndim not in (2, 3) or pts.shape[-1] != 3:
        raise ValueError(f"points must be [N, 3] or [H, W, 3], got {pts.shape}")
    lead = pts.shape[:-1]
    n = int(np.prod(lead))
    pts = np.ascontiguousarray(pts, dtype="<f4")
    if colors is None:
        return pts.reshape(-1).view(np.uint8)
    cols = np.asarray(colors)
    if cols.shape != (*lead, 3):
        raise ValueError(f"colors must be {[*lead, 3]} matching the points, got {list(cols.shape)}")
    if cols.dtype != np.uint8:
        raise ValueError(f"colors must be uint8, got {cols.dtype}")
    if n == 0:
        return np.zeros(0, np.uint8)
    # rgb as little-endian uint32 0x00RRGGBB (bytes b, g, r, 0 at offsets 12..15), reinterpreted as
    # float32; cv2.merge copies bits verbatim (no float arithmetic), so NaNs/denormals survive.
    # Single-row views: OpenCV has a per-row cost.
    packed = _bgr0(cols).view(np.float32).reshape(1, n, 1)
    out = cv2.merge([pts.reshape(1, n, 3), packed])
    return out.reshape(-1).view(np.uint8)


def _cloud_fields(data: np.ndarray, height: int, width: int, with_rgb: bool, is_dense: bool,
                  stamp_ns: int, frame_id: str) -> Fields:
    point_step = 16 if with_rgb else 12
    return {
        "header": header_fields(stamp_ns, frame_id),
        "height": int(height),
        "width": int(width),
        "fields": [dict(f) for f in (XYZRGB_FIELDS if with_rgb else XYZ_FIELDS)],
        "is_bigendian": False,
        "point_step": point_step,
        "row_step": point_step * int(width),
        "data": data,
        "is_dense": bool(is_dense),
    }


def pointcloud2_fields(
    points: np.ndarray, colors: np.ndarray | None, stamp_ns: int, frame_id: str
) -> Fields:
    """``sensor_msgs/PointCloud2`` fields: x y z float32 (+ rgb float32 at offset 12, point_step 16;
    12 without colours), little-endian. ``points`` [N, 3] gives an unorganised cloud (height 1),
    [H, W, 3] an organised one. ``is_dense`` is true only when every coordinate is finite."""
    data = pointcloud2_data(points, colors)
    pts = np.asarray(points)
    height, width = (1, pts.shape[0]) if pts.ndim == 2 else pts.shape[:2]
    return _cloud_fields(data, height, width, colors is not None, bool(np.isfinite(pts).all()),
                         stamp_ns, frame_id)


def depth_to_pointcloud2_fields(
    depth: np.ndarray,
    K: np.ndarray,
    rgb: np.ndarray | None,
    stamp_ns: int,
    frame_id: str,
    organized: bool = False,
    threads: int | None = None,
) -> Fields:
    """Depth image (+ RGB) straight to ``sensor_msgs/PointCloud2`` fields, without the [N, 3]
    points/colours intermediates (see :func:`depth_to_cloud_records`, also for ``threads``):
    unorganised by default (valid pixels only, row-major), or organised (height H, width W, NaN
    x y z at invalid pixels, ``is_dense`` false unless every pixel is valid). ``is_dense`` also
    turns false when x or y overflow float32 for absurd depths."""
    rec, is_dense = _cloud_records(depth, K, rgb, organized, threads)
    height, width = rec.shape[:2] if organized else (1, rec.shape[0])
    return _cloud_fields(rec.reshape(-1).view(np.uint8), height, width, rgb is not None, is_dense,
                         stamp_ns, frame_id)


def _field_attr(f: Any, name: str) -> Any:
    return f[name] if isinstance(f, Mapping) else getattr(f, name)


def pointcloud2_to_xyz_rgb(
    fields: Sequence[Any],
    height: int,
    width: int,
    point_step: int,
    row_step: int,
    data: Any,
    is_bigendian: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """PointCloud2 fields -> ([N, 3] float32 xyz, [N, 3] uint8 rgb or None); any field offsets and
    row padding; ``rgb``/``rgba`` may be FLOAT32 (packed) or UINT32."""
    by_name = {str(_field_attr(f, "name")): f for f in fields}
    for axis in "xyz":
        if axis not in by_name:
            raise ValueError(f"PointCloud2 has no {axis!r} field (fields: {sorted(by_name)})")
    height, width, point_step, row_step = int(height), int(width), int(point_step), int(row_step)
    n = height * width
    if n == 0:
        return np.zeros((0, 3), np.float32), (np.zeros((0, 3), np.uint8) if "rgb" in by_name else None)
    order = ">" if is_bigendian else "<"
    rows = _rows(data, height, width, row_step, point_step, "PointCloud2")
    flat = np.ascontiguousarray(rows).reshape(n, point_step)

    def column(f: Any) -> np.ndarray:
        dt = _POINTFIELD_DTYPES.get(int(_field_attr(f, "datatype")))
        if dt is None:
            name, datatype = _field_attr(f, "name"), _field_attr(f, "datatype")
            raise ValueError(f"PointField {name!r}: unknown datatype {datatype}")
        dtype = np.dtype(order + dt)
        off = int(_field_attr(f, "offset"))
        return np.ascontiguousarray(flat[:, off:off + dtype.itemsize]).view(dtype).reshape(n)

    xyz = np.stack([column(by_name[a]) for a in "xyz"], axis=1).astype(np.float32)
    rgb = None
    rgb_field = by_name.get("rgb", by_name.get("rgba"))
    if rgb_field is not None:
        off = int(_field_attr(rgb_field, "offset"))
        u = np.ascontiguousarray(flat[:, off:off + 4]).view(np.dtype(order + "u4")).reshape(n)
        rgb = unpack_rgb(u.astype(np.uint32))
    return xyz, rgb


def pointcloud2_msg_to_xyz_rgb(msg: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """A PointCloud2 message (any flavour) -> (xyz, rgb or None)."""
    return pointcloud2_to_xyz_rgb(msg.fields, msg.height, msg.width, msg.point_step, msg.row_step,
                                  msg.data, msg.is_bigendian)


# ---------------------------------------------------------------------------------------------------
# Poses
# ---------------------------------------------------------------------------------------------------


def _check_pose(T: np.ndarray) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.isfinite(T).all():
        raise ValueError(f"pose must be a finite 4x4 matrix, got shape {T.shape}")
    return T


def matrix_to_translation_quaternion(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4x4 pose -> (translation [3], unit quaternion [x, y, z, w] with w >= 0), float64."""
    T = _check_pose(T)
    q = Rotation.from_matrix(T[:3, :3]).as_quat()
    if q[3] < 0:
        q = -q
    return T[:3, 3].copy(), q


def translation_quaternion_to_matrix(t: Any, q_xyzw: Any) -> np.ndarray:
    """(translation [3], quaternion [x, y, z, w]) -> 4x4 float64 pose (quaternion normalised)."""
    q = np.asarray(q_xyzw, dtype=np.float64)
    if q.shape != (4,) or not np.isfinite(q).all() or np.linalg.norm(q) < 1e-12:
        raise ValueError(f"quaternion must be 4 finite values, not all zero, got {q}")
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(q).as_matrix()
    T[:3, 3] = np.asarray(t, dtype=np.float64).reshape(3)
    return T


def _xyz(v: np.ndarray) -> Fields:
    return {"x": float(v[0]), "y": float(v[1]), "z": float(v[2])}


def _xyzw(q: np.ndarray) -> Fields:
    return {"x": float(q[0]), "y": float(q[1]), "z": float(q[2]), "w": float(q[3])}


def pose_fields(T: np.ndarray) -> Fields:
    """``geometry_msgs/Pose`` fields from a 4x4 pose."""
    t, q = matrix_to_translation_quaternion(T)
    return {"position": _xyz(t), "orientation": _xyzw(q)}


def transform_fields(T: np.ndarray) -> Fields:
    """``geometry_msgs/Transform`` fields from a 4x4 ``parent_T_child``."""
    t, q = matrix_to_translation_quaternion(T)
    return {"translation": _xyz(t), "rotation": _xyzw(q)}


def transform_stamped_fields(T: np.ndarray, stamp_ns: int, parent_frame: str, child_frame: str) -> Fields:
    """``geometry_msgs/TransformStamped`` fields (for /tf): ``T`` = parent_T_child."""
    return {
        "header": header_fields(stamp_ns, parent_frame),
        "child_frame_id": str(child_frame),
        "transform": transform_fields(T),
    }


def pose_stamped_fields(T: np.ndarray, stamp_ns: int, frame_id: str) -> Fields:
    """``geometry_msgs/PoseStamped`` fields."""
    return {"header": header_fields(stamp_ns, frame_id), "pose": pose_fields(T)}


def _covariance36(cov: Any) -> np.ndarray:
    if cov is None:
        return np.zeros(36)
    c = np.asarray(cov, dtype=np.float64).reshape(-1)
    if c.size != 36:
        raise ValueError(f"covariance must have 36 values (6x6), got {c.size}")
    return c.copy()


def odometry_fields(
    T: np.ndarray,
    stamp_ns: int,
    frame_id: str,
    child_frame_id: str,
    pose_covariance: np.ndarray | None = None,
    twist_linear: np.ndarray | None = None,
    twist_angular: np.ndarray | None = None,
    twist_covariance: np.ndarray | None = None,
) -> Fields:
    """``nav_msgs/Odometry`` fields: pose of ``child_frame_id`` in ``frame_id``; covariances row-major
    6x6 (zeros when unknown), twist in the child frame (zeros when not given)."""
    return {
        "header": header_fields(stamp_ns, frame_id),
        "child_frame_id": str(child_frame_id),
        "pose": {"pose": pose_fields(T), "covariance": _covariance36(pose_covariance)},
        "twist": {
            "twist": {
                "linear": _xyz(np.zeros(3) if twist_linear is None else np.asarray(twist_linear, float)),
                "angular": _xyz(np.zeros(3) if twist_angular is None else np.asarray(twist_angular, float)),
            },
            "covariance": _covariance36(twist_covariance),
        },
    }


def path_fields(
    poses: Sequence[np.ndarray] | np.ndarray,
    stamps_ns: Sequence[int],
    frame_id: str,
    stamp_ns: int | None = None,
) -> Fields:
    """``nav_msgs/Path`` fields: one PoseStamped per pose; header stamp = ``stamp_ns`` or the last
    pose's stamp."""
    poses = list(poses)
    stamps = [int(s) for s in stamps_ns]
    if len(poses) != len(stamps):
        raise ValueError(f"{len(poses)} poses but {len(stamps)} stamps")
    if stamp_ns is None:
        stamp_ns = stamps[-1] if stamps else 0
    return {
        "header": header_fields(stamp_ns, frame_id),
        "poses": [pose_stamped_fields(T, s, frame_id) for T, s in zip(poses, stamps, strict=True)],
    }


def pose_msg_to_matrix(pose: Any) -> np.ndarray:
    """``geometry_msgs/Pose``-like (``.position``, ``.orientation``) -> 4x4."""
    p, o = pose.position, pose.orientation
    return translation_quaternion_to_matrix([p.x, p.y, p.z], [o.x, o.y, o.z, o.w])


def transform_msg_to_matrix(transform: Any) -> np.ndarray:
    """``geometry_msgs/Transform``-like (``.translation``, ``.rotation``) -> 4x4."""
    t, r = transform.translation, transform.rotation
    return translation_quaternion_to_matrix([t.x, t.y, t.z], [r.x, r.y, r.z, r.w])


# ---------------------------------------------------------------------------------------------------
# Keypoint tracks (custom message vggt_ros/msg/KeypointTracks)
# ---------------------------------------------------------------------------------------------------

KEYPOINT_TRACKS_TYPE = "vggt_ros/msg/KeypointTracks"
# Must equal msg/KeypointTracks.msg byte for byte (checked by test/test_ros_package.py); embedded so
# pip installs (no share/ directory) can register the type with rosbags and write MCAP schemas.
KEYPOINT_TRACKS_MSG = """\
# Keypoint tracks of one VGGT window: N query points followed through the window's S frames.
#
# Layout (all arrays row-major, flattened):
#   positions  [num_frames][num_tracks][2]  pixel (x, y) at the camera's own resolution
#                                           (x = column, y = row, pixel centres at integers)
#   visibility [num_frames][num_tracks]     probability the point is visible in that frame, 0..1
#   confidence [num_frames][num_tracks]     tracking confidence, 0..1
# so the x of track j in frame i is positions[(i * num_tracks + j) * 2] and its y the next value.

# header.stamp: stamp of the window's newest frame; header.frame_id: the camera optical frame.
std_msgs/Header header

# Stamps of the window's frames, oldest first (length num_frames).
builtin_interfaces/Time[] stamps

# Index into stamps of the frame the query points were chosen in.
uint32 query_frame_index

# Persistent id per track (length num_tracks); the same id continues a track across windows.
int64[] track_ids

uint32 num_frames
uint32 num_tracks

float32[] positions
float32[] visibility
float32[] confidence
"""


def keypoint_tracks_fields(
    tracks: TrackOutput, stamp_ns: int | None = None, frame_id: str | None = None
) -> Fields:
    """KeypointTracks fields from a :class:`TrackOutput`; header stamp defaults to the newest frame,
    frame_id to ``tracks.frame_id``."""
    pos = np.asarray(tracks.positions, dtype=np.float32)
    if pos.ndim != 3 or pos.shape[2] != 2:
        raise ValueError(f"track positions must be [S, N, 2], got {pos.shape}")
    s, n = pos.shape[:2]
    vis = np.asarray(tracks.visibility, dtype=np.float32)
    conf = np.asarray(tracks.confidence, dtype=np.float32)
    ids = np.asarray(tracks.track_ids, dtype=np.int64).reshape(-1)
    if vis.shape != (s, n) or conf.shape != (s, n):
        raise ValueError(f"visibility {vis.shape} / confidence {conf.shape} must be [S, N] = {(s, n)}")
    if ids.shape != (n,):
        raise ValueError(f"track_ids must have {n} entries, got {ids.shape}")
    if len(tracks.stamps_ns) != s:
        raise ValueError(f"{len(tracks.stamps_ns)} stamps for {s} track frames")
    if not 0 <= int(tracks.query_frame_index) < max(s, 1):
        raise ValueError(f"query_frame_index {tracks.query_frame_index} outside [0, {s})")
    if stamp_ns is None:
        stamp_ns = int(tracks.stamps_ns[-1]) if s else 0
    return {
        "header": header_fields(stamp_ns, tracks.frame_id if frame_id is None else frame_id),
        "stamps": [time_fields(t) for t in tracks.stamps_ns],
        "query_frame_index": int(tracks.query_frame_index),
        "track_ids": ids,
        "num_frames": s,
        "num_tracks": n,
        "positions": np.ascontiguousarray(pos).reshape(-1),
        "visibility": np.ascontiguousarray(vis).reshape(-1),
        "confidence": np.ascontiguousarray(conf).reshape(-1),
    }


def keypoint_tracks_msg_to_output(msg: Any) -> TrackOutput:
    """A KeypointTracks message (any flavour) -> :class:`TrackOutput` (reshaped, validated)."""
    s, n = int(msg.num_frames), int(msg.num_tracks)

    def arr(v: Any, dtype: str, count: int, what: str) -> np.ndarray:
        a = np.asarray(v, dtype=dtype) if not isinstance(v, (bytes, array.array)) else np.frombuffer(
            memoryview(v).cast("B"), dtype=dtype)
        if a.size != count:
            raise ValueError(f"KeypointTracks.{what}: {a.size} values, expected {count} for {s}x{n}")
        return a

    return TrackOutput(
        stamps_ns=[stamp_ns_of(t) for t in msg.stamps],
        query_frame_index=int(msg.query_frame_index),
        track_ids=arr(msg.track_ids, "<i8", n, "track_ids").astype(np.int64),
        positions=arr(msg.positions, "<f4", s * n * 2, "positions").astype(np.float32).reshape(s, n, 2),
        visibility=arr(msg.visibility, "<f4", s * n, "visibility").astype(np.float32).reshape(s, n),
        confidence=arr(msg.confidence, "<f4", s * n, "confidence").astype(np.float32).reshape(s, n),
        frame_id=str(msg.header.frame_id),
    )


def register_custom_types(typestore: Any) -> None:
    """Register vggt_ros message definitions with a ``rosbags`` typestore (idempotent)."""
    if KEYPOINT_TRACKS_TYPE in typestore.types:
        return
    from rosbags.typesys import get_types_from_msg

    typestore.register(get_types_from_msg(KEYPOINT_TRACKS_MSG, KEYPOINT_TRACKS_TYPE))


# ---------------------------------------------------------------------------------------------------
# Diagnostics
# ---------------------------------------------------------------------------------------------------

DIAGNOSTIC_LEVELS = {"OK": 0, "WARN": 1, "ERROR": 2, "STALE": 3}


def _format_value(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    return str(v)


def diagnostic_status_fields(
    name: str,
    values: Mapping[str, Any],
    level: int | str = 0,
    message: str = "",
    hardware_id: str = "",
) -> Fields:
    """``diagnostic_msgs/DiagnosticStatus`` fields; ``level`` 0-3 or OK/WARN/ERROR/STALE; values are
    stringified (floats with 6 significant digits, bools as true/false)."""
    if isinstance(level, str):
        if level.upper() not in DIAGNOSTIC_LEVELS:
            raise ValueError(f"diagnostic level {level!r} not in {list(DIAGNOSTIC_LEVELS)}")
        level = DIAGNOSTIC_LEVELS[level.upper()]
    if int(level) not in DIAGNOSTIC_LEVELS.values():
        raise ValueError(f"diagnostic level {level} not in 0..3")
    return {
        "level": int(level),
        "name": str(name),
        "message": str(message),
        "hardware_id": str(hardware_id),
        "values": [{"key": str(k), "value": _format_value(v)} for k, v in values.items()],
    }


def diagnostic_array_fields(statuses: Sequence[Fields], stamp_ns: int, frame_id: str = "") -> Fields:
    """``diagnostic_msgs/DiagnosticArray`` fields from status dicts (:func:`diagnostic_status_fields`)."""
    return {"header": header_fields(stamp_ns, frame_id), "status": list(statuses)}


# ---------------------------------------------------------------------------------------------------
# Builders: fields -> rclpy / rosbags messages; messages -> fields
# ---------------------------------------------------------------------------------------------------

_RCLPY_TYPECODES = {
    "float": "f", "float32": "f", "double": "d", "float64": "d",
    "int8": "b", "uint8": "B", "int16": "h", "uint16": "H",
    "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q",
}
_NUMPY_DTYPES = {
    "float": np.float32, "float32": np.float32, "double": np.float64, "float64": np.float64,
    "int8": np.int8, "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16,
    "int32": np.int32, "uint32": np.uint32, "int64": np.int64, "uint64": np.uint64,
    "byte": np.uint8, "octet": np.uint8, "char": np.uint8, "bool": np.bool_, "boolean": np.bool_,
}
_INT_TYPES = {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "char", "byte"}
_FLOAT_TYPES = {"float", "double", "float32", "float64"}
_SEQ_RE = re.compile(r"^sequence<(.+?)(?:,\s*\d+)?>$")
_ARR_RE = re.compile(r"^(.+)\[(\d+)\]$")


def _rclpy_class(typename: str) -> type:
    pkg, name = typename.split("/")[0], typename.split("/")[-1]
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def _rclpy_scalar(t: str, value: Any) -> Any:
    if t == "octet":
        return value if isinstance(value, (bytes, bytearray)) else bytes([int(value)])
    if t == "boolean":
        return bool(value)
    if t in _FLOAT_TYPES:
        return float(value)
    if t in _INT_TYPES:
        return int(value)
    if t.startswith(("string", "wstring")):
        return str(value)
    raise TypeError(f"unknown rclpy field type {t!r}")


def _rclpy_value(t: str, value: Any) -> Any:
    m = _SEQ_RE.match(t)
    a = None if m else _ARR_RE.match(t)
    if m or a:
        elem = (m or a).group(1)
        if "/" in elem:
            cls = _rclpy_class(elem)
            return [v if isinstance(v, cls) else to_rclpy(cls, v) for v in value]
        if elem in _RCLPY_TYPECODES:
            arr = np.ascontiguousarray(np.asarray(value), dtype=_NUMPY_DTYPES[elem]).reshape(-1)
            if a:  # fixed arrays are stored as numpy arrays by rclpy
                if arr.size != int(a.group(2)):
                    raise ValueError(f"field of type {t} needs {a.group(2)} values, got {arr.size}")
                return arr.copy()
            out = array.array(_RCLPY_TYPECODES[elem])
            out.frombytes(memoryview(arr).cast("B"))  # one copy, no intermediate bytes object
            return out
        return [_rclpy_scalar(elem, v) for v in value]
    if "/" in t:
        cls = _rclpy_class(t)
        return value if isinstance(value, cls) else to_rclpy(cls, value)
    return _rclpy_scalar(t, value)


def to_rclpy(msg_cls: type, fields: Mapping[str, Any]) -> Any:
    """Build an rclpy message of ``msg_cls`` from a fields dict (nested dicts for sub-messages).

    Missing fields keep the message defaults; unknown names raise ``KeyError``. Works with
    ``ROS_PYTHON_CHECK_FIELDS=1``: numeric sequences become ``array.array``, fixed arrays numpy arrays.
    """
    types = msg_cls.get_fields_and_field_types()
    unknown = [name for name in fields if name not in types]
    if unknown:
        raise KeyError(f"{msg_cls.__name__} has no field(s) {unknown} (fields: {list(types)})")
    # Assign through the setters after default construction: the generated __init__ copies every
    # sequence passed as a keyword (array.array(...)), the setters keep an array.array as is when
    # fields are checked and copy it once otherwise.
    msg = msg_cls()
    for name, value in fields.items():
        setattr(msg, name, _rclpy_value(types[name], value))
    return msg


def _rosbags_scalar(t: str, value: Any) -> Any:
    if t == "string":
        return str(value)
    if t == "bool":
        return bool(value)
    if t in _FLOAT_TYPES:
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        return value[0]
    return int(value)


def _rosbags_value(typestore: Any, node: tuple, value: Any) -> Any:
    kind, detail = int(node[0]), node[1]
    if kind == 1:  # BASE
        return _rosbags_scalar(detail[0], value)
    if kind == 2:  # NAME
        return value if not isinstance(value, Mapping) else to_rosbags(typestore, detail, value)
    # ARRAY (3) / SEQUENCE (4): detail = (element node, count)
    elem, count = detail
    ekind, edetail = int(elem[0]), elem[1]
    if ekind == 2:
        vals = [to_rosbags(typestore, edetail, v) if isinstance(v, Mapping) else v for v in value]
    elif edetail[0] == "string":
        vals = [str(v) for v in value]
    else:
        vals = np.ascontiguousarray(np.asarray(value), dtype=_NUMPY_DTYPES[edetail[0]]).reshape(-1)
        if not vals.flags.writeable:
            vals = vals.copy()
    if kind == 3 and len(vals) != count:
        raise ValueError(f"fixed array needs {count} values, got {len(vals)}")
    return vals


def _rosbags_default(typestore: Any, node: tuple) -> Any:
    kind, detail = int(node[0]), node[1]
    if kind == 1:
        t = detail[0]
        return "" if t == "string" else False if t == "bool" else 0.0 if t in _FLOAT_TYPES else 0
    if kind == 2:
        return to_rosbags(typestore, detail, {})
    elem, count = detail
    ekind, edetail = int(elem[0]), elem[1]
    n = count if kind == 3 else 0
    if ekind == 2 or edetail[0] == "string":
        return [_rosbags_default(typestore, elem) for _ in range(n)]
    return np.zeros(n, dtype=_NUMPY_DTYPES[edetail[0]])


def to_rosbags(typestore: Any, msgtype: str, fields: Mapping[str, Any]) -> Any:
    """Build a ``rosbags`` message dataclass of ``msgtype`` (e.g. ``'sensor_msgs/msg/Image'``) from a
    fields dict; missing fields get ROS defaults (zeros, empty), unknown names raise ``KeyError``."""
    if msgtype not in typestore.types:
        raise KeyError(f"message type {msgtype!r} is not in the typestore (register_custom_types?)")
    cls = typestore.types[msgtype]
    _, fdefs = typestore.fielddefs[msgtype]
    names = {name for name, _ in fdefs}
    unknown = set(fields) - names
    if unknown:
        raise KeyError(f"{msgtype} has no field(s) {sorted(unknown)} (fields: {[n for n, _ in fdefs]})")
    kwargs = {}
    for name, node in fdefs:
        kwargs[name] = (_rosbags_value(typestore, node, fields[name]) if name in fields
                        else _rosbags_default(typestore, node))
    return cls(**kwargs)


def _field_names(msg: Any) -> list[str] | None:
    if hasattr(msg, "get_fields_and_field_types"):
        return list(msg.get_fields_and_field_types())
    if dataclasses.is_dataclass(msg) and not isinstance(msg, type):
        # rosbags dataclasses also carry the constants (upper case) and __msgtype__ as fields; ROS
        # field names are lower case.
        names = [f.name for f in dataclasses.fields(msg)]
        return [n for n in names if n == n.lower() and not n.startswith("_")]
    if hasattr(msg, "__slots__") and not isinstance(msg, (str, bytes)):
        return [s.lstrip("_") for s in msg.__slots__ if s not in ("_check_fields",)]
    if hasattr(msg, "__dict__") and not isinstance(msg, type):
        return [k for k in vars(msg) if not k.startswith("_")]
    return None


def msg_to_fields(msg: Any) -> Any:
    """Any message (rclpy, rosbags, mcap_ros2) -> fields dict: numeric sequences as numpy arrays
    (bytes-like as uint8), message sequences as lists of dicts, 1-byte ``bytes`` (rclpy octet) as int."""
    if isinstance(msg, np.ndarray):
        return msg
    if isinstance(msg, array.array):
        return np.array(msg)
    if isinstance(msg, (bytes, bytearray)):
        return msg[0] if len(msg) == 1 else np.frombuffer(msg, dtype=np.uint8).copy()
    if isinstance(msg, np.generic):
        return msg.item()
    if isinstance(msg, (str, int, float, bool)) or msg is None:
        return msg
    if isinstance(msg, (list, tuple)):
        items = [msg_to_fields(v) for v in msg]
        if items and all(isinstance(v, dict) for v in items):
            return items
        if items and all(isinstance(v, str) for v in items):
            return items
        return np.asarray(items) if items else np.zeros(0)
    names = _field_names(msg)
    if names is None:
        raise TypeError(f"cannot convert {type(msg).__name__} to fields")
    return {name: msg_to_fields(getattr(msg, name)) for name in names}
