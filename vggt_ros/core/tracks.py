"""Track queries for a window and persistent track ids across overlapping windows.

Queries live in the window's first frame (the anchor keyframe) at the camera's own resolution.
Continuation: the anchor was already part of the previous window, so the previous window's tracks
have positions in it. Those positions (visible ones) are re-used as queries first, and the rest is
filled with a grid or cv2 corners away from them. A query then continues an existing id when the
previous window's track of that id lies within ``match_px`` of it in the anchor frame; otherwise it
gets a fresh id.
"""

from __future__ import annotations

import cv2
import numpy as np

from vggt_ros.params.table import default_of
from vggt_ros.prediction import PreprocessInfo


def grid_points(hw: tuple[int, int], num: int) -> np.ndarray:
    """About ``num`` points ``[n, 2]`` (x, y) on a regular grid with margins, aspect-preserving."""
    h, w = hw
    if num <= 0:
        return np.zeros((0, 2), np.float32)
    nx = max(1, int(round(np.sqrt(num * w / h))))
    ny = max(1, int(np.ceil(num / nx)))
    xs = (np.arange(nx) + 0.5) * (w / nx) - 0.5
    ys = (np.arange(ny) + 0.5) * (h / ny) - 0.5
    g = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    return g[:num].astype(np.float32)


def corner_points(image: np.ndarray, num: int) -> np.ndarray:
    """Up to ``num`` Shi-Tomasi corners ``[n, 2]`` (x, y) of an RGB image; grid fallback if too few."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    min_dist = max(2.0, min(grey.shape) / (2.0 * np.sqrt(max(num, 1))))
    pts = cv2.goodFeaturesToTrack(grey, maxCorners=int(num), qualityLevel=0.005, minDistance=min_dist)
    out = np.zeros((0, 2), np.float32) if pts is None else pts.reshape(-1, 2).astype(np.float32)
    if len(out) < num:
        extra = grid_points(image.shape[:2], num)
        out = np.concatenate([out, _away_from(extra, out, min_dist)[: num - len(out)]])
    return out


def _away_from(cands: np.ndarray, existing: np.ndarray, min_dist: float) -> np.ndarray:
    if len(existing) == 0 or len(cands) == 0:
        return cands
    d2 = ((cands[:, None, :] - existing[None, :, :]) ** 2).sum(-1)
    return cands[d2.min(1) >= min_dist**2]


def make_queries(
    image: np.ndarray, num: int, mode: str, carried: np.ndarray | None = None, min_dist: float = 4.0
) -> np.ndarray:
    """Queries ``[num, 2]`` float32 in the anchor image: carried-over positions first, then fill."""
    carried = np.zeros((0, 2), np.float32) if carried is None else np.asarray(carried, np.float32)[:num]
    need = num - len(carried)
    if need <= 0:
        return carried
    fill = grid_points(image.shape[:2], need * 2) if mode == "grid" else corner_points(image, need * 2)
    fill = _away_from(fill, carried, min_dist)
    if len(fill) < need:  # dense carried set: accept fill points regardless of distance
        fill = grid_points(image.shape[:2], need)
    return np.concatenate([carried, fill[:need]]).astype(np.float32)


def network_tracks_to_camera(tracks: np.ndarray, infos: list[PreprocessInfo]) -> np.ndarray:
    """Tracks ``[S, N, 2]`` at network pixels -> each frame's camera pixels."""
    out = np.empty(tracks.shape, np.float32)
    for s, info in enumerate(infos):
        out[s] = info.network_to_original_pixels(tracks[s]).astype(np.float32)
    return out


class TrackIdRegistry:
    """Assigns persistent ids: remembers the last window's track positions per frame stamp."""

    def __init__(self, match_px: float = default_of("track_match_px"), min_visibility: float = 0.5) -> None:
        self.match_px = float(match_px)
        self.min_visibility = float(min_visibility)
        self.reset()

    def reset(self) -> None:
        self._next_id = 0
        self._stamps: list[int] = []
        self._ids = np.zeros(0, np.int64)
        self._pos = np.zeros((0, 0, 2), np.float32)
        self._vis = np.zeros((0, 0), np.float32)

    def carried_positions(self, anchor_stamp: int) -> np.ndarray:
        """Visible previous-window track positions in the anchor frame (to re-use as queries)."""
        if anchor_stamp not in self._stamps:
            return np.zeros((0, 2), np.float32)
        s = self._stamps.index(anchor_stamp)
        ok = (self._vis[s] >= self.min_visibility) & np.all(np.isfinite(self._pos[s]), axis=1)
        return self._pos[s][ok]

    def assign(self, anchor_stamp: int, queries: np.ndarray) -> np.ndarray:
        """Ids ``[N]`` for queries in the anchor frame: continue a previous id within ``match_px``."""
        q = np.asarray(queries, np.float64).reshape(-1, 2)
        ids = np.full(len(q), -1, np.int64)
        if anchor_stamp in self._stamps and len(self._ids) and len(q):
            s = self._stamps.index(anchor_stamp)
            prev = self._pos[s].astype(np.float64)
            ok = (self._vis[s] >= self.min_visibility) & np.all(np.isfinite(prev), axis=1)
            d2 = ((q[:, None, :] - prev[None, :, :]) ** 2).sum(-1)
            d2[:, ~ok] = np.inf
            # greedy one-to-one matching, closest pairs first
            order = np.argsort(d2, axis=None)
            used_q = np.zeros(len(q), bool)
            used_p = np.zeros(len(prev), bool)
            lim = self.match_px**2
            for flat in order:
                qi, pi = divmod(int(flat), len(prev))
                if d2[qi, pi] > lim:
                    break
                if used_q[qi] or used_p[pi]:
                    continue
                used_q[qi] = used_p[pi] = True
                ids[qi] = self._ids[pi]
        fresh = ids < 0
        ids[fresh] = np.arange(self._next_id, self._next_id + int(fresh.sum()))
        self._next_id += int(fresh.sum())
        return ids

    def update(
        self, stamps: list[int], ids: np.ndarray, positions: np.ndarray, visibility: np.ndarray
    ) -> None:
        """Remember this window's tracks (camera pixels) for the next window's continuation."""
        self._stamps = [int(s) for s in stamps]
        self._ids = np.asarray(ids, np.int64)
        self._pos = np.asarray(positions, np.float32)
        self._vis = np.asarray(visibility, np.float32)
