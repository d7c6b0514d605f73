"""Scanners that read what is intact in a damaged bag file, record by record, past the damage.

Why: rosbags stops at the first bad record (a ROS 1 bag at its first bad chunk, an MCAP file without
its summary, a SQLite file with a bad page). These scanners walk the file themselves and yield events:

* ``("conn", id, topic, msgtype, MessageDefinition, digest)`` - a connection / channel / topic;
* ``("msg", id, log_time_ns, raw_bytes)`` - one message (raw, deserialized by the caller);
* ``("loss", start, end, reason, unit)`` - what was skipped: a byte range (unit ``"chunk"``,
  ``"bytes"``, ``"tail"``) or a SQLite row-id range (``"rows"``).

ROS 1: records are walked linearly; a chunk that does not decompress or parse is skipped whole, a
broken record header is re-synchronised by searching for the next chunk/connection record header
(``op=0x05``/``op=0x07``); a chunk cut off by truncation yields what its partial stream decompresses to.
MCAP: the same with the chunk opcode 0x06 (a checksum mismatch drops the chunk). SQLite: rows in id
order; when the table scan fails, rows are read one by one and unreadable ones are skipped.
"""

from __future__ import annotations

import bz2
import mmap
import os
import shutil
import sqlite3
import struct
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from zlib import crc32

from rosbags.interfaces import MessageDefinition, MessageDefinitionFormat

Event = tuple[Any, ...]
ROS1_MAGIC = b"#ROSBAG V2.0\n"
MCAP_MAGIC = b"\x89MCAP0\r\n"
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_MAX_HEADER = 1 << 20
MAX_PROBE_MISSES = 10_000  # SQLite rows probed one by one past the last readable one (max(id) unknown)
RESYNC_BACK = 1024  # how far before an ``op=`` field a ROS 1 record header may start


class _Bad(Exception):
    """A record that does not parse (reason in args[0]); ``truncated``: it runs past the file end."""

    def __init__(self, reason: str, truncated: bool = False) -> None:
        super().__init__(reason)
        self.truncated = truncated


# ---------------------------------------------------------------------------------------------- ROS 1
def _ros1_fields(buf: bytes | mmap.mmap, start: int, end: int) -> dict[str, bytes]:
    fields: dict[str, bytes] = {}
    pos = start
    while pos < end:
        if pos + 4 > end:
            raise _Bad("header field size cut off")
        (n,) = _U32.unpack_from(buf, pos)
        pos += 4
        if n == 0 or pos + n > end:
            raise _Bad("header field size too large")
        name, sep, value = bytes(buf[pos : pos + n]).partition(b"=")
        if not sep or not name:
            raise _Bad("header field without '='")
        fields[name.decode("latin-1")] = value
        pos += n
    return fields


def _ros1_record(buf: bytes | mmap.mmap, pos: int, size: int) -> tuple[dict[str, bytes], int, int]:
    """(header fields, data start, data end) of the record at ``pos``."""
    if pos + 4 > size:
        raise _Bad("record cut off", truncated=True)
    (hlen,) = _U32.unpack_from(buf, pos)
    if hlen < 5 or hlen > _MAX_HEADER:
        raise _Bad(f"implausible header length {hlen}")
    if pos + 8 + hlen > size:
        raise _Bad("record header cut off", truncated=True)
    fields = _ros1_fields(buf, pos + 4, pos + 4 + hlen)
    if len(fields.get("op", b"")) != 1:
        raise _Bad("record without op")
    (dlen,) = _U32.unpack_from(buf, pos + 4 + hlen)
    d0 = pos + 8 + hlen
    if d0 + dlen > size:
        raise _Bad("record data cut off", truncated=True)
    return fields, d0, d0 + dlen


def _ros1_time(v: bytes) -> int:
    sec, nsec = struct.unpack("<II", v)
    return sec * 1_000_000_000 + nsec


