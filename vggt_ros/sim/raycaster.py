"""A small vectorised numpy ray caster for synthetic test scenes (no OpenGL, no per-pixel loops).

Why: the streaming core, the oracle and the metrics need images with *exact* ground-truth depth and
poses, and textures rich enough for optical flow / VGGT to latch onto, on any machine (CI included).

Scene model: every object is an oriented box (centre, half sizes, rotation ``world_R_box``). A box
with a zero half size along one axis is a finite plane (quad); a box with infinite half sizes along
two axes is an infinite plane. Rays that start inside a box hit its inner walls, so a single large box
makes a room. Textures are procedural and defined on the surface (in metres along the face), so the
same surface point has the same colour from every view (no lighting that depends on the viewer).

Camera convention: pinhole, OpenCV optical frame (x right, y down, z forward), integer pixel centres
(pixel (u, v) looks along ``K^-1 [u, v, 1]``). ``world_T_camera`` maps camera coordinates to world.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)

_EPS_T = 1e-6
BACKGROUND_RGB = (0, 0, 0)


@dataclass
class Box:
    """An oriented, textured box (or quad / plane when half sizes are 0 / inf along some axes).

    centre: [3] world position; half_size: [3] half extents along the box axes (0 = flat quad,
    inf = unbounded); rotation: 3x3 ``world_R_box``; color: RGB in [0, 1].
    texture_amplitude: 0 gives a flat colour (useful for tests), 1 the full procedural texture.
    checker_size / wavelength: texture feature sizes in metres. seed: per-object noise seed.
    """

    centre: np.ndarray
    half_size: np.ndarray
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    color: tuple[float, float, float] = (0.7, 0.7, 0.7)
    texture_amplitude: float = 1.0
    checker_size: float = 0.25
    wavelength: float = 0.6
    seed: int = 0
    name: str = ""

    def __post_init__(self) -> None:
        self.centre = np.asarray(self.centre, dtype=np.float64).reshape(3)
        self.half_size = np.asarray(self.half_size, dtype=np.float64).reshape(3)
        self.rotation = np.asarray(self.rotation, dtype=np.float64).reshape(3, 3)
        if np.any(self.half_size < 0) or np.any(np.isnan(self.half_size)):
            raise ValueError(f"Box half sizes must be >= 0, got {self.half_size}")
        if not np.allclose(self.rotation.T @ self.rotation, np.eye(3), atol=1e-6):
            raise ValueError("Box rotation must be orthonormal")


def plane(
    point: np.ndarray,
    normal: np.ndarray,
    half_extent: tuple[float, float] = (np.inf, np.inf),
    **kwargs: object,
) -> Box:
    """A (finite or infinite) plane through ``point`` with ``normal``, as a zero-thickness box."""
    n = np.asarray(normal, dtype=np.float64)
    n = n / np.linalg.norm(n)
    helper = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    a = np.cross(n, helper)
    a /= np.linalg.norm(a)
    b = np.cross(n, a)
    rot = np.stack([a, b, n], axis=1)
    return Box(centre=point, half_size=np.array([half_extent[0], half_extent[1], 0.0]), rotation=rot,
               **kwargs)  # type: ignore[arg-type]


@dataclass
class Scene:
    """A list of objects plus the colour of rays that hit nothing (their depth is NaN)."""

    objects: list[Box]
    background_rgb: tuple[int, int, int] = BACKGROUND_RGB


def _ray_grid(K: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame ray components with z = 1 (the ray parameter then equals z-depth).

    Returns x [H, W] and y [H, 1] so that ray (u, v) = (x[v, u], y[v], 1); skew is supported.
    """
    Kinv = np.linalg.inv(np.asarray(K, dtype=np.float64))
    u = np.arange(width, dtype=np.float64)
    v = np.arange(height, dtype=np.float64)
    x = Kinv[0, 0] * u[None, :] + Kinv[0, 1] * v[:, None] + Kinv[0, 2]
    y = (Kinv[1, 1] * v + Kinv[1, 2])[:, None]
    return x, y


