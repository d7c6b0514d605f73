"""StreamingPipeline: frames in, aligned windows out (the public API of the ROS-free core).

Usage (the node's worker thread and the bag replay do exactly this)::

    pipe = StreamingPipeline(PipelineConfig())
    pipe.add_frame(frame)                 # callback thread, cheap, never waits on inference
    job = pipe.next_window()              # worker: None until `stride` new frames are pending
    if job is not None:
        out = pipe.run_window(job, predictor)   # or: out = pipe.process(job, predictor.predict(...))
    ...
    # pipelined (the node): place on the worker, emit on an output thread while the next
    # window is predicted; both in the order the windows were taken
    placed = pipe.place(job, prediction)  # worker: poses, keyframes -> next_window() can go on
    out = pipe.emit(placed)               # output thread: depth, clouds, map
    ...
    job = pipe.flush()                    # end of stream: the remaining frames, if any

Windows must be processed in the order they were taken (one worker). The first window (bootstrap)
holds ``window_size`` new frames and defines the world (its first frame's camera, its units); every
later window = the anchor keyframe + other placed context frames + ``stride`` new frames, and is
placed by :mod:`vggt_ros.core.alignment`. Every new frame is published exactly once, with its stamp.

Drift control: the anchor (window frame) is the *oldest* context keyframe that still sees
``anchor_min_overlap`` of the predicted newest view, so several windows hang off one well-fused
keyframe instead of a chain of fresh ones. Each placed frame carries a pose variance (rotation in
units of one window's per-frame prediction noise, position in world units^2 with the per-frame
noise ~ the scene depth, since a window's prediction is normalised to its scene); the placement
weights context frames by inverse variance (the anchor itself carries no prediction noise in its own
window), and every later window that sees a context frame again fuses its leave-one-out estimate
into the stored pose (a per-frame Kalman-style update). Measured on the oracle (pure rotation, seeds
1-7): unaligned position error 1.28-1.56x the per-window noise, from 1.77-2.20x with the latest
keyframe as anchor and running-mean pose averaging.

Units: internally poses and depths are in *world units* (the first window's). Published values are
multiplied by the metric factor of :mod:`vggt_ros.core.scale` (metres per world unit) when known,
and expressed in the world frame of :mod:`vggt_ros.core.frames`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import numpy as np

from vggt_ros.core.alignment import Alignment, ContextRef, align_window, bootstrap_alignment, stored_usable
from vggt_ros.core.config import PipelineConfig
from vggt_ros.core.frame_buffer import Counters, FrameBuffer, RateLimitedLogger
from vggt_ros.core.frames import invert_pose, scale_pose, to_output_pose, world_T_optical_world
from vggt_ros.core.keyframes import KeyframeSelector
from vggt_ros.core.pose_state import (
    MIN_VARIANCE,
    NoiseEstimate,
    PlacedState,
    anchor_sees_newest,
    fuse_context_poses,
    median_depth,
    window_noise_t,
)
from vggt_ros.core.scale import MetricScale
from vggt_ros.core.tracks import TrackIdRegistry, make_queries, network_tracks_to_camera
from vggt_ros.core.types import Frame, Predictor, TrackOutput, WindowOutput
from vggt_ros.core.window_outputs import FrameOutputBuilder
from vggt_ros.core.window_types import PlacedWindow, WindowJob
from vggt_ros.core.world_map import WorldMap
from vggt_ros.graph.backend import GraphBackend, WindowNoise
from vggt_ros.graph.keyframe_clouds import KeyframeClouds
from vggt_ros.graph.loop_closure import LoopClosure, LoopJob
from vggt_ros.prediction import Prediction, PreprocessInfo

logger = logging.getLogger(__name__)


class StreamingPipeline:
    """Sliding-window streaming core (see the module docstring)."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self._lock = threading.RLock()  # placement state (buffer, keyframes, poses, scale, tracks)
        self._map_lock = threading.Lock()  # the map and the output step (lock order: _lock first)
        self._epoch = 0  # reset count: windows taken before a reset are never integrated after it
        self._counters = Counters()
        self._rl = RateLimitedLogger(logger, config.log_interval_s)
        self._buffer = FrameBuffer(
            config.window_size, config.stride, config.skip_policy, config.max_pending_frames,
            self._counters, config.log_interval_s, config.context_recent_frames,
        )
        self._selector = KeyframeSelector(
            config.min_parallax_px, config.min_rotation_deg, config.min_translation,
            config.min_keyframe_gap, config.max_keyframe_gap, config.flow_width,
        )
        self._scale = MetricScale(
            config.scale_source, config.fixed_scale, config.scale_freeze_samples,
            config.scale_min_motion, config.scale_min_pixels,
        )
        self._noise = NoiseEstimate(config.pose_rot_sigma_deg, config.pose_trans_sigma_rel)
        self._map = WorldMap(config.voxel_size, config.map_max_points)
        self._kf_clouds = KeyframeClouds(2 * config.map_max_points)
        self._tracks = TrackIdRegistry(config.track_match_px)
        self._world_T_optical = world_T_optical_world(config.world_frame_convention, config.base_T_camera)
        self._outputs = FrameOutputBuilder(config, self._counters, self._rl, self._world_T_optical)
        self._states: dict[int, PlacedState] = {}
        self._next_index = 0
        self._map_scale = 1.0  # metric factor the map's points were inserted with
        self._last_placed: list[int] = []  # stamps of the last two placed frames (motion extrapolation)
        self._graph = GraphBackend(config, self._counters, self._rl) if config.pose_graph else None

    # ------------------------------------------------------------------ stream side
    def add_frame(self, frame: Frame) -> bool:
        """Validate and queue a frame (thread-safe, cheap); False if rejected (counted, warned)."""
        return self._buffer.add_frame(frame)

    def next_window(self) -> WindowJob | None:
        """The next window to predict, or None until enough new frames arrived (thread-safe)."""
        return self._take(flush=False)

    def flush(self) -> WindowJob | None:
        """End of stream: a window with the remaining pending frames (None if nothing is pending)."""
        return self._take(flush=True)

    def _take(self, flush: bool) -> WindowJob | None:
        with self._lock:
            taken = self._buffer.take_window(flush=flush, covisible=self._anchor_covisible)
            if taken is None:
                return None
            context, new = taken
            frames = [*context, *new]
            queries = None
            if self.config.num_track_queries > 0:
                carried = self._tracks.carried_positions(int(frames[0].stamp_ns)) if context else None
                queries = make_queries(
                    frames[0].image, self.config.num_track_queries, self.config.track_query_mode, carried,
                    min_dist=max(2.0 * self.config.track_match_px, 2.0),
                )
            job = WindowJob(self._next_index, frames, [False] * len(context) + [True] * len(new), queries,
                            self._epoch)
            self._next_index += 1
            return job

    def _anchor_covisible(self, frame: Frame, num_new: int) -> bool:
        """Whether placed keyframe ``frame`` still sees enough of the window's newest frame.

        The newest frame's pose is extrapolated from the last two placed frames (constant motion per
        frame); the keyframe's confident depth pixels (a coarse grid) are projected into it and the
        fraction landing inside the image must reach ``anchor_min_overlap``.
        """
        thr = float(self.config.anchor_min_overlap)
        if thr >= 1.0:
            return False
        st = self._states.get(int(frame.stamp_ns))
        if st is None or len(self._last_placed) < 2:
            return False
        last = self._states.get(self._last_placed[-1])
        prev = self._states.get(self._last_placed[-2])
        if last is None or prev is None:
            return False
        return anchor_sees_newest(st, last, prev, num_new, thr)

    # ------------------------------------------------------------------ integration
    def run_window(self, job: WindowJob, predictor: Predictor) -> WindowOutput:
        """Predict ``job`` with ``predictor`` and integrate it; timings in the output."""
        t0 = time.perf_counter()
        pred = predictor.predict(job.images, job.query_points, job.frame_keys)
        t1 = time.perf_counter()
        out = self.process(job, pred)
        out.timings["predict"] = t1 - t0
        for k, v in pred.timings.items():
            out.timings[f"predictor_{k}"] = float(v)
        out.timings["total"] = time.perf_counter() - t0
        return out

    def process(self, job: WindowJob, prediction: Prediction) -> WindowOutput:
        """Align the window, select keyframes, update scale and map, build the outputs
        (:meth:`place` then :meth:`emit`)."""
        with self._lock:
            t0 = time.perf_counter()
            out = self.emit(self.place(job, prediction))
            out.timings["process"] = time.perf_counter() - t0
            return out

    def place(self, job: WindowJob, prediction: Prediction) -> PlacedWindow:
        """Integrate the window's poses: alignment, context fusion, keyframes, scale, tracks.

        After this returns, :meth:`next_window` can build the following window (its context is
        known). Windows must be placed in the order they were taken, and emitted in that order.
        """
        with self._lock:
            t0 = time.perf_counter()
            if job.epoch != self._epoch:
                placed = PlacedWindow(job, job.epoch, self._reject(job, "reset"))
            else:
                placed = self._place_locked(job, prediction)
            if placed.timings is not None:
                placed.timings["place"] = time.perf_counter() - t0
            return placed

    def emit(self, placed: PlacedWindow) -> WindowOutput:
        """Build the per-frame outputs of a placed window and insert them into the map.

        Thread-safe against :meth:`place` (a separate lock), so it can run while the next window is
        predicted and placed. A window placed before a :meth:`reset` is dropped (counted as rejected
        for reason ``reset``), never written into the new world's map.
        """
        with self._map_lock:
            if placed.rejected is not None:
                return placed.rejected
            if placed.epoch != self._epoch:
                return self._reject(placed.job, "reset")
            t0 = time.perf_counter()
            out = self._emit_locked(placed)
            out.timings["emit"] = time.perf_counter() - t0
            self._counters.set("map_points", len(self._map))
            self._counters.set("map_points_dropped", self._map.dropped)
            return out

    def _reject(self, job: WindowJob, reason: str, residual: float = float("nan")) -> WindowOutput:
        self._counters.add("windows_rejected")
        self._counters.add(f"windows_rejected_{reason}")
        self._counters.add("frames_lost_rejected", sum(job.new_mask))
        self._rl.warning(f"window_{reason}", "window %d rejected: %s (residual %.3g)", job.window_index,
                         reason, residual)
        return WindowOutput(job.window_index, False, residual=residual, rejection_reason=reason)

    def _check_prediction(self, job: WindowJob, pred: Prediction) -> str:
        S = len(job.frames)
        if pred.num_frames != S or pred.depth.shape[0] != S or pred.depth_conf.shape != pred.depth.shape:
            return "bad_prediction_shape"
        if pred.intrinsics.shape != (S, 3, 3) or len(pred.preprocess) != S:
            return "bad_prediction_shape"
        if not np.all(np.isfinite(pred.extrinsics)):
            return "non_finite_prediction"
        return ""

    def _place_locked(self, job: WindowJob, pred: Prediction) -> PlacedWindow:
        cfg = self.config
        timings: dict[str, float] = {}
        reason = self._check_prediction(job, pred)
        if reason:
            return PlacedWindow(job, job.epoch, self._reject(job, reason))
        t = time.perf_counter()
        if job.is_bootstrap:
            if self._states:
                return PlacedWindow(job, job.epoch, self._reject(job, "stale_bootstrap"))
            align: Alignment = bootstrap_alignment(pred)
        else:
            refs = []
            noise_t = window_noise_t(self._states, job)
            for i, (f, is_new) in enumerate(zip(job.frames, job.new_mask)):
                st = self._states.get(int(f.stamp_ns))
                if not is_new and st is not None:
                    own = 0.0 if i == 0 else 1.0  # the window frame itself carries no prediction noise
                    ref = ContextRef(
                        i, st.world_T_camera, st.depth, st.conf, st.K_net,
                        1.0 / max(st.variance + own, MIN_VARIANCE),
                        1.0 / max(st.t_variance + own * noise_t, MIN_VARIANCE * noise_t))
                    if st.usable is None:  # stored depth and confidence never change: once per frame
                        st.usable = stored_usable(ref, cfg.align_conf_quantile)
                    ref.usable = st.usable
                    refs.append(ref)
            if not refs or refs[0].window_index != 0:
                return PlacedWindow(job, job.epoch, self._reject(job, "anchor_lost"))
            align = align_window(
                pred, refs[0], refs[1:], cfg.align_conf_quantile, cfg.min_valid_pixels,
                cfg.max_alignment_residual, cfg.sim3_refine,
            )
        timings["alignment"] = time.perf_counter() - t
        if not align.accepted:
            return PlacedWindow(job, job.epoch, self._reject(job, align.reason, align.residual))
        self._counters.add("windows")

        poses = align.camera_poses(pred.extrinsics)
        new_idx = [i for i, m in enumerate(job.new_mask) if m]
        # world-unit depth of the new frames only (context frames keep their stored depth)
        depth_world = {i: pred.depth[i].astype(np.float32) * np.float32(align.scale) for i in new_idx}
        if job.is_bootstrap:
            new_var = 1.0
            noise_t = median_depth(np.stack([depth_world[i][::4, ::4] for i in new_idx]), step=1) ** 2
            new_tvar = noise_t
        else:
            new_var = 1.0 / sum(r.weight for r in refs) + 1.0
            new_tvar = 1.0 / sum(r.translation_weight for r in refs) + noise_t
        if not job.is_bootstrap and cfg.context_pose_averaging:
            fuse_context_poses(self._states, job, refs, align.scale, pred.extrinsics, noise_t, self._noise)
        # output masks: built here only where placement needs them (keyframe depth, depth scale
        # samples), the rest in emit, off the worker
        masks: dict[int, np.ndarray] = {}

        # ---- keyframes, placement and scale samples -------------------------------------------
        t = time.perf_counter()
        keyflags: dict[int, bool] = {}
        variances: dict[int, tuple[float, float, float]] = {}
        for n, i in enumerate(new_idx):
            f = job.frames[i]
            if job.is_bootstrap and n == 0:
                is_kf = True
            else:
                is_kf = self._selector.decide(f.image, poses[i]).is_keyframe
            keyflags[i] = is_kf
            if is_kf:
                d = depth_world[i][self._outputs.output_mask(pred, depth_world, masks, i)]
                med = float(np.median(d)) if d.size else float("nan")
                self._selector.set_keyframe(f.image, poses[i], med)
                self._counters.add("keyframes")
                if f.odometry_pose is not None:
                    self._scale.add_odometry_keyframe(poses[i], f.odometry_pose)
            else:
                self._selector.advance()
            if f.metric_depth is not None and self._scale.source == "depth":
                self._depth_scale_sample(f.metric_depth, depth_world[i],
                                         self._outputs.output_mask(pred, depth_world, masks, i),
                                         pred.preprocess[i])
            self._states[int(f.stamp_ns)] = PlacedState(
                poses[i], depth_world[i], pred.depth_conf[i].astype(np.float32),
                np.asarray(pred.intrinsics[i], np.float64), is_kf,
                variance=0.0 if (job.is_bootstrap and i == 0) else new_var,
                t_variance=0.0 if (job.is_bootstrap and i == 0) else new_tvar,
                scene_depth=median_depth(depth_world[i]),
            )
            st = self._states[int(f.stamp_ns)]
            # a copy: later windows fuse the state, and the noise estimate moves on
            variances[i] = (st.variance, st.t_variance, st.scene_depth, *self._noise.sigmas())
            self._buffer.mark_placed(f, is_kf)
            self._last_placed = [*self._last_placed[-1:], int(f.stamp_ns)]
        timings["keyframes"] = time.perf_counter() - t
        if self._graph is not None:
            timings["graph"] = self._feed_graph(job, pred, poses, keyflags, noise_t)
        tracks = self._track_output(job, pred)
        keep = self._buffer.retained_stamps()
        for s in [s for s in self._states if s not in keep]:
            del self._states[s]
        return PlacedWindow(
            job, job.epoch, None, pred, poses, depth_world, masks, keyflags, variances, float(align.scale),
            float(self._scale.scale), bool(self._scale.is_metric), float(align.residual), tracks, timings,
            self.map_T_odom())

    def _feed_graph(self, job: WindowJob, pred: Prediction, poses: np.ndarray, keyflags: dict[int, bool],
                    noise_t: float) -> float:
        """Hand the placed window to the pose graph (seconds spent)."""
        assert self._graph is not None
        is_kf = [keyflags[i] if is_new else self._states[int(f.stamp_ns)].is_keyframe
                 for i, (f, is_new) in enumerate(zip(job.frames, job.new_mask))]
        conf = pred.depth_conf.reshape(len(job.frames), -1)
        mean_conf = np.array([float(np.mean(c[np.isfinite(c)])) if np.isfinite(c).any() else 1.0
                              for c in conf])
        noise = WindowNoise(float(np.sqrt(self._noise.rot_var)),
                            float(np.sqrt(self._noise.trans_var * noise_t)))
        return self._graph.add_window(job, poses, is_kf, noise, mean_conf, pred.descriptors)

    def _emit_locked(self, placed: PlacedWindow) -> WindowOutput:
        cfg = self.config
        job, pred, timings = placed.job, placed.prediction, dict(placed.timings or {})
        metres_per_unit = placed.metres_per_unit
        if metres_per_unit != self._map_scale and len(self._map):
            self._map.rescale(metres_per_unit / self._map_scale, center=self._world_T_optical[:3, 3])
        self._map_scale = metres_per_unit
        new_idx = [i for i, m in enumerate(job.new_mask) if m]

        t = time.perf_counter()
        masks, depth_world = placed.masks, placed.depth_world
        frames_out = [self._outputs.frame_output(job.frames[i], pred, i, placed.poses[i], depth_world[i],
                                                 self._outputs.output_mask(pred, depth_world, masks, i),
                                                 placed.keyflags[i], placed.window_scale, metres_per_unit,
                                                 placed.is_metric, placed.pose_variances[i])
                      for i in new_idx]
        timings["outputs"] = time.perf_counter() - t
        t = time.perf_counter()
        correction = None
        if placed.map_T_odom is not None:  # the map is the pose graph's: corrected poses
            W = self._world_T_optical
            correction = W @ scale_pose(placed.map_T_odom, metres_per_unit) @ invert_pose(W)
        if placed.optimised_poses:  # a loop closed: re-place every keyframe's points
            self._kf_clouds.rebuild(self._map, placed.optimised_poses.get, metres_per_unit)
        for fo in frames_out:
            if cfg.map_update == "all" or fo.is_keyframe:
                T = fo.world_T_camera if correction is None else correction @ fo.world_T_camera
                self._map.add(fo.points.astype(np.float64) @ T[:3, :3].T + T[:3, 3], fo.colors)
            if fo.is_keyframe and self._graph is not None:
                self._kf_clouds.add(fo.stamp_ns, fo.points, fo.colors, metres_per_unit)
        timings["map"] = time.perf_counter() - t
        loops = [dataclasses.replace(e, match_T_query=scale_pose(e.match_T_query, metres_per_unit),
                                     correction_translation=e.correction_translation * metres_per_unit)
                 for e in placed.loop_closures]
        self._counters.add("frames_out", len(frames_out))
        return WindowOutput(job.window_index, True, frames_out, placed.tracks,
                            scale=float(placed.window_scale * metres_per_unit), residual=placed.residual,
                            timings=timings, map_T_odom=correction, loop_closures=loops,
                            optimised_poses=placed.optimised_poses)

    def _depth_scale_sample(self, metric_depth: np.ndarray, depth_world: np.ndarray, mask: np.ndarray,
                            info: PreprocessInfo) -> None:
        md = np.asarray(metric_depth, np.float64)
        hn, wn = depth_world.shape
        h0, w0 = info.original_hw
        hd, wd = md.shape
        u = info.network_to_original_pixels(np.stack([np.arange(wn), np.zeros(wn)], 1))[:, 0]
        v = info.network_to_original_pixels(np.stack([np.zeros(hn), np.arange(hn)], 1))[:, 1]
        cols = np.rint((u + 0.5) * wd / w0 - 0.5).astype(np.int64)
        rows = np.rint((v + 0.5) * hd / h0 - 0.5).astype(np.int64)
        ok = mask & ((rows >= 0) & (rows < hd))[:, None] & ((cols >= 0) & (cols < wd))[None, :]
        sampled = md[np.clip(rows, 0, hd - 1)[:, None], np.clip(cols, 0, wd - 1)[None, :]]
        self._scale.add_depth(sampled[ok], depth_world[ok])

    def _track_output(self, job: WindowJob, pred: Prediction) -> TrackOutput | None:
        if job.query_points is None or pred.tracks is None:
            return None
        positions = network_tracks_to_camera(np.asarray(pred.tracks), pred.preprocess)
        S, N = positions.shape[:2]
        vis = (np.asarray(pred.track_vis, np.float32) if pred.track_vis is not None
               else np.ones((S, N), np.float32))
        conf = (np.asarray(pred.track_conf, np.float32) if pred.track_conf is not None
                else np.ones((S, N), np.float32))
        anchor = int(job.frames[0].stamp_ns)
        ids = self._tracks.assign(anchor, job.query_points)
        # the anchor row is the query itself (exact, so continuation matching stays exact)
        positions[0] = np.asarray(job.query_points, np.float32)
        self._tracks.update(job.frame_keys, ids, positions, vis)
        self._counters.add("track_windows")
        return TrackOutput(job.frame_keys, 0, ids, positions, vis, conf, job.frames[0].frame_id)

    # ------------------------------------------------------------------ pose graph
    def map_T_odom(self) -> np.ndarray | None:
        """The pose graph's correction (core world, world units); None without a graph."""
        with self._lock:
            return None if self._graph is None else self._graph.correction()

    def loop_job(self) -> LoopJob | None:
        """A loop candidate's verification window to predict (the worker runs it after placing a
        window)."""
        with self._lock:
            latest = self._buffer.last_keyframe()
            if self._graph is None or latest is None:
                return None
            st = self._states.get(int(latest.stamp_ns))
            return self._graph.loop_job(None if st is None else (st.depth, st.conf))

    def close_loop(self, job: LoopJob, prediction: Prediction) -> LoopClosure | None:
        """Verify the predicted window of :meth:`loop_job`; the accepted loop closure, or None."""
        with self._lock:
            return None if self._graph is None else self._graph.close_loop(job, prediction)

    def optimised_trajectory(self, newest: int | None = None) -> dict[int, np.ndarray]:
        """Every kept frame's optimised pose, published world and units (empty without a graph).
        ``newest``: what a loop closure re-publishes, the newest ``newest`` frames (0: all; the Path
        keeps no more) and the keyframes whose points the map keeps: a bounded cost."""
        with self._lock:
            if self._graph is None:
                return {}
            stamps = None
            if newest is not None:
                stamps = sorted(set(self._graph.newest_stamps(newest)) | set(self._kf_clouds.stamps()))
            m = self._scale.scale
            return {s: to_output_pose(T, m, self._world_T_optical)
                    for s, T in self._graph.optimised_trajectory(stamps).items()}

    # ------------------------------------------------------------------ state
    def counters(self) -> dict[str, int]:
        """Snapshot of all counters (received, accepted, rejected_<reason>, skipped, windows, ...)."""
        c = self._counters.snapshot()
        for k in ("received", "accepted", "rejected", "skipped", "windows", "windows_rejected", "keyframes"):
            c.setdefault(k, 0)
        c["map_points"] = len(self._map)
        c["map_points_dropped"] = int(self._map.dropped)
        c["map_bytes"] = int(self._map.nbytes)
        c["pending"] = self._buffer.pending_count()
        c["scale_samples"] = self._scale.num_samples
        return c

    @property
    def world_map(self) -> WorldMap:
        return self._map

    def map_snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the map's points and colours, consistent with each other (taken under the output
        lock, so a window being emitted on another thread is either wholly in or wholly out)."""
        with self._map_lock:
            return np.array(self._map.points, copy=True), np.array(self._map.colors, copy=True)

    def save_map(self, path: str) -> int:
        """Write the map as PLY (see :meth:`WorldMap.save_ply`) while no window is emitted into it;
        returns the number of points written."""
        with self._map_lock:
            self._map.save_ply(path)
            return len(self._map)

    def retained_stamps(self) -> set[int]:
        """Stamps of placed frames that later windows may still use as context: per-frame data kept
        outside the pipeline (ground truth for the oracle) may be forgotten for every other placed
        frame. The keyframes kept as loop candidates count too: a loop verification predicts them again."""
        with self._lock:
            kept = self._graph.loop_candidate_stamps() if self._graph is not None else set()
        return self._buffer.retained_stamps() | kept

    @property
    def is_metric(self) -> bool:
        """True when outputs are in metres (scale source fixed, or depth/odometry with a sample)."""
        return self._scale.is_metric

    @property
    def scale(self) -> float:
        """Metres per world unit applied to the outputs (1.0 while non-metric)."""
        return self._scale.scale

    def reset(self) -> None:
        """Start over: new world at the next frame; counters are kept (they are monotonic).

        Windows taken or placed before the reset are rejected (reason ``reset``) when they come back
        to :meth:`place` or :meth:`emit`."""
        with self._lock, self._map_lock:
            self._epoch += 1
            self._buffer.reset()
            self._selector.reset()
            self._noise = NoiseEstimate(self.config.pose_rot_sigma_deg, self.config.pose_trans_sigma_rel)
            self._scale.reset()
            self._map.clear_points()
            self._kf_clouds.clear()
            self._tracks.reset()
            self._states.clear()
            if self._graph is not None:
                self._graph.reset()
            self._last_placed = []
            self._map_scale = 1.0
            self._counters.add("resets")
