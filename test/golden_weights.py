"""The golden fixtures' deterministic weight rule (shared/spec/golden/README.md, section 1) and data.

The rule itself lives in ``vggt_ros.model.synthetic_weights`` (the node's demo mode uses it too);
``test_golden_weight_rule_fingerprint`` checks it against the fixtures' fingerprint file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vggt_ros.model.synthetic_weights import SEED_1B, SEED_SMALL, entry_value, fill_state_dict

__all__ = ["GOLDEN_DIR", "SEED_1B", "SEED_SMALL", "entry_value", "fill_state_dict", "golden_config",
           "read_state_dict_tsv", "small_golden_model"]

GOLDEN_DIR = Path(__file__).parent / "data" / "golden"


def small_golden_model():
    """The small fixtures' network (config "small", weights of seed 2047), in eval mode."""
    from vggt_ros.model import VGGT, VGGTConfig

    model = VGGT(VGGTConfig(**golden_config("small"))).eval()
    fill_state_dict(model, SEED_SMALL)
    return model


def golden_config(name: str) -> dict:
    """Config fields of the fixtures: name is "default" (VGGT-1B) or "small"."""
    return json.loads((GOLDEN_DIR / "configs.json").read_text())[name]


def read_state_dict_tsv(path: Path) -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) rows of a spec state-dict listing (key<TAB>AxBxC<TAB>dtype)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            key, shape, _dtype = line.split("\t")
            rows.append((key, tuple(int(d) for d in shape.split("x"))))
    return rows


def textured_frames(count: int, seed: int, noise: float, step: float) -> list[np.ndarray]:
    """``count`` 120x160 RGB frames of one smooth textured scene, each brighter by ``step`` plus
    Gaussian ``noise``: distinct, deterministic inputs for the model tests."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:120, 0:160]
    base = np.stack([xx * 1.5, yy * 2.0, 128 + 60 * np.sin(xx / 9.0)], -1)
    return [np.clip(base + rng.normal(0, noise, base.shape) + step * s, 0, 255).astype(np.uint8)
            for s in range(count)]
