"""TUM RGB-D trajectory files: one pose per line, ``timestamp tx ty tz qx qy qz qw``.

Why: the format every SLAM evaluation tool (evo, TUM scripts) reads, so trajectories from the node or
the bag replay can be compared with other systems. Timestamps are seconds; we keep nanosecond
integers in memory and parse the decimal text exactly (no float rounding of 19-digit stamps).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation


def _parse_stamp_ns(text: str) -> int:
    """Decimal seconds (e.g. '1305031102.175304') -> integer nanoseconds, exactly (truncates < 1 ns)."""
    t = text.strip()
    neg = t.startswith("-")
    if neg or t.startswith("+"):
        t = t[1:]
    if "e" in t.lower():
        # Scientific notation is rare in TUM files; fall back to float.
        val = int(round(float(t) * 1e9))
        return -val if neg else val
    whole, _, frac = t.partition(".")
    if not (whole or frac) or not (whole.isdigit() or whole == "") or not (frac.isdigit() or frac == ""):
        raise ValueError(f"bad timestamp {text!r}")
    ns = int(whole or "0") * 1_000_000_000 + int((frac + "000000000")[:9])
    return -ns if neg else ns


def _format_stamp(ns: int) -> str:
    ns = int(ns)
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    return f"{sign}{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def read_tum(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read a TUM trajectory: (stamps_ns int64 [N], world_T_camera float64 [N, 4, 4]).

    Blank lines and lines starting with '#' are skipped; commas are accepted as separators.
    """
    stamps, rows = [], []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.replace(",", " ").split()
        if len(parts) != 8:
            raise ValueError(f"{path}:{lineno}: expected 8 values 'timestamp tx ty tz qx qy qz qw', "
                             f"got {len(parts)}")
        try:
            stamps.append(_parse_stamp_ns(parts[0]))
            rows.append([float(v) for v in parts[1:]])
        except ValueError as exc:
            raise ValueError(f"{path}:{lineno}: {exc}") from None
    n = len(stamps)
    poses = np.tile(np.eye(4), (n, 1, 1))
    if n:
        arr = np.asarray(rows, dtype=np.float64)
        q = arr[:, 3:7]
        norms = np.linalg.norm(q, axis=1)
        if np.any(norms < 1e-9) or not np.all(np.isfinite(arr)):
            raise ValueError(f"{path}: zero-norm quaternion or non-finite value")
        poses[:, :3, :3] = Rotation.from_quat(q).as_matrix()  # scipy: scalar-last (x, y, z, w)
        poses[:, :3, 3] = arr[:, :3]
    return np.asarray(stamps, dtype=np.int64), poses


def write_tum(
    path: str | os.PathLike[str], stamps_ns: np.ndarray, poses: np.ndarray, header: bool = True
) -> None:
    """Write poses ``world_T_camera [N, 4, 4]`` with nanosecond stamps as a TUM trajectory file."""
    stamps = np.asarray(stamps_ns, dtype=np.int64).reshape(-1)
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4) or poses.shape[0] != stamps.size:
        raise ValueError(f"need poses [{stamps.size}, 4, 4], got {poses.shape}")
    lines = ["# timestamp tx ty tz qx qy qz qw"] if header else []
    if stamps.size:
        q = Rotation.from_matrix(poses[:, :3, :3]).as_quat()
        q[q[:, 3] < 0] *= -1.0  # canonical sign: qw >= 0
        for s, t, qq in zip(stamps, poses[:, :3, 3], q):
            vals = " ".join(f"{v:.9g}" for v in (*t, *qq))
            lines.append(f"{_format_stamp(s)} {vals}")
    Path(path).write_text("\n".join(lines) + "\n")
