"""The units of work that pass between the pipeline's steps and threads: a window taken for
prediction (:class:`WindowJob`) and a window placed but not yet emitted (:class:`PlacedWindow`).

Why a module of their own: the stream runner, the out-of-memory trimming and the tests build and pass
these around without needing the pipeline itself (:mod:`vggt_ros.core.pipeline`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vggt_ros.core.types import Frame, TrackOutput, WindowOutput
from vggt_ros.prediction import Prediction


@dataclass
class WindowJob:
    """One window to predict: context frames (already placed, anchor first) then new frames."""

    window_index: int
    frames: list[Frame]
    new_mask: list[bool]
    query_points: np.ndarray | None = None
    epoch: int = 0  # the pipeline's reset count when the window was taken (stale after a reset)

    @property
    def images(self) -> list[np.ndarray]:
        return [f.image for f in self.frames]

    @property
    def frame_keys(self) -> list[int]:
        return [int(f.stamp_ns) for f in self.frames]

    @property
    def is_bootstrap(self) -> bool:
        """True for a window without placed frames (it defines the world)."""
        return all(self.new_mask)


@dataclass
class PlacedWindow:
    """A window integrated into the pose chain whose outputs are not built yet.

    Why a separate step: the next window's context (keyframes, placed frames and their poses)
    depends only on placement; the per-frame outputs and the map never feed back into it. A node
    can therefore predict window k+1 while window k's outputs are built and published
    (:meth:`vggt_ros.core.pipeline.StreamingPipeline.emit` on another thread).
    """

    job: WindowJob
    epoch: int
    rejected: WindowOutput | None = None  # set when the window was rejected (nothing to emit)
    prediction: Prediction | None = None
    poses: np.ndarray | None = None  # [S, 4, 4] internal world_T_camera, world units
    depth_world: dict[int, np.ndarray] | None = None  # new frames' [H, W] depth, world units
    masks: dict[int, np.ndarray] | None = None  # output masks of new frames (the rest built by emit)
    keyflags: dict[int, bool] | None = None
    # new frames' (variance, t_variance, scene_depth) of their PlacedState as placed (pose_state)
    # per new frame: variance, t_variance, scene depth, measured rotation / position noise sigmas
    pose_variances: dict[int, tuple[float, float, float, float, float]] | None = None
    window_scale: float = float("nan")
    metres_per_unit: float = 1.0  # metres per world unit at placement (the outputs use it)
    is_metric: bool = False
    residual: float = float("nan")
    tracks: TrackOutput | None = None
    timings: dict[str, float] | None = None
    map_T_odom: np.ndarray | None = None  # the pose graph's correction after this window (core world)
    loop_closures: list[Any] = field(default_factory=list)  # graph.loop_closure.LoopClosure accepted with it
    optimised_poses: dict[int, np.ndarray] | None = None  # after a loop: every frame's, published world

    @property
    def accepted(self) -> bool:
        return self.rejected is None
