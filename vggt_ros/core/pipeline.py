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

import logging
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from vggt_ros.core.alignment import (
    Alignment,
    ContextRef,
    align_window,
    bootstrap_alignment,
    context_weights,
    placement_estimates,
    robust_mean_similarity,
    stored_usable,
)
from vggt_ros.core.config import PipelineConfig
from vggt_ros.core.frame_buffer import Counters, FrameBuffer, RateLimitedLogger
from vggt_ros.core.frames import to_output_pose, world_T_optical_world
from vggt_ros.core.keyframes import KeyframeSelector
from vggt_ros.core.scale import MetricScale
from vggt_ros.core.tracks import TrackIdRegistry, make_queries, network_tracks_to_camera
from vggt_ros.core.types import Frame, FrameOutput, Predictor, TrackOutput, WindowOutput
from vggt_ros.core.world_map import WorldMap
from vggt_ros.prediction import Prediction, PreprocessInfo

logger = logging.getLogger(__name__)

MIN_VARIANCE = 1e-3  # floor of the pose variances (the world's first frame is exact: variance 0)


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
    (:meth:`StreamingPipeline.emit` on another thread).
    """

    job: WindowJob
    epoch: int
    rejected: WindowOutput | None = None  # set when the window was rejected (nothing to emit)
    prediction: Prediction | None = None
    poses: np.ndarray | None = None  # [S, 4, 4] internal world_T_camera, world units
    depth_world: dict[int, np.ndarray] | None = None  # new frames' [H, W] depth, world units
    masks: dict[int, np.ndarray] | None = None  # output masks of new frames (the rest built by emit)
    keyflags: dict[int, bool] | None = None
    window_scale: float = float("nan")
    metres_per_unit: float = 1.0  # metres per world unit at placement (the outputs use it)
    is_metric: bool = False
    residual: float = float("nan")
    tracks: TrackOutput | None = None
    timings: dict[str, float] | None = None

    @property
    def accepted(self) -> bool:
        return self.rejected is None


@dataclass
class _PlacedState:
    world_T_camera: np.ndarray  # internal optical world, world units
    depth: np.ndarray  # [H, W] world units, network resolution
    conf: np.ndarray
    K_net: np.ndarray
    is_keyframe: bool
    variance: float = 1.0  # rotation uncertainty, in units of one window's per-frame prediction noise
    t_variance: float = 1.0  # position uncertainty, world units^2 (per-frame noise ~ the scene depth)
    scene_depth: float = float("nan")  # median confident depth, world units (scale of its window's noise)
    usable: np.ndarray | None = None  # pixels usable for alignment (alignment.stored_usable), computed once


def _median_depth(depth: np.ndarray, step: int = 4) -> float:
    """Median of the finite positive depths (subsampled by ``step`` per axis; NaN if none)."""
    d = depth[..., ::step, ::step]
    d = d[np.isfinite(d) & (d > 0)]
    return float(np.median(d)) if d.size else float("nan")


def valid_conf_mask(conf: np.ndarray, percentile: float, conf_min: float) -> np.ndarray:
    """Pixels kept for outputs: finite conf >= the frame's percentile and >= the absolute floor."""
    ok = np.isfinite(conf) & (conf >= conf_min)
    if percentile > 0 and np.any(ok):
        ok &= conf >= np.percentile(conf[ok], percentile)
    return ok


def network_index_maps(info: PreprocessInfo, out_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray,
                                                                                  np.ndarray, np.ndarray]:
    """Nearest network row/col for each output row/col (output = camera image resized to ``out_hw``)."""
    h0, w0 = info.original_hw
    ho, wo = out_hw
    xo = (np.arange(wo) + 0.5) * (w0 / wo) - 0.5
    yo = (np.arange(ho) + 0.5) * (h0 / ho) - 0.5
    xn = info.original_to_network_pixels(np.stack([xo, np.zeros(wo)], 1))[:, 0]
    yn = info.original_to_network_pixels(np.stack([np.zeros(ho), yo], 1))[:, 1]
    x0, y0, x1, y1 = info.valid_network_box()
    cols = np.rint(xn).astype(np.int64)
    rows = np.rint(yn).astype(np.int64)
    col_ok = (cols >= x0) & (cols < x1)
    row_ok = (rows >= y0) & (rows < y1)
    hn, wn = info.network_hw
    return np.clip(rows, 0, hn - 1), np.clip(cols, 0, wn - 1), row_ok, col_ok


