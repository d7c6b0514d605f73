"""Synthetic camera sequences with exact ground truth (poses, intrinsics, depth) for tests and demos.

Frames of reference:
* ``scene`` frame: where the room is built, z up (floor at z = 0), metres.
* ``world`` frame (what :attr:`SyntheticSequence.world_T_camera` uses): the OpenCV optical frame of
  the **first camera** of the sequence (x right, y down, z forward), i.e. VGGT's convention, so
  ground truth compares directly with the pipeline output. ``scene_T_world`` links the two.

Images are rendered lazily (and cached) so long sequences do not need all images in memory at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from vggt_ros.core.types import Frame
from vggt_ros.sim.raycaster import Box, Scene, plane, render

logger = logging.getLogger(__name__)

SEQUENCE_KINDS = ("forward", "orbit", "rotation", "static", "loop")
ROOM_SIZE = (10.0, 8.0, 3.0)  # x, y, z extents of the room (scene frame), metres
STAMP_START_NS = 1_000_000_000
# "loop": an ellipse in the object-free left part of the room (x < -2.1 m), one lap of LOOP_PERIMETER
# metres at LOOP_SPEED, so the last frames revisit the first ones (loop-closure tests).
LOOP_CENTRE = (-3.45, 0.0)
LOOP_SEMI_AXES = (1.05, 1.5)  # x, y before scaling to the exact perimeter
LOOP_PERIMETER = 8.0  # metres
LOOP_SPEED = 0.5  # m/s: one lap takes 16 s
LOOP_HEIGHT = 1.4  # metres (plus a 3 cm bob, three periods per lap)
LOOP_INWARD_YAW_DEG = 20.0


def room_scene(seed: int = 0) -> Scene:
    """A closed, fully textured room with boxes, a rotated box, a pillar and posters.

    Every ray from inside the room hits something, so every pixel has valid depth.
    """
    rng = np.random.default_rng(seed)
    lx, ly, lz = ROOM_SIZE
    objs: list[Box] = [
        Box(centre=[0, 0, lz / 2], half_size=[lx / 2, ly / 2, lz / 2], color=(0.75, 0.72, 0.66),
            checker_size=0.5, wavelength=1.3, seed=seed * 100 + 1, name="room"),
    ]

    def yaw(deg: float) -> np.ndarray:
        return Rotation.from_euler("z", deg, degrees=True).as_matrix()

    # Objects stay within ~2.1 m of the room centre (the orbit has radius 3 m) and away from the
    # forward path (y = -3.2) and the rotation spot.
    layout = [
        # centre xy, half size, yaw deg, colour
        ((0.0, 0.0), (0.45, 0.45, 0.45), 15.0, (0.85, 0.35, 0.30)),
        ((1.5, 0.9), (0.35, 0.6, 0.7), -20.0, (0.30, 0.55, 0.85)),
        ((-1.4, 1.0), (0.5, 0.3, 0.35), 40.0, (0.35, 0.75, 0.40)),
        ((-1.0, -1.3), (0.3, 0.3, 0.9), 0.0, (0.85, 0.80, 0.30)),
        ((1.2, -1.4), (0.4, 0.25, 0.25), 65.0, (0.70, 0.40, 0.80)),
        ((0.2, 1.9), (0.2, 0.2, 1.2), 0.0, (0.40, 0.80, 0.80)),
    ]
    for i, ((cx, cy), hs, yaw_deg, col) in enumerate(layout):
        jitter = rng.uniform(-0.05, 0.05, size=2)
        objs.append(Box(centre=[cx + jitter[0], cy + jitter[1], hs[2]], half_size=hs, rotation=yaw(yaw_deg),
                        color=col, checker_size=0.12 + 0.03 * i, wavelength=0.3 + 0.07 * i,
                        seed=seed * 100 + 10 + i, name=f"box{i}"))
    # A tilted box resting on another one, for non-axis-aligned geometry.
    tilt = Rotation.from_euler("zyx", [30.0, 20.0, 10.0], degrees=True).as_matrix()
    objs.append(Box(centre=[0.05, 0.0, 1.15], half_size=[0.2, 0.15, 0.1], rotation=tilt,
                    color=(0.9, 0.6, 0.2), checker_size=0.08, wavelength=0.2, seed=seed * 100 + 30,
                    name="tilted"))
    # Posters just in front of the walls (finite planes facing into the room).
    posters = [
        ((lx / 2 - 0.01, -1.0, 1.6), (-1, 0, 0), (1.2, 0.8), (0.2, 0.3, 0.6)),
        ((-lx / 2 + 0.01, 1.0, 1.5), (1, 0, 0), (1.0, 0.6), (0.6, 0.2, 0.3)),
        ((1.5, ly / 2 - 0.01, 1.4), (0, -1, 0), (1.5, 0.7), (0.2, 0.6, 0.3)),
        ((-1.0, -ly / 2 + 0.01, 1.5), (0, 1, 0), (1.3, 0.8), (0.7, 0.6, 0.2)),
    ]
    for j, (p, nrm, ext, col) in enumerate(posters):
        objs.append(plane(np.array(p), np.array(nrm, dtype=float), half_extent=ext, color=col,
                          checker_size=0.1, wavelength=0.25, seed=seed * 100 + 40 + j, name=f"poster{j}"))
    return Scene(objects=objs)


def look_at(
    eye: np.ndarray, target: np.ndarray, up: tuple[float, float, float] = (0.0, 0.0, 1.0)
) -> np.ndarray:
    """4x4 ``scene_T_camera`` of an OpenCV camera at ``eye`` looking at ``target`` (z forward, y down)."""
    eye = np.asarray(eye, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: viewing direction parallel to up")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z], axis=1)
    T[:3, 3] = eye
    return T


def default_intrinsics(height: int, width: int, hfov_deg: float = 65.0) -> np.ndarray:
    """Square-pixel pinhole intrinsics with the principal point at the true image centre."""
    f = (width / 2.0) / np.tan(np.radians(hfov_deg) / 2.0)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def _trajectory(kind: str, num_frames: int, fps: float, seed: int) -> np.ndarray:
    """``scene_T_camera`` [N, 4, 4] for a sequence kind (speeds are physical, per second)."""
    t = np.arange(num_frames) / float(fps)
    rng = np.random.default_rng(seed + 12345)
    poses = np.empty((num_frames, 4, 4))
    if kind == "forward":
        # Walk along +x at 0.8 m/s (capped at 5 m of travel), gently weaving and looking ahead.
        dur = max(t[-1], 1e-9)
        length = min(0.8 * dur, 5.0)
        s = t / dur * length if num_frames > 1 else t
        for i, si in enumerate(s):
            eye = np.array([-4.0 + si, -3.2 + 0.15 * np.sin(1.3 * si), 1.4 + 0.05 * np.sin(2.1 * si)])
            target = eye + np.array([1.0, 0.25 + 0.1 * np.sin(0.9 * si), -0.08])
            poses[i] = look_at(eye, target)
    elif kind == "orbit":
        # Orbit the room centre at radius 3 m, 30 deg/s (at most one full turn), looking inwards.
        dur = max(t[-1], 1e-9)
        sweep = min(np.radians(30.0) * dur, 2 * np.pi * (num_frames - 1) / num_frames)
        ang = -np.pi / 2 + (t / dur * sweep if num_frames > 1 else t)
        for i, a in enumerate(ang):
            eye = np.array([3.0 * np.cos(a), 3.0 * np.sin(a), 1.6])
            poses[i] = look_at(eye, np.array([0.0, 0.0, 0.6]))
    elif kind == "rotation":
        # Pure rotation in place: yaw sweep at 45 deg/s (at most one full turn), slight pitch.
        dur = max(t[-1], 1e-9)
        sweep = min(np.radians(45.0) * dur, 2 * np.pi * (num_frames - 1) / num_frames)
        yaws = np.radians(-70.0) + (t / dur * sweep if num_frames > 1 else t)
        eye = np.array([-3.0, 2.6, 1.3])
        for i, a in enumerate(yaws):
            target = eye + np.array([np.cos(a), np.sin(a), -0.1])
            poses[i] = look_at(eye, target)
    elif kind == "static":
        # Near-static: tiny seeded jitter (~1 mm, ~0.05 deg) around one pose.
        base = look_at(np.array([-3.0, -1.5, 1.5]), np.array([0.0, 0.0, 0.6]))
        for i in range(num_frames):
            d = np.eye(4)
            d[:3, :3] = Rotation.from_rotvec(rng.normal(0.0, np.radians(0.05), 3)).as_matrix()
            d[:3, 3] = rng.normal(0.0, 0.001, 3)
            poses[i] = base @ d if i > 0 else base
    elif kind == "loop":
        # One counter-clockwise lap (at most) at 0.5 m/s; a longer sequence slows down so that its last
        # frame closes the lap exactly, like "orbit" (here the last frame equals the first one).
        dur = max(t[-1], 1e-9)
        length = min(LOOP_SPEED * dur, LOOP_PERIMETER)
        s = t / dur * length if num_frames > 1 else t
        for i, si in enumerate(s):
            poses[i] = loop_pose(float(si))
    else:
        raise ValueError(f"unknown sequence kind {kind!r}; expected one of {SEQUENCE_KINDS}")
    return poses


def _loop_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(theta, arc length, semi axes) of the loop ellipse, scaled to exactly LOOP_PERIMETER metres."""
    theta = np.linspace(np.pi, 3 * np.pi, 4097)
    a, b = LOOP_SEMI_AXES
    pts = np.stack([a * np.cos(theta), b * np.sin(theta)], axis=1)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    scale = LOOP_PERIMETER / arc[-1]
    return theta, arc * scale, np.array([a, b]) * scale


