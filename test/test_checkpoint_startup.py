"""Start-up without weights fails fast: checkpoint resolution before anything is built.

No network here (realistic for a robot): a Hub repo id that is not cached must fail within seconds,
offline or not, with a message naming the repo and how to pass a local file; a missing local file at
once; a cached repo is found without the network.
"""

from __future__ import annotations

import time

import pytest
import torch

from vggt_ros.model import checkpoint as ckpt
from vggt_ros.model.checkpoint import CheckpointUnavailable, resolve_checkpoint
from vggt_ros.model.factory import SMALL_MODEL_CONFIG, build_engine

REPO = "facebook/VGGT-1B"
REV = "0123456789abcdef0123456789abcdef01234567"


def _assert_how_to_pass_a_local_file(text: str) -> None:
    assert "checkpoint:=/path/to/model.pt" in text and "--checkpoint /path/to/model.pt" in text, text


@pytest.fixture
def empty_hf_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_ETAG_TIMEOUT", raising=False)
    return tmp_path / "hf"


def _never_download(*args, **kwargs):
    # Reached only when the Hub answered the probe: this machine has network after all. Never start a
    # 5 GB download from a test.
    pytest.skip("the Hugging Face Hub is reachable from here: the no-network case cannot be tested")


def test_offline_repo_not_cached_fails_within_seconds(empty_hf_home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    with pytest.raises(CheckpointUnavailable) as info:
        build_engine({"predictor": "vggt", "checkpoint": REPO, "device": "cpu"})
    elapsed = time.monotonic() - t0
    assert elapsed < 5.0, elapsed
    text = str(info.value)
    assert repr(REPO) in text and "HF_HUB_OFFLINE" in text and str(empty_hf_home) in text
    _assert_how_to_pass_a_local_file(text)
    assert isinstance(info.value, RuntimeError)  # the node's main() reports it and exits 2


def test_no_network_repo_not_cached_fails_within_seconds(empty_hf_home, monkeypatch):
    """The real Hub endpoint without HF_HUB_OFFLINE: the sandbox has no network (DNS fails)."""
    monkeypatch.setattr(ckpt, "download_from_hub", _never_download)
    t0 = time.monotonic()
    with pytest.raises(CheckpointUnavailable) as info:
        build_engine({"predictor": "vggt", "checkpoint": REPO, "device": "cpu"})
    elapsed = time.monotonic() - t0
    assert elapsed < 15.0, elapsed  # before: about 50 s of Hub retries
    text = str(info.value)
    assert repr(REPO) in text and "not reachable" in text
    _assert_how_to_pass_a_local_file(text)


def test_hub_that_never_answers_is_cut_off(empty_hf_home, monkeypatch):
    """DNS or a connection that hangs: the probe's thread is abandoned after 2 * timeout + 1 s."""
    import huggingface_hub.utils

    class HangingSession:
        def head(self, *args, **kwargs):
            time.sleep(30)

    monkeypatch.setattr(huggingface_hub.utils, "get_session", lambda: HangingSession())
    monkeypatch.setattr(ckpt, "download_from_hub", _never_download)
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "0.5")
    t0 = time.monotonic()
    with pytest.raises(CheckpointUnavailable, match="no answer from .* within 2 s"):
        resolve_checkpoint(REPO)
    assert time.monotonic() - t0 < 3.0


def test_reachable_hub_downloads_and_logs_the_size(empty_hf_home, monkeypatch, caplog, tmp_path):
    """A Hub that answers: the download proceeds as before, logged with the size from the probe."""
    import huggingface_hub.utils

    class Response:
        status_code = 302
        headers = {"x-linked-size": "5026000000"}

    class AnsweringSession:
        def head(self, url, **kwargs):
            assert url.endswith("/facebook/VGGT-1B/resolve/main/model.safetensors")
            assert kwargs["timeout"] == 5.0
            return Response()

    weights = tmp_path / "downloaded.safetensors"
    monkeypatch.setattr(huggingface_hub.utils, "get_session", lambda: AnsweringSession())
    monkeypatch.setattr(ckpt, "download_from_hub", lambda repo, **kw: weights)
    with caplog.at_level("INFO", logger="vggt_ros.model.checkpoint"):
        assert resolve_checkpoint(REPO) == weights
    assert "downloading it from the Hugging Face Hub now (5.03 GB)" in caplog.text


def test_missing_local_file_fails_at_once(tmp_path):
    missing = tmp_path / "nope" / "model.pt"
    t0 = time.monotonic()
    with pytest.raises(CheckpointUnavailable) as info:
        build_engine({"predictor": "vggt", "checkpoint": str(missing), "device": "cpu"})
    assert time.monotonic() - t0 < 1.0
    assert str(missing) in str(info.value)
    _assert_how_to_pass_a_local_file(str(info.value))
    assert isinstance(info.value, FileNotFoundError)  # what read_state_dict raised before


def _small_state() -> dict[str, torch.Tensor]:
    from vggt_ros.model import VGGT, VGGTConfig
    from vggt_ros.model.synthetic_weights import fill_state_dict

    model = VGGT(VGGTConfig(**SMALL_MODEL_CONFIG))
    fill_state_dict(model, 7)
    return {k: v.clone().contiguous() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("offline", [True, False])
def test_cached_repo_is_found_without_network(empty_hf_home, monkeypatch, offline):
    """try_to_load_from_cache layout: models--org--name/snapshots/<rev>/file + refs/main."""
    from safetensors.torch import save_file

    state = _small_state()
    repo_dir = empty_hf_home / "hub" / "models--someorg--tiny-vggt"
    (repo_dir / "snapshots" / REV).mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(REV)
    save_file(state, str(repo_dir / "snapshots" / REV / "model.safetensors"))
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # A cache hit never asks the Hub.
    monkeypatch.setattr(ckpt, "probe_hub", lambda *a, **k: pytest.fail("probed the Hub despite the cache"))
    monkeypatch.setattr(ckpt, "download_from_hub", lambda *a, **k: pytest.fail("downloaded from the Hub"))
    assert resolve_checkpoint("someorg/tiny-vggt") == repo_dir / "snapshots" / REV / "model.safetensors"
    engine = build_engine({"predictor": "vggt", "model_config": "small", "checkpoint": "someorg/tiny-vggt",
                           "device": "cpu"})
    loaded = engine.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_replay_reports_the_message(tmp_path):
    from vggt_ros.bag.errors import ReplayError
    from vggt_ros.bag.replay import ReplayOptions, _make_predictor
    from vggt_ros.params.validation import validate_params

    missing = tmp_path / "model.pt"
    params = validate_params({"predictor": "vggt", "checkpoint": str(missing)}, allow_unknown=True)
    with pytest.raises(ReplayError) as info:
        _make_predictor(ReplayOptions(params=params), None)
    text = str(info.value)
    assert "CheckpointUnavailable" in text and str(missing) in text
    _assert_how_to_pass_a_local_file(text)


def test_node_main_exits_2_with_the_message(tmp_path, capsys):
    pytest.importorskip("rclpy")
    from vggt_ros.ros.node import main

    missing = tmp_path / "model.pt"
    t0 = time.monotonic()
    rc = main(["--ros-args", "-p", "predictor:=vggt", "-p", f"checkpoint:={missing}",
               "-p", "publish_tf:=false"])
    assert rc == 2 and time.monotonic() - t0 < 10.0
    err = capsys.readouterr().err
    assert str(missing) in err
    _assert_how_to_pass_a_local_file(err)
