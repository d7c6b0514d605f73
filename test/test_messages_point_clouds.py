"""PointCloud2 layout, packing and reading (vggt_ros.messages.point_clouds), and the depth
back-projection behind it (vggt_ros.core.backprojection).

Messages are checked against the real ROS 2 message definitions: built as rosbags messages and
serialised to CDR, and as rclpy messages (ROS_PYTHON_CHECK_FIELDS=1, set in conftest.py); all
comparisons are by value, never by CDR bytes.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from message_samples import RNG, STAMP, K, make_typestore

from vggt_ros.core import backprojection
from vggt_ros.core.backprojection import backproject_depth, depth_to_cloud_records, finite_positive_depth_mask
from vggt_ros.messages.builders import to_rosbags
from vggt_ros.messages.point_clouds import (
    XYZRGB_FIELDS,
    depth_to_pointcloud2_fields,
    pack_rgb,
    pointcloud2_data,
    pointcloud2_fields,
    pointcloud2_msg_to_xyz_rgb,
    pointcloud2_to_xyz_rgb,
    unpack_rgb,
)


@pytest.fixture(scope="module")
def typestore():
    return make_typestore()


def test_pointcloud2_layout_matches_ros_convention():
    """Same layout and bytes as sensor_msgs_py.point_cloud2 with fields x, y, z, rgb (FLOAT32)."""
    pts = np.array([[1.0, -2.0, 3.5], [0.25, 0.0, -1.0]], np.float32)
    cols = np.array([[255, 0, 0], [1, 2, 3]], np.uint8)
    f = pointcloud2_fields(pts, cols, STAMP, "map")
    assert [(x["name"], x["offset"], x["datatype"], x["count"]) for x in f["fields"]] == [
        ("x", 0, 7, 1),
        ("y", 4, 7, 1),
        ("z", 8, 7, 1),
        ("rgb", 12, 7, 1),
    ]
    assert (f["height"], f["width"], f["point_step"], f["row_step"]) == (1, 2, 16, 32)
    assert f["is_bigendian"] is False and f["is_dense"] is True
    # reference bytes built independently, one point at a time
    ref = b"".join(
        struct.pack("<fffI", *p, (int(c[0]) << 16) | (int(c[1]) << 8) | int(c[2]))
        for p, c in zip(pts.tolist(), cols)
    )
    assert f["data"].tobytes() == ref
    assert pack_rgb(cols[:1]).view(np.uint32)[0] == 0xFF0000


def test_pointcloud2_roundtrip_and_density(typestore):
    pts = RNG.normal(size=(50, 3)).astype(np.float32)
    cols = RNG.integers(0, 256, size=(50, 3), dtype=np.uint8)
    f = pointcloud2_fields(pts, cols, STAMP, "map")
    msg = typestore.deserialize_cdr(
        typestore.serialize_cdr(
            to_rosbags(typestore, "sensor_msgs/msg/PointCloud2", f), "sensor_msgs/msg/PointCloud2"
        ),
        "sensor_msgs/msg/PointCloud2",
    )
    xyz, rgb = pointcloud2_msg_to_xyz_rgb(msg)
    np.testing.assert_array_equal(xyz, pts)
    np.testing.assert_array_equal(rgb, cols)
    xyz, rgb = pointcloud2_msg_to_xyz_rgb(
        to_rosbags(
            typestore, "sensor_msgs/msg/PointCloud2", pointcloud2_fields(pts, None, STAMP, "m")
        )
    )
    np.testing.assert_array_equal(xyz, pts)
    assert rgb is None
    pts[3, 1] = np.nan
    assert pointcloud2_fields(pts, cols, STAMP, "map")["is_dense"] is False
    empty = pointcloud2_fields(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), STAMP, "m")
    assert empty["width"] == 0 and empty["data"].size == 0
    with pytest.raises(ValueError, match="uint8"):
        pointcloud2_fields(pts, cols.astype(np.float32), STAMP, "m")


def test_pointcloud2_reader_other_layouts():
    """PCL-style layout: point_step 32, rgb as UINT32 at offset 16, padded rows, 2x3 organised."""
    dt = np.dtype(
        {
            "names": ["x", "y", "z", "rgb"],
            "formats": ["<f4", "<f4", "<f4", "<u4"],
            "offsets": [0, 4, 8, 16],
            "itemsize": 32,
        }
    )
    arr = np.zeros((2, 3), dt)
    xyz = RNG.normal(size=(2, 3, 3)).astype(np.float32)
    cols = RNG.integers(0, 256, size=(2, 3, 3), dtype=np.uint8)
    arr["x"], arr["y"], arr["z"] = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    arr["rgb"] = (cols[..., 0].astype(np.uint32) << 16) | (cols[..., 1].astype(np.uint32) << 8) | cols[..., 2]
    rows = np.zeros((2, 3 * 32 + 8), np.uint8)
    rows[:, : 3 * 32] = arr.view(np.uint8).reshape(2, -1)
    fields = [
        {"name": n, "offset": o, "datatype": d, "count": 1}
        for n, o, d in [("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("rgb", 16, 6)]
    ]
    out_xyz, out_rgb = pointcloud2_to_xyz_rgb(fields, 2, 3, 32, 3 * 32 + 8, rows.tobytes())
    np.testing.assert_array_equal(out_xyz, xyz.reshape(-1, 3))
    np.testing.assert_array_equal(out_rgb, cols.reshape(-1, 3))
    with pytest.raises(ValueError, match="'z'"):
        pointcloud2_to_xyz_rgb(fields[:2], 2, 3, 32, 104, rows.tobytes())


def test_backproject_depth():
    depth = np.array([[1.0, np.nan, 2.0], [0.0, 4.0, -1.0]], np.float32)
    Kd = np.array([[2.0, 0, 1.0], [0, 4.0, 0.5], [0, 0, 1]])
    rgb = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)
    pts, cols = backproject_depth(depth, Kd, rgb)
    expected = [
        [(u - 1.0) / 2.0 * z, (v - 0.5) / 4.0 * z, z]
        for (v, u), z in np.ndenumerate(depth)
        if np.isfinite(z) and z > 0
    ]
    np.testing.assert_allclose(pts, np.array(expected, np.float32), rtol=1e-6)
    np.testing.assert_array_equal(cols, rgb[[0, 0, 1], [0, 2, 1]])
    one, one_cols = backproject_depth(np.array([[np.nan, 3.0]], np.float32), Kd, rgb[:1, :2])
    np.testing.assert_allclose(one, [[0.0, -0.375, 3.0]])
    np.testing.assert_array_equal(one_cols, rgb[:1, 1])
    none, none_cols = backproject_depth(np.full((2, 2), np.nan, np.float32), Kd, rgb[:2, :2])
    assert none.shape == (0, 3) and none_cols.shape == (0, 3)
    # larger image: same result as a direct per-pixel formula, colours included
    rng = np.random.default_rng(2)
    big = rng.uniform(0.2, 9, (37, 53)).astype(np.float32)
    big[rng.uniform(size=big.shape) < 0.3] = np.nan
    big_rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    pts, cols = backproject_depth(big, K, big_rgb)
    vv, uu = np.nonzero(np.isfinite(big))
    zz = big[vv, uu]
    ref = np.stack([(uu - K[0, 2]) / K[0, 0] * zz, (vv - K[1, 2]) / K[1, 1] * zz, zz], axis=1)
    np.testing.assert_allclose(pts, ref, rtol=1e-6)
    np.testing.assert_array_equal(cols, big_rgb[vv, uu])
    # and the cloud bytes from them unpack to the same values (non-contiguous inputs accepted)
    xyz, rgb_back = pointcloud2_to_xyz_rgb(
        XYZRGB_FIELDS,
        1,
        len(pts),
        16,
        16 * len(pts),
        pointcloud2_data(np.asfortranarray(pts), cols[:, :]),
    )
    np.testing.assert_array_equal(xyz, pts)
    np.testing.assert_array_equal(rgb_back, cols)


def _naive_records(depth: np.ndarray, Kd: np.ndarray, rgb: np.ndarray) -> tuple[list, list, list]:
    """Per-pixel reference: (flat ids, xyz float64, packed uint32 rgb) of valid pixels, row-major."""
    fx, s, cx, fy, cy = Kd[0, 0], Kd[0, 1], Kd[0, 2], Kd[1, 1], Kd[1, 2]
    ids, xyz, packed = [], [], []
    for (v, u), z in np.ndenumerate(depth):
        if np.isfinite(z) and z > 0:
            yn = (v - cy) / fy
            ids.append(v * depth.shape[1] + u)
            xyz.append([(u - cx - s * yn) / fx * z, yn * z, z])
            r, g, b = (int(c) for c in rgb[v, u])
            packed.append((r << 16) | (g << 8) | b)
    return ids, xyz, packed


def _hostile_depth(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    d = rng.uniform(0.1, 9.0, (h, w)).astype(np.float32)
    for value, frac in ((np.nan, 0.15), (np.inf, 0.05), (-np.inf, 0.03), (0.0, 0.05), (-2.0, 0.05)):
        d[rng.uniform(size=(h, w)) < frac] = value
    d[0, 0], d[-1, -1] = -0.0, np.float32(1e-40)  # negative zero invalid, positive subnormal valid
    return d


@pytest.mark.parametrize("skew", [0.0, 3.0])
def test_cloud_records_match_per_pixel_reference(skew):
    h, w = 19, 27
    depth = _hostile_depth(h, w, seed=11)
    Kd = np.array([[40.0, skew, 13.2], [0, 38.0, 9.7], [0, 0, 1]])
    rgb = np.random.default_rng(3).integers(0, 256, (h, w, 3), dtype=np.uint8)
    rgb[1, 1] = 255  # all bits set: the alpha byte must still be 0
    ids, xyz, packed = _naive_records(depth, Kd, rgb)
    rec = depth_to_cloud_records(depth, Kd, rgb)
    assert rec.shape == (len(ids), 4) and rec.dtype == np.float32
    np.testing.assert_allclose(rec[:, :3], np.array(xyz), rtol=2e-6, atol=1e-30)
    np.testing.assert_array_equal(rec[:, 3].view(np.uint32), np.array(packed, np.uint32))
    # without colours: 12-byte records, same coordinates
    np.testing.assert_array_equal(depth_to_cloud_records(depth, Kd), rec[:, :3])
    # organised: every pixel, NaN x y z exactly at the invalid ones, valid ones equal the unorganised
    org = depth_to_cloud_records(depth, Kd, rgb, organized=True)
    assert org.shape == (h, w, 4)
    flat = org.reshape(-1, 4)
    invalid = np.ones(h * w, bool)
    invalid[ids] = False
    assert np.isnan(flat[invalid, :3]).all() and np.isfinite(flat[~invalid, :3]).all()
    np.testing.assert_array_equal(flat[ids].view(np.uint32), rec.view(np.uint32))
    all_packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    np.testing.assert_array_equal(flat[:, 3].view(np.uint32), all_packed.reshape(-1))
    # the split path returns the same points and colours
    pts, cols = backproject_depth(depth, Kd, rgb)
    np.testing.assert_array_equal(pts, rec[:, :3])
    np.testing.assert_array_equal(cols, rgb.reshape(-1, 3)[ids])


def test_depth_to_pointcloud2_fields_unorganised_and_organised(typestore):
    h, w = 12, 17
    depth = _hostile_depth(h, w, seed=4)
    rgb = np.random.default_rng(5).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Kd = np.array([[20.0, 0, 8.0], [0, 21.0, 5.5], [0, 0, 1]])
    pts, cols = backproject_depth(depth, Kd, rgb)
    f = depth_to_pointcloud2_fields(depth, Kd, rgb, STAMP, "cam")
    ref = pointcloud2_fields(pts, cols, STAMP, "cam")
    for key in ("height", "width", "point_step", "row_step", "is_dense", "fields", "header", "is_bigendian"):
        assert f[key] == ref[key], key
    np.testing.assert_array_equal(f["data"], ref["data"])
    assert f["height"] == 1 and f["width"] == len(pts) and f["is_dense"] is True
    o = depth_to_pointcloud2_fields(depth, Kd, rgb, STAMP, "cam", organized=True)
    assert (o["height"], o["width"], o["row_step"], o["is_dense"]) == (h, w, 16 * w, False)
    msg = to_rosbags(typestore, "sensor_msgs/msg/PointCloud2", o)
    xyz, back = pointcloud2_msg_to_xyz_rgb(typestore.deserialize_cdr(
        typestore.serialize_cdr(msg, "sensor_msgs/msg/PointCloud2"), "sensor_msgs/msg/PointCloud2"))
    valid = finite_positive_depth_mask(depth).reshape(-1)
    np.testing.assert_array_equal(xyz[valid], pts)
    assert np.isnan(xyz[~valid]).all()
    np.testing.assert_array_equal(back, rgb.reshape(-1, 3))
    # organised input to pointcloud2_fields gives the same message; all-valid organised is dense
    o2 = pointcloud2_fields(xyz.reshape(h, w, 3), back.reshape(h, w, 3), STAMP, "cam")
    assert (o2["height"], o2["width"], o2["row_step"], o2["is_dense"]) == (h, w, 16 * w, False)
    np.testing.assert_array_equal(o2["data"], o["data"])
    dense = depth_to_pointcloud2_fields(np.ones((3, 4), np.float32), Kd, None, STAMP, "c",
                                             organized=True)
    assert dense["is_dense"] is True and dense["point_step"] == 12 and dense["data"].nbytes == 12 * 12
    none = depth_to_pointcloud2_fields(np.full((3, 4), np.nan, np.float32), Kd, rgb[:3, :4], STAMP, "c")
    assert none["width"] == 0 and none["data"].nbytes == 0
    with pytest.raises(ValueError, match="rgb must be"):
        depth_to_cloud_records(depth, Kd, rgb[:, :-1])
    with pytest.raises(ValueError, match="focal"):
        depth_to_cloud_records(depth, np.zeros((3, 3)))


def test_pack_rgb_and_pointcloud2_data_match_arithmetic_reference():
    rng = np.random.default_rng(9)
    cols = rng.integers(0, 256, (1001, 3), dtype=np.uint8)
    cols[:3] = [[255, 255, 255], [0, 0, 0], [255, 0, 128]]
    ref = (cols[:, 0].astype(np.uint32) << 16) | (cols[:, 1].astype(np.uint32) << 8) | cols[:, 2]
    np.testing.assert_array_equal(pack_rgb(cols).view(np.uint32), ref)
    np.testing.assert_array_equal(unpack_rgb(pack_rgb(cols)), cols)
    pts = rng.normal(size=(1001, 3)).astype(np.float32)
    pts[5] = [np.nan, np.inf, -0.0]
    data = pointcloud2_data(pts, cols)
    expected = b"".join(struct.pack("<3fI", *p, int(c)) for p, c in zip(pts.tolist(), ref, strict=True))
    assert data.tobytes() == expected
    assert pointcloud2_data(pts).tobytes() == pts.astype("<f4").tobytes()


def test_cloud_scratch_buffers_never_leak_into_results():
    """The per-thread work buffers are reused across calls: earlier results must stay intact, also
    across image sizes and threads."""
    import threading

    Kd = np.array([[30.0, 0, 10.0], [0, 30.0, 8.0], [0, 0, 1]])
    a_depth, b_depth = _hostile_depth(16, 20, seed=1), _hostile_depth(9, 33, seed=2)
    a_rgb = np.random.default_rng(1).integers(0, 256, (16, 20, 3), dtype=np.uint8)
    b_rgb = np.random.default_rng(2).integers(0, 256, (9, 33, 3), dtype=np.uint8)
    first = depth_to_cloud_records(a_depth, Kd, a_rgb)
    keep = first.copy()
    org = depth_to_cloud_records(a_depth, Kd, a_rgb, organized=True)
    keep_org = org.copy()
    depth_to_cloud_records(b_depth, Kd, b_rgb)
    depth_to_cloud_records(np.flipud(a_depth), Kd, a_rgb, organized=True)
    np.testing.assert_array_equal(first.view(np.uint32), keep.view(np.uint32))
    np.testing.assert_array_equal(org.view(np.uint32), keep_org.view(np.uint32))
    results: dict[int, np.ndarray] = {}

    def worker(i: int) -> None:
        d, c = (a_depth, a_rgb) if i % 2 else (b_depth, b_rgb)
        for _ in range(20):
            results[i] = depth_to_cloud_records(d, Kd, c)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    single = {1: depth_to_cloud_records(a_depth, Kd, a_rgb),
              0: depth_to_cloud_records(b_depth, Kd, b_rgb)}
    for i, r in results.items():
        np.testing.assert_array_equal(r.view(np.uint32), single[i % 2].view(np.uint32))


@pytest.mark.parametrize("skew", [0.0, 2.5])
def test_cloud_bands_and_threads_give_the_single_pass_result(monkeypatch, skew):
    """Threads and row bands only change who computes which rows: every split must give the same
    bytes (checked against the per-pixel reference too), the same is_dense, in both layouts."""
    h, w = 23, 31
    depth = _hostile_depth(h, w, seed=21)
    depth[3, 4:9] = 0.0  # a run of invalid pixels spanning a band edge when bands are one row
    Kd = np.array([[35.0, skew, 14.5], [0, 33.0, 10.2], [0, 0, 1]])
    rgb = np.random.default_rng(8).integers(0, 256, (h, w, 3), dtype=np.uint8)
    ids, xyz, packed = _naive_records(depth, Kd, rgb)
    single = {org: depth_to_pointcloud2_fields(depth, Kd, rgb, STAMP, "c", organized=org, threads=1)
              for org in (False, True)}
    rec = single[False]["data"].view(np.float32).reshape(-1, 4)
    # atol: with skew, x = xr * z - (s / fx) * y cancels in float32 near x = 0
    np.testing.assert_allclose(rec[:, :3], np.array(xyz), rtol=2e-6, atol=1e-7)
    np.testing.assert_array_equal(rec[:, 3].view(np.uint32), np.array(packed, np.uint32))
    monkeypatch.setattr(backprojection, "_PARALLEL_MIN_PIXELS", 0)  # split even this small image
    for max_band in (1 << 21, 3 * w, 7):  # one band per thread, several, one row each
        monkeypatch.setattr(backprojection, "_MAX_BAND_PIXELS", max_band)
        for threads in (1, 2, 3, 40, None):
            used, bands = backprojection._bands(h, w, backprojection._cloud_threads(threads))
            assert [r for a, b in bands for r in range(a, b)] == list(range(h))
            assert 1 <= used <= len(bands) and all(b > a for a, b in bands)
            for org in (False, True):
                got = depth_to_pointcloud2_fields(depth, Kd, rgb, STAMP, "c", organized=org,
                                                       threads=threads)
                np.testing.assert_array_equal(got["data"], single[org]["data"])
                for key in ("height", "width", "row_step", "is_dense"):
                    assert got[key] == single[org][key], (key, max_band, threads, org)
            pts, cols = backproject_depth(depth, Kd, rgb, threads=threads)
            np.testing.assert_array_equal(pts, rec[:, :3])
            np.testing.assert_array_equal(cols, rgb.reshape(-1, 3)[ids])
    with pytest.raises(ValueError, match="threads"):
        depth_to_cloud_records(depth, Kd, rgb, threads=0)


def test_shared_band_runner_covers_every_band_once_and_propagates_errors():
    """Bands are taken from a shared counter by the caller and the pool: each exactly once, results
    in band order, and a worker's exception reaches the caller after every band has finished."""
    import threading
    import time

    seen: list[int] = []
    lock = threading.Lock()

    def slow_square(i: int) -> int:
        time.sleep(0.002 if i % 3 else 0.0)
        with lock:
            seen.append(i)
        return i * i

    assert backprojection._run_shared(slow_square, list(range(17)), 3) == [i * i for i in range(17)]
    assert sorted(seen) == list(range(17))
    assert backprojection._run_shared(slow_square, [4], 2) == [16]
    assert backprojection._run_shared(slow_square, [], 2) == []
    done: list[int] = []

    def fail_on_five(i: int) -> None:
        time.sleep(0.001)
        if i == 5:
            raise RuntimeError("band 5")
        with lock:
            done.append(i)

    with pytest.raises(RuntimeError, match="band 5"):
        backprojection._run_shared(fail_on_five, list(range(12)), 2)
    n_done = len(done)
    time.sleep(0.02)
    assert len(done) == n_done  # nothing still running after the caller got the error