_LOOP_TABLE = _loop_table()


def loop_pose(s: float) -> np.ndarray:
    """``scene_T_camera`` at arc length ``s`` metres along the "loop" (periodic in LOOP_PERIMETER).

    Starts on the flat left (wall-side) flank of the ellipse heading -y, so the views around the start
    change slowly and the closing frames see what the first ones saw; looks along the direction of
    travel yawed LOOP_INWARD_YAW_DEG towards the inside and slightly down.
    """
    theta_tab, arc_tab, (a, b) = _LOOP_TABLE
    s = float(s) % LOOP_PERIMETER
    th = float(np.interp(s, arc_tab, theta_tab))
    phase = 2 * np.pi * s / LOOP_PERIMETER
    eye = np.array([LOOP_CENTRE[0] + a * np.cos(th), LOOP_CENTRE[1] + b * np.sin(th),
                    LOOP_HEIGHT + 0.03 * np.sin(3 * phase)])
    heading = np.arctan2(b * np.cos(th), -a * np.sin(th)) + np.radians(LOOP_INWARD_YAW_DEG)
    return look_at(eye, eye + np.array([np.cos(heading), np.sin(heading), -0.12]))


@dataclass
class SyntheticFrame:
    """One rendered frame with its ground truth (world = first camera's optical frame)."""

    index: int
    stamp_ns: int
    rgb: np.ndarray
    depth: np.ndarray
    K: np.ndarray
    world_T_camera: np.ndarray


