"""Place a predicted window in the world: anchor-based Sim(3), robust scale, optional refinement.

Each window is predicted in its own first frame (the *anchor*, an already-placed keyframe) at an
arbitrary scale. With the anchor's world pose ``world_T_a`` (world units) and its predicted
extrinsic ``E_a`` (camera-from-window), a window point maps to the world by the similarity
``X_w = s R X_win + t`` with ``R = R_wa R_a`` and ``t = s R_wa t_a + t_wa``.

The scale ``s`` (world units per window unit) is the confidence-weighted median of
``depth_world / depth_window`` over pixels that are confident in both predictions, pooled over all
overlapping (context) frames (VGGT-SLAM 2.0 style: depth of the *same* pixels, so no feature
matching and no reliance on camera-centre spread: works for pure rotation and static cameras).
Optionally (``sim3_refine``) rotation and translation are re-estimated from *every* overlapping
context frame, not only the anchor: each placed frame ``k`` gives its own estimate
``world_T_window^(k) = world_T_cam_k @ E_k`` (translation scaled by ``s``), and the estimates are
combined by a weighted rotation mean (scipy) and weighted translation mean, weighted by how
well-established each stored pose is (``ContextRef.weight`` / ``translation_weight``: the pipeline
passes inverse variances, stored-pose variance plus the frame's own prediction noise in this window,
zero for the anchor), after one pass that drops estimates far from the consensus (a frame whose
stored pose is off). This averages the per-frame prediction noise and leans on the better-known
frames, so the chain's random walk grows more slowly than with the anchor alone or with an Umeyama
fit on the overlapping points (whose rotation and translation are coupled when the camera centre
does not move).

Residual: the new prediction's points of each context frame, mapped to the world and into that
frame's *stored* camera, are compared in depth with the stored depth; the median relative
disagreement measures pose and depth consistency. Above ``max_alignment_residual`` the window is
rejected and the chain keeps the last accepted state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from vggt_ros.prediction import Prediction

MAX_REFINE_POINTS = 6000  # 3D correspondences for the refinement and the residual
MAX_SCALE_PIXELS = 20000  # pixels per reference frame for the depth-ratio median
OUTLIER_FACTOR = 4.0  # context placement estimates beyond this many median deviations are dropped


@dataclass
class ContextRef:
    """What we already know about an overlapping frame: index in the window + stored estimates."""

    window_index: int
    world_T_camera: np.ndarray  # 4x4, world units
    depth: np.ndarray  # [H, W] world units (network resolution of the earlier prediction)
    conf: np.ndarray  # [H, W]
    intrinsics: np.ndarray  # 3x3 network-resolution intrinsics used with ``depth``
    weight: float = 1.0  # trust in the stored pose for the pose averaging (e.g. windows that observed it)
    translation_weight: float | None = None  # separate weight of the translation mean (None: ``weight``)
    # stored pixels usable for alignment: confident(conf, quantile) & finite positive depth. Callers
    # that align the same stored frame in several windows pass it once computed (None: computed here)
    usable: np.ndarray | None = None


@dataclass
class Alignment:
    """Similarity world <- window and its quality."""

    accepted: bool
    scale: float
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    residual: float = float("nan")
    num_pixels: int = 0
    reason: str = ""

    def camera_poses(self, extrinsics: np.ndarray) -> np.ndarray:
        """World poses ``[S, 4, 4]`` (world units) of the window's cameras."""
        return poses_from_similarity(self.scale, self.rotation, self.translation, extrinsics)


def poses_from_similarity(s: float, R: np.ndarray, t: np.ndarray, extrinsics: np.ndarray) -> np.ndarray:
    """``world_T_cam_i = [R R_i^T, t - s R R_i^T t_i]`` for camera-from-window extrinsics ``[S, 3, 4]``."""
    E = np.asarray(extrinsics, np.float64)
    Ri = E[:, :3, :3]
    ti = E[:, :3, 3]
    out = np.tile(np.eye(4), (E.shape[0], 1, 1))
    RRi = np.einsum("ab,scb->sac", R, Ri)  # R @ Ri^T
    out[:, :3, :3] = RRi
    out[:, :3, 3] = t[None] - s * np.einsum("sab,sb->sa", RRi, ti)
    return out


