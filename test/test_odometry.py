"""Odometry a fuser can use: pose covariance from the pose chain's variances, twist in the child frame."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vggt_ros.core.oracle import OraclePredictor
from vggt_ros.core.pipeline import StreamingPipeline
from vggt_ros.core.pose_state import pose_covariance
from vggt_ros.outputs.builder import (
    FIRST_TWIST_VARIANCE,
    MAX_TWIST_CHILDREN,
    FieldsOnly,
    OutputBuilder,
    body_twist,
)
from vggt_ros.outputs.pose_frames import PoseFrames
from vggt_ros.params.validation import pipeline_config_from_params, validate_params
from vggt_ros.sim.sequences import make_sequence

TARGET = 70
DT = 0.1  # fps 10



def _params(**over):
    return validate_params(dict(predictor="oracle", checkpoint="", window_size=6, stride=3,
                                skip_policy="keep_all", target_size=TARGET, **over))


def _odometry(seq, rot=0.0, trans=0.0, seed=0, normalize=False, **over) -> list[dict]:
    """Odometry fields of a whole stream through the pipeline and the builder (camera mode)."""
    params = _params(**over)
    pipe = StreamingPipeline(pipeline_config_from_params(params))
    pred = OraclePredictor(seq, target_size=TARGET, pose_noise_rot_deg=rot, pose_noise_trans=trans,
                           seed=seed, normalize_scale=normalize)
    builder = OutputBuilder(params, FieldsOnly(), PoseFrames(params, np.eye(4), None))
    odo: list[dict] = []

    def run(job):
        odo.extend(o.message for o in builder.window(pipe.run_window(job, pred)) if o.key == "odometry")

    for f in seq.to_frames():
        pipe.add_frame(f)
        while (job := pipe.next_window()) is not None:
            run(job)
    if (job := pipe.flush()) is not None:
        run(job)
    return odo


def _cov(o, key="pose") -> np.ndarray:
    return np.asarray(o[key]["covariance"], np.float64).reshape(6, 6)


def _twist(o) -> tuple[np.ndarray, np.ndarray]:
    t = o["twist"]["twist"]
    return np.array([t["linear"][k] for k in "xyz"]), np.array([t["angular"][k] for k in "xyz"])


@pytest.fixture(scope="module")
def forward():
    s = make_sequence("forward", 18, height=60, width=80, fps=1 / DT)
    _ = s.rgb
    return s


@pytest.fixture(scope="module")
def clean(forward):
    return _odometry(forward)


def test_pose_covariance_is_finite_symmetric_positive_definite_and_isotropic_per_block(clean, forward):
    assert len(clean) == len(forward)
    for o in clean:
        c = _cov(o)
        assert np.isfinite(c).all() and np.allclose(c, c.T)
        assert np.linalg.eigvalsh(c).min() > 0
        assert np.allclose(c[:3, 3:], 0) and np.allclose(c[:3, :3], c[0, 0] * np.eye(3))
        assert np.allclose(c[3:, 3:], c[3, 3] * np.eye(3))
    # the bootstrap window: the priors, position sd ~ pose_trans_sigma_rel x the scene depth (4.5 m
    # median), rotation sd ~ pose_rot_sigma_deg; later, clean predictions measure a smaller noise
    depth = float(np.median(forward.depth[1]))
    c = _cov(clean[1])
    assert 0.8 * 0.05 * depth <= np.sqrt(c[0, 0]) <= 3 * 0.05 * depth
    assert 1.0 <= np.degrees(np.sqrt(c[3, 3])) <= 2.0
    late = _cov(clean[-1])
    assert late[0, 0] < c[0, 0] and late[3, 3] < c[3, 3]


def test_pose_covariance_follows_units_and_the_priors(forward, clean):
    """Position block in (metres per unit)^2 x sigma_rel^2, rotation block in sigma_rot^2 (rad^2); the
    sigmas start at the priors (the bootstrap window has nothing to measure them from yet)."""
    metric2 = _odometry(forward, scale_source="fixed", fixed_scale=2.0)
    priors = _odometry(forward, pose_rot_sigma_deg=3.0, pose_trans_sigma_rel=0.1)
    for a, b in zip(clean, metric2, strict=True):
        ca, cb = _cov(a), _cov(b)
        np.testing.assert_allclose(cb[:3, :3], 4 * ca[:3, :3], rtol=1e-9)
        np.testing.assert_allclose(cb[3:, 3:], ca[3:, 3:], rtol=1e-9)
    for a, p in zip(clean[:6], priors[:6], strict=True):  # the bootstrap window
        ca, cp = _cov(a), _cov(p)
        np.testing.assert_allclose(cp[:3, :3], 4 * ca[:3, :3], rtol=1e-9)
        np.testing.assert_allclose(cp[3:, 3:], 9 * ca[3:, 3:], rtol=1e-9)


def test_pose_covariance_grows_with_the_injected_noise(forward):
    """The per-frame noise is measured from the disagreement of overlapping windows: more oracle pose
    noise gives a larger covariance in both blocks once windows overlapped (the last window's frames;
    18 frames weigh the priors in too, so the growth is below the noise ratio)."""
    levels = [(0.3, 0.02), (1.0, 0.1), (3.0, 0.3)]  # (rotation deg, translation m) per frame
    var = []
    for rot, trans in levels:
        odo = _odometry(forward, rot=rot, trans=trans, seed=1)
        var.append(np.mean([np.diag(_cov(o)) for o in odo[-6:]], axis=0))
    var = np.array(var)
    assert np.all(np.diff(var, axis=0) > 0), var  # every diagonal entry grows with the noise
    assert np.all(var[-1, :3] > 3 * var[0, :3]) and np.all(var[-1, 3:] > 3 * var[0, 3:]), var


def test_pose_covariance_floors_the_exact_first_frame():
    c = pose_covariance(0.0, 0.0, 4.0, rot_sigma_deg=1.0, trans_sigma_rel=0.05, metres_per_unit=1.0)
    assert np.linalg.eigvalsh(c).min() > 0
    c = pose_covariance(0.0, 0.0, float("nan"), rot_sigma_deg=1.0, trans_sigma_rel=0.05,
                        metres_per_unit=1.0)
    assert np.linalg.eigvalsh(c).min() > 0


def _gt_twists(seq, n):
    return [body_twist(seq.world_T_camera[i - 1], seq.world_T_camera[i], DT) for i in range(1, n)]


def test_twist_is_the_ground_truth_velocity_in_the_child_frame(forward, clean):
    first_lin, first_ang = _twist(clean[0])
    assert not first_lin.any() and not first_ang.any()
    np.testing.assert_array_equal(_cov(clean[0], "twist"), FIRST_TWIST_VARIANCE * np.eye(6))
    gt = _gt_twists(forward, len(clean))
    for o, (v, w) in zip(clean[1:], gt, strict=True):
        lin, ang = _twist(o)
        np.testing.assert_allclose(lin, v, atol=1e-4)  # m/s (oracle in metres: world units = metres)
        np.testing.assert_allclose(ang, w, atol=1e-5)
        assert 0.7 < np.linalg.norm(lin) < 0.9  # walking forward at 0.8 m/s
        assert lin[2] > 0.7  # along the camera's optical axis (z forward)
        c = _cov(o, "twist")
        assert np.isfinite(c).all() and np.allclose(c, c.T) and np.linalg.eigvalsh(c).min() > 0
        # from the two poses' covariances over dt^2 (isotropic blocks: the same in the child frame)
        assert c[0, 0] < FIRST_TWIST_VARIANCE


def test_twist_error_with_noisy_predictions_is_within_its_covariance(forward):
    odo = _odometry(forward, rot=0.5, trans=0.005, seed=2)
    gt = _gt_twists(forward, len(odo))
    err = np.array([_twist(o)[0] - v for o, (v, _) in zip(odo[1:], gt, strict=True)])
    sd = np.sqrt(np.array([_cov(o, "twist")[0, 0] for o in odo[1:]]))
    assert np.sqrt(np.mean(err**2)) < 0.5  # m/s (0.005 m per-frame noise over 0.1 s: ~0.07 m/s an axis)
    assert (np.abs(err) < 3 * sd[:, None]).all()


def test_body_twist_recovers_a_constant_twist_with_rotation():
    v, w = np.array([0.5, -0.2, 1.0]), np.array([0.1, 0.3, -0.2])
    xi = np.zeros((4, 4))
    xi[:3, :3] = [[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]]
    xi[:3, 3] = v
    from scipy.linalg import expm

    T0 = np.eye(4)
    T0[:3, :3] = Rotation.from_rotvec([0.3, -1.0, 2.0]).as_matrix()
    T0[:3, 3] = [1, 2, 3]
    T1 = T0 @ expm(xi * 0.25)
    lin, ang = body_twist(T0, T1, 0.25)
    np.testing.assert_allclose(lin, v, atol=1e-9)
    np.testing.assert_allclose(ang, w, atol=1e-9)
    lin, ang = body_twist(T0, T0 @ expm(xi * 1e-6), 1e-6)  # the small-angle branch
    np.testing.assert_allclose(lin, v, rtol=1e-6)


def test_twist_state_is_per_child_bounded_and_reset(clean):
    params = _params()
    b = OutputBuilder(params, FieldsOnly(), PoseFrames(params, np.eye(4), None))
    T1 = np.eye(4)
    T1[0, 3] = 0.1
    cov = np.eye(6) * 1e-4
    o = b._odometry(np.eye(4), cov, 10**9, "cam_a")
    assert _cov(o, "twist")[0, 0] == FIRST_TWIST_VARIANCE
    o = b._odometry(T1, cov, 10**9 + 10**8, "cam_a")
    np.testing.assert_allclose(_twist(o)[0], [1.0, 0, 0])
    np.testing.assert_allclose(np.diag(_cov(o, "twist")), 2e-4 / 0.01)
    o = b._odometry(T1, cov, 10**9 + 10**8, "cam_b")  # another child: its own first message
    assert not _twist(o)[0].any() and _cov(o, "twist")[0, 0] == FIRST_TWIST_VARIANCE
    o = b._odometry(T1, cov, 10**9, "cam_a")  # stamp went back (a bag loop): no twist
    assert _cov(o, "twist")[0, 0] == FIRST_TWIST_VARIANCE
    for k in range(3 * MAX_TWIST_CHILDREN):
        b._odometry(T1, cov, 10**9, f"c{k}")
    assert len(b._last_pose) == MAX_TWIST_CHILDREN
    b.reset()
    assert not b._last_pose
    o = b._odometry(T1, cov, 2 * 10**9, "cam_a")
    assert _cov(o, "twist")[0, 0] == FIRST_TWIST_VARIANCE


def test_base_mode_publishes_the_same_covariance_and_the_base_twist(forward):
    """odom -> base_link: the covariance (isotropic per block) holds in the odom frame; the twist is
    the base's own velocity in base_link (REP 105)."""
    base_T_cam = np.array([[0, 0, 1, 0.2], [-1, 0, 0, 0], [0, -1, 0, 0.5], [0, 0, 0, 1.0]])
    params = _params(odom_frame="odom", base_frame="base_link")
    cfg = pipeline_config_from_params(params)
    pipe = StreamingPipeline(cfg)
    pred = OraclePredictor(forward, target_size=TARGET, normalize_scale=False)
    frames = PoseFrames(params, np.eye(4), lambda target, source, stamp, timeout: base_T_cam)
    builder = OutputBuilder(params, FieldsOnly(), frames)
    pairs = []
    for f in forward.to_frames():
        pipe.add_frame(f)
        while (job := pipe.next_window()) is not None:
            out = pipe.run_window(job, pred)
            odo = [o.message for o in builder.window(out) if o.key == "odometry"]
            pairs += list(zip(out.frames, odo, strict=True))
    assert pairs
    cam_T_base = np.linalg.inv(base_T_cam)
    gt_base = [forward.world_T_camera[i] @ cam_T_base for i in range(len(pairs))]
    for i, (fo, o) in enumerate(pairs):
        assert o["header"]["frame_id"] == "odom" and o["child_frame_id"] == "base_link"
        np.testing.assert_array_equal(_cov(o), fo.pose_covariance)
        if i:
            lin, ang = _twist(o)
            v, w = body_twist(gt_base[i - 1], gt_base[i], DT)
            np.testing.assert_allclose(lin, v, atol=1e-4)
            np.testing.assert_allclose(ang, w, atol=1e-5)
