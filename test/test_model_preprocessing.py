"""Preprocessing: bit-exact with the official loader (golden fixtures) and a correct pixel mapping."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vggt_ros.model.preprocessing import (
    preprocess_images,
    preprocess_images_uint8,
    preprocess_info_for,
    to_rgb_uint8,
)

PRE_DIR = Path(__file__).parent / "data" / "golden" / "preprocess"
FILES = ["img0_74x57.png", "img1_640x480.png", "img2_480x640_rgba.png", "img3_1000x333.png"]


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(PRE_DIR / "preprocess_golden.npz"))


@pytest.fixture(scope="module")
def raw_images():
    """The PNGs decoded to arrays as a camera driver would give them (RGBA kept as RGBA)."""
    return [np.asarray(Image.open(PRE_DIR / f)) for f in FILES]


@pytest.mark.parametrize("mode", ["crop", "pad"])
@pytest.mark.parametrize("index", range(4))
def test_golden_single_image_bit_exact(golden, raw_images, mode, index):
    tensor, infos = preprocess_images([raw_images[index]], mode=mode)
    expected = golden[f"{mode}_{index}"].astype(np.float32) / 255
    assert tensor.dtype == torch.float32
    assert tuple(tensor.shape) == expected.shape
    assert np.abs(tensor.numpy() - expected).max() <= 1e-6
    assert infos[0].network_hw == expected.shape[2:]
    assert infos[0].original_hw == raw_images[index].shape[:2]


def test_rgba_composite_matches_golden(golden, raw_images):
    rgba = raw_images[2]
    assert rgba.shape[2] == 4 and rgba[..., 3].min() == 0 and rgba[..., 3].max() == 255
    np.testing.assert_array_equal(to_rgb_uint8(rgba), golden["rgb_composited_2"])


def test_rgba_composite_formula_all_pairs():
    c, a = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    rgba = np.stack([c, c, c, a], axis=-1).astype(np.uint8)
    expected = np.floor((c * a + 255.0 * (255 - a)) / 255.0 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(to_rgb_uint8(rgba)[..., 0], expected)


@pytest.mark.parametrize("mode", ["crop", "pad"])
def test_golden_mixed_size_call(golden, raw_images, mode, caplog):
    with caplog.at_level(logging.WARNING):
        tensor, infos = preprocess_images(raw_images, mode=mode)
    assert tuple(tensor.shape) == (4, 3, 518, 518)
    for i in range(4):
        single = golden[f"{mode}_{i}"][0].astype(np.float32) / 255
        h, w = single.shape[1:]
        top, left = (518 - h) // 2, (518 - w) // 2
        expected = np.ones((3, 518, 518), np.float32)
        expected[:, top:top + h, left:left + w] = single
        assert np.abs(tensor[i].numpy() - expected).max() <= 1e-6
        assert infos[i].network_hw == (518, 518)
        # The mapping of each image must include the extra centring pad.
        alone = preprocess_info_for(raw_images[i].shape[:2], mode)
        assert infos[i].offset_xy == (alone.offset_xy[0] + left, alone.offset_xy[1] + top)
    if mode == "crop":
        assert "different network sizes" in caplog.text
    else:
        assert "different network sizes" not in caplog.text


def test_greyscale_equals_replicated_rgb(raw_images):
    grey = raw_images[1][..., 1].copy()
    rgb = np.repeat(grey[..., None], 3, axis=2)
    ref, _ = preprocess_images([rgb])
    for variant in (grey, grey[..., None]):
        out, info = preprocess_images([variant])
        assert torch.equal(out, ref)
        assert info[0].original_hw == grey.shape
    # PIL's own greyscale -> RGB conversion gives the same network input.
    pil_rgb = np.asarray(Image.fromarray(grey, "L").convert("RGB"))
    out_pil, _ = preprocess_images([pil_rgb])
    assert torch.equal(out_pil, ref)


def test_round_half_even_sizing():
    # 74x57: 28.5 patches -> 28 (half-to-even) -> 392 px, not 406.
    assert preprocess_info_for((57, 74), "crop").network_hw == (392, 518)
    assert preprocess_info_for((480, 640), "crop").network_hw == (392, 518)
    assert preprocess_info_for((1080, 1920), "crop").network_hw == (294, 518)
    info = preprocess_info_for((640, 480), "crop")
    assert info.network_hw == (518, 518) and info.offset_xy == (0.0, -84.0)
    info = preprocess_info_for((640, 480), "pad")
    assert info.network_hw == (518, 518) and info.offset_xy == (63.0, 0.0)


def test_preprocess_info_for_matches_pixels(raw_images):
    for mode in ("crop", "pad"):
        for img in raw_images:
            _, infos = preprocess_images([img], mode=mode)
            assert infos[0] == preprocess_info_for(img.shape[:2], mode)


def _blob(h, w, cx, cy, sigma):
    yy, xx = np.mgrid[0:h, 0:w]
    g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
    return np.repeat((255 * (1 - g)).round().astype(np.uint8)[..., None], 3, axis=2)


@pytest.mark.parametrize(("hw", "mode"), [((480, 640), "crop"), ((640, 480), "crop"),
                                         ((640, 480), "pad"), ((300, 900), "pad")])
def test_known_pixel_round_trip(hw, mode):
    """A dark blob at a known original pixel lands where PreprocessInfo says, and maps back."""
    cx, cy = 0.41 * hw[1], 0.57 * hw[0]
    img = _blob(*hw, cx, cy, sigma=0.03 * hw[1])
    out, infos = preprocess_images_uint8([img], mode=mode)
    weight = 255.0 - out[0, ..., 0].astype(np.float64)
    yy, xx = np.mgrid[0:weight.shape[0], 0:weight.shape[1]]
    measured = np.array([(weight * xx).sum(), (weight * yy).sum()]) / weight.sum()
    predicted = infos[0].original_to_network_pixels(np.array([cx, cy]))
    assert np.abs(measured - predicted).max() < 0.1
    np.testing.assert_allclose(infos[0].network_to_original_pixels(predicted), [cx, cy], atol=1e-9)


def test_intrinsics_mapping_consistent_with_pixel_mapping():
    info = preprocess_info_for((640, 480), "crop")
    K_orig = np.array([[500.0, 0, 241.3], [0, 505.0, 318.7], [0, 0, 1]])
    K_net = info.intrinsics_to_network(K_orig)
    np.testing.assert_allclose(info.intrinsics_to_original(K_net), K_orig, atol=1e-9)
    pts = np.random.default_rng(0).uniform([-1, -1, 2], [1, 1, 5], size=(50, 3))
    uv_orig = (pts @ K_orig.T)[:, :2] / pts[:, 2:]
    uv_net = (pts @ K_net.T)[:, :2] / pts[:, 2:]
    np.testing.assert_allclose(info.original_to_network_pixels(uv_orig), uv_net, atol=1e-9)


def test_float_output_is_uint8_over_255(raw_images):
    u8, _ = preprocess_images_uint8([raw_images[1]])
    t, _ = preprocess_images([raw_images[1]])
    assert torch.equal(t, torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255)


@pytest.mark.parametrize(
    ("images", "kwargs", "exc", "match"),
    [
        ([], {}, ValueError, "at least one image"),
        ([np.zeros((0, 5, 3), np.uint8)], {}, ValueError, "zero-size"),
        ([np.zeros((10, 10, 3), np.float32)], {}, TypeError, "uint8"),
        ([np.zeros((10, 10, 2), np.uint8)], {}, ValueError, "shape"),
        ([np.zeros((10,), np.uint8)], {}, ValueError, "shape"),
        (["not an array"], {}, TypeError, "numpy array"),
        ([np.zeros((10, 10, 3), np.uint8)], {"mode": "square"}, ValueError, "mode"),
        ([np.zeros((10, 10, 3), np.uint8)], {"target_size": 500}, ValueError, "multiple"),
        ([np.zeros((2, 1000, 3), np.uint8)], {}, ValueError, "elongated"),
    ],
)
def test_bad_input_errors(images, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        preprocess_images(images, **kwargs)
