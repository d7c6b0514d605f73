"""Input validation, the pending-frame queue and sliding-window assembly (thread-safe).

Threading model: the node calls :meth:`FrameBuffer.add_frame` from a subscription callback and
:meth:`FrameBuffer.take_window` from the inference worker; one lock protects both, and neither
waits on inference.

Slow-inference policy (``skip_policy``):

* ``keep_newest`` (default): at most ``stride`` frames wait; when a new frame arrives and the queue
  is full, the *oldest waiting* frame is skipped (counter ``skipped``). Each window therefore carries
  the newest frames, latency stays bounded, and the overlap chain never breaks because the anchor
  keyframe (and the other context frames) are kept separately from the queue.
* ``keep_all``: every frame is processed in order; the queue is bounded by ``max_pending_frames``
  and only beyond that the oldest waiting frame is dropped (counter ``dropped_queue_full``).

Size changes: a frame whose size differs from the stream's first accepted frame is treated as a
different camera and **rejected** (``rejected_size_change``, rate-limited warning). The chain is never
silently restarted (that would make the world frame jump); call ``reset()`` to accept a new size.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vggt_ros.core.types import Frame
from vggt_ros.params.table import default_of

logger = logging.getLogger(__name__)


class RateLimitedLogger:
    """Logs a warning per key at most once per ``interval_s``, with the count suppressed meanwhile."""

    def __init__(self, log: logging.Logger, interval_s: float) -> None:
        self._log = log
        self._interval = float(interval_s)
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        n = self._suppressed.pop(key, 0)
        self._last[key] = now
        suffix = f" ({n} similar suppressed)" if n else ""
        self._log.warning(msg + suffix, *args)


class Counters:
    """Named monotonic counters shared by the core's parts (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._c: dict[str, int] = {}

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._c[name] = self._c.get(name, 0) + int(n)

    def set(self, name: str, value: int) -> None:
        with self._lock:
            self._c[name] = int(value)

    def get(self, name: str) -> int:
        with self._lock:
            return self._c.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._c)

    def clear(self) -> None:
        with self._lock:
            self._c.clear()


def validate_frame(frame: Frame, expected_hw: tuple[int, int] | None) -> str:
    """Why ``frame`` is unusable ('' when it is fine). Checks content only, not the stamp order."""
    img = frame.image
    if not isinstance(img, np.ndarray):
        return "bad_image_type"
    if img.size == 0 or img.ndim < 2 or img.shape[0] == 0 or img.shape[1] == 0:
        return "empty_image"
    if img.dtype != np.uint8:
        return "bad_dtype"
    if img.ndim != 3 or img.shape[2] != 3:
        return "bad_channels"
    if expected_hw is not None and tuple(img.shape[:2]) != tuple(expected_hw):
        return "size_change"
    if frame.intrinsics is not None:
        k = np.asarray(frame.intrinsics)
        if k.shape != (3, 3) or not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
            return "bad_intrinsics"
    if frame.metric_depth is not None:
        d = np.asarray(frame.metric_depth)
        if d.ndim != 2 or d.size == 0:
            return "bad_metric_depth"
    if frame.odometry_pose is not None:
        p = np.asarray(frame.odometry_pose)
        if p.shape != (4, 4) or not np.all(np.isfinite(p)):
            return "bad_odometry_pose"
    return ""


@dataclass
class PlacedFrame:
    """A frame already integrated in the world (candidate context for later windows)."""

    frame: Frame
    is_keyframe: bool


