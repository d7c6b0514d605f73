"""Calibrated (distorted) cameras (issue 16): CameraInfo distortion decoded, frames undistorted before
the network, published depth/CameraInfo describing the undistorted image -- on a generated distorted
camera (``vggt_ros.sim.distortion``) run through the pipeline with the oracle."""

from __future__ import annotations

import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vggt_ros.bag.reader import BagFrame
from vggt_ros.bag.replay import _undistorted
from vggt_ros.core.oracle import OraclePredictor
from vggt_ros.core.pipeline import StreamingPipeline
from vggt_ros.core.types import Frame
from vggt_ros.core.undistort import Undistorter
from vggt_ros.messages.camera_info import (
    DISTORTION_MODELS,
    CameraModel,
    MessageError,
    UnsupportedDistortion,
    camera_info_fields,
    camera_info_msg_to_model,
)
from vggt_ros.outputs.builder import FieldsOnly, OutputBuilder
from vggt_ros.outputs.pose_frames import PoseFrames
from vggt_ros.params.validation import pipeline_config_from_params, validate_params
from vggt_ros.sim.distortion import EXAMPLE_D, distort, distortion_map, example_camera
from vggt_ros.sim.sequences import default_intrinsics, make_sequence

H, W, N, TARGET = 240, 320, 12, 140
K = default_intrinsics(H, W)


def info_msg(model: str, d, upper: bool = False) -> SimpleNamespace:
    f = camera_info_fields(K, H, W, 0, "cam", distortion=np.asarray(d, np.float64), distortion_model=model)
    if upper:  # ROS 1 spells the matrices D, K
        f = {(k.upper() if k in ("d", "k", "r", "p") else k): v for k, v in f.items()}
    return SimpleNamespace(**f)


# ------------------------------------------------------------------ decoding
@pytest.mark.parametrize("model", list(DISTORTION_MODELS))
@pytest.mark.parametrize("upper", [False, True])
def test_each_model_is_decoded(model, upper):
    cam = camera_info_msg_to_model(info_msg(model, EXAMPLE_D[model], upper))
    assert cam.distortion_model == model and cam.distorted and cam.hw == (H, W)
    np.testing.assert_array_equal(cam.D, EXAMPLE_D[model])
    np.testing.assert_array_equal(cam.new_K, K)


def test_zero_or_missing_distortion_is_a_pinhole_camera():
    for msg in (info_msg("plumb_bob", np.zeros(5)), info_msg("plumb_bob", []), info_msg("", []),
                info_msg("some_model", np.zeros(3)), SimpleNamespace(k=K.ravel(), height=H, width=W)):
        cam = camera_info_msg_to_model(msg)
        assert not cam.distorted and cam.D.size == 0


@pytest.mark.parametrize("model,n", [("plumb_bob", 4), ("plumb_bob", 8), ("rational_polynomial", 5),
                                     ("equidistant", 5)])
def test_a_d_of_the_wrong_length_is_refused_with_a_clear_message(model, n):
    with pytest.raises(UnsupportedDistortion, match=rf"{model}' takes {DISTORTION_MODELS[model]} "
                                                    rf"coefficients in d, got {n}"):
        camera_info_msg_to_model(info_msg(model, np.full(n, 0.01)))


def test_unknown_model_or_bad_d_is_refused():
    with pytest.raises(UnsupportedDistortion, match="'fov' is not supported.*plumb_bob"):
        camera_info_msg_to_model(info_msg("fov", [0.9]))
    with pytest.raises(UnsupportedDistortion, match="non-finite"):
        camera_info_msg_to_model(info_msg("plumb_bob", [np.nan, 0, 0, 0, 0]))
    with pytest.raises(MessageError, match="distortion_model must be a string"):
        camera_info_msg_to_model(SimpleNamespace(k=K.ravel(), height=H, width=W, d=[0.1] * 5,
                                                 distortion_model=3))


