"""Read camera frames, intrinsics, depth and ground truth from ROS 1 and ROS 2 bags (rosbags AnyReader).

Accepted inputs: a ROS 1 ``.bag`` (uncompressed, bz2 or lz4 chunks), a ROS 2 bag directory
(``metadata.yaml`` + ``.db3``/``.mcap``) or a single ``.db3``/``.mcap`` file. Message definitions are
taken from the bag itself (the typestore of ROS 2 Jazzy is the fallback for old ``.db3`` bags without
them).

Topic selection when not given: the colour image topic is the one ``sensor_msgs/Image`` or
``CompressedImage`` topic whose name does not say "depth" (names with rgb/color/image_raw preferred,
raw preferred over compressed of the same stream); camera_info is looked up in the image's namespace;
the depth topic (optional, for depth metrics and the oracle) is an Image topic whose name says "depth".

Bad input never ends in a traceback: a bag that cannot be opened (truncated, damaged) or has no
usable image topic raises :class:`ReplayError`; undecodable frames are skipped with counters and a
warning; a bag that breaks off mid-way is read up to the break (warning with the count).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vggt_ros.bag.errors import ReplayError
from vggt_ros.bag.groundtruth import GroundTruth, compose_tf_path, parse_gt_topic_spec
from vggt_ros.messages.camera_info import camera_info_msg_to_intrinsics
from vggt_ros.messages.errors import MessageError
from vggt_ros.messages.images import UnsupportedEncoding, depth_msg_to_array, image_msg_to_rgb
from vggt_ros.messages.poses import pose_msg_to_matrix, transform_msg_to_matrix
from vggt_ros.messages.stamps import stamp_to_ns
from vggt_ros.runner.depth_pairing import DepthPairing, Paired

logger = logging.getLogger(__name__)

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
TF_TYPES = ("tf2_msgs/msg/TFMessage", "tf/msg/tfMessage")
POSE_TYPES = (
    "nav_msgs/msg/Odometry",
    "geometry_msgs/msg/PoseStamped",
    "geometry_msgs/msg/PoseWithCovarianceStamped",
    "geometry_msgs/msg/TransformStamped",
)
PREFERRED_WORDS = ("rgb", "color", "colour", "image_raw")
DEPTH_MATCH_NS = 20_000_000  # image <-> depth association tolerance (TUM's 20 ms)


@dataclass
class BagFrame:
    """One decoded camera frame of the bag (depth resized to the image when needed, metres)."""

    stamp_ns: int
    bag_time_ns: int
    image: np.ndarray
    frame_id: str
    intrinsics: np.ndarray | None
    depth: np.ndarray | None = None


@dataclass
class ReadStats:
    """What the reader saw: counters of skipped/odd frames, filled while iterating."""

    counts: dict[str, int] = field(default_factory=dict)
    stamps: list[int] = field(default_factory=list)
    encodings_skipped: dict[str, int] = field(default_factory=dict)
    read_error: str = ""

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def stamp_anomalies(self) -> dict[str, int]:
        """Out-of-order/duplicate stamps and time jumps (gap > 5x the median frame period and > 0.5 s)."""
        s = np.asarray(self.stamps, np.int64)
        if s.size < 2:
            return {"out_of_order": 0, "duplicate_stamps": 0, "time_jumps": 0}
        d = np.diff(s)
        pos = d[d > 0]
        med = float(np.median(pos)) if pos.size else 0.0
        jumps = int(np.sum(d > max(5 * med, 0.5e9))) if med > 0 else 0
        return {
            "out_of_order": int(np.sum(d < 0)),
            "duplicate_stamps": int(np.sum(d == 0)),
            "time_jumps": jumps,
        }


def _ns(path: str) -> str:
    """Namespace of a topic: '/camera/rgb/image_color' -> '/camera/rgb'."""
    return path.rsplit("/", 1)[0] if "/" in path.strip("/") else ""


def _message_stamp(msg: Any) -> int:
    h = getattr(msg, "header", None)
    if h is None:
        return 0
    return stamp_to_ns(h.stamp.sec, h.stamp.nanosec)


class BagSource:
    """An open bag with its chosen topics; iterate :meth:`frames` for the camera stream.

    Use as a context manager. ``image_topic``/``depth_topic``/``camera_info_topic``: explicit choices
    (None = automatic; ``depth_topic=''`` = no depth).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        image_topic: str | None = None,
        depth_topic: str | None = None,
        camera_info_topic: str | None = None,
        depth_match_ns: int = DEPTH_MATCH_NS,
    ) -> None:
        self.path = Path(path)
        self._want_image = image_topic
        self._want_depth = depth_topic
        self._want_info = camera_info_topic
        self.depth_match_ns = int(depth_match_ns)
        self.reader: Any = None
        self.stats = ReadStats()
        self.image_topic = ""
        self.depth_topic = ""
        self.camera_info_topic = ""
        self.intrinsics: np.ndarray | None = None
        self.camera_hw: tuple[int, int] | None = None

    # ------------------------------------------------------------------ open / topics
    def __enter__(self) -> BagSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Open the bag and choose the topics (ReplayError for anything the user must fix)."""
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        if not self.path.exists():
            raise ReplayError(f"bag {self.path} does not exist")
        if self.path.is_file() and self.path.suffix not in (".bag", ".mcap", ".db3"):
            raise ReplayError(
                f"{self.path}: not a bag (expected a .bag file, a ROS 2 bag directory, or a .mcap/.db3 file)"
            )
        if self.path.is_dir() and not (self.path / "metadata.yaml").exists():
            files = sorted(p for p in self.path.iterdir() if p.suffix in (".mcap", ".db3"))
            if len(files) != 1:
                raise ReplayError(
                    f"{self.path}: a ROS 2 bag directory needs metadata.yaml (or exactly one "
                    f".mcap/.db3 file), found {[p.name for p in files]}"
                )
            logger.warning("%s has no metadata.yaml; reading %s directly", self.path, files[0].name)
            self.path = files[0]
        try:
            self.reader = AnyReader([self.path], default_typestore=get_typestore(Stores.ROS2_JAZZY))
            self.reader.open()
        except Exception as exc:  # rosbags raises several types for damaged files
            self.reader = None
            hint = (
                "`rosbag reindex` may repair a ROS 1 bag"
                if self.path.suffix == ".bag"
                else "`mcap recover` may repair an MCAP file"
            )
            raise ReplayError(f"cannot open bag {self.path} (truncated or damaged?): {exc}. {hint}") from None
        try:
            self._choose_topics()
            self._read_camera_info()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.reader is not None:
            try:
                self.reader.close()
            finally:
                self.reader = None

    @property
    def topics(self) -> dict[str, tuple[str, int]]:
        """topic -> (message type, message count)."""
        out: dict[str, tuple[str, int]] = {}
        for c in self.reader.connections:
            t, n = out.get(c.topic, (c.msgtype, 0))
            out[c.topic] = (t, n + int(c.msgcount))
        return out

    def _listing(self) -> str:
        return "; ".join(f"{t} [{m}, {n} msgs]" for t, (m, n) in sorted(self.topics.items())) or "no topics"

    def _choose_topics(self) -> None:
        topics = self.topics
        images = {t: m for t, (m, _) in topics.items() if m in IMAGE_TYPES}
        if self._want_image:
            if self._want_image not in topics:
                raise ReplayError(
                    f"--image-topic {self._want_image} is not in {self.path}; topics: {self._listing()}"
                )
            if topics[self._want_image][0] not in IMAGE_TYPES:
                raise ReplayError(
                    f"--image-topic {self._want_image} has type {topics[self._want_image][0]}, "
                    f"expected one of {IMAGE_TYPES}"
                )
            self.image_topic = self._want_image
        else:
            colour = [t for t in images if "depth" not in t.lower()]
            if not colour:
                raise ReplayError(
                    f"{self.path}: no camera image topic (sensor_msgs/Image or CompressedImage); "
                    f"topics: {self._listing()}"
                )
            cands = colour
            if len(cands) > 1:
                pref = [t for t in cands if any(w in t.lower() for w in PREFERRED_WORDS)]
                cands = pref or cands
            if len(cands) > 1:
                raw = [t for t in cands if images[t] == "sensor_msgs/msg/Image"]
                # '/cam/image_raw' and '/cam/image_raw/compressed' are one stream: take the raw one
                if len(raw) == 1 and all(t == raw[0] or t.startswith(raw[0] + "/") for t in cands):
                    cands = raw
            if len(cands) > 1:
                raise ReplayError(
                    f"{self.path}: several image topics, choose one with --image-topic: "
                    + ", ".join(f"{t} [{images[t]}]" for t in sorted(cands))
                )
            self.image_topic = cands[0]
        # camera_info: explicit, else the image's namespace (compressed: one level up), else unique
        infos = [t for t, (m, _) in topics.items() if m == CAMERA_INFO_TYPE]
        if self._want_info:
            if self._want_info not in infos:
                raise ReplayError(
                    f"camera_info topic {self._want_info} is not a CameraInfo topic of {self.path}"
                )
            self.camera_info_topic = self._want_info
        else:
            base = self.image_topic
            if base.endswith("/compressed"):
                base = base[: -len("/compressed")]
            ns = _ns(base)
            same = [t for t in infos if _ns(t) == ns]
            others = [t for t in infos if "depth" not in t.lower()]
            if same:
                self.camera_info_topic = same[0]
            elif len(others) == 1:
                self.camera_info_topic = others[0]
                logger.warning(
                    "camera_info %s is not in the image's namespace %s; using it anyway", others[0], ns
                )
            else:
                logger.warning(
                    "%s: no camera_info for %s (%d CameraInfo topics); the predictor's intrinsics are used",
                    self.path,
                    self.image_topic,
                    len(infos),
                )
        # depth
        depths = [
            t
            for t, m in images.items()
            if m == "sensor_msgs/msg/Image" and "depth" in t.lower() and t != self.image_topic
        ]
        if self._want_depth is not None:
            if self._want_depth and self._want_depth not in images:
                raise ReplayError(
                    f"--depth-topic {self._want_depth} is not an image topic of {self.path}; "
                    f"topics: {self._listing()}"
                )
            self.depth_topic = self._want_depth
        elif len(depths) == 1:
            self.depth_topic = depths[0]
        elif depths:
            pref = [t for t in depths if "registered" in t] or [t for t in depths if t.endswith("/image")]
            self.depth_topic = (pref or sorted(depths))[0]
            logger.warning(
                "several depth topics %s; using %s (choose with --depth-topic)", depths, self.depth_topic
            )
        logger.info(
            "bag %s: image %s, camera_info %s, depth %s",
            self.path,
            self.image_topic,
            self.camera_info_topic or "-",
            self.depth_topic or "-",
        )

    def _connections(self, *topics: str) -> list[Any]:
        return [c for c in self.reader.connections if c.topic in topics]

    def _read_camera_info(self) -> None:
        if not self.camera_info_topic:
            return
        for conn, _, raw in self.reader.messages(connections=self._connections(self.camera_info_topic)):
            msg = self.reader.deserialize(raw, conn.msgtype)
            try:  # (k, or K as ROS 1 spells it)
                self.intrinsics, self.camera_hw = camera_info_msg_to_intrinsics(msg)
            except MessageError as exc:  # UncalibratedCamera or a malformed CameraInfo
                logger.warning("%s: %s; the predictor's intrinsics are used", self.camera_info_topic, exc)
            return
        logger.warning("camera_info topic %s has no messages", self.camera_info_topic)

    # ------------------------------------------------------------------ bag facts
    @property
    def num_images(self) -> int:
        return self.topics.get(self.image_topic, ("", 0))[1]

    @property
    def time_range_ns(self) -> tuple[int, int]:
        """(first, last) bag log time."""
        return int(self.reader.start_time), int(self.reader.end_time)

    def first_image_stamp(self) -> tuple[int, int] | None:
        """(header stamp, log time) of the first image message, for relating GT time to bag time."""
        for conn, t, raw in self.reader.messages(connections=self._connections(self.image_topic)):
            try:
                return _message_stamp(self.reader.deserialize(raw, conn.msgtype)) or int(t), int(t)
            except Exception:  # noqa: BLE001 - judged later, frame by frame
                return int(t), int(t)
        return None

    # ------------------------------------------------------------------ ground truth
    def read_gt_topic(self, spec: str) -> GroundTruth:
        """GT from ``/tf:parent.child[.more]`` (TF frame path) or an Odometry/Pose(Stamped) topic."""
        topic, frames = parse_gt_topic_spec(spec)
        topics = self.topics
        if topic not in topics:
            raise ReplayError(f"--gt-topic: topic {topic} is not in {self.path}; topics: {self._listing()}")
        msgtype = topics[topic][0]
        if msgtype in TF_TYPES:
            if not frames:
                raise ReplayError(
                    f"--gt-topic {spec!r}: {topic} is a TF topic, give the frame path, e.g. "
                    f"'{topic}:world.camera'"
                )
            edges: dict[tuple[str, str], list[tuple[int, np.ndarray]]] = {}
            tf_topics = [topic] + [
                t for t, (m, _) in topics.items() if m in TF_TYPES and t != topic and t.endswith("tf_static")
            ]
            for conn, _, raw in self._safe_messages(self._connections(*tf_topics), "GT"):
                msg = self.reader.deserialize(raw, conn.msgtype)
                for tr in msg.transforms:
                    key = (tr.header.frame_id.strip("/"), tr.child_frame_id.strip("/"))
                    edges.setdefault(key, []).append(
                        (
                            stamp_to_ns(tr.header.stamp.sec, tr.header.stamp.nanosec),
                            transform_msg_to_matrix(tr.transform),
                        )
                    )
            return compose_tf_path(edges, frames, source=f"{self.path.name}{topic}")
        if msgtype not in POSE_TYPES:
            raise ReplayError(
                f"--gt-topic {topic} has type {msgtype}; expected a TF topic with a frame path "
                f"or one of {POSE_TYPES}"
            )
        if frames:
            raise ReplayError(f"--gt-topic {spec!r}: a frame path only applies to TF topics")
        stamps, poses = [], []
        for conn, _, raw in self._safe_messages(self._connections(topic), "GT"):
            msg = self.reader.deserialize(raw, conn.msgtype)
            if msgtype.endswith("TransformStamped"):
                T = transform_msg_to_matrix(msg.transform)
            else:
                p = msg.pose
                T = pose_msg_to_matrix(p.pose if hasattr(p, "pose") else p)
            stamps.append(_message_stamp(msg))
            poses.append(T)
        if not stamps:
            raise ReplayError(f"--gt-topic {topic} has no messages")
        return GroundTruth(np.array(stamps, np.int64), np.stack(poses), source=f"{self.path.name}{topic}")

    # ------------------------------------------------------------------ frames
    def _safe_messages(self, connections: list[Any], what: str) -> Iterator[tuple[Any, int, bytes]]:
        """Messages until the end or until the bag breaks off (warning with the count, no traceback)."""
        n = 0
        it = self.reader.messages(connections=connections)
        while True:
            try:
                item = next(it)
            except StopIteration:
                return
            except Exception as exc:  # truncated chunk, bad compression, ...
                self.stats.read_error = f"{type(exc).__name__}: {exc}"
                self.stats.add("read_errors")
                logger.warning(
                    "%s: reading %s stopped after %d messages (bag truncated or damaged?): %s",
                    self.path,
                    what,
                    n,
                    exc,
                )
                return
            n += 1
            yield item

    def _decode_image(self, conn: Any, t: int, raw: bytes) -> BagFrame | None:
        st = self.stats
        st.add("image_messages")
        try:
            msg = self.reader.deserialize(raw, conn.msgtype)
            rgb = image_msg_to_rgb(msg)
        except UnsupportedEncoding as exc:
            st.add("skipped_unsupported_encoding")
            st.encodings_skipped[exc.encoding] = st.encodings_skipped.get(exc.encoding, 0) + 1
            if st.counts["skipped_unsupported_encoding"] == 1:
                logger.warning("%s: %s; such frames are skipped (counted)", self.image_topic, exc)
            return None
        except Exception as exc:  # noqa: BLE001 - MessageError, or rosbags' errors for a damaged CDR payload
            st.add("skipped_decode_error")
            if st.counts["skipped_decode_error"] == 1:
                logger.warning(
                    "%s: cannot decode an image (%s); such frames are skipped (counted)",
                    self.image_topic,
                    exc,
                )
            return None
        stamp = _message_stamp(msg)
        if stamp == 0:
            st.add("zero_header_stamp")
            stamp = int(t)
        K = self.intrinsics
        if K is not None and self.camera_hw is not None and self.camera_hw != rgb.shape[:2]:
            h0, w0 = self.camera_hw
            h, w = rgb.shape[:2]
            K = K.copy()
            K[0] *= w / w0
            K[1] *= h / h0
            K[0, 2] = (self.intrinsics[0, 2] + 0.5) * w / w0 - 0.5
            K[1, 2] = (self.intrinsics[1, 2] + 0.5) * h / h0 - 0.5
            if not st.counts.get("intrinsics_rescaled"):
                logger.warning("camera_info is %dx%d but images are %dx%d: intrinsics rescaled", w0, h0, w, h)
            st.add("intrinsics_rescaled")
        return BagFrame(stamp, int(t), rgb, str(msg.header.frame_id).strip("/") or "camera_optical_frame", K)

    def _decode_depth(self, conn: Any, raw: bytes) -> tuple[int, np.ndarray] | None:
        try:
            msg = self.reader.deserialize(raw, conn.msgtype)
            return _message_stamp(msg), depth_msg_to_array(msg)
        except Exception as exc:  # noqa: BLE001 - MessageError (e.g. unsupported encodings), damaged CDR
            self.stats.add("depth_skipped")
            if self.stats.counts["depth_skipped"] == 1:
                logger.warning(
                    "%s: cannot decode depth (%s); depth metrics skip such frames", self.depth_topic, exc
                )
            return None

    def _attach_depth(self, frame: BagFrame, depth: np.ndarray | None) -> BagFrame:
        if depth is None:
            self.stats.add("depth_missing")
            return frame
        if depth.shape != frame.image.shape[:2]:
            if not self.stats.counts.get("depth_resized"):
                logger.warning(
                    "depth %s is resized (nearest) to the image size %s", depth.shape, frame.image.shape[:2]
                )
            self.stats.add("depth_resized")
            depth = cv2.resize(
                depth, (frame.image.shape[1], frame.image.shape[0]), interpolation=cv2.INTER_NEAREST
            )
        frame.depth = depth
        self.stats.add("depth_matched")
        return frame

    def frames(self, max_frames: int | None = None) -> Iterator[BagFrame]:
        """Decoded frames in bag order, each with its depth image paired by the node's policy
        (:class:`~vggt_ros.runner.depth_pairing.DepthPairing`, nearest within ``depth_match_ns``)."""
        topics = [self.image_topic] + ([self.depth_topic] if self.depth_topic else [])
        pairing: DepthPairing[BagFrame] = DepthPairing(self.depth_match_ns)
        emitted = 0

        def ready(paired: list[Paired[BagFrame]]) -> Iterator[BagFrame]:
            nonlocal emitted
            for p in paired:
                if max_frames is not None and emitted >= max_frames:
                    return
                self.stats.stamps.append(p.stamp_ns)
                self.stats.add("frames")
                emitted += 1
                yield self._attach_depth(p.item, p.depth) if self.depth_topic else p.item

        for conn, t, raw in self._safe_messages(self._connections(*topics), "frames"):
            if max_frames is not None and emitted >= max_frames:
                break
            if conn.topic == self.image_topic:
                f = self._decode_image(conn, t, raw)
                if f is not None:
                    yield from ready(pairing.add_image(f.stamp_ns, f) if self.depth_topic
                                     else [Paired(f, f.stamp_ns, None)])
            else:
                d = self._decode_depth(conn, raw)
                if d is not None:
                    yield from ready(pairing.add_depth(*d))
        if max_frames is None or emitted < max_frames:
            yield from ready(pairing.drain())
