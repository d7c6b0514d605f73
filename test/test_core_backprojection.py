"""Depth -> PointCloud2 records split into row bands and threads: byte-identical to a plain-numpy
reference whatever the split (all-invalid, fully valid and mixed bands, +-inf / NaN / 0 / negative /
subnormal depths, rgb or not, skewed K), with the right ``is_dense`` flag."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from vggt_ros.core import backprojection
from vggt_ros.core.backprojection import depth_to_cloud_records
from vggt_ros.messages.point_clouds import depth_to_pointcloud2_fields

STAMP = 1_700_000_000_123_456_789


def reference(depth: np.ndarray, K: np.ndarray, rgb: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(all H x W records, validity mask), straight from the documented formula: rays in float64
    rounded to float32, ``x = xr[u] * z - (s / fx) * y``, ``y = yr[v] * z`` in float32, rgb packed as
    little-endian 0x00RRGGBB; valid = finite and > 0."""
    h, w = depth.shape
    fx, s, cx, fy, cy = K[0, 0], K[0, 1], K[0, 2], K[1, 1], K[1, 2]
    xr = ((np.arange(w, dtype=np.float64) - cx) / fx).astype(np.float32)
    yr = ((np.arange(h, dtype=np.float64) - cy) / fy).astype(np.float32)
    z = depth.astype(np.float32)
    with np.errstate(all="ignore"):
        x = z * xr[None, :]
        y = z * yr[:, None]
        if s != 0:
            x = x - y * np.float32(s / fx)
        valid = np.isfinite(depth) & (depth > 0)
    planes = [x, y, z]
    if rgb is not None:
        r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
        planes.append(((r << 16) | (g << 8) | b).view(np.float32))
    return np.stack(planes, axis=-1), valid


