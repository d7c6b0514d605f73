"""Camera math of VGGT (model spec section 8): pose encoding <-> cameras, depth -> points, SE(3) inverse.

Every function accepts numpy arrays or torch tensors with any leading batch axes and returns the same
kind: torch stays in its dtype/device (used on model outputs), numpy is computed in float64 (used by
the streaming core, where precision is cheap and poses are accumulated). Rotation -> quaternion goes
through scipy (not differentiable); everything else is plain tensor math.

Conventions: extrinsic E = [R | t] is camera-from-world (X_cam = R X_world + t), OpenCV axes; pose
encoding = (t, quaternion x y z w scalar-last, fov_h, fov_w); principal point at (W/2, H/2) with
integer pixel centres, exactly as the official helpers.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
from scipy.spatial.transform import Rotation

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def _as_float(x):
    """numpy -> float64 array; torch -> floating tensor (half precision promoted to float32)."""
    if isinstance(x, torch.Tensor):
        return x if x.dtype in (torch.float32, torch.float64) else x.to(torch.float32)
    return np.asarray(x, dtype=np.float64)


def _stack(items, axis):
    return torch.stack(items, dim=axis) if isinstance(items[0], torch.Tensor) else np.stack(items, axis=axis)


def _tan(x):
    return torch.tan(x) if isinstance(x, torch.Tensor) else np.tan(x)


def _atan(x):
    return torch.atan(x) if isinstance(x, torch.Tensor) else np.arctan(x)


def quaternion_to_matrix(quat: Array) -> Array:
    """Scalar-last quaternion ``[..., 4]`` -> rotation ``[..., 3, 3]`` (implicitly normalised, 2/|q|^2)."""
    q = _as_float(quat)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    s = 2.0 / (x * x + y * y + z * z + w * w)
    rows = [
        _stack([1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)], -1),
        _stack([s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w)], -1),
        _stack([s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y)], -1),
    ]
    return _stack(rows, -2)


def matrix_to_quaternion(rotation: Array) -> Array:
    """Rotation ``[..., 3, 3]`` -> scalar-last unit quaternion ``[..., 4]`` with w >= 0 (via scipy)."""
    is_torch = isinstance(rotation, torch.Tensor)
    R = rotation.detach().cpu().double().numpy() if is_torch else np.asarray(rotation, dtype=np.float64)
    batch = R.shape[:-2]
    q = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_quat()  # scalar-last
    q = np.where(q[:, 3:4] < 0, -q, q).reshape(*batch, 4)
    if is_torch:
        return torch.as_tensor(q, dtype=_as_float(rotation).dtype, device=rotation.device)
    return q


def pose_encoding_to_extri_intri(pose_enc: Array, image_size_hw: tuple[int, int]) -> tuple[Array, Array]:
    """``[..., 9]`` pose encoding -> (extrinsics ``[..., 3, 4]``, intrinsics ``[..., 3, 3]``).

    ``image_size_hw`` is the (H, W) of the network input the encoding was predicted for.
    """
    enc = _as_float(pose_enc)
    if enc.shape[-1] != 9:
        raise ValueError(f"pose encoding must have 9 values in the last axis, got shape {tuple(enc.shape)}")
    H, W = float(image_size_hw[0]), float(image_size_hw[1])
    R = quaternion_to_matrix(enc[..., 3:7])
    t = enc[..., :3]
    extrinsics = torch.cat([R, t[..., None]], dim=-1) if isinstance(enc, torch.Tensor) \
        else np.concatenate([R, t[..., None]], axis=-1)
    fy = (H / 2.0) / _tan(enc[..., 7] / 2.0)
    fx = (W / 2.0) / _tan(enc[..., 8] / 2.0)
    zero = torch.zeros_like(fx) if isinstance(fx, torch.Tensor) else np.zeros_like(fx)
    one = zero + 1
    intrinsics = _stack([
        _stack([fx, zero, zero + W / 2.0], -1),
        _stack([zero, fy, zero + H / 2.0], -1),
        _stack([zero, zero, one], -1),
    ], -2)
    return extrinsics, intrinsics


def extri_intri_to_pose_encoding(
    extrinsics: Array, intrinsics: Array, image_size_hw: tuple[int, int]
) -> Array:
    """Inverse of :func:`pose_encoding_to_extri_intri` (quaternion with w >= 0; FoV from the focals)."""
    E = _as_float(extrinsics)
    K = _as_float(intrinsics)
    H, W = float(image_size_hw[0]), float(image_size_hw[1])
    quat = matrix_to_quaternion(E[..., :3, :3])
    fov_h = 2.0 * _atan((H / 2.0) / K[..., 1, 1])
    fov_w = 2.0 * _atan((W / 2.0) / K[..., 0, 0])
    if isinstance(E, torch.Tensor):
        return torch.cat([E[..., :3, 3], quat.to(E.dtype), fov_h[..., None], fov_w[..., None]], dim=-1)
    return np.concatenate([E[..., :3, 3], quat, fov_h[..., None], fov_w[..., None]], axis=-1)


def closed_form_inverse_se3(se3: Array) -> Array:
    """``[..., 3, 4]`` or ``[..., 4, 4]`` rigid transforms -> ``[..., 4, 4]`` inverses [R^T | -R^T t].

    Exact for rigid motions and much cheaper/stabler than a general matrix inverse.
    """
    T = _as_float(se3)
    if tuple(T.shape[-2:]) not in ((3, 4), (4, 4)):
        raise ValueError(f"expected [..., 3, 4] or [..., 4, 4] transforms, got shape {tuple(T.shape)}")
    R = T[..., :3, :3]
    t = T[..., :3, 3:4]
    if isinstance(T, torch.Tensor):
        Rt = R.transpose(-1, -2)
        out = torch.zeros(*T.shape[:-2], 4, 4, dtype=T.dtype, device=T.device)
    else:
        Rt = np.swapaxes(R, -1, -2)
        out = np.zeros((*T.shape[:-2], 4, 4), dtype=T.dtype)
    out[..., :3, :3] = Rt
    out[..., :3, 3:4] = -(Rt @ t)
    out[..., 3, 3] = 1.0
    return out


def _pixel_grid(h: int, w: int, like):
    if isinstance(like, torch.Tensor):
        v, u = torch.meshgrid(torch.arange(h, dtype=like.dtype, device=like.device),
                              torch.arange(w, dtype=like.dtype, device=like.device), indexing="ij")
    else:
        v, u = np.meshgrid(np.arange(h, dtype=like.dtype), np.arange(w, dtype=like.dtype), indexing="ij")
    return u, v


def _squeeze_depth(depth):
    d = _as_float(depth)
    if d.ndim >= 3 and d.shape[-1] == 1:
        d = d[..., 0]
    if d.ndim < 2:
        raise ValueError(f"depth must be [..., H, W] or [..., H, W, 1], got shape {tuple(d.shape)}")
    return d


def depth_to_camera_points(depth: Array, intrinsics: Array) -> Array:
    """Depth ``[..., H, W]`` (or ``[..., H, W, 1]``) + K ``[..., 3, 3]`` -> camera points ``[..., H, W, 3]``.

    X_cam = ((u - cx) d / fx, (v - cy) d / fy, d) with integer pixel centres. Pixels with d <= 1e-8
    are invalid for the official helpers (see :func:`valid_depth_mask`); they are unprojected anyway.
    """
    d = _squeeze_depth(depth)
    K = _as_float(intrinsics)
    if isinstance(d, torch.Tensor):
        K = K.to(dtype=d.dtype, device=d.device)
    u, v = _pixel_grid(d.shape[-2], d.shape[-1], d)
    fx = K[..., 0, 0][..., None, None]
    fy = K[..., 1, 1][..., None, None]
    cx = K[..., 0, 2][..., None, None]
    cy = K[..., 1, 2][..., None, None]
    return _stack([(u - cx) * d / fx, (v - cy) * d / fy, d], -1)


def camera_to_world_points(points_cam: Array, extrinsics: Array) -> Array:
    """Camera points ``[..., H, W, 3]`` + camera-from-world E ``[..., 3, 4]`` -> world points R^T (X - t)."""
    P = _as_float(points_cam)
    E = _as_float(extrinsics)
    if isinstance(P, torch.Tensor):
        E = E.to(dtype=P.dtype, device=P.device)
    R = E[..., None, :3, :3]          # [..., 1, 3, 3] broadcast over H
    t = E[..., None, None, :3, 3]     # [..., 1, 1, 3]
    # (X - t) @ R == R^T (X - t) for row vectors; batched matmul over [..., H, W, 3] x [..., 1, 3, 3].
    return (P - t) @ R


def depth_to_world_points(depth: Array, extrinsics: Array, intrinsics: Array) -> Array:
    """Depth ``[..., H, W]`` -> world points ``[..., H, W, 3]``.

    Same as the official ``unproject_depth_map_to_point_map``; usually more accurate than the point
    head (official README).
    """
    return camera_to_world_points(depth_to_camera_points(depth, intrinsics), extrinsics)


def valid_depth_mask(depth: Array) -> Array:
    """Pixels the official helpers treat as valid: depth > 1e-8."""
    return _squeeze_depth(depth) > 1e-8


def project_points(points_world: Array, extrinsics: Array, intrinsics: Array) -> tuple[Array, Array]:
    """World points ``[..., N, 3]`` -> (pixels ``[..., N, 2]``, camera depth ``[..., N]``) per camera."""
    P = _as_float(points_world)
    E = _as_float(extrinsics)
    K = _as_float(intrinsics)
    if isinstance(P, torch.Tensor):
        E = E.to(dtype=P.dtype, device=P.device)
        K = K.to(dtype=P.dtype, device=P.device)
        cam = P @ E[..., :3, :3].transpose(-1, -2) + E[..., None, :3, 3]
        pix = cam @ K.transpose(-1, -2)
    else:
        cam = P @ np.swapaxes(E[..., :3, :3], -1, -2) + E[..., None, :3, 3]
        pix = cam @ np.swapaxes(K, -1, -2)
    z = cam[..., 2]
    return pix[..., :2] / pix[..., 2:3], z
