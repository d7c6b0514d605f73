"""Camera math: golden pose-encoding conversion, round trips and unprojection vs projection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from scipy.spatial.transform import Rotation

from vggt_ros.model.geometry import (
    closed_form_inverse_se3,
    depth_to_camera_points,
    depth_to_world_points,
    extri_intri_to_pose_encoding,
    matrix_to_quaternion,
    pose_encoding_to_extri_intri,
    project_points,
    quaternion_to_matrix,
    valid_depth_mask,
)

GOLDEN = Path(__file__).parent / "data" / "golden"
CASES = ["small_case_a", "small_case_b", "vggt1b_case_a", "vggt1b_case_b"]


def _close(actual, expected):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape
    tol = 1e-4 * max(1.0, np.abs(expected).max())
    assert np.abs(actual - expected).max() <= tol


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_golden_pose_encoding_to_cameras(case, backend):
    g = load_file(GOLDEN / f"{case}.safetensors")
    images = g["images"] if "images" in g else g["images_u8"]
    hw = tuple(images.shape[-2:])
    enc = g["pose_enc"] if backend == "torch" else g["pose_enc"].numpy()
    extrinsic, intrinsic = pose_encoding_to_extri_intri(enc, hw)
    assert isinstance(extrinsic, torch.Tensor if backend == "torch" else np.ndarray)
    _close(extrinsic, g["extrinsic"].numpy())
    _close(intrinsic, g["intrinsic"].numpy())


def _random_cameras(n, seed, h=392, w=518):
    rng = np.random.default_rng(seed)
    R = Rotation.random(n, random_state=seed).as_matrix()
    t = rng.normal(size=(n, 3))
    E = np.concatenate([R, t[..., None]], axis=-1)
    K = np.zeros((n, 3, 3))
    K[:, 0, 0] = (w / 2) / np.tan(rng.uniform(0.3, 2.5, n) / 2)
    K[:, 1, 1] = (h / 2) / np.tan(rng.uniform(0.3, 2.5, n) / 2)
    K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = w / 2, h / 2, 1
    return E, K, (h, w)


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_round_trip_cameras_encoding(backend):
    E, K, hw = _random_cameras(64, seed=3)
    E_in = torch.from_numpy(E) if backend == "torch" else E
    K_in = torch.from_numpy(K) if backend == "torch" else K
    enc = extri_intri_to_pose_encoding(E_in, K_in, hw)
    assert tuple(enc.shape) == (64, 9)
    assert (np.asarray(enc[..., 6]) >= 0).all()  # qw >= 0
    E2, K2 = pose_encoding_to_extri_intri(enc, hw)
    np.testing.assert_allclose(np.asarray(E2), E, atol=1e-9)
    np.testing.assert_allclose(np.asarray(K2), K, rtol=1e-9, atol=1e-9)
    enc2 = extri_intri_to_pose_encoding(E2, K2, hw)
    np.testing.assert_allclose(np.asarray(enc2), np.asarray(enc), atol=1e-9)


def test_quaternion_formula_matches_scipy_and_is_scale_invariant():
    q = Rotation.random(20, random_state=1).as_quat()
    expected = Rotation.from_quat(q).as_matrix()
    np.testing.assert_allclose(quaternion_to_matrix(q), expected, atol=1e-12)
    np.testing.assert_allclose(quaternion_to_matrix(3.7 * q), expected, atol=1e-12)  # not normalised first
    q_back = matrix_to_quaternion(expected)
    q_pos = np.where(q[:, 3:4] < 0, -q, q)
    np.testing.assert_allclose(q_back, q_pos, atol=1e-12)


def test_closed_form_inverse():
    E, _, _ = _random_cameras(10, seed=5)
    inv = closed_form_inverse_se3(E)
    E4 = np.concatenate([E, np.tile([[[0, 0, 0, 1.0]]], (10, 1, 1))], axis=1)
    np.testing.assert_allclose(inv, np.linalg.inv(E4), atol=1e-12)
    np.testing.assert_allclose(closed_form_inverse_se3(E4), inv, atol=1e-15)
    inv_t = closed_form_inverse_se3(torch.from_numpy(E))
    assert isinstance(inv_t, torch.Tensor)
    np.testing.assert_allclose(inv_t.numpy(), inv, atol=1e-12)
    with pytest.raises(ValueError, match="3, 4"):
        closed_form_inverse_se3(np.zeros((2, 3, 3)))


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_unprojection_reprojects_to_pixel_grid(backend):
    S, H, W = 3, 28, 42
    E, K, _ = _random_cameras(S, seed=7, h=H, w=W)
    depth = np.random.default_rng(2).uniform(0.5, 4.0, size=(S, H, W, 1))
    to = torch.from_numpy if backend == "torch" else np.asarray
    world = depth_to_world_points(to(depth), to(E), to(K))
    assert tuple(world.shape) == (S, H, W, 3)
    pix, z = project_points(to(np.asarray(world).reshape(S, H * W, 3)), to(E), to(K))
    v, u = np.mgrid[0:H, 0:W]
    grid = np.stack([u, v], -1).reshape(1, H * W, 2)
    np.testing.assert_allclose(np.asarray(pix), np.broadcast_to(grid, (S, H * W, 2)), atol=1e-8)
    np.testing.assert_allclose(np.asarray(z), depth.reshape(S, H * W), atol=1e-10)


def test_unprojection_explicit_formula_and_world_of_identity_camera():
    H, W = 5, 7
    K = np.array([[10.0, 0, 3.5], [0, 12.0, 2.5], [0, 0, 1]])
    depth = np.arange(1, H * W + 1, dtype=np.float64).reshape(H, W)
    cam = depth_to_camera_points(depth, K)
    for v, u in [(0, 0), (4, 6), (2, 3)]:
        d = depth[v, u]
        np.testing.assert_allclose(cam[v, u], [(u - 3.5) * d / 10, (v - 2.5) * d / 12, d])
    E = np.concatenate([np.eye(3), np.zeros((3, 1))], axis=1)
    np.testing.assert_allclose(depth_to_world_points(depth, E, K), cam)
    # A pure translation t moves world points by -t (X_world = X_cam - t).
    E[:, 3] = [1.0, -2.0, 0.5]
    np.testing.assert_allclose(depth_to_world_points(depth, E, K), cam - E[:, 3])


def test_valid_mask_and_torch_dtype_preserved():
    depth = torch.tensor([[[0.0, 1e-9], [1.0, 2.0]]])
    assert valid_depth_mask(depth).tolist() == [[[False, False], [True, True]]]
    K = torch.eye(3)[None]
    pts = depth_to_camera_points(depth.float(), K)
    assert pts.dtype == torch.float32 and tuple(pts.shape) == (1, 2, 2, 3)
