"""Message conversions (vggt_ros.ros.conversions) against the real ROS 2 message definitions.

Every conversion is built as a rosbags message, serialised to CDR and deserialised, and as an rclpy
message (ROS_PYTHON_CHECK_FIELDS=1, set in conftest.py) serialised by rclpy's own C type support and
read back by rosbags; an MCAP written by rosbags is decoded by mcap_ros2 (independent decoder). All
comparisons are by value, never by CDR bytes.
"""

from __future__ import annotations

import importlib
import os
import struct

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vggt_ros.core.types import TrackOutput
from vggt_ros.ros import conversions as conv

rosbags_typesys = pytest.importorskip("rosbags.typesys")


@pytest.fixture(scope="module")
def typestore():
    ts = rosbags_typesys.get_typestore(rosbags_typesys.Stores.ROS2_JAZZY)
    conv.register_custom_types(ts)
    return ts


RNG = np.random.default_rng(7)
K = np.array([[525.0, 0.0, 319.5], [0.0, 523.0, 239.5], [0.0, 0.0, 1.0]])
STAMP = 1_700_000_123_456_789_012


def random_pose(rng: np.random.Generator) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=rng.integers(1 << 30)).as_matrix()
    T[:3, 3] = rng.normal(size=3) * 3
    return T


def sample_tracks() -> TrackOutput:
    s, n = 4, 5
    return TrackOutput(
        stamps_ns=[STAMP + i * 33_000_000 for i in range(s)],
        query_frame_index=1,
        track_ids=np.arange(100, 100 + n, dtype=np.int64),
        positions=RNG.uniform(0, 640, size=(s, n, 2)).astype(np.float32),
        visibility=RNG.uniform(size=(s, n)).astype(np.float32),
        confidence=RNG.uniform(size=(s, n)).astype(np.float32),
        frame_id="camera_optical_frame",
    )


def sample_depth() -> np.ndarray:
    d = RNG.uniform(0.5, 5.0, size=(6, 7)).astype(np.float32)
    d[0, 0] = np.nan
    d[3, 4] = np.nan
    return d


def cases() -> list[tuple[str, str, dict]]:
    """(rosbags type, rclpy module.Class or '' if no rclpy wheel, fields)."""
    pts = RNG.normal(size=(9, 3)).astype(np.float32)
    cols = RNG.integers(0, 256, size=(9, 3), dtype=np.uint8)
    poses = [random_pose(RNG) for _ in range(3)]
    return [
        (
            "sensor_msgs/msg/Image",
            "sensor_msgs.msg.Image",
            conv.rgb_image_fields(RNG.integers(0, 256, (5, 4, 3), dtype=np.uint8), STAMP, "cam"),
        ),
        (
            "sensor_msgs/msg/Image",
            "sensor_msgs.msg.Image",
            conv.depth_image_fields(sample_depth(), STAMP, "cam"),
        ),
        (
            "sensor_msgs/msg/Image",
            "sensor_msgs.msg.Image",
            conv.confidence_image_fields(RNG.uniform(1, 9, (6, 7)).astype(np.float32), STAMP, "cam"),
        ),
        (
            "sensor_msgs/msg/CameraInfo",
            "sensor_msgs.msg.CameraInfo",
            conv.camera_info_fields(K, 480, 640, STAMP, "cam"),
        ),
        (
            "sensor_msgs/msg/PointCloud2",
            "sensor_msgs.msg.PointCloud2",
            conv.pointcloud2_fields(pts, cols, STAMP, "cam"),
        ),
        (
            "sensor_msgs/msg/PointCloud2",
            "sensor_msgs.msg.PointCloud2",
            conv.pointcloud2_fields(pts, None, STAMP, "map"),
        ),
        (
            "geometry_msgs/msg/TransformStamped",
            "geometry_msgs.msg.TransformStamped",
            conv.transform_stamped_fields(poses[0], STAMP, "map", "cam"),
        ),
        (
            "geometry_msgs/msg/PoseStamped",
            "geometry_msgs.msg.PoseStamped",
            conv.pose_stamped_fields(poses[1], STAMP, "map"),
        ),
        (
            "nav_msgs/msg/Odometry",
            "nav_msgs.msg.Odometry",
            conv.odometry_fields(poses[2], STAMP, "map", "cam", pose_covariance=np.diag(np.arange(1.0, 7.0))),
        ),
        (
            "nav_msgs/msg/Path",
            "nav_msgs.msg.Path",
            conv.path_fields(poses, [STAMP + i for i in range(3)], "map"),
        ),
        (
            "tf2_msgs/msg/TFMessage",
            "",  # no tf2_msgs wheel: rosbags only
            {
                "transforms": [
                    conv.transform_stamped_fields(T, STAMP, "map", f"c{i}") for i, T in enumerate(poses)
                ]
            },
        ),
        (
            "diagnostic_msgs/msg/DiagnosticArray",
            "diagnostic_msgs.msg.DiagnosticArray",
            conv.diagnostic_array_fields(
                [
                    conv.diagnostic_status_fields(
                        "vggt: window",
                        {"latency_s": 0.123456789, "ok": True, "n": 3},
                        level="WARN",
                        message="slow",
                        hardware_id="gpu0",
                    ),
                    conv.diagnostic_status_fields("vggt: map", {}, level=0),
                ],
                STAMP,
            ),
        ),
        (conv.KEYPOINT_TRACKS_TYPE, "", conv.keypoint_tracks_fields(sample_tracks())),
    ]


