"""Bounded LRU cache of per-frame DINOv2 patch tokens for overlapping sliding windows.

A streaming window of W frames with stride W/2 shares half its frames with the previous window. The
aggregator's patch embedding (24 DINOv2 blocks in VGGT-1B, about a third of the trunk's FLOPs per
frame) is purely per frame, so each frame's tokens can be computed once and reused by every window
that contains it. Only the cross-frame trunk and the heads run again.

Keys are ``(frame key, network H, W, compute dtype, device, model id)``: the same stamp preprocessed
to another size, run under another autocast dtype or by another model is a different entry.
Exactness: cached tokens are the same function of the same pixels; batching the missing frames
differently than the uncached call only changes floating-point summation order (BLAS blocking).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import torch

logger = logging.getLogger(__name__)


def compute_dtype(device: torch.device, tensor_dtype: torch.dtype) -> torch.dtype:
    """The dtype the matmuls actually run in: the autocast dtype when autocast is on, else the tensor's."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return tensor_dtype


class PatchTokenCache:
    """LRU of patch tokens ``[h*w, E]`` per frame (see the module docstring); thread-safe.

    Args:
        max_frames: entries kept (0 disables: every lookup misses and nothing is stored).
    """

    def __init__(self, max_frames: int = 64) -> None:
        if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 0:
            raise ValueError(f"max_frames must be an int >= 0, got {max_frames!r}")
        self.max_frames = max_frames
        self._entries: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def get(self, key: Hashable) -> torch.Tensor | None:
        """Tokens of ``key`` (marked most recently used) or None; counts a hit or a miss."""
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, tokens: torch.Tensor) -> None:
        """Store ``tokens`` (detached), evicting the least recently used entries beyond ``max_frames``."""
        if self.max_frames == 0:
            return
        with self._lock:
            self._entries[key] = tokens.detach()
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_frames:
                self._entries.popitem(last=False)
                self.evictions += 1

    def discard(self, frame_keys: Iterable[Hashable]) -> int:
        """Remove every entry of these frame keys (any size, dtype or model; the first element of a
        :func:`cache_key`), e.g. the synthetic frames of a warm-up; returns how many entries."""
        drop = set(frame_keys)
        with self._lock:
            gone = [k for k in self._entries if (k[0] if isinstance(k, tuple) and k else k) in drop]
            for k in gone:
                del self._entries[k]
        return len(gone)

    def clear(self) -> None:
        """Drop all entries (e.g. after loading new weights); counters are kept."""
        with self._lock:
            self._entries.clear()

    def stats(self) -> dict[str, int]:
        """Counters for diagnostics: hits, misses, evictions, size, max_frames."""
        return {"hits": self.hits, "misses": self.misses, "evictions": self.evictions,
                "size": len(self._entries), "max_frames": self.max_frames}


def cache_key(frame_key: Hashable, images: torch.Tensor, aggregator: Any) -> tuple[Any, ...]:
    """Key of one frame of ``images [B, S, 3, H, W]`` embedded by ``aggregator`` in the current mode."""
    height, width = int(images.shape[-2]), int(images.shape[-1])
    return (frame_key, height, width, compute_dtype(images.device, images.dtype), images.device,
            id(aggregator))


def embed_padded(aggregator: Any, images: torch.Tensor, batch: int) -> torch.Tensor:
    """Patch tokens ``[1, n, h*w, E]`` of ``images [1, n, 3, H, W]``, run as a batch of ``batch >= n``.

    Why: compiled (static-shape) DINOv2 blocks compile once per batch size. Rounding the batch up to
    a few fixed sizes keeps the set of compiled shapes small; the extra rows are copies of the last
    frame and their tokens are dropped. DINOv2 is purely per frame, so the kept rows equal the
    unpadded result up to float summation order (BLAS blocking may depend on the batch).
    """
    n = images.shape[1]
    if batch < n:
        raise ValueError(f"padded batch {batch} is smaller than the {n} frames to embed")
    if batch == n:
        return aggregator.embed_patches(images)
    padded = torch.cat([images, images[:, -1:].expand(-1, batch - n, -1, -1, -1)], dim=1)
    return aggregator.embed_patches(padded)[:, :n]


def embed_with_cache(
    aggregator: Any,
    images: torch.Tensor,
    frame_keys: Sequence[Hashable],
    cache: PatchTokenCache,
    batch_bucket: Callable[[int], int] | None = None,
) -> torch.Tensor:
    """Patch tokens ``[1, S, h*w, E]`` of ``images [1, S, 3, H, W]``, embedding only uncached frames.

    The missing frames run through ``aggregator.embed_patches`` in one batch; the result equals
    ``aggregator.embed_patches(images)`` up to float summation order. ``frame_keys`` must identify
    the pixels (same key = same image), e.g. the frame stamps of one camera stream.
    ``batch_bucket`` (n missing frames -> batch size >= n) pads that batch, see :func:`embed_padded`.
    """
    if images.ndim != 5 or images.shape[0] != 1:
        raise ValueError(f"embed_with_cache needs images [1, S, 3, H, W], got {tuple(images.shape)}")
    num_frames = images.shape[1]
    if len(frame_keys) != num_frames:
        raise ValueError(f"{len(frame_keys)} frame_keys for {num_frames} frames")
    if len(set(frame_keys)) != num_frames:
        raise ValueError(f"frame_keys must be unique within a window, got {list(frame_keys)}")
    keys = [cache_key(k, images, aggregator) for k in frame_keys]
    found: list[torch.Tensor | None] = [cache.get(k) for k in keys]
    missing = [i for i, t in enumerate(found) if t is None]
    if missing:
        batch = len(missing) if batch_bucket is None else int(batch_bucket(len(missing)))
        if len(missing) == num_frames:
            fresh = embed_padded(aggregator, images, batch)[0]
        else:
            index = torch.tensor(missing, device=images.device)
            fresh = embed_padded(aggregator, images.index_select(1, index), batch)[0]
        for j, i in enumerate(missing):
            found[i] = fresh[j]
            # a copy per frame, so that one cached frame does not keep its whole batch alive
            cache.put(keys[i], fresh[j].clone())
    if len(missing) == num_frames:
        return fresh.unsqueeze(0)
    return torch.stack(found, dim=0).unsqueeze(0)  # type: ignore[arg-type]
