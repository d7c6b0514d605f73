"""``sensor_msgs/Image`` and ``CompressedImage``: decode to RGB / depth arrays, encode from them.

Why here: the node's subscribers and the bag reader decode the same encodings with the same checks
(row ``step`` padding, byte order, unsupported encodings named), and the node and the bag writer
publish the same depth / confidence / RGB images.
"""

from __future__ import annotations

import array
import math
import struct
import sys
from typing import Any

import numpy as np

from vggt_ros.messages.errors import (
    MAX_IMAGE_PIXELS,
    MessageError,
    decoding,
    flag_field,
    int_field,
    short_repr,
    str_field,
)
from vggt_ros.messages.stamps import Fields, header_fields

if sys.byteorder != "little":  # pragma: no cover - every ROS 2 tier-1 platform is little-endian
    raise ImportError("vggt_ros.messages.images assumes a little-endian host")


class UnsupportedEncoding(MessageError):
    """An image encoding (or compressed format) this package cannot turn into RGB/depth (a
    :class:`MessageError`, hence a ``ValueError``)."""

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


def _rows(
    data: Any,
    height: Any,
    width: Any,
    step: Any,
    bytes_per_pixel: int,
    what: str,
    max_pixels: int | None = MAX_IMAGE_PIXELS,
) -> np.ndarray:
    """``[height, width * bytes_per_pixel]`` uint8 view of a row-padded image payload.

    Raises :class:`MessageError` for non-integer or non-positive sizes, more than ``max_pixels``
    pixels (None: no limit), a step shorter than a row, or data shorter than the rows."""
    height, width = int_field(height, f"{what}: height"), int_field(width, f"{what}: width")
    step = int_field(step, f"{what}: step")
    if height <= 0 or width <= 0:
        raise MessageError(f"{what}: zero-size image ({height}x{width})")
    if max_pixels is not None and height * width > max_pixels:
        raise MessageError(f"{what}: {height}x{width} is over the limit of {max_pixels} pixels")
    row_bytes = width * bytes_per_pixel
    if step < row_bytes:
        raise MessageError(f"{what}: step {step} < width {width} * {bytes_per_pixel} bytes per pixel")
    with decoding(f"{what}: data"):
        buf = as_uint8_buffer(data)
    need = step * (height - 1) + row_bytes
    if buf.size < need:
        raise MessageError(
            f"{what}: {buf.size} data bytes, expected at least {need} ({height} rows x step {step})"
        )
    # Strided view: row r starts at r * step; padding bytes at the end of each row are skipped. One row
    # never steps (and its step may be any size the data allows: it need not fit a C long).
    stride = step if height > 1 else row_bytes
    return np.lib.stride_tricks.as_strided(buf, shape=(height, row_bytes), strides=(stride, 1),
                                           writeable=False)


def image_to_rgb(
    encoding: str, height: int, width: int, step: int, data: Any, is_bigendian: int = 0
) -> np.ndarray:
    """``sensor_msgs/Image`` fields -> contiguous HxWx3 uint8 RGB (a copy, safe to keep).

    Supports rgb8, bgr8, rgba8, bgra8 (alpha dropped), mono8/8UC1 (grey replicated); ``step``
    padding is honoured. Depth encodings (16UC1, mono16, 32FC1) are refused with
    :class:`UnsupportedEncoding` (use :func:`image_to_depth`), as is anything else (Bayer, YUV, ...).
    ``is_bigendian`` is irrelevant for 8-bit data. Malformed fields (sizes, step, short data, more
    than :data:`~vggt_ros.messages.errors.MAX_IMAGE_PIXELS`) raise :class:`MessageError`.
    """
    enc = str_field(encoding, "image: encoding").strip().lower()
    if enc not in _COLOR_ENCODINGS:
        if enc in _DEPTH_ENCODINGS:
            raise UnsupportedEncoding(encoding, "this is a depth/16-bit encoding, not a colour image "
                                      "(use image_to_depth)")
        raise UnsupportedEncoding(encoding, f"supported colour encodings: {', '.join(RGB_ENCODINGS)}")
    import cv2

    flag_field(is_bigendian, "image: is_bigendian")
    channels, to_rgb = _COLOR_ENCODINGS[enc]
    rows = _rows(data, height, width, step, channels, f"image ({encoding})")
    px = rows.reshape(rows.shape[0], -1, channels)  # a view honouring the row step
    if to_rgb is None:
        return np.array(px, order="C")  # copy: never hand out a view of the message buffer
    with decoding(f"image ({encoding}): colour conversion", (cv2.error,)):
        return cv2.cvtColor(px, getattr(cv2, to_rgb))  # SIMD channel reorder into a new array


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, extended, progressive, lossless, arithmetic; not DHT/JPG/DAC)
_JPEG_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))


def _png_size(b: memoryview, what: str) -> tuple[int, int]:
    """(height, width) from a PNG's IHDR chunk (which the format requires to come first)."""
    if len(b) < 24 or bytes(b[12:16]) != b"IHDR":
        raise MessageError(f"{what}: PNG without an IHDR chunk ({len(b)} bytes)")
    width, height = struct.unpack(">II", b[16:24])
    return height, width


