"""Global per-frame descriptors for loop-closure candidates, pooled from the DINOv2 patch tokens.

Why these tokens: the aggregator computes them for every frame anyway (:meth:`Aggregator.embed_patches`,
or the patch cache), so a descriptor costs one mean over ``[h*w, E]`` per frame and no extra model.
They are taken *before* the cross-frame trunk, so a frame's descriptor depends only on its own pixels,
not on the window it was seen in: the same image gives the same descriptor in any window, cached or not.

Pooling: mean of the patch tokens inside the image content (patches touching padding are left out,
since uniform padding would pull every padded frame towards one vector), then L2 normalisation; the
cosine of two descriptors is their dot product.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from vggt_ros.prediction import PreprocessInfo

Box = tuple[int, int, int, int]  # (row0, col0, row1, col1) in patches, row1/col1 exclusive


def content_patch_boxes(infos: Sequence[PreprocessInfo], patch_size: int, grid_hw: tuple[int, int]
                        ) -> list[Box] | None:
    """Per frame, the patches wholly inside the image content (no padding); None if no frame is padded.

    A frame whose content covers no whole patch keeps the full grid (nothing better to pool)."""
    gh, gw = grid_hw
    full = (0, 0, gh, gw)
    boxes = []
    for info in infos:
        x0, y0, x1, y1 = info.valid_network_box()
        box = (math.ceil(y0 / patch_size), math.ceil(x0 / patch_size),
               min(gh, y1 // patch_size), min(gw, x1 // patch_size))
        boxes.append(box if box[2] > box[0] and box[3] > box[1] else full)
    return None if all(b == full for b in boxes) else boxes


def global_descriptors(patch_tokens: torch.Tensor, grid_hw: tuple[int, int],
                       boxes: Sequence[Box] | None = None) -> torch.Tensor:
    """L2-normalised float32 descriptors ``[S, E]`` of patch tokens ``[1, S, h*w, E]`` (or ``[S, h*w, E]``).

    ``boxes``: per-frame patch boxes to pool over (:func:`content_patch_boxes`); None = every patch.
    Runs where the tokens are (no host transfer); accumulates in float32 whatever the token dtype."""
    gh, gw = grid_hw
    grid = patch_tokens.reshape(-1, gh, gw, patch_tokens.shape[-1])
    if boxes is None:
        boxes = [(0, 0, gh, gw)] * grid.shape[0]
    if len(boxes) != grid.shape[0]:
        raise ValueError(f"{len(boxes)} boxes for {grid.shape[0]} frames")
    # One reduction (mean, then norm) per frame, not one over the batch: the result then cannot depend
    # on how many frames share the window (reduction strategies vary with the output count), so a
    # cached frame gets bit for bit the descriptor it got when its tokens were computed.
    return torch.stack([F.normalize(grid[i, r0:r1, c0:c1].mean(dim=(0, 1), dtype=torch.float32), dim=0)
                        for i, (r0, c0, r1, c1) in enumerate(boxes)])