def _ros1_conn(fields: dict[str, bytes], data: bytes) -> Event:
    d = _ros1_fields(data, 0, len(data))
    msgtype = d["type"].decode()
    pkg, _, name = msgtype.partition("/")
    msgtype = f"{pkg}/msg/{name}" if "/msg/" not in msgtype else msgtype
    topic = fields["topic"].decode()
    msgdef = MessageDefinition(MessageDefinitionFormat.MSG, d.get("message_definition", b"").decode())
    return ("conn", _U32.unpack(fields["conn"])[0], topic, msgtype, msgdef, d.get("md5sum", b"").decode())


def _ros1_inner(raw: bytes) -> Iterator[Event]:
    """Records of a decompressed chunk; raises _Bad where they stop parsing."""
    pos = 0
    while pos < len(raw):
        fields, d0, d1 = _ros1_record(raw, pos, len(raw))
        op = fields["op"][0]
        if op == 7:
            yield _ros1_conn(fields, raw[d0:d1])
        elif op == 2:
            yield ("msg", _U32.unpack(fields["conn"])[0], _ros1_time(fields["time"]), raw[d0:d1])
        pos = d1


def _ros1_partial(compression: str, data: bytes) -> bytes:
    """What a cut-off chunk's compressed stream still decompresses to."""
    if compression == "none":
        return data
    if compression == "bz2":
        return bz2.BZ2Decompressor().decompress(data)
    from lz4.frame import LZ4FrameDecompressor  # type: ignore[import-untyped]

    return LZ4FrameDecompressor().decompress(data)


def _ros1_resync(mm: mmap.mmap, start: int, size: int) -> int | None:
    """Offset of the next plausible chunk or connection record after ``start``."""
    pos = start
    while True:
        found = (mm.find(b"\x04\x00\x00\x00op=\x05", pos), mm.find(b"\x04\x00\x00\x00op=\x07", pos))
        hits = [h for h in found if h >= 0]
        if not hits:
            return None
        m = min(hits)
        for s in range(m - 4, max(start, m - RESYNC_BACK) - 1, -1):
            try:
                _, d0, _ = _ros1_record(mm, s, size)
            except (_Bad, struct.error, UnicodeDecodeError):
                continue
            if s + 4 <= m < d0:
                return s
        pos = m + 1


def scan_ros1(path: Path) -> Iterator[Event]:
    from rosbags.rosbag1.reader import decompressors

    with path.open("rb") as f, closing(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)) as mm:
        size = len(mm)
        if mm[: len(ROS1_MAGIC)] != ROS1_MAGIC:
            yield ("loss", 0, size, "no ROS 1 bag magic", "bytes")
            return
        pos = len(ROS1_MAGIC)
        while pos < size:
            try:
                fields, d0, d1 = _ros1_record(mm, pos, size)
                op = fields["op"][0]
            except (_Bad, KeyError, struct.error) as exc:
                nxt = _ros1_resync(mm, pos + 1, size)
                if nxt is None and isinstance(exc, _Bad) and exc.truncated:
                    yield from _ros1_cut_chunk(mm, pos, size)
                    return
                yield ("loss", pos, size if nxt is None else nxt, f"bad record: {exc}", "bytes")
                if nxt is None:
                    return
                pos = nxt
                continue
            if op == 7:
                try:
                    yield _ros1_conn(fields, mm[d0:d1])
                except (KeyError, _Bad, struct.error, UnicodeDecodeError):
                    yield ("loss", pos, d1, "bad connection record", "bytes")
            elif op == 5:
                comp = fields.get("compression", b"").decode("latin-1")
                try:
                    raw = decompressors[comp](mm[d0:d1])
                except Exception as exc:  # noqa: BLE001 - bz2/lz4 errors, unknown compression
                    yield ("loss", pos, d1, f"chunk does not decompress ({exc})", "chunk")
                else:
                    yield from _ros1_chunk_records(raw, pos, d1)
            elif op == 2:
                yield ("msg", _U32.unpack(fields["conn"])[0], _ros1_time(fields["time"]), mm[d0:d1])
            pos = d1


