"""Ground-truth trajectories for the replay: from a TUM file, a TF frame path, or a pose topic.

Why separate from the bag reader: the GT logic (composing TF edges along a frame path, interpolating
poses at image stamps) is pure numpy and tested without bags; the reader only collects samples.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from vggt_ros.bag.errors import ReplayError
from vggt_ros.eval.tum import read_tum

logger = logging.getLogger(__name__)


@dataclass
class GroundTruth:
    """GT poses ``world_T_frame`` [N, 4, 4] float64 at ``stamps_ns`` [N] int64 (sorted, unique)."""

    stamps_ns: np.ndarray
    poses: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        s = np.asarray(self.stamps_ns, np.int64).reshape(-1)
        p = np.asarray(self.poses, np.float64)
        if p.shape != (s.size, 4, 4):
            raise ReplayError(f"ground truth {self.source}: {s.size} stamps but poses of shape {p.shape}")
        order = np.argsort(s, kind="stable")
        s, p = s[order], p[order]
        keep = np.ones(s.size, bool)
        keep[1:] = s[1:] != s[:-1]
        if not keep.all():
            logger.warning("ground truth %s: %d duplicate stamps dropped", self.source, int((~keep).sum()))
        self.stamps_ns, self.poses = s[keep], p[keep]

    def __len__(self) -> int:
        return int(self.stamps_ns.size)

    @property
    def span_s(self) -> tuple[float, float]:
        if not len(self):
            return (float("nan"), float("nan"))
        return (self.stamps_ns[0] / 1e9, self.stamps_ns[-1] / 1e9)

    def interpolate(
        self,
        stamps_ns: Sequence[int] | np.ndarray,
        max_gap_ns: int = 200_000_000,
        tolerance_ns: int = 20_000_000,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Poses at ``stamps_ns``: (poses [M, 4, 4], ok [M] bool).

        Inside the GT span, between two samples at most ``max_gap_ns`` apart: linear translation and
        slerp rotation. Otherwise the nearest sample if within ``tolerance_ns``; else not ok (identity).
        """
        q = np.asarray(stamps_ns, np.int64).reshape(-1)
        out = np.tile(np.eye(4), (q.size, 1, 1))
        ok = np.zeros(q.size, bool)
        n = len(self)
        if n == 0 or q.size == 0:
            return out, ok
        s = self.stamps_ns
        j = np.searchsorted(s, q, side="right")  # s[j-1] <= q < s[j]
        lo = np.clip(j - 1, 0, n - 1)
        hi = np.clip(j, 0, n - 1)
        inside = (j > 0) & (j < n)
        exact = s[lo] == q
        interp = inside & ~exact & ((s[hi] - s[lo]) <= max_gap_ns)
        # nearest sample for everything else
        d_lo = np.abs(q - s[lo])
        d_hi = np.abs(s[hi] - q)
        near = np.where(d_lo <= d_hi, lo, hi)
        near_ok = np.minimum(d_lo, d_hi) <= tolerance_ns
        use_near = ~interp & (exact | near_ok)
        out[use_near] = self.poses[near[use_near]]
        ok[use_near] = True
        if interp.any():
            a, b = lo[interp], hi[interp]
            w = (q[interp] - s[a]) / (s[b] - s[a]).astype(np.float64)
            Ta, Tb = self.poses[a], self.poses[b]
            out[interp, :3, 3] = Ta[:, :3, 3] * (1 - w[:, None]) + Tb[:, :3, 3] * w[:, None]
            ra = Rotation.from_matrix(Ta[:, :3, :3])
            rb = Rotation.from_matrix(Tb[:, :3, :3])
            # relative rotation scaled by w (per pair slerp, vectorised)
            rel = (ra.inv() * rb).as_rotvec()
            out[interp, :3, :3] = (ra * Rotation.from_rotvec(rel * w[:, None])).as_matrix()
            ok[interp] = True
        return out, ok


