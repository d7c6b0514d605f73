"""Image and CompressedImage fields and decoding (vggt_ros.messages.images).

Messages are checked against the real ROS 2 message definitions: built as rosbags messages and
serialised to CDR, and as rclpy messages (ROS_PYTHON_CHECK_FIELDS=1, set in conftest.py); all
comparisons are by value, never by CDR bytes.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from message_samples import RNG, STAMP, make_typestore, sample_depth

from vggt_ros.messages.builders import to_rclpy, to_rosbags
from vggt_ros.messages.images import (
    UnsupportedEncoding,
    compressed_to_rgb,
    depth_image_fields,
    depth_msg_to_array,
    image_msg_to_rgb,
    image_to_depth,
    image_to_rgb,
    rgb_image_fields,
)


@pytest.fixture(scope="module")
def typestore():
    return make_typestore()


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
    out = image_to_rgb(encoding, 7, 9, step, data)
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
    rcl = to_rclpy(sensor_msgs.msg.Image, fields)
    rb = to_rosbags(typestore, "sensor_msgs/msg/Image", fields)
    rb2 = typestore.deserialize_cdr(
        typestore.serialize_cdr(rb, "sensor_msgs/msg/Image"), "sensor_msgs/msg/Image"
    )
    for msg in (rcl, rb, rb2):
        np.testing.assert_array_equal(image_msg_to_rgb(msg), rgb)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "rgb8; jpeg compressed bgr8"])
def test_compressed_decode(fmt, typestore):
    yy, xx = np.mgrid[0:48, 0:64]
    rgb = np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=-1).astype(np.uint8)  # smooth: JPEG-friendly
    ok, enc = cv2.imencode(
        ".png" if fmt == "png" else ".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95]
    )
    assert ok
    msg = to_rosbags(
        typestore, "sensor_msgs/msg/CompressedImage", {"format": fmt, "data": enc.reshape(-1)}
    )
    out = image_msg_to_rgb(msg)
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
    out = compressed_to_rgb(fmt, enc.tobytes())
    assert out[..., 0].mean() > 200 and out[..., 2].mean() < 30


@pytest.mark.parametrize("encoding", ["bayer_rggb8", "yuv422", "16UC1", "mono16", "32FC1", "8UC3"])
def test_unsupported_encodings(encoding):
    with pytest.raises(UnsupportedEncoding, match=encoding):
        image_to_rgb(encoding, 2, 2, 8, bytes(16))
    assert issubclass(UnsupportedEncoding, ValueError)


def test_bad_images():
    with pytest.raises(ValueError, match="zero-size"):
        image_to_rgb("rgb8", 0, 4, 12, b"")
    with pytest.raises(ValueError, match="data bytes"):
        image_to_rgb("rgb8", 4, 4, 12, bytes(20))
    with pytest.raises(ValueError, match="step"):
        image_to_rgb("rgb8", 2, 4, 8, bytes(100))
    with pytest.raises(UnsupportedEncoding, match="tiff"):
        compressed_to_rgb("tiff", b"abc")
    with pytest.raises(ValueError, match="could not decode"):
        compressed_to_rgb("jpeg", b"not a jpeg at all")
    with pytest.raises(ValueError, match="empty"):
        compressed_to_rgb("png", b"")


def test_rgb_encode_roundtrip():
    rgb = RNG.integers(0, 256, size=(5, 8, 3), dtype=np.uint8)
    f = rgb_image_fields(rgb, STAMP, "cam")
    assert (f["encoding"], f["step"], f["height"], f["width"]) == ("rgb8", 24, 5, 8)
    np.testing.assert_array_equal(
        image_to_rgb(f["encoding"], f["height"], f["width"], f["step"], f["data"]), rgb
    )
    with pytest.raises(ValueError, match="uint8"):
        rgb_image_fields(rgb.astype(np.float32), STAMP, "cam")


def test_depth_nan_survives(typestore):
    import sensor_msgs.msg
    from rclpy.serialization import serialize_message

    depth = sample_depth()
    f = depth_image_fields(depth, STAMP, "cam")
    assert (f["encoding"], f["is_bigendian"], f["step"]) == ("32FC1", 0, 4 * depth.shape[1])
    rb = typestore.deserialize_cdr(
        typestore.serialize_cdr(
            to_rosbags(typestore, "sensor_msgs/msg/Image", f), "sensor_msgs/msg/Image"
        ),
        "sensor_msgs/msg/Image",
    )
    rcl_raw = serialize_message(to_rclpy(sensor_msgs.msg.Image, f))
    rcl = typestore.deserialize_cdr(rcl_raw, "sensor_msgs/msg/Image")
    for msg in (rb, rcl):
        back = depth_msg_to_array(msg)
        assert back.dtype == np.float32
        np.testing.assert_array_equal(np.isnan(back), np.isnan(depth))
        np.testing.assert_array_equal(back, depth)  # NaN-aware equality


def test_depth_decode_other_layouts():
    d = np.array([[0, 1000], [2500, 65535]], dtype=np.uint16)
    out = image_to_depth("16UC1", 2, 2, 4, d.tobytes())
    assert np.isnan(out[0, 0])
    np.testing.assert_allclose(out[1], [2.5, 65.535], rtol=1e-6)
    be = np.array([[1.5, np.nan]], dtype=">f4")
    padded = be.tobytes() + b"\x00" * 4
    out = image_to_depth("32FC1", 1, 2, 12, padded, is_bigendian=1)
    assert out[0, 0] == 1.5 and np.isnan(out[0, 1])
    with pytest.raises(UnsupportedEncoding, match="rgb8"):
        image_to_depth("rgb8", 1, 1, 3, bytes(3))