def scale_intrinsics(K: np.ndarray, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    """Intrinsics of an image resized from ``from_hw`` to ``to_hw`` (pixel centres at integers)."""
    sx = to_hw[1] / from_hw[1]
    sy = to_hw[0] / from_hw[0]
    out = np.array(K, np.float64, copy=True)
    out[0, 0] *= sx
    out[0, 1] *= sx
    out[1, 1] *= sy
    out[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    out[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return out


def cloud_pixels(valid: np.ndarray, stride: int, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the per-frame cloud: every ``stride``-th valid pixel, evenly thinned to max_points."""
    sub = valid[::stride, ::stride] if stride > 1 else valid  # a view: no copy of the mask
    r, c = np.nonzero(sub)
    if max_points and len(r) > max_points:
        keep = np.linspace(0, len(r) - 1, max_points).astype(np.int64)
        r, c = r[keep], c[keep]
    if stride > 1:
        r, c = r * stride, c * stride
    return r, c


def sampled_depth_points(depth: np.ndarray, K: np.ndarray, stride: int,
                         max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame points ``[N, 3]`` float32 of finite depth pixels (every ``stride``-th), and flat ids.

    Float64 ray arithmetic (skew honoured) rounded once to float32. Why this shape: the products are
    computed on the (strided) image as whole planes, written into one ``[h, w, 3]`` record buffer, and
    the kept pixels taken once as 12-byte records; per-point gathers of each coordinate cost ~6x more
    for a full-resolution cloud."""
    h, w = depth.shape
    s = max(int(stride), 1)
    sub = depth[::s, ::s] if s > 1 else depth
    with np.errstate(invalid="ignore"):
        sub_valid = (sub > 0) & (sub < np.inf)  # finite and positive, on the strided grid only
    idx = np.flatnonzero(sub_valid)  # row-major ids in the strided grid
    thinned = bool(max_points) and len(idx) > max_points
    if thinned:
        idx = idx[np.linspace(0, len(idx) - 1, max_points).astype(np.int64)]
    hs, ws = sub_valid.shape
    if s > 1:
        flat = (idx // ws) * (s * w) + (idx % ws) * s
    else:
        flat = idx
    if len(idx) == 0:
        return np.zeros((0, 3), np.float32), flat
    rows = np.arange(0, h, s)
    y_ray = ((rows - K[1, 2]) / K[1, 1])[:, None]
    if K[0, 1] == 0:
        x_ray = ((np.arange(0, w, s) - K[0, 2]) / K[0, 0])[None, :]
    else:
        x_ray = (np.arange(0, w, s)[None, :] - K[0, 2] - K[0, 1] * y_ray) / K[0, 0]
    with np.errstate(invalid="ignore", over="ignore"):  # invalid pixels (inf * 0) are not kept
        x = np.multiply(sub, x_ray, out=np.empty((hs, ws), np.float32), dtype=np.float64, casting="same_kind")
        y = np.multiply(sub, y_ray, out=np.empty((hs, ws), np.float32), dtype=np.float64, casting="same_kind")
    rec = cv2.merge([x, y, np.ascontiguousarray(sub, dtype=np.float32)])  # [hs, ws, 3], SIMD interleave
    if thinned:  # boolean mask of the kept ids (a compress beats a V12 take)
        keep = np.zeros(hs * ws, bool)
        keep[idx] = True
    else:
        keep = sub_valid.reshape(-1)
    pts = rec.reshape(-1).view("V12")[keep].view(np.float32).reshape(-1, 3)
    return pts, flat


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
            self._counters, config.log_interval_s,
        )
        self._selector = KeyframeSelector(
            config.min_parallax_px, config.min_rotation_deg, config.min_translation,
            config.min_keyframe_gap, config.max_keyframe_gap, config.flow_width,
        )
        self._scale = MetricScale(
            config.scale_source, config.fixed_scale, config.scale_freeze_samples,
            config.scale_min_motion, config.scale_min_pixels,
        )
        self._map = WorldMap(config.voxel_size, config.map_max_points)
        self._tracks = TrackIdRegistry(config.track_match_px)
        self._world_T_optical = world_T_optical_world(config.world_frame_convention, config.base_T_camera)
        self._states: dict[int, _PlacedState] = {}
        self._next_index = 0
        self._map_scale = 1.0  # metric factor the map's points were inserted with
        self._last_placed: list[int] = []  # stamps of the last two placed frames (motion extrapolation)

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
        delta = np.linalg.solve(prev.world_T_camera, last.world_T_camera)
        rv = Rotation.from_matrix(delta[:3, :3]).as_rotvec()
        n = max(int(num_new), 1)
        step = np.eye(4)
        step[:3, :3] = Rotation.from_rotvec(n * rv).as_matrix()
        step[:3, 3] = n * delta[:3, 3]
        pred_T = last.world_T_camera @ step
        h, w = st.depth.shape
        g = max(1, min(h, w) // 16)
        d = st.depth[g // 2::g, g // 2::g].astype(np.float64)
        vv, uu = np.mgrid[g // 2:h:g, g // 2:w:g]
        ok = np.isfinite(d) & (d > 0)
        if ok.sum() < 8:
            return False
        K = st.K_net
        z = d[ok]
        y = (vv[ok] - K[1, 2]) / K[1, 1]
        x = (uu[ok] - K[0, 2] - K[0, 1] * y) / K[0, 0]
        pc = np.stack([x * z, y * z, z], 1)
        rel = np.linalg.solve(pred_T, st.world_T_camera)  # predicted camera <- keyframe camera
        q = pc @ rel[:3, :3].T + rel[:3, 3]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = K[0, 0] * q[:, 0] / q[:, 2] + K[0, 2]
            v = K[1, 1] * q[:, 1] / q[:, 2] + K[1, 2]
        inside = (q[:, 2] > 0) & (u >= -0.5) & (u < w - 0.5) & (v >= -0.5) & (v < h - 0.5)
        return float(inside.mean()) >= thr

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
            noise_t = self._window_noise_t(job)
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
            noise_t = _median_depth(np.stack([depth_world[i][::4, ::4] for i in new_idx]), step=1) ** 2
            new_tvar = noise_t
        else:
            new_var = 1.0 / sum(r.weight for r in refs) + 1.0
            new_tvar = 1.0 / sum(r.translation_weight for r in refs) + noise_t
        if not job.is_bootstrap and cfg.context_pose_averaging:
            self._fuse_context_poses(job, refs, align.scale, pred.extrinsics, noise_t)
        # output masks: built here only where placement needs them (keyframe depth, depth scale
        # samples), the rest in emit, off the worker
        masks: dict[int, np.ndarray] = {}

        # ---- keyframes, placement and scale samples -------------------------------------------
        t = time.perf_counter()
        keyflags: dict[int, bool] = {}
        for n, i in enumerate(new_idx):
            f = job.frames[i]
            if job.is_bootstrap and n == 0:
                is_kf = True
            else:
                is_kf = self._selector.decide(f.image, poses[i]).is_keyframe
            keyflags[i] = is_kf
            if is_kf:
                d = depth_world[i][self._output_mask(pred, depth_world, masks, i)]
                med = float(np.median(d)) if d.size else float("nan")
                self._selector.set_keyframe(f.image, poses[i], med)
                self._counters.add("keyframes")
                if f.odometry_pose is not None:
                    self._scale.add_odometry_keyframe(poses[i], f.odometry_pose)
            else:
                self._selector.advance()
            if f.metric_depth is not None and self._scale.source == "depth":
                self._depth_scale_sample(f.metric_depth, depth_world[i],
                                         self._output_mask(pred, depth_world, masks, i), pred.preprocess[i])
            self._states[int(f.stamp_ns)] = _PlacedState(
                poses[i], depth_world[i], pred.depth_conf[i].astype(np.float32),
                np.asarray(pred.intrinsics[i], np.float64), is_kf,
                variance=0.0 if (job.is_bootstrap and i == 0) else new_var,
                t_variance=0.0 if (job.is_bootstrap and i == 0) else new_tvar,
                scene_depth=_median_depth(depth_world[i]),
            )
            self._buffer.mark_placed(f, is_kf)
            self._last_placed = [*self._last_placed[-1:], int(f.stamp_ns)]
        timings["keyframes"] = time.perf_counter() - t
        tracks = self._track_output(job, pred)
        keep = self._buffer.retained_stamps()
        for s in [s for s in self._states if s not in keep]:
            del self._states[s]
        return PlacedWindow(
            job, job.epoch, None, pred, poses, depth_world, masks, keyflags, float(align.scale),
            float(self._scale.scale), bool(self._scale.is_metric), float(align.residual), tracks, timings)

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
        frames_out = [self._frame_output(job.frames[i], pred, i, placed.poses[i], depth_world[i],
                                         self._output_mask(pred, depth_world, masks, i), placed.keyflags[i],
                                         placed.window_scale, metres_per_unit, placed.is_metric)
                      for i in new_idx]
        timings["outputs"] = time.perf_counter() - t
        t = time.perf_counter()
        for fo in frames_out:
            if cfg.map_update == "all" or fo.is_keyframe:
                T = fo.world_T_camera
                self._map.add(fo.points.astype(np.float64) @ T[:3, :3].T + T[:3, 3], fo.colors)
        timings["map"] = time.perf_counter() - t
        self._counters.add("frames_out", len(frames_out))
        return WindowOutput(job.window_index, True, frames_out, placed.tracks,
                            scale=float(placed.window_scale * metres_per_unit), residual=placed.residual,
                            timings=timings)

    def _output_mask(self, pred: Prediction, depth_world: dict[int, np.ndarray], masks: dict[int, np.ndarray],
                     i: int) -> np.ndarray:
        """Confident, finite, positive pixels of window frame ``i`` (computed once, kept in ``masks``)."""
        m = masks.get(i)
        if m is None:
            cfg = self.config
            d = depth_world[i]
            m = masks[i] = (valid_conf_mask(pred.depth_conf[i], cfg.conf_percentile, cfg.conf_min)
                            & np.isfinite(d) & (d > 0))
        return m

    def _window_noise_t(self, job: WindowJob) -> float:
        """Per-frame position noise variance of this window, world units^2: (scene depth)^2.

        A window's prediction is normalised to its scene (VGGT: mean point distance), so its
        translation errors scale with the scene depth; rotation errors do not.
        """
        d = [st.scene_depth for f in job.frames
             if (st := self._states.get(int(f.stamp_ns))) is not None and np.isfinite(st.scene_depth)]
        return float(np.mean(d)) ** 2 if d else 1.0

    def _fuse_context_poses(self, job: WindowJob, refs: list[ContextRef], scale: float,
                            extrinsics: np.ndarray, noise_t: float) -> None:
        """Fuse each context frame's stored pose with this window's independent estimate of it.

        The estimate of frame k comes from the placement by the *other* context frames (leave one
        out), so it does not reuse k's own stored pose; it is fused with inverse-variance weights.
        """
        if len(refs) < 2:
            return
        Rk, tk = placement_estimates(scale, refs, extrinsics)
        w, wt = context_weights(refs)
        E = np.asarray(extrinsics, np.float64)
        for k, ref in enumerate(refs):
            st = self._states.get(int(job.frames[ref.window_index].stamp_ns))
            if st is None:
                continue
            others = np.arange(len(refs)) != k
            R, t, keep = robust_mean_similarity(Rk[others], tk[others], w[others], wt[others])
            own = 0.0 if ref.window_index == 0 else 1.0
            var_obs = 1.0 / w[others][keep].sum() + own
            tvar_obs = 1.0 / wt[others][keep].sum() + own * noise_t
            obs = np.eye(4)
            Ei = E[ref.window_index]
            obs[:3, :3] = R @ Ei[:3, :3].T
            obs[:3, 3] = t - scale * obs[:3, :3] @ Ei[:3, 3]
            g = st.variance / max(st.variance + var_obs, MIN_VARIANCE)
            gt = st.t_variance / max(st.t_variance + tvar_obs, MIN_VARIANCE * noise_t)
            T = st.world_T_camera.copy()
            dR = Rotation.from_matrix(T[:3, :3].T @ obs[:3, :3]).as_rotvec()
            T[:3, :3] = T[:3, :3] @ Rotation.from_rotvec(g * dR).as_matrix()
            T[:3, 3] = (1 - gt) * T[:3, 3] + gt * obs[:3, 3]
            st.world_T_camera = T
            st.variance = st.variance * var_obs / max(st.variance + var_obs, MIN_VARIANCE)
            st.t_variance = st.t_variance * tvar_obs / max(st.t_variance + tvar_obs, MIN_VARIANCE * noise_t)

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

    def _depth_hw(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        cfg = self.config
        h0, w0 = image_hw
        if cfg.depth_width > 0 and cfg.depth_height > 0:
            return int(cfg.depth_height), int(cfg.depth_width)
        if cfg.depth_width > 0:
            return max(1, round(h0 * cfg.depth_width / w0)), int(cfg.depth_width)
        if cfg.depth_height > 0:
            return int(cfg.depth_height), max(1, round(w0 * cfg.depth_height / h0))
        return max(1, round(h0 * cfg.depth_scale_factor)), max(1, round(w0 * cfg.depth_scale_factor))

    def _frame_output(self, frame: Frame, pred: Prediction, i: int, pose: np.ndarray, depth_world: np.ndarray,
                      mask: np.ndarray, is_kf: bool, window_scale: float, m: float,
                      is_metric: bool) -> FrameOutput:
        cfg = self.config
        info = pred.preprocess[i]
        image_hw = (int(frame.image.shape[0]), int(frame.image.shape[1]))
        if frame.intrinsics is not None:
            K = np.asarray(frame.intrinsics, np.float64)
        else:
            K = info.intrinsics_to_original(np.asarray(pred.intrinsics[i], np.float64))
        out_hw = self._depth_hw(image_hw)
        rows, cols, row_ok, col_ok = network_index_maps(info, out_hw)
        net_depth = np.where(mask, depth_world * np.float32(m), np.float32(np.nan))
        depth = net_depth[rows[:, None], cols[None, :]]
        inside = row_ok[:, None] & col_ok[None, :]
        depth = np.where(inside, depth, np.float32(np.nan)).astype(np.float32)
        conf = np.where(inside, pred.depth_conf[i][rows[:, None], cols[None, :]], 0).astype(np.float32)
        if out_hw == image_hw:
            rgb = frame.image
        else:
            interp = cv2.INTER_AREA if out_hw[0] * out_hw[1] < image_hw[0] * image_hw[1] else cv2.INTER_LINEAR
            rgb = cv2.resize(frame.image, (out_hw[1], out_hw[0]), interpolation=interp)
        K_depth = scale_intrinsics(K, image_hw, out_hw)
        if cfg.points_source == "point_head" and pred.world_points is not None:
            points, flat = self._point_head_points(pred, i, rows, cols, depth, window_scale * m)
        else:
            if cfg.points_source == "point_head":
                self._counters.add("point_head_missing")
                self._rl.warning("point_head_missing", "points_source point_head, but the predictor "
                                 "returned no world_points: points from depth instead")
            points, flat = sampled_depth_points(depth, K_depth, cfg.cloud_stride, cfg.cloud_max_points)
        colors = np.take(rgb.reshape(-1, 3), flat, axis=0)  # faster than fancy indexing of rows
        return FrameOutput(
            stamp_ns=int(frame.stamp_ns), frame_id=frame.frame_id,
            world_T_camera=to_output_pose(pose, m, self._world_T_optical),
            intrinsics=K, image_hw=image_hw, depth=depth, depth_conf=conf, depth_intrinsics=K_depth,
            rgb=rgb, points=points, colors=colors, is_keyframe=bool(is_kf), metric=is_metric,
        )

    def _point_head_points(self, pred: Prediction, i: int, rows: np.ndarray, cols: np.ndarray,
                           depth: np.ndarray, to_output: float) -> tuple[np.ndarray, np.ndarray]:
        """Cloud from VGGT's point head: window-frame points moved into frame i's camera, output units.

        Sampled at the depth image's pixels and kept only where the published depth is valid, so the
        confidence filtering is the same as for depth-based points.
        """
        E = np.asarray(pred.extrinsics[i], np.float64)
        wp = np.asarray(pred.world_points[i], np.float64)[rows[:, None], cols[None, :]]
        cam = (wp @ E[:3, :3].T + E[:3, 3]) * to_output
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(depth) & np.isfinite(cam).all(-1) & (cam[..., 2] > 0)
        v, u = cloud_pixels(valid, self.config.cloud_stride, self.config.cloud_max_points)
        return cam[v, u].astype(np.float32), v * depth.shape[1] + u

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
        frame."""
        return self._buffer.retained_stamps()

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
            self._scale.reset()
            self._map.clear_points()
            self._tracks.reset()
            self._states.clear()
            self._last_placed = []
            self._map_scale = 1.0
            self._counters.add("resets")