# ------------------------------------------------------------------ undistort(distort(x)) = x
@pytest.mark.parametrize("model", list(DISTORTION_MODELS))
def test_undistort_inverts_the_generated_distortion(model):
    cam = example_camera(K, (H, W), model)
    u = Undistorter()
    mx, my = distortion_map(cam)  # distorted pixel -> pinhole pixel
    m1, m2 = u.maps(cam)  # per undistorted pixel: the pinhole pixel it shows (bilinear, smooth maps)
    back_x, back_y = (cv2.remap(m, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=np.nan) for m in (mx, my))
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    ok = np.isfinite(back_x)
    assert ok.mean() > 0.95
    err = np.hypot(back_x - gx, back_y - gy)[ok]
    print(f"{model}: round trip error median {np.median(err):.3f} px, max {err.max():.3f} px")
    assert np.median(err) < 0.05 and err.max() < 0.2  # cv2's fixed-point maps: 1/32 px
    seq = make_sequence("orbit", 1, height=H, width=W)
    rgb = seq.render_frame(0)[0]
    dist = distort(rgb, cam)
    valid = u.image(np.full((H, W), 255, np.uint8), cam) == 255
    e_round = np.abs(u.image(dist, cam).astype(float) - rgb)[valid].mean()
    e_dist = np.abs(dist.astype(float) - rgb)[valid].mean()
    assert e_round < 0.2 * e_dist, (e_round, e_dist)


def test_pinhole_frames_are_passed_through_and_maps_cached():
    u = Undistorter()
    img = np.zeros((H, W, 3), np.uint8)
    f = u.frame(Frame(1, img), CameraModel(K, (H, W)))
    assert f.image is img and np.array_equal(f.intrinsics, K)
    cam = example_camera(K, (H, W), "plumb_bob")
    assert u.maps(cam)[0] is u.maps(example_camera(K, (H, W), "plumb_bob"))[0]
    with pytest.raises(ValueError, match="camera model"):
        u.image(np.zeros((H + 1, W, 3), np.uint8), cam)


def test_cost_per_640x480_frame():
    cam = example_camera(default_intrinsics(480, 640), (480, 640), "plumb_bob")
    u = Undistorter()
    img = np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)
    u.image(img, cam)  # the map, once
    t = time.perf_counter()
    for _ in range(20):
        u.image(img, cam)
    ms = (time.perf_counter() - t) / 20 * 1e3
    print(f"undistort 640x480 RGB: {ms:.2f} ms/frame")
    assert ms < 25


def test_replay_undistorts_image_depth_and_k():
    cam = example_camera(K, (H, W), "equidistant")
    bf = BagFrame(1, 1, np.full((H, W, 3), 9, np.uint8), "cam", K, np.ones((H, W), np.float32), camera=cam)
    out = _undistorted(bf, Undistorter())
    assert out.camera is None and np.array_equal(out.intrinsics, K)
    assert np.isnan(out.depth).sum() == np.sum(out.image[..., 0] == 0)  # the same pixels are uncovered
    plain = BagFrame(1, 1, bf.image, "cam", K)
    assert _undistorted(plain, Undistorter()) is plain


# ------------------------------------------------------------------ the measured effect (oracle)

def _stream(seq, model: str, use_d: bool) -> dict:
    """A generated distorted camera through the pipeline with the oracle: undistorted first (D used)
    or taken as pinhole (D ignored). The oracle is an ideal pinhole network: its depth is what each
    pixel of the image it is given shows. Depth abs-rel against the pinhole ground truth; two-view
    rotation error (LK + essential matrix with the frame's K) of the images the network gets."""
    cam = example_camera(seq.K, (H, W), model)
    u = Undistorter()
    frames, gt = [], {}
    for i in range(N):
        rgb, depth = seq.render_frame(i)
        s = int(seq.stamps_ns[i])
        img, dd = distort(rgb, cam), distort(depth, cam, nearest=True)
        f = u.frame(Frame(s, img), cam) if use_d else Frame(s, img, intrinsics=seq.K.copy())
        frames.append(f)
        gt[s] = (seq.world_T_camera[i], f.intrinsics, u.depth(dd, cam) if use_d else dd)
    params = validate_params(dict(predictor="oracle", checkpoint="", window_size=6, stride=3,
                                  skip_policy="keep_all", target_size=TARGET))
    pipe = StreamingPipeline(pipeline_config_from_params(params))
    pred = OraclePredictor(gt, target_size=TARGET, normalize_scale=False)
    builder = OutputBuilder(params, FieldsOnly(), PoseFrames(params, np.eye(4), None))
    outs, infos = [], []

    def run(job):
        res = pipe.run_window(job, pred)
        outs.extend(res.frames)
        infos.extend(o.message for o in builder.window(res) if o.key == "depth_info")

    for f in frames:
        pipe.add_frame(f)
        while (job := pipe.next_window()) is not None:
            run(job)
    if (job := pipe.flush()) is not None:
        run(job)
    rel = []
    for fo in outs:
        g = cv2.resize(seq.render_frame(seq.index_of(fo.stamp_ns))[1], fo.depth.shape[::-1],
                       interpolation=cv2.INTER_NEAREST)
        ok = np.isfinite(fo.depth) & (g > 0)
        rel.append(np.abs(fo.depth[ok] - g[ok]) / g[ok])
    rot = []
    for a in range(N - 2):
        b = a + 2
        ga, gb = (cv2.cvtColor(frames[j].image, cv2.COLOR_RGB2GRAY) for j in (a, b))
        p0 = cv2.goodFeaturesToTrack(ga, 400, 0.01, 5)
        p1, st, _ = cv2.calcOpticalFlowPyrLK(ga, gb, p0, None)
        ok = st.ravel() == 1
        Kf = frames[a].intrinsics
        E, m = cv2.findEssentialMat(p0[ok], p1[ok], Kf, cv2.RANSAC, 0.999, 0.5)
        _, R, _, _ = cv2.recoverPose(E[:3], p0[ok], p1[ok], Kf, mask=m)
        R_gt = (np.linalg.inv(seq.world_T_camera[b]) @ seq.world_T_camera[a])[:3, :3]
        rot.append(np.degrees(Rotation.from_matrix(R @ R_gt.T).magnitude()))
    return {"abs_rel": float(np.mean(np.concatenate(rel))), "rot_deg": float(np.mean(rot)),
            "frames": len(outs), "infos": infos}