def test_cloud_is_dense_matches_a_full_finiteness_check(monkeypatch):
    """is_dense comes from a bound on the depth when it can (no pass over the output): it must agree
    with checking every x y z, also when x or y overflow float32 for absurd depths."""
    monkeypatch.setattr(backprojection, "_PARALLEL_MIN_PIXELS", 0)
    Kd = np.array([[0.5, 0, 20.0], [0, 0.5, 2.0], [0, 0, 1]])  # |xr| up to 40: 1e38 * 40 overflows
    rng = np.random.default_rng(2)
    cases = {
        "all valid": rng.uniform(0.5, 3, (6, 41)),
        "some invalid": np.where(rng.uniform(size=(6, 41)) < 0.2, np.nan, rng.uniform(0.5, 3, (6, 41))),
        "overflow": np.full((6, 41), 1e38),
        "huge but finite": np.full((6, 41), 1e36),
        "none valid": np.full((6, 41), -1.0),
    }
    cases["one overflowing pixel"] = cases["all valid"].copy()
    cases["one overflowing pixel"][5, 0] = 3e38
    cases["absurd depth at the principal point"] = cases["all valid"].copy()
    cases["absurd depth at the principal point"][2, 20] = 3e38  # x = y = 0: bound fails, still dense
    for name, d in cases.items():
        d = d.astype(np.float32)
        for org in (False, True):
            for threads in (1, 2):
                f = depth_to_pointcloud2_fields(d, Kd, None, STAMP, "c", organized=org, threads=threads)
                xyz = f["data"].view(np.float32)
                assert f["is_dense"] is bool(np.isfinite(xyz).all()), (name, org, threads)
    f = depth_to_pointcloud2_fields(cases["one overflowing pixel"].astype(np.float32), Kd, None,
                                         STAMP, "c")
    assert f["is_dense"] is False and f["width"] == 6 * 41
    f = depth_to_pointcloud2_fields(cases["absurd depth at the principal point"].astype(np.float32), Kd,
                                         None, STAMP, "c", organized=True)
    assert f["is_dense"] is True
