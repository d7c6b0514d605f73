"""Per-frame outputs of a placed window: depth at the output size, the camera-frame cloud, the output pose.

Why a module of its own: this is the emit side of :class:`vggt_ros.core.pipeline.StreamingPipeline`,
which runs off the worker thread and never feeds back into placement (:mod:`vggt_ros.core.pose_state`);
the pipeline keeps the map and the locking, :class:`FrameOutputBuilder` turns one placed frame into
a :class:`~vggt_ros.core.types.FrameOutput`.
"""

from __future__ import annotations

import cv2
import numpy as np

from vggt_ros.core.config import PipelineConfig
from vggt_ros.core.frame_buffer import Counters, RateLimitedLogger
from vggt_ros.core.frames import to_output_pose
from vggt_ros.core.pose_state import pose_covariance
from vggt_ros.core.types import Frame, FrameOutput
from vggt_ros.prediction import Prediction, PreprocessInfo


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


class FrameOutputBuilder:
    """Builds the :class:`~vggt_ros.core.types.FrameOutput` of placed frames (the pipeline's emit side).

    ``counters`` and ``rl`` are the pipeline's (a missing point head is counted and warned there);
    ``world_T_optical`` maps the internal optical world to the published world frame.
    """

    def __init__(self, config: PipelineConfig, counters: Counters, rl: RateLimitedLogger,
                 world_T_optical: np.ndarray) -> None:
        self.config = config
        self._counters = counters
        self._rl = rl
        self._world_T_optical = world_T_optical

    def output_mask(self, pred: Prediction, depth_world: dict[int, np.ndarray], masks: dict[int, np.ndarray],
                    i: int) -> np.ndarray:
        """Confident, finite, positive pixels of window frame ``i`` (computed once, kept in ``masks``)."""
        m = masks.get(i)
        if m is None:
            cfg = self.config
            d = depth_world[i]
            m = masks[i] = (valid_conf_mask(pred.depth_conf[i], cfg.conf_percentile, cfg.conf_min)
                            & np.isfinite(d) & (d > 0))
        return m

    def depth_hw(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """Size (H, W) of the published depth image of a camera image of size ``image_hw``."""
        cfg = self.config
        h0, w0 = image_hw
        if cfg.depth_width > 0 and cfg.depth_height > 0:
            return int(cfg.depth_height), int(cfg.depth_width)
        if cfg.depth_width > 0:
            return max(1, round(h0 * cfg.depth_width / w0)), int(cfg.depth_width)
        if cfg.depth_height > 0:
            return int(cfg.depth_height), max(1, round(w0 * cfg.depth_height / h0))
        return max(1, round(h0 * cfg.depth_scale_factor)), max(1, round(w0 * cfg.depth_scale_factor))

    def frame_output(self, frame: Frame, pred: Prediction, i: int, pose: np.ndarray, depth_world: np.ndarray,
                     mask: np.ndarray, is_kf: bool, window_scale: float, m: float,
                     is_metric: bool, variances: tuple[float, ...]) -> FrameOutput:
        """Output of new window frame ``i``: pose and its covariance (from ``variances`` = the placed
        state's variance, t_variance, scene depth and the measured noise sigmas, see
        :func:`~vggt_ros.core.pose_state.pose_covariance`),
        depth (and confidence, intrinsics, colour image) at the output size, and the camera-frame cloud;
        output units (``m`` metres per world unit)."""
        cfg = self.config
        info = pred.preprocess[i]
        image_hw = (int(frame.image.shape[0]), int(frame.image.shape[1]))
        if frame.intrinsics is not None:
            K = np.asarray(frame.intrinsics, np.float64)
        else:
            K = info.intrinsics_to_original(np.asarray(pred.intrinsics[i], np.float64))
        out_hw = self.depth_hw(image_hw)
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
            pose_covariance=pose_covariance(*variances, metres_per_unit=m),
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
