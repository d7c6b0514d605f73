"""Deterministic synthetic weights: the rule of the golden parity fixtures.

Every state-dict entry is a pure function of its key and shape: an MT19937 uniform draw seeded by
crc32(key) + base_seed, shifted and scaled to the mean/std of the entry's kind (layer scale, bias,
norm scale, matrix with fan-in scaling, or token). The golden tests use it to rebuild the fixtures'
weights; without a checkpoint, the node's `model_config: small` demo mode uses it too, because plain
random initialisation gives the camera head a zero field of view (infinite focal lengths).
"""

from __future__ import annotations

import math
import zlib

import torch

SEED_1B = 2029
SEED_SMALL = 2047


def entry_value(key: str, shape: tuple[int, ...], base_seed: int) -> torch.Tensor:
    """The float32 tensor the rule gives to ``key`` with ``shape``."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(zlib.crc32(key.encode("utf-8")) + base_seed)
    u = torch.rand(shape, generator=gen, dtype=torch.float32)
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "gamma":
        mean, std = 0.1, 0.05
    elif leaf.endswith("bias"):
        mean, std = 0.0, 0.05
    elif leaf.endswith("weight"):
        mean, std = (1.0, 0.1) if len(shape) == 1 else (0.0, math.prod(shape[1:]) ** -0.5)
    else:
        mean, std = 0.0, 1.0
    spread = torch.tensor(std * math.sqrt(12.0), dtype=torch.float32)
    return (u - 0.5) * spread + torch.tensor(mean, dtype=torch.float32)


@torch.no_grad()
def fill_state_dict(module: torch.nn.Module, base_seed: int) -> None:
    """Overwrite every floating-point state-dict entry of ``module`` in place with the rule's values."""
    for key, tensor in module.state_dict(keep_vars=True).items():
        if torch.is_floating_point(tensor):
            tensor.data.copy_(entry_value(key, tuple(tensor.shape), base_seed))
