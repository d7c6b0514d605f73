"""Keep streaming when a window does not fit in accelerator memory: retry it with fewer frames.

:class:`ShrinkOnOOM` wraps any predictor whose ``predict`` raises
:class:`~vggt_ros.model.engine.InferenceOutOfMemory`. On that error it frees the CUDA cache and
retries with the first frame (the anchor: it defines the window frame and carries the track queries)
plus the newest frames, shrinking until the window fits or ``min_frames`` is reached. The size that
fitted becomes a cap for later windows, so one OOM does not cost one failed forward per window.

``StreamingPipeline.process`` (rightly) rejects a prediction whose frame count differs from its job,
so a shrunk prediction must be integrated with a job of the same frames: :meth:`ShrinkOnOOM.run_window`
does that (a drop-in for ``pipeline.run_window(job, predictor)``). New frames left out of a shrunk
window are not published; they are counted in ``frames_dropped`` and logged.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from vggt_ros.model.engine import InferenceOutOfMemory
from vggt_ros.prediction import Prediction

logger = logging.getLogger(__name__)


def kept_indices(num_frames: int, keep: int) -> list[int]:
    """Frame 0 (anchor) + the ``keep - 1`` newest frames, in window order."""
    if keep >= num_frames:
        return list(range(num_frames))
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    return [0, *range(num_frames - (keep - 1), num_frames)]


def _empty_cuda_cache() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover - torch is a dependency of the engine
        pass


class ShrinkOnOOM:
    """Predictor wrapper that retries out-of-memory windows with fewer frames (see module docstring).

    Args:
        predictor: anything with ``predict(images, query_points, frame_keys)`` (the VGGT engine).
        min_frames: smallest window tried before giving up (the error is then re-raised).
        shrink_factor: each retry keeps ``floor(n * shrink_factor)`` frames (at least one fewer).
    """

    def __init__(self, predictor: Any, min_frames: int = 2, shrink_factor: float = 0.75) -> None:
        if isinstance(min_frames, bool) or not isinstance(min_frames, int) or min_frames < 1:
            raise ValueError(f"min_frames must be an int >= 1, got {min_frames!r}")
        if not 0.0 < shrink_factor < 1.0:
            raise ValueError(f"shrink_factor must be in (0, 1), got {shrink_factor!r}")
        self.predictor = predictor
        self.min_frames = min_frames
        self.shrink_factor = shrink_factor
        self.frame_cap: int | None = None  # largest window known to fit after an OOM
        self.oom_events = 0
        self.shrunk_windows = 0
        self.frames_dropped = 0
        self.last_kept: list[int] = []

    def reset_cap(self) -> None:
        """Forget the learnt frame cap (e.g. after other GPU users freed memory)."""
        self.frame_cap = None

    def counters(self) -> dict[str, int]:
        return {"oom_events": self.oom_events, "oom_shrunk_windows": self.shrunk_windows,
                "oom_frames_dropped": self.frames_dropped, "oom_frame_cap": self.frame_cap or 0}

    def _next_size(self, n: int) -> int:
        return max(self.min_frames, min(n - 1, math.floor(n * self.shrink_factor)))

    def predict_subset(
        self,
        images: Sequence[np.ndarray],
        query_points: np.ndarray | None = None,
        frame_keys: Sequence[Any] | None = None,
    ) -> tuple[Prediction, list[int]]:
        """Predict the largest window that fits: ``(prediction, indices of the frames it covers)``.

        Raises InferenceOutOfMemory if even ``min_frames`` frames do not fit.
        """
        total = len(images)
        size = total if self.frame_cap is None else min(total, self.frame_cap)
        while True:
            idx = kept_indices(total, size)
            try:
                pred = self.predictor.predict(
                    [images[i] for i in idx], query_points,
                    None if frame_keys is None else [frame_keys[i] for i in idx])
            except InferenceOutOfMemory:
                self.oom_events += 1
                _empty_cuda_cache()
                if size <= self.min_frames:
                    logger.error("out of memory even with %d frames; giving up on this window", size)
                    raise
                new_size = self._next_size(size)
                logger.warning("out of memory with %d frames; retrying with %d (anchor + newest)",
                               size, new_size)
                size = new_size
                self.frame_cap = size
                continue
            if len(idx) < total:
                self.shrunk_windows += 1
            self.last_kept = idx
            return pred, idx

    def predict(
        self,
        images: Sequence[np.ndarray],
        query_points: np.ndarray | None = None,
        frame_keys: Sequence[Any] | None = None,
    ) -> Prediction:
        """Predictor protocol; the result may cover fewer frames (``last_kept`` says which)."""
        return self.predict_subset(images, query_points, frame_keys)[0]

    def run_window(self, pipeline: Any, job: Any) -> Any:
        """``pipeline.run_window(job, self)`` that integrates a shrunk prediction with a matching job.

        ``job`` is a ``vggt_ros.core.pipeline.WindowJob``; the returned WindowOutput publishes only
        the new frames that were predicted. Dropped new frames are counted (``frames_dropped``).
        """
        t0 = time.perf_counter()
        pred, idx = self.predict_subset(job.images, job.query_points, job.frame_keys)
        t1 = time.perf_counter()
        if len(idx) < len(job.frames):
            kept = set(idx)
            dropped_new = sum(1 for i, new in enumerate(job.new_mask) if new and i not in kept)
            self.frames_dropped += dropped_new
            logger.warning("window %d shrunk to %d of %d frames after out of memory: %d new frames "
                           "not published", job.window_index, len(idx), len(job.frames), dropped_new)
            job = replace(job, frames=[job.frames[i] for i in idx], new_mask=[job.new_mask[i] for i in idx])
        out = pipeline.process(job, pred)
        out.timings["predict"] = t1 - t0
        for k, v in pred.timings.items():
            out.timings[f"predictor_{k}"] = float(v)
        out.timings["total"] = time.perf_counter() - t0
        return out