def hostile_depth(h: int, w: int, seed: int) -> np.ndarray:
    """Speckled invalid pixels of every kind, a fully invalid row block, a fully valid row block
    (so some bands are all-invalid / all-valid whatever the split), one +inf and one subnormal."""
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.2, 9.0, (h, w)).astype(np.float32)
    kinds = rng.integers(0, 12, (h, w))
    depth[kinds == 0] = np.nan
    depth[kinds == 1] = 0.0
    depth[kinds == 2] = -rng.uniform(0.1, 3.0, int((kinds == 2).sum()))
    depth[kinds == 3] = -np.inf
    depth[h // 5: 2 * h // 5] = np.nan  # all-invalid rows
    depth[3 * h // 5: 4 * h // 5] = rng.uniform(0.5, 4.0, (4 * h // 5 - 3 * h // 5, w))  # all-valid rows
    depth[h - 2, w // 3] = np.inf
    depth[h - 1, w // 2] = np.float32(1e-45)  # subnormal, still > 0: valid
    return depth


def records_bits(fields: dict, nch: int) -> np.ndarray:
    return fields["data"].view(np.uint32).reshape(-1, nch)


def check_against_reference(depth, K, rgb, threads, organized=False) -> None:
    nch = 3 if rgb is None else 4
    ref, valid = reference(depth, K, rgb)
    f = depth_to_pointcloud2_fields(depth, K, rgb, STAMP, "cam", organized=organized, threads=threads)
    got = records_bits(f, nch)
    if organized:
        assert (f["height"], f["width"]) == depth.shape
        got = got.reshape(*depth.shape, nch)
        np.testing.assert_array_equal(got[valid], ref[valid].view(np.uint32))
        assert np.isnan(got[~valid][:, :3].view(np.float32)).all()  # x y z NaN where invalid
        if rgb is not None:
            np.testing.assert_array_equal(got[~valid][:, 3], ref[~valid][:, 3].view(np.uint32))
        dense = bool(valid.all() and np.isfinite(ref[..., :3]).all())
    else:
        assert (f["height"], f["width"]) == (1, int(valid.sum()))
        want = ref[valid]
        np.testing.assert_array_equal(got, want.view(np.uint32))
        dense = bool(np.isfinite(want[:, :3]).all())
    assert f["is_dense"] is dense
    assert f["point_step"] == 4 * nch and f["row_step"] == 4 * nch * f["width"]


@pytest.mark.parametrize("skew", [0.0, 3.5])
@pytest.mark.parametrize("with_rgb", [True, False])
def test_real_threshold_image_matches_reference_for_any_thread_count(skew, with_rgb):
    """An image just above the parallel threshold, split with the real band sizes."""
    h, w = 448, 608
    assert h * w >= backprojection._PARALLEL_MIN_PIXELS
    depth = hostile_depth(h, w, seed=3)
    K = np.array([[0.9 * w, skew, (w - 1) / 2 + 3.3], [0, 0.85 * w, (h - 1) / 2 - 7.1], [0, 0, 1.0]])
    rgb = np.random.default_rng(4).integers(0, 256, (h, w, 3), dtype=np.uint8) if with_rgb else None
    for threads in (1, 2, 3):
        for organized in (False, True):
            used, bands = backprojection._bands(h, w, threads, organized)
            assert used == threads and len(bands) >= threads
        check_against_reference(depth, K, rgb, threads)
    check_against_reference(depth, K, rgb, 2, organized=True)


@pytest.mark.parametrize("max_band", [7 * 53, 29 * 53, 1 << 20])
def test_small_bands_match_reference(monkeypatch, max_band):
    """Many bands (also one-row-ish ones) so that band edges cut through every kind of region."""
    monkeypatch.setattr(backprojection, "_PARALLEL_MIN_PIXELS", 0)
    monkeypatch.setattr(backprojection, "_MAX_BAND_PIXELS", max_band)
    h, w = 61, 53
    depth = hostile_depth(h, w, seed=9)
    K = np.array([[40.0, -1.7, 25.2], [0, 43.0, 31.9], [0, 0, 1]])
    rgb = np.random.default_rng(5).integers(0, 256, (h, w, 3), dtype=np.uint8)
    for threads in (1, 2, 3):
        for organized in (False, True):
            check_against_reference(depth, K, rgb, threads, organized)
            check_against_reference(depth, K, None, threads, organized)


def test_fully_valid_and_fully_invalid_images(monkeypatch):
    """All pixels valid: every band is merged straight into the output, and the cloud is dense;
    none valid: an empty, dense cloud."""
    monkeypatch.setattr(backprojection, "_PARALLEL_MIN_PIXELS", 0)
    monkeypatch.setattr(backprojection, "_MAX_BAND_PIXELS", 10 * 37)
    h, w = 50, 37
    depth = np.random.default_rng(6).uniform(0.1, 5.0, (h, w)).astype(np.float32)
    K = np.array([[30.0, 0.0, 18.0], [0, 30.0, 24.5], [0, 0, 1]])
    rgb = np.random.default_rng(7).integers(0, 256, (h, w, 3), dtype=np.uint8)
    for threads in (1, 2, 3):
        check_against_reference(depth, K, rgb, threads)
        f = depth_to_pointcloud2_fields(depth, K, rgb, STAMP, "cam", threads=threads)
        assert f["width"] == h * w and f["is_dense"] is True
        bad = np.full((h, w), np.nan, np.float32)
        bad[::3] = -1.0
        bad[1::3] = 0.0
        f = depth_to_pointcloud2_fields(bad, K, rgb, STAMP, "cam", threads=threads)
        assert f["width"] == 0 and f["data"].size == 0 and f["is_dense"] is True


def test_overflowing_coordinates_clear_is_dense(monkeypatch):
    """Huge finite depths make x or y overflow to inf in float32: still kept (the depth is valid),
    and the cloud is not dense; only the bands holding them are affected."""
    monkeypatch.setattr(backprojection, "_PARALLEL_MIN_PIXELS", 0)
    monkeypatch.setattr(backprojection, "_MAX_BAND_PIXELS", 8 * 40)
    h, w = 40, 40
    depth = np.random.default_rng(8).uniform(1.0, 2.0, (h, w)).astype(np.float32)
    depth[33, 0] = np.float32(3e38)  # far left column: |x| = 3e38 * ~1.3 overflows
    K = np.array([[15.0, 0.0, 20.0], [0, 15.0, 20.0], [0, 0, 1]])
    ref, valid = reference(depth, K, None)
    assert not np.isfinite(ref[valid][:, :3]).all()  # the scene really overflows
    for threads in (1, 2, 3):
        check_against_reference(depth, K, None, threads)
        check_against_reference(depth, K, None, threads, organized=True)
    depth[33, 0] = np.float32(3e30)  # large but representable: dense again
    check_against_reference(depth, K, None, 2)


def test_concurrent_callers_with_parallel_bands(monkeypatch):
    """Several threads each back-projecting different images on the shared pool: each caller's
    validity mask and band scratch stay its own."""
    monkeypatch.setattr(backprojection, "_PARALLEL_MIN_PIXELS", 0)
    monkeypatch.setattr(backprojection, "_MAX_BAND_PIXELS", 6 * 45)
    K = np.array([[30.0, 0.8, 22.0], [0, 31.0, 17.0], [0, 0, 1]])
    scenes = []
    for i in range(4):
        depth = hostile_depth(36 + 5 * i, 45, seed=20 + i)
        rgb = np.random.default_rng(30 + i).integers(0, 256, (*depth.shape, 3), dtype=np.uint8)
        ref, valid = reference(depth, K, rgb)
        scenes.append((depth, rgb, ref[valid].view(np.uint32)))
    errors: list[str] = []

    def worker(i: int) -> None:
        depth, rgb, want = scenes[i]
        for _ in range(15):
            got = depth_to_cloud_records(depth, K, rgb, threads=2)
            if not np.array_equal(got.view(np.uint32), want):
                errors.append(f"caller {i} got a wrong cloud")
                return

    callers = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    assert errors == []


def test_merge_scratch_is_misaligned_and_reused():
    """The band record scratch must start off a 64-byte boundary (cv2.merge then uses ordinary,
    cached stores instead of streaming the records to DRAM before the take reads them back)."""
    a = backprojection._work("test_scratch", (5, 7, 4), np.float32, misaligned=True)
    b = backprojection._work("test_scratch", (5, 7, 4), np.float32, misaligned=True)
    assert a.shape == (5, 7, 4) and a.dtype == np.float32 and a.flags.c_contiguous
    assert a.ctypes.data % 64 == 4 and a.ctypes.data == b.ctypes.data
    c = backprojection._work("test_scratch", (3, 7, 3), np.float32, misaligned=True)
    assert c.shape == (3, 7, 3) and c.ctypes.data % 64 == 4


@pytest.mark.parametrize("first_bands", [("valid", "mixed"), ("invalid", "valid"), ("mixed", "invalid")])
@pytest.mark.parametrize("with_rgb", [True, False])
def test_bands_prepared_before_the_counts_are_known(monkeypatch, first_bands, with_rgb):
    """Workers back-project their first band while the caller still counts: with a slow count, the
    workers' first bands (bands 0 and 1 on 3 threads: fully valid, fully invalid or mixed) are
    prepared without knowing their counts or offsets and must still land at the right offsets."""
    import time

    monkeypatch.setattr(backprojection, "_PARALLEL_MIN_PIXELS", 0)
    monkeypatch.setattr(backprojection, "_MAX_BAND_PIXELS", 2 * 10 * 31)  # unorganised bands: 10 rows
    real_valid_into = backprojection._valid_into

    def slow_valid_into(d, valid, rows):
        time.sleep(0.05)
        return real_valid_into(d, valid, rows)

    monkeypatch.setattr(backprojection, "_valid_into", slow_valid_into)
    h, w = 60, 31
    depth = hostile_depth(h, w, seed=12)
    for band, kind in enumerate(first_bands):
        rows = slice(10 * band, 10 * band + 10)
        if kind == "valid":
            depth[rows] = np.random.default_rng(band).uniform(1.0, 2.0, (10, w))
        elif kind == "invalid":
            depth[rows] = np.nan
        else:
            depth[rows][:, ::3] = 0.0
            depth[rows][:, 1::3] = 1.5
    assert backprojection._bands(h, w, 3, False)[1][:3] == [(0, 10), (10, 20), (20, 30)]
    K = np.array([[25.0, 0.5, 15.0], [0, 26.0, 30.0], [0, 0, 1]])
    rgb = np.random.default_rng(13).integers(0, 256, (h, w, 3), dtype=np.uint8) if with_rgb else None
    for threads in (1, 2, 3, 4):
        check_against_reference(depth, K, rgb, threads)


def test_a_failing_count_reaches_the_caller_without_hanging(monkeypatch):
    """An error in the caller's phase 1 must not leave workers waiting for the counts forever."""
    monkeypatch.setattr(backprojection, "_PARALLEL_MIN_PIXELS", 0)
    monkeypatch.setattr(backprojection, "_MAX_BAND_PIXELS", 4 * 20)

    def broken(d, valid, rows):
        raise RuntimeError("count failed")

    monkeypatch.setattr(backprojection, "_valid_into", broken)
    depth = np.ones((24, 20), np.float32)
    K = np.array([[20.0, 0, 10.0], [0, 20.0, 12.0], [0, 0, 1]])
    outcome: list[str] = []

    def call() -> None:
        try:
            depth_to_cloud_records(depth, K, threads=2)
        except RuntimeError as e:
            outcome.append(str(e))

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(timeout=10)
    assert not t.is_alive(), "back-projection hung after a phase-1 error"
    assert outcome == ["count failed"]


def test_run_shared_first_runs_on_the_caller_before_its_items():
    """``first`` runs once, on the calling thread, while workers may already be taking items that
    wait for it; every item still runs once, in order of the results."""
    ready = threading.Event()
    caller = threading.get_ident()
    ran_first: list[int] = []

    def first() -> None:
        ran_first.append(threading.get_ident())
        ready.set()

    def item(i: int) -> int:
        assert ready.wait(timeout=10)
        return i * 3

    for threads in (1, 2, 3):
        ready.clear()
        ran_first.clear()
        assert backprojection._run_shared(item, range(7), threads, first=first) == [i * 3 for i in range(7)]
        assert ran_first == [caller]
