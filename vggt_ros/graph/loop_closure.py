"""Loop closure: candidates by global descriptor, verification by the predictor on one window.

Why two steps: a descriptor says two images look alike, which two identical rooms also do; only
geometry says they are the same place. A candidate (an old keyframe whose descriptor is close to
the newest keyframe's) is predicted in one window with its stored neighbours and the newest
keyframes; the loop is accepted when the window is confidently predicted and the old frame's
points, moved into the newest camera by the predicted relative pose, land inside its view at the
depth the network sees there (:func:`verify_loop_window`). The graph back end then checks the loop
against its own uncertainty.

Descriptors: the network's pooled DINOv2 tokens when the predictor returns them
(``Prediction.descriptors``), else a classical image descriptor
(:func:`vggt_ros.graph.descriptors.image_descriptor`), one kind per stream. Keyframe images are kept
as JPEG for the verification, at most ``max_keyframes`` of them (oldest forgotten).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

import cv2
import numpy as np

from vggt_ros.core.alignment import confident, pixel_rays, weighted_median
from vggt_ros.graph.descriptors import DescriptorIndex, image_descriptor
from vggt_ros.prediction import Prediction

JPEG_QUALITY = 90
CONF_QUANTILE = 0.5  # verification uses each frame's more confident half
DEPTH_AGREEMENT = 0.1  # relative depth difference for a point to count as seen where predicted
MIN_CONF_RATIO = 0.5  # the verification window's median confidence vs the query's own window's
MIN_PIXELS = 200
SIDE_KEYFRAMES = 3  # per side of a loop: the candidate and its stored neighbours, the query and the
# keyframes before it. One verification window then measures several old-new pairs (each frame's
# error is its own): one pair alone carries a single frame's error into the loop.


@dataclass
class LoopJob:
    """A verification window to predict: ``images`` and ``frame_keys``, the match first (it defines
    the window) and the query last, the old place's other keyframes and the newer ones between."""

    query: int
    match: int
    score: float
    images: list[np.ndarray]
    frame_keys: list[int]
    query_depth: np.ndarray  # the query keyframe's stored depth (world units) and confidence
    query_conf: np.ndarray


@dataclass
class LoopClosure:
    """An accepted loop (announced on the ``loop_closures`` topic, counted in diagnostics)."""

    index: int
    query_stamp_ns: int
    match_stamp_ns: int
    match_T_query: np.ndarray  # world units
    score: float
    overlap: float
    correction_translation: float  # how far map -> odom moved, world units
    correction_rotation_deg: float
    seconds: float


@dataclass
class LoopCheck:
    ok: bool
    reason: str = ""
    match_T_query: np.ndarray | None = None
    overlap: float = 0.0
    match_T: dict[int, np.ndarray] | None = None  # every frame of the window, from the match, world units


