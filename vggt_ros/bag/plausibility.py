"""Plausibility checks of a bag's input that decode fine but are probably wrong (warnings, not errors).

Depth units: REP 118 says 32FC1 depth is metres and 16UC1 millimetres. A 32FC1 image holding
millimetres decodes to depths in the hundreds or thousands of "metres", and a 16UC1 image holding
whole metres to a few millimetres; either silently puts a 1000x factor into the depth metrics and
the oracle's scale. Indoor and street scenes have a median depth between a few decimetres and a few
tens of metres, so a median valid depth over 50 m or under 1 cm (16UC1 raw value < 10) is reported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_PLAUSIBLE_MEDIAN_M = 50.0
MIN_PLAUSIBLE_MEDIAN_M = 0.01
CHECK_FRAMES = 10  # frames with valid depth looked at (the first ones)


class DepthUnitCheck:
    """Median valid depth (metres, as decoded) of the first :data:`CHECK_FRAMES` frames with depth."""

    def __init__(self, frames: int = CHECK_FRAMES) -> None:
        self.frames = int(frames)
        self.medians: list[float] = []

    def add(self, depth_m: np.ndarray | None) -> None:
        if depth_m is None or len(self.medians) >= self.frames:
            return
        d = np.asarray(depth_m)
        with np.errstate(invalid="ignore"):
            v = d[np.isfinite(d) & (d > 0)]
        if v.size:
            self.medians.append(float(np.median(v)))

    @property
    def median(self) -> float:
        return float(np.median(self.medians)) if self.medians else float("nan")

    @property
    def implausible(self) -> bool:
        return not MIN_PLAUSIBLE_MEDIAN_M <= self.median <= MAX_PLAUSIBLE_MEDIAN_M and bool(self.medians)

    def warning(self, topic: str | None = None, encoding: str | None = None) -> str | None:
        """A warning text when the depth units look wrong, else None."""
        med = self.median
        if not self.medians:
            return None
        where = "GT depth" + (f" {topic}" if topic else "") + (f" ({encoding})" if encoding else "")
        if med > MAX_PLAUSIBLE_MEDIAN_M:
            return (
                f"{where} looks like millimetres: median valid depth {med:.4g} m as decoded (32FC1 must be "
                "metres, 16UC1 millimetres); depth metrics and the oracle's scale are off by 1000x"
            )
        if med < MIN_PLAUSIBLE_MEDIAN_M:
            return (
                f"{where} looks like metres in an integer image: median valid depth {med:.4g} m as "
                "decoded (16UC1/mono16 is read as millimetres); depth metrics and the oracle's scale are "
                "off by 1000x"
            )
        return None


def first_depth_encoding(src: Any) -> str | None:
    """The encoding of the first message on ``src.depth_topic`` (None when unreadable)."""
    try:
        conns = [c for c in src.reader.connections if c.topic == src.depth_topic]
        for conn, _, raw in src.reader.messages(connections=conns):
            return str(src.reader.deserialize(raw, conn.msgtype).encoding)
    except Exception:  # noqa: BLE001 - only used to word a warning
        return None
    return None