class FrameBuffer:
    """Validated pending frames + the placed frames that anchor the next windows."""

    def __init__(
        self,
        window_size: int,
        stride: int,
        skip_policy: str = default_of("skip_policy"),
        max_pending_frames: int = default_of("max_pending_frames"),
        counters: Counters | None = None,
        log_interval_s: float = default_of("log_interval_s"),
        recent_frames: int = default_of("context_recent_frames"),
    ) -> None:
        if not 1 <= stride < window_size:
            raise ValueError(f"stride must be in [1, window_size - 1], got {stride} for {window_size}")
        self.window_size = int(window_size)
        self.stride = int(stride)
        self.skip_policy = skip_policy
        self.max_pending = int(max_pending_frames)
        self.recent_frames = int(recent_frames)
        self.counters = counters if counters is not None else Counters()
        self._rl = RateLimitedLogger(logger, log_interval_s)
        self._lock = threading.Lock()
        self._pending: deque[Frame] = deque()
        self._keyframes: list[Frame] = []  # newest last, at most num_context kept
        self._recent: list[Frame] = []  # placed frames, newest last, at most num_context kept
        self._hw: tuple[int, int] | None = None
        self._last_stamp: int | None = None

    @property
    def num_context(self) -> int:
        return self.window_size - self.stride

    @property
    def image_hw(self) -> tuple[int, int] | None:
        return self._hw

    def reset(self) -> None:
        """Forget everything (pending and placed frames, stream size and last stamp)."""
        with self._lock:
            self._pending.clear()
            self._keyframes.clear()
            self._recent.clear()
            self._hw = None
            self._last_stamp = None

    def add_frame(self, frame: Frame) -> bool:
        """Validate and enqueue ``frame``; False (counter ``rejected_<reason>`` + warning) if rejected."""
        self.counters.add("received")
        with self._lock:
            reason = validate_frame(frame, self._hw)
            if not reason and self._last_stamp is not None:
                if int(frame.stamp_ns) == self._last_stamp:
                    reason = "duplicate_stamp"
                elif int(frame.stamp_ns) < self._last_stamp:
                    reason = "out_of_order"
            if reason:
                self.counters.add(f"rejected_{reason}")
                self.counters.add("rejected")
                shape = getattr(frame.image, "shape", None)
                self._rl.warning(
                    reason, "frame %s rejected: %s (image shape %s, stream size %s)",
                    frame.stamp_ns, reason, shape, self._hw,
                )
                return False
            if self._hw is None:
                self._hw = (int(frame.image.shape[0]), int(frame.image.shape[1]))
            self._last_stamp = int(frame.stamp_ns)
            self._pending.append(frame)
            self.counters.add("accepted")
            if self.skip_policy == "keep_newest":
                # Keep enough for one window; a bootstrap window needs window_size frames.
                cap = self.window_size if not self._keyframes else self.stride
                while len(self._pending) > cap:
                    self._pending.popleft()
                    self.counters.add("skipped")
            else:
                while len(self._pending) > self.max_pending:
                    self._pending.popleft()
                    self.counters.add("dropped_queue_full")
                    self._rl.warning("queue_full", "pending queue full (%d): oldest frame dropped",
                                     self.max_pending)
            return True

    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    def take_window(
        self, flush: bool = False, covisible: Callable[[Frame, int], bool] | None = None
    ) -> tuple[list[Frame], list[Frame]] | None:
        """Pop the next window as ``(context_frames, new_frames)``; None until enough new frames.

        Bootstrap (nothing placed yet): ``window_size`` new frames and no context. Otherwise the
        context is the last keyframe, the ``recent_frames`` most recently placed frames, older
        keyframes, then more recent frames, ``window_size - stride`` in all (fewer early on); then
        ``stride`` new frames. The anchor,
        put first (it defines the window frame), is the oldest context keyframe for which
        ``covisible(keyframe, num_new)`` holds, else the last keyframe (no callback: always the last
        keyframe). ``flush`` takes whatever is pending (at least one frame).
        """
        with self._lock:
            bootstrap = not self._keyframes
            need = self.window_size if bootstrap else self.stride
            if len(self._pending) == 0 or (len(self._pending) < need and not flush):
                return None
            new = [self._pending.popleft() for _ in range(min(need, len(self._pending)))]
            if bootstrap:
                return [], new
            return self._context_locked(covisible, len(new)), new

    def _context_locked(self, covisible: Callable[[Frame, int], bool] | None = None,
                        num_new: int = 0) -> list[Frame]:
        latest = self._keyframes[-1]
        ctx = [latest]
        seen = {latest.stamp_ns}

        def take(frames: list[Frame], limit: int) -> None:
            for f in frames:
                if len(ctx) >= limit:
                    break
                if f.stamp_ns not in seen:
                    ctx.append(f)
                    seen.add(f.stamp_ns)

        newest_first = list(reversed(self._recent))
        take(newest_first, min(self.num_context, 1 + self.recent_frames))  # seen again: averaged later
        take(list(reversed(self._keyframes[:-1])), self.num_context)  # older keyframes: less drift
        take(newest_first, self.num_context)
        anchor = latest
        if covisible is not None:
            kfs = {f.stamp_ns for f in self._keyframes}
            for f in sorted(ctx, key=lambda fr: fr.stamp_ns):  # oldest keyframe first
                if f.stamp_ns in kfs and (f is latest or covisible(f, num_new)):
                    anchor = f
                    break
        rest = [f for f in ctx if f.stamp_ns != anchor.stamp_ns]
        # anchor first (it defines the window frame), the rest in time order
        return [anchor, *sorted(rest, key=lambda fr: fr.stamp_ns)]

    def mark_placed(self, frame: Frame, is_keyframe: bool) -> None:
        """Record an integrated frame so later windows can use it as anchor/context."""
        with self._lock:
            if is_keyframe:
                self._keyframes.append(frame)
                del self._keyframes[: max(0, len(self._keyframes) - self.num_context)]
            self._recent.append(frame)
            del self._recent[: max(0, len(self._recent) - self.num_context)]

    def retained_stamps(self) -> set[int]:
        """Stamps of placed frames that may still be used as context (others can be forgotten)."""
        with self._lock:
            return {f.stamp_ns for f in self._keyframes} | {f.stamp_ns for f in self._recent}

    def last_keyframe(self) -> Frame | None:
        with self._lock:
            return self._keyframes[-1] if self._keyframes else None
