"""Keyframe pose graph: every window's relative poses between the keyframes it sees, optimised
incrementally (gtsam iSAM2).

Why a graph: a keyframe is seen by several overlapping windows, each with its own prediction noise;
the odometry chain places each window once and moves on, so its error is one window's noise plus the
drift of the chain. The graph keeps every window's estimate as a factor and solves for the poses
that agree best with all of them, and a loop closure is one more factor that pulls a whole loop
straight. iSAM2 re-solves only the part of the graph a new factor touches: a window costs under a millisecond
up to 5000 keyframes (0.15 ms median at 500, 0.65 ms at 5000; ``benchmarks/pose_graph.py``).

Factors: SE(3) between the window's anchor (its first frame, a keyframe) and each other keyframe of
the window, in world units: the window's own scale was already solved against the stored depth by
the alignment (:mod:`vggt_ros.core.alignment`), so "SE(3) plus a per-window scale". Noise: the
measured per-frame noise (rotation in radians, translation as a fraction of the scene depth; see
:class:`vggt_ros.core.pose_state.NoiseEstimate`) divided by the square root of the frame's
confidence weight. Loop factors use a Cauchy loss, so one wrong loop cannot tear the graph apart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import gtsam
import numpy as np

PRIOR_SIGMA = 1e-6  # the first keyframe fixes the gauge (it defines the world)
LOOP_CAUCHY_K = 3.0  # loop factors: Cauchy loss, scale in sigmas
LOOP_ITERATIONS = 4  # extra iSAM2 updates after a loop factor (a loop moves many keyframes)


@dataclass
class EdgeNoise:
    """Standard deviations of one relative pose: rotation (rad) and translation (world units)."""

    rot: float
    trans: float

    def model(self) -> gtsam.noiseModel.Base:
        # gtsam's Pose3 tangent is (rotation, translation)
        return gtsam.noiseModel.Diagonal.Sigmas(np.array([self.rot] * 3 + [self.trans] * 3, np.float64))


class KeyframeGraph:
    """Keyframe poses (4x4, the core's world units) under every window's relative-pose factors.

    ``max_keyframes`` (0: no bound): beyond it, :meth:`drop_oldest` rebuilds the graph from its
    newest half, so memory and update time stay bounded over hours."""

    def __init__(self, max_keyframes: int = 0) -> None:
        self.max_keyframes = int(max_keyframes)
        self._factors: list[tuple[int, int, np.ndarray, EdgeNoise, bool]] = []  # to rebuild from
        params = gtsam.ISAM2Params()
        params.setRelinearizeThreshold(0.01)
        params.relinearizeSkip = 1
        self._params = params
        self._isam = gtsam.ISAM2(params)
        self._index: dict[int, int] = {}  # keyframe stamp -> gtsam key
        self._graph = gtsam.NonlinearFactorGraph()  # factors waiting for the next update
        self._values = gtsam.Values()
        self._cache: dict[int, np.ndarray] = {}  # estimates read since the last update
        self.num_factors = 0
        self.num_loops = 0
        self.last_update_s = 0.0

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, stamp: int) -> bool:
        return int(stamp) in self._index

    def reset(self) -> None:
        self.__init__(self.max_keyframes)  # type: ignore[misc]

    def _key(self, stamp: int) -> int:
        return self._index[int(stamp)]

    def add_keyframe(self, stamp: int, world_T_camera: np.ndarray) -> None:
        """A new keyframe with its initial estimate; the first one is fixed (the world's origin)."""
        stamp = int(stamp)
        if stamp in self._index:
            return
        key = len(self._index)  # keys are 0 .. len - 1, after a rebuild too
        self._index[stamp] = key
        pose = gtsam.Pose3(np.asarray(world_T_camera, np.float64))
        self._values.insert(key, pose)
        if key == 0:
            noise = gtsam.noiseModel.Isotropic.Sigma(6, PRIOR_SIGMA)
            self._graph.add(gtsam.PriorFactorPose3(key, pose, noise))
            self.num_factors += 1

    def add_relative(self, a: int, b: int, a_T_b: np.ndarray, noise: EdgeNoise, loop: bool = False) -> None:
        """A measured pose of keyframe ``b`` in keyframe ``a``'s camera (both already added)."""
        if loop:
            self.num_loops += 1  # the stream's count: a rebuild re-adds factors without counting them
        self._add_between(a, b, a_T_b, noise, loop)

    def _add_between(self, a: int, b: int, a_T_b: np.ndarray, noise: EdgeNoise, loop: bool) -> None:
        model = noise.model()
        if loop:
            model = gtsam.noiseModel.Robust.Create(gtsam.noiseModel.mEstimator.Cauchy.Create(LOOP_CAUCHY_K),
                                                   model)
        rel = gtsam.Pose3(np.asarray(a_T_b, np.float64))
        self._graph.add(gtsam.BetweenFactorPose3(self._key(a), self._key(b), rel, model))
        self.num_factors += 1
        if self.max_keyframes > 0:
            self._factors.append((int(a), int(b), np.asarray(a_T_b, np.float64).copy(), noise, loop))

    def over_capacity(self) -> bool:
        return 0 < self.max_keyframes < len(self._index)

    def oldest_half(self) -> list[int]:
        """The keyframes :meth:`drop_oldest` would drop (time order)."""
        return list(self._index)[: len(self._index) - self.max_keyframes // 2]

    def drop_oldest(self) -> list[int]:
        """Rebuild the graph from its newest ``max_keyframes // 2`` keyframes: their current
        estimates, the factors between them, and a prior on the oldest one kept with its marginal
        covariance (the dropped part's information about it). Returns the dropped stamps."""
        drop = self.oldest_half()
        if not drop:
            return []
        self.update()
        est = self._isam.calculateEstimate()
        keep = list(self._index)[len(drop):]
        first_key = self._index[keep[0]]
        prior_cov = self._isam.marginalCovariance(first_key)
        graph, values = gtsam.NonlinearFactorGraph(), gtsam.Values()
        index = {s: i for i, s in enumerate(keep)}
        for s in keep:
            values.insert(index[s], est.atPose3(self._index[s]))
        graph.add(gtsam.PriorFactorPose3(0, est.atPose3(first_key),
                                         gtsam.noiseModel.Gaussian.Covariance(prior_cov)))
        factors = [f for f in self._factors if f[0] in index and f[1] in index]
        self._isam, self._index, self._factors = gtsam.ISAM2(self._params), index, []
        self._graph, self._values = graph, values
        self.num_factors = 1
        for a, b, rel, noise, loop in factors:
            self._add_between(a, b, rel, noise, loop)
        self.update()
        return drop

    def update(self, iterations: int = 1) -> float:
        """Fold the waiting factors in (one iSAM2 step, more after a loop); seconds spent."""
        t0 = time.perf_counter()
        if self._graph.size() or self._values.size():
            self._isam.update(self._graph, self._values)
            self._graph = gtsam.NonlinearFactorGraph()
            self._values = gtsam.Values()
            for _ in range(max(0, iterations - 1)):
                self._isam.update()
        self._cache.clear()
        self.last_update_s = time.perf_counter() - t0
        return self.last_update_s

    def pose(self, stamp: int) -> np.ndarray:
        """The optimised pose of a keyframe (4x4); its initial estimate until the next update."""
        stamp = int(stamp)
        cached = self._cache.get(stamp)
        if cached is not None:
            return cached
        key = self._key(stamp)
        if self._values.exists(key):
            T = self._values.atPose3(key).matrix()
        else:
            T = self._isam.calculateEstimatePose3(key).matrix()
        self._cache[stamp] = T
        return T

    def all_poses(self) -> dict[int, np.ndarray]:
        """Every keyframe's optimised pose (one pass over the graph: after a loop, at the end)."""
        est = self._isam.calculateEstimate()
        out = {}
        for stamp, key in self._index.items():
            src = self._values if self._values.exists(key) else est
            out[stamp] = src.atPose3(key).matrix()
        self._cache.update(out)
        return out

    def relative_covariance_trace(self, a: int, b: int) -> tuple[float, float]:
        """Rotation (rad^2) and translation (world units^2) variance of ``b`` relative to ``a``: the
        sum of both marginals (an upper bound when they are positively correlated, as along a chain),
        traces over three axes. Used to gate loop candidates."""
        ca = self._isam.marginalCovariance(self._key(a))
        cb = self._isam.marginalCovariance(self._key(b))
        c = ca + cb
        return float(np.trace(c[:3, :3])), float(np.trace(c[3:, 3:]))

    def stamps(self) -> list[int]:
        return list(self._index)