def load_tum_groundtruth(path: str | os.PathLike[str]) -> GroundTruth:
    """A TUM ``groundtruth.txt`` (``timestamp tx ty tz qx qy qz qw``)."""
    try:
        stamps, poses = read_tum(path)
    except FileNotFoundError:
        raise ReplayError(f"ground-truth file {path} does not exist") from None
    except ValueError as exc:
        raise ReplayError(f"cannot read ground-truth file {path}: {exc}") from None
    if stamps.size == 0:
        raise ReplayError(f"ground-truth file {path} has no poses")
    return GroundTruth(stamps, poses, source=str(path))


def parse_gt_topic_spec(spec: str) -> tuple[str, list[str]]:
    """``'/tf:world.kinect'`` -> ('/tf', ['world', 'kinect']); ``'/odom'`` -> ('/odom', []).

    The frame path lists TF frames from the GT world to the tracked frame, separated by '.' (or '>'
    when frame names contain dots); leading slashes (ROS 1 style) are ignored.
    """
    spec = spec.strip()
    if not spec:
        raise ReplayError("--gt-topic is empty")
    topic, sep, frames = spec.partition(":")
    if not sep:
        return topic, []
    parts = frames.split(">") if ">" in frames else frames.split(".")
    parts = [p.strip().strip("/") for p in parts]
    if len(parts) < 2 or not all(parts):
        raise ReplayError(
            f"--gt-topic {spec!r}: the frame path needs at least two frame ids, e.g. "
            f"'{topic}:world.kinect' (parent.child)"
        )
    return topic, parts


TfSamples = Mapping[tuple[str, str], list[tuple[int, np.ndarray]]]


def _inverse(T: np.ndarray) -> np.ndarray:
    out = np.zeros_like(T)
    R = np.swapaxes(T[..., :3, :3], -1, -2)
    out[..., :3, :3] = R
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", R, T[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


def compose_tf_path(edges: TfSamples, frames: Sequence[str], source: str = "tf") -> GroundTruth:
    """GT of ``frames[0]_T_frames[-1]`` from TF samples ``{(parent, child): [(stamp_ns, T), ...]}``.

    Each consecutive pair of the path may be stored either way round (inverted when needed). The
    stamps are those of the edge with the most samples (the moving one); the other edges are
    interpolated there (a single sample counts as static).
    """
    series: list[GroundTruth] = []
    for a, b in zip(frames[:-1], frames[1:]):
        if (a, b) in edges:
            st = np.array([s for s, _ in edges[(a, b)]], np.int64)
            Ts = np.stack([T for _, T in edges[(a, b)]])
        elif (b, a) in edges:
            st = np.array([s for s, _ in edges[(b, a)]], np.int64)
            Ts = _inverse(np.stack([T for _, T in edges[(b, a)]]))
        else:
            known = sorted(f"{p}.{c}" for p, c in edges)
            shown = ", ".join(known[:20]) + (f" ... ({len(known)} in all)" if len(known) > 20 else "")
            raise ReplayError(
                f"{source}: no transform between frames {a!r} and {b!r}; transforms in the "
                f"bag (parent.child): {shown or 'none'}"
            )
        series.append(GroundTruth(st, Ts, source=f"{source}:{a}.{b}"))
    master = max(range(len(series)), key=lambda i: len(series[i]))
    stamps = series[master].stamps_ns
    total = np.tile(np.eye(4), (stamps.size, 1, 1))
    ok = np.ones(stamps.size, bool)
    for i, g in enumerate(series):
        if i == master:
            T = g.poses
        elif len(g) == 1:
            T = np.broadcast_to(g.poses[0], (stamps.size, 4, 4))
        else:
            T, good = g.interpolate(stamps, max_gap_ns=1_000_000_000)
            ok &= good
        total = total @ T
    if not ok.all():
        logger.warning(
            "%s: %d of %d GT samples dropped (other path edges not known at those stamps)",
            source,
            int((~ok).sum()),
            ok.size,
        )
    return GroundTruth(stamps[ok], total[ok], source=f"{source}:{'.'.join(frames)}")
