"""The pipeline's global-consistency back end: the keyframe graph, every frame's measurements, loop
closure and the map -> odom correction, fed once per placed window.

Why one object: the pipeline's placement hands over what a window measured (poses in world units,
which frames are keyframes, the noise) and reads back the correction; the node and the replay then
get the optimised trajectory, the loop events and the corrected map from the same place.

Frames of reference: *odometry* is the core's world as placed window by window (continuous, what
``odom`` publishes); the graph's world is the optimised one (``map``). Both start at the first
keyframe. The correction ``map_T_odom`` is the latest keyframe's optimised pose times the inverse
of its odometry: it changes slowly as the graph averages, and jumps when a loop closes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from vggt_ros.core.config import PipelineConfig
from vggt_ros.core.frame_buffer import Counters, RateLimitedLogger
from vggt_ros.core.frames import rotation_angle_deg
from vggt_ros.core.window_types import WindowJob
from vggt_ros.graph.loop_closure import LoopClosure, LoopDetector, LoopJob, verify_loop_window
from vggt_ros.graph.pose_graph import EdgeNoise, KeyframeGraph
from vggt_ros.graph.trajectory import FrameObservations
from vggt_ros.prediction import Prediction

logger = logging.getLogger(__name__)

CONF_WEIGHT_RANGE = (0.25, 4.0)  # a frame's confidence weight, relative to its window's mean


@dataclass
class WindowNoise:
    """One window's per-frame noise: rotation std (rad), translation std (world units)."""

    rot: float
    trans: float


