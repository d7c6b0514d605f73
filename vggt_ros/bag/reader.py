"""Read camera frames, intrinsics, depth and ground truth from ROS 1 and ROS 2 bags (rosbags AnyReader).

Accepted inputs: a ROS 1 ``.bag`` (uncompressed, bz2 or lz4 chunks), a ROS 2 bag directory
(``metadata.yaml`` + ``.db3``/``.mcap``) or a single ``.db3``/``.mcap`` file. Message definitions are
taken from the bag itself (the typestore of ROS 2 Jazzy is the fallback for old ``.db3`` bags without
them).

Topic selection when not given: the colour image topic is the one ``sensor_msgs/Image`` or
``CompressedImage`` topic whose name does not say "depth" (names with rgb/color/image_raw preferred,
raw preferred over compressed of the same stream); camera_info is looked up in the image's namespace;
the depth topic (optional, for depth metrics and the oracle) is an Image topic whose name says "depth".

Bad input never ends in a traceback: a bag without a usable image topic raises :class:`ReplayError`;
a message that does not deserialize or validate (image, depth, CameraInfo, TF, GT pose) is skipped and
counted per topic (rate-limited warnings); the first valid CameraInfo gives the intrinsics and later
ones are followed. A damaged bag file (truncated, a bad chunk, bad SQLite pages) is read on past the
damage by :class:`~vggt_ros.bag.recovery.SalvagedReader` (what was lost goes to ``stats.recovery``);
only a bag with nothing readable raises :class:`ReplayError` with the format's repair hint.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vggt_ros.bag.errors import ReplayError
from vggt_ros.bag.groundtruth import GroundTruth, compose_tf_path, parse_gt_topic_spec
from vggt_ros.bag.recovery import SalvagedReader, repair_hint
from vggt_ros.bag.stats import ReadStats
from vggt_ros.messages.camera_info import CameraModel, UncalibratedCamera, camera_info_msg_to_model
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
    camera: CameraModel | None = None  # a distorted camera (the replay undistorts image and depth)


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
        self.distortion: tuple[str, np.ndarray] = ("plumb_bob", np.zeros(0))  # of the latest CameraInfo

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
        default = get_typestore(Stores.ROS2_JAZZY)
        try:
            self.reader = AnyReader([self.path], default_typestore=default)
            self.reader.open()
        except Exception as exc:  # rosbags raises several types for damaged files
            self.reader = None
            self._salvage(f"cannot be opened: {exc}", default_typestore=default)
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
        """Intrinsics from the first valid CameraInfo (damaged/invalid ones before it are skipped)."""
        if not self.camera_info_topic:
            return
        for conn, t, raw in self._safe_messages((self.camera_info_topic,), "camera_info"):
            if self._camera_info(conn, t, raw):
                return
        if self.intrinsics is None:
            logger.warning(
                "camera_info topic %s has no valid message; the predictor's intrinsics are used",
                self.camera_info_topic,
            )

    def _camera_info(self, conn: Any, t: int, raw: bytes) -> bool:
        """Follow one CameraInfo message: True (and the intrinsics updated) when it is valid."""
        try:
            msg = self.reader.deserialize(raw, conn.msgtype)
            cam = camera_info_msg_to_model(msg)  # (k, or K as ROS 1 spells it)
            K, hw = cam.K, cam.hw
        except UncalibratedCamera as exc:
            self.stats.add("camera_info_uncalibrated")
            if self.stats.counts["camera_info_uncalibrated"] == 1:
                logger.warning("%s: %s; such messages are skipped", conn.topic, exc)
            return False
        except Exception as exc:  # noqa: BLE001 - MessageError, or rosbags' errors for a damaged payload
            self.stats.damaged_message(conn.topic, t, exc)
            return False
        if self.intrinsics is not None and (hw != self.camera_hw or not np.array_equal(K, self.intrinsics)
                                            or not np.array_equal(cam.D, self.distortion[1])):
            self.stats.add("camera_info_changes")
            if self.stats.counts["camera_info_changes"] == 1:
                logger.warning("%s: the camera intrinsics change during the bag; followed", conn.topic)
        self.intrinsics, self.camera_hw, self.distortion = K, hw, (cam.distortion_model, cam.D)
        return True

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
        for conn, t, raw in self._safe_messages((self.image_topic,), "image"):
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
            for conn, t, raw in self._safe_messages(tuple(tf_topics), "GT"):
                try:
                    msg = self.reader.deserialize(raw, conn.msgtype)
                    samples = [
                        (
                            (tr.header.frame_id.strip("/"), tr.child_frame_id.strip("/")),
                            stamp_to_ns(tr.header.stamp.sec, tr.header.stamp.nanosec),
                            transform_msg_to_matrix(tr.transform),
                        )
                        for tr in msg.transforms
                    ]
                except Exception as exc:  # noqa: BLE001 - MessageError or a damaged payload: skipped
                    self.stats.damaged_message(conn.topic, t, exc)
                    continue
                for key, stamp, T in samples:
                    edges.setdefault(key, []).append((stamp, T))
            return compose_tf_path(edges, frames, source=f"{self.path.name}{topic}")
        if msgtype not in POSE_TYPES:
            raise ReplayError(
                f"--gt-topic {topic} has type {msgtype}; expected a TF topic with a frame path "
                f"or one of {POSE_TYPES}"
            )
        if frames:
            raise ReplayError(f"--gt-topic {spec!r}: a frame path only applies to TF topics")
        stamps, poses = [], []
        for conn, t, raw in self._safe_messages((topic,), "GT"):
            try:
                msg = self.reader.deserialize(raw, conn.msgtype)
                if msgtype.endswith("TransformStamped"):
                    T = transform_msg_to_matrix(msg.transform)
                else:
                    p = msg.pose
                    T = pose_msg_to_matrix(p.pose if hasattr(p, "pose") else p)
                stamp = _message_stamp(msg)
            except Exception as exc:  # noqa: BLE001 - MessageError or a damaged payload: skipped
                self.stats.damaged_message(conn.topic, t, exc)
                continue
            stamps.append(stamp)
            poses.append(T)
        if not stamps:
            raise ReplayError(f"--gt-topic {topic} has no messages")
        return GroundTruth(np.array(stamps, np.int64), np.stack(poses), source=f"{self.path.name}{topic}")

    # ------------------------------------------------------------------ frames
    def _salvage(self, reason: str, **kw: Any) -> None:
        """Replace the reader by a :class:`SalvagedReader` (the bag is damaged); ReplayError when nothing
        at all can be read."""
        try:
            salvaged = SalvagedReader(self.path, **kw).open()
        except Exception as exc:  # noqa: BLE001 - the scan itself failed: nothing to salvage
            logger.warning("%s: salvage failed: %s", self.path, exc)
            salvaged = None
        if salvaged is None or not any(c.msgcount for c in salvaged.connections):
            raise ReplayError(
                f"cannot read bag {self.path} (truncated or damaged?): {reason}. {repair_hint(self.path)}"
            )
        self.stats.recovery = {"reason": reason, **salvaged.report}
        logger.warning(
            "%s is truncated or damaged (%s): salvaged %d messages past the damage; %s",
            self.path,
            reason,
            salvaged.report["messages_recovered"],
            salvaged.report["hint"],
        )
        if self.reader is not None:
            self.close()
        self.reader = salvaged

    def _safe_messages(self, topics: tuple[str, ...], what: str) -> Iterator[tuple[Any, int, bytes]]:
        """Messages of ``topics`` to the end; when the bag turns out damaged mid-way, the reader is
        replaced by a salvaging one and reading goes on after the messages already given."""
        seen: set[tuple[str, int]] = set()
        it = self.reader.messages(connections=self._connections(*topics))
        while True:
            try:
                conn, t, raw = next(it)
            except StopIteration:
                return
            except Exception as exc:  # truncated chunk, bad compression, bad SQLite page ...
                if isinstance(self.reader, SalvagedReader):  # a scan error: the end of what can be read
                    self.stats.read_error = f"{type(exc).__name__}: {exc}"
                    self.stats.add("read_errors")
                    logger.warning("%s: reading %s stopped: %s", self.path, what, exc)
                    return
                expected = {t: n for t, (_, n) in self.topics.items()}
                self._salvage(
                    f"read error after {len(seen)} {what} messages: {type(exc).__name__}: {exc}",
                    typestore=self.reader.typestore,
                    expected=expected,
                )
                it = (m for m in self.reader.messages(connections=self._connections(*topics))
                      if (m[0].topic, m[1]) not in seen)
                continue
            seen.add((conn.topic, int(t)))
            yield conn, t, raw

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
            st.damaged_message(conn.topic, t, exc)
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
        cam = CameraModel(K, rgb.shape[:2], *self.distortion) if K is not None else None
        return BagFrame(stamp, int(t), rgb, str(msg.header.frame_id).strip("/") or "camera_optical_frame", K,
                        camera=cam if cam is not None and cam.distorted else None)

    def _decode_depth(self, conn: Any, t: int, raw: bytes) -> tuple[int, np.ndarray] | None:
        try:
            msg = self.reader.deserialize(raw, conn.msgtype)
            return _message_stamp(msg), depth_msg_to_array(msg)
        except Exception as exc:  # noqa: BLE001 - MessageError (e.g. unsupported encodings), damaged CDR
            if not isinstance(exc, UnsupportedEncoding):
                self.stats.damaged_message(conn.topic, t, exc)
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
        topics = [self.image_topic] + [t for t in (self.depth_topic, self.camera_info_topic) if t]
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

        first_info = (self.intrinsics, self.camera_hw, self.distortion)  # the first one applies before it
        for conn, t, raw in self._safe_messages(tuple(topics), "frames"):
            if max_frames is not None and emitted >= max_frames:
                break
            if conn.topic == self.camera_info_topic:
                self._camera_info(conn, t, raw)  # the latest valid CameraInfo applies to the next images
            elif conn.topic == self.image_topic:
                f = self._decode_image(conn, t, raw)
                if f is not None:
                    yield from ready(pairing.add_image(f.stamp_ns, f) if self.depth_topic
                                     else [Paired(f, f.stamp_ns, None)])
            else:
                d = self._decode_depth(conn, t, raw)
                if d is not None:
                    yield from ready(pairing.add_depth(*d))
        if max_frames is None or emitted < max_frames:
            yield from ready(pairing.drain())
        self.intrinsics, self.camera_hw, self.distortion = first_info