def assert_fields_match(expected, actual, path="msg"):
    """Every field in ``expected`` equals the one in ``actual`` (actual may hold more defaults)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected a message, got {type(actual)}"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} missing"
            assert_fields_match(value, actual[key], f"{path}.{key}")
        return
    if isinstance(expected, (list, tuple)) and (not expected or isinstance(expected[0], dict)):
        actual = list(actual)
        assert len(actual) == len(expected), f"{path}: length {len(actual)} != {len(expected)}"
        for i, (e, a) in enumerate(zip(expected, actual)):
            assert_fields_match(e, a, f"{path}[{i}]")
        return
    if isinstance(expected, np.ndarray):
        a = np.asarray(actual).reshape(-1)
        e = expected.reshape(-1)
        assert a.size == e.size, f"{path}: size {a.size} != {e.size}"
        if e.dtype.kind in "iub":
            np.testing.assert_array_equal(a.astype(np.int64), e.astype(np.int64), err_msg=path)
        else:
            np.testing.assert_array_equal(a.astype(np.float64), e.astype(np.float64), err_msg=path)
        return
    if isinstance(expected, float):
        assert float(actual) == expected, f"{path}: {actual} != {expected}"
        return
    assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def rclpy_class(path: str):
    mod, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(mod), name)


def test_check_fields_enabled():
    assert os.environ.get("ROS_PYTHON_CHECK_FIELDS") == "1"


@pytest.mark.parametrize("case", range(len(cases())))
def test_rosbags_cdr_roundtrip(typestore, case):
    msgtype, _, fields = cases()[case]
    msg = conv.to_rosbags(typestore, msgtype, fields)
    back = typestore.deserialize_cdr(typestore.serialize_cdr(msg, msgtype), msgtype)
    assert_fields_match(fields, conv.msg_to_fields(back))


@pytest.mark.parametrize("case", [i for i, c in enumerate(cases()) if c[1]])
def test_rclpy_build_and_serialize(typestore, case):
    """rclpy message with strict field checks, serialised by rclpy's C type support, read by rosbags."""
    from rclpy.serialization import deserialize_message, serialize_message

    msgtype, cls_path, fields = cases()[case]
    cls = rclpy_class(cls_path)
    msg = conv.to_rclpy(cls, fields)
    assert_fields_match(fields, conv.msg_to_fields(msg))
    raw = serialize_message(msg)
    assert_fields_match(fields, conv.msg_to_fields(typestore.deserialize_cdr(raw, msgtype)))
    assert_fields_match(fields, conv.msg_to_fields(deserialize_message(raw, cls)))


def test_mcap_decoded_independently(typestore, tmp_path):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    from rosbags.rosbag2 import StoragePlugin, Writer

    all_cases = cases()
    with Writer(tmp_path / "bag", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for i, (msgtype, _, fields) in enumerate(all_cases):
            con = writer.add_connection(f"/topic{i}", msgtype, typestore=typestore)
            writer.write(
                con, STAMP + i, typestore.serialize_cdr(conv.to_rosbags(typestore, msgtype, fields), msgtype)
            )
    (mcap_path,) = (tmp_path / "bag").glob("*.mcap")
    seen = set()
    with open(mcap_path, "rb") as fh:
        reader = make_reader(fh, decoder_factories=[DecoderFactory()])
        for schema, channel, _message, decoded in reader.iter_decoded_messages():
            i = int(channel.topic.removeprefix("/topic"))
            assert schema.name == all_cases[i][0]
            assert_fields_match(all_cases[i][2], conv.msg_to_fields(decoded), f"mcap {channel.topic}")
            seen.add(i)
            if schema.name == conv.KEYPOINT_TRACKS_TYPE:
                tracks = conv.keypoint_tracks_msg_to_output(decoded)
                ref = sample_tracks()
                np.testing.assert_array_equal(
                    tracks.positions,
                    conv.keypoint_tracks_msg_to_output(
                        conv.to_rosbags(typestore, schema.name, all_cases[i][2])
                    ).positions,
                )
                assert tracks.positions.shape == ref.positions.shape
    assert seen == set(range(len(all_cases)))


# ---------------------------------------------------------------------------------------------- images


def _raw_image(rgb: np.ndarray, encoding: str, pad: int) -> tuple[int, bytes]:
    h, w, _ = rgb.shape
    if encoding == "rgb8":
        px = rgb
    elif encoding == "bgr8":
        px = rgb[:, :, ::-1]
    elif encoding == "rgba8":
        px = np.concatenate([rgb, np.full((h, w, 1), 7, np.uint8)], axis=2)
    elif encoding == "bgra8":
        px = np.concatenate([rgb[:, :, ::-1], np.full((h, w, 1), 7, np.uint8)], axis=2)
    else:  # mono8
        px = rgb[:, :, :1]
    rows = px.reshape(h, -1)
    step = rows.shape[1] + pad
    padded = np.full((h, step), 0xAB, np.uint8)
    padded[:, : rows.shape[1]] = rows
    return step, padded.tobytes()


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
@pytest.mark.parametrize("pad", [0, 5])
def test_image_decode(encoding, pad):
    rgb = RNG.integers(0, 256, size=(7, 9, 3), dtype=np.uint8)
    if encoding == "mono8":
        rgb[:] = rgb[:, :, :1]
    step, data = _raw_image(rgb, encoding, pad)
    out = conv.image_to_rgb(encoding, 7, 9, step, data)
    assert out.dtype == np.uint8 and out.shape == (7, 9, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


def test_image_decode_message_flavours(typestore):
    """The same decode through an rclpy Image, a rosbags Image and after CDR."""
    import sensor_msgs.msg

    rgb = RNG.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
    step, data = _raw_image(rgb, "bgr8", 3)
    fields = {
        "height": 4,
        "width": 6,
        "encoding": "bgr8",
        "step": step,
        "data": np.frombuffer(data, np.uint8),
    }
    rcl = conv.to_rclpy(sensor_msgs.msg.Image, fields)
    rb = conv.to_rosbags(typestore, "sensor_msgs/msg/Image", fields)
    rb2 = typestore.deserialize_cdr(
        typestore.serialize_cdr(rb, "sensor_msgs/msg/Image"), "sensor_msgs/msg/Image"
    )
    for msg in (rcl, rb, rb2):
        np.testing.assert_array_equal(conv.image_msg_to_rgb(msg), rgb)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "rgb8; jpeg compressed bgr8"])