def _ros1_chunk_records(raw: bytes, pos: int, end: int) -> Iterator[Event]:
    try:
        yield from _ros1_inner(raw)
    except (_Bad, KeyError, struct.error, UnicodeDecodeError) as exc:
        yield ("loss", pos, end, f"chunk records do not parse ({exc})", "chunk")


def _ros1_cut_chunk(mm: mmap.mmap, pos: int, size: int) -> Iterator[Event]:
    """The file ends inside the record at ``pos``: salvage the messages of a cut-off chunk."""
    try:
        (hlen,) = _U32.unpack_from(mm, pos)
        fields = _ros1_fields(mm, pos + 4, pos + 4 + hlen)
        if fields.get("op") == b"\x05":
            raw = _ros1_partial(fields.get("compression", b"").decode("latin-1"), mm[pos + 8 + hlen : size])
            yield from _ros1_inner_prefix(raw)
    except Exception:  # noqa: BLE001 - nothing more to salvage from the cut record
        pass
    yield ("loss", pos, size, "file ends inside a record (truncated)", "tail")


def _ros1_inner_prefix(raw: bytes) -> Iterator[Event]:
    try:
        yield from _ros1_inner(raw)
    except (_Bad, KeyError, struct.error, UnicodeDecodeError):
        return


# ----------------------------------------------------------------------------------------------- MCAP
def _str(buf: bytes, pos: int) -> tuple[str, int]:
    (n,) = _U32.unpack_from(buf, pos)
    return bytes(buf[pos + 4 : pos + 4 + n]).decode(), pos + 4 + n


def _mcap_chunk_header(mm: bytes | mmap.mmap, pos: int, size: int) -> tuple[int, int, str, int, int, int]:
    """(uncompressed size, crc, compression, data start, data end, record end) of the chunk at pos."""
    if pos + 9 > size:
        raise _Bad("chunk cut off", truncated=True)
    (length,) = _U64.unpack_from(mm, pos + 1)
    c = pos + 9
    if length < 40 or length > 1 << 40:
        raise _Bad(f"implausible chunk length {length}")
    if c + 40 > size:
        raise _Bad("chunk header cut off", truncated=True)
    t0, t1, usize = struct.unpack_from("<QQQ", mm, c)
    (crc,) = _U32.unpack_from(mm, c + 24)
    (clen,) = _U32.unpack_from(mm, c + 28)
    if clen > 8:
        raise _Bad("implausible chunk compression")
    comp = bytes(mm[c + 32 : c + 32 + clen]).decode("latin-1")
    if comp not in ("", "zstd", "lz4") or t0 > t1:
        raise _Bad("implausible chunk header")
    (csize,) = _U64.unpack_from(mm, c + 32 + clen)
    d0 = c + 40 + clen
    if d0 + csize != c + length:
        raise _Bad("chunk sizes do not add up")
    if c + length > size:
        raise _Bad("chunk cut off", truncated=True)
    return usize, crc, comp, d0, d0 + csize, c + length


def _mcap_records(buf: bytes | mmap.mmap, pos: int, end: int, schemas: dict[int, Any]) -> Iterator[Event]:
    """Schema/channel/message records in buf[pos:end] (raises _Bad where they stop parsing)."""
    from rosbags.rosbag2.storage_mcap import Schema, get_msgdef

    while pos < end:
        if pos + 9 > end:
            raise _Bad("record cut off", truncated=True)
        op = buf[pos]
        (length,) = _U64.unpack_from(buf, pos + 1)
        c, nxt = pos + 9, pos + 9 + length
        if op == 0 or op > 0x10 or nxt > end:
            raise _Bad(f"bad record (op {op}, length {length})", truncated=nxt > end and 0 < op <= 0x10)
        if op == 0x03:
            (sid,) = struct.unpack_from("<H", buf, c)
            name, p = _str(buf, c + 2)
            enc, p = _str(buf, p)
            (n,) = _U32.unpack_from(buf, p)
            schemas[sid] = Schema(sid, name, enc, bytes(buf[p + 4 : p + 4 + n]).decode())
        elif op == 0x04:
            cid, sid = struct.unpack_from("<HH", buf, c)
            topic, _ = _str(buf, c + 4)
            schema = schemas.get(sid)
            msgtype = schema.name if schema else "__schemaless__"
            yield ("conn", cid, topic, msgtype, get_msgdef(schema), "")
        elif op == 0x05:
            (cid,) = struct.unpack_from("<H", buf, c)
            (t,) = _U64.unpack_from(buf, c + 6)
            yield ("msg", cid, t, bytes(buf[c + 22 : nxt]))
        elif op == 0x02:  # footer
            return
        pos = nxt


