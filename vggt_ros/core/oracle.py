"""Oracle predictor: answers a window from ground truth, shaped exactly like a VGGT prediction.

Why: it lets the streaming pipeline, the node and the bag replay be tested and debugged without the
1B-parameter network (and without a GPU): with zero noise, anything wrong downstream is a bug in the
downstream code, not in the model. Noise options (pose, depth, tracks, random window scale) exercise
the alignment and scale logic the way real predictions would.

Output conventions (as VGGT, see ``vggt_ros.prediction``): window frame = the OpenCV camera frame of
the window's first image; extrinsics camera-from-window; depth, points and translations in one
arbitrary scale per window: the metric scene divided by the mean distance of the window's valid
points from the first camera (VGGT's training normalisation), times a random factor drawn from
``random_scale``. Images and ground truth are mapped to the network resolution with the official
preprocessing geometry (``preprocess_mode``/``target_size``); intrinsics are the true ones at that
resolution (VGGT itself would put the principal point at (W/2, H/2)).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from vggt_ros.core.types import PredictorBase
from vggt_ros.prediction import Prediction, PreprocessInfo

logger = logging.getLogger(__name__)

GroundTruth = tuple[np.ndarray, np.ndarray, np.ndarray]  # world_T_camera 4x4, K 3x3, depth HxW metres

_VALID_MODES = ("crop", "pad")


def _official_preprocess_info(original_hw: tuple[int, int], mode: str, target_size: int) -> PreprocessInfo:
    """Sizing of VGGT's official loader (``load_and_preprocess_images``), as a PreprocessInfo.

    crop: width -> target, height -> round(h0 * target / w0 / 14) * 14 (half-even), centre-cropped to
    ``target`` rows if taller. pad: the long side -> target, the other side rounded the same way,
    then padded (white) to target x target, floor half before.
    """
    h0, w0 = int(original_hw[0]), int(original_hw[1])
    if h0 <= 0 or w0 <= 0:
        raise ValueError(f"image size must be positive, got {original_hw}")
    if mode not in _VALID_MODES:
        raise ValueError(f"preprocess mode must be one of {_VALID_MODES}, got {mode!r}")
    if mode == "crop" or w0 >= h0:
        new_w = target_size
        new_h = round(h0 * target_size / w0 / 14) * 14
    else:
        new_h = target_size
        new_w = round(w0 * target_size / h0 / 14) * 14
    sx, sy = new_w / w0, new_h / h0
    if mode == "crop":
        top = (new_h - target_size) // 2 if new_h > target_size else 0
        return PreprocessInfo((h0, w0), (min(new_h, target_size), new_w), (sx, sy), (0.0, float(-top)))
    top = (target_size - new_h) // 2
    left = (target_size - new_w) // 2
    return PreprocessInfo((h0, w0), (target_size, target_size), (sx, sy), (float(left), float(top)))


def preprocess_info(
    original_hw: tuple[int, int], mode: str = "crop", target_size: int = 518
) -> PreprocessInfo:
    """The project's preprocessing geometry if ``vggt_ros.model.preprocessing`` provides it, else ours."""
    try:
        from vggt_ros.model.preprocessing import preprocess_info_for  # type: ignore[attr-defined]
    except ImportError:
        return _official_preprocess_info(original_hw, mode, target_size)
    return preprocess_info_for((int(original_hw[0]), int(original_hw[1])), mode, target_size)


def _pad_to_common_size(infos: list[PreprocessInfo]) -> list[PreprocessInfo]:
    """Official loader behaviour for mixed sizes: pad every image to (max H, max W), floor half before."""
    hmax = max(i.network_hw[0] for i in infos)
    wmax = max(i.network_hw[1] for i in infos)
    out = []
    for info in infos:
        hn, wn = info.network_hw
        if (hn, wn) == (hmax, wmax):
            out.append(info)
            continue
        top, left = (hmax - hn) // 2, (wmax - wn) // 2
        out.append(PreprocessInfo(info.original_hw, (hmax, wmax), info.scale_xy,
                                  (info.offset_xy[0] + left, info.offset_xy[1] + top)))
    return out


