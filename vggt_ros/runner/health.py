"""StreamHealth: the stream's recent behaviour (a sliding time window) and the diagnostics level it earns.

Why a window: a level computed from cumulative counters latches (one bad message at start-up kept the
stream in WARN forever) and hides the present (6 of 7 windows rejected in the last seconds was still OK
when nothing had failed before). Here every level is computed from the last ``window_s`` seconds only:
input rate, output rate, window rejections, skipped and out-of-memory-dropped frames, rejected input,
worker errors and window latency. An old event ages out with its bucket.

The :class:`~vggt_ros.runner.stream_runner.StreamRunner` records what it sees (frames added, windows
emitted, out-of-memory events, worker errors); the report builder feeds what the runner cannot see from
cumulative counters (:meth:`StreamHealth.observe_totals`: frames skipped by the queue policy, messages
rejected before they became frames), of which only the increase since the last call counts.

Time: ``clock`` gives "now" in seconds. The node uses wall time (``time.monotonic``, the default); the
bag replay runs faster than real time, so it uses the bag's clock, ``clock=STAMP_CLOCK``: now is the
newest frame stamp received. Every method also takes an explicit ``now`` (tests inject it).

Memory is bounded whatever the event rate: events are counted into ``BUCKETS`` time buckets of
``window_s / BUCKETS`` seconds (dropped as they leave the window), each holding a few named counters and
at most ``LATENCY_SAMPLES_PER_BUCKET`` latencies.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

OK, WARN, ERROR, STALE = 0, 1, 2, 3  # diagnostic_msgs/DiagnosticStatus levels

STAMP_CLOCK = "stamps"  # clock: now = the newest frame stamp received (the bag replay)

BUCKETS = 20  # time resolution of the window: window_s / 20 (0.5 s at the default 10 s)
LATENCY_SAMPLES_PER_BUCKET = 64  # newest window latencies kept per bucket (the p50 needs no more)

DEFAULT_WINDOW_S = 10.0
DEFAULT_MAX_LATENCY_S = 2.0

# WARN thresholds, on the window only. Why these values:
MAX_WINDOW_REJECTION_RATIO = 0.3
"""Rejected windows / windows run. The odd rejection (a blurred frame, a fast turn) is normal; more than
about one in three means the poses are not being tracked reliably. (Windows dropped by a reset are not
failures and do not count.)"""
MAX_LOST_FRAME_RATIO = 0.2
"""(Frames skipped by the queue policy + frames dropped after out-of-memory) / frames received. Skipping
is by design when inference is slower than the camera, but losing more than a fifth of the frames makes
the trajectory and the map noticeably sparser: the model is too slow for the camera rate."""
MIN_OUTPUT_INPUT_RATIO = 0.5
"""Frames published / frames accepted (plus one window of frames the pipeline legitimately holds back).
Under half means the stream is falling behind or losing frames to rejections."""
# ERROR: nothing published while windows ran (all rejected, or dropped), any worker error, or every input
# rejected. STALE: no input in the window. The latency bound (diagnostics_max_latency_s) is a parameter:
# it depends on the hardware and the model size.


@dataclass
class HealthStatus:
    """The level, its reasons (most severe first) and the windowed values."""

    level: int
    reasons: list[str]
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def message(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "ok"


class _Bucket:
    __slots__ = ("index", "counts", "latencies")

    def __init__(self, index: int) -> None:
        self.index = index
        self.counts: dict[str, int] = {}
        self.latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES_PER_BUCKET)


class StreamHealth:
    """Counts of the stream's events over the last ``window_s`` seconds and the level they earn.

    Thread-safe: the node adds frames on its input thread, emits windows on its output thread and
    reports on a timer.
    """

    def __init__(self, window_s: float = DEFAULT_WINDOW_S, *, max_latency_s: float = DEFAULT_MAX_LATENCY_S,
                 clock: Callable[[], float] | Literal["stamps"] = time.monotonic) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = float(window_s)
        self.max_latency_s = float(max_latency_s)
        self._clock = None if clock == STAMP_CLOCK else clock
        self._width = self.window_s / BUCKETS
        self._buckets: deque[_Bucket] = deque(maxlen=BUCKETS + 1)
        self._lock = threading.Lock()
        self._stamp_now = 0.0  # STAMP_CLOCK: newest frame stamp, s
        self._first_input: float | None = None
        self._last_input: float | None = None
        self._totals: dict[str, int] = {}  # observe_totals: the last cumulative values seen

    @classmethod
    def from_params(cls, params: Mapping[str, Any],
                    clock: Callable[[], float] | Literal["stamps"] = time.monotonic) -> StreamHealth:
        """From the node's parameters (diagnostics_window_s, diagnostics_max_latency_s)."""
        return cls(float(params.get("diagnostics_window_s", DEFAULT_WINDOW_S)),
                   max_latency_s=float(params.get("diagnostics_max_latency_s", DEFAULT_MAX_LATENCY_S)),
                   clock=clock)

    # ------------------------------------------------------------------ time
    def now(self) -> float:
        return self._stamp_now if self._clock is None else float(self._clock())

    def _bucket(self, now: float) -> _Bucket:
        """The bucket of ``now`` (lock held); a time before the newest bucket counts in the newest."""
        idx = math.floor(now / self._width)
        self._prune(idx)
        if self._buckets and self._buckets[-1].index >= idx:
            return self._buckets[-1]
        b = _Bucket(idx)
        self._buckets.append(b)
        return b

    def _prune(self, idx: int) -> None:
        while self._buckets and self._buckets[0].index <= idx - BUCKETS:
            self._buckets.popleft()

    # ------------------------------------------------------------------ events
    def add(self, key: str, n: int = 1, now: float | None = None) -> None:
        """Count ``n`` events ``key`` now (oom_events, frames_dropped_oom, worker_errors, ...)."""
        if n <= 0:
            return
        with self._lock:
            b = self._bucket(self.now() if now is None else now)
            b.counts[key] = b.counts.get(key, 0) + int(n)

    def frame_received(self, stamp_ns: int, accepted: bool, now: float | None = None) -> None:
        """A frame reached the pipeline (accepted, or rejected as bad input)."""
        with self._lock:
            if self._clock is None:
                self._stamp_now = max(self._stamp_now, stamp_ns / 1e9)
            t = self.now() if now is None else now
            b = self._bucket(t)
            for key in ("received", "accepted" if accepted else "rejected_frames"):
                b.counts[key] = b.counts.get(key, 0) + 1
            self._note_input(t)

    def window_done(self, accepted: bool, frames: int, latency_s: float, reason: str = "",
                    now: float | None = None) -> None:
        """A window was emitted: accepted with ``frames`` frames to publish, or rejected for ``reason``
        (reason ``reset``: dropped by a reset, not a failure)."""
        with self._lock:
            b = self._bucket(self.now() if now is None else now)
            if accepted:
                keys = {"windows_accepted": 1, "frames_published": int(frames)}
                b.latencies.append(float(latency_s))
            else:
                keys = {"windows_reset" if reason == "reset" else "windows_rejected": 1}
            for k, n in keys.items():
                b.counts[k] = b.counts.get(k, 0) + n

    def observe_totals(self, now: float | None = None, **totals: int) -> None:
        """Feed cumulative counters (``skipped=``, ``rejected_messages=``): the increase since the last
        call is counted now. A total that went down (counters reset) starts again from there."""
        with self._lock:
            t = self.now() if now is None else now
            for key, total in totals.items():
                total = int(total)
                delta = total - self._totals.get(key, 0)
                self._totals[key] = total
                if delta > 0:
                    b = self._bucket(t)
                    b.counts[key] = b.counts.get(key, 0) + delta
                    if key == "rejected_messages":
                        self._note_input(t)

    def _note_input(self, t: float) -> None:
        if self._first_input is None:
            self._first_input = t
        self._last_input = t if self._last_input is None else max(self._last_input, t)

    # ------------------------------------------------------------------ evaluation
    def window_counts(self, now: float | None = None) -> tuple[dict[str, int], list[float]]:
        """The counters and latencies of the window ending now."""
        with self._lock:
            t = self.now() if now is None else now
            self._prune(math.floor(t / self._width))
            counts: dict[str, int] = {}
            lat: list[float] = []
            for b in self._buckets:
                for k, v in b.counts.items():
                    counts[k] = counts.get(k, 0) + v
                lat.extend(b.latencies)
            return counts, lat

    def evaluate(self, now: float | None = None, *, lag_frames: int = 0) -> HealthStatus:
        """The level of the window ending now, with its reasons.

        lag_frames: frames the pipeline holds back legitimately before they can be published (a
        window's worth), so that a slow camera or the first window is not reported as falling behind.
        """
        t = self.now() if now is None else now
        c, lat = self.window_counts(t)
        with self._lock:
            first, last = self._first_input, self._last_input
        g = c.get
        received, accepted, published = g("received", 0), g("accepted", 0), g("frames_published", 0)
        bad_frames, bad_msgs = g("rejected_frames", 0), g("rejected_messages", 0)
        w_ok, w_rej, w_oom = g("windows_accepted", 0), g("windows_rejected", 0), g("windows_dropped_oom", 0)
        attempted = w_ok + w_rej + w_oom
        lost = g("skipped", 0) + g("frames_dropped_oom", 0)
        span = min(self.window_s, max(t - first, self._width)) if first is not None else self.window_s
        p50 = float(np.median(lat)) if lat else float("nan")
        values: dict[str, Any] = {
            "window_s": self.window_s,
            "input_rate_hz": received / span,
            "output_rate_hz": published / span,
            "window_rejection_ratio": w_rej / attempted if attempted else 0.0,
            "skipped_ratio": lost / received if received else 0.0,
            "latency_p50_s": p50,
        }
        win = f"in the last {self.window_s:g} s"
        stale: list[str] = []
        errors: list[str] = []
        warns: list[str] = []
        if received == 0 and bad_msgs == 0:
            stale.append("no input yet" if last is None else f"no input for {t - last:.1f} s")
        if g("worker_errors", 0):
            errors.append(f"{g('worker_errors', 0)} worker errors {win}")
        if attempted and published == 0:
            if w_rej == attempted:
                errors.append(f"all {attempted} windows rejected {win}, nothing published")
            else:
                errors.append(f"nothing published {win} ({attempted} windows ran, {w_rej} rejected, "
                              f"{w_oom} dropped out of memory)")
        elif attempted and w_rej / attempted > MAX_WINDOW_REJECTION_RATIO:
            warns.append(f"{w_rej} of {attempted} windows rejected {win}")
        if (bad_frames or bad_msgs) and accepted == 0:
            errors.append(f"every input rejected {win} ({bad_msgs} messages / {bad_frames} frames)")
        elif bad_frames or bad_msgs:
            warns.append(f"{bad_msgs} messages / {bad_frames} frames rejected {win}")
        if received and lost / received > MAX_LOST_FRAME_RATIO:
            warns.append(f"{lost} of {received} frames skipped or dropped {win} ({g('skipped', 0)} by the "
                         f"queue policy, {g('frames_dropped_oom', 0)} after out-of-memory)")
        if g("oom_events", 0):
            warns.append(f"{g('oom_events', 0)} out-of-memory events {win}")
        if accepted and published + lag_frames < MIN_OUTPUT_INPUT_RATIO * accepted:
            warns.append(f"output {values['output_rate_hz']:.2f} Hz below {MIN_OUTPUT_INPUT_RATIO:g} x the "
                         f"input {accepted / span:.2f} Hz {win}")
        if lat and p50 > self.max_latency_s:
            warns.append(f"window latency p50 {p50:.2f} s > {self.max_latency_s:g} s {win}")
        level = STALE if stale else ERROR if errors else WARN if warns else OK
        return HealthStatus(level, stale + errors + warns, values)

    def bucket_count(self) -> int:
        """Buckets held now (the memory bound: at most BUCKETS + 1)."""
        with self._lock:
            return len(self._buckets)