def test_compressed_decode(fmt, typestore):
    yy, xx = np.mgrid[0:48, 0:64]
    rgb = np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=-1).astype(np.uint8)  # smooth: JPEG-friendly
    ok, enc = cv2.imencode(
        ".png" if fmt == "png" else ".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95]
    )
    assert ok
    msg = conv.to_rosbags(
        typestore, "sensor_msgs/msg/CompressedImage", {"format": fmt, "data": enc.reshape(-1)}
    )
    out = conv.image_msg_to_rgb(msg)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    if fmt == "png":
        np.testing.assert_array_equal(out, rgb)
    else:
        err = np.abs(out.astype(int) - rgb.astype(int))
        assert err.mean() < 3.0
        # channel order: a red-only image must stay red (catches BGR/RGB mix-ups that a grey test hides)
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 250
    _, enc = cv2.imencode(".png" if fmt == "png" else ".jpg", red[:, :, ::-1])
    out = conv.compressed_to_rgb(fmt, enc.tobytes())
    assert out[..., 0].mean() > 200 and out[..., 2].mean() < 30


@pytest.mark.parametrize("encoding", ["bayer_rggb8", "yuv422", "16UC1", "mono16", "32FC1", "8UC3"])
def test_unsupported_encodings(encoding):
    with pytest.raises(conv.UnsupportedEncoding, match=encoding):
        conv.image_to_rgb(encoding, 2, 2, 8, bytes(16))
    assert issubclass(conv.UnsupportedEncoding, ValueError)


def test_bad_images():
    with pytest.raises(ValueError, match="zero-size"):
        conv.image_to_rgb("rgb8", 0, 4, 12, b"")
    with pytest.raises(ValueError, match="data bytes"):
        conv.image_to_rgb("rgb8", 4, 4, 12, bytes(20))
    with pytest.raises(ValueError, match="step"):
        conv.image_to_rgb("rgb8", 2, 4, 8, bytes(100))
    with pytest.raises(conv.UnsupportedEncoding, match="tiff"):
        conv.compressed_to_rgb("tiff", b"abc")
    with pytest.raises(ValueError, match="could not decode"):
        conv.compressed_to_rgb("jpeg", b"not a jpeg at all")
    with pytest.raises(ValueError, match="empty"):
        conv.compressed_to_rgb("png", b"")


def test_rgb_encode_roundtrip():
    rgb = RNG.integers(0, 256, size=(5, 8, 3), dtype=np.uint8)
    f = conv.rgb_image_fields(rgb, STAMP, "cam")
    assert (f["encoding"], f["step"], f["height"], f["width"]) == ("rgb8", 24, 5, 8)
    np.testing.assert_array_equal(
        conv.image_to_rgb(f["encoding"], f["height"], f["width"], f["step"], f["data"]), rgb
    )
    with pytest.raises(ValueError, match="uint8"):
        conv.rgb_image_fields(rgb.astype(np.float32), STAMP, "cam")


def test_depth_nan_survives(typestore):
    import sensor_msgs.msg
    from rclpy.serialization import serialize_message

    depth = sample_depth()
    f = conv.depth_image_fields(depth, STAMP, "cam")
    assert (f["encoding"], f["is_bigendian"], f["step"]) == ("32FC1", 0, 4 * depth.shape[1])
    rb = typestore.deserialize_cdr(
        typestore.serialize_cdr(
            conv.to_rosbags(typestore, "sensor_msgs/msg/Image", f), "sensor_msgs/msg/Image"
        ),
        "sensor_msgs/msg/Image",
    )
    rcl_raw = serialize_message(conv.to_rclpy(sensor_msgs.msg.Image, f))
    rcl = typestore.deserialize_cdr(rcl_raw, "sensor_msgs/msg/Image")
    for msg in (rb, rcl):
        back = conv.depth_msg_to_array(msg)
        assert back.dtype == np.float32
        np.testing.assert_array_equal(np.isnan(back), np.isnan(depth))
        np.testing.assert_array_equal(back, depth)  # NaN-aware equality