def _jpeg_size(b: memoryview, what: str) -> tuple[int, int]:
    """(height, width) from the first JPEG frame header (SOFn), walking the marker segments."""
    i, n = 2, len(b)
    while i < n:
        if b[i] != 0xFF:
            raise MessageError(f"{what}: JPEG marker expected at byte {i}, got 0x{b[i]:02x}")
        while i < n and b[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            break
        marker = b[i]
        i += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no length
            continue
        if marker in (0xD9, 0xDA):  # EOI, SOS before any frame header
            break
        if i + 2 > n:
            break
        length = (b[i] << 8) | b[i + 1]
        if length < 2:
            raise MessageError(f"{what}: JPEG segment 0x{marker:02x} with length {length}")
        if marker in _JPEG_SOF:
            if i + 7 > n:
                break
            return (b[i + 3] << 8) | b[i + 4], (b[i + 5] << 8) | b[i + 6]
        i += length
    raise MessageError(f"{what}: JPEG without a frame header (SOF) in its {n} bytes")


def compressed_size(data: Any, what: str = "compressed image") -> tuple[int, int]:
    """(height, width) a JPEG or PNG payload declares in its header, read without decoding it.

    Raises :class:`MessageError` for empty data, data that is neither PNG nor JPEG, a header that
    is cut off, a zero size, or more than :data:`~vggt_ros.messages.errors.MAX_IMAGE_PIXELS`."""
    with decoding(f"{what}: data"):
        buf = np.ascontiguousarray(as_uint8_buffer(data))
    if buf.size == 0:
        raise MessageError(f"{what}: empty data")
    b = memoryview(buf).cast("B")
    if bytes(b[:8]) == _PNG_SIGNATURE:
        height, width = _png_size(b, what)
    elif bytes(b[:3]) == b"\xff\xd8\xff":
        height, width = _jpeg_size(b, what)
    else:
        raise MessageError(f"{what}: could not decode {buf.size} bytes: neither PNG nor JPEG data "
                           f"(starts with {short_repr(bytes(b[:8]))})")
    if height <= 0 or width <= 0:
        raise MessageError(f"{what}: header declares a zero-size image ({height}x{width})")
    if height * width > MAX_IMAGE_PIXELS:
        raise MessageError(f"{what}: header declares {height}x{width}, over the limit of "
                           f"{MAX_IMAGE_PIXELS} pixels")
    return height, width


def compressed_to_rgb(format: str, data: Any) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (JPEG or PNG) -> HxWx3 uint8 RGB via OpenCV.

    The size in the PNG/JPEG header is checked before decoding (:func:`compressed_size`), so a
    "decompression bomb" is refused with :class:`MessageError` without allocating its pixels; so
    are empty data, other formats and anything OpenCV cannot decode.
    """
    import cv2

    fmt = str_field(format, "compressed image: format").lower()
    if "compresseddepth" in fmt:
        raise UnsupportedEncoding(format, "compressedDepth images are depth, not colour")
    if not any(k in fmt for k in ("jpeg", "jpg", "png")):
        raise UnsupportedEncoding(format, "CompressedImage format must name jpeg or png")
    what = f"compressed image ({format})"
    compressed_size(data, what)
    buf = as_uint8_buffer(data)  # already checked by compressed_size
    rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10 decodes straight to RGB
    with decoding(what, (cv2.error,)):
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR if rgb_flag is None else rgb_flag)
        if img is None or img.size == 0 or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise MessageError(f"{what}: OpenCV could not decode {buf.size} bytes")
        return img if rgb_flag is not None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def image_msg_to_rgb(msg: Any) -> np.ndarray:
    """An Image or CompressedImage message (any flavour: rclpy, rosbags, mcap_ros2) -> HxWx3 RGB;
    :class:`MessageError` for anything malformed, a missing field included."""
    with decoding("image message"):
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
    Other encodings raise :class:`UnsupportedEncoding`, malformed fields :class:`MessageError`.
    """
    enc = str_field(encoding, "depth image: encoding").strip().lower()
    big = flag_field(is_bigendian, "depth image: is_bigendian")
    if enc == "32fc1":
        dtype = np.dtype(">f4" if big else "<f4")
    elif enc in ("16uc1", "mono16"):
        dtype = np.dtype(">u2" if big else "<u2")
    else:
        raise UnsupportedEncoding(encoding, "supported depth encodings: 32FC1 (metres), 16UC1/mono16")
    rows = _rows(data, height, width, step, dtype.itemsize, f"depth image ({encoding})")
    values = np.ascontiguousarray(rows).view(dtype).reshape(rows.shape[0], -1)
    if enc == "32fc1":
        return values.astype(np.float32)
    depth = values.astype(np.float32) * np.float32(uint16_scale)
    depth[values == 0] = np.nan
    return depth


def depth_msg_to_array(msg: Any, uint16_scale: float = 0.001) -> np.ndarray:
    """A depth Image message -> HxW float32 metres (see :func:`image_to_depth`); :class:`MessageError`
    for anything malformed, a missing field included."""
    with decoding("depth image message"):
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
