"""A "twin rooms" sequence: a corridor whose content repeats every TWIN_PERIOD metres.

Why: appearance-based loop detection proposes a loop whenever two places look alike. Here the camera
drives straight down a corridor built from identical cells, so the second half of the sequence shows
(nearly) the same images as the first half while being TWIN_PERIOD metres further on. A loop closure
that trusts appearance alone would fold the two halves together; geometric checks (odometry prior,
relative pose consistency) must reject it.

Geometry (scene frame, z up): the corridor runs along +x, 3 m wide (|y| <= 1.5) and 3 m high. Every
cell ``k`` (``x`` in ``[k P, (k + 1) P]``, k = -1..2) has its own floor, ceiling and wall slabs, boxes
and posters, all placed relative to the cell start; textures are fixed to each object's own frame, so
cell ``k + 1`` is cell ``k`` shifted by ``P`` pixel for pixel. The camera moves along +x and looks
TWIN_YAW_DEG to the right of its travel at the wall 1.5 m away, so a view spans less than ``P`` of the
corridor: the views from ``x`` and ``x + P`` see the same content. A closed outer box behind the slabs
keeps every pixel's depth valid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from vggt_ros.sim.raycaster import Box, Scene
from vggt_ros.sim.sequences import SyntheticSequence, default_intrinsics, frame_stamps, look_at, world_poses

TWIN_PERIOD = 5.0  # metres between twin places
TWIN_CELLS = (-1, 0, 1, 2)  # cells built; the camera travels over cells 0 and 1
TWIN_YAW_DEG = 55.0  # to the right of travel: the view reaches at most ~3.6 m ahead
CORRIDOR_HALF_WIDTH = 1.5
CORRIDOR_HEIGHT = 3.0
_SLAB = 0.01  # half thickness of floor / wall slabs (no zero-thickness quads: no face-sign flicker)
_OVERLAP = 1e-3  # neighbouring cells' slabs overlap by this much, so no ray slips between them


def _yaw(deg: float) -> np.ndarray:
    return Rotation.from_euler("z", deg, degrees=True).as_matrix()


def _cell_objects(x0: float, seed: int) -> list[Box]:
    """Objects of the cell starting at ``x0``; the same list (shifted) for every cell."""
    P, w, h, s = TWIN_PERIOD, CORRIDOR_HALF_WIDTH, CORRIDOR_HEIGHT, _SLAB
    hx = P / 2 + _OVERLAP
    cx = x0 + P / 2
    base = seed * 100
    objs = [
        Box(centre=[cx, 0.0, -s], half_size=[hx, w, s], color=(0.62, 0.60, 0.55), checker_size=0.4,
            wavelength=1.1, seed=base + 1, name="floor"),
        Box(centre=[cx, 0.0, h + s], half_size=[hx, w, s], color=(0.80, 0.80, 0.78), checker_size=0.6,
            wavelength=1.7, seed=base + 2, name="ceiling"),
        Box(centre=[cx, -w - s, h / 2], half_size=[hx, s, h / 2], color=(0.75, 0.70, 0.62), checker_size=0.5,
            wavelength=1.3, seed=base + 3, name="right_wall"),
        Box(centre=[cx, w + s, h / 2], half_size=[hx, s, h / 2], color=(0.68, 0.72, 0.76), checker_size=0.5,
            wavelength=1.3, seed=base + 4, name="left_wall"),
    ]
    # Boxes along the walls (local x, y, half size, yaw, colour); the camera path (y ~ 0) stays clear.
    layout = [
        (0.8, -1.15, (0.35, 0.30, 0.40), 10.0, (0.85, 0.35, 0.30)),
        (2.2, -1.25, (0.22, 0.22, 0.95), 0.0, (0.30, 0.45, 0.85)),
        (3.8, -1.05, (0.45, 0.35, 0.30), -25.0, (0.35, 0.75, 0.40)),
        (4.6, -1.30, (0.15, 0.15, 0.60), 30.0, (0.85, 0.80, 0.30)),
        (2.9, 1.15, (0.40, 0.30, 0.50), 15.0, (0.70, 0.40, 0.80)),
    ]
    for i, (lx, ly, hs, yaw_deg, col) in enumerate(layout):
        objs.append(Box(centre=[x0 + lx, ly, hs[2]], half_size=hs, rotation=_yaw(yaw_deg), color=col,
                        checker_size=0.1 + 0.03 * i, wavelength=0.3 + 0.07 * i, seed=base + 10 + i,
                        name=f"box{i}"))
    tilt = Rotation.from_euler("zyx", [35.0, 15.0, 10.0], degrees=True).as_matrix()
    objs.append(Box(centre=[x0 + 3.8, -1.05, 0.72], half_size=[0.2, 0.14, 0.1], rotation=tilt,
                    color=(0.9, 0.6, 0.2), checker_size=0.08, wavelength=0.2, seed=base + 30, name="tilted"))
    # Posters: thin boxes just off the walls (local x, z, half width, half height, wall side, colour).
    posters = [
        (1.6, 1.7, 0.45, 0.30, -1, (0.20, 0.30, 0.60)),
        (3.1, 1.4, 0.30, 0.45, -1, (0.60, 0.20, 0.35)),
        (4.4, 2.0, 0.35, 0.25, -1, (0.20, 0.60, 0.30)),
        (1.0, 1.5, 0.50, 0.35, 1, (0.70, 0.60, 0.20)),
    ]
    for j, (lx, z, hw, hh, side, col) in enumerate(posters):
        objs.append(Box(centre=[x0 + lx, side * (w - 0.02), z], half_size=[hw, 0.005, hh], color=col,
                        checker_size=0.1, wavelength=0.25, seed=base + 40 + j, name=f"poster{j}"))
    return objs


def twin_scene(seed: int = 0) -> Scene:
    """The periodic corridor (cells TWIN_CELLS), enclosed in an outer box so every ray hits something."""
    P = TWIN_PERIOD
    x_min, x_max = min(TWIN_CELLS) * P, (max(TWIN_CELLS) + 1) * P
    outer = Box(centre=[(x_min + x_max) / 2, 0.0, CORRIDOR_HEIGHT / 2],
                half_size=[(x_max - x_min) / 2 + 1.0, CORRIDOR_HALF_WIDTH + 0.5, CORRIDOR_HEIGHT / 2 + 0.5],
                color=(0.5, 0.5, 0.5), seed=seed * 100 + 99, name="outer")
    objs = [outer]
    for k in TWIN_CELLS:
        objs.extend(_cell_objects(k * P, seed))
    return Scene(objects=objs)


def twin_pose(x: float) -> np.ndarray:
    """``scene_T_camera`` at distance ``x`` along the corridor; periodic in TWIN_PERIOD (twins agree).

    A gentle weave, bob and yaw wobble (all with period TWIN_PERIOD or a divisor) keep the motion
    from being a perfect line while preserving the twin property exactly.
    """
    ph = 2 * np.pi * x / TWIN_PERIOD
    eye = np.array([x, 0.08 * np.sin(2 * ph), 1.4 + 0.03 * np.sin(3 * ph)])
    yaw = np.radians(-TWIN_YAW_DEG + 3.0 * np.sin(ph))
    return look_at(eye, eye + np.array([np.cos(yaw), np.sin(yaw), -0.2]))


@dataclass
class TwinSequence(SyntheticSequence):
    """A :class:`SyntheticSequence` over two periods of the twin corridor.

    Frame ``i + twin_offset`` sees (nearly) the image of frame ``i`` from ``period_m`` metres further on.
    """

    period_m: float = TWIN_PERIOD

    @property
    def twin_offset(self) -> int:
        """Frames between a place and its twin (``len // 2``)."""
        return len(self) // 2


def make_twin_sequence(
    num_frames: int,
    height: int = 480,
    width: int = 640,
    fps: float = 30.0,
    seed: int = 0,
    hfov_deg: float = 65.0,
    cache: bool = True,
) -> TwinSequence:
    """Drive straight down the twin corridor over two periods (10 m) in ``num_frames`` frames.

    Frame ``i`` is at ``x = i * P / (num_frames // 2)``, so frames ``i`` and ``i + num_frames // 2`` are
    exactly one period P = 5 m apart (0.5 m/s when ``num_frames = 20 * fps``). Same stamps and world
    convention (first camera's optical frame) as :func:`make_sequence`.
    """
    if num_frames < 2:
        raise ValueError(f"num_frames must be >= 2 (a place and its twin), got {num_frames}")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    step = TWIN_PERIOD / (num_frames // 2)
    scene_T_cam = np.stack([twin_pose(i * step) for i in range(num_frames)])
    world_T_camera, scene_T_world = world_poses(scene_T_cam)
    return TwinSequence(
        kind="twin", scene=twin_scene(seed), K=default_intrinsics(height, width, hfov_deg), height=height,
        width=width, fps=fps, stamps_ns=frame_stamps(num_frames, fps), world_T_camera=world_T_camera,
        scene_T_world=scene_T_world, cache=cache,
    )