def _screen_roi(box: Box, K: np.ndarray, world_T_camera: np.ndarray, height: int, width: int) -> tuple[
        int, int, int, int]:
    """Pixel rectangle (v0, v1, u0, u1) that can contain the box; the full image when unsure."""
    full = (0, height, 0, width)
    h = box.half_size
    if not np.all(np.isfinite(h)):
        return full
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    corners = box.centre + (signs * h) @ box.rotation.T
    pc = (corners - world_T_camera[:3, 3]) @ world_T_camera[:3, :3]
    if np.any(pc[:, 2] <= 1e-3):
        return full
    uvw = pc @ np.asarray(K, dtype=np.float64).T
    uv = uvw[:, :2] / uvw[:, 2:3]
    u0 = max(0, int(np.floor(uv[:, 0].min())) - 1)
    u1 = min(width, int(np.ceil(uv[:, 0].max())) + 2)
    v0 = max(0, int(np.floor(uv[:, 1].min())) - 1)
    v1 = min(height, int(np.ceil(uv[:, 1].max())) + 2)
    return v0, v1, u0, u1


_NOISE_TABLES: dict[int, np.ndarray] = {}


def _noise_table(seed: int) -> np.ndarray:
    """Per-seed 256x256 lattice of random values (the texture repeats every 256 cells)."""
    tab = _NOISE_TABLES.get(seed)
    if tab is None:
        tab = np.random.default_rng(seed & 0xFFFFFFFF).random((256, 256), dtype=np.float32)
        _NOISE_TABLES[seed] = tab
    return tab


def _value_noise(a: np.ndarray, b: np.ndarray, cell: float, seed: int) -> np.ndarray:
    """Smooth (bilinear, smoothstep-weighted) value noise in [0, 1) on a lattice of ``cell`` metres."""
    tab = _noise_table(seed).reshape(-1)
    x = a * np.float32(1.0 / cell)
    y = b * np.float32(1.0 / cell)
    x0 = np.floor(x)
    y0 = np.floor(y)
    fx = x - x0
    fy = y - y0
    fx = fx * fx * (3 - 2 * fx)
    fy = fy * fy * (3 - 2 * fy)
    ix = (x0.astype(np.int32) & 255) << 8
    iy = y0.astype(np.int32) & 255
    ix1 = (ix + 256) & 0xFF00
    iy1 = (iy + 1) & 255
    n00 = tab.take(ix | iy)
    n10 = tab.take(ix1 | iy)
    n01 = tab.take(ix | iy1)
    n11 = tab.take(ix1 | iy1)
    return (n00 + (n10 - n00) * fx) * (1 - fy) + (n01 + (n11 - n01) * fx) * fy


def surface_color(box: Box, p_local: np.ndarray) -> np.ndarray:
    """Texture colour (float32 RGB in [0, 1], [N, 3]) of surface points given in the box frame.

    The face is the axis on which the point lies (| |p| - half | smallest); the texture runs over
    the two other axes in metres, so it is fixed to the surface and identical from every view.
    """
    p_local = np.asarray(p_local, dtype=np.float32)
    h = np.where(np.isfinite(box.half_size), box.half_size, np.inf).astype(np.float32)
    off = np.abs(np.abs(p_local) - h)
    axis = np.argmin(off, axis=1)
    px, py, pz = p_local[:, 0], p_local[:, 1], p_local[:, 2]
    on = np.choose(axis, (px, py, pz))
    face = (axis * 2 + (on >= 0)).astype(np.float32)
    # Texture coordinates: the two remaining axes (cyclic order), shifted per face so that the six
    # faces of a box do not share one pattern.
    a = np.choose(axis, (py, pz, px)) + face * np.float32(3.7)
    b = np.choose(axis, (pz, px, py)) + face * np.float32(1.9)
    amp = np.float32(box.texture_amplitude)
    cs = np.float32(1.0 / box.checker_size)
    checker = ((np.floor(a * cs) + np.floor(b * cs)) % 2) * 2 - 1
    w = np.float32(2 * np.pi / box.wavelength)
    phase = np.float32(0.37 * box.seed)
    sinus = np.sin(a * w + phase) * np.sin(b * (w / np.float32(0.7)) + 2 * phase)
    seed = int(box.seed) * 13
    noise = (_value_noise(a, b, 0.06, seed + 1) - 0.5) * 0.6 + (_value_noise(b, a, 0.2, seed + 2) - 0.5) * 0.4
    # Per-face brightness so box edges stay visible.
    face_gain = 1 - np.float32(0.05) * face * (amp > 0)
    pattern = np.float32(0.18) * checker + np.float32(0.12) * sinus + np.float32(0.45) * noise
    lum = (1 + amp * pattern) * face_gain
    col = np.asarray(box.color, dtype=np.float32)[None, :] * lum[:, None]
    # A faint colour shift, so the channels are not all proportional.
    col[:, 2] += amp * np.float32(0.15) * sinus * checker
    return np.clip(col, 0.0, 1.0)


