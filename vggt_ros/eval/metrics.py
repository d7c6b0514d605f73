"""Trajectory and depth metrics: Umeyama Sim(3)/SE(3) alignment, ATE, RPE, depth errors.

Why: VGGT's output has an arbitrary scale and world frame, so trajectories must be aligned before
they can be compared with ground truth (ATE with Sim(3) alignment is the usual figure for monocular
methods; RPE measures local drift). All functions are vectorised numpy and ROS-free.

Poses are 4x4 ``world_T_camera`` (camera-to-world) arrays ``[N, 4, 4]``; positions ``[N, 3]`` are
accepted wherever only positions matter.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

logger = logging.getLogger(__name__)

Align = Literal["sim3", "se3", "none"]


def umeyama_alignment(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> tuple[
        np.ndarray, np.ndarray, float]:
    """Closed-form least-squares (R, t, s) with ``dst ≈ s * R @ src + t`` (Umeyama 1991).

    Degenerate inputs are handled rather than failing: one point gives a pure translation (R = I,
    s = 1); points that are all identical in ``src`` give s = 1; collinear / coplanar sets give one of
    the optimal rotations (the reflection fix keeps det(R) = +1).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 3 or src.shape != dst.shape:
        raise ValueError(f"src and dst must both be [N, 3], got {src.shape} and {dst.shape}")
    n = src.shape[0]
    if n == 0:
        raise ValueError("umeyama_alignment needs at least one point pair")
    if not (np.all(np.isfinite(src)) and np.all(np.isfinite(dst))):
        raise ValueError("umeyama_alignment: non-finite coordinates")
    mu_s = src.mean(axis=0)
    mu_d = dst.mean(axis=0)
    xs = src - mu_s
    xd = dst - mu_d
    var_s = float((xs**2).sum() / n)
    if n == 1 or var_s < 1e-20:
        return np.eye(3), mu_d - mu_s, 1.0
    cov = xd.T @ xs / n
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1.0
    R = U @ S @ Vt
    s = float(np.trace(np.diag(D) @ S) / var_s) if with_scale else 1.0
    if with_scale and s <= 0:
        logger.warning("umeyama_alignment: non-positive scale %.3g (degenerate input); using 1", s)
        s = 1.0
    t = mu_d - s * R @ mu_s
    return R, t, s


