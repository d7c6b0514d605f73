"""Checkpoint loading: file formats, directories, offline Hub cache, damaged files, readable mismatches."""

from __future__ import annotations

import logging

import pytest
import torch
from golden_weights import SEED_SMALL, fill_state_dict, golden_config
from safetensors.torch import save_file

from vggt_ros.model.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    load_checkpoint,
    read_state_dict,
)
from vggt_ros.model.config import VGGTConfig
from vggt_ros.model.vggt import VGGT

REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def small_cfg() -> VGGTConfig:
    return VGGTConfig(**golden_config("small"))


@pytest.fixture(scope="module")
def source_model(small_cfg) -> VGGT:
    model = VGGT(small_cfg).eval()
    fill_state_dict(model, SEED_SMALL)
    return model


@pytest.fixture(scope="module")
def state(source_model) -> dict[str, torch.Tensor]:
    return {k: v.clone().contiguous() for k, v in source_model.state_dict().items()}


@pytest.fixture(scope="module")
def reference_output(source_model):
    return _forward(source_model)


def _forward(model):
    torch.manual_seed(0)
    images = torch.rand(2, 3, 42, 56)
    with torch.inference_mode():
        out = model(images)
    return {k: out[k] for k in ("pose_enc", "depth", "depth_conf", "world_points")}


def _assert_same_model(model, reference_output):
    assert not model.training
    out = _forward(model)
    for key, ref in reference_output.items():
        assert torch.equal(out[key], ref), key


def test_round_trip_pt(tmp_path, state, small_cfg, reference_output, caplog):
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    with caplog.at_level(logging.INFO, logger="vggt_ros.model.checkpoint"):
        model = load_checkpoint(path, config=small_cfg)
    _assert_same_model(model, reference_output)
    assert f"{len(state)} tensors" in caplog.text and str(path) in caplog.text and "float32" in caplog.text
    assert "VGGT-1B-Commercial" in caplog.text


def test_round_trip_safetensors_into_given_model(tmp_path, state, small_cfg, reference_output):
    path = tmp_path / "weights.safetensors"
    save_file(state, str(path))
    target = VGGT(small_cfg)  # random init, must be fully overwritten
    model = load_checkpoint(path, model=target)
    assert model is target
    _assert_same_model(model, reference_output)


def test_config_as_dict_and_module_prefix(tmp_path, state, reference_output):
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    model = load_checkpoint(path, config=golden_config("small"))
    _assert_same_model(model, reference_output)


def test_directory_prefers_safetensors(tmp_path, state, small_cfg, reference_output):
    other = {k: v + 1.0 for k, v in state.items()}
    torch.save(other, tmp_path / "model.pt")
    save_file(state, str(tmp_path / "model.safetensors"))
    _assert_same_model(load_checkpoint(tmp_path, config=small_cfg), reference_output)
    (tmp_path / "model.safetensors").unlink()
    sd, path = read_state_dict(tmp_path)
    assert path.name == "model.pt"
    assert torch.equal(sd["aggregator.camera_token"], other["aggregator.camera_token"])


def test_directory_without_weights(tmp_path):
    (tmp_path / "README.md").write_text("nothing here")
    with pytest.raises(CheckpointError, match="no unambiguous checkpoint"):
        read_state_dict(tmp_path)


def _make_hub_cache(root, repo_id, filename, writer):
    repo_dir = root / ("models--" + repo_id.replace("/", "--"))
    snap = repo_dir / "snapshots" / REV
    snap.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(REV)
    writer(snap / filename)


