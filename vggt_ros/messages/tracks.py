"""The custom ``vggt_ros/msg/KeypointTracks`` message: schema, fields, decoding, rosbags registration.

Why here: one schema for every user. The field list is read from the repository's
``msg/KeypointTracks.msg`` (the file rosidl compiles for colcon builds; pip installs put it under
``share/vggt_ros/msg``), never written out a second time: :func:`keypoint_tracks_schema` parses it,
:func:`register_custom_types` registers its text with a ``rosbags`` typestore (which also writes it
as the MCAP schema).
"""

from __future__ import annotations

import array
import functools
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from vggt_ros.core.types import TrackOutput
from vggt_ros.messages.errors import MessageError, decoding, int_field, str_field
from vggt_ros.messages.stamps import Fields, header_fields, stamp_ns_of, time_fields

KEYPOINT_TRACKS_TYPE = "vggt_ros/msg/KeypointTracks"

_SHARE_MSG = Path("share") / "vggt_ros" / "msg" / "KeypointTracks.msg"
# <repo root>/msg/KeypointTracks.msg, for source checkouts and editable installs
_SOURCE_MSG = Path(__file__).resolve().parents[2] / "msg" / "KeypointTracks.msg"


def keypoint_tracks_msg_path() -> Path:
    """Where ``KeypointTracks.msg`` is: ``<repo root>/msg`` next to the package (source checkout,
    editable install), else ``share/vggt_ros/msg`` under every ``AMENT_PREFIX_PATH`` prefix (colcon)
    and under ``sys.prefix`` (pip). Raises ``FileNotFoundError`` naming every place looked at."""
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    candidates = [_SOURCE_MSG, *(Path(p) / _SHARE_MSG for p in [*prefixes, sys.prefix])]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        "KeypointTracks.msg not found; looked at " + ", ".join(str(p) for p in candidates)
        + " (install the package with its data files, or set AMENT_PREFIX_PATH)"
    )


@functools.lru_cache(maxsize=1)
def keypoint_tracks_msg_text() -> str:
    """The text of ``KeypointTracks.msg`` (read once; see :func:`keypoint_tracks_msg_path`)."""
    return keypoint_tracks_msg_path().read_text()


@functools.lru_cache(maxsize=1)
def keypoint_tracks_schema() -> tuple[tuple[str, str], ...]:
    """The message's fields as ``(type, name)`` pairs in declaration order, as written in the .msg
    (e.g. ``("float32[]", "positions")``); comments and constants are skipped."""
    fields = []
    for line in keypoint_tracks_msg_text().splitlines():
        decl = line.split("#", 1)[0].strip()
        if not decl or "=" in decl:
            continue
        ftype, name = decl.split()[:2]
        fields.append((ftype, name))
    return tuple(fields)


def keypoint_tracks_fields(
    tracks: TrackOutput, stamp_ns: int | None = None, frame_id: str | None = None
) -> Fields:
    """KeypointTracks fields from a :class:`TrackOutput`; header stamp defaults to the newest frame,
    frame_id to ``tracks.frame_id``."""
    pos = np.asarray(tracks.positions, dtype=np.float32)
    if pos.ndim != 3 or pos.shape[2] != 2:
        raise ValueError(f"track positions must be [S, N, 2], got {pos.shape}")
    s, n = pos.shape[:2]
    vis = np.asarray(tracks.visibility, dtype=np.float32)
    conf = np.asarray(tracks.confidence, dtype=np.float32)
    ids = np.asarray(tracks.track_ids, dtype=np.int64).reshape(-1)
    if vis.shape != (s, n) or conf.shape != (s, n):
        raise ValueError(f"visibility {vis.shape} / confidence {conf.shape} must be [S, N] = {(s, n)}")
    if ids.shape != (n,):
        raise ValueError(f"track_ids must have {n} entries, got {ids.shape}")
    if len(tracks.stamps_ns) != s:
        raise ValueError(f"{len(tracks.stamps_ns)} stamps for {s} track frames")
    if not 0 <= int(tracks.query_frame_index) < max(s, 1):
        raise ValueError(f"query_frame_index {tracks.query_frame_index} outside [0, {s})")
    if stamp_ns is None:
        stamp_ns = int(tracks.stamps_ns[-1]) if s else 0
    return {
        "header": header_fields(stamp_ns, tracks.frame_id if frame_id is None else frame_id),
        "stamps": [time_fields(t) for t in tracks.stamps_ns],
        "query_frame_index": int(tracks.query_frame_index),
        "track_ids": ids,
        "num_frames": s,
        "num_tracks": n,
        "positions": np.ascontiguousarray(pos).reshape(-1),
        "visibility": np.ascontiguousarray(vis).reshape(-1),
        "confidence": np.ascontiguousarray(conf).reshape(-1),
    }


def keypoint_tracks_msg_to_output(msg: Any) -> TrackOutput:
    """A KeypointTracks message (any flavour) -> :class:`TrackOutput` (reshaped, validated).

    Raises :class:`MessageError` for anything malformed: negative or non-integer sizes, arrays whose
    length does not match ``num_frames`` x ``num_tracks``, a ``stamps`` count other than
    ``num_frames``, ``query_frame_index`` outside the frames, a missing field."""
    with decoding("KeypointTracks"):
        return _keypoint_tracks_msg_to_output(msg)


def _keypoint_tracks_msg_to_output(msg: Any) -> TrackOutput:
    s = int_field(msg.num_frames, "KeypointTracks.num_frames", lo=0)
    n = int_field(msg.num_tracks, "KeypointTracks.num_tracks", lo=0)

    def arr(v: Any, dtype: str, count: int, what: str) -> np.ndarray:
        with decoding(f"KeypointTracks.{what}"):
            if isinstance(v, (bytes, bytearray, array.array)):
                a = np.frombuffer(memoryview(v).cast("B"), dtype=dtype)
            else:
                a = np.asarray(v)
                if a.dtype.kind not in "iuf":
                    raise MessageError(f"KeypointTracks.{what}: expected numbers, got {a.dtype}")
                a = a.astype(dtype)
        if a.size != count:
            raise MessageError(f"KeypointTracks.{what}: {a.size} values, expected {count} for {s}x{n}")
        return a

    stamps = [stamp_ns_of(t) for t in msg.stamps]
    if len(stamps) != s:
        raise MessageError(f"KeypointTracks.stamps: {len(stamps)} stamps for {s} frames")
    q = int_field(msg.query_frame_index, "KeypointTracks.query_frame_index")
    if not 0 <= q < max(s, 1):
        raise MessageError(f"KeypointTracks.query_frame_index {q} outside [0, {s})")
    return TrackOutput(
        stamps_ns=stamps,
        query_frame_index=q,
        track_ids=arr(msg.track_ids, "<i8", n, "track_ids").astype(np.int64),
        positions=arr(msg.positions, "<f4", s * n * 2, "positions").astype(np.float32).reshape(s, n, 2),
        visibility=arr(msg.visibility, "<f4", s * n, "visibility").astype(np.float32).reshape(s, n),
        confidence=arr(msg.confidence, "<f4", s * n, "confidence").astype(np.float32).reshape(s, n),
        frame_id=str_field(msg.header.frame_id, "KeypointTracks.header.frame_id"),
    )


def register_custom_types(typestore: Any) -> None:
    """Register vggt_ros message definitions with a ``rosbags`` typestore (idempotent)."""
    if KEYPOINT_TRACKS_TYPE in typestore.types:
        return
    from rosbags.typesys import get_types_from_msg

    typestore.register(get_types_from_msg(keypoint_tracks_msg_text(), KEYPOINT_TRACKS_TYPE))
