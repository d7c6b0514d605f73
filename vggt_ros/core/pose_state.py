"""Pose state of the placed frames, and the maths that reads and updates it during placement.

Why a module of their own: the pose chain's uncertainty model (per-frame rotation and position
variances, their leave-one-out fusion, the covisibility test choosing the anchor) is the part of the
pipeline's placement that is pure arithmetic on stored states; :mod:`vggt_ros.core.pipeline` keeps
the locking, the frame buffer and the order of the steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from vggt_ros.core.alignment import ContextRef, context_weights, placement_estimates, robust_mean_similarity
from vggt_ros.core.window_types import WindowJob

MIN_VARIANCE = 1e-3  # floor of the pose variances (the world's first frame is exact: variance 0)


@dataclass
class PlacedState:
    """What the pipeline keeps of a placed frame while later windows may use it as context."""

    world_T_camera: np.ndarray  # internal optical world, world units
    depth: np.ndarray  # [H, W] world units, network resolution
    conf: np.ndarray
    K_net: np.ndarray
    is_keyframe: bool
    variance: float = 1.0  # rotation uncertainty, in units of one window's per-frame prediction noise
    t_variance: float = 1.0  # position uncertainty, world units^2 (per-frame noise ~ the scene depth)
    scene_depth: float = float("nan")  # median confident depth, world units (scale of its window's noise)
    usable: np.ndarray | None = None  # pixels usable for alignment (alignment.stored_usable), computed once


def median_depth(depth: np.ndarray, step: int = 4) -> float:
    """Median of the finite positive depths (subsampled by ``step`` per axis; NaN if none)."""
    d = depth[..., ::step, ::step]
    d = d[np.isfinite(d) & (d > 0)]
    return float(np.median(d)) if d.size else float("nan")


def window_noise_t(states: Mapping[int, PlacedState], job: WindowJob) -> float:
    """Per-frame position noise variance of this window, world units^2: (scene depth)^2.

    A window's prediction is normalised to its scene (VGGT: mean point distance), so its
    translation errors scale with the scene depth; rotation errors do not.
    """
    d = [st.scene_depth for f in job.frames
         if (st := states.get(int(f.stamp_ns))) is not None and np.isfinite(st.scene_depth)]
    return float(np.mean(d)) ** 2 if d else 1.0


class NoiseEstimate:
    """The per-frame prediction noise, measured: rotation std (rad) and position std as a fraction of
    the scene depth, from the innovations of :func:`fuse_context_poses`.

    Why: the variances of :class:`PlacedState` are in units of one window's per-frame noise, whose
    size the network does not report. Each fusion compares a stored pose with an independent estimate
    of it; under the model the squared gap is ``3 (stored + observed variance)`` noise units per block,
    so gap^2 / that is a sample of the squared noise. A running mean over about ``MAX_SAMPLES``
    samples (each clipped at 5 sigma of the current estimate, so one outlier window cannot blow it
    up), started from the priors (parameters ``pose_rot_sigma_deg``, ``pose_trans_sigma_rel``) with
    the weight of ``PRIOR_SAMPLES`` samples, gives the sigmas the published covariance uses: it grows
    with the actual error of the predictions."""

    PRIOR_SAMPLES = 5
    MAX_SAMPLES = 200
    MIN_ROT_VAR = np.radians(0.01) ** 2  # floors: the covariance stays positive-definite
    MIN_TRANS_VAR = 1e-4 ** 2

    def __init__(self, rot_sigma_deg: float, trans_sigma_rel: float) -> None:
        self.rot_var = float(np.radians(rot_sigma_deg)) ** 2
        self.trans_var = float(trans_sigma_rel) ** 2
        self.samples = self.PRIOR_SAMPLES

    def add(self, rot_gap_sq: float, rot_units: float, trans_gap_sq: float, trans_units: float) -> None:
        """One innovation: squared rotation gap (rad^2) and position gap (world units^2), and the
        variances they should have in noise units (rotation: noise units; position: t_variance's)."""
        n = min(self.samples + 1, self.MAX_SAMPLES)
        if rot_units > 0 and np.isfinite(rot_gap_sq):
            sample = min(rot_gap_sq / (3.0 * rot_units), 25.0 * self.rot_var)
            self.rot_var = max(self.rot_var + (sample - self.rot_var) / n, self.MIN_ROT_VAR)
        if trans_units > 0 and np.isfinite(trans_gap_sq):
            sample = min(trans_gap_sq / (3.0 * trans_units), 25.0 * self.trans_var)
            self.trans_var = max(self.trans_var + (sample - self.trans_var) / n, self.MIN_TRANS_VAR)
        self.samples = n

    def sigmas(self) -> tuple[float, float]:
        """(rotation std in degrees, position std as a fraction of the scene depth)."""
        return float(np.degrees(np.sqrt(self.rot_var))), float(np.sqrt(self.trans_var))


def fuse_context_poses(states: Mapping[int, PlacedState], job: WindowJob, refs: list[ContextRef],
                       scale: float, extrinsics: np.ndarray, noise_t: float,
                       noise: NoiseEstimate | None = None) -> None:
    """Fuse each context frame's stored pose with this window's independent estimate of it.

    The estimate of frame k comes from the placement by the *other* context frames (leave one
    out), so it does not reuse k's own stored pose; it is fused with inverse-variance weights. The
    gaps between the two feed ``noise`` (the measured per-frame noise), when given.
    """
    if len(refs) < 2:
        return
    Rk, tk = placement_estimates(scale, refs, extrinsics)
    w, wt = context_weights(refs)
    E = np.asarray(extrinsics, np.float64)
    for k, ref in enumerate(refs):
        st = states.get(int(job.frames[ref.window_index].stamp_ns))
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
        if noise is not None:
            noise.add(float(dR @ dR), st.variance + var_obs,
                      float(np.sum((obs[:3, 3] - T[:3, 3]) ** 2)), st.t_variance + tvar_obs)
        T[:3, :3] = T[:3, :3] @ Rotation.from_rotvec(g * dR).as_matrix()
        T[:3, 3] = (1 - gt) * T[:3, 3] + gt * obs[:3, 3]
        st.world_T_camera = T
        st.variance = st.variance * var_obs / max(st.variance + var_obs, MIN_VARIANCE)
        st.t_variance = st.t_variance * tvar_obs / max(st.t_variance + tvar_obs, MIN_VARIANCE * noise_t)


def pose_covariance(variance: float, t_variance: float, scene_depth: float, rot_sigma_deg: float,
                    trans_sigma_rel: float, metres_per_unit: float) -> np.ndarray:
    """6x6 covariance (x, y, z, roll, pitch, yaw; row-major as ``nav_msgs/Odometry`` wants) of a placed
    frame's pose from its :class:`PlacedState` variances.

    Position: ``t_variance`` (world units^2 in units where one window's per-frame noise std is the
    scene depth) times ``trans_sigma_rel^2`` (the per-frame noise as a fraction of the scene depth)
    times ``metres_per_unit^2``: metres^2 when the scale is metric, world units^2 when it is not
    (``scale_source: none``: the first window's units, scale unknown). Rotation: ``variance`` (units of
    one window's per-frame noise) times ``radians(rot_sigma_deg)^2``, rad^2. The variances are
    structural (how many context frames and windows fused the pose, the scene depth); the sigmas are
    the measured per-frame noise of :class:`NoiseEstimate` at placement, so the covariance follows
    the predictions' actual error.

    Each block is isotropic, so the matrix is the same in every frame the pose may be published in
    (a rotation R leaves s*I unchanged: R s I R^T = s I); the cross terms are zero (the core keeps no
    correlation of position and rotation). Both variances are floored at ``MIN_VARIANCE`` noise units
    (the world's first frame is exact, variance 0) so the matrix is positive-definite.
    """
    d = scene_depth if np.isfinite(scene_depth) and scene_depth > 0 else 1.0
    t_var = max(float(t_variance), MIN_VARIANCE * d * d) * (trans_sigma_rel * metres_per_unit) ** 2
    r_var = max(float(variance), MIN_VARIANCE) * np.radians(rot_sigma_deg) ** 2
    return np.diag([t_var] * 3 + [r_var] * 3).astype(np.float64)


def anchor_sees_newest(st: PlacedState, last: PlacedState, prev: PlacedState, num_new: int,
                       thr: float) -> bool:
    """Whether keyframe state ``st`` sees ``thr`` of the newest of ``num_new`` new frames, whose pose is
    extrapolated from the last two placed frames ``prev``, ``last`` (see
    :meth:`vggt_ros.core.pipeline.StreamingPipeline._anchor_covisible`)."""
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
