"""``sensor_msgs/PointCloud2``: layout, packing, and reading back (message layout only).

Why here: the node and the bag writer publish clouds with the same fields (x y z float32 + rgb
packed as float32, point_step 16), and readers accept any field offsets and row padding. The depth
back-projection behind :func:`depth_to_pointcloud2_fields` is :mod:`vggt_ros.core.backprojection`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vggt_ros.core.backprojection import _bgr0, _cloud_records
from vggt_ros.messages.errors import MessageError, decoding, flag_field, int_field
from vggt_ros.messages.images import _rows
from vggt_ros.messages.stamps import Fields, header_fields

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
    row padding; ``rgb``/``rgba`` may be FLOAT32 (packed) or UINT32.

    Raises :class:`MessageError` for a malformed cloud: no x/y/z field, unknown datatypes, fields
    reaching past ``point_step``, negative or non-integer sizes, a row step shorter than a row,
    data shorter than the rows, a missing field attribute."""
    with decoding("PointCloud2: fields"):
        by_name = {str(_field_attr(f, "name")): f for f in fields}
    for axis in "xyz":
        if axis not in by_name:
            raise MessageError(f"PointCloud2 has no {axis!r} field (fields: {sorted(by_name)})")
    height = int_field(height, "PointCloud2: height", lo=0)
    width = int_field(width, "PointCloud2: width", lo=0)
    point_step = int_field(point_step, "PointCloud2: point_step", lo=0)
    row_step = int_field(row_step, "PointCloud2: row_step", lo=0)
    order = ">" if flag_field(is_bigendian, "PointCloud2: is_bigendian") else "<"
    n = height * width
    if n == 0:
        return np.zeros((0, 3), np.float32), (np.zeros((0, 3), np.uint8) if "rgb" in by_name else None)

    def layout(f: Any, default_type: int | None = None) -> tuple[np.dtype, int]:
        """(dtype, offset) of a PointField, checked to lie inside one point."""
        with decoding("PointCloud2: PointField"):
            name, datatype = _field_attr(f, "name"), _field_attr(f, "datatype")
            offset = _field_attr(f, "offset")
        datatype = int_field(datatype, f"PointCloud2: PointField {name!r} datatype")
        dt = _POINTFIELD_DTYPES.get(datatype if default_type is None else default_type)
        if dt is None:
            raise MessageError(f"PointField {name!r}: unknown datatype {datatype}")
        dtype = np.dtype(order + dt)
        offset = int_field(offset, f"PointCloud2: PointField {name!r} offset", lo=0)
        if offset + dtype.itemsize > point_step:
            raise MessageError(f"PointField {name!r}: offset {offset} + {dtype.itemsize} bytes is past "
                               f"point_step {point_step}")
        return dtype, offset

    columns = [layout(by_name[a]) for a in "xyz"]
    rgb_field = by_name.get("rgb", by_name.get("rgba"))
    # rgb is read as 4 bytes, whatever its datatype (FLOAT32 packed or UINT32)
    rgb_layout = None if rgb_field is None else layout(rgb_field, POINTFIELD_UINT32)
    rows = _rows(data, height, width, row_step, point_step, "PointCloud2", max_pixels=None)
    flat = np.ascontiguousarray(rows).reshape(n, point_step)

    def column(dtype: np.dtype, off: int) -> np.ndarray:
        return np.ascontiguousarray(flat[:, off:off + dtype.itemsize]).view(dtype).reshape(n)

    with np.errstate(over="ignore"):  # float64/int values beyond float32 become inf, silently
        xyz = np.stack([column(*c) for c in columns], axis=1).astype(np.float32)
    rgb = None if rgb_layout is None else unpack_rgb(column(*rgb_layout).astype(np.uint32))
    return xyz, rgb


def pointcloud2_msg_to_xyz_rgb(msg: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """A PointCloud2 message (any flavour) -> (xyz, rgb or None); :class:`MessageError` for anything
    malformed, a missing field included."""
    with decoding("PointCloud2 message"):
        return pointcloud2_to_xyz_rgb(msg.fields, msg.height, msg.width, msg.point_step, msg.row_step,
                                      msg.data, msg.is_bigendian)