def _mcap_resync(mm: mmap.mmap, start: int, size: int) -> int | None:
    pos = start
    while (m := mm.find(b"\x06", pos)) >= 0:
        try:
            _mcap_chunk_header(mm, m, size)
            return m
        except (_Bad, struct.error, UnicodeDecodeError):
            pos = m + 1
    return None


def scan_mcap(path: Path) -> Iterator[Event]:
    from rosbags.rosbag2.storage_mcap import DECOMPRESSORS

    schemas: dict[int, Any] = {}
    with path.open("rb") as f, closing(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)) as mm:
        size = len(mm)
        if mm[:8] != MCAP_MAGIC:
            yield ("loss", 0, size, "no MCAP magic", "bytes")
            return
        pos = 8
        while pos < size:
            op = mm[pos]
            try:
                if op != 0x06:
                    # one top-level record (schema, channel, message, summary, footer ...)
                    if op == 0x02:
                        return
                    if op == 0 or op > 0x10:
                        raise _Bad(f"unknown opcode {op}")
                    (length,) = _U64.unpack_from(mm, pos + 1) if pos + 9 <= size else (1 << 62,)
                    nxt = pos + 9 + length
                    if nxt > size:
                        raise _Bad("record cut off", truncated=True)
                    yield from _mcap_records(mm, pos, nxt, schemas)
                    pos = nxt
                    continue
                usize, crc, comp, d0, d1, nxt = _mcap_chunk_header(mm, pos, size)
            except (_Bad, struct.error, UnicodeDecodeError) as exc:
                nxt2 = _mcap_resync(mm, pos + 1, size)
                if nxt2 is None and isinstance(exc, _Bad) and exc.truncated:
                    yield from _mcap_cut_chunk(mm, pos, size, schemas)
                    return
                yield ("loss", pos, size if nxt2 is None else nxt2, f"bad record: {exc}", "bytes")
                if nxt2 is None:
                    return
                pos = nxt2
                continue
            try:
                raw = DECOMPRESSORS[comp](mm[d0:d1], usize)
                if len(raw) != usize or (crc and crc32(raw) != crc):
                    raise _Bad("size or checksum mismatch")
            except Exception as exc:  # noqa: BLE001 - zstd/lz4 errors, checksum
                yield ("loss", pos, nxt, f"chunk does not decompress ({exc})", "chunk")
            else:
                try:
                    yield from _mcap_records(raw, 0, len(raw), schemas)
                except (_Bad, struct.error, UnicodeDecodeError) as exc:
                    yield ("loss", pos, nxt, f"chunk records do not parse ({exc})", "chunk")
            pos = nxt


def _mcap_cut_chunk(mm: mmap.mmap, pos: int, size: int, schemas: dict[int, Any]) -> Iterator[Event]:
    """The file ends inside the record at ``pos``: salvage an uncompressed cut-off chunk."""
    try:
        if mm[pos] == 0x06 and pos + 49 <= size:
            (clen,) = _U32.unpack_from(mm, pos + 9 + 28)
            if clen == 0:
                d0 = pos + 9 + 40
                yield from _mcap_records(mm, d0, size, schemas)
    except Exception:  # noqa: BLE001 - the records stop at the cut
        pass
    yield ("loss", pos, size, "file ends inside a record (truncated)", "tail")


