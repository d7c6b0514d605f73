"""The one error type of the message decoders, and the field checks that raise it.

Why here: the node's callbacks and the bag reader must survive any message, however malformed. Every
decoder in :mod:`vggt_ros.messages` raises :class:`MessageError` (or a subclass:
:class:`~vggt_ros.messages.images.UnsupportedEncoding`,
:class:`~vggt_ros.messages.camera_info.UncalibratedCamera`) for bad input -- wrong types, wrong
lengths, absurd sizes, missing fields -- and never lets a library error (numpy, OpenCV, ``struct``,
``AttributeError`` on a missing field, ...) escape, so callers catch exactly one type.
"""

from __future__ import annotations

import math
import numbers
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

MAX_IMAGE_PIXELS = 2**26
"""Largest image (height * width, 67 MP) the decoders accept, raw or compressed; bigger ones are
refused with :class:`MessageError` before any pixel buffer is allocated (a 57-byte PNG can claim
4 GP). VGGT works at 518 px, so this is far above any useful camera."""


class MessageError(ValueError):
    """A message that cannot be decoded; the text says which field and why."""


# Errors libraries raise on malformed input: re-raised as MessageError naming the field.
# (cv2.error is added by the image decoders, which import OpenCV.)
LIBRARY_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError, struct.error,
)


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (message payloads can be megabytes)."""
    try:
        r = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real error
        r = f"<{type(value).__name__}>"
    return r if len(r) <= limit else r[: limit - 3] + "..."


@contextmanager
def decoding(what: str, extra: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Re-raise library errors inside the block as :class:`MessageError` prefixed by ``what`` (the
    message and field being decoded); MessageError itself passes through unchanged."""
    try:
        yield
    except MessageError:
        raise
    except (*LIBRARY_ERRORS, *extra) as exc:
        raise MessageError(f"{what}: {type(exc).__name__}: {exc}") from exc


def int_field(value: Any, what: str, lo: int | None = None, hi: int | None = None) -> int:
    """A message integer field (Python/numpy int, or an integral finite float) as ``int`` within
    ``[lo, hi]``; anything else raises :class:`MessageError` naming ``what``."""
    if isinstance(value, numbers.Integral):
        v = int(value)
    elif isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        v = int(value)
    else:
        raise MessageError(f"{what}: expected an integer, got {short_repr(value)}")
    if lo is not None and v < lo:
        raise MessageError(f"{what}: {v} is below {lo}")
    if hi is not None and v > hi:
        raise MessageError(f"{what}: {v} is above {hi}")
    return v


def str_field(value: Any, what: str) -> str:
    """A message string field (``str``; ``bytes`` decoded as UTF-8) or :class:`MessageError`."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageError(f"{what}: not UTF-8 text: {exc}") from exc
    raise MessageError(f"{what}: expected a string, got {short_repr(value)}")


def flag_field(value: Any, what: str) -> bool:
    """A bool/uint8 flag (``is_bigendian``, ...) or :class:`MessageError`."""
    if isinstance(value, (numbers.Integral, np.bool_)):  # bool, int, numpy ints and bools
        return bool(value)
    raise MessageError(f"{what}: expected a bool or integer flag, got {short_repr(value)}")


def float_array(value: Any, what: str) -> np.ndarray:
    """Numbers (list, tuple, array.array, numpy array) as a new float64 array; strings, None,
    objects and ragged nests raise :class:`MessageError` naming ``what``."""
    with decoding(what):
        raw = np.asarray(value)
    if raw.dtype.kind not in "iuf":
        raise MessageError(f"{what}: expected numbers, got {raw.dtype} ({short_repr(value)})")
    return raw.astype(np.float64)  # always a copy
