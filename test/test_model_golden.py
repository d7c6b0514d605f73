"""Float32 parity of the VGGT network with the official implementation's golden outputs.

Weights come from the fixtures' deterministic rule (test/golden_weights.py); tolerances are those of
shared/spec/golden/README.md section 4.2. Small cases run in every CI run; the 1B cases are marked
slow (still run in CI: ~5.4 GB RSS, about a minute on 2 cores, most of it filling the weights).
"""

from __future__ import annotations

import gc

import pytest
import torch
from golden_weights import GOLDEN_DIR, SEED_1B, fill_state_dict, small_golden_model
from safetensors.torch import load_file

from vggt_ros.model import VGGT, VGGTConfig

DENSE_KEYS = ("depth", "depth_conf", "world_points", "world_points_conf")
MAX_ERRORS: dict[str, float] = {}  # "case/key" -> max |error|; printed at the end (pytest -s)


@pytest.fixture(scope="module", autouse=True)
def report_max_errors():
    yield
    if MAX_ERRORS:
        print("\nmax |actual - expected| per golden key:")
        for key, err in sorted(MAX_ERRORS.items()):
            print(f"  {key:50s} {err:.3g}")


def record(name: str, err: float) -> float:
    MAX_ERRORS[name] = max(err, MAX_ERRORS.get(name, 0.0))
    return err


def assert_close(name: str, actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-4) -> float:
    """README 4.2: max|actual - expected| <= rel * max(1, max|expected|); returns the max error."""
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert torch.isfinite(actual).all(), f"{name}: non-finite values"
    err = (actual.double() - expected.double()).abs().max().item()
    bound = rel * max(1.0, expected.abs().max().item())
    assert err <= bound, f"{name}: max error {err:.3g} > {bound:.3g}"
    return record(name, err)


def assert_abs(name: str, actual: torch.Tensor, expected: torch.Tensor, tol: float) -> float:
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert torch.isfinite(actual).all(), f"{name}: non-finite values"
    err = (actual.double() - expected.double()).abs().max().item()
    assert err <= tol, f"{name}: max error {err:.3g} > {tol:.3g}"
    return record(name, err)


def golden_images(g: dict[str, torch.Tensor]) -> torch.Tensor:
    return g["images"] if "images" in g else g["images_u8"].float() / 255


# ---------------------------------------------------------------------------------------------------
# small configuration (every CI run)


@pytest.fixture(scope="module")
def small_model() -> VGGT:
    return small_golden_model()


@pytest.fixture(scope="module", params=["small_case_a", "small_case_b"])
def small_case(request, small_model):
    """(golden tensors, model outputs, aggregator layers, patch_start_idx) of one small case."""
    g = load_file(GOLDEN_DIR / f"{request.param}.safetensors")
    images = golden_images(g)
    with torch.no_grad():
        out = small_model(images, query_points=g.get("query_points"))
        layers, psi = small_model.aggregator(images)
    return request.param, g, out, layers, psi


def test_small_patch_tokens_and_all_aggregator_layers(small_model, small_case):
    name, g, _out, layers, psi = small_case
    assert psi == 3 and sorted(layers) == list(range(6))
    if name == "small_case_b":  # 518 x 518: the only input that uses the stored pos-embed unchanged
        assert tuple(layers[5].shape) == (1, 1, 3 + 37 * 37, 128)
        return
    with torch.no_grad():
        tokens = small_model.aggregator.embed_patches(golden_images(g))
    assert_close(f"{name}/dino_patch_tokens", tokens.flatten(0, 1), g["dino_patch_tokens"])
    for i in range(6):
        assert_close(f"{name}/aggregator_layer_{i:02d}", layers[i], g[f"aggregator_layer_{i:02d}"])


def test_small_camera_and_dense_outputs(small_case):
    name, g, out, _layers, _psi = small_case
    assert_close(f"{name}/pose_enc", out["pose_enc"], g["pose_enc"])
    assert len(out["pose_enc_list"]) == 4
    assert_close(f"{name}/pose_enc_list", torch.stack(out["pose_enc_list"]), g["pose_enc_list"])
    sub = (lambda t: t[:, :, ::7, ::7]) if name == "small_case_b" else (lambda t: t)
    for key in DENSE_KEYS:
        assert_close(f"{name}/{key}", sub(out[key]), g[key])
    assert torch.equal(out["images"], golden_images(g))


def test_small_tracks(small_model, small_case):
    name, g, out, layers, psi = small_case
    if "query_points" not in g:
        assert "track" not in out and "vis" not in out
        return
    images = golden_images(g)
    with torch.no_grad():
        fmaps = small_model.track_head.feature_extractor(layers, images, psi)
    assert_close(f"{name}/track_fmaps_sub7", fmaps[..., ::7, ::7], g["track_fmaps_sub7"])
    assert len(out["track_list"]) == 2  # small config: track_iters = 2
    assert_abs(f"{name}/track_list[0]", out["track_list"][0], g["track_list"][0], 1e-3)
    assert_abs(f"{name}/track_list[1]", out["track_list"][1], g["track_list"][1], 1e-2)
    assert torch.equal(out["track"], out["track_list"][-1])
    assert_abs(f"{name}/vis", out["vis"], g["vis"], 2e-3)
    assert_abs(f"{name}/conf", out["conf"], g["conf"], 2e-3)
    # Frame 0 is reset to the query every iteration.
    assert torch.equal(out["track"][:, 0], g["query_points"])