# --------------------------------------------------------------------------------------------- SQLite
def scan_db3(path: Path, defaults: dict[str, MessageDefinition] | None = None) -> Iterator[Event]:
    """Rows of a (possibly damaged) rosbag2 SQLite file in id order; unreadable rows are skipped."""
    con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        defs: dict[str, MessageDefinition] = {}
        try:
            for typ, enc, text in con.execute(
                "SELECT topic_type, encoding, encoded_message_definition FROM message_definitions"
            ):
                fmt = MessageDefinitionFormat.MSG if enc == "ros2msg" else MessageDefinitionFormat.IDL
                defs[typ] = MessageDefinition(fmt, text) if text else MessageDefinition(
                    MessageDefinitionFormat.NONE, "")
        except sqlite3.Error:
            pass
        try:
            topics = list(con.execute("SELECT id, name, type FROM topics"))
        except sqlite3.Error as exc:
            yield ("loss", 0, path.stat().st_size, f"topics table unreadable ({exc})", "bytes")
            return
        for tid, name, typ in topics:
            none = MessageDefinition(MessageDefinitionFormat.NONE, "")
            yield ("conn", tid, name, typ, defs.get(typ, none), "")
        try:
            (max_id,) = con.execute("SELECT max(id) FROM messages").fetchone()
        except sqlite3.Error:
            max_id = None
        last = 0
        while True:
            try:
                for mid, tid, t, data in con.execute(
                    "SELECT id, topic_id, timestamp, data FROM messages WHERE id > ? ORDER BY id", (last,)
                ):
                    last = mid
                    yield ("msg", tid, int(t), bytes(data))
                return
            except sqlite3.Error as exc:
                reason = str(exc)
            # row by row until one reads again
            first_bad, misses, bad, row = last + 1, 0, 0, None
            while max_id is None or last < max_id:
                last += 1
                try:
                    row = con.execute(
                        "SELECT id, topic_id, timestamp, data FROM messages WHERE id = ?", (last,)
                    ).fetchone()
                except sqlite3.Error:
                    bad += 1
                    row = None
                if row is not None:
                    break
                misses += 1
                if max_id is None and misses > MAX_PROBE_MISSES:
                    break
            if row is None and max_id is None:  # the table's tail is unreadable: its extent is unknown
                why = f"rows from id {first_bad} on unreadable ({reason})"
                yield ("loss", first_bad, first_bad, why, "rows")
                return
            if bad:
                end = last - (row is not None)
                yield ("loss", first_bad, end, f"{bad} rows unreadable ({reason})", "rows")
            if row is None:
                return
            yield ("msg", row[1], int(row[2]), bytes(row[3]))
    finally:
        con.close()


def db3_padded_copy(path: Path, tmpdir: Path) -> Path | None:
    """A copy of a truncated SQLite file padded with zeros to the size its header declares, or None.

    SQLite refuses a file whose schema names root pages past its end (e.g. the timestamp index that
    rosbag2 writes last); padded, the intact pages read again and the missing ones fail one by one."""
    with path.open("rb") as f:
        head = f.read(100)
    if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
        return None
    page = struct.unpack(">H", head[16:18])[0] or 1
    page = 65536 if page == 1 else page
    want = struct.unpack(">I", head[28:32])[0] * page
    if want <= path.stat().st_size:
        return None
    out = tmpdir / path.name
    shutil.copyfile(path, out)
    os.truncate(out, want)
    return out


def db3_corrupt_pages(path: Path, limit: int = 5) -> list[str]:
    """SQLite's own account of the damage (``PRAGMA quick_check``), first ``limit`` lines."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
        try:
            rows = [r[0] for r in con.execute(f"PRAGMA quick_check({int(limit)})")]
        finally:
            con.close()
    except sqlite3.Error as exc:
        return [str(exc)]
    return [] if rows == ["ok"] else rows