@dataclass
class SyntheticSequence:
    """A synthetic camera sequence; images are rendered on first access and cached.

    stamps_ns: [N] int64; world_T_camera: [N, 4, 4] float64 (world = first camera, OpenCV);
    scene_T_world: 4x4 (scene frame is z up); K: 3x3 at (height, width).
    """

    kind: str
    scene: Scene
    K: np.ndarray
    height: int
    width: int
    fps: float
    stamps_ns: np.ndarray
    world_T_camera: np.ndarray
    scene_T_world: np.ndarray
    cache: bool = True
    _cache: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return int(self.stamps_ns.shape[0])

    def render_frame(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(rgb uint8 HxWx3, depth float32 HxW metres) of frame ``i``."""
        if not 0 <= i < len(self):
            raise IndexError(f"frame index {i} out of range for {len(self)} frames")
        if i in self._cache:
            return self._cache[i]
        out = render(self.scene, self.K, self.scene_T_world @ self.world_T_camera[i], self.height,
                     self.width)
        if self.cache:
            self._cache[i] = out  # type: ignore[assignment]
        return out  # type: ignore[return-value]

    def __getitem__(self, i: int) -> SyntheticFrame:
        if i < 0:
            i += len(self)
        rgb, depth = self.render_frame(i)
        return SyntheticFrame(index=i, stamp_ns=int(self.stamps_ns[i]), rgb=rgb, depth=depth, K=self.K.copy(),
                              world_T_camera=self.world_T_camera[i].copy())

    def __iter__(self) -> Iterator[SyntheticFrame]:
        for i in range(len(self)):
            yield self[i]

    @property
    def rgb(self) -> np.ndarray:
        """All images [N, H, W, 3] uint8 (renders everything)."""
        return np.stack([self.render_frame(i)[0] for i in range(len(self))])

    @property
    def depth(self) -> np.ndarray:
        """All depth maps [N, H, W] float32 metres (renders everything)."""
        return np.stack([self.render_frame(i)[1] for i in range(len(self))])

    def index_of(self, stamp_ns: int) -> int:
        """Frame index of an exact stamp; KeyError if the stamp is not in the sequence."""
        idx = np.nonzero(self.stamps_ns == int(stamp_ns))[0]
        if idx.size == 0:
            raise KeyError(f"stamp {stamp_ns} ns is not in this {len(self)}-frame synthetic sequence")
        return int(idx[0])

    def ground_truth(self) -> Mapping[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Lazy mapping stamp_ns -> (world_T_camera 4x4, K 3x3, depth HxW metres), for the oracle."""
        return _SequenceGT(self)

    def to_frames(
        self,
        with_depth: bool = False,
        with_odometry: bool = False,
        frame_id: str = "camera_optical_frame",
        indices: range | list[int] | None = None,
    ) -> list[Frame]:
        """Frames as the stream would deliver them (intrinsics always set).

        with_depth sets ``metric_depth`` (RGB-D); with_odometry sets ``odometry_pose`` to the exact
        metric ``world_T_camera`` (an ideal external odometry).
        """
        out = []
        for i in indices if indices is not None else range(len(self)):
            rgb, depth = self.render_frame(i)
            out.append(Frame(
                stamp_ns=int(self.stamps_ns[i]), image=rgb, frame_id=frame_id, intrinsics=self.K.copy(),
                metric_depth=depth.copy() if with_depth else None,
                odometry_pose=self.world_T_camera[i].copy() if with_odometry else None,
            ))
        return out


class _SequenceGT(Mapping):
    def __init__(self, seq: SyntheticSequence) -> None:
        self._seq = seq
        self._index = {int(s): i for i, s in enumerate(seq.stamps_ns)}

    def __getitem__(self, stamp: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        i = self._index[int(stamp)]
        return self._seq.world_T_camera[i], self._seq.K, self._seq.render_frame(i)[1]

    def __iter__(self) -> Iterator[int]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


def world_poses(scene_T_camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(world_T_camera [N, 4, 4], scene_T_world 4x4): poses re-expressed in the first camera's frame.

    Shared by every synthetic sequence so all of them use the same world convention.
    """
    scene_T_world = scene_T_camera[0].copy()
    world_T_scene = np.linalg.inv(scene_T_world)
    world_T_camera = np.einsum("ij,njk->nik", world_T_scene, scene_T_camera)
    world_T_camera[0] = np.eye(4)
    return world_T_camera, scene_T_world


def frame_stamps(num_frames: int, fps: float) -> np.ndarray:
    """[N] int64 stamps: from 1 s, round(1e9 / fps) ns apart (the same clock for every sequence)."""
    step = int(round(1e9 / fps))
    return STAMP_START_NS + step * np.arange(num_frames, dtype=np.int64)


def make_sequence(
    kind: str,
    num_frames: int,
    height: int = 480,
    width: int = 640,
    fps: float = 30.0,
    seed: int = 0,
    hfov_deg: float = 65.0,
    cache: bool = True,
) -> SyntheticSequence:
    """Build a synthetic sequence in the textured room.

    kind: "forward" (walk forward, 0.8 m/s), "orbit" (radius 3 m around the room centre, looking in,
    30 deg/s), "rotation" (yaw sweep in place, 45 deg/s), "static" (tiny jitter), "loop" (one lap of an
    8 m ellipse at 0.5 m/s, 16 s; the last frames revisit the first). Stamps start at
    1 s and step by round(1e9 / fps) ns.
    """
    if kind not in SEQUENCE_KINDS:
        raise ValueError(f"unknown sequence kind {kind!r}; expected one of {SEQUENCE_KINDS}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    world_T_camera, scene_T_world = world_poses(_trajectory(kind, num_frames, fps, seed))
    stamps = frame_stamps(num_frames, fps)
    return SyntheticSequence(
        kind=kind, scene=room_scene(seed), K=default_intrinsics(height, width, hfov_deg), height=height,
        width=width, fps=fps, stamps_ns=stamps, world_T_camera=world_T_camera, scene_T_world=scene_T_world,
        cache=cache,
    )