# ---------------------------------------------------------------------------------------------------
# VGGT-1B (default config): the checkpoint layout at full width


@pytest.fixture(scope="module")
def model_1b():
    model = VGGT.empty(VGGTConfig()).eval()  # skips random init: weights come from the rule
    fill_state_dict(model, SEED_1B)
    yield model
    del model
    gc.collect()


class Capture:
    """Forward hooks collecting intermediates of one full ``VGGT.forward`` (no second backbone pass)."""

    def __init__(self, model: VGGT) -> None:
        self.values: dict[str, object] = {}
        agg = model.aggregator
        self.handles = [
            agg.patch_embed.register_forward_hook(self._store("dino")),
            agg.frame_blocks[0].register_forward_hook(self._store("frame0")),
            agg.global_blocks[0].register_forward_hook(self._store("global0")),
            agg.register_forward_hook(self._store("aggregator")),
        ]

    def _store(self, key: str):
        def hook(_module, _inputs, output):
            self.values[key] = output
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@pytest.fixture(scope="module", params=["vggt1b_case_a", "vggt1b_case_b"])
def case_1b(request, model_1b):
    g = load_file(GOLDEN_DIR / f"{request.param}.safetensors")
    capture = Capture(model_1b)
    try:
        with torch.no_grad():
            out = model_1b(g["images"], query_points=g.get("query_points"))
    finally:
        capture.remove()
    return request.param, g, out, capture.values


@pytest.mark.slow
def test_1b_backbone_and_heads(case_1b):
    name, g, out, cap = case_1b
    b, s = g["images"].shape[:2]
    assert_close(f"{name}/dino_patch_tokens", cap["dino"], g["dino_patch_tokens"])
    layers, psi = cap["aggregator"]
    assert psi == 5
    assert sorted(layers) == [4, 11, 17, 23]  # only the layers the heads read are kept
    if "aggregator_layer_00" in g:
        p = cap["frame0"].shape[1]
        layer0 = torch.cat([cap["frame0"].reshape(b, s, p, -1), cap["global0"].reshape(b, s, p, -1)], dim=-1)
        assert_close(f"{name}/aggregator_layer_00", layer0, g["aggregator_layer_00"])
    for i in (4, 23):
        if f"aggregator_layer_{i:02d}" in g:
            assert_close(f"{name}/aggregator_layer_{i:02d}", layers[i], g[f"aggregator_layer_{i:02d}"])
    assert_close(f"{name}/pose_enc", out["pose_enc"], g["pose_enc"])
    assert_close(f"{name}/pose_enc_list", torch.stack(out["pose_enc_list"]), g["pose_enc_list"])
    for key in DENSE_KEYS:
        assert_close(f"{name}/{key}", out[key], g[key])


@pytest.mark.slow
def test_1b_tracks(model_1b, case_1b):
    name, g, out, cap = case_1b
    if name != "vggt1b_case_a":
        assert "track" not in out
        return
    images, queries = g["images"], g["query_points"]
    layers, psi = cap["aggregator"]
    with torch.no_grad():
        fmaps = model_1b.track_head.feature_extractor(layers, images, psi)
        iters2_list, iters2_vis, iters2_conf = model_1b.track_head(layers, images, psi, queries, iters=2)
    assert_close(f"{name}/track_fmaps_sub7", fmaps[..., ::7, ::7], g["track_fmaps_sub7"])
    # Tight: the first two iterations (README 4.2).
    assert_abs(f"{name}/iters2_track_list[0]", iters2_list[0], g["iters2_track_list"][0], 1e-3)
    assert_abs(f"{name}/iters2_track_list[1]", iters2_list[1], g["iters2_track_list"][1], 1e-2)
    assert_abs(f"{name}/iters2_vis", iters2_vis, g["iters2_vis"], 2e-3)
    assert_abs(f"{name}/iters2_conf", iters2_conf, g["iters2_conf"], 2e-3)
    # 4 iterations: chaotic beyond iteration 2, sanity bounds only (do not tighten).
    track_list = out["track_list"]
    assert len(track_list) == 4
    assert all(torch.isfinite(t).all() for t in track_list)
    assert torch.equal(out["track"][:, 0], queries)
    assert_abs(f"{name}/track_list[0]", track_list[0], g["track_list"][0], 1e-3)
    assert_abs(f"{name}/track_list[1]", track_list[1], g["track_list"][1], 1e-2)
    assert_abs(f"{name}/track_list[2]", track_list[2], g["track_list"][2], 0.25)
    assert_abs(f"{name}/track", out["track"], g["track"], 3.0)
    assert_abs(f"{name}/vis", out["vis"], g["vis"], 0.1)
    assert_abs(f"{name}/conf", out["conf"], g["conf"], 0.1)
