"""Turn camera images (numpy arrays) into VGGT network input, bit-exact with the official loader.

The official ``load_and_preprocess_images`` reads files with PIL; here the input is already decoded
(e.g. from ``sensor_msgs/Image``), so this module reproduces every step on arrays: RGBA composited
over white, greyscale replicated, PIL bicubic resize on uint8 (needed for byte parity: torch/OpenCV
resamplers differ by several levels), centre crop or white padding, and padding of mixed sizes to a
common canvas. Each image also gets a :class:`PreprocessInfo` so that predictions can be mapped back
to the camera's own pixels and intrinsics.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from vggt_ros.prediction import PreprocessInfo

logger = logging.getLogger(__name__)

PATCH_SIZE = 14
MODES = ("crop", "pad")


def _check_mode_and_size(mode: str, target_size: int) -> None:
    if mode not in MODES:
        raise ValueError(f"preprocess mode must be one of {MODES}, got {mode!r}")
    if isinstance(target_size, bool) or not isinstance(target_size, (int, np.integer)) or target_size <= 0 \
            or target_size % PATCH_SIZE:
        raise ValueError(
            f"target_size must be a positive multiple of the patch size {PATCH_SIZE}, got {target_size!r}")


def _resized_hw(original_hw: tuple[int, int], mode: str, target_size: int) -> tuple[int, int]:
    """New (h, w) before crop/pad, with the official expression order and round-half-to-even."""
    h0, w0 = original_hw
    if mode == "pad" and h0 > w0:
        new_h = target_size
        new_w = round(w0 * (new_h / h0) / PATCH_SIZE) * PATCH_SIZE
    else:
        new_w = target_size
        new_h = round(h0 * (new_w / w0) / PATCH_SIZE) * PATCH_SIZE
    if new_h <= 0 or new_w <= 0:
        raise ValueError(
            f"image of {w0}x{h0} (WxH) is too elongated: it would be resized to {new_w}x{new_h} "
            f"with target_size {target_size} ({mode} mode)")
    return new_h, new_w


def _single_layout(original_hw: tuple[int, int], mode: str, target_size: int):
    """(resized_hw, network_hw, crop_top, pad_top, pad_left) for one image on its own."""
    new_h, new_w = _resized_hw(original_hw, mode, target_size)
    crop_top = pad_top = pad_left = 0
    net_h, net_w = new_h, new_w
    if mode == "crop":
        if new_h > target_size:
            crop_top = (new_h - target_size) // 2
            net_h = target_size
    else:
        pad_top = (target_size - new_h) // 2
        pad_left = (target_size - new_w) // 2
        net_h = net_w = target_size
    return (new_h, new_w), (net_h, net_w), crop_top, pad_top, pad_left


def preprocess_info_for(
    original_hw: tuple[int, int],
    mode: str = "crop",
    target_size: int = 518,
    canvas_hw: tuple[int, int] | None = None,
) -> PreprocessInfo:
    """Geometry of the preprocessing of one image size, without touching pixels.

    Cheap enough to call per frame in the streaming core. ``canvas_hw`` is the common size of a
    mixed-size call (each image is then padded with white to it, floor half before); ``None`` means
    the image's own network size.
    """
    _check_mode_and_size(mode, target_size)
    h0, w0 = int(original_hw[0]), int(original_hw[1])
    if h0 <= 0 or w0 <= 0:
        raise ValueError(f"original_hw must be positive, got {original_hw}")
    (new_h, new_w), (net_h, net_w), crop_top, pad_top, pad_left = _single_layout((h0, w0), mode, target_size)
    off_x = float(pad_left)
    off_y = float(pad_top - crop_top)
    if canvas_hw is not None:
        ch, cw = int(canvas_hw[0]), int(canvas_hw[1])
        if ch < net_h or cw < net_w:
            raise ValueError(f"canvas {canvas_hw} is smaller than the image's network size {(net_h, net_w)}")
        off_y += (ch - net_h) // 2
        off_x += (cw - net_w) // 2
        net_h, net_w = ch, cw
    return PreprocessInfo(
        original_hw=(h0, w0),
        network_hw=(net_h, net_w),
        scale_xy=(new_w / w0, new_h / h0),
        offset_xy=(off_x, off_y),
    )


def to_rgb_uint8(image: np.ndarray, index: int = 0) -> np.ndarray:
    """HxWx3 uint8 RGB from HxWx3 RGB, HxWx4 RGBA (over white, as PIL alpha_composite) or greyscale."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image {index}: expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"image {index}: expected dtype uint8, got {image.dtype} (shape {image.shape})")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        rgb = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 3:
        rgb = image
    elif image.ndim == 3 and image.shape[2] == 4:
        c = image[:, :, :3].astype(np.uint32)
        a = image[:, :, 3:4].astype(np.uint32)
        # floor((c*a + 255*(255-a)) / 255 + 0.5) in exact integer arithmetic.
        n = c * a + 255 * (255 - a)
        rgb = ((2 * n + 255) // 510).astype(np.uint8)
    else:
        raise ValueError(
            f"image {index}: expected HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA), got shape {image.shape}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"image {index}: zero-size image of shape {image.shape}")
    return np.ascontiguousarray(rgb)


def preprocess_images_uint8(
    images: Sequence[np.ndarray], mode: str = "crop", target_size: int = 518
) -> tuple[np.ndarray, list[PreprocessInfo]]:
    """Like :func:`preprocess_images` but returns the network input as uint8 ``[S, H, W, 3]``.

    The official float input is exactly this divided by 255 (white padding is 255), so the engine
    keeps the uint8 copy for colouring points without a lossy round trip.
    """
    _check_mode_and_size(mode, target_size)
    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    if images is None or len(images) == 0:
        raise ValueError("preprocess_images needs at least one image, got an empty sequence")

    outputs: list[np.ndarray] = []
    for i, image in enumerate(images):
        rgb = to_rgb_uint8(image, i)
        h0, w0 = rgb.shape[:2]
        layout = _single_layout((h0, w0), mode, target_size)
        (new_h, new_w), (net_h, net_w), crop_top, pad_top, pad_left = layout
        if (new_h, new_w) == (h0, w0):
            resized = rgb
        else:
            pil = Image.fromarray(rgb)  # HxWx3 uint8 -> mode "RGB"
            resized = np.asarray(pil.resize((new_w, new_h), Image.Resampling.BICUBIC))
        if mode == "crop":
            out = resized[crop_top:crop_top + net_h]
        else:
            out = np.full((net_h, net_w, 3), 255, dtype=np.uint8)
            out[pad_top:pad_top + new_h, pad_left:pad_left + new_w] = resized
        outputs.append(out)

    shapes = {o.shape[:2] for o in outputs}
    canvas_hw = None
    if len(shapes) > 1:
        canvas_hw = (max(s[0] for s in shapes), max(s[1] for s in shapes))
        logger.warning("preprocess_images: images of different network sizes %s; "
                       "padding all to %s with white", sorted(shapes), canvas_hw)
        padded = []
        for out in outputs:
            h, w = out.shape[:2]
            top, left = (canvas_hw[0] - h) // 2, (canvas_hw[1] - w) // 2
            canvas = np.full((canvas_hw[0], canvas_hw[1], 3), 255, dtype=np.uint8)
            canvas[top:top + h, left:left + w] = out
            padded.append(canvas)
        outputs = padded

    infos = [preprocess_info_for(to_hw(im), mode, target_size, canvas_hw) for im in images]
    return np.stack(outputs, axis=0), infos


def to_hw(image: np.ndarray) -> tuple[int, int]:
    return int(image.shape[0]), int(image.shape[1])


def uint8_to_network_tensor(images_u8: np.ndarray) -> torch.Tensor:
    """``[S, H, W, 3]`` uint8 -> float32 ``[S, 3, H, W]`` in [0, 1], exactly as torchvision ToTensor."""
    # numpy: same IEEE float32 division as ToTensor, and far cheaper than small torch CPU ops.
    chw = np.ascontiguousarray(np.asarray(images_u8).transpose(0, 3, 1, 2)).astype(np.float32)
    chw /= np.float32(255.0)
    return torch.from_numpy(chw)


def preprocess_images(
    images: Sequence[np.ndarray], mode: str = "crop", target_size: int = 518
) -> tuple[torch.Tensor, list[PreprocessInfo]]:
    """Official VGGT preprocessing of decoded images -> (float32 ``[S, 3, H, W]`` in [0, 1], infos).

    ``images``: HxWx3 uint8 RGB (convert BGR first), HxWx4 RGBA, HxW / HxWx1 greyscale.
    ``mode``: "crop" (width -> target, centre-crop height above target) or "pad" (long side ->
    target, white padding to a square). Mixed network sizes are padded to the largest with a warning.
    """
    images_u8, infos = preprocess_images_uint8(images, mode, target_size)
    return uint8_to_network_tensor(images_u8), infos
