"""Inference engine: Prediction contents, query mapping, dtype policy, errors (small config, CPU fp32)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from golden_weights import golden_config, small_golden_model, textured_frames
from safetensors.torch import save_file

from vggt_ros.core.types import Predictor
from vggt_ros.model.config import VGGTConfig
from vggt_ros.model.engine import InferenceEngine, InferenceOutOfMemory, min_track_side, resolve_dtype
from vggt_ros.model.geometry import pose_encoding_to_extri_intri
from vggt_ros.model.preprocessing import preprocess_images
from vggt_ros.model.vggt import VGGT
from vggt_ros.prediction import Prediction

TARGET = 112  # small network input keeps the tests fast; 120x160 camera -> 112x84 (crop mode)


@pytest.fixture(scope="module")
def model() -> VGGT:
    return small_golden_model()


@pytest.fixture(scope="module")
def engine(model) -> InferenceEngine:
    return InferenceEngine(model, device="cpu", target_size=TARGET)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return textured_frames(3, seed=4, noise=8, step=10)


QUERIES = np.array([[10.0, 20.0], [80.5, 60.25], [150.0, 110.0]])


@pytest.fixture(scope="module")
def prediction(engine, images) -> Prediction:
    return engine.predict(images, query_points=QUERIES, frame_keys=[10, 20, 30])


def test_is_a_predictor(engine):
    assert isinstance(engine, Predictor)


def test_shapes_and_dtypes(prediction, images):
    p = prediction
    S, H, W = 3, 84, 112
    assert p.num_frames == S and p.network_hw == (H, W)
    expected = {
        "extrinsics": (S, 3, 4), "intrinsics": (S, 3, 3), "depth": (S, H, W), "depth_conf": (S, H, W),
        "world_points": (S, H, W, 3), "world_points_conf": (S, H, W), "tracks": (S, 3, 2),
        "track_vis": (S, 3), "track_conf": (S, 3), "query_points": (3, 2),
    }
    for name, shape in expected.items():
        value = getattr(p, name)
        assert value.shape == shape, name
        assert value.dtype == np.float32, name
        assert np.isfinite(value).all(), name
    assert p.images.dtype == np.uint8 and p.images.shape == (S, H, W, 3)
    assert len(p.preprocess) == S and all(i.original_hw == (120, 160) for i in p.preprocess)
    assert {"preprocess", "forward", "postprocess", "total"} <= set(p.timings)


def test_value_ranges(prediction):
    p = prediction
    np.testing.assert_allclose(p.intrinsics[:, 0, 2], 112 / 2)
    np.testing.assert_allclose(p.intrinsics[:, 1, 2], 84 / 2)
    np.testing.assert_allclose(p.intrinsics[:, 2], np.tile([0, 0, 1], (3, 1)))
    assert (p.depth > 0).all()
    assert (p.depth_conf >= 1).all() and (p.world_points_conf >= 1).all()
    for probs in (p.track_vis, p.track_conf):
        assert ((probs >= 0) & (probs <= 1)).all()
    R = p.extrinsics[:, :, :3].astype(np.float64)
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.tile(np.eye(3), (3, 1, 1)), atol=1e-5)


def test_query_points_mapped_to_network_pixels(prediction):
    p = prediction
    info = p.preprocess[0]
    np.testing.assert_allclose(p.query_points, info.original_to_network_pixels(QUERIES), atol=1e-5)
    # 160 -> 112 wide: x_net = (x + 0.5) * 0.7 - 0.5 (no crop for 4:3 at this size)
    np.testing.assert_allclose(p.query_points[0], [(10.5 * 0.7) - 0.5, (20.5 * 0.7) - 0.5], atol=1e-5)
    # The tracker returns the queries themselves in frame 0; mapping back recovers camera pixels.
    np.testing.assert_allclose(p.tracks[0], p.query_points, atol=1e-4)
    np.testing.assert_allclose(info.network_to_original_pixels(p.tracks[0]), QUERIES, atol=1e-3)


def test_matches_direct_model_call(model, prediction, images):
    x, infos = preprocess_images(images, target_size=TARGET)
    q = torch.from_numpy(infos[0].original_to_network_pixels(QUERIES).astype(np.float32))
    with torch.inference_mode():
        out = model(x, query_points=q)
    E, K = pose_encoding_to_extri_intri(out["pose_enc"], x.shape[-2:])
    pairs = {
        "extrinsics": E, "intrinsics": K, "depth": out["depth"][..., 0], "depth_conf": out["depth_conf"],
        "world_points": out["world_points"], "world_points_conf": out["world_points_conf"],
        "tracks": out["track"], "track_vis": out["vis"], "track_conf": out["conf"],
    }
    for name, ref in pairs.items():
        np.testing.assert_allclose(getattr(prediction, name), ref[0].numpy(), rtol=1e-6, atol=1e-6,
                                   err_msg=name)
    as_u8 = np.round(x.numpy() * 255).astype(np.uint8).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(prediction.images, as_u8)


def test_no_queries_does_not_run_track_head(engine, images, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("track head must not run without query points")

    monkeypatch.setattr(engine.model.track_head, "forward", boom)
    p = engine.predict(images[:2])
    assert p.tracks is None and p.track_vis is None and p.query_points is None
    assert p.depth.shape == (2, 84, 112)


def test_empty_queries(engine, images):
    p = engine.predict(images[:2], query_points=np.zeros((0, 2)))
    assert p.tracks.shape == (2, 0, 2) and p.query_points.shape == (0, 2)


def test_engine_from_config_and_checkpoint(tmp_path, model, images, prediction):
    path = tmp_path / "small.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    eng = InferenceEngine(config=golden_config("small"), checkpoint=path, device="cpu", target_size=TARGET)
    p = eng.predict(images, query_points=QUERIES)
    np.testing.assert_array_equal(p.depth, prediction.depth)
    np.testing.assert_array_equal(p.extrinsics, prediction.extrinsics)


def test_dtype_policy(monkeypatch, caplog):
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu) == torch.float32
    with caplog.at_level(logging.WARNING):
        assert resolve_dtype("bfloat16", cpu) == torch.float32
    assert "only used on CUDA" in caplog.text
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert resolve_dtype("auto", cuda) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert resolve_dtype("auto", cuda) == torch.float16
    assert resolve_dtype("float32", cuda) == torch.float32
    assert resolve_dtype("bf16", cuda) == torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("int8", cuda)


def test_out_of_memory_is_translated(engine, images, monkeypatch):
    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(engine.model, "forward", oom)
    with pytest.raises(InferenceOutOfMemory, match="3 frames of 112x84") as info:
        engine.predict(images)
    assert isinstance(info.value, RuntimeError)


def test_min_track_side():
    assert min_track_side(VGGTConfig()) == 140  # 7-level pyramid (model spec section 2)
    assert min_track_side(VGGTConfig(**golden_config("small"))) == 28


def test_input_errors(engine, model, images):
    with pytest.raises(ValueError, match="frame_keys"):
        engine.predict(images, frame_keys=[1, 2])
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        engine.predict(images, query_points=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        engine.predict(images, query_points=np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="at least 28 px"):
        engine.predict([np.zeros((40, 400, 3), np.uint8)], query_points=QUERIES[:1])
    with pytest.raises(ValueError, match="at least one image"):
        engine.predict([])
    with pytest.raises(ValueError, match="model or a checkpoint"):
        InferenceEngine(device="cpu")
    no_depth = VGGT(VGGTConfig(**{**golden_config("small"), "enable_depth": False}))
    with pytest.raises(ValueError, match="depth_head"):
        InferenceEngine(no_depth, device="cpu")
