"""What a predictor returns for one window of frames, shared by the VGGT engine and the oracle.

Kept free of torch and ROS so the streaming core, the node and the bag tools can all import it.

Conventions (VGGT's, see the model spec section 7):
* Window frame = the OpenCV optical frame of the window's first image (x right, y down, z forward).
* Units are the predictor's own: VGGT normalises every window to an arbitrary scale, so depth,
  points and translations of one window share one unknown scale factor.
* Pixel convention: integer pixel index (u = column, v = row, pixel centres at integers).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class PreprocessInfo:
    """How one original image was mapped to the network input, so results can be mapped back.

    A point at continuous *edge* coordinates (x, y) of the original image (0 = left/top edge of the
    first pixel, so pixel centre u sits at x = u + 0.5) lands at network edge coordinates
    ``x_net = x * scale_xy[0] + offset_xy[0]`` and ``y_net = y * scale_xy[1] + offset_xy[1]``.
    ``offset`` is negative for a crop (rows removed above) and positive for padding.
    """

    original_hw: tuple[int, int]
    network_hw: tuple[int, int]
    scale_xy: tuple[float, float]
    offset_xy: tuple[float, float]

    def network_to_original_pixels(self, uv: np.ndarray) -> np.ndarray:
        """Map integer-centred network pixel coordinates ``[..., 2]`` (u, v) to the original image."""
        uv = np.asarray(uv, dtype=np.float64)
        s = np.asarray(self.scale_xy)
        o = np.asarray(self.offset_xy)
        return (uv + 0.5 - o) / s - 0.5

    def original_to_network_pixels(self, uv: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`network_to_original_pixels`."""
        uv = np.asarray(uv, dtype=np.float64)
        s = np.asarray(self.scale_xy)
        o = np.asarray(self.offset_xy)
        return (uv + 0.5) * s + o - 0.5

    def intrinsics_to_original(self, K_net: np.ndarray) -> np.ndarray:
        """Pinhole intrinsics ``[..., 3, 3]`` at the network size -> at the original resolution."""
        K = np.array(K_net, dtype=np.float64, copy=True)
        sx, sy = self.scale_xy
        ox, oy = self.offset_xy
        K[..., 0, 0] = K_net[..., 0, 0] / sx
        K[..., 1, 1] = K_net[..., 1, 1] / sy
        K[..., 0, 2] = (K_net[..., 0, 2] + 0.5 - ox) / sx - 0.5
        K[..., 1, 2] = (K_net[..., 1, 2] + 0.5 - oy) / sy - 0.5
        return K

    def intrinsics_to_network(self, K_orig: np.ndarray) -> np.ndarray:
        """Pinhole intrinsics at the original resolution -> at the network size."""
        K = np.array(K_orig, dtype=np.float64, copy=True)
        sx, sy = self.scale_xy
        ox, oy = self.offset_xy
        K[..., 0, 0] = K_orig[..., 0, 0] * sx
        K[..., 1, 1] = K_orig[..., 1, 1] * sy
        K[..., 0, 2] = (K_orig[..., 0, 2] + 0.5) * sx + ox - 0.5
        K[..., 1, 2] = (K_orig[..., 1, 2] + 0.5) * sy + oy - 0.5
        return K

    def valid_network_box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) network pixels that show image content (excludes padding), x1/y1 exclusive."""
        h0, w0 = self.original_hw
        hn, wn = self.network_hw
        x0 = max(0, int(np.ceil(self.offset_xy[0] - 1e-9)))
        y0 = max(0, int(np.ceil(self.offset_xy[1] - 1e-9)))
        x1 = min(wn, int(np.floor(w0 * self.scale_xy[0] + self.offset_xy[0] + 1e-9)))
        y1 = min(hn, int(np.floor(h0 * self.scale_xy[1] + self.offset_xy[1] + 1e-9)))
        return x0, y0, x1, y1


@dataclass
class Prediction:
    """Predictions for one window of S frames at the network resolution H x W (numpy, float32).

    extrinsics: [S, 3, 4] camera-from-window (OpenCV), X_cam = R X_win + t.
    intrinsics: [S, 3, 3] at the network resolution, principal point (W/2, H/2) for VGGT.
    depth: [S, H, W] z-depth in the frame's camera, window units; depth_conf: [S, H, W] (>= 1 for VGGT,
    larger = more reliable; the oracle gives its own positive values).
    world_points / world_points_conf: [S, H, W, 3] / [S, H, W] from the point head, optional.
    images: [S, H, W, 3] uint8 RGB network input (for colouring points), optional.
    tracks: [S, N, 2] pixel (x, y) per frame of the query points given in frame 0; track_vis and
    track_conf: [S, N] probabilities; query_points: [N, 2]; all optional.
    preprocess: one PreprocessInfo per frame (maps back to each camera's own resolution).
    descriptors: [S, D] one L2-normalised global descriptor per frame (cosine = dot product), for
    loop-closure candidates; VGGT pools its DINOv2 patch tokens (no extra model); optional.
    timings: seconds spent in named stages (for diagnostics), free-form.
    """

    extrinsics: np.ndarray
    intrinsics: np.ndarray
    depth: np.ndarray
    depth_conf: np.ndarray
    preprocess: list[PreprocessInfo]
    world_points: np.ndarray | None = None
    world_points_conf: np.ndarray | None = None
    images: np.ndarray | None = None
    tracks: np.ndarray | None = None
    track_vis: np.ndarray | None = None
    track_conf: np.ndarray | None = None
    query_points: np.ndarray | None = None
    descriptors: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.extrinsics.shape[0])

    @property
    def network_hw(self) -> tuple[int, int]:
        return int(self.depth.shape[1]), int(self.depth.shape[2])
