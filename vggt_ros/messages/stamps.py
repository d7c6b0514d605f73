"""``builtin_interfaces/Time`` and ``std_msgs/Header`` fields, and the ``Fields`` dict type.

Why a module of its own: every other message family embeds a header, so this is the one place that
turns integer nanoseconds into ``(sec, nanosec)`` and back (exactly, no float rounding).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vggt_ros.messages.errors import MessageError, int_field

Fields = dict[str, Any]
"""A message as a plain nested dict of field values (see :mod:`vggt_ros.messages`)."""

NS_PER_S = 1_000_000_000


def ns_to_stamp(stamp_ns: int) -> tuple[int, int]:
    """Integer nanoseconds -> ``(sec, nanosec)`` with ``0 <= nanosec < 1e9`` (floor division, so a
    negative time still has a valid nanosec)."""
    sec, nanosec = divmod(int(stamp_ns), NS_PER_S)
    if not -(2**31) <= sec < 2**31:
        raise ValueError(f"stamp {stamp_ns} ns does not fit builtin_interfaces/Time (int32 seconds)")
    return sec, nanosec


def stamp_to_ns(sec: int, nanosec: int) -> int:
    """``(sec, nanosec)`` -> integer nanoseconds (exact, no float rounding)."""
    return int(sec) * NS_PER_S + int(nanosec)


def time_fields(stamp_ns: int) -> Fields:
    """``builtin_interfaces/Time`` fields."""
    sec, nanosec = ns_to_stamp(stamp_ns)
    return {"sec": sec, "nanosec": nanosec}


def header_fields(stamp_ns: int, frame_id: str) -> Fields:
    """``std_msgs/Header`` fields."""
    return {"stamp": time_fields(stamp_ns), "frame_id": str(frame_id)}


class MissingStamp(MessageError, TypeError):
    """No stamp found in an object: a :class:`MessageError` (and a ``TypeError``, as it always was)."""


def stamp_ns_of(obj: Any) -> int:
    """Nanoseconds of a Time-like object (``.sec``/``.nanosec``), a header (``.stamp``) or a stamped
    message (``.header.stamp``); also accepts the equivalent dicts.

    Raises :class:`MissingStamp` when none is found and :class:`MessageError` for a stamp whose
    ``sec`` is not an integer or whose ``nanosec`` is not an integer in ``[0, 2**32)``."""
    for path in ((), ("stamp",), ("header", "stamp")):
        cur = obj
        try:
            for name in path:
                cur = cur[name] if isinstance(cur, Mapping) else getattr(cur, name)
            if isinstance(cur, Mapping):
                sec, nanosec = cur["sec"], cur["nanosec"]
            else:
                sec, nanosec = cur.sec, cur.nanosec
        except Exception:  # noqa: BLE001 - any lookup failure (AttributeError, KeyError, odd __getattr__)
            continue
        return stamp_to_ns(int_field(sec, "stamp: sec"), int_field(nanosec, "stamp: nanosec", 0, 2**32 - 1))
    raise MissingStamp(f"cannot find a stamp in {type(obj).__name__}")