def associate(stamps_a: np.ndarray, stamps_b: np.ndarray, max_diff_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """Match two stamp lists one-to-one by nearest time (greedy, closest pairs first).

    Returns index arrays ``(ia, ib)`` sorted by ``ia``; pairs further apart than ``max_diff_ns`` are
    dropped. Each stamp is used at most once.
    """
    a = np.asarray(stamps_a, dtype=np.int64).reshape(-1)
    b = np.asarray(stamps_b, dtype=np.int64).reshape(-1)
    if a.size == 0 or b.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    order_b = np.argsort(b, kind="stable")
    bs = b[order_b]
    # Candidate pairs: each a with its nearest b on either side.
    pos = np.searchsorted(bs, a)
    cand_a = np.concatenate([np.arange(a.size), np.arange(a.size)])
    cand_j = np.concatenate([pos - 1, pos])
    ok = (cand_j >= 0) & (cand_j < bs.size)
    cand_a, cand_j = cand_a[ok], cand_j[ok]
    diff = np.abs(a[cand_a] - bs[cand_j])
    keep = diff <= max_diff_ns
    cand_a, cand_j, diff = cand_a[keep], cand_j[keep], diff[keep]
    order = np.lexsort((cand_j, cand_a, diff))
    used_a = np.zeros(a.size, dtype=bool)
    used_b = np.zeros(bs.size, dtype=bool)
    ia, ib = [], []
    # Greedy over at most 2 * len(a) candidates (a Python loop over pairs, not pixels).
    for k in order:
        i, j = cand_a[k], cand_j[k]
        if used_a[i] or used_b[j]:
            continue
        used_a[i] = used_b[j] = True
        ia.append(i)
        ib.append(order_b[j])
    ia_arr = np.asarray(ia, dtype=np.int64)
    ib_arr = np.asarray(ib, dtype=np.int64)
    srt = np.argsort(ia_arr, kind="stable")
    return ia_arr[srt], ib_arr[srt]


def _positions(poses: np.ndarray) -> np.ndarray:
    p = np.asarray(poses, dtype=np.float64)
    if p.ndim == 3 and p.shape[1:] == (4, 4):
        return p[:, :3, 3]
    if p.ndim == 2 and p.shape[1] == 3:
        return p
    raise ValueError(f"expected poses [N, 4, 4] or positions [N, 3], got {p.shape}")


def align_trajectory(est: np.ndarray, gt: np.ndarray, align: Align = "sim3") -> tuple[
        np.ndarray, np.ndarray, np.ndarray, float]:
    """Align ``est`` onto ``gt`` by their positions: returns (aligned est, R, t, s).

    ``est`` may be poses [N, 4, 4] (rotations are rotated too, translations scaled) or positions.
    """
    pe, pg = _positions(est), _positions(gt)
    if pe.shape != pg.shape:
        raise ValueError(f"est and gt have different lengths: {pe.shape[0]} vs {pg.shape[0]}")
    if align == "none":
        R, t, s = np.eye(3), np.zeros(3), 1.0
    elif align in ("sim3", "se3"):
        R, t, s = umeyama_alignment(pe, pg, with_scale=align == "sim3")
    else:
        raise ValueError(f"align must be 'sim3', 'se3' or 'none', got {align!r}")
    est = np.asarray(est, dtype=np.float64)
    if est.ndim == 3:
        out = est.copy()
        out[:, :3, :3] = R @ est[:, :3, :3]
        out[:, :3, 3] = s * est[:, :3, 3] @ R.T + t
    else:
        out = s * est @ R.T + t
    return out, R, t, s


def _stats(err: np.ndarray) -> dict[str, float]:
    if err.size == 0:
        nan = float("nan")
        return {"rmse": nan, "mean": nan, "median": nan, "std": nan, "max": nan}
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mean": float(np.mean(err)),
        "median": float(np.median(err)),
        "std": float(np.std(err)),
        "max": float(np.max(err)),
    }


def ate(est_poses: np.ndarray, gt_poses: np.ndarray, align: Align = "sim3") -> dict[str, float]:
    """Absolute trajectory error of the positions after alignment (units of ``gt``).

    Returns rmse, mean, median, std, max, the alignment scale and n (number of poses).
    """
    aligned, _, _, s = align_trajectory(est_poses, gt_poses, align)
    err = np.linalg.norm(_positions(aligned) - _positions(gt_poses), axis=1)
    out = _stats(err)
    out["scale"] = float(s)
    out["n"] = int(err.size)
    return out


