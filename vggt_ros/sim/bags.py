"""Write a synthetic sequence as a rosbag (ROS 2 .db3 / .mcap, or a TUM-like ROS 1 .bag) plus GT files.

Why: the bag replay must be tested on real bag files in every format it claims to read, with exact
ground truth, without downloading datasets. The ROS 1 flavour imitates the TUM RGB-D bags: bz2
chunks, ``tf/tfMessage`` on /tf with leading-slash frame ids ("/world" -> "/kinect"), 30 Hz
/camera/rgb/image_color, /camera/depth/image (32FC1 metres) and /camera/rgb/camera_info. The /tf pose
is the camera *optical* frame in the sequence's world (the first camera), so it is directly usable by
the oracle predictor and comparable with the pipeline output.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from vggt_ros.eval.tum import write_tum
from vggt_ros.messages.builders import to_rosbags
from vggt_ros.messages.camera_info import camera_info_fields
from vggt_ros.messages.images import depth_image_fields, image_fields, rgb_image_fields
from vggt_ros.messages.poses import transform_stamped_fields

logger = logging.getLogger(__name__)

BAG_FORMATS = ("mcap", "db3", "ros1")
IMAGE_TOPIC = "/camera/rgb/image_color"
DEPTH_TOPIC = "/camera/depth/image"
CAMERA_INFO_TOPIC = "/camera/rgb/camera_info"
TF_TOPIC = "/tf"
ROS1_TF_TYPE = "tf/msg/tfMessage"
ROS1_TF_MSG = "geometry_msgs/TransformStamped[] transforms\n"


def _ros1_typestore() -> Any:
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    ts = get_typestore(Stores.ROS1_NOETIC)
    if ROS1_TF_TYPE not in ts.types:
        ts.register(get_types_from_msg(ROS1_TF_MSG, ROS1_TF_TYPE))
    return ts


def _camera_info_ros1(fields: dict[str, Any]) -> dict[str, Any]:
    """ROS 1 CameraInfo spells the matrices in upper case (D, K, R, P)."""
    return {(k.upper() if k in ("d", "k", "r", "p") else k): v for k, v in fields.items()}


def _image_fields(rgb: np.ndarray, stamp: int, frame_id: str, encoding: str) -> dict[str, Any]:
    f = rgb_image_fields(rgb, stamp, frame_id)
    if encoding == "bgr8":
        f["data"] = np.ascontiguousarray(rgb[:, :, ::-1]).reshape(-1)
        f["encoding"] = "bgr8"
    elif encoding != "rgb8":
        # Unknown / unsupported encodings (tests of the replay's bad-input handling): keep the bytes.
        f["encoding"] = encoding
    return f


def _depth_fields(depth: np.ndarray, stamp: int, frame_id: str, encoding: str) -> dict[str, Any]:
    if encoding.upper() == "32FC1":
        return depth_image_fields(depth, stamp, frame_id)
    if encoding.upper() != "16UC1":
        raise ValueError(f"depth encoding must be 32FC1 or 16UC1, got {encoding!r}")
    mm = np.where(np.isfinite(depth), np.rint(depth * 1000.0), 0).clip(0, 65535).astype("<u2")
    return image_fields(mm, "16UC1", stamp, frame_id)


def write_sequence_bag(
    seq: Any,
    path: str | os.PathLike[str],
    fmt: str = "mcap",
    *,
    image_encoding: str = "rgb8",
    depth_encoding: str = "32FC1",
    bad_encoding_frames: Iterable[int] = (),
    with_images: bool = True,
    with_depth: bool = True,
    with_tf: bool = True,
    with_camera_info: bool = True,
    stamp_offset_ns: int = 0,
    header_stamps_ns: Iterable[int] | None = None,
    ros1_chunk_bytes: int | None = None,
    garbage_payloads: dict[str, Iterable[int]] | None = None,
) -> Path:
    """Write ``seq`` (a :class:`vggt_ros.sim.sequences.SyntheticSequence`) as a bag; returns its path.

    fmt: ``mcap`` / ``db3`` (ROS 2 bag directory at ``path``) or ``ros1`` (``path`` is the .bag file,
    bz2-compressed chunks). Log time = header stamp unless ``header_stamps_ns`` is given.
    ``bad_encoding_frames``: frame indices whose image claims an unsupported encoding ("yuv422"), for
    bad-input tests.
    ``stamp_offset_ns`` shifts every stamp (e.g. to make GT files not overlap); ``header_stamps_ns``
    replaces the header stamps (out-of-order stamps, a time jump); log times stay in frame order.
    ``ros1_chunk_bytes``: the ROS 1 writer's chunk size (default rosbags' 1 MiB; small for many chunks).
    ``garbage_payloads``: topic -> frame indices whose message is written as garbage bytes (damaged
    message tests).
    """
    if fmt not in BAG_FORMATS:
        raise ValueError(f"bag format must be one of {BAG_FORMATS}, got {fmt!r}")
    bad = {int(i) for i in bad_encoding_frames}
    garbage = {t: {int(i) for i in idx} for t, idx in (garbage_payloads or {}).items()}
    stamps = [int(s) for s in (seq.stamps_ns if header_stamps_ns is None else header_stamps_ns)]
    if len(stamps) != len(seq):
        raise ValueError(f"header_stamps_ns has {len(stamps)} stamps for {len(seq)} frames")
    path = Path(path)
    ros1 = fmt == "ros1"
    world, cam = ("/world", "/kinect") if ros1 else ("world", "kinect")
    optical = "/openni_rgb_optical_frame" if ros1 else "camera_rgb_optical_frame"
    depth_frame = "/openni_depth_optical_frame" if ros1 else "camera_depth_optical_frame"

    if ros1:
        from rosbags.rosbag1 import Writer as Writer1

        ts = _ros1_typestore()
        writer: Any = Writer1(path)
        writer.set_compression(Writer1.CompressionFormat.BZ2)
        if ros1_chunk_bytes:
            writer.chunk_threshold = int(ros1_chunk_bytes)
        tf_type = ROS1_TF_TYPE

        def serialize(msg: Any, msgtype: str) -> bytes:
            return ts.serialize_ros1(msg, msgtype)
    else:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        ts = get_typestore(Stores.ROS2_JAZZY)
        plugin = StoragePlugin.MCAP if fmt == "mcap" else StoragePlugin.SQLITE3
        writer = Writer(path, version=9, storage_plugin=plugin)
        tf_type = "tf2_msgs/msg/TFMessage"

        def serialize(msg: Any, msgtype: str) -> bytes:
            return ts.serialize_cdr(msg, msgtype)

    with writer:
        conns: dict[str, Any] = {}

        def conn(topic: str, msgtype: str) -> Any:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=ts)
            return conns[topic]

        def put(topic: str, msgtype: str, fields: dict[str, Any], _stamp: int) -> None:
            msg = to_rosbags(ts, msgtype, fields)
            raw = serialize(msg, msgtype)
            if i in garbage.get(topic, ()):
                raw = bytes(np.random.default_rng(i).integers(0, 256, 12, dtype=np.uint8)) + b"\xff" * 9
            writer.write(conn(topic, msgtype), log_time, raw)

        for i in range(len(seq)):
            stamp = stamps[i] + int(stamp_offset_ns)
            log_time = int(seq.stamps_ns[i]) + int(stamp_offset_ns)  # frame order, whatever the headers say
            rgb, depth = seq.render_frame(i)
            h, w = rgb.shape[:2]
            if with_tf:
                tf = transform_stamped_fields(seq.world_T_camera[i], stamp, world, cam)
                put(TF_TOPIC, tf_type, {"transforms": [tf]}, stamp)
            if with_camera_info:
                ci = camera_info_fields(seq.K, h, w, stamp, optical)
                put(
                    CAMERA_INFO_TOPIC,
                    "sensor_msgs/msg/CameraInfo",
                    _camera_info_ros1(ci) if ros1 else ci,
                    stamp,
                )
            if with_images:
                enc = "yuv422" if i in bad else image_encoding
                put(IMAGE_TOPIC, "sensor_msgs/msg/Image", _image_fields(rgb, stamp, optical, enc), stamp)
            if with_depth:
                put(
                    DEPTH_TOPIC,
                    "sensor_msgs/msg/Image",
                    _depth_fields(depth, stamp, depth_frame, depth_encoding),
                    stamp,
                )
    logger.info("wrote %d frames to %s (%s)", len(seq), path, fmt)
    return path


def write_groundtruth_tum(seq: Any, path: str | os.PathLike[str], stamp_offset_ns: int = 0) -> Path:
    """TUM ``groundtruth.txt`` of the sequence's camera (optical frame) poses."""
    path = Path(path)
    write_tum(path, np.asarray(seq.stamps_ns, np.int64) + int(stamp_offset_ns), seq.world_T_camera)
    return path


def ros2_bag_file(bag_dir: str | os.PathLike[str]) -> Path:
    """The single storage file (.mcap or .db3) inside a ROS 2 bag directory written by rosbags."""
    files = sorted(p for p in Path(bag_dir).iterdir() if p.suffix in (".mcap", ".db3"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one .mcap/.db3 file in {bag_dir}, found {[p.name for p in files]}")
    return files[0]
