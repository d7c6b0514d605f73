"""VGGT module tree vs the official checkpoint layout (keys and shapes), built on the meta device (free)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from golden_weights import GOLDEN_DIR, golden_config, read_state_dict_tsv

from vggt_ros.model import VGGT, VGGTConfig

VGGT1B_TSV = Path(__file__).parent / "data" / "vggt1b_state_dict.tsv"
VGGT1B_PARAMS = 1_256_537_516


def meta_model(config: VGGTConfig | None = None) -> VGGT:
    with torch.device("meta"):
        return VGGT(config)


def shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def model_1b() -> VGGT:
    return meta_model()


def test_default_config_matches_golden_default_fields():
    cfg = VGGTConfig()
    assert cfg.to_dict() | {"enable_camera": True} == {
        **golden_config("default"), "enable_camera": True, "enable_point": True, "enable_depth": True,
        "enable_track": True,
    }
    assert isinstance(VGGTConfig(**golden_config("small")).dpt_out_channels, tuple)


def test_1b_state_dict_keys_and_shapes_match_checkpoint(model_1b):
    expected = read_state_dict_tsv(VGGT1B_TSV)
    assert len(expected) == 1797
    actual = shapes(model_1b)
    missing = sorted(set(dict(expected)) - set(actual))
    unexpected = sorted(set(actual) - set(dict(expected)))
    assert not missing and not unexpected, f"missing {missing[:10]}, unexpected {unexpected[:10]}"
    wrong = {k: (actual[k], s) for k, s in expected if actual[k] != s}
    assert not wrong, f"shape mismatches (actual, expected): {list(wrong.items())[:10]}"
    assert all(v.dtype == torch.float32 for v in model_1b.state_dict().values())


def test_1b_parameter_counts(model_1b):
    assert sum(p.numel() for p in model_1b.state_dict().values()) == VGGT1B_PARAMS
    assert sum(p.numel() for p in model_1b.parameters()) == VGGT1B_PARAMS  # no persistent buffers
    parts = {
        "aggregator": 909_112_320, "camera_head": 216_174_610, "point_head": 32_654_628,
        "depth_head": 32_654_562, "track_head": 65_941_396,
    }
    for name, count in parts.items():
        assert sum(p.numel() for p in getattr(model_1b, name).parameters()) == count, name
    assert sum(p.numel() for p in model_1b.aggregator.patch_embed.parameters()) == 304_372_736


def test_small_state_dict_matches_golden_listing():
    expected = dict(read_state_dict_tsv(GOLDEN_DIR / "small_state_dict.tsv"))
    assert shapes(meta_model(VGGTConfig(**golden_config("small")))) == expected


def test_normalisation_buffers_are_not_persistent(model_1b):
    buffers = dict(model_1b.named_buffers())
    assert set(buffers) == {"aggregator.image_mean", "aggregator.image_std"}
    assert not set(buffers) & set(model_1b.state_dict())


def test_empty_model_writes_normalisation_buffers():
    model = VGGT.empty(VGGTConfig(**golden_config("small")))
    assert model.aggregator.image_mean.device.type == "cpu"
    assert torch.equal(model.aggregator.image_mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    assert torch.equal(model.aggregator.image_std.flatten(), torch.tensor([0.229, 0.224, 0.225]))
    assert model.aggregator.image_mean.shape == (1, 1, 3, 1, 1)


@pytest.mark.parametrize("head", ["camera", "point", "depth", "track"])
def test_disabling_a_head_removes_exactly_its_keys(model_1b, head):
    model = meta_model(VGGTConfig(**{f"enable_{head}": False}))
    assert getattr(model, f"{head}_head") is None
    full = set(model_1b.state_dict())
    expected = {k for k in full if not k.startswith(f"{head}_head.")}
    assert expected != full
    assert set(model.state_dict()) == expected


def test_required_layers_follow_enabled_heads():
    cfg = VGGTConfig(**golden_config("small"))
    model = meta_model(cfg)
    assert model.required_layers(with_tracks=False) == {1, 2, 4, 5}
    cam_only = meta_model(
        dataclasses.replace(cfg, enable_point=False, enable_depth=False, enable_track=False))
    assert cam_only.required_layers(with_tracks=True) == {cfg.depth - 1}
    track_only = meta_model(
        dataclasses.replace(cfg, enable_camera=False, enable_point=False, enable_depth=False))
    assert track_only.required_layers(with_tracks=False) == set()
    assert track_only.required_layers(with_tracks=True) == {1, 2, 4, 5}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"embed_dim": 96, "dino_num_heads": 4, "num_heads": 7}, r"divisible by num_heads \(7\)"),
        ({"embed_dim": 96, "dino_num_heads": 4, "num_heads": 16}, "divisible by 4 for 2D RoPE"),
        ({"embed_dim": 64, "dino_num_heads": 3}, "dino_num_heads"),
        ({"intermediate_layer_idx": (4, 11, 17, 24)}, "out of range"),
        ({"intermediate_layer_idx": (4, 11, 17)}, "exactly 4"),
        ({"dpt_out_channels": (1, 2, 3)}, "dpt_out_channels"),
        ({"img_size": 500}, "multiple of patch_size"),
        ({"depth": 0}, "positive int"),
        ({"track_features": 30}, "track_features"),
        ({"track_hidden_size": 100, "track_num_heads": 8}, "track_num_heads"),
        ({"camera_num_heads": 7}, "camera_num_heads"),
    ],
)
def test_config_validation_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        VGGTConfig(**changes)
