"""The synthetic weight rule reproduces the golden fixtures' fingerprint (seeds, kinds, values)."""

import json
import zlib

import pytest
import torch
from golden_weights import GOLDEN_DIR, SEED_SMALL, entry_value, fill_state_dict

FINGERPRINT = json.loads((GOLDEN_DIR / "weights_fingerprint.json").read_text())


@pytest.mark.parametrize("key", sorted(FINGERPRINT["entries"]))
def test_rule_matches_fingerprint(key):
    e = FINGERPRINT["entries"][key]
    assert zlib.crc32(key.encode()) + FINGERPRINT["base_seed"] == e["seed"]
    v = entry_value(key, tuple(e["shape"]), FINGERPRINT["base_seed"])
    assert v.dtype == torch.float32 and tuple(v.shape) == tuple(e["shape"])
    assert v.flatten()[:4].tolist() == e["first4"]
    assert v.flatten()[-1].item() == e["last"]
    assert v.double().sum().item() == pytest.approx(e["sum_f64"], rel=1e-9, abs=1e-6)


def test_small_demo_model_has_finite_cameras():
    """Why the node's demo mode uses the rule: plain random init gives a zero field of view."""
    from vggt_ros.model import VGGT, VGGTConfig

    cfg = json.loads((GOLDEN_DIR / "configs.json").read_text())["small"]
    model = VGGT(VGGTConfig(**cfg)).eval()
    fill_state_dict(model, SEED_SMALL)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 56, 70, generator=torch.Generator().manual_seed(0)))
    fov = out["pose_enc"][..., 7:]
    assert torch.all(fov > 0.05), fov
