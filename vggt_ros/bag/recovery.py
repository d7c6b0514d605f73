"""Read what is intact in a damaged bag: a reader with AnyReader's interface over the salvage scanners.

Why: a truncated bag, a ROS 1 bag with a bad chunk, an MCAP file with a bad chunk or a SQLite file
with bad pages still holds most of its messages; rosbags gives up at the first damage (on open or
mid-way). :class:`SalvagedReader` walks the file with :mod:`vggt_ros.bag.salvage`, keeps every
message that is still readable (file order) and reports what was lost (byte or row ranges, chunks,
messages per topic when the bag's index says how many there were) with the repair hint of the format.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosbags.interfaces import MessageDefinition, MessageDefinitionFormat

from vggt_ros.bag import salvage

logger = logging.getLogger(__name__)

MAX_RANGES = 20  # skipped ranges listed in the report (the count is always complete)
HINTS = {
    "ros1": "`rosbag reindex` may repair a ROS 1 bag",
    "mcap": "`mcap recover` may repair an MCAP file",
    "db3": "`sqlite3 FILE.db3 .recover` (or `ros2 bag reindex` for a bag directory) may repair a SQLite bag",
}


def bag_format(path: Path) -> str:
    """'ros1', 'mcap' or 'db3' of a bag file or ROS 2 bag directory."""
    if path.is_dir():
        files = storage_files(path)
        return "mcap" if files and files[0].suffix == ".mcap" else "db3"
    return {".bag": "ros1", ".mcap": "mcap"}.get(path.suffix, "db3")


def repair_hint(path: Path) -> str:
    return HINTS[bag_format(path)]


def storage_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.suffix in (".mcap", ".db3"))


@dataclass(frozen=True)
class SalvagedConnection:
    """What BagSource needs of a rosbags Connection."""

    id: tuple[int, int]  # (storage file index, id in that file)
    topic: str
    msgtype: str
    msgdef: MessageDefinition
    digest: str
    msgcount: int


class SalvagedReader:
    """AnyReader's interface (connections, messages, deserialize, start/end time) over a damaged bag.

    ``typestore``: the typestore to deserialize with (the one of an AnyReader that opened the bag, when
    one did); otherwise built from the definitions the scan found, ``default_typestore`` filling in.
    ``expected``: topic -> message count from the bag's intact index (lost counts are reported)."""

    def __init__(
        self,
        path: Path,
        typestore: Any = None,
        default_typestore: Any = None,
        expected: dict[str, int] | None = None,
    ) -> None:
        self.path = Path(path)
        self.fmt = bag_format(self.path)
        self.is2 = self.fmt != "ros1"
        self.files = storage_files(self.path)
        self.typestore = typestore
        self._default = default_typestore
        self.expected = dict(expected or {})
        self.connections: list[SalvagedConnection] = []
        self.start_time = 0
        self.end_time = 0
        self.report: dict[str, Any] = {}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def _scan(self, i: int, f: Path) -> Iterator[tuple[Any, ...]]:
        if self.fmt == "ros1":
            return salvage.scan_ros1(f)
        return salvage.scan_mcap(f) if f.suffix == ".mcap" else salvage.scan_db3(f)

    def open(self) -> SalvagedReader:
        """One pass over the file: connections, counts, time range and the loss report."""
        if self.fmt == "db3":
            for i, f in enumerate(self.files):
                if f.suffix == ".db3":
                    if self._tmp is None:
                        self._tmp = tempfile.TemporaryDirectory(prefix="vggt_ros_salvage_")
                    padded = salvage.db3_padded_copy(f, Path(self._tmp.name))
                    if padded is not None:
                        logger.warning("%s is shorter than its header says (truncated): read padded", f)
                        self.files[i] = padded
        conns: dict[tuple[int, int], list[Any]] = {}
        counts: dict[tuple[int, int], int] = {}
        ranges: list[list[Any]] = []
        chunks = rows = nbytes = 0
        t0, t1 = 2**63 - 1, 0
        for i, f in enumerate(self.files):
            for ev in self._scan(i, f):
                if ev[0] == "msg":
                    key = (i, ev[1])
                    counts[key] = counts.get(key, 0) + 1
                    t0, t1 = min(t0, ev[2]), max(t1, ev[2])
                elif ev[0] == "conn":
                    conns.setdefault((i, ev[1]), list(ev[2:]))
                else:
                    _, a, b, reason, unit = ev
                    chunks += unit == "chunk"
                    if unit == "rows":
                        rows += int(reason.split()[0]) if reason.split()[0].isdigit() else 0
                    else:
                        nbytes += b - a
                    if len(ranges) < MAX_RANGES:
                        ranges.append([f.name, unit, int(a), int(b), reason])
                    logger.warning("%s: %s %d..%d skipped: %s", f.name, unit, a, b, reason)
        self.connections = [
            SalvagedConnection(k, topic, msgtype, msgdef, digest, counts.get(k, 0))
            for k, (topic, msgtype, msgdef, digest) in conns.items()
        ]
        self.start_time, self.end_time = (t0, t1 + 1) if counts else (0, 0)
        if self.typestore is None:
            self.typestore = self._build_typestore()
        by_topic: dict[str, int] = {}
        for c in self.connections:
            by_topic[c.topic] = by_topic.get(c.topic, 0) + c.msgcount
        lost = {t: n - by_topic.get(t, 0) for t, n in self.expected.items() if n > by_topic.get(t, 0)}
        self.report = {
            "format": self.fmt,
            "messages_recovered": sum(counts.values()),
            "messages_recovered_by_topic": by_topic,
            "messages_lost_by_topic": lost,
            "chunks_skipped": chunks,
            "rows_unreadable": rows,
            "bytes_skipped": nbytes,
            "skipped": ranges,
            "hint": HINTS[self.fmt],
        }
        if self.fmt == "db3" and (ranges or not counts):
            self.report["sqlite_quick_check"] = [x for f in self.files for x in salvage.db3_corrupt_pages(f)]
        return self

    def _build_typestore(self) -> Any:
        """As AnyReader does: the bag's own definitions, the default typestore for the rest."""
        from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

        typs: dict[str, Any] = dict(self._default.fielddefs) if self._default is not None else {}
        for c in self.connections:
            try:
                if c.msgdef.format == MessageDefinitionFormat.MSG and c.msgdef.data:
                    typs.update(get_types_from_msg(c.msgdef.data, c.msgtype))
                elif c.msgdef.format == MessageDefinitionFormat.IDL and c.msgdef.data:
                    typs.update(get_types_from_idl(c.msgdef.data))
            except Exception as exc:  # noqa: BLE001 - a damaged definition: the default types stay
                logger.warning("%s: message definition of %s unusable: %s", self.path, c.msgtype, exc)
        store = get_typestore(Stores.EMPTY)
        store.register(typs)
        return store

    def messages(self, connections: Collection[Any] = ()) -> Iterator[tuple[SalvagedConnection, int, bytes]]:
        want = {c.id: c for c in (connections or self.connections)}
        for i, f in enumerate(self.files):
            for ev in self._scan(i, f):
                if ev[0] == "msg" and (c := want.get((i, ev[1]))) is not None:
                    yield c, int(ev[2]), bytes(ev[3])

    def deserialize(self, raw: bytes, typ: str) -> Any:
        if self.is2:
            return self.typestore.deserialize_cdr(raw, typ)
        return self.typestore.deserialize_ros1(raw, typ)

    def close(self) -> None:
        self.connections = []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
