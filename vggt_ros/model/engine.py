"""VGGT inference engine: camera images in, a numpy :class:`Prediction` out (the ``Predictor`` protocol).

Wraps the official inference recipe so that the streaming core never touches torch: preprocessing
(bit-exact with the official loader), the device/dtype policy (bf16 autocast on Ampere and newer,
fp16 on older GPUs, fp32 on CPU; the model itself keeps the camera/depth/point heads in fp32), query
points mapped from camera pixels to network pixels, and post-processing of the pose encoding into
OpenCV extrinsics/intrinsics.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vggt_ros.model.compiled import CompiledShapes, compile_blocks
from vggt_ros.model.descriptors import content_patch_boxes, global_descriptors
from vggt_ros.model.host_transfer import to_prediction
from vggt_ros.model.patch_cache import PatchTokenCache, embed_padded, embed_with_cache
from vggt_ros.model.preprocessing import preprocess_images_uint8, uint8_to_network_tensor
from vggt_ros.prediction import Prediction, PreprocessInfo

logger = logging.getLogger(__name__)

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}
_OOM_ERRORS: tuple[type[BaseException], ...] = tuple(
    {getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None)} - {None})


class InferenceOutOfMemory(RuntimeError):
    """The accelerator ran out of memory for this window; callers can retry with fewer frames."""


# What a caller of predict() may see when a window does not fit: ours, or torch's raised elsewhere.
OUT_OF_MEMORY_ERRORS: tuple[type[BaseException], ...] = (InferenceOutOfMemory, *_OOM_ERRORS)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> CUDA if available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    return dev


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """Compute dtype of the autocast region, following the official recipe for ``"auto"``."""
    if dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        major, _minor = torch.cuda.get_device_capability(device)
        return torch.bfloat16 if major >= 8 else torch.float16
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be 'auto' or one of {sorted(_DTYPES)}, got {dtype!r}")
    resolved = _DTYPES[dtype]
    if device.type != "cuda" and resolved != torch.float32:
        logger.warning("dtype %s requested on %s: autocast is only used on CUDA, running in float32",
                       dtype, device)
        return torch.float32
    return resolved


@dataclass
class PreparedWindow:
    """A preprocessed window, ready for :meth:`InferenceEngine.predict_prepared` (CPU-side work done).

    ``tensor`` is the float32 ``[S, 3, H, W]`` network input on CPU; on CUDA it is the uint8
    ``[S, H, W, 3]`` images in pinned memory (a quarter of the bytes to copy, asynchronously), turned
    into the same float32 values on the device.
    """

    images_u8: np.ndarray
    infos: list[PreprocessInfo]
    tensor: torch.Tensor
    queries: np.ndarray | None
    frame_keys: list[Any] | None
    timings: dict[str, float] = field(default_factory=dict)


def min_track_side(config: Any) -> int:
    """Smallest network side (px) the track head accepts: its correlation pyramid halves the
    half-resolution feature map (levels - 1) times and needs at least one cell at the top."""
    patches = math.ceil(2 ** (config.track_corr_levels - 1) / (config.patch_size // 2))
    return patches * config.patch_size


class InferenceEngine(CompiledShapes):
    """Runs VGGT on windows of camera images and returns numpy :class:`Prediction` objects.

    Args:
        model: a ready ``VGGT`` module (weights loaded); or None to build one from ``config`` and
            load ``checkpoint`` (a file, directory or Hub id, see :func:`load_checkpoint`).
        device: "cuda", "cuda:1", "cpu" or None (CUDA if available).
        dtype: "auto" (bf16 on compute capability >= 8, fp16 below, fp32 on CPU), or "float32",
            "bfloat16", "float16".
        preprocess_mode: "crop" (official default) or "pad"; target_size: network long side (518).
        patch_cache_size: frames whose DINOv2 patch tokens are kept (LRU) and reused by overlapping
            windows that pass ``frame_keys``; 0 disables. Call ``patch_cache.clear()`` after changing
            the model's weights in place.
        world_points: run the point head and fill ``Prediction.world_points`` (None = iff the model
            has one). The streaming core builds points from depth + cameras, so the node should pass
            False: one DPT head less per window.
        frames_chunk_size: frames per DPT-head chunk (None = all at once); bounds peak memory only.
        dpt_autocast: run the depth (and point) DPT heads in the autocast dtype instead of float32
            (the reference keeps them float32). Only matters on CUDA with bf16/fp16: faster, with
            depth differing from the reference by bf16 rounding. Off by default.
        preprocess_cache_size: frames whose preprocessed network image is kept, keyed by
            ``frame_keys`` (overlapping windows preprocess each frame once; :meth:`prefetch` fills it
            ahead of time); 0 disables.
        compile: wrap the model in ``torch.compile`` (off by default: a long warm-up, about 80 s for
            the small config on a 2-core CPU, and new window sizes recompile). True = the default
            inductor backend, or a backend name ("eager", "aot_eager", "cudagraphs", ...).
            ``"blocks"`` = regional compilation: every transformer block (DINOv2, frame, global) is
            compiled in place (``Module.compile``), which fuses the memory-bound layer norms, casts,
            RoPE and residual adds; the blocks share their compiled code, so the warm-up is far
            shorter than compiling the whole model. Note: this changes ``model`` itself. The blocks
            are compiled with static shapes; call :meth:`warmup` before streaming so that no window
            compiles (see ``shape_buckets``).
        compile_backend: dynamo backend of ``compile="blocks"`` ("inductor"; "eager" traces graphs
            without code generation, for tests on CPU).
        shape_buckets: with ``compile="blocks"``, run the DINOv2 blocks on batches rounded up to a
            few fixed sizes (:func:`vggt_ros.model.compiled.batch_buckets`, set by :meth:`warmup`),
            padding with copies of a
            real frame whose results are dropped. Why: the number of uncached frames varies from
            window to window, and every new batch size would compile the blocks again (a stall of
            seconds). Results equal the unpadded ones up to float summation order. Without compiled
            blocks nothing is padded.
    """

    MAX_PREFETCH_PENDING = 8  # queued prefetch calls beyond which prefetch() gives up (bounded queue)

    def __init__(
        self,
        model: torch.nn.Module | None = None,
        config: Any = None,
        checkpoint: str | Path | None = None,
        device: str | torch.device | None = None,
        dtype: str = "auto",
        preprocess_mode: str = "crop",
        target_size: int = 518,
        cache_dir: str | Path | None = None,
        patch_cache_size: int = 64,
        world_points: bool | None = None,
        frames_chunk_size: int | None = 8,
        compile: bool | str = False,
        dpt_autocast: bool = False,
        preprocess_cache_size: int = 64,
        compile_backend: str = "inductor",
        shape_buckets: bool = True,
    ) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        if model is None:
            if checkpoint is None:
                raise ValueError("InferenceEngine needs a model or a checkpoint to load")
            from vggt_ros.model.checkpoint import load_checkpoint

            if isinstance(config, Mapping):
                from vggt_ros.model.config import VGGTConfig

                config = VGGTConfig(**config)
            model = load_checkpoint(checkpoint, config=config, map_location=self.device, cache_dir=cache_dir)
        elif checkpoint is not None:
            from vggt_ros.model.checkpoint import load_checkpoint

            model = load_checkpoint(checkpoint, model=model, map_location=self.device, cache_dir=cache_dir)
        for head in ("camera_head", "depth_head"):
            if getattr(model, head) is None:
                raise ValueError(f"InferenceEngine needs the model's {head} (enable it in the config)")
        self.model = model.to(self.device).eval()
        self.config = model.config
        self.preprocess_mode = preprocess_mode
        self.target_size = target_size
        chunk = frames_chunk_size
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
            raise ValueError(f"frames_chunk_size must be a positive int or None, got {chunk!r}")
        has_point_head = model.point_head is not None
        if world_points is None:
            world_points = has_point_head
        if world_points and not has_point_head:
            raise ValueError("world_points=True needs the model's point_head (enable_point in the config)")
        self.world_points = bool(world_points)
        self.frames_chunk_size = frames_chunk_size
        self.patch_cache = PatchTokenCache(patch_cache_size)
        self._u8_lut: torch.Tensor | None = None  # uint8 -> float table on the device (first use)
        self._last_image_hw: tuple[int, int] | None = None  # camera size of the last window (warmup)
        self.dpt_autocast = bool(dpt_autocast)
        if preprocess_cache_size < 0:
            raise ValueError(f"preprocess_cache_size must be >= 0, got {preprocess_cache_size}")
        self.preprocess_cache_size = int(preprocess_cache_size)
        self._prep_cache: OrderedDict[Any, tuple[tuple[int, ...], np.ndarray, PreprocessInfo]] = OrderedDict()
        self._prep_lock = threading.Lock()
        self.preprocess_stats = {"hits": 0, "misses": 0, "prefetch_skipped": 0}
        self._prefetch_pending = 0
        self._forward = self.model
        self.compiled_blocks = compile == "blocks"
        self.compile_backend = compile_backend
        self.shape_buckets = bool(shape_buckets)
        self.dino_buckets: tuple[int, ...] = ()  # set by warmup(); empty = powers of two
        self._warm_key: tuple[Any, ...] | None = None
        self._warm_report: dict[str, Any] | None = None
        self._warm_window_sizes: set[tuple[int, int, int]] = set()  # (S, H, W) compiled by warmup()
        self._cold_sizes_logged: set[tuple[int, int, int]] = set()
        self.eager_on_recompile = False
        if self.compiled_blocks:
            n = compile_blocks(self.model, backend=compile_backend)
            logger.info("torch.compile: %d transformer blocks compiled in place (regional, static shapes, "
                        "backend %s)", n, compile_backend)
        elif compile:
            backend = "inductor" if compile is True else str(compile)
            self._forward = torch.compile(self.model, backend=backend)
            logger.info("VGGT forward wrapped in torch.compile (backend %s)", backend)
        self._executors: tuple[ThreadPoolExecutor, ThreadPoolExecutor] | None = None
        self._executor_lock = threading.Lock()
        logger.info("VGGT engine on %s, compute dtype %s, preprocess %s@%d",
                    self.device, str(self.dtype).replace("torch.", ""), preprocess_mode, target_size)

    @property
    def autocast_enabled(self) -> bool:
        return self.device.type == "cuda" and self.dtype != torch.float32

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _query_tensor(self, query_points: np.ndarray, info, hw: tuple[int, int]) -> np.ndarray:
        q = np.asarray(query_points, dtype=np.float64)
        if q.ndim != 2 or q.shape[1] != 2:
            raise ValueError(f"query_points must be [N, 2] pixel (x, y) of frame 0, got shape {q.shape}")
        if not np.isfinite(q).all():
            raise ValueError("query_points contain NaN or infinite values")
        if self.model.track_head is None:
            raise ValueError("query_points given but the model has no track head (enable_track=False)")
        need = min_track_side(self.config)
        if min(hw) < need:
            raise ValueError(
                f"tracking needs network images of at least {need} px per side "
                f"({self.config.track_corr_levels}-level correlation pyramid), got {hw[1]}x{hw[0]} (WxH)")
        return info.original_to_network_pixels(q).astype(np.float32)

    def predict(
        self,
        images: Sequence[np.ndarray],
        query_points: np.ndarray | None = None,
        frame_keys: Sequence[Any] | None = None,
    ) -> Prediction:
        """Predict one window (see ``vggt_ros.core.types.Predictor``).

        ``query_points``: [N, 2] (x, y) pixels of frame 0 at the camera's own resolution; tracks are
        returned at the network resolution. ``frame_keys`` (e.g. stamps, unique per window) let the
        engine reuse the patch tokens of frames seen in earlier windows (``patch_cache_size``).
        """
        return self.predict_prepared(self.prepare(images, query_points, frame_keys))

    def prepare(
        self,
        images: Sequence[np.ndarray],
        query_points: np.ndarray | None = None,
        frame_keys: Sequence[Any] | None = None,
    ) -> PreparedWindow:
        """CPU side of :meth:`predict`: preprocessing, query mapping, (pinned) input tensor.

        Touches no model state, so it can run in another thread while the previous window is on
        the accelerator (see :meth:`predict_async`).
        """
        if frame_keys is not None and len(frame_keys) != len(images):
            raise ValueError(f"{len(frame_keys)} frame_keys for {len(images)} images")
        t0 = time.perf_counter()
        images_u8, infos = self._preprocess(images, frame_keys)
        H, W = images_u8.shape[1:3]
        queries = None if query_points is None else self._query_tensor(query_points, infos[0], (H, W))
        if self.device.type == "cuda":
            tensor = torch.from_numpy(images_u8).pin_memory()  # uint8 NHWC, converted on the device
        else:
            tensor = uint8_to_network_tensor(images_u8)
        keys = None
        if frame_keys is not None:
            keys = self._patch_keys(frame_keys, infos)
        return PreparedWindow(images_u8, infos, tensor, queries, keys,
                              {"preprocess": time.perf_counter() - t0})

    @staticmethod
    def _patch_keys(frame_keys: Sequence[Any], infos: Sequence[PreprocessInfo]) -> list[Any]:
        """Patch-cache keys: the caller's key plus what decides the network pixels of the frame."""
        return [(k, info.network_hw, info.scale_xy, info.offset_xy) for k, info in zip(frame_keys, infos)]

    def _preprocess(self, images: Sequence[np.ndarray], frame_keys: Sequence[Any] | None
                    ) -> tuple[np.ndarray, list[PreprocessInfo]]:
        """Preprocess a window, reusing frames already preprocessed under the same key.

        The cache is used only when every image has one shape (mixed sizes are padded to a common
        canvas, which depends on the whole window)."""
        if (frame_keys is None or self.preprocess_cache_size == 0 or len(images) == 0
                or len({np.shape(im) for im in images}) != 1):
            return preprocess_images_uint8(images, self.preprocess_mode, self.target_size)
        shape = tuple(np.shape(images[0]))
        found: dict[int, tuple[np.ndarray, PreprocessInfo]] = {}
        with self._prep_lock:
            for i, key in enumerate(frame_keys):
                entry = self._prep_cache.get(key)
                if entry is not None and entry[0] == shape:
                    self._prep_cache.move_to_end(key)
                    found[i] = (entry[1], entry[2])
        missing = [i for i in range(len(images)) if i not in found]
        if missing:
            new_u8, new_infos = preprocess_images_uint8([images[i] for i in missing], self.preprocess_mode,
                                                        self.target_size)
            with self._prep_lock:
                for j, i in enumerate(missing):
                    found[i] = (new_u8[j], new_infos[j])
                    self._prep_cache[frame_keys[i]] = (shape, new_u8[j], new_infos[j])
                    self._prep_cache.move_to_end(frame_keys[i])
                while len(self._prep_cache) > self.preprocess_cache_size:
                    self._prep_cache.popitem(last=False)
        with self._prep_lock:
            self.preprocess_stats["hits"] += len(images) - len(missing)
            self.preprocess_stats["misses"] += len(missing)
        return np.stack([found[i][0] for i in range(len(images))]), [found[i][1] for i in range(len(images))]

    def clear_caches(self) -> None:
        """Forget cached patch tokens and preprocessed frames: call when frame keys (stamps) may be
        reused for other images, e.g. after a pipeline reset or when a bag is replayed again."""
        self.patch_cache.clear()
        with self._prep_lock:
            self._prep_cache.clear()

    def prefetch(self, images: Sequence[np.ndarray], frame_keys: Sequence[Any]) -> Future[None] | None:
        """Preprocess frames in the background (the engine's preprocessing thread), so that a later
        window containing them finds them ready: the camera callback can call this without blocking
        on inference. Best effort: with ``preprocess_cache_size`` 0, or when ``MAX_PREFETCH_PENDING``
        calls are still queued (preprocessing slower than the camera), nothing is queued (counted in
        ``preprocess_stats["prefetch_skipped"]``) and the window preprocesses the frames itself."""
        if len(frame_keys) != len(images):
            raise ValueError(f"{len(frame_keys)} frame_keys for {len(images)} images")
        with self._prep_lock:
            if self.preprocess_cache_size == 0 or self._prefetch_pending >= self.MAX_PREFETCH_PENDING:
                self.preprocess_stats["prefetch_skipped"] += 1
                return None
            self._prefetch_pending += 1
        images, frame_keys = list(images), list(frame_keys)

        def work() -> None:
            try:
                self._preprocess(images, frame_keys)
            finally:
                with self._prep_lock:
                    self._prefetch_pending -= 1

        prep_pool, _ = self._pools()
        return prep_pool.submit(work)

    def heads_to_run(self, with_tracks: bool) -> set[str]:
        """Heads the engine asks the model for: camera + depth, points if enabled, tracks if queried."""
        heads = {"camera", "depth"}
        if self.world_points:
            heads.add("point")
        if with_tracks:
            heads.add("track")
        return heads

    def predict_prepared(self, prepared: PreparedWindow) -> Prediction:
        """Accelerator side of :meth:`predict` for a :meth:`prepare` d window."""
        timings = dict(prepared.timings)
        images_u8, infos, queries = prepared.images_u8, prepared.infos, prepared.queries
        S, H, W = images_u8.shape[:3]
        if infos:
            self._last_image_hw = tuple(infos[0].original_hw)
        t1 = time.perf_counter()
        try:
            x = prepared.tensor.to(self.device, non_blocking=True)
            if x.dtype == torch.uint8:  # [S, H, W, 3] -> float32 [S, 3, H, W] / 255, as on the CPU
                x = self._u8_to_float(x)
            q = None if queries is None or len(queries) == 0 else torch.from_numpy(queries).to(self.device)
            with torch.inference_mode(), torch.autocast(device_type=self.device.type, dtype=self.dtype,
                                                        enabled=self.autocast_enabled), self._stance():
                use_cache = prepared.frame_keys is not None and self.patch_cache.max_frames > 0
                bucket = self._batch_bucket if self._padding_active else None
                if use_cache:
                    patch_tokens = embed_with_cache(self.model.aggregator, x.unsqueeze(0),
                                                    prepared.frame_keys, self.patch_cache, bucket)
                else:  # embedded here, not inside the model, so that the descriptors reuse the tokens
                    patch_tokens = embed_padded(self.model.aggregator, x.unsqueeze(0),
                                                S if bucket is None else bucket(S))
                grid = (H // self.config.patch_size, W // self.config.patch_size)
                descriptors = global_descriptors(patch_tokens, grid,
                                                 content_patch_boxes(infos, self.config.patch_size, grid))
                if self.compiled_blocks:
                    self._note_window_size(S, H, W)
                out = self._forward(x, query_points=q, patch_tokens=patch_tokens,
                                    heads=self.heads_to_run(q is not None),
                                    frames_chunk_size=self.frames_chunk_size,
                                    dpt_autocast=self.dpt_autocast)
            self._sync()
            timings["forward"] = time.perf_counter() - t1
            t2 = time.perf_counter()
            pred = to_prediction(out, images_u8, infos, queries, self.device, descriptors)
        except _OOM_ERRORS as exc:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            raise InferenceOutOfMemory(
                f"out of memory running VGGT on {S} frames of {W}x{H} px ({self.dtype}) on {self.device}; "
                "use fewer frames per window") from exc
        timings["postprocess"] = time.perf_counter() - t2
        timings["total"] = sum(timings[k] for k in ("preprocess", "forward", "postprocess"))
        pred.timings = timings
        return pred

    def _u8_to_float(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``[S, H, W, 3]`` on the device -> float32 ``[S, 3, H, W]`` with exactly the CPU values.

        A 256-entry table of numpy's correctly rounded ``i / 255`` (CUDA turns a division by a scalar
        into a multiplication by its reciprocal, which is 1 ulp off for some values)."""
        lut = self._u8_lut
        if lut is None or lut.device != x.device:
            table = np.arange(256, dtype=np.float32) / np.float32(255.0)
            lut = self._u8_lut = torch.from_numpy(table).to(x.device)
        return lut[x.permute(0, 3, 1, 2).long()]

    def _pools(self) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
        with self._executor_lock:
            if self._executors is None:
                self._executors = (ThreadPoolExecutor(1, thread_name_prefix="vggt-prep"),
                                   ThreadPoolExecutor(1, thread_name_prefix="vggt-infer"))
            return self._executors

    def predict_async(
        self,
        images: Sequence[np.ndarray],
        query_points: np.ndarray | None = None,
        frame_keys: Sequence[Any] | None = None,
    ) -> Future[Prediction]:
        """Like :meth:`predict`, returning a future; calls are processed in submission order.

        Preprocessing runs in one worker thread and inference in another, so the next window's
        preprocessing overlaps the current window's forward. Errors surface from ``result()``.
        """
        prep_pool, infer_pool = self._pools()
        prepared = prep_pool.submit(self.prepare, images, query_points, frame_keys)
        return infer_pool.submit(lambda: self.predict_prepared(prepared.result()))

    def predict_many(
        self, windows: Iterable[tuple[Sequence[np.ndarray], np.ndarray | None, Sequence[Any] | None]],
        prefetch: int = 1,
    ) -> Iterator[Prediction]:
        """Predict ``(images, query_points, frame_keys)`` windows in order, preprocessing up to
        ``prefetch`` windows ahead of the one running (a simple prefetch pipeline)."""
        if prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch}")
        pending: list[Future[Prediction]] = []
        for images, query_points, frame_keys in windows:
            pending.append(self.predict_async(images, query_points, frame_keys))
            if len(pending) > prefetch:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()

    def close(self) -> None:
        """Stop the worker threads of :meth:`predict_async` (idempotent)."""
        with self._executor_lock:
            if self._executors is not None:
                for pool in self._executors:
                    pool.shutdown(wait=True)
                self._executors = None
