"""VGGT dense heads (depth, point), track feature extractor and tracker vs the golden fixtures.

The heads are fed the golden aggregator layers of ``small_case_a`` directly, so these tests do not
depend on the aggregator. Weights come from the fixture rule, which seeds every entry by its FULL
model key: heads are therefore filled as attributes (``depth_head`` ...) of a wrapper module.
"""

from __future__ import annotations

import math

import pytest
import torch
from golden_weights import (
    GOLDEN_DIR,
    SEED_SMALL,
    fill_state_dict,
    golden_config,
    read_state_dict_tsv,
)
from safetensors.torch import load_file
from torch import nn

from vggt_ros.model.config import VGGTConfig
from vggt_ros.model.heads.dpt_blocks import ResidualConvUnit
from vggt_ros.model.heads.dpt_head import DPTHead
from vggt_ros.model.heads.embeddings import dpt_position_embedding, flow_embedding, grid_position_embedding
from vggt_ros.model.heads.track_head import TrackHead
from vggt_ros.model.heads.track_sampling import CorrelationPyramid, sample_points, window_offsets

TSV_1B = GOLDEN_DIR.parent / "vggt1b_state_dict.tsv"
TSV_SMALL = GOLDEN_DIR / "small_state_dict.tsv"
HEAD_PREFIXES = ("point_head", "depth_head", "track_head")


def build_heads(cfg: VGGTConfig) -> nn.Module:
    """Wrapper with the three heads under their checkpoint attribute names."""
    common = dict(
        patch_size=cfg.patch_size,
        features=cfg.dpt_features,
        out_channels=cfg.dpt_out_channels,
        intermediate_layer_idx=cfg.intermediate_layer_idx,
    )
    heads = nn.Module()
    heads.point_head = DPTHead(2 * cfg.embed_dim, output_dim=4, activation="inv_log", **common)
    heads.depth_head = DPTHead(2 * cfg.embed_dim, output_dim=2, activation="exp", **common)
    heads.track_head = TrackHead(cfg)
    return heads


def assert_dense_close(actual: torch.Tensor, expected: torch.Tensor, name: str) -> float:
    assert actual.shape == expected.shape, (name, actual.shape, expected.shape)
    err = (actual - expected).abs().max().item()
    scale = max(1.0, expected.abs().max().item())
    assert err <= 1e-4 * scale, f"{name}: max|d| = {err:.3g} > {1e-4 * scale:.3g}"
    return err


@pytest.fixture(scope="module")
def small_cfg() -> VGGTConfig:
    return VGGTConfig(**golden_config("small"))


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return load_file(GOLDEN_DIR / "small_case_a.safetensors")


@pytest.fixture(scope="module")
def layers(golden, small_cfg) -> dict[int, torch.Tensor]:
    return {i: golden[f"aggregator_layer_{i:02d}"] for i in range(small_cfg.depth)}


@pytest.fixture(scope="module")
def heads(small_cfg) -> nn.Module:
    module = build_heads(small_cfg).eval()
    fill_state_dict(module, SEED_SMALL)
    return module


@pytest.fixture(scope="module")
def track_out(heads, golden, layers, small_cfg):
    with torch.no_grad():
        return heads.track_head(layers, golden["images"], small_cfg.patch_start_idx, golden["query_points"])


# --- golden parity -------------------------------------------------------------------------------


def test_depth_head_matches_golden(heads, golden, layers, small_cfg):
    with torch.no_grad():
        depth, conf = heads.depth_head(layers, golden["images"], small_cfg.patch_start_idx)
    assert_dense_close(depth, golden["depth"], "depth")
    assert_dense_close(conf, golden["depth_conf"], "depth_conf")
    assert (depth > 0).all() and (conf > 1).all()


def test_point_head_matches_golden(heads, golden, layers, small_cfg):
    with torch.no_grad():
        points, conf = heads.point_head(layers, golden["images"], small_cfg.patch_start_idx)
    assert_dense_close(points, golden["world_points"], "world_points")
    assert_dense_close(conf, golden["world_points_conf"], "world_points_conf")


