"""Per-frame global descriptors (Prediction.descriptors): pooled DINOv2 patch tokens, small config, CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from golden_weights import small_golden_model, textured_frames

from vggt_ros.model.descriptors import content_patch_boxes, global_descriptors
from vggt_ros.model.engine import InferenceEngine
from vggt_ros.model.vggt import VGGT
from vggt_ros.prediction import PreprocessInfo

TARGET = 112  # 120x160 camera -> 112x84 network input (crop mode), an 8x6 patch grid


@pytest.fixture(scope="module")
def model() -> VGGT:
    return small_golden_model()


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return textured_frames(3, seed=7, noise=8, step=10)


def random_images(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(count)]


class EmbedCounter:
    """Counts the frames ``aggregator.embed_patches`` embeds (wraps the bound method in place)."""

    def __init__(self, model: VGGT, monkeypatch: pytest.MonkeyPatch) -> None:
        self.frames = 0
        inner = model.aggregator.embed_patches

        def counted(images: torch.Tensor) -> torch.Tensor:
            self.frames += int(images.shape[1])
            return inner(images)

        monkeypatch.setattr(model.aggregator, "embed_patches", counted)


def test_shape_dtype_unit_norm(model, frames):
    pred = InferenceEngine(model, device="cpu", target_size=TARGET).predict(frames)
    d = pred.descriptors
    assert d.shape == (3, model.config.embed_dim) and d.dtype == np.float32
    assert np.isfinite(d).all()
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)


def test_same_image_twice_same_descriptor(model):
    a, b = random_images(2, seed=1)
    d = InferenceEngine(model, device="cpu", target_size=TARGET).predict([a, b, a]).descriptors
    assert float(d[0] @ d[2]) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(d[0], d[2], atol=1e-6)


def test_different_images_are_apart(model):
    d = InferenceEngine(model, device="cpu", target_size=TARGET).predict(random_images(2, seed=2)).descriptors
    assert float(d[0] @ d[1]) < 0.98  # 0.93 measured with the small random weights


def test_descriptor_independent_of_window(model, frames):
    """Pooled before the cross-frame trunk: a frame's descriptor does not depend on its window mates."""
    engine = InferenceEngine(model, device="cpu", target_size=TARGET, patch_cache_size=0)
    whole = engine.predict(frames).descriptors
    alone = engine.predict(frames[1:2]).descriptors
    np.testing.assert_allclose(alone[0], whole[1], atol=1e-6)


def test_cache_hit_equals_miss(model, frames, monkeypatch):
    engine = InferenceEngine(model, device="cpu", target_size=TARGET, patch_cache_size=8)
    first = engine.predict(frames[:2], frame_keys=[0, 1]).descriptors  # misses for 0 and 1
    counter = EmbedCounter(model, monkeypatch)
    second = engine.predict(frames[1:], frame_keys=[1, 2]).descriptors  # 1 from the cache, 2 embedded
    assert counter.frames == 1
    np.testing.assert_array_equal(second[0], first[1])  # same tokens, per-frame pooling: bit for bit
    uncached = InferenceEngine(model, device="cpu", target_size=TARGET, patch_cache_size=0)
    np.testing.assert_allclose(uncached.predict(frames[1:]).descriptors, second, atol=1e-6)


@pytest.mark.parametrize("cache", [0, 8])
def test_no_extra_forward(model, frames, monkeypatch, cache):
    """Each frame goes through DINOv2 once per window, descriptors included (cache or not)."""
    engine = InferenceEngine(model, device="cpu", target_size=TARGET, patch_cache_size=cache,
                             world_points=False)
    counter = EmbedCounter(model, monkeypatch)
    pred = engine.predict(frames, frame_keys=[5, 6, 7])
    assert counter.frames == 3 and pred.descriptors.shape[0] == 3
    if cache:
        assert engine.patch_cache.stats()["misses"] == 3


def test_descriptors_are_the_pooled_patch_tokens(model, frames):
    engine = InferenceEngine(model, device="cpu", target_size=TARGET, patch_cache_size=0)
    prepared = engine.prepare(frames)
    with torch.inference_mode():
        tokens = model.aggregator.embed_patches(prepared.tensor.unsqueeze(0))[0]
    expected = torch.nn.functional.normalize(tokens.mean(dim=1), dim=-1).numpy()
    np.testing.assert_allclose(engine.predict_prepared(prepared).descriptors, expected, atol=1e-6)


def test_pad_mode_pools_only_content(model):
    """Patches of the white padding are left out: a padded frame pools only its content rows."""
    engine = InferenceEngine(model, device="cpu", target_size=TARGET, preprocess_mode="pad")
    img = random_images(1, seed=3)[0]
    prepared = engine.prepare([img])
    info = prepared.infos[0]
    ps = model.config.patch_size
    grid = (info.network_hw[0] // ps, info.network_hw[1] // ps)
    boxes = content_patch_boxes(prepared.infos, ps, grid)
    assert boxes is not None and boxes[0] != (0, 0, *grid)  # 160x120 padded to 112x112: rows padded
    r0, c0, r1, c1 = boxes[0]
    with torch.inference_mode():
        tokens = model.aggregator.embed_patches(prepared.tensor.unsqueeze(0))[0].reshape(*grid, -1)
    expected = torch.nn.functional.normalize(tokens[r0:r1, c0:c1].mean(dim=(0, 1)), dim=0).numpy()
    np.testing.assert_allclose(engine.predict_prepared(prepared).descriptors[0], expected, atol=1e-6)


def test_content_patch_boxes():
    crop = PreprocessInfo((120, 160), (84, 112), (0.7, 0.7), (0.0, 0.0))
    assert content_patch_boxes([crop], 14, (6, 8)) is None
    # content rows 14.5 .. 97.5 of a 112x112 canvas: patch rows 2 .. 6 are wholly inside
    pad = PreprocessInfo((120, 160), (112, 112), (0.7, 0.7), (0.0, 14.5))
    assert content_patch_boxes([crop, pad], 14, (6, 8))[1] == (2, 0, 6, 8)
    sliver = PreprocessInfo((4, 160), (112, 112), (0.7, 0.7), (0.0, 50.0))  # thinner than a patch
    assert content_patch_boxes([sliver], 14, (8, 8)) is None  # falls back to the full grid


def test_global_descriptors_checks_boxes():
    with pytest.raises(ValueError, match="boxes"):
        global_descriptors(torch.ones(1, 2, 4, 3), (2, 2), [(0, 0, 2, 2)])


def test_oracle_has_no_descriptors():
    """The oracle has no network tokens to pool: the field stays None (loop closure must cope)."""
    from vggt_ros.core.oracle import OraclePredictor
    from vggt_ros.sim.sequences import make_sequence

    seq = make_sequence("orbit", 4, height=60, width=80, seed=2)
    frames = seq.to_frames(indices=[0, 2])
    pred = OraclePredictor(seq).predict([f.image for f in frames], frame_keys=[f.stamp_ns for f in frames])
    assert pred.descriptors is None
