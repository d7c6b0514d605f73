"""One policy pairing colour images with depth images: the nearest depth within a tolerance.

Used by the node (``metric_depth`` topic) and by the bag reader (ground-truth / metric depth), so
a replay pairs exactly as the node would. Depth and images each arrive in stamp order, interleaved
arbitrarily. An image is released as soon as no closer depth can still arrive (a depth at least as
far after the image as the best match has been seen), or once ``max_wait`` newer images wait behind
it (a missing depth stream never stalls the stream); it carries its depth, or none.
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
        self._waiting: deque[tuple[int, T]] = deque()
        self._lock = threading.Lock()

    def add_image(self, stamp_ns: int, item: T) -> list[Paired[T]]:
        """Queue an image; returns the images ready now, oldest first."""
        with self._lock:
            self._waiting.append((int(stamp_ns), item))
            return self._release(final=False)

    def add_depth(self, stamp_ns: int, depth: np.ndarray) -> list[Paired[T]]:
        """Store a depth image; returns the images that became ready."""
        with self._lock:
            self._depths.append((int(stamp_ns), depth))
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
        newest = self._depths[-1][0] if self._depths else None
        while self._waiting:
            stamp, item = self._waiting[0]
            best = self._best(stamp)
            settled = newest is not None and newest >= stamp + (best[0] if best else self.tolerance_ns)
            if not (final or settled or len(self._waiting) > self.max_wait):
                break
            self._waiting.popleft()
            out.append(Paired(item, stamp, best[2] if best else None, best[1] if best else None))
            while self._depths and self._depths[0][0] < stamp - self.tolerance_ns:
                self._depths.popleft()  # too old for this image, so for every later one
        return out