@pytest.fixture(scope="module")
def orbit():
    return make_sequence("orbit", N, height=H, width=W, fps=10)


@pytest.mark.parametrize("model", ["plumb_bob", "equidistant"])
def test_with_d_depth_and_rotation_match_ground_truth_better(orbit, model):
    with_d, without = _stream(orbit, model, True), _stream(orbit, model, False)
    print(f"{model}: D used abs_rel {with_d['abs_rel']:.4f} rot {with_d['rot_deg']:.3f} deg; "
          f"D ignored abs_rel {without['abs_rel']:.4f} rot {without['rot_deg']:.3f} deg")
    assert with_d["frames"] == without["frames"] == N
    assert with_d["abs_rel"] < 0.02 and without["abs_rel"] > 2.5 * with_d["abs_rel"]
    assert with_d["rot_deg"] < without["rot_deg"]
    for info in with_d["infos"]:  # the published depth CameraInfo: the undistorted (pinhole) camera
        assert info["distortion_model"] == "plumb_bob" and not np.any(info["d"])
    assert len(with_d["infos"]) == N


def test_node_camera_input_undistorts_and_refuses_a_wrong_d():
    pytest.importorskip("rclpy")
    from vggt_ros.core.frame_buffer import Counters
    from vggt_ros.ros.camera_input import CameraInput

    params = validate_params({"predictor": "oracle", "checkpoint": "", "scale_source": "depth"})
    counters, frames, warnings = Counters(), [], []
    ci = CameraInput(params, counters, lambda k, t: warnings.append(t), frames.append, lambda *a: None)
    cam = example_camera(K, (H, W), "plumb_bob")
    ci.on_camera_info(info_msg("plumb_bob", cam.D))
    rgb = make_sequence("orbit", 1, height=H, width=W).render_frame(0)[0]
    header = SimpleNamespace(stamp=SimpleNamespace(sec=1, nanosec=0), frame_id="cam")
    img = distort(rgb, cam)
    ci.on_image(SimpleNamespace(header=header, height=H, width=W, encoding="rgb8", is_bigendian=0,
                                step=W * 3, data=img.tobytes()))
    ci.on_metric_depth(SimpleNamespace(header=header, height=H, width=W, encoding="32FC1", is_bigendian=0,
                                       step=W * 4, data=np.ones((H, W), np.float32).tobytes()))
    assert len(frames) == 1, (counters.snapshot(), warnings)
    np.testing.assert_array_equal(frames[0].image, Undistorter().image(img, cam))
    np.testing.assert_array_equal(frames[0].intrinsics, K)
    ones = np.ones((H, W), np.float32)
    np.testing.assert_array_equal(frames[0].metric_depth, Undistorter().depth(ones, cam))
    ci.on_camera_info(info_msg("plumb_bob", cam.D[:4]))
    assert counters.snapshot()["rejected_camera_info"] == 1
    assert "takes 5 coefficients in d, got 4" in warnings[-1]
