"""Behaviour of the VGGT forward pass beyond golden parity: patch-token cache path, layer selection,
disabled heads, input validation, autocast policy and RoPE properties (small config, rule weights)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from golden_weights import GOLDEN_DIR, SEED_SMALL, fill_state_dict, golden_config
from safetensors.torch import load_file

from vggt_ros.model import VGGT, VGGTConfig
from vggt_ros.model.layers.rope import RopeTable, grid_positions

SMALL = VGGTConfig(**golden_config("small"))


@pytest.fixture(scope="module")
def model() -> VGGT:
    m = VGGT(SMALL).eval()
    fill_state_dict(m, SEED_SMALL)
    return m


@pytest.fixture(scope="module")
def case_a() -> dict[str, torch.Tensor]:
    return load_file(GOLDEN_DIR / "small_case_a.safetensors")


@pytest.fixture(scope="module")
def reference(model, case_a) -> dict:
    with torch.no_grad():
        return model(case_a["images"], query_points=case_a["query_points"])


def assert_same_outputs(a: dict, b: dict, keys: tuple[str, ...]) -> None:
    for key in keys:
        assert torch.equal(a[key], b[key]), key


ALL_KEYS = ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf", "track", "vis", "conf")


def test_cached_patch_tokens_give_identical_outputs(model, case_a, reference):
    images = case_a["images"]
    with torch.no_grad():
        tokens = model.aggregator.embed_patches(images)
        out = model(images, query_points=case_a["query_points"], patch_tokens=tokens)
    assert tokens.shape == (2, 3, 30, SMALL.embed_dim)
    assert_same_outputs(out, reference, ALL_KEYS)


def test_patch_tokens_are_per_frame(model, case_a):
    """A frame's tokens do not depend on the other frames: a window cache may reuse them."""
    images = case_a["images"]
    with torch.no_grad():
        full = model.aggregator.embed_patches(images)
        last = model.aggregator.embed_patches(images[:, 2:])
        shuffled = model.aggregator.embed_patches(images[:, [2, 0, 1]])
    torch.testing.assert_close(last, full[:, 2:], rtol=0, atol=1e-5)
    torch.testing.assert_close(shuffled, full[:, [2, 0, 1]], rtol=0, atol=1e-5)


def test_keep_layers_returns_only_requested_and_same_values(model, case_a):
    images = case_a["images"]
    with torch.no_grad():
        full, psi = model.aggregator(images)
        some, psi2 = model.aggregator(images, keep_layers=[2, 0])
        none, _ = model.aggregator(images, keep_layers=[])
    assert psi == psi2 == SMALL.patch_start_idx == 3
    assert sorted(full) == list(range(SMALL.depth))
    assert sorted(some) == [0, 2] and none == {}
    for i in (0, 2):
        assert torch.equal(some[i], full[i])
    assert full[5].shape == (2, 3, 3 + 30, 2 * SMALL.embed_dim)
    with pytest.raises(ValueError, match="out of range"):
        model.aggregator(images, keep_layers=[SMALL.depth])


def test_reference_frame_tokens_break_frame_symmetry(model, case_a):
    """Frame 0 has its own special tokens: swapping frames 1, 2 permutes the outputs; swapping 0 does not."""
    images = case_a["images"][:1]
    with torch.no_grad():
        base = model(images)["pose_enc"]
        swap12 = model(images[:, [0, 2, 1]])["pose_enc"]
        swap01 = model(images[:, [1, 0, 2]])["pose_enc"]
    torch.testing.assert_close(swap12, base[:, [0, 2, 1]], rtol=0, atol=1e-5)
    assert (swap01 - base[:, [1, 0, 2]]).abs().max() > 1e-3


def test_unbatched_inputs_get_batch_axis(model, case_a, reference):
    with torch.no_grad():
        out = model(case_a["images"][1], query_points=case_a["query_points"][1])
    assert out["pose_enc"].shape == (1, 3, 9) and out["track"].shape == (1, 3, 4, 2)
    torch.testing.assert_close(out["pose_enc"], reference["pose_enc"][1:], rtol=0, atol=1e-5)
    torch.testing.assert_close(out["depth"], reference["depth"][1:], rtol=1e-5, atol=1e-5)


def test_output_shapes_and_value_ranges(reference):
    b, s, h, w = 2, 3, 70, 84
    assert reference["pose_enc"].shape == (b, s, 9) and len(reference["pose_enc_list"]) == 4
    assert reference["depth"].shape == (b, s, h, w, 1) and reference["depth_conf"].shape == (b, s, h, w)
    assert reference["world_points"].shape == (b, s, h, w, 3)
    assert reference["world_points_conf"].shape == (b, s, h, w)
    assert (reference["depth"] > 0).all()
    assert (reference["depth_conf"] > 1).all() and (reference["world_points_conf"] > 1).all()
    assert (reference["pose_enc"][..., 7:] >= 0).all()  # FoV through ReLU
    assert ((reference["vis"] > 0) & (reference["vis"] < 1)).all()
    assert reference["images"].shape == (b, s, 3, h, w)


