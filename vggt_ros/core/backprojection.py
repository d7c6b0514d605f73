"""Threaded back-projection of a depth image (+ RGB) into PointCloud2-layout records.

Why it is its own module: it is geometry with a performance budget (row bands on a persistent thread
pool, per-thread scratch buffers, a bound that proves ``is_dense`` without a pass over the output),
not message layout. :mod:`vggt_ros.messages.point_clouds` wraps its records into PointCloud2 fields;
the benchmarks measure it directly. The records are little-endian float32 ``x y z`` (+ ``rgb``
packed as uint32 ``0x00RRGGBB``), the PointCloud2 convention of PCL and RViz.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import numpy as np

if sys.byteorder != "little":  # pragma: no cover - every ROS 2 tier-1 platform is little-endian
    raise ImportError("vggt_ros.core.backprojection assumes a little-endian host")

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


def finite_positive_depth_mask(depth: np.ndarray) -> np.ndarray:
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
    """The validity mask of depth rows ``d`` (finite and > 0, as :func:`finite_positive_depth_mask`) into
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


def backproject_depth(
    depth: np.ndarray, K: np.ndarray, rgb: np.ndarray | None = None, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Back-project a z-depth image through pinhole K (pixel centres at integers) to camera-frame
    points [N, 3] float32 (row-major pixel order), keeping finite positive depths; colours [N, 3]
    uint8 from ``rgb``. (For a PointCloud2 use
    :func:`vggt_ros.messages.point_clouds.depth_to_pointcloud2_fields`: no split.)"""
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
