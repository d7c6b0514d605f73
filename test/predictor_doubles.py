"""Predictor doubles shared by the runner and node tests."""

from __future__ import annotations

from typing import Any

from vggt_ros.core.types import PredictorBase


class OomAbove(PredictorBase):
    """Raises the engine's out-of-memory error for windows of more than ``limit`` frames (records the
    window sizes it was asked for)."""

    def __init__(self, inner: Any, limit: int) -> None:
        self.inner, self.limit, self.sizes = inner, limit, []

    def predict(self, images, query_points=None, frame_keys=None):
        from vggt_ros.model.engine import InferenceOutOfMemory

        self.sizes.append(len(images))
        if len(images) > self.limit:
            raise InferenceOutOfMemory(f"fake OOM for {len(images)} frames")
        return self.inner.predict(images, query_points, frame_keys)