@pytest.mark.parametrize("head", ["camera", "point", "depth", "track"])
def test_disabled_head_costs_nothing_and_others_unchanged(model, case_a, reference, head):
    cfg = dataclasses.replace(SMALL, **{f"enable_{head}": False})
    sub = VGGT(cfg).eval()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(f"{head}_head.")}
    sub.load_state_dict(state, strict=True)
    with torch.no_grad():
        out = sub(case_a["images"], query_points=None if head == "track" else case_a["query_points"])
    removed = {
        "camera": ("pose_enc", "pose_enc_list"), "point": ("world_points", "world_points_conf"),
        "depth": ("depth", "depth_conf"), "track": ("track", "track_list", "vis", "conf"),
    }[head]
    assert not set(removed) & set(out)
    assert_same_outputs(out, reference, tuple(k for k in ALL_KEYS if k not in removed))


def test_camera_only_model_runs_just_the_needed_blocks(model, case_a):
    cam = VGGT(dataclasses.replace(SMALL, enable_point=False, enable_depth=False, enable_track=False)).eval()
    state = model.state_dict()
    cam.load_state_dict({k: v for k, v in state.items() if k.startswith(("aggregator.", "camera_head."))})
    calls = []
    handle = cam.aggregator.frame_blocks[1].register_forward_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad():
            out = cam(case_a["images"])
    finally:
        handle.remove()
    assert set(out) == {"pose_enc", "pose_enc_list", "images"} and calls == [1]


def test_query_points_without_track_head_raise(case_a):
    m = VGGT(dataclasses.replace(SMALL, enable_track=False)).eval()
    with pytest.raises(ValueError, match="track head is disabled"):
        m(case_a["images"], query_points=case_a["query_points"])


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.rand(1, 2, 3, 70, 80), "multiple of the patch size"),
        (torch.rand(1, 2, 1, 70, 84), r"\[B, S, 3, H, W\]"),
        (torch.zeros(1, 2, 3, 70, 84, dtype=torch.uint8), "float"),
    ],
)
def test_bad_images_raise(model, images, message):
    with pytest.raises(ValueError, match=message):
        model(images)


def test_bad_query_points_and_patch_tokens_raise(model, case_a):
    images = case_a["images"]
    with pytest.raises(ValueError, match="query_points"):
        model(images, query_points=torch.zeros(1, 4, 2))
    with pytest.raises(ValueError, match="patch_tokens"):
        model(images, patch_tokens=torch.zeros(2, 3, 29, SMALL.embed_dim))


def test_training_mode_does_not_return_images(model, case_a):
    model.train()
    try:
        with torch.no_grad():
            out = model(case_a["images"])
    finally:
        model.eval()
    assert "images" not in out and "pose_enc" in out


def test_camera_and_dense_heads_stay_float32_under_autocast(model, case_a, reference):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(case_a["images"], query_points=case_a["query_points"])
    for key in ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf"):
        assert out[key].dtype == torch.float32, key
        assert torch.isfinite(out[key]).all(), key
    # bf16 backbone: same answer to a few percent (loose by design; fp32 is the parity contract).
    scale = reference["depth"].abs().max()
    assert (out["depth"] - reference["depth"]).abs().max() < 0.2 * scale
    assert (out["pose_enc"] - reference["pose_enc"]).abs().max() < 0.2 * reference["pose_enc"].abs().max()


def test_rope_positions_and_relative_property():
    pos = grid_positions(2, 3, num_special=2)
    assert pos.tolist() == [[0, 0], [0, 0], [1, 1], [1, 2], [1, 3], [2, 1], [2, 2], [2, 3]]
    table = RopeTable.for_grid(4, 5, num_special=1, head_dim=16, base=100.0)
    q, k = torch.randn(2, 21, 16, dtype=torch.float64).unbind(0)
    rq = table.apply(q)
    torch.testing.assert_close(rq[0], q[0])  # special token at (0, 0): unrotated
    torch.testing.assert_close(rq.norm(dim=-1), q.norm(dim=-1))  # rotations preserve norms
    # Same (q, k) pair at shifted positions with equal offset -> same score.
    def score(i: int, j: int) -> torch.Tensor:
        qi = table.apply(q[None, 0].expand(21, -1))[i]
        kj = table.apply(k[None, 0].expand(21, -1))[j]
        return qi @ kj
    # token index 1 + r*5 + c: (0,0)->(1,2) vs (2,1)->(3,3), both offset (+1, +2)
    torch.testing.assert_close(score(1 + 0 * 5 + 0, 1 + 1 * 5 + 2), score(1 + 2 * 5 + 1, 1 + 3 * 5 + 3))
    assert not torch.allclose(score(1, 7), score(1, 8))
    with pytest.raises(ValueError, match="divisible by 4"):
        RopeTable.for_grid(2, 2, 1, head_dim=18, base=100.0)
