"""Out-of-memory handling of a window: which errors mean "too big" and how a window shrinks."""

from __future__ import annotations

from dataclasses import replace

from vggt_ros.core.window_types import WindowJob


def oom_exception_types() -> tuple[type[BaseException], ...]:
    """Exception types meaning "the accelerator ran out of memory" (the engine's own, torch's).

    Without torch (an oracle-only install) there is no accelerator, and no such type."""
    try:
        from vggt_ros.model.engine import OUT_OF_MEMORY_ERRORS
    except ImportError:
        return ()
    return OUT_OF_MEMORY_ERRORS


def trim_job(job: WindowJob, max_frames: int) -> tuple[WindowJob, int]:
    """A copy of a window job with at most ``max_frames`` frames, and how many new frames it dropped.

    Why: after a GPU out-of-memory error the window must shrink without breaking the chain. Context
    frames go first (oldest first), the anchor (index 0 of a non-bootstrap window, it defines the
    window frame) is always kept; only then the oldest new frames are dropped (they are lost, and
    counted by the caller).
    """
    frames, mask = list(job.frames), list(job.new_mask)
    max_frames = max(2, int(max_frames))
    if len(frames) <= max_frames:
        return job, 0
    keep = list(range(len(frames)))
    bootstrap = all(mask)
    while len(keep) > max_frames:  # 1) context frames other than the anchor, oldest first
        ctx = [i for i in keep if not mask[i] and i != 0]
        if not ctx:
            break
        keep.remove(ctx[0])
    dropped = 0
    while len(keep) > max_frames:  # 2) then the oldest new frames (a bootstrap keeps its newest)
        new = [i for i in keep if mask[i]]
        if len(new) <= 1:
            break
        keep.remove(new[0])
        dropped += 1
    trimmed = replace(job, frames=[frames[i] for i in keep], new_mask=[mask[i] for i in keep])
    if bootstrap and job.query_points is not None and keep[0] != 0:
        trimmed.query_points = None  # the queries were chosen in a frame that is gone
    return trimmed, dropped
