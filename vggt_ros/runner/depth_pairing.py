"""One policy pairing colour images with depth images: the nearest depth within a tolerance.

Used by the node (``metric_depth`` topic) and by the bag reader (ground-truth / metric depth), so
a replay pairs exactly as the node would. Images leave in the order they came, each with the
nearest depth within the tolerance, or none, once no closer depth can still come: its depth has the
same stamp, or a depth that arrived after the image is at least as far after it as the best match
(the depth stream has moved past it; stamps that went back do not count as moving on). A missing
depth stream never stalls the stream: an image leaves once ``max_wait`` newer images wait behind it.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass
class Paired(Generic[T]):
    """An image (whatever the caller queued) with its stamp and matched depth (None: no match)."""

    item: T
    stamp_ns: int
    depth: np.ndarray | None
    depth_stamp_ns: int | None = None


class DepthPairing(Generic[T]):
    """Nearest-within-``tolerance_ns`` pairing (thread-safe). Items come out in the order queued."""

    def __init__(self, tolerance_ns: int, max_wait: int = 30, max_depths: int = 64) -> None:
        if tolerance_ns < 0:
            raise ValueError(f"depth pairing tolerance must be >= 0, got {tolerance_ns} ns")
        self.tolerance_ns = int(tolerance_ns)
        self.max_wait = int(max_wait)
        self._depths: deque[tuple[int, np.ndarray]] = deque(maxlen=int(max_depths))
        self._waiting: deque[list] = deque()  # [stamp, item, newest depth stamp seen since]
        self._lock = threading.Lock()

    def add_image(self, stamp_ns: int, item: T) -> list[Paired[T]]:
        """Queue an image; returns the images ready now, oldest first."""
        with self._lock:
            self._waiting.append([int(stamp_ns), item, None])
            return self._release(final=False)

    def add_depth(self, stamp_ns: int, depth: np.ndarray) -> list[Paired[T]]:
        """Store a depth image; returns the images that became ready."""
        stamp_ns = int(stamp_ns)
        with self._lock:
            self._depths.append((stamp_ns, depth))
            for w in self._waiting:  # the newest depth stamp each waiting image has seen arrive
                w[2] = stamp_ns if w[2] is None else max(w[2], stamp_ns)
            return self._release(final=False)

    def drain(self) -> list[Paired[T]]:
        """End of stream: every waiting image, with the best depth seen so far."""
        with self._lock:
            return self._release(final=True)

    def clear(self) -> None:
        with self._lock:
            self._depths.clear()
            self._waiting.clear()

    def _best(self, stamp_ns: int) -> tuple[int, int, np.ndarray] | None:
        best = None
        for s, d in self._depths:
            diff = abs(s - stamp_ns)
            if diff <= self.tolerance_ns and (best is None or diff < best[0]):
                best = (diff, s, d)
        return best

    def _release(self, final: bool) -> list[Paired[T]]:
        out: list[Paired[T]] = []
        while self._waiting:
            stamp, item, seen_after = self._waiting[0]
            best = self._best(stamp)
            margin = best[0] if best else self.tolerance_ns
            settled = (best is not None and best[0] == 0) or (
                seen_after is not None and seen_after >= stamp + margin)
            if not (final or settled or len(self._waiting) > self.max_wait):
                break
            self._waiting.popleft()
            out.append(Paired(item, stamp, best[2] if best else None, best[1] if best else None))
            oldest = min([stamp, *(w[0] for w in self._waiting)])
            while self._depths and self._depths[0][0] < oldest - self.tolerance_ns:
                self._depths.popleft()  # too old for every waiting image
        return out