class GraphBackend:
    """See the module docstring. Not thread-safe: the pipeline calls it under its placement lock."""

    def __init__(self, config: PipelineConfig, counters: Counters, rl: RateLimitedLogger) -> None:
        c = config
        self.graph = KeyframeGraph(c.graph_max_keyframes)
        self.frames = FrameObservations(c.graph_max_frames)
        # loop candidates: only keyframes the graph still holds (it keeps at least its newest half)
        store = min(c.loop_max_keyframes, max(1, c.graph_max_keyframes // 2))
        self.loops = (LoopDetector(c.loop_min_score, c.loop_min_keyframe_gap, store,
                                   c.loop_cooldown_keyframes) if c.loop_closure else None)
        self.min_overlap = float(c.loop_min_overlap)
        self.gate_sigmas = float(c.loop_gate_sigmas)
        self._counters = counters
        self._rl = rl
        self._latest_keyframe: int | None = None
        self._events: list[LoopClosure] = []
        self.generation = 0  # bumped at each loop closure: the corrected map and path must be rebuilt
        self._last_noise = WindowNoise(np.radians(0.5), 0.01)

    def reset(self) -> None:
        self.graph.reset()
        self.frames.clear()
        if self.loops is not None:
            self.loops.clear()
        self._latest_keyframe = None
        self._events.clear()
        self.generation += 1

    # ------------------------------------------------------------------ windows
    def add_window(self, job: WindowJob, poses: np.ndarray, keyframe: list[bool], noise: WindowNoise,
                   mean_conf: np.ndarray, descriptors: np.ndarray | None) -> float:
        """Add what one placed window measured; seconds spent in the graph update.

        ``poses`` [S, 4, 4] are the window's frames in the odometry world (world units), ``keyframe``
        whether each frame is a keyframe, ``mean_conf`` [S] each frame's mean depth confidence.
        """
        stamps = [int(f.stamp_ns) for f in job.frames]
        anchor = stamps[0]
        self._last_noise = noise
        conf_w = np.clip(mean_conf / max(float(np.mean(mean_conf)), 1e-12), *CONF_WEIGHT_RANGE)
        if job.is_bootstrap:
            self.graph.add_keyframe(anchor, poses[0])
            self._new_keyframe(job, 0, descriptors)  # first: keyframes enter the loop store in time order
        if anchor not in self.graph:  # the anchor left the graph (a reset raced): nothing to hang on
            return 0.0
        a_T_world = np.linalg.inv(poses[0])
        a_graph = self.graph.pose(anchor)
        for i, (s, is_new) in enumerate(zip(stamps, job.new_mask)):
            if is_new:
                self.frames.placed(s, poses[i])
            if i == 0:
                continue
            rel = a_T_world @ poses[i]
            w = float(conf_w[i])
            if keyframe[i]:
                if s not in self.graph:
                    self.graph.add_keyframe(s, a_graph @ rel)
                    self._new_keyframe(job, i, descriptors)
                scale = 1.0 / np.sqrt(w)
                self.graph.add_relative(anchor, s, rel, EdgeNoise(noise.rot * scale, noise.trans * scale))
            else:
                self.frames.observe(s, anchor, rel, w / noise.trans**2)
        dt = self.graph.update()
        if self.graph.over_capacity():
            dt += self._drop_oldest_keyframes()
        self._counters.set("graph_keyframes", len(self.graph))
        self._counters.set("graph_factors", self.graph.num_factors)
        return dt

    def _drop_oldest_keyframes(self) -> float:
        """The graph's oldest half leaves it: the frames measured from those keyframes keep their
        optimised poses as final. Seconds spent (once per ``graph_max_keyframes / 2`` keyframes)."""
        t0 = time.perf_counter()
        drop = set(self.graph.oldest_half())
        affected = self.frames.anchored_on(drop)
        self.frames.fix(self.frames.poses(affected, self.graph.pose, self.is_keyframe))
        self.graph.drop_oldest()
        self._counters.add("graph_keyframes_dropped", len(drop))
        return time.perf_counter() - t0

    def _new_keyframe(self, job: WindowJob, i: int, descriptors: np.ndarray | None) -> None:
        s = int(job.frames[i].stamp_ns)
        self._latest_keyframe = s
        if self.loops is not None:
            desc = None if descriptors is None else descriptors[i]
            self.loops.add_keyframe(s, job.frames[i].image, desc)

    def is_keyframe(self, stamp: int) -> bool:
        return int(stamp) in self.graph

    # ------------------------------------------------------------------ loop closure
    def loop_job(self, query_state: tuple[np.ndarray, np.ndarray] | None) -> LoopJob | None:
        """The next loop to verify (the latest keyframe and its best candidate), once per keyframe.

        ``query_state``: the latest keyframe's stored (world-unit depth, confidence) at the network
        resolution, which fixes the verification window's scale."""
        if self.loops is None or self._latest_keyframe is None or query_state is None:
            return None
        return self.loops.candidate(self._latest_keyframe, query_state)

    def loop_candidate_stamps(self) -> set[int]:
        return set() if self.loops is None else self.loops.stamps()

    def close_loop(self, job: LoopJob, prediction: Prediction) -> LoopClosure | None:
        """Verify a predicted verification window; on success add its factors (from the match to
        every other keyframe in it) and re-optimise."""
        t0 = time.perf_counter()
        self._counters.add("loop_candidates")
        if job.match not in self.graph or job.query not in self.graph:
            self._counters.add("loop_rejected_forgotten")
            return None
        check = verify_loop_window(job, prediction, self.min_overlap)
        if not check.ok:
            self._counters.add(f"loop_rejected_{check.reason}")
            return None
        n = self._last_noise
        var_r, var_t = self.graph.relative_covariance_trace(job.match, job.query)
        G_m, G_q = self.graph.pose(job.match), self.graph.pose(job.query)
        graph_rel = np.linalg.solve(G_m, G_q)
        d = np.linalg.solve(graph_rel, check.match_T_query)
        dt = float(np.linalg.norm(d[:3, 3]))
        dr = float(np.radians(rotation_angle_deg(d[:3, :3])))
        k2 = self.gate_sigmas**2
        if dt**2 > k2 * (var_t + 3.0 * n.trans**2) or dr**2 > k2 * (var_r + 3.0 * n.rot**2):
            self._counters.add("loop_rejected_gate")
            self._rl.warning("loop_gate", "loop %d -> %d rejected: %.3g world units / %.2f deg off the "
                             "graph (%.1f sigma allowed)", job.query, job.match, dt, np.degrees(dr),
                             self.gate_sigmas)
            return None
        before = self.correction()
        for key, rel in check.match_T.items():  # the old place's keyframes are linked already: kept
            if key != job.match and key in self.graph:  # as measured, the loop is every old-new pair
                self.graph.add_relative(job.match, key, rel, EdgeNoise(n.rot, n.trans), loop=True)
        self.graph.update(iterations=4)
        if self.loops is not None:
            self.loops.closed()
        after = self.correction()
        delta = np.linalg.solve(before, after)
        self.generation += 1
        self._counters.add("loop_closures")
        event = LoopClosure(
            index=self.graph.num_loops, query_stamp_ns=job.query, match_stamp_ns=job.match,
            match_T_query=check.match_T_query, score=job.score, overlap=check.overlap,
            correction_translation=float(np.linalg.norm(delta[:3, 3])),
            correction_rotation_deg=rotation_angle_deg(delta[:3, :3]),
            seconds=time.perf_counter() - t0)
        self._events.append(event)
        logger.info("loop closed: keyframe %d -> %d (score %.3f, overlap %.2f), correction moved %.3g units",
                    job.query, job.match, job.score, check.overlap, event.correction_translation)
        return event

    def take_events(self) -> list[LoopClosure]:
        """Loop closures since the last call (the next window output carries them)."""
        out, self._events = self._events, []
        return out

    # ------------------------------------------------------------------ outputs
    def correction(self) -> np.ndarray:
        """``map_T_odom`` of the core (4x4): identity until the graph has a keyframe."""
        s = self._latest_keyframe
        odom = None if s is None else self.frames.odometry(s)
        if s is None or odom is None or s not in self.graph:
            return np.eye(4)
        return self.graph.pose(s) @ np.linalg.inv(odom)

    def optimised_pose(self, stamp: int) -> np.ndarray | None:
        return self.frames.pose(stamp, self.graph.pose, self.is_keyframe)

    def optimised_trajectory(self, stamps: list[int] | None = None) -> dict[int, np.ndarray]:
        """The optimised pose of every kept frame, or of ``stamps`` (the graph solved once for all
        keyframes)."""
        kf = self.graph.all_poses()
        return self.frames.poses(self.frames.stamps() if stamps is None else stamps, kf.__getitem__,
                                 kf.__contains__)

    def newest_stamps(self, n: int) -> list[int]:
        return self.frames.stamps()[-n:] if n > 0 else self.frames.stamps()
