"""What the bag reader saw: counters of skipped/odd frames, damaged messages and recovered damage.

Why separate from the reader: the counters, the rate-limited warnings about damaged messages and the
recovery report (what a damaged bag lost) are shared by the reader and the salvage scanners
(:mod:`vggt_ros.bag.recovery`), and end up in the replay's metrics.json and log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

DAMAGE_LOG_FIRST = 3  # damaged messages logged one by one per topic; later ones are only counted


@dataclass
class ReadStats:
    """Counters filled while iterating; ``damaged`` counts skipped damaged messages per topic and
    ``recovery`` describes what was salvaged from a damaged bag file (empty when the bag was intact)."""

    counts: dict[str, int] = field(default_factory=dict)
    stamps: list[int] = field(default_factory=list)
    encodings_skipped: dict[str, int] = field(default_factory=dict)
    read_error: str = ""
    damaged: dict[str, int] = field(default_factory=dict)
    recovery: dict[str, Any] = field(default_factory=dict)
    _damaged_seen: set[tuple[str, int]] = field(default_factory=set, repr=False)

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def damaged_message(self, topic: str, time_ns: int, exc: BaseException | str) -> None:
        """Count one message that failed to deserialize or validate; warn for the first few per topic.
        A message read twice (CameraInfo: at open and with the frames) is counted once."""
        if (topic, int(time_ns)) in self._damaged_seen:
            return
        self._damaged_seen.add((topic, int(time_ns)))
        n = self.damaged[topic] = self.damaged.get(topic, 0) + 1
        self.add("damaged_messages")
        if n <= DAMAGE_LOG_FIRST:
            logger.warning(
                "skipped a damaged message on %s at t=%.3f s: %s%s",
                topic,
                time_ns / 1e9,
                exc,
                " (further damaged messages on this topic are counted, not logged)"
                if n == DAMAGE_LOG_FIRST
                else "",
            )

    def damage_warnings(self) -> list[str]:
        """One-line summaries for the replay's warnings (damaged messages, recovered file damage)."""
        out = []
        if self.damaged:
            out.append(
                f"{sum(self.damaged.values())} damaged messages skipped (per topic: {dict(self.damaged)})"
            )
        r = self.recovery
        if r:
            lost = r.get("messages_lost_by_topic") or {}
            out.append(
                f"bag file damaged ({r.get('reason', '')}): salvaged {r.get('messages_recovered', 0)} "
                f"messages, skipped {r.get('bytes_skipped', 0)} bytes in {len(r.get('skipped', []))} "
                f"ranges{f', lost per topic {lost}' if lost else ''}; {r.get('hint', '')}"
            )
        return out

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