def test_hub_id_from_offline_cache(tmp_path, monkeypatch, state, small_cfg, reference_output, caplog):
    cache = tmp_path / "hf" / "hub"
    _make_hub_cache(cache, "facebook/VGGT-1B", "model.safetensors", lambda p: save_file(state, str(p)))
    _make_hub_cache(cache, "facebook/VGGT-1B-Commercial", "model.pt", lambda p: torch.save(state, p))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # read at call time, not at import
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with caplog.at_level(logging.INFO, logger="vggt_ros.model.checkpoint"):
        model = load_checkpoint("facebook/VGGT-1B", config=small_cfg)
    _assert_same_model(model, reference_output)
    assert "NON-COMMERCIAL" in caplog.text
    # model.safetensors absent -> falls back to model.pt; explicit cache_dir also works.
    monkeypatch.delenv("HF_HOME")
    sd, path = read_state_dict("facebook/VGGT-1B-Commercial", cache_dir=cache)
    assert path.name == "model.pt" and REV in str(path)
    assert len(sd) == len(state)
    with pytest.raises(CheckpointError, match="offline"):
        read_state_dict("facebook/not-there", cache_dir=cache)


def test_missing_file_named():
    with pytest.raises(FileNotFoundError, match="nope/weights.pt"):
        read_state_dict("/tmp/nope/weights.pt")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_truncated_file(tmp_path, state, suffix):
    path = tmp_path / f"full{suffix}"
    if suffix == ".pt":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    data = path.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"cut{suffix}.*truncated"):
        read_state_dict(cut)


@pytest.mark.parametrize("name", ["garbage.pt", "garbage.safetensors", "garbage.ckpt"])
def test_garbage_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(CheckpointError, match=name):
        read_state_dict(path)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError, match="expected a state dict"):
        read_state_dict(path)


def test_mismatch_error_is_summarised(tmp_path, state, small_cfg):
    bad = dict(state)
    dropped = [k for k in bad if k.startswith("aggregator.frame_blocks.")][:25]
    for k in dropped:
        del bad[k]
    bad["extra_head.weight"] = torch.zeros(3)
    bad["camera_head.no_such_layer.bias"] = torch.zeros(3)  # not a real key -> unexpected
    key = "aggregator.camera_token"
    bad[key] = torch.zeros(1, 2, 1, 99)
    path = tmp_path / "bad.pt"
    torch.save(bad, path)
    no_track = VGGTConfig(**{**golden_config("small"), "enable_track": False})
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint(path, config=no_track, ignore_disabled_heads=False)
    text = str(info.value)
    assert "bad.pt" in text
    assert "missing keys (in the model, not in the checkpoint): 25 (aggregator: 25)" in text
    n_track = sum(k.startswith("track_head.") for k in state)
    assert f"unexpected keys (in the checkpoint, not in the model): {n_track + 2}" in text
    assert f"track_head: {n_track}" in text and "extra_head: 1" in text
    assert f"{key}: checkpoint [1, 2, 1, 99] vs model [1, 2, 1, 64]" in text
    assert "... and 15 more" in text
    assert len(text.splitlines()) < 45  # a summary, not a dump of hundreds of keys


def test_disabled_head_weights_are_skipped(tmp_path, state, source_model):
    path = tmp_path / "full.safetensors"
    save_file(state, str(path))
    cfg = VGGTConfig(**{**golden_config("small"), "enable_track": False, "enable_point": False})
    model = load_checkpoint(path, config=cfg)
    assert model.track_head is None and model.point_head is None
    torch.manual_seed(0)
    images = torch.rand(1, 3, 42, 56)
    with torch.inference_mode():
        out, ref = model(images), source_model(images)
    assert "world_points" not in out
    assert torch.equal(out["depth"], ref["depth"]) and torch.equal(out["pose_enc"], ref["pose_enc"])
    # A missing key of an enabled module is still an error.
    partial = {k: v for k, v in state.items() if not k.startswith("depth_head.scratch.output_conv2")}
    save_file(partial, str(tmp_path / "partial.safetensors"))
    with pytest.raises(CheckpointMismatchError, match="missing keys .*: 4 \\(depth_head: 4\\)"):
        load_checkpoint(tmp_path / "partial.safetensors", config=cfg)