class LoopDetector:
    """Descriptors and JPEG images of the keyframes, and the candidate for the newest one."""

    def __init__(self, min_score: float, min_keyframe_gap: int, max_keyframes: int,
                 cooldown_keyframes: int = 0) -> None:
        self.min_score = float(min_score)
        self.min_gap = int(min_keyframe_gap)
        self.cooldown = int(cooldown_keyframes)
        self._added = 0  # keyframes stored so far
        self._closed_at: int | None = None  # ``_added`` at the last loop closure
        self.index = DescriptorIndex(int(max_keyframes))
        self._images: OrderedDict[int, bytes] = OrderedDict()
        self._recent: deque[int] = deque(maxlen=self.min_gap)
        self._max = int(max_keyframes)
        self._asked: int | None = None  # the keyframe last asked for: one candidate search each
        self._kind: str | None = None  # "network" or "image": one descriptor kind per stream
        self._last: tuple[int, np.ndarray] | None = None  # the newest keyframe and its descriptor

    def clear(self) -> None:
        self.index.clear()
        self._images.clear()
        self._recent.clear()
        self._asked = None
        self._kind = None
        self._last = None
        self._added = 0
        self._closed_at = None

    @property
    def nbytes(self) -> int:
        return int(self.index.nbytes + sum(len(b) for b in self._images.values()))

    def add_keyframe(self, stamp: int, image: np.ndarray, descriptor: np.ndarray | None) -> None:
        """Store a new keyframe's descriptor and image (one descriptor kind per stream: the first
        keyframe's decides; a keyframe without the network's descriptor is then skipped)."""
        if self._kind is None:
            self._kind = "image" if descriptor is None else "network"
        if self._kind == "network" and descriptor is None:
            return
        desc = image_descriptor(image) if self._kind == "image" else np.asarray(descriptor, np.float32)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            return
        stamp = int(stamp)
        self.index.add(stamp, desc)
        self._images[stamp] = jpeg.tobytes()
        while len(self._images) > self._max:
            self._images.popitem(last=False)
        self._last = (stamp, desc)
        self._recent.append(stamp)
        self._added += 1

    def closed(self) -> None:
        """A loop was closed at the newest keyframe: the next ``cooldown`` keyframes search none."""
        self._closed_at = self._added

    def stamps(self) -> set[int]:
        """Keyframes kept as candidates (their images may be predicted again)."""
        return set(self._images)

    def candidate(self, query: int, query_state: tuple[np.ndarray, np.ndarray]) -> LoopJob | None:
        """The best old keyframe for keyframe ``query`` (asked once per keyframe), or None."""
        if query == self._asked or len(self._recent) < self.min_gap or query not in self._images:
            return None
        self._asked = query
        if self._closed_at is not None and self._added - self._closed_at < self.cooldown:
            return None
        if self._last is None or self._last[0] != query:
            return None
        cut = self._recent[0]  # the newest min_gap keyframes are excluded
        desc = self._last[1]
        hits = self.index.query(desc, exclude_keys_after=cut, top_k=1)
        if not hits or hits[0][1] < self.min_score or hits[0][0] not in self._images:
            return None
        match, score = hits[0]
        keys = self._old_side(match, cut) + [k for k in list(self._recent)[-SIDE_KEYFRAMES:]
                                            if k in self._images]
        images = [self._decode(k) for k in keys]
        return LoopJob(query, match, float(score), images, keys, query_state[0], query_state[1])

    def _old_side(self, match: int, cut: int) -> list[int]:
        """The match, then its nearest stored keyframes older than ``cut`` (time order)."""
        old = [k for k in self._images if k < cut]
        i = old.index(match)
        near = sorted(old[max(0, i - SIDE_KEYFRAMES): i + SIDE_KEYFRAMES], key=lambda k: abs(k - match))
        return [match, *sorted(near[1:SIDE_KEYFRAMES])]

    def _decode(self, stamp: int) -> np.ndarray:
        buf = np.frombuffer(self._images[stamp], np.uint8)
        return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def verify_loop_window(job: LoopJob, pred: Prediction, min_overlap: float) -> LoopCheck:
    """Geometric check of a predicted verification window (match first, query last); the relative
    poses from the match in world units."""
    n = len(job.frame_keys)
    if pred.num_frames != n or not np.all(np.isfinite(pred.extrinsics)):
        return LoopCheck(False, "bad_prediction")
    hw = pred.network_hw
    if job.query_depth.shape != hw:
        return LoopCheck(False, "size")
    T = np.tile(np.eye(4), (n, 1, 1))
    T[:, :3, :] = np.asarray(pred.extrinsics, np.float64)
    w_T_c = np.linalg.inv(T)
    match_T = np.linalg.solve(w_T_c[0][None], w_T_c)  # window units
    match_T_query = match_T[-1]
    # confidence: the window must be predicted about as confidently as the query's own window
    ref_conf = float(np.median(job.query_conf[np.isfinite(job.query_conf)]))
    window_conf = float(np.median(pred.depth_conf))
    if not window_conf >= MIN_CONF_RATIO * ref_conf:
        return LoopCheck(False, "confidence")
    # scale: the query's stored depth over its depth in the window
    d_q = pred.depth[-1]
    m = (confident(pred.depth_conf[-1], CONF_QUANTILE) & np.isfinite(job.query_depth) & (job.query_depth > 0)
         & np.isfinite(d_q) & (d_q > 0))
    if m.sum() < MIN_PIXELS:
        return LoopCheck(False, "overlap")
    s = float(np.exp(weighted_median(np.log(job.query_depth[m] / d_q[m]), np.ones(int(m.sum())))))
    # reprojection: the match's confident points into the query camera, against the query's depth
    d_m = pred.depth[0]
    mm = confident(pred.depth_conf[0], CONF_QUANTILE) & np.isfinite(d_m) & (d_m > 0)
    idx = np.flatnonzero(mm)
    if len(idx) < MIN_PIXELS:
        return LoopCheck(False, "overlap")
    idx = idx[np.linspace(0, len(idx) - 1, min(len(idx), 4000)).astype(np.int64)]
    K0, K1 = np.asarray(pred.intrinsics[0], np.float64), np.asarray(pred.intrinsics[-1], np.float64)
    p = pixel_rays(K0, hw, idx) * d_m.ravel()[idx, None]
    q_T_m = np.linalg.inv(match_T_query)
    q = p @ q_T_m[:3, :3].T + q_T_m[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K1[0, 0] * q[:, 0] / q[:, 2] + K1[0, 2]
        v = K1[1, 1] * q[:, 1] / q[:, 2] + K1[1, 2]
    inside = (q[:, 2] > 0) & (u >= 0) & (u <= hw[1] - 1) & (v >= 0) & (v <= hw[0] - 1)
    ui = np.rint(np.where(inside, u, 0)).astype(np.int64)
    vi = np.rint(np.where(inside, v, 0)).astype(np.int64)
    seen = d_q[vi, ui]
    agree = inside & (np.abs(seen - q[:, 2]) <= DEPTH_AGREEMENT * np.maximum(seen, 1e-9))
    overlap = float(agree.mean())
    if overlap < min_overlap:
        return LoopCheck(False, "overlap", overlap=overlap)
    match_T[:, :3, 3] *= s
    return LoopCheck(True, "", match_T[-1], overlap, dict(zip(job.frame_keys, match_T)))