def test_track_feature_extractor_matches_golden(heads, golden, layers, small_cfg):
    with torch.no_grad():
        fmaps = heads.track_head.feature_extractor(layers, golden["images"], small_cfg.patch_start_idx)
    b, s, _, h, w = golden["images"].shape
    assert fmaps.shape == (b, s, small_cfg.track_features, h // 2, w // 2)
    assert_dense_close(fmaps[..., ::7, ::7], golden["track_fmaps_sub7"], "track_fmaps_sub7")


def test_tracker_matches_golden(track_out, golden, small_cfg):
    track_list, vis, conf = track_out
    assert len(track_list) == small_cfg.track_iters == golden["track_list"].shape[0]
    assert (track_list[0] - golden["track_list"][0]).abs().max().item() <= 1e-3
    assert (track_list[1] - golden["track_list"][1]).abs().max().item() <= 1e-2
    assert vis.shape == conf.shape == golden["vis"].shape
    assert (vis - golden["vis"]).abs().max().item() <= 2e-3
    assert (conf - golden["conf"]).abs().max().item() <= 2e-3
    # Frame 0 is reset to the query every iteration; the other frames really move.
    for coords in track_list:
        assert torch.equal(coords[:, 0], golden["query_points"])
    assert (track_list[-1][:, 1:] - golden["query_points"][:, None]).abs().max() > 1.0


def test_track_iters_override(heads, golden, layers, small_cfg, track_out):
    with torch.no_grad():
        track_list, _, _ = heads.track_head(
            layers, golden["images"], small_cfg.patch_start_idx, golden["query_points"], iters=1
        )
    assert len(track_list) == 1
    assert torch.allclose(track_list[0], track_out[0][0], atol=1e-5)


def test_correlation_methods_agree(heads, golden, layers, small_cfg, track_out):
    """The per-level 'sampled features' and 'correlation volume' evaluations are the same function."""
    with torch.no_grad():
        fmaps = heads.track_head.feature_extractor(layers, golden["images"], small_cfg.patch_start_idx)
        sampled, vis, _ = heads.track_head.tracker(
            golden["query_points"], fmaps, iters=small_cfg.track_iters, corr_method="sampled"
        )
    assert (sampled[0] - golden["track_list"][0]).abs().max().item() <= 1e-3
    assert (sampled[1] - golden["track_list"][1]).abs().max().item() <= 1e-2
    assert (vis - golden["vis"]).abs().max().item() <= 2e-3


# --- structure: state-dict keys and shapes ---------------------------------------------------------


@pytest.mark.parametrize("which", ["small", "default"])
def test_head_state_dict_layout(which):
    cfg = VGGTConfig(**golden_config(which))
    with torch.device("meta"):
        module = build_heads(cfg)
    rows = read_state_dict_tsv(TSV_SMALL if which == "small" else TSV_1B)
    ours = [(k, tuple(v.shape)) for k, v in module.state_dict().items()]
    for prefix in HEAD_PREFIXES:
        expected = [r for r in rows if r[0].startswith(prefix + ".")]
        got = [r for r in ours if r[0].startswith(prefix + ".")]
        assert expected, prefix
        assert got == expected, prefix
    assert len(ours) == sum(1 for r in rows if r[0].split(".")[0] in HEAD_PREFIXES)
    if which == "default":  # spec 1.2 parameter counts
        counts = {p: sum(math.prod(s) for k, s in ours if k.startswith(p + ".")) for p in HEAD_PREFIXES}
        assert counts == {"point_head": 32_654_628, "depth_head": 32_654_562, "track_head": 65_941_396}


# --- behaviour -------------------------------------------------------------------------------------


def test_frames_chunk_size_does_not_change_results(heads, golden, layers, small_cfg):
    images, start = golden["images"], small_cfg.patch_start_idx
    with torch.no_grad():
        full = heads.point_head(layers, images, start, frames_chunk_size=None)
        for chunk in (1, 2):
            chunked = heads.point_head(layers, images, start, frames_chunk_size=chunk)
            assert torch.allclose(chunked[0], full[0], rtol=0, atol=1e-5)
            assert torch.allclose(chunked[1], full[1], rtol=0, atol=1e-5)
        extractor = heads.track_head.feature_extractor
        feats_full = extractor(layers, images, start, frames_chunk_size=None)
        feats_chunked = extractor(layers, images, start, frames_chunk_size=2)
    assert torch.allclose(feats_chunked, feats_full, rtol=0, atol=1e-5)


def test_position_embedding_on_dense_heads_off_in_track_extractor(heads, golden, layers, small_cfg):
    """The golden needs pe ON for the point head and OFF for the feature extractor (spec 5.1)."""
    images, start = golden["images"], small_cfg.patch_start_idx
    assert heads.point_head.pos_embed and heads.depth_head.pos_embed
    assert not heads.track_head.feature_extractor.pos_embed
    with torch.no_grad():
        heads.point_head.pos_embed = False
        heads.track_head.feature_extractor.pos_embed = True
        try:
            points, _ = heads.point_head(layers, images, start)
            fmaps = heads.track_head.feature_extractor(layers, images, start)
        finally:
            heads.point_head.pos_embed = True
            heads.track_head.feature_extractor.pos_embed = False
    assert (points - golden["world_points"]).abs().max() > 1e-2
    assert (fmaps[..., ::7, ::7] - golden["track_fmaps_sub7"]).abs().max() > 1e-2


def test_residual_conv_unit_skip_is_rectified():
    unit = ResidualConvUnit(3)
    with torch.no_grad():
        for p in unit.parameters():
            p.zero_()
    x = torch.randn(1, 3, 4, 5)
    assert torch.equal(unit(x), torch.relu(x))  # conv path is zero: only the (rectified) skip remains
    assert (x < 0).any()  # the caller's tensor is not mutated


def test_dpt_position_embedding_values():
    pe = dpt_position_embedding(8, 2, 3, aspect_ratio=1.5, dtype=torch.float32, device=torch.device("cpu"))
    assert pe.shape == (8, 2, 3)
    k = math.sqrt(1.5**2 + 1)
    u = (1.5 / k) * (2 * 2 + 1 - 3) / 3  # column 2
    v = (1 / k) * (2 * 0 + 1 - 2) / 2  # row 0
    q, omega = 2, [100.0 ** (-m / 2) for m in range(2)]
    expected = [math.sin(u * w) for w in omega] + [math.cos(u * w) for w in omega]
    expected += [math.sin(v * w) for w in omega] + [math.cos(v * w) for w in omega]
    assert q * 4 == 8
    assert torch.allclose(pe[:, 0, 2], torch.tensor(expected), atol=1e-6)


def test_tracker_embeddings_layout():
    flows = torch.tensor([[0.25, -1.5]])
    emb = flow_embedding(flows, 8)  # k_m = 2m·1000/8 = 0, 250, 500, 750
    assert emb.shape == (1, 16)
    k = torch.tensor([0.0, 250.0, 500.0, 750.0])
    assert torch.allclose(emb[0, 0:8:2], torch.sin(0.25 * k)) and torch.allclose(
        emb[0, 1:8:2], torch.cos(0.25 * k)
    )
    assert torch.allclose(emb[0, 8::2], torch.sin(-1.5 * k)) and torch.allclose(
        emb[0, 9::2], torch.cos(-1.5 * k)
    )
    grid = grid_position_embedding(8, 3, 4)
    assert grid.shape == (1, 8, 3, 4)
    om = torch.tensor([1.0, 10000.0**-0.5], dtype=torch.float64)
    x, y = 3.0, 2.0
    expected = torch.cat([torch.sin(x * om), torch.cos(x * om), torch.sin(y * om), torch.cos(y * om)]).float()
    assert torch.allclose(grid[0, :, 2, 3], expected, atol=1e-7)


def test_window_offsets_x_outer_and_point_sampling():
    offsets = window_offsets(1, torch.float32, torch.device("cpu"))
    assert offsets.tolist()[:4] == [[-1, -1], [-1, 0], [-1, 1], [0, -1]]
    maps = torch.arange(12.0).reshape(1, 1, 3, 4)  # value = 4·row + col
    pts = torch.tensor([[[1.5, 1.0], [3.0, 2.0], [10.0, 0.0]]])
    got = sample_points(maps, pts)[0, :, 0]
    assert torch.allclose(got, torch.tensor([5.5, 11.0, 3.0]))  # border padding clamps x=10 to col 3


def test_correlation_window_uses_zero_padding():
    fmaps = torch.ones(1, 1, 1, 4, 4)
    pyramid = CorrelationPyramid(fmaps, num_levels=1, radius=1)
    feats = torch.ones(1, 1, 1, 1)
    corr = pyramid.sample(feats, torch.tensor([[[[0.0, 0.0]]]]))[0, 0, 0]
    # window around the corner: only offsets with dx, dy >= 0 land inside the map
    inside = torch.tensor([0, 0, 0, 0, 1, 1, 0, 1, 1], dtype=torch.float32)
    assert torch.allclose(corr, inside)


def test_bad_inputs_raise(heads, golden, layers, small_cfg):
    start = small_cfg.patch_start_idx
    with pytest.raises(ValueError, match="multiple of patch size"):
        heads.depth_head(layers, golden["images"][..., :69, :], start)
    with pytest.raises(KeyError, match="layer 5"):
        heads.depth_head({i: layers[i] for i in (1, 2, 4)}, golden["images"], start)
    with pytest.raises(ValueError, match="query_points"):
        heads.track_head(layers, golden["images"], start, golden["query_points"][0])
    with pytest.raises(ValueError, match="too small"):
        CorrelationPyramid(torch.zeros(1, 1, 4, 6, 6), num_levels=4, radius=3)
