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
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vggt_ros.model.geometry import pose_encoding_to_extri_intri
from vggt_ros.model.preprocessing import preprocess_images_uint8, uint8_to_network_tensor
from vggt_ros.prediction import Prediction

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


def min_track_side(config: Any) -> int:
    """Smallest network side (px) the track head accepts: its correlation pyramid halves the
    half-resolution feature map (levels - 1) times and needs at least one cell at the top."""
    patches = math.ceil(2 ** (config.track_corr_levels - 1) / (config.patch_size // 2))
    return patches * config.patch_size


class InferenceEngine:
    """Runs VGGT on windows of camera images and returns numpy :class:`Prediction` objects.

    Args:
        model: a ready ``VGGT`` module (weights loaded); or None to build one from ``config`` and
            load ``checkpoint`` (a file, directory or Hub id, see :func:`load_checkpoint`).
        device: "cuda", "cuda:1", "cpu" or None (CUDA if available).
        dtype: "auto" (bf16 on compute capability >= 8, fp16 below, fp32 on CPU), or "float32",
            "bfloat16", "float16".
        preprocess_mode: "crop" (official default) or "pad"; target_size: network long side (518).
    """

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
            if getattr(model, head, None) is None:
                raise ValueError(f"InferenceEngine needs the model's {head} (enable it in the config)")
        self.model = model.to(self.device).eval()
        self.config = getattr(model, "config", None)
        self.preprocess_mode = preprocess_mode
        self.target_size = target_size
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
        if getattr(self.model, "track_head", None) is None:
            raise ValueError("query_points given but the model has no track head (enable_track=False)")
        if self.config is not None and hasattr(self.config, "track_corr_levels"):
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
        frame_keys: Sequence[int] | None = None,
    ) -> Prediction:
        """Predict one window (see ``vggt_ros.core.types.Predictor``).

        ``query_points``: [N, 2] (x, y) pixels of frame 0 at the camera's own resolution; tracks are
        returned at the network resolution. ``frame_keys`` are accepted for the protocol (no
        per-frame cache yet) and only checked for length.
        """
        if frame_keys is not None and len(frame_keys) != len(images):
            raise ValueError(f"{len(frame_keys)} frame_keys for {len(images)} images")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        images_u8, infos = preprocess_images_uint8(images, self.preprocess_mode, self.target_size)
        S, H, W = images_u8.shape[:3]
        queries = None if query_points is None else self._query_tensor(query_points, infos[0], (H, W))
        timings["preprocess"] = time.perf_counter() - t0

        t1 = time.perf_counter()
        try:
            x = uint8_to_network_tensor(images_u8).to(self.device, non_blocking=True)
            q = None if queries is None or len(queries) == 0 else torch.from_numpy(queries).to(self.device)
            with torch.inference_mode(), torch.autocast(device_type=self.device.type, dtype=self.dtype,
                                                        enabled=self.autocast_enabled):
                out = self.model(x, query_points=q)
            self._sync()
            timings["forward"] = time.perf_counter() - t1
            t2 = time.perf_counter()
            pred = self._to_prediction(out, images_u8, infos, queries)
        except _OOM_ERRORS as exc:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            raise InferenceOutOfMemory(
                f"out of memory running VGGT on {S} frames of {W}x{H} px ({self.dtype}) on {self.device}; "
                "use fewer frames per window") from exc
        timings["postprocess"] = time.perf_counter() - t2
        timings["total"] = time.perf_counter() - t0
        pred.timings = timings
        return pred

    @staticmethod
    def _numpy(t: torch.Tensor) -> np.ndarray:
        return t[0].detach().float().cpu().numpy()

    def _to_prediction(self, out: dict[str, Any], images_u8: np.ndarray, infos, queries) -> Prediction:
        S, H, W = images_u8.shape[:3]
        extrinsics, intrinsics = pose_encoding_to_extri_intri(out["pose_enc"].float(), (H, W))
        pred = Prediction(
            extrinsics=self._numpy(extrinsics),
            intrinsics=self._numpy(intrinsics),
            depth=self._numpy(out["depth"][..., 0]),
            depth_conf=self._numpy(out["depth_conf"]),
            preprocess=list(infos),
            images=images_u8,
        )
        if "world_points" in out:
            pred.world_points = self._numpy(out["world_points"])
            pred.world_points_conf = self._numpy(out["world_points_conf"])
        if queries is not None:
            pred.query_points = queries
            if "track" in out:
                pred.tracks = self._numpy(out["track"])
                pred.track_vis = self._numpy(out["vis"])
                pred.track_conf = self._numpy(out["conf"])
            else:  # zero queries: nothing to track, keep the shapes consistent
                pred.tracks = np.zeros((S, 0, 2), np.float32)
                pred.track_vis = np.zeros((S, 0), np.float32)
                pred.track_conf = np.zeros((S, 0), np.float32)
        return pred