def _weighted_median_sorted(values: np.ndarray, weights: np.ndarray) -> float:
    """Reference: the smallest value whose cumulative weight (ascending values) reaches half."""
    order = np.argsort(values)
    v = values[order]
    c = np.cumsum(weights[order])
    if c[-1] <= 0:
        return float(np.median(values))
    return float(v[np.searchsorted(c, 0.5 * c[-1])])


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """Median of ``values`` where each counts with ``weights`` (>= 0).

    The smallest value whose cumulative weight, values ascending, reaches half the total. Why not a
    plain sort: a window aligns on ~160k depth ratios, and the full argsort was a fifth of the
    placement time. A weighted median of a strided subsample brackets the answer, the bracket is
    verified on all values, and only the values inside it are sorted (a failed check falls back to
    the full sort). Same result as the full sort up to the summation order of the weights.
    """
    values = np.asarray(values)
    weights = np.asarray(weights, np.float64)
    n = len(values)
    if n < 4096 or not np.isfinite(values).all():
        return _weighted_median_sorted(values, weights)
    total = float(weights.sum())
    if not total > 0:
        return float(np.median(values))
    half = 0.5 * total
    step = max(1, n // 4096)
    sv, sw = values[::step], weights[::step]
    so = np.argsort(sv)
    sc = np.cumsum(sw[so])
    if not sc[-1] > 0:
        return _weighted_median_sorted(values, weights)
    k_lo, k_hi = np.searchsorted(sc, sc[-1] * np.array([0.45, 0.55]))
    lo, hi = sv[so[max(k_lo - 1, 0)]], sv[so[min(k_hi + 1, len(so) - 1)]]
    below = values < lo
    inside = ~below & (values <= hi)
    w_below = float(weights[below].sum())
    w_inside = weights[inside]
    if not (w_below < half <= w_below + float(w_inside.sum())):  # the answer is not in [lo, hi]
        return _weighted_median_sorted(values, weights)
    v_in = values[inside]
    order = np.argsort(v_in)
    c = w_below + np.cumsum(w_inside[order])
    k = min(int(np.searchsorted(c, half)), len(c) - 1)
    return float(v_in[order[k]])


def confident(conf: np.ndarray, quantile: float) -> np.ndarray:
    """Pixels with finite conf at or above the frame's ``quantile`` (0 keeps every finite pixel)."""
    finite = np.isfinite(conf)
    if quantile <= 0 or not np.any(finite):
        return finite
    sample = conf[::2, ::2] if conf.ndim == 2 else conf  # the threshold from a quarter of the pixels
    sample = sample[np.isfinite(sample)]
    thr = np.quantile(sample if sample.size else conf[finite], quantile)
    return finite & (conf >= thr)


def stored_usable(ref: ContextRef, conf_quantile: float) -> np.ndarray:
    """Pixels of a stored frame that can align a window: confident at ``conf_quantile``, with a
    finite positive stored depth (what :attr:`ContextRef.usable` caches)."""
    with np.errstate(invalid="ignore"):
        return confident(ref.conf, conf_quantile) & np.isfinite(ref.depth) & (ref.depth > 0)


def pixel_rays(K: np.ndarray, hw: tuple[int, int], idx: np.ndarray) -> np.ndarray:
    """Camera rays (z = 1) ``[N, 3]`` of flat pixel indices ``idx`` in an image of size ``hw``."""
    v, u = np.divmod(idx, hw[1])
    x = (u - K[0, 2]) / K[0, 0]
    y = (v - K[1, 2]) / K[1, 1]
    return np.stack([x, y, np.ones_like(x, dtype=np.float64)], axis=1)


def umeyama(
    src: np.ndarray, dst: np.ndarray, with_scale: bool = True
) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity with ``dst ~ s R src + t`` (Umeyama 1991); ``s = 1`` without scale."""
    mu_s = src.mean(0)
    mu_d = dst.mean(0)
    a = src - mu_s
    b = dst - mu_d
    cov = b.T @ a / len(src)
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1
    R = U @ S @ Vt
    var_s = (a**2).sum() / len(src)
    s = float(np.trace(np.diag(D) @ S) / var_s) if (var_s > 0 and with_scale) else 1.0
    t = mu_d - s * R @ mu_s
    return s, R, t


def placement_estimates(
    s: float, refs: list[ContextRef], extrinsics: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-context-frame estimates of ``world_T_window``: rotations ``[K, 3, 3]``, translations ``[K, 3]``.

    Frame ``k`` stored at ``world_T_cam_k`` and predicted at ``E_k`` (camera-from-window) places the
    window at ``world_T_cam_k @ E_k`` (window translation scaled by ``s``).
    """
    E = np.asarray(extrinsics, np.float64)
    Tw = np.stack([np.asarray(r.world_T_camera, np.float64) for r in refs])
    Ek = E[[r.window_index for r in refs]]
    Rk = np.einsum("kab,kbc->kac", Tw[:, :3, :3], Ek[:, :3, :3])
    tk = s * np.einsum("kab,kb->ka", Tw[:, :3, :3], Ek[:, :3, 3]) + Tw[:, :3, 3]
    return Rk, tk


def robust_mean_similarity(
    Rk: np.ndarray, tk: np.ndarray, weights: np.ndarray, t_weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Robust weighted mean of placement estimates: rotation, translation and the kept-estimate mask.

    Estimates far from the medoid (the estimate closest to all others: > 4x the median deviation plus
    a small floor, in rotation or translation) are dropped first, so one badly placed context frame
    cannot drag the window; the rest are averaged with their weights (``t_weights`` for the
    translations if given, e.g. inverse variances in world units).
    """
    def clean(x: np.ndarray | None) -> np.ndarray:
        x = np.maximum(np.asarray(x, np.float64), 0.0) if x is not None else np.ones(len(Rk))
        return x if np.all(np.isfinite(x)) and x.sum() > 0 else np.ones(len(Rk))

    w = clean(weights)
    wt = clean(t_weights) if t_weights is not None else w
    keep = np.ones(len(Rk), bool)
    if len(Rk) > 2:
        cos = (np.einsum("iab,jab->ij", Rk, Rk) - 1.0) / 2.0  # trace(R_i^T R_j) -> cos(angle)
        ang = np.arccos(np.clip(cos, -1.0, 1.0))
        dist = np.linalg.norm(tk[:, None] - tk[None], axis=2)
        scale_t = max(float(np.median(dist)), 1e-12)
        m = int(np.argmin(ang.sum(1) / max(float(np.median(ang)), 1e-6) + dist.sum(1) / scale_t))
        dr, dt = ang[m], dist[m]
        others = np.arange(len(Rk)) != m  # the medoid's own zero deviation would shrink the median
        keep = ((dr <= OUTLIER_FACTOR * np.median(dr[others]) + np.radians(0.5))
                & (dt <= OUTLIER_FACTOR * np.median(dt[others]) + 1e-3 * scale_t))
        if w[keep].sum() <= 0 or wt[keep].sum() <= 0:
            keep = np.ones(len(Rk), bool)
    R = Rotation.from_matrix(Rk[keep]).mean(weights=w[keep]).as_matrix()
    t = (wt[keep, None] * tk[keep]).sum(0) / wt[keep].sum()
    return R, t, keep


def average_similarity(
    s: float, refs: list[ContextRef], extrinsics: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Robust weighted mean (``ContextRef.weight``) of the per-frame estimates ``world_T_window^(k)``."""
    Rk, tk = placement_estimates(s, refs, extrinsics)
    R, t, _keep = robust_mean_similarity(Rk, tk, *context_weights(refs))
    return R, t


def context_weights(refs: list[ContextRef]) -> tuple[np.ndarray, np.ndarray]:
    """Rotation and translation weights of the context frames."""
    w = np.array([float(r.weight) for r in refs])
    wt = np.array([float(r.weight if r.translation_weight is None else r.translation_weight) for r in refs])
    return w, wt


def _subsample(idx: np.ndarray, cap: int) -> np.ndarray:
    if len(idx) <= cap:
        return idx
    return idx[np.linspace(0, len(idx) - 1, cap).astype(np.int64)]


def bootstrap_alignment(pred: Prediction) -> Alignment:
    """The first window defines the world: its frame 0 camera, its units (scale 1)."""
    E0 = np.asarray(pred.extrinsics[0], np.float64)
    return Alignment(True, 1.0, E0[:3, :3].copy(), E0[:3, 3].copy(), 0.0, 0, "")


def align_window(
    pred: Prediction,
    anchor: ContextRef,
    others: list[ContextRef],
    conf_quantile: float = 0.5,
    min_valid_pixels: int = 200,
    max_residual: float = 0.25,
    sim3_refine: bool = True,
) -> Alignment:
    """Similarity world <- window from the anchor (window frame ``anchor.window_index``) and context."""
    hw = pred.network_hw
    refs = [anchor, *others]
    E = np.asarray(pred.extrinsics, np.float64)
    if not (np.all(np.isfinite(E)) and np.all(np.isfinite(pred.intrinsics))):
        return Alignment(False, float("nan"), reason="non_finite_prediction")
    # ---- per-reference confident pixel sets ------------------------------------------------------
    sel: list[tuple[ContextRef, np.ndarray]] = []
    logs, weights = [], []
    n_total = 0
    for ref in refs:
        if ref.depth.shape != hw:
            continue
        d_new = pred.depth[ref.window_index]
        c_new = pred.depth_conf[ref.window_index]
        m = stored_usable(ref, conf_quantile) if ref.usable is None else ref.usable.copy()
        m &= confident(c_new, conf_quantile) & np.isfinite(d_new) & (d_new > 0)
        idx = np.flatnonzero(m)
        if len(idx) == 0:
            continue
        n_total += len(idx)
        idx = _subsample(idx, MAX_SCALE_PIXELS)  # the median needs far fewer than 200k pixels
        sel.append((ref, idx))
        logs.append(np.log(ref.depth.ravel()[idx] / d_new.ravel()[idx]))
        weights.append(np.minimum(ref.conf.ravel()[idx], c_new.ravel()[idx]))
    n = int(n_total)
    if n < min_valid_pixels:
        return Alignment(False, float("nan"), num_pixels=n, reason="insufficient_overlap")
    s = float(np.exp(weighted_median(np.concatenate(logs), np.concatenate(weights).astype(np.float64))))
    if not np.isfinite(s) or s <= 0:
        return Alignment(False, float("nan"), num_pixels=n, reason="bad_scale")
    # ---- anchor-based similarity -------------------------------------------------------------------
    Ta = np.asarray(anchor.world_T_camera, np.float64)
    Ea = E[anchor.window_index]
    R = Ta[:3, :3] @ Ea[:3, :3]
    t = s * Ta[:3, :3] @ Ea[:3, 3] + Ta[:3, 3]
    # ---- 3D correspondences of the same pixels (for refinement and residual) ----------------------
    cap = max(MAX_REFINE_POINTS // max(len(sel), 1), 50)
    src_all, dst_all, owner = [], [], []
    for k, (ref, idx) in enumerate(sel):
        j = ref.window_index
        sub = _subsample(idx, cap)
        d_old = ref.depth.ravel()[sub].astype(np.float64)
        d_new = pred.depth[j].ravel()[sub].astype(np.float64)
        p_old_cam = pixel_rays(ref.intrinsics, hw, sub) * d_old[:, None]
        p_new_cam = pixel_rays(np.asarray(pred.intrinsics[j], np.float64), hw, sub) * d_new[:, None]
        Tw = np.asarray(ref.world_T_camera, np.float64)
        dst_all.append(p_old_cam @ Tw[:3, :3].T + Tw[:3, 3])
        src_all.append((p_new_cam - E[j, :3, 3]) @ E[j, :3, :3])  # R_j^T (p - t_j)
        owner.append(np.full(len(sub), k))
    src = np.concatenate(src_all)
    dst = np.concatenate(dst_all)
    own = np.concatenate(owner)
    if sim3_refine and len(sel) > 1:
        # Scale stays the depth-ratio median (unbiased); only rotation and translation are averaged.
        R1, t1 = average_similarity(s, [ref for ref, _ in sel], E)
        if np.all(np.isfinite(R1)) and np.all(np.isfinite(t1)):
            R, t = R1, t1
    # ---- residual: new points in each stored camera vs stored depth ------------------------------
    pw = s * src @ R.T + t
    rel = []
    for k, (ref, _idx) in enumerate(sel):
        m = own == k
        Tw = np.asarray(ref.world_T_camera, np.float64)
        z = (pw[m] - Tw[:3, 3]) @ Tw[:3, :3][:, 2]  # third row of R^T = z axis of the camera
        zd = (dst[m] - Tw[:3, 3]) @ Tw[:3, :3][:, 2]
        rel.append(np.abs(z - zd) / np.maximum(zd, 1e-9))
    residual = float(np.median(np.concatenate(rel)))
    if not np.isfinite(residual) or residual > max_residual:
        return Alignment(False, s, R, t, residual, n, reason="residual_too_large")
    return Alignment(True, s, R, t, residual, n, "")