def render(
    scene: Scene,
    K: np.ndarray,
    world_T_camera: np.ndarray,
    height: int,
    width: int,
    return_ids: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ray-cast ``scene`` from a pinhole camera.

    Returns ``rgb`` (HxWx3 uint8), ``depth`` (HxW float32 z-depth in metres, NaN where nothing is
    hit) and, with ``return_ids``, the index of the object hit per pixel (int32, -1 = nothing).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    T = np.asarray(world_T_camera, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"world_T_camera must be 4x4, got {T.shape}")
    xg, yg = _ray_grid(K, height, width)
    origin = T[:3, 3]
    best_t = np.full((height, width), np.inf, dtype=np.float32)
    best_id = np.full((height, width), -1, dtype=np.int32)
    for k, box in enumerate(scene.objects):
        v0, v1, u0, u1 = _screen_roi(box, K, T, height, width)
        if v1 <= v0 or u1 <= u0:
            continue
        x = xg[v0:v1, u0:u1].astype(np.float32)
        y = yg[v0:v1].astype(np.float32)
        M = box.rotation.T @ T[:3, :3]  # box_R_camera: local ray direction = M @ (x, y, 1)
        o = box.rotation.T @ (origin - box.centre)
        tnear = np.full(x.shape, -np.inf, dtype=np.float32)
        tfar = np.full(x.shape, np.inf, dtype=np.float32)
        for a in range(3):
            h = box.half_size[a]
            if not np.isfinite(h):
                continue  # unbounded along this axis: no slab constraint
            d = np.float32(M[a, 0]) * x + np.float32(M[a, 1]) * y + np.float32(M[a, 2])
            d[np.abs(d) < 1e-12] = 1e-12
            inv = np.float32(1.0) / d
            t1 = np.float32(-h - o[a]) * inv
            t2 = np.float32(h - o[a]) * inv
            np.maximum(tnear, np.minimum(t1, t2), out=tnear)
            np.minimum(tfar, np.maximum(t1, t2), out=tfar)
        t = np.where(tnear > _EPS_T, tnear, tfar)
        bt = best_t[v0:v1, u0:u1]
        closer = (tnear <= tfar) & (tfar > _EPS_T) & (t < bt)
        np.copyto(bt, t, where=closer)
        np.copyto(best_id[v0:v1, u0:u1], np.int32(k), where=closer)

    best_t = best_t.reshape(-1)
    best_id = best_id.reshape(-1)
    n = best_t.shape[0]
    d_world = np.empty((n, 3), dtype=np.float32)
    d_world[:] = T[:3, 2]
    d_world += np.broadcast_to(xg, (height, width)).reshape(-1, 1) * T[:3, 0]
    d_world += np.broadcast_to(yg, (height, width)).reshape(-1, 1) * T[:3, 1]
    rgb = np.empty((n, 3), dtype=np.float32)
    rgb[:] = np.asarray(scene.background_rgb, dtype=np.float32) / 255.0
    for k, box in enumerate(scene.objects):
        sel = np.nonzero(best_id == k)[0]
        if sel.size == 0:
            continue
        # p_local = R^T (origin + t d - centre), evaluated in float32 (sub-mm error is fine here).
        o_local = ((origin - box.centre) @ box.rotation).astype(np.float32)
        p_local = (d_world[sel] @ box.rotation.astype(np.float32)) * best_t[sel, None] + o_local
        rgb[sel] = surface_color(box, p_local)
    depth = np.where(best_id >= 0, best_t, np.nan).astype(np.float32).reshape(height, width)
    img = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8).reshape(height, width, 3)
    if return_ids:
        return img, depth, best_id.reshape(height, width)
    return img, depth


def project_points(K: np.ndarray, world_T_camera: np.ndarray, points_world: np.ndarray) -> tuple[
        np.ndarray, np.ndarray]:
    """Project world points [N, 3] to pixels [N, 2] (x, y) and their z-depth [N] in the camera."""
    T = np.asarray(world_T_camera, dtype=np.float64)
    p = np.asarray(points_world, dtype=np.float64).reshape(-1, 3)
    pc = (p - T[:3, 3]) @ T[:3, :3]
    z = pc[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uvw = pc @ np.asarray(K, dtype=np.float64).T
        uv = uvw[:, :2] / uvw[:, 2:3]
    return uv, z