def test_depth_decode_other_layouts():
    d = np.array([[0, 1000], [2500, 65535]], dtype=np.uint16)
    out = conv.image_to_depth("16UC1", 2, 2, 4, d.tobytes())
    assert np.isnan(out[0, 0])
    np.testing.assert_allclose(out[1], [2.5, 65.535], rtol=1e-6)
    be = np.array([[1.5, np.nan]], dtype=">f4")
    padded = be.tobytes() + b"\x00" * 4
    out = conv.image_to_depth("32FC1", 1, 2, 12, padded, is_bigendian=1)
    assert out[0, 0] == 1.5 and np.isnan(out[0, 1])
    with pytest.raises(conv.UnsupportedEncoding, match="rgb8"):
        conv.image_to_depth("rgb8", 1, 1, 3, bytes(3))


# ------------------------------------------------------------------------------------------ camera info


def test_camera_info_fields_and_back():
    f = conv.camera_info_fields(K, 480, 640, STAMP, "cam")
    assert f["distortion_model"] == "plumb_bob"
    np.testing.assert_array_equal(f["d"], np.zeros(5))
    np.testing.assert_array_equal(f["r"], np.eye(3).ravel())
    np.testing.assert_array_equal(np.asarray(f["p"]).reshape(3, 4), np.hstack([K, np.zeros((3, 1))]))
    K2, hw = conv.camera_info_to_intrinsics(f["k"], f["height"], f["width"])
    np.testing.assert_array_equal(K2, K)
    assert hw == (480, 640)
    with pytest.raises(conv.UncalibratedCamera, match="no valid intrinsics"):
        conv.camera_info_to_intrinsics(np.zeros(9), 480, 640)
    with pytest.raises(ValueError, match="3x3"):
        conv.camera_info_fields(np.eye(4), 480, 640, STAMP, "cam")


# ---------------------------------------------------------------------------------------------- clouds


def test_pointcloud2_layout_matches_ros_convention():
    """Same layout and bytes as sensor_msgs_py.point_cloud2 with fields x, y, z, rgb (FLOAT32)."""
    pts = np.array([[1.0, -2.0, 3.5], [0.25, 0.0, -1.0]], np.float32)
    cols = np.array([[255, 0, 0], [1, 2, 3]], np.uint8)
    f = conv.pointcloud2_fields(pts, cols, STAMP, "map")
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
    assert conv.pack_rgb(cols[:1]).view(np.uint32)[0] == 0xFF0000


def test_pointcloud2_roundtrip_and_density(typestore):
    pts = RNG.normal(size=(50, 3)).astype(np.float32)
    cols = RNG.integers(0, 256, size=(50, 3), dtype=np.uint8)
    f = conv.pointcloud2_fields(pts, cols, STAMP, "map")
    msg = typestore.deserialize_cdr(
        typestore.serialize_cdr(
            conv.to_rosbags(typestore, "sensor_msgs/msg/PointCloud2", f), "sensor_msgs/msg/PointCloud2"
        ),
        "sensor_msgs/msg/PointCloud2",
    )
    xyz, rgb = conv.pointcloud2_msg_to_xyz_rgb(msg)
    np.testing.assert_array_equal(xyz, pts)
    np.testing.assert_array_equal(rgb, cols)
    xyz, rgb = conv.pointcloud2_msg_to_xyz_rgb(
        conv.to_rosbags(
            typestore, "sensor_msgs/msg/PointCloud2", conv.pointcloud2_fields(pts, None, STAMP, "m")
        )
    )
    np.testing.assert_array_equal(xyz, pts)
    assert rgb is None
    pts[3, 1] = np.nan
    assert conv.pointcloud2_fields(pts, cols, STAMP, "map")["is_dense"] is False
    empty = conv.pointcloud2_fields(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), STAMP, "m")
    assert empty["width"] == 0 and empty["data"].size == 0
    with pytest.raises(ValueError, match="uint8"):
        conv.pointcloud2_fields(pts, cols.astype(np.float32), STAMP, "m")


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
    out_xyz, out_rgb = conv.pointcloud2_to_xyz_rgb(fields, 2, 3, 32, 3 * 32 + 8, rows.tobytes())
    np.testing.assert_array_equal(out_xyz, xyz.reshape(-1, 3))
    np.testing.assert_array_equal(out_rgb, cols.reshape(-1, 3))
    with pytest.raises(ValueError, match="'z'"):
        conv.pointcloud2_to_xyz_rgb(fields[:2], 2, 3, 32, 104, rows.tobytes())


