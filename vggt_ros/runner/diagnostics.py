"""The one diagnostics report of a stream (values, level, message), for the node and the replay.

Why here: the node publishes it on ``/diagnostics`` and the replay writes it into its output bag; a
second builder would drift in keys and levels. Values come from the pipeline's counters, the
runner's (out-of-memory, worker errors, latency) and the caller's message counters (``rejected_*``
for messages that never became frames, ``frames_published``, ``tf_lookup_failures``).

The level and its reasons come from the runner's :class:`~vggt_ros.runner.health.StreamHealth`: the
last ``diagnostics_window_s`` seconds only, so no old event latches a level (see ``health`` for the
levels and thresholds). The cumulative counters stay in the values.
"""

from __future__ import annotations

import resource
import sys
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from vggt_ros.core.pipeline import StreamingPipeline
from vggt_ros.runner.health import ERROR, OK, STALE, WARN, StreamHealth
from vggt_ros.runner.stream_runner import StreamRunner

__all__ = ["ERROR", "OK", "STALE", "WARN", "DiagnosticsReport", "RateMeter", "StreamHealth",
           "diagnostics_report", "process_peak_rss_mb"]


class RateMeter:
    """Events per second over a sliding time window (the output rate)."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = float(window_s)
        self._t: deque[float] = deque()

    def add(self, n: int = 1, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._t.extend([now] * n)
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._t and now - self._t[0] > self.window_s:
            self._t.popleft()

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._trim(now)
        if len(self._t) < 2:
            return 0.0
        return len(self._t) / max(now - self._t[0], 1e-6)


@dataclass
class DiagnosticsReport:
    values: dict[str, Any]
    level: int
    message: str


def process_peak_rss_mb() -> float:
    """Peak resident set of this process (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def diagnostics_report(pipeline: StreamingPipeline, runner: StreamRunner, counters: Mapping[str, int], *,
                       output_rate_hz: float | None = None, device: str, scale_source: str,
                       now: float | None = None) -> DiagnosticsReport:
    """What the stream reports now: cumulative values, windowed values, and the level of the last
    ``runner.health.window_s`` seconds with its reasons.

    output_rate_hz: the caller's own output rate (node: frames published per wall second; replay:
    frames per wall second of processing), reported as ``output_rate_wall_hz``; ``output_rate_hz`` is
    the windowed rate on the health's clock. now: the health's clock unless given.
    """
    c = pipeline.counters()
    health = runner.health
    health.observe_totals(now, skipped=c.get("skipped", 0) + c.get("dropped_queue_full", 0),
                          rejected_messages=counters.get("rejected_messages", 0))
    status = health.evaluate(now, lag_frames=pipeline.config.window_size)
    r = runner.stats()
    lat = runner.latencies()
    metric = pipeline.is_metric
    values: dict[str, Any] = {
        "queue_depth": c.get("pending", 0),
        "frames_received": c.get("received", 0),
        "frames_accepted": c.get("accepted", 0),
        "frames_skipped": c.get("skipped", 0) + c.get("dropped_queue_full", 0),
        "frames_rejected": c.get("rejected", 0),
        "messages_rejected": counters.get("rejected_messages", 0),
        "windows": c.get("windows", 0),
        "windows_rejected": c.get("windows_rejected", 0),
        "keyframes": c.get("keyframes", 0),
        "frames_published": counters.get("frames_published", 0),
        "inference_latency_s": lat[-1] if lat else float("nan"),
        "inference_latency_mean_s": float(np.mean(lat)) if lat else float("nan"),
        "output_rate_hz": status.values["output_rate_hz"],
        "metric": metric,
        "scale_source": scale_source,
        "scale_m_per_unit": pipeline.scale,
        "depth_units": "m" if metric else "VGGT world units",
        "oom_events": r.get("oom_events", 0),
        "frames_dropped_oom": r.get("frames_dropped_oom", 0),
        "max_window_frames": runner.max_window_frames,
        "map_points": c.get("map_points", 0),
        "tf_lookup_failures": counters.get("tf_lookup_failures", 0),
        "device": device,
        "process_peak_rss_mb": process_peak_rss_mb(),
        **status.values,
    }
    if output_rate_hz is not None:
        values["output_rate_wall_hz"] = float(output_rate_hz)
    for k, v in sorted(c.items()):
        if k.startswith("rejected_"):
            values[f"frames_{k}"] = v
        elif k.startswith(("loop_", "graph_")):  # the pose graph: closures, candidates, rejections, size
            values[k] = v
    for k, v in sorted(counters.items()):
        if k.startswith("rejected_") and k != "rejected_messages":
            values[f"messages_{k}"] = v
    torch = sys.modules.get("torch")
    if torch is not None and device.startswith("cuda") and torch.cuda.is_available():
        values["gpu_memory_allocated_mb"] = torch.cuda.memory_allocated() / 2**20
        values["gpu_memory_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    units = "metric" if metric else "not metric (VGGT world units)"
    return DiagnosticsReport(values, status.level, f"{units}; {status.message}")