def _warp_image(image: np.ndarray, info: PreprocessInfo) -> np.ndarray:
    """Resize + crop/pad an RGB uint8 image to the network input (white padding, like the official)."""
    h0, w0 = info.original_hw
    hn, wn = info.network_hw
    rw = int(round(w0 * info.scale_xy[0]))
    rh = int(round(h0 * info.scale_xy[1]))
    interp = cv2.INTER_AREA if rw * rh < w0 * h0 else cv2.INTER_LINEAR
    resized = cv2.resize(np.ascontiguousarray(image), (rw, rh), interpolation=interp)
    out = np.full((hn, wn, 3), 255, dtype=np.uint8)
    ox, oy = int(round(info.offset_xy[0])), int(round(info.offset_xy[1]))
    # Destination rectangle of the resized image in the canvas, clipped.
    x0, y0 = max(0, ox), max(0, oy)
    x1, y1 = min(wn, ox + rw), min(hn, oy + rh)
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = resized[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    return out


def _sample_nearest_map(depth: np.ndarray, info: PreprocessInfo) -> np.ndarray:
    """Ground-truth depth at the network pixel centres (nearest original pixel); 0 where unknown."""
    hn, wn = info.network_hw
    h0, w0 = info.original_hw
    u = info.network_to_original_pixels(np.stack([np.arange(wn), np.zeros(wn)], axis=1))[:, 0]
    v = info.network_to_original_pixels(np.stack([np.zeros(hn), np.arange(hn)], axis=1))[:, 1]
    cols = np.rint(u).astype(np.int64)
    rows = np.rint(v).astype(np.int64)
    col_ok = (cols >= 0) & (cols < w0)
    row_ok = (rows >= 0) & (rows < h0)
    d = depth[np.clip(rows, 0, h0 - 1)[:, None], np.clip(cols, 0, w0 - 1)[None, :]].astype(np.float32)
    ok = row_ok[:, None] & col_ok[None, :] & np.isfinite(d) & (d > 0)
    return np.where(ok, d, np.float32(0.0))


def _sample_depth_at(depth: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Depth at continuous pixels [N, 2]: bilinear where all 4 neighbours are valid, else nearest.

    NaN where the nearest pixel is outside the image or invalid.
    """
    h, w = depth.shape
    x, y = uv[:, 0], uv[:, 1]
    out = np.full(x.shape, np.nan)
    xi, yi = np.rint(x), np.rint(y)
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    xi = np.clip(xi, 0, w - 1).astype(np.int64)
    yi = np.clip(yi, 0, h - 1).astype(np.int64)
    nearest = depth[yi, xi].astype(np.float64)
    out[inside] = nearest[inside]
    x0 = np.clip(np.floor(x), 0, w - 2).astype(np.int64)
    y0 = np.clip(np.floor(y), 0, h - 2).astype(np.int64)
    if w >= 2 and h >= 2:
        fx = np.clip(x - x0, 0, 1)
        fy = np.clip(y - y0, 0, 1)
        d00, d10 = depth[y0, x0], depth[y0, x0 + 1]
        d01, d11 = depth[y0 + 1, x0], depth[y0 + 1, x0 + 1]
        quad = np.stack([d00, d10, d01, d11]).astype(np.float64)
        ok = inside & np.all(np.isfinite(quad) & (quad > 0), axis=0)
        bil = (d00 * (1 - fx) + d10 * fx) * (1 - fy) + (d01 * (1 - fx) + d11 * fx) * fy
        out[ok] = bil[ok]
    out[~(out > 0)] = np.nan
    return out


def _in_box(uv: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Points [N, 2] strictly inside the open box (x0, x1) x (y0, y1); NaN is outside."""
    return (uv[:, 0] > x0) & (uv[:, 0] < x1) & (uv[:, 1] > y0) & (uv[:, 1] < y1)


def _depth_to_window_points(depth: np.ndarray, K: np.ndarray, win_T_cam: np.ndarray) -> np.ndarray:
    """Points [H, W, 3] float32 in the window frame of a z-depth map (integer pixel centres).

    Component-wise float32 arithmetic: much faster than [N, 3] @ [3, 3] matmuls on big maps.
    """
    h, w = depth.shape
    d = depth.astype(np.float32, copy=False)
    yn = ((np.arange(h) - K[1, 2]) / K[1, 1]).astype(np.float32)[:, None]
    xn = ((np.arange(w)[None, :] - K[0, 2] - K[0, 1] * yn) / K[0, 0]).astype(np.float32)
    R = win_T_cam[:3, :3].astype(np.float32)
    t = win_T_cam[:3, 3].astype(np.float32)
    out = np.empty((h, w, 3), dtype=np.float32)
    for r in range(3):
        # X_win[r] = d * (R[r,0] x + R[r,1] y + R[r,2]) + t[r]
        out[..., r] = d * (R[r, 0] * xn + R[r, 1] * yn + R[r, 2]) + t[r]
    return out


class OraclePredictor(PredictorBase):
    """A :class:`vggt_ros.core.types.Predictor` that answers from ground truth looked up by frame key.

    gt: mapping ``stamp_ns -> (world_T_camera 4x4, K 3x3 at the image resolution, depth HxW metres,
    NaN/<=0 invalid)``, or any object with a ``ground_truth()`` method returning one (e.g.
    :class:`vggt_ros.sim.sequences.SyntheticSequence`).
    pose_noise_rot_deg: RMS rotation error added to frames 1.. of each window (degrees).
    pose_noise_trans: std of the translation error per axis, relative to the window's scale (the mean
    distance of its points from the first camera), added to frames 1...
    depth_noise: relative per-pixel depth noise std. track_noise_px: pixel noise on tracks of frames 1..
    random_scale: (lo, hi) uniform per-window extra scale factor (None = 1).
    normalize_scale: divide by the mean point distance like VGGT (False keeps metres, times the
    random factor). conf_valid: depth confidence reported for valid pixels (invalid pixels get 1).

    Pixels without ground truth (NaN/<=0 depth, padding) get depth 0, conf 1 and world point 0 (the
    official helpers treat depth <= 1e-8 as invalid). Tracks: exact reprojection of the frame-0
    queries through ground-truth depth and poses; track_vis is 1 where the point is in the image and
    not occluded (3 % depth test), else 0; track_conf is 1 for queries with depth, 0 otherwise (those
    tracks stay at the query position). ``last_scale`` holds the last window's units per metre.
    Noise is drawn from a generator seeded by (seed, frame keys): the same window gives the same answer.
    """

    def __init__(
        self,
        gt: Mapping[int, GroundTruth] | Any,
        *,
        pose_noise_rot_deg: float = 0.0,
        pose_noise_trans: float = 0.0,
        depth_noise: float = 0.0,
        track_noise_px: float = 0.0,
        random_scale: tuple[float, float] | None = None,
        normalize_scale: bool = True,
        conf_valid: float = 10.0,
        seed: int = 0,
        preprocess_mode: str = "crop",
        target_size: int = 518,
    ) -> None:
        if not isinstance(gt, Mapping) and hasattr(gt, "ground_truth"):
            gt = gt.ground_truth()
        if not isinstance(gt, Mapping):
            raise TypeError(f"gt must be a Mapping stamp_ns -> (pose, K, depth) or have ground_truth(), got "
                            f"{type(gt).__name__}")
        for name, val in (("pose_noise_rot_deg", pose_noise_rot_deg), ("pose_noise_trans", pose_noise_trans),
                          ("depth_noise", depth_noise), ("track_noise_px", track_noise_px)):
            if not (val >= 0 and np.isfinite(val)):
                raise ValueError(f"{name} must be a finite value >= 0, got {val}")
        if random_scale is not None:
            lo, hi = float(random_scale[0]), float(random_scale[1])
            if not (0 < lo <= hi and np.isfinite(hi)):
                raise ValueError(f"random_scale must be (lo, hi) with 0 < lo <= hi, got {random_scale}")
            random_scale = (lo, hi)
        if preprocess_mode not in _VALID_MODES:
            raise ValueError(f"preprocess_mode must be one of {_VALID_MODES}, got {preprocess_mode!r}")
        if target_size <= 0 or target_size % 14 != 0:
            raise ValueError(f"target_size must be a positive multiple of 14, got {target_size}")
        self.gt = gt
        self.pose_noise_rot_deg = float(pose_noise_rot_deg)
        self.pose_noise_trans = float(pose_noise_trans)
        self.depth_noise = float(depth_noise)
        self.track_noise_px = float(track_noise_px)
        self.random_scale = random_scale
        self.normalize_scale = bool(normalize_scale)
        self.conf_valid = float(conf_valid)
        self.seed = int(seed)
        self.preprocess_mode = preprocess_mode
        self.target_size = int(target_size)
        self.last_scale: float = float("nan")  # window units per metre of the last prediction

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_gt_arrays(
        cls,
        stamps_ns: Sequence[int] | np.ndarray,
        poses: np.ndarray,
        Ks: np.ndarray,
        depths: Sequence[np.ndarray] | np.ndarray,
        **kwargs: Any,
    ) -> OraclePredictor:
        """From arrays: stamps [N], world_T_camera [N, 4, 4], K [3, 3] or [N, 3, 3], N depth maps HxW."""
        stamps = [int(s) for s in np.asarray(stamps_ns).reshape(-1)]
        poses = np.asarray(poses, dtype=np.float64)
        Ks = np.asarray(Ks, dtype=np.float64)
        n = len(stamps)
        if poses.shape != (n, 4, 4):
            raise ValueError(f"poses must be [{n}, 4, 4], got {poses.shape}")
        if Ks.shape == (3, 3):
            Ks = np.broadcast_to(Ks, (n, 3, 3))
        if Ks.shape != (n, 3, 3):
            raise ValueError(f"Ks must be [3, 3] or [{n}, 3, 3], got {Ks.shape}")
        if len(depths) != n:
            raise ValueError(f"need {n} depth maps, got {len(depths)}")
        if len(set(stamps)) != n:
            raise ValueError("stamps must be unique")
        gt = {s: (poses[i], Ks[i], np.asarray(depths[i])) for i, s in enumerate(stamps)}
        return cls(gt, **kwargs)

    @classmethod
    def from_sequence(cls, sequence: Any, **kwargs: Any) -> OraclePredictor:
        """Build from a :class:`vggt_ros.sim.sequences.SyntheticSequence` (ground truth rendered lazily)."""
        return cls(sequence.ground_truth(), **kwargs)

    # ------------------------------------------------------------------ prediction
    def _lookup(self, key: int) -> GroundTruth:
        try:
            pose, K, depth = self.gt[int(key)]
        except KeyError:
            keys = list(self.gt.keys())
            span = f"{min(keys)}..{max(keys)}" if keys else "none"
            raise KeyError(f"OraclePredictor: no ground truth for frame key {int(key)} "
                           f"({len(keys)} known stamps, range {span})") from None
        return (np.asarray(pose, dtype=np.float64), np.asarray(K, dtype=np.float64),
                np.asarray(depth, dtype=np.float32))

    def predict(
        self,
        images: Sequence[np.ndarray],
        query_points: np.ndarray | None = None,
        frame_keys: Sequence[int] | None = None,
    ) -> Prediction:
        """Ground-truth prediction of one window (see the class and module docstrings)."""
        t_start = time.perf_counter()
        if frame_keys is None:
            raise ValueError("OraclePredictor needs frame_keys (stamps in ns) to find the ground truth")
        if len(images) == 0:
            raise ValueError("OraclePredictor.predict: empty window")
        if len(frame_keys) != len(images):
            raise ValueError(f"got {len(images)} images but {len(frame_keys)} frame keys")
        S = len(images)
        gts = [self._lookup(k) for k in frame_keys]
        for i, (img, (pose, K, depth)) in enumerate(zip(images, gts)):
            if img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(f"image {i} must be HxWx3, got shape {img.shape}")
            if depth.shape != img.shape[:2]:
                raise ValueError(f"ground-truth depth of frame key {frame_keys[i]} is {depth.shape}, image "
                                 f"is {img.shape[:2]}: depth must be at the image resolution")
            if pose.shape != (4, 4) or K.shape != (3, 3):
                raise ValueError(f"ground truth of frame key {frame_keys[i]}: pose must be 4x4 and K 3x3")
        infos = _pad_to_common_size([
            preprocess_info(img.shape[:2], self.preprocess_mode, self.target_size) for img in images])
        hn, wn = infos[0].network_hw
        # Deterministic per window: the same window always gets the same noise.
        entropy = [self.seed & 0xFFFFFFFF] + [int(k) & 0x7FFFFFFFFFFFFFFF for k in frame_keys]
        rng = np.random.default_rng(entropy)

        net_images = np.stack([_warp_image(img, info) for img, info in zip(images, infos)])
        depth_m = np.stack([_sample_nearest_map(d, info) for (_, _, d), info in zip(gts, infos)])
        valid = depth_m > 0
        K_net = np.stack([info.intrinsics_to_network(K) for (_, K, _), info in zip(gts, infos)])

        w_T_c0 = gts[0][0]
        # Metric, noise-free poses in the window frame.
        win_T_cam = np.linalg.solve(w_T_c0[None], np.stack([pose for pose, _, _ in gts]))
        win_T_cam[0] = np.eye(4)

        # Scale: VGGT's normalisation (mean distance of valid points in the window frame) x random factor.
        pts_metric = np.stack([_depth_to_window_points(depth_m[i], K_net[i], win_T_cam[i]) for i in range(S)])
        mean_dist = 1.0
        if self.normalize_scale:
            if valid.any():
                dist = np.sqrt(np.einsum("...i,...i->...", pts_metric, pts_metric))
                mean_dist = float(dist[valid].mean(dtype=np.float64))
            if not (mean_dist > 0 and np.isfinite(mean_dist)):
                logger.warning("OraclePredictor: window has no valid ground-truth depth; scale left at 1")
                mean_dist = 1.0
        factor = 1.0 / mean_dist
        if self.random_scale is not None:
            factor *= float(rng.uniform(*self.random_scale))
        self.last_scale = factor

        # Pose noise (frames 1..), in metres before scaling.
        win_T_cam_noisy = win_T_cam.copy()
        pose_noisy = S > 1 and (self.pose_noise_rot_deg > 0 or self.pose_noise_trans > 0)
        if pose_noisy:
            rotvec = rng.normal(0.0, np.radians(self.pose_noise_rot_deg) / np.sqrt(3.0), size=(S - 1, 3))
            dR = Rotation.from_rotvec(rotvec).as_matrix()
            win_T_cam_noisy[1:, :3, :3] = win_T_cam[1:, :3, :3] @ dR
            win_T_cam_noisy[1:, :3, 3] += rng.normal(0.0, self.pose_noise_trans * mean_dist, size=(S - 1, 3))
        win_T_cam_scaled = win_T_cam_noisy.copy()
        win_T_cam_scaled[:, :3, 3] *= factor
        cam_T_win = np.linalg.inv(win_T_cam_scaled)
        extrinsics = cam_T_win[:, :3, :].astype(np.float32)

        depth = depth_m * np.float32(factor)
        if self.depth_noise > 0:
            depth = depth * (1.0 + self.depth_noise * rng.standard_normal(depth.shape, dtype=np.float32))
            depth = np.where(valid, np.maximum(depth, np.float32(1e-6)), np.float32(0.0))
        depth = depth.astype(np.float32)
        conf = np.where(valid, np.float32(self.conf_valid), np.float32(1.0)).astype(np.float32)

        if pose_noisy or self.depth_noise > 0:
            world_points = np.stack(
                [_depth_to_window_points(depth[i], K_net[i], win_T_cam_scaled[i]) for i in range(S)])
        else:
            world_points = pts_metric * np.float32(factor)
        world_points *= valid[..., None]

        pred = Prediction(
            extrinsics=extrinsics,
            intrinsics=K_net.astype(np.float32),
            depth=depth,
            depth_conf=conf,
            preprocess=infos,
            world_points=world_points,
            world_points_conf=conf.copy(),
            images=net_images,
        )
        if query_points is not None:
            self._tracks(pred, np.asarray(query_points, dtype=np.float64), gts, infos, rng)
        pred.timings["oracle"] = time.perf_counter() - t_start
        return pred

    def _tracks(
        self,
        pred: Prediction,
        query: np.ndarray,
        gts: list[GroundTruth],
        infos: list[PreprocessInfo],
        rng: np.random.Generator,
    ) -> None:
        """Ground-truth tracks: unproject the queries with frame 0's depth, reproject into every frame."""
        if query.ndim != 2 or query.shape[1] != 2:
            raise ValueError(f"query_points must be [N, 2] (x, y), got {query.shape}")
        S, N = len(gts), query.shape[0]
        pose0, K0, depth0 = gts[0]
        d0 = _sample_depth_at(depth0, query)
        has_depth = np.isfinite(d0)
        X0 = np.stack([(query[:, 0] - K0[0, 2] - K0[0, 1] * (query[:, 1] - K0[1, 2]) / K0[1, 1]) / K0[0, 0],
                       (query[:, 1] - K0[1, 2]) / K0[1, 1], np.ones(N)], axis=1) * np.nan_to_num(d0)[:, None]
        Xw = X0 @ pose0[:3, :3].T + pose0[:3, 3]
        q_net = infos[0].original_to_network_pixels(query)
        tracks = np.empty((S, N, 2), dtype=np.float64)
        vis = np.zeros((S, N), dtype=np.float32)
        for j, (pose, K, depth) in enumerate(gts):
            h, w = depth.shape
            Xc = (Xw - pose[:3, 3]) @ pose[:3, :3]
            z = Xc[:, 2]
            with np.errstate(divide="ignore", invalid="ignore"):
                uvw = Xc @ K.T
                uv = uvw[:, :2] / uvw[:, 2:3]
            front = has_depth & (z > 1e-9)
            uv = np.where(front[:, None], uv, np.nan)
            inside = _in_box(uv, -0.5, -0.5, w - 0.5, h - 0.5) & front
            d_seen = _sample_depth_at(depth, np.nan_to_num(uv, nan=-10.0))
            # Visible if the surface seen at that pixel is not (clearly) in front of the point.
            unoccluded = np.isfinite(d_seen) & (d_seen >= z * (1 - 0.03) - 1e-3)
            net = infos[j].original_to_network_pixels(np.nan_to_num(uv))
            x0, y0, x1, y1 = infos[j].valid_network_box()
            in_net = _in_box(net, x0 - 0.5, y0 - 0.5, x1 - 0.5, y1 - 0.5)
            v = inside & unoccluded & in_net
            if j == 0:
                net = q_net.copy()
                v = has_depth & in_net
            tracks[j] = np.where(front[:, None], net, q_net)
            vis[j] = v.astype(np.float32)
        if self.track_noise_px > 0 and S > 1:
            tracks[1:] += rng.normal(0.0, self.track_noise_px, size=(S - 1, N, 2))
        pred.tracks = tracks.astype(np.float32)
        pred.track_vis = vis
        pred.track_conf = np.broadcast_to(has_depth.astype(np.float32), (S, N)).copy()
        pred.query_points = q_net.astype(np.float32)
