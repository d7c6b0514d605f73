"""torch.compile management of the inference engine: regional compilation of the transformer blocks,
the DINOv2 batch buckets, recompile accounting and the warm-up that compiles every streaming shape.

Why a module of its own: static-shape compilation is an optional speed layer over the eager engine
(:class:`vggt_ros.model.engine.InferenceEngine` mixes in :class:`CompiledShapes`); keeping it here
keeps the engine's predict path readable and the compile policy in one place.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

# the engine's logger: these messages were always the engine's (log filters and tests use its name)
logger = logging.getLogger("vggt_ros.model.engine")


# Compiled graphs the blocks may hold. All blocks share one code object (``Block.forward``), so
# dynamo's per-code-object ``recompile_limit`` (8 by default) counts every DINOv2 batch bucket and
# every (frame, global) window size together; beyond it dynamo silently runs the blocks eagerly.
BLOCK_RECOMPILE_LIMIT = 64


def compile_blocks(model: torch.nn.Module, backend: str = "inductor", dynamic: bool | None = False) -> int:
    """Compile the aggregator's transformer blocks in place (regional ``torch.compile``); returns
    how many. State-dict keys do not change (``Module.compile`` keeps the module).

    ``dynamic=False`` (static shapes): every input shape gets its own specialised graph, so the set
    of compiled graphs is exactly the set of shapes run, which the engine keeps small (DINOv2 batch
    buckets) and compiles ahead of time (:meth:`CompiledShapes.warmup`, as ``InferenceEngine.warmup``). With
    ``None`` (dynamo's automatic dynamic shapes) the second distinct size recompiles a symbolic-shape
    graph, sizes 0 and 1 are specialised, and when each happens depends on the stream. Raises dynamo's
    ``recompile_limit`` to :data:`BLOCK_RECOMPILE_LIMIT` (never lowers it).
    """
    import torch._dynamo.config as dynamo_config

    if dynamo_config.recompile_limit < BLOCK_RECOMPILE_LIMIT:
        logger.info("torch._dynamo recompile_limit %d -> %d (static-shape compiled blocks)",
                    dynamo_config.recompile_limit, BLOCK_RECOMPILE_LIMIT)
        dynamo_config.recompile_limit = BLOCK_RECOMPILE_LIMIT
    agg = model.aggregator
    blocks = [*agg.patch_embed.blocks, *agg.frame_blocks, *agg.global_blocks]
    for block in blocks:
        block.compile(backend=backend, dynamic=dynamic)
    return len(blocks)


def compiled_graph_count() -> int:
    """Graphs dynamo has compiled in this process so far (``counters["stats"]["unique_graphs"]``);
    the difference across a call is the number of (re)compilations it triggered."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def batch_buckets(window_size: int, stride: int) -> tuple[int, ...]:
    """DINOv2 batch sizes for a stream of ``window_size``-frame windows advancing by ``stride``.

    Powers of two from 2 below the window, plus ``stride`` (the usual number of uncached frames per
    steady window, so that the common case runs unpadded) and ``window_size`` (bootstrap window,
    or no patch cache). One uncached frame is padded to 2: one graph fewer, and 1 is the size dynamo
    treats specially.
    """
    if window_size < 1 or not 1 <= stride <= window_size:
        raise ValueError(f"need window_size >= 1 and 1 <= stride <= window_size, got {window_size}, {stride}")
    sizes = {window_size, max(2, stride)}
    k = 2
    while k < window_size:
        sizes.add(k)
        k *= 2
    return tuple(sorted(s for s in sizes if s <= max(2, window_size)))


def bucket_for(n: int, buckets: Sequence[int]) -> int:
    """Smallest bucket >= ``n``; without buckets (or ``n`` above them) the next power of two >= 2,
    so that even an engine never warmed up sees few distinct batch sizes."""
    for b in sorted(buckets):
        if b >= n:
            return b
    return max(2, 1 << max(0, n - 1).bit_length())


class CompiledShapes:
    """The compiled-shape side of :class:`vggt_ros.model.engine.InferenceEngine` (a mixin).

    Uses the engine's attributes set in its ``__init__``: ``compiled_blocks``, ``compile_backend``,
    ``shape_buckets``, ``dino_buckets``, ``eager_on_recompile``, ``patch_cache``, ``model``,
    ``_forward``, ``_warm_key``, ``_warm_report``, ``_warm_window_sizes``, ``_cold_sizes_logged``,
    ``_last_image_hw``;
    and its methods ``prepare``, ``predict_prepared`` and ``_patch_keys``.
    """

    @property
    def _padding_active(self) -> bool:
        return self.compiled_blocks and self.shape_buckets

    def _batch_bucket(self, n: int) -> int:
        return bucket_for(n, self.dino_buckets)

    def _stance(self) -> contextlib.AbstractContextManager[Any]:
        """After ``warmup(eager_on_recompile=True)``: shapes without compiled code run eagerly."""
        if self.compiled_blocks and self.eager_on_recompile:
            return torch.compiler.set_stance("eager_on_recompile")
        return contextlib.nullcontext()

    def _note_window_size(self, S: int, H: int, W: int) -> None:
        """Log (once per size) a window size the warm-up did not compile: the trunk blocks compile
        for it now (a stall), or run eagerly with ``eager_on_recompile``."""
        size = (S, H, W)
        if self._warm_key is None or size in self._warm_window_sizes or size in self._cold_sizes_logged:
            return
        self._cold_sizes_logged.add(size)
        action = "runs eagerly" if self.eager_on_recompile else "compiles the blocks now (a stall)"
        logger.warning("window of %d frames at %dx%d was not warmed up: it %s; warm sizes %s", S, W, H,
                       action, sorted(self._warm_window_sizes))

    def warmup(
        self,
        window_size: int,
        stride: int,
        image_hw: tuple[int, int] | None = None,
        extra_window_sizes: Iterable[int] = (),
        eager_on_recompile: bool = False,
    ) -> dict[str, Any]:
        """Compile, before the first real frame, every shape a stream of ``window_size``-frame
        windows advancing by ``stride`` runs; returns what it did (also logged).

        Why: compiled blocks use static shapes, and compiling a new shape in the middle of a stream
        stalls it for seconds. Runs synthetic windows of random images at the camera size
        ``image_hw`` (H, W; None = the size of the last window predicted): a bootstrap window
        (``window_size`` uncached frames), then, with the patch cache on, windows of ``window_size``
        frames whose uncached frames hit each DINOv2 batch bucket for 1..``stride`` new frames
        (``shape_buckets=False``: the same sizes, unpadded; other counts compile when they occur),
        then one window per size in ``extra_window_sizes`` (e.g. flush or out-of-memory sizes).
        The synthetic frames are removed from the patch cache afterwards; the preprocessing cache is
        not used. Calling it again with the same arguments returns the first report (``skipped``).
        ``eager_on_recompile``: afterwards, a shape not compiled runs eagerly (slower, no stall)
        instead of compiling.

        Eager engine (``compile`` other than "blocks"): a no-op returning ``{"compiled": False}``
        (nothing to compile; a whole-model compile is not warmed up either).

        Returns: ``compiled``, ``window_sizes``, ``dino_buckets``, ``graphs_compiled`` (dynamo
        graphs compiled during the warm-up), ``seconds``, ``skipped`` and per window ``steps``
        (frames, uncached, dino_batch, seconds, graphs).
        """
        if not self.compiled_blocks:
            logger.info("warmup: transformer blocks not compiled (compile=%r), nothing to do",
                        "model" if self._forward is not self.model else False)
            return {"compiled": False, "skipped": True, "graphs_compiled": 0, "seconds": 0.0, "steps": []}
        window_size, stride = int(window_size), int(stride)
        buckets = batch_buckets(window_size, stride)  # validates window_size and stride
        extras = sorted({int(s) for s in extra_window_sizes} - {window_size})
        if any(s < 1 for s in extras):
            raise ValueError(f"extra_window_sizes must be >= 1, got {extras}")
        if image_hw is None:
            image_hw = self._last_image_hw
            if image_hw is None:
                raise ValueError("warmup needs image_hw (camera height, width) until a window was predicted")
        h, w = (int(v) for v in image_hw)
        key = (window_size, stride, h, w, tuple(extras), self.shape_buckets)
        if key == self._warm_key and self._warm_report is not None:
            self.eager_on_recompile = bool(eager_on_recompile)
            return {**self._warm_report, "skipped": True}
        if self.shape_buckets:
            self.dino_buckets = buckets
        self.eager_on_recompile = False  # compile what the warm-up runs
        rng = np.random.default_rng(0)
        pool = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(max(window_size, *extras, 2))]
        serial = iter(range(1 << 62))
        used: list[Any] = []
        steps: list[dict[str, Any]] = []
        t_start, g_start = time.perf_counter(), compiled_graph_count()
        use_cache = self.patch_cache.max_frames >= window_size

        def run(label: str, keys: list[Any], new: int) -> None:
            t, g = time.perf_counter(), compiled_graph_count()
            prepared = self.prepare([pool[i % len(pool)] for i in range(len(keys))])
            if use_cache:
                prepared.frame_keys = self._patch_keys(keys, prepared.infos)
                used.extend(prepared.frame_keys)
            self.predict_prepared(prepared)
            H, W = prepared.images_u8.shape[1:3]
            self._warm_window_sizes.add((len(keys), H, W))
            uncached = new if use_cache else len(keys)
            steps.append({"window": label, "frames": len(keys), "uncached": uncached,
                          "dino_batch": self._batch_bucket(uncached) if self._padding_active else uncached,
                          "seconds": time.perf_counter() - t, "graphs": compiled_graph_count() - g})

        def fresh(n: int) -> list[Any]:
            return [("vggt_ros.engine.warmup", next(serial)) for _ in range(n)]

        try:
            last = fresh(window_size)
            run("bootstrap", last, window_size)
            if use_cache:
                if self._padding_active:
                    sizes = sorted({self._batch_bucket(n) for n in range(1, stride + 1)})
                else:  # unpadded: the same nominal sizes; other counts compile when they occur
                    sizes = [b for b in buckets if b <= stride]
                for n in sizes:
                    if n >= window_size:
                        continue
                    last = last[n:] + fresh(n)  # window_size - n cached context frames + n new ones
                    run("steady", last, n)
            for size in extras:  # cached context (at most the last window) + up to ``stride`` new frames
                context = min(len(last), max(size - stride, 1 if size > 1 else 0)) if use_cache else 0
                run("extra", last[len(last) - context:] + fresh(size - context), size - context)
        finally:
            self.patch_cache.discard(used)  # synthetic frames never serve a real window
        self.eager_on_recompile = bool(eager_on_recompile)
        self._warm_key = key
        report = {
            "compiled": True, "skipped": False, "backend": self.compile_backend,
            "window_size": window_size, "stride": stride, "image_hw": (h, w),
            "window_sizes": sorted({st["frames"] for st in steps}),
            "dino_buckets": list(self.dino_buckets) if self.shape_buckets else [],
            "graphs_compiled": compiled_graph_count() - g_start,
            "seconds": time.perf_counter() - t_start, "steps": steps,
            "eager_on_recompile": self.eager_on_recompile,
        }
        self._warm_report = report
        logger.info("warmup: %d windows (sizes %s, DINOv2 batches %s) compiled %d graphs in %.1f s",
                    len(steps), report["window_sizes"], sorted({st["dino_batch"] for st in steps}),
                    report["graphs_compiled"], report["seconds"])
        return report