def _inv(T: np.ndarray) -> np.ndarray:
    out = np.zeros_like(T)
    Rt = np.swapaxes(T[..., :3, :3], -1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", Rt, T[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Rotation angle(s) in degrees of rotation matrices [..., 3, 3] (numerically safe).

    atan2(|axis part|, cos part) instead of arccos(trace): arccos is ill-conditioned near 0, where a
    float32 rotation that is off-orthonormal by 1e-7 would read as ~0.01 deg of rotation.
    """
    R = np.asarray(R, dtype=np.float64)
    cos_part = np.trace(R, axis1=-2, axis2=-1) - 1.0
    axis = np.stack(
        [R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], axis=-1
    )
    return np.degrees(np.arctan2(np.linalg.norm(axis, axis=-1), cos_part))


def rpe(est: np.ndarray, gt: np.ndarray, delta: int = 1, align: Align = "none") -> dict[str, float]:
    """Relative pose error over pairs (i, i + delta): drift of the motion, not of the absolute pose.

    ``align="sim3"`` first rescales ``est`` with the Sim(3) scale fitted on positions (needed for
    VGGT's up-to-scale output; rotation/translation of the alignment do not change RPE).
    Returns trans_rmse/mean/median/max (units of gt), rot_rmse_deg/mean_deg/max_deg and n.
    """
    est = np.asarray(est, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if est.shape != gt.shape or est.ndim != 3 or est.shape[1:] != (4, 4):
        raise ValueError(f"est and gt must both be [N, 4, 4], got {est.shape} and {gt.shape}")
    if delta < 1:
        raise ValueError(f"delta must be >= 1, got {delta}")
    if align != "none":
        est, _, _, _ = align_trajectory(est, gt, align)
    n = est.shape[0] - delta
    if n <= 0:
        nan = float("nan")
        return {"trans_rmse": nan, "trans_mean": nan, "trans_median": nan, "trans_max": nan,
                "rot_rmse_deg": nan, "rot_mean_deg": nan, "rot_max_deg": nan, "n": 0}
    rel_est = _inv(est[:-delta]) @ est[delta:]
    rel_gt = _inv(gt[:-delta]) @ gt[delta:]
    E = _inv(rel_gt) @ rel_est
    te = np.linalg.norm(E[:, :3, 3], axis=1)
    re = rotation_angle_deg(E[:, :3, :3])
    return {
        "trans_rmse": float(np.sqrt(np.mean(te**2))),
        "trans_mean": float(np.mean(te)),
        "trans_median": float(np.median(te)),
        "trans_max": float(np.max(te)),
        "rot_rmse_deg": float(np.sqrt(np.mean(re**2))),
        "rot_mean_deg": float(np.mean(re)),
        "rot_max_deg": float(np.max(re)),
        "n": int(n),
    }


def depth_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    align: Literal["median", "none"] = "median",
    per_frame: bool = True,
    min_depth: float = 1e-3,
    max_depth: float = np.inf,
) -> dict[str, float]:
    """Standard depth errors over pixels valid in both maps (gt in (min, max), pred finite and > 0).

    pred, gt: [H, W] or [S, H, W]. ``align="median"`` scales pred by median(gt) / median(pred), one
    factor per frame (``per_frame=True``) or one for the whole sequence. Returns abs_rel, sq_rel, rmse,
    log_rmse, delta1 (< 1.25), delta2, delta3, scale (mean factor) and n (pixels used).
    """
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    if p.shape != g.shape:
        raise ValueError(f"pred and gt must have the same shape, got {p.shape} and {g.shape}")
    if p.ndim == 2:
        p, g = p[None], g[None]
    if p.ndim != 3:
        raise ValueError(f"depth maps must be [H, W] or [S, H, W], got {p.shape}")
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(g) & (g > min_depth) & (g < max_depth) & np.isfinite(p) & (p > 0)
    n = int(valid.sum())
    if n == 0:
        nan = float("nan")
        logger.warning("depth_metrics: no pixel is valid in both maps")
        return {"abs_rel": nan, "sq_rel": nan, "rmse": nan, "log_rmse": nan, "delta1": nan, "delta2": nan,
                "delta3": nan, "scale": nan, "n": 0}
    if align == "median":
        if per_frame:
            scales = np.ones(p.shape[0])
            for i in range(p.shape[0]):
                if valid[i].any():
                    scales[i] = np.median(g[i][valid[i]]) / np.median(p[i][valid[i]])
            p = p * scales[:, None, None]
            scale = float(np.mean(scales[valid.reshape(p.shape[0], -1).any(axis=1)]))
        else:
            scale = float(np.median(g[valid]) / np.median(p[valid]))
            p = p * scale
    elif align == "none":
        scale = 1.0
    else:
        raise ValueError(f"align must be 'median' or 'none', got {align!r}")
    pv, gv = p[valid], g[valid]
    diff = pv - gv
    ratio = np.maximum(pv / gv, gv / pv)
    return {
        "abs_rel": float(np.mean(np.abs(diff) / gv)),
        "sq_rel": float(np.mean(diff**2 / gv)),
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "log_rmse": float(np.sqrt(np.mean((np.log(pv) - np.log(gv)) ** 2))),
        "delta1": float(np.mean(ratio < 1.25)),
        "delta2": float(np.mean(ratio < 1.25**2)),
        "delta3": float(np.mean(ratio < 1.25**3)),
        "scale": scale,
        "n": n,
    }
