"""Metric scale: metres per world unit, one global factor for the whole stream.

The chained world has the units of the first window (windows are aligned to it, see alignment.py),
so one factor converts everything to metres. Sources:

* ``none``: factor 1, outputs flagged non-metric (VGGT units);
* ``fixed``: the user's factor, metric from the start;
* ``depth``: per frame with a metric depth image, the median of ``metric / predicted`` over valid
  pixels is one sample;
* ``odometry``: per keyframe, the ratio of the external odometry's translation to the world
  translation since the oldest remembered keyframe (up to 64 back: longest baseline), once the
  odometry moved at least ``scale_min_motion`` m.

The factor is the median of the samples so far (robust to outliers), re-estimated at each sample
until ``freeze_samples`` samples were seen; then it is frozen so the published map and trajectory
stay consistent. With ``freeze_samples = 0`` it is the median of the last 50 samples (slowly
updated, for long runs). Until the first sample the outputs are non-metric.
"""

from __future__ import annotations

import logging
from collections import deque

import numpy as np

from vggt_ros.params.table import SCALE_SOURCES, default_of

logger = logging.getLogger(__name__)

ROLLING_SAMPLES = 50


class MetricScale:
    """Estimator of the global metres-per-world-unit factor."""

    def __init__(
        self,
        source: str = default_of("scale_source"),
        fixed_scale: float = default_of("fixed_scale"),
        freeze_samples: int = default_of("scale_freeze_samples"),
        min_motion: float = default_of("scale_min_motion"),
        min_pixels: int = default_of("scale_min_pixels"),
    ) -> None:
        if source not in SCALE_SOURCES:
            raise ValueError(f"unknown scale_source {source!r}")
        self.source = source
        self.fixed_scale = float(fixed_scale)
        self.freeze_samples = int(freeze_samples)
        self.min_motion = float(min_motion)
        self.min_pixels = int(min_pixels)
        self.reset()

    def reset(self) -> None:
        self._samples: deque[float] = deque(maxlen=self.freeze_samples or ROLLING_SAMPLES)
        self._count = 0
        self._scale = self.fixed_scale if self.source == "fixed" else float("nan")
        self._odo: list[tuple[np.ndarray, np.ndarray]] = []  # (world position, odom position) per keyframe

    @property
    def is_metric(self) -> bool:
        return self.source != "none" and np.isfinite(self._scale)

    @property
    def scale(self) -> float:
        """Metres per world unit (1.0 while unknown)."""
        return self._scale if np.isfinite(self._scale) else 1.0

    @property
    def frozen(self) -> bool:
        return self.source == "fixed" or (self.freeze_samples > 0 and self._count >= self.freeze_samples)

    @property
    def num_samples(self) -> int:
        return self._count

    def _add(self, sample: float) -> bool:
        if not np.isfinite(sample) or sample <= 0 or self.frozen:
            return False
        self._samples.append(float(sample))
        self._count += 1
        old = self._scale
        self._scale = float(np.exp(np.median(np.log(np.asarray(self._samples)))))
        if self.frozen:
            logger.info("metric scale frozen at %.6g m/unit after %d samples", self._scale, self._count)
        return not (np.isfinite(old) and old == self._scale)

    def add_depth(self, metric_depth: np.ndarray, world_depth: np.ndarray) -> bool:
        """One sample from paired metric (metres) and predicted (world units) depths; True if changed."""
        if self.source != "depth":
            return False
        m = np.asarray(metric_depth, np.float64).ravel()
        w = np.asarray(world_depth, np.float64).ravel()
        ok = np.isfinite(m) & np.isfinite(w) & (m > 0) & (w > 0)
        if ok.sum() < self.min_pixels:
            return False
        return self._add(float(np.median(m[ok] / w[ok])))

    def add_odometry_keyframe(self, world_T_camera: np.ndarray, odom_T_camera: np.ndarray) -> bool:
        """One sample per keyframe once the odometry moved enough since an earlier keyframe."""
        if self.source != "odometry":
            return False
        pw = np.asarray(world_T_camera, np.float64)[:3, 3]
        po = np.asarray(odom_T_camera, np.float64)[:3, 3]
        changed = False
        # Longest baseline available (the oldest remembered keyframe): position noise inflates short
        # world distances (|a + noise| > |a| on average), which would bias the ratio low.
        for qw, qo in self._odo:
            do = float(np.linalg.norm(po - qo))
            if do >= self.min_motion:
                dw = float(np.linalg.norm(pw - qw))
                if dw > 0:
                    changed = self._add(do / dw)
                break
        self._odo.append((pw, po))
        del self._odo[:-64]
        return changed