def test_depth_to_points():
    depth = np.array([[1.0, np.nan, 2.0], [0.0, 4.0, -1.0]], np.float32)
    Kd = np.array([[2.0, 0, 1.0], [0, 4.0, 0.5], [0, 0, 1]])
    rgb = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)
    pts, cols = conv.depth_to_points(depth, Kd, rgb)
    expected = [
        [(u - 1.0) / 2.0 * z, (v - 0.5) / 4.0 * z, z]
        for (v, u), z in np.ndenumerate(depth)
        if np.isfinite(z) and z > 0
    ]
    np.testing.assert_allclose(pts, np.array(expected, np.float32), rtol=1e-6)
    np.testing.assert_array_equal(cols, rgb[[0, 0, 1], [0, 2, 1]])
    one, one_cols = conv.depth_to_points(np.array([[np.nan, 3.0]], np.float32), Kd, rgb[:1, :2])
    np.testing.assert_allclose(one, [[0.0, -0.375, 3.0]])
    np.testing.assert_array_equal(one_cols, rgb[:1, 1])
    none, none_cols = conv.depth_to_points(np.full((2, 2), np.nan, np.float32), Kd, rgb[:2, :2])
    assert none.shape == (0, 3) and none_cols.shape == (0, 3)
    # larger image: same result as a direct per-pixel formula, colours included
    rng = np.random.default_rng(2)
    big = rng.uniform(0.2, 9, (37, 53)).astype(np.float32)
    big[rng.uniform(size=big.shape) < 0.3] = np.nan
    big_rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    pts, cols = conv.depth_to_points(big, K, big_rgb)
    vv, uu = np.nonzero(np.isfinite(big))
    zz = big[vv, uu]
    ref = np.stack([(uu - K[0, 2]) / K[0, 0] * zz, (vv - K[1, 2]) / K[1, 1] * zz, zz], axis=1)
    np.testing.assert_allclose(pts, ref, rtol=1e-6)
    np.testing.assert_array_equal(cols, big_rgb[vv, uu])
    # and the cloud bytes from them unpack to the same values (non-contiguous inputs accepted)
    xyz, rgb_back = conv.pointcloud2_to_xyz_rgb(
        conv.XYZRGB_FIELDS,
        1,
        len(pts),
        16,
        16 * len(pts),
        conv.pointcloud2_data(np.asfortranarray(pts), cols[:, :]),
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
    rec = conv.depth_to_cloud_records(depth, Kd, rgb)
    assert rec.shape == (len(ids), 4) and rec.dtype == np.float32
    np.testing.assert_allclose(rec[:, :3], np.array(xyz), rtol=2e-6, atol=1e-30)
    np.testing.assert_array_equal(rec[:, 3].view(np.uint32), np.array(packed, np.uint32))
    # without colours: 12-byte records, same coordinates
    np.testing.assert_array_equal(conv.depth_to_cloud_records(depth, Kd), rec[:, :3])
    # organised: every pixel, NaN x y z exactly at the invalid ones, valid ones equal the unorganised
    org = conv.depth_to_cloud_records(depth, Kd, rgb, organized=True)
    assert org.shape == (h, w, 4)
    flat = org.reshape(-1, 4)
    invalid = np.ones(h * w, bool)
    invalid[ids] = False
    assert np.isnan(flat[invalid, :3]).all() and np.isfinite(flat[~invalid, :3]).all()
    np.testing.assert_array_equal(flat[ids].view(np.uint32), rec.view(np.uint32))
    all_packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    np.testing.assert_array_equal(flat[:, 3].view(np.uint32), all_packed.reshape(-1))
    # the split path returns the same points and colours
    pts, cols = conv.depth_to_points(depth, Kd, rgb)
    np.testing.assert_array_equal(pts, rec[:, :3])
    np.testing.assert_array_equal(cols, rgb.reshape(-1, 3)[ids])


def test_depth_to_pointcloud2_fields_unorganised_and_organised(typestore):
    h, w = 12, 17
    depth = _hostile_depth(h, w, seed=4)
    rgb = np.random.default_rng(5).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Kd = np.array([[20.0, 0, 8.0], [0, 21.0, 5.5], [0, 0, 1]])
    pts, cols = conv.depth_to_points(depth, Kd, rgb)
    f = conv.depth_to_pointcloud2_fields(depth, Kd, rgb, STAMP, "cam")
    ref = conv.pointcloud2_fields(pts, cols, STAMP, "cam")
    for key in ("height", "width", "point_step", "row_step", "is_dense", "fields", "header", "is_bigendian"):
        assert f[key] == ref[key], key
    np.testing.assert_array_equal(f["data"], ref["data"])
    assert f["height"] == 1 and f["width"] == len(pts) and f["is_dense"] is True
    o = conv.depth_to_pointcloud2_fields(depth, Kd, rgb, STAMP, "cam", organized=True)
    assert (o["height"], o["width"], o["row_step"], o["is_dense"]) == (h, w, 16 * w, False)
    msg = conv.to_rosbags(typestore, "sensor_msgs/msg/PointCloud2", o)
    xyz, back = conv.pointcloud2_msg_to_xyz_rgb(typestore.deserialize_cdr(
        typestore.serialize_cdr(msg, "sensor_msgs/msg/PointCloud2"), "sensor_msgs/msg/PointCloud2"))
    valid = conv.valid_depth_mask(depth).reshape(-1)
    np.testing.assert_array_equal(xyz[valid], pts)
    assert np.isnan(xyz[~valid]).all()
    np.testing.assert_array_equal(back, rgb.reshape(-1, 3))
    # organised input to pointcloud2_fields gives the same message; all-valid organised is dense
    o2 = conv.pointcloud2_fields(xyz.reshape(h, w, 3), back.reshape(h, w, 3), STAMP, "cam")
    assert (o2["height"], o2["width"], o2["row_step"], o2["is_dense"]) == (h, w, 16 * w, False)
    np.testing.assert_array_equal(o2["data"], o["data"])
    dense = conv.depth_to_pointcloud2_fields(np.ones((3, 4), np.float32), Kd, None, STAMP, "c",
                                             organized=True)
    assert dense["is_dense"] is True and dense["point_step"] == 12 and dense["data"].nbytes == 12 * 12
    none = conv.depth_to_pointcloud2_fields(np.full((3, 4), np.nan, np.float32), Kd, rgb[:3, :4], STAMP, "c")
    assert none["width"] == 0 and none["data"].nbytes == 0
    with pytest.raises(ValueError, match="rgb must be"):
        conv.depth_to_cloud_records(depth, Kd, rgb[:, :-1])
    with pytest.raises(ValueError, match="focal"):
        conv.depth_to_cloud_records(depth, np.zeros((3, 3)))


def test_pack_rgb_and_pointcloud2_data_match_arithmetic_reference():
    rng = np.random.default_rng(9)
    cols = rng.integers(0, 256, (1001, 3), dtype=np.uint8)
    cols[:3] = [[255, 255, 255], [0, 0, 0], [255, 0, 128]]
    ref = (cols[:, 0].astype(np.uint32) << 16) | (cols[:, 1].astype(np.uint32) << 8) | cols[:, 2]
    np.testing.assert_array_equal(conv.pack_rgb(cols).view(np.uint32), ref)
    np.testing.assert_array_equal(conv.unpack_rgb(conv.pack_rgb(cols)), cols)
    pts = rng.normal(size=(1001, 3)).astype(np.float32)
    pts[5] = [np.nan, np.inf, -0.0]
    data = conv.pointcloud2_data(pts, cols)
    expected = b"".join(struct.pack("<3fI", *p, int(c)) for p, c in zip(pts.tolist(), ref, strict=True))
    assert data.tobytes() == expected
    assert conv.pointcloud2_data(pts).tobytes() == pts.astype("<f4").tobytes()


def test_cloud_scratch_buffers_never_leak_into_results():
    """The per-thread work buffers are reused across calls: earlier results must stay intact, also
    across image sizes and threads."""
    import threading

    Kd = np.array([[30.0, 0, 10.0], [0, 30.0, 8.0], [0, 0, 1]])
    a_depth, b_depth = _hostile_depth(16, 20, seed=1), _hostile_depth(9, 33, seed=2)
    a_rgb = np.random.default_rng(1).integers(0, 256, (16, 20, 3), dtype=np.uint8)
    b_rgb = np.random.default_rng(2).integers(0, 256, (9, 33, 3), dtype=np.uint8)
    first = conv.depth_to_cloud_records(a_depth, Kd, a_rgb)
    keep = first.copy()
    org = conv.depth_to_cloud_records(a_depth, Kd, a_rgb, organized=True)
    keep_org = org.copy()
    conv.depth_to_cloud_records(b_depth, Kd, b_rgb)
    conv.depth_to_cloud_records(np.flipud(a_depth), Kd, a_rgb, organized=True)
    np.testing.assert_array_equal(first.view(np.uint32), keep.view(np.uint32))
    np.testing.assert_array_equal(org.view(np.uint32), keep_org.view(np.uint32))
    results: dict[int, np.ndarray] = {}

    def worker(i: int) -> None:
        d, c = (a_depth, a_rgb) if i % 2 else (b_depth, b_rgb)
        for _ in range(20):
            results[i] = conv.depth_to_cloud_records(d, Kd, c)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    single = {1: conv.depth_to_cloud_records(a_depth, Kd, a_rgb),
              0: conv.depth_to_cloud_records(b_depth, Kd, b_rgb)}
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
    single = {org: conv.depth_to_pointcloud2_fields(depth, Kd, rgb, STAMP, "c", organized=org, threads=1)
              for org in (False, True)}
    rec = single[False]["data"].view(np.float32).reshape(-1, 4)
    # atol: with skew, x = xr * z - (s / fx) * y cancels in float32 near x = 0
    np.testing.assert_allclose(rec[:, :3], np.array(xyz), rtol=2e-6, atol=1e-7)
    np.testing.assert_array_equal(rec[:, 3].view(np.uint32), np.array(packed, np.uint32))
    monkeypatch.setattr(conv, "_PARALLEL_MIN_PIXELS", 0)  # split even this small image
    for max_band in (1 << 21, 3 * w, 7):  # one band per thread, several, one row each
        monkeypatch.setattr(conv, "_MAX_BAND_PIXELS", max_band)
        for threads in (1, 2, 3, 40, None):
            used, bands = conv._bands(h, w, conv._cloud_threads(threads))
            assert [r for a, b in bands for r in range(a, b)] == list(range(h))
            assert 1 <= used <= len(bands) and all(b > a for a, b in bands)
            for org in (False, True):
                got = conv.depth_to_pointcloud2_fields(depth, Kd, rgb, STAMP, "c", organized=org,
                                                       threads=threads)
                np.testing.assert_array_equal(got["data"], single[org]["data"])
                for key in ("height", "width", "row_step", "is_dense"):
                    assert got[key] == single[org][key], (key, max_band, threads, org)
            pts, cols = conv.depth_to_points(depth, Kd, rgb, threads=threads)
            np.testing.assert_array_equal(pts, rec[:, :3])
            np.testing.assert_array_equal(cols, rgb.reshape(-1, 3)[ids])
    with pytest.raises(ValueError, match="threads"):
        conv.depth_to_cloud_records(depth, Kd, rgb, threads=0)


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

    assert conv._run_shared(slow_square, list(range(17)), 3) == [i * i for i in range(17)]
    assert sorted(seen) == list(range(17))
    assert conv._run_shared(slow_square, [4], 2) == [16]
    assert conv._run_shared(slow_square, [], 2) == []
    done: list[int] = []

    def fail_on_five(i: int) -> None:
        time.sleep(0.001)
        if i == 5:
            raise RuntimeError("band 5")
        with lock:
            done.append(i)

    with pytest.raises(RuntimeError, match="band 5"):
        conv._run_shared(fail_on_five, list(range(12)), 2)
    n_done = len(done)
    time.sleep(0.02)
    assert len(done) == n_done  # nothing still running after the caller got the error


def test_cloud_is_dense_matches_a_full_finiteness_check(monkeypatch):
    """is_dense comes from a bound on the depth when it can (no pass over the output): it must agree
    with checking every x y z, also when x or y overflow float32 for absurd depths."""
    monkeypatch.setattr(conv, "_PARALLEL_MIN_PIXELS", 0)
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
                f = conv.depth_to_pointcloud2_fields(d, Kd, None, STAMP, "c", organized=org, threads=threads)
                xyz = f["data"].view(np.float32)
                assert f["is_dense"] is bool(np.isfinite(xyz).all()), (name, org, threads)
    f = conv.depth_to_pointcloud2_fields(cases["one overflowing pixel"].astype(np.float32), Kd, None,
                                         STAMP, "c")
    assert f["is_dense"] is False and f["width"] == 6 * 41
    f = conv.depth_to_pointcloud2_fields(cases["absurd depth at the principal point"].astype(np.float32), Kd,
                                         None, STAMP, "c", organized=True)
    assert f["is_dense"] is True


# ---------------------------------------------------------------------------------------------- poses


def test_pose_roundtrip():
    rng = np.random.default_rng(3)
    for _ in range(20):
        T = random_pose(rng)
        t, q = conv.matrix_to_translation_quaternion(T)
        assert q[3] >= 0 and abs(np.linalg.norm(q) - 1) < 1e-12
        np.testing.assert_allclose(conv.translation_quaternion_to_matrix(t, q), T, atol=1e-12)
    t, q = conv.matrix_to_translation_quaternion(np.eye(4))
    np.testing.assert_array_equal(q, [0, 0, 0, 1])
    # 90 degrees about z: x axis -> y axis
    Rz = np.eye(4)
    Rz[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    np.testing.assert_allclose(
        conv.matrix_to_translation_quaternion(Rz)[1], [0, 0, np.sqrt(0.5), np.sqrt(0.5)]
    )
    with pytest.raises(ValueError, match="4x4"):
        conv.matrix_to_translation_quaternion(np.eye(3))
    with pytest.raises(ValueError, match="quaternion"):
        conv.translation_quaternion_to_matrix([0, 0, 0], [0, 0, 0, 0])


def test_pose_messages_back_to_matrix(typestore):
    T = random_pose(np.random.default_rng(5))
    tf = conv.to_rosbags(
        typestore, "geometry_msgs/msg/TransformStamped", conv.transform_stamped_fields(T, STAMP, "map", "cam")
    )
    tf = typestore.deserialize_cdr(typestore.serialize_cdr(tf, tf.__msgtype__), tf.__msgtype__)
    assert (tf.header.frame_id, tf.child_frame_id) == ("map", "cam")
    np.testing.assert_allclose(conv.transform_msg_to_matrix(tf.transform), T, atol=1e-12)
    odom = conv.to_rosbags(typestore, "nav_msgs/msg/Odometry", conv.odometry_fields(T, STAMP, "odom", "base"))
    np.testing.assert_allclose(conv.pose_msg_to_matrix(odom.pose.pose), T, atol=1e-12)
    np.testing.assert_array_equal(odom.pose.covariance, np.zeros(36))
    path = conv.path_fields([T, np.eye(4)], [5, 6], "map")
    assert path["header"]["stamp"] == {"sec": 0, "nanosec": 6}
    with pytest.raises(ValueError, match="stamps"):
        conv.path_fields([T], [1, 2], "map")
    with pytest.raises(ValueError, match="36"):
        conv.odometry_fields(T, STAMP, "odom", "base", pose_covariance=np.eye(3))


# ---------------------------------------------------------------------------------------------- stamps


@pytest.mark.parametrize("ns", [0, 1, 999_999_999, 1_000_000_000, STAMP, -1, -1_500_000_000])
def test_stamps(ns):
    sec, nanosec = conv.ns_to_stamp(ns)
    assert 0 <= nanosec < 1_000_000_000
    assert conv.stamp_to_ns(sec, nanosec) == ns
    assert conv.stamp_ns_of({"header": {"stamp": {"sec": sec, "nanosec": nanosec}}}) == ns


def test_stamp_overflow_and_lookup():
    with pytest.raises(ValueError, match="int32"):
        conv.ns_to_stamp(2**31 * 1_000_000_000)
    assert conv.ns_to_stamp(STAMP) == (1_700_000_123, 456_789_012)
    with pytest.raises(TypeError, match="stamp"):
        conv.stamp_ns_of(object())


# ---------------------------------------------------------------------------------------------- tracks


def test_keypoint_tracks_roundtrip(typestore):
    tracks = sample_tracks()
    f = conv.keypoint_tracks_fields(tracks)
    assert f["num_frames"] == 4 and f["num_tracks"] == 5
    assert conv.stamp_to_ns(**f["header"]["stamp"]) == tracks.stamps_ns[-1]
    # documented layout: x of track j in frame i at positions[(i * N + j) * 2]
    assert f["positions"][(2 * 5 + 3) * 2] == tracks.positions[2, 3, 0]
    assert f["positions"][(2 * 5 + 3) * 2 + 1] == tracks.positions[2, 3, 1]
    assert f["visibility"][2 * 5 + 3] == tracks.visibility[2, 3]
    msg = conv.to_rosbags(typestore, conv.KEYPOINT_TRACKS_TYPE, f)
    back = conv.keypoint_tracks_msg_to_output(
        typestore.deserialize_cdr(
            typestore.serialize_cdr(msg, conv.KEYPOINT_TRACKS_TYPE), conv.KEYPOINT_TRACKS_TYPE
        )
    )
    assert (
        back.stamps_ns == tracks.stamps_ns
        and back.query_frame_index == 1
        and back.frame_id == tracks.frame_id
    )
    for name in ("track_ids", "positions", "visibility", "confidence"):
        np.testing.assert_array_equal(getattr(back, name), getattr(tracks, name))
        assert getattr(back, name).dtype == getattr(tracks, name).dtype


def test_keypoint_tracks_validation():
    t = sample_tracks()
    t.visibility = t.visibility[:, :2]
    with pytest.raises(ValueError, match="visibility"):
        conv.keypoint_tracks_fields(t)
    t = sample_tracks()
    t.stamps_ns = t.stamps_ns[:2]
    with pytest.raises(ValueError, match="stamps"):
        conv.keypoint_tracks_fields(t)
    t = sample_tracks()
    t.query_frame_index = 9
    with pytest.raises(ValueError, match="query_frame_index"):
        conv.keypoint_tracks_fields(t)


# ---------------------------------------------------------------------------------------------- diagnostics


def test_diagnostics_fields():
    s = conv.diagnostic_status_fields(
        "n", {"f": 0.5, "b": False, "i": 7, "s": "x"}, level="error", message="m"
    )
    assert s["level"] == 2
    assert s["values"] == [
        {"key": "f", "value": "0.5"},
        {"key": "b", "value": "false"},
        {"key": "i", "value": "7"},
        {"key": "s", "value": "x"},
    ]
    with pytest.raises(ValueError, match="level"):
        conv.diagnostic_status_fields("n", {}, level=7)
    with pytest.raises(ValueError, match="level"):
        conv.diagnostic_status_fields("n", {}, level="fatal")


# ---------------------------------------------------------------------------------------------- builders


def test_builders_reject_unknown_fields(typestore):
    import sensor_msgs.msg

    with pytest.raises(KeyError, match="colour"):
        conv.to_rosbags(typestore, "sensor_msgs/msg/Image", {"colour": 1})
    with pytest.raises(KeyError, match="colour"):
        conv.to_rclpy(sensor_msgs.msg.Image, {"colour": 1})
    with pytest.raises(KeyError, match="register_custom_types"):
        conv.to_rosbags(
            rosbags_typesys.get_typestore(rosbags_typesys.Stores.ROS2_JAZZY), conv.KEYPOINT_TRACKS_TYPE, {}
        )
    with pytest.raises(ValueError, match="9"):
        conv.to_rclpy(sensor_msgs.msg.CameraInfo, {"k": np.zeros(4)})


def test_cross_flavour_conversion(typestore):
    """rclpy message -> fields -> rosbags message: the generic path the bag tools use."""
    import nav_msgs.msg

    fields = conv.odometry_fields(random_pose(RNG), STAMP, "odom", "base", pose_covariance=np.eye(6))
    rcl = conv.to_rclpy(nav_msgs.msg.Odometry, fields)
    rb = conv.to_rosbags(typestore, "nav_msgs/msg/Odometry", conv.msg_to_fields(rcl))
    assert_fields_match(fields, conv.msg_to_fields(rb))
