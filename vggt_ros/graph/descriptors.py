"""Global image descriptors and a bounded nearest-neighbour index for loop-closure candidates.

Why: a pose graph needs to know which old keyframe the camera may be revisiting before it spends a
network pass or a geometric check on the pair. A whole-image descriptor compared by cosine gives a
cheap shortlist; geometry (odometry prior, relative-pose agreement) must still confirm it, because
places that merely look alike score just as high (see ``vggt_ros.sim.twin``).

:func:`image_descriptor` is classical (no network): on a small anti-aliased thumbnail it concatenates
gradient-orientation histograms on a coarse grid (layout of edges), a coarse colour layout and a tiny
grey thumbnail, each zero-mean and unit-norm so that cosine similarity behaves like a correlation
(unrelated views score near 0.3, revisits 0.7-1.0 in the synthetic room). The thumbnail's heavy
averaging keeps it stable under small viewpoint changes; the coarse grid keeps it place-specific.

:class:`DescriptorIndex` stores any fixed-length descriptor (this one, or pooled DINOv2 tokens from
the network) in one preallocated matrix: a query is one matrix-vector product.
"""

from __future__ import annotations

import cv2
import numpy as np

THUMB_SIZE = (64, 48)  # (width, height) of the working thumbnail
GRID = (4, 4)  # (columns, rows) of the orientation-histogram and colour-layout grids
ORIENTATION_BINS = 8  # unsigned orientations over 180 degrees
GREY_SIZE = (8, 6)  # (width, height) of the grey layout
# Weights of the three parts (each unit-norm) before the final normalisation.
WEIGHT_GRADIENTS, WEIGHT_COLOUR, WEIGHT_GREY = 1.0, 0.5, 0.5
DESCRIPTOR_DIM = GRID[0] * GRID[1] * (ORIENTATION_BINS + 3) + GREY_SIZE[0] * GREY_SIZE[1]

_GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _cell_ids() -> np.ndarray:
    """Grid cell of every thumbnail pixel (row-major), precomputed once."""
    w, h = THUMB_SIZE
    rows = np.arange(h) * GRID[1] // h
    cols = np.arange(w) * GRID[0] // w
    return (rows[:, None] * GRID[0] + cols[None, :]).reshape(-1).astype(np.int64)


_CELL_IDS = _cell_ids()


def _unit_zero_mean(v: np.ndarray) -> np.ndarray:
    v = v - v.mean()
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-12 else v


def image_descriptor(image: np.ndarray) -> np.ndarray:
    """Global descriptor of an RGB uint8 HxWx3 image: float32 [DESCRIPTOR_DIM], unit L2 norm.

    Compare two descriptors with a dot product (cosine). Any image size works (the thumbnail has a
    fixed size), so descriptors of differently sized images are comparable, if less reliable.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be HxWx3 uint8 RGB, got shape {img.shape} dtype {img.dtype}")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"image must not be empty, got shape {img.shape}")
    small = cv2.resize(img, THUMB_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)
    small *= np.float32(1.0 / 255.0)
    grey = small @ _GREY_WEIGHTS
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    mag, ang = cv2.cartToPolar(gx, gy)
    # Unsigned orientation, linearly shared between the two nearest bins.
    pos = (ang.reshape(-1) % np.float32(np.pi)) * np.float32(ORIENTATION_BINS / np.pi)
    lo = np.floor(pos)
    frac = pos - lo
    b0 = lo.astype(np.int64) % ORIENTATION_BINS
    b1 = (b0 + 1) % ORIENTATION_BINS
    m = mag.reshape(-1)
    base = _CELL_IDS * ORIENTATION_BINS
    n_bins = GRID[0] * GRID[1] * ORIENTATION_BINS
    hist = (np.bincount(base + b0, weights=m * (1 - frac), minlength=n_bins)
            + np.bincount(base + b1, weights=m * frac, minlength=n_bins))
    grad = _unit_zero_mean(np.sqrt(hist))  # Hellinger-style square root damps dominant edges
    colour = _unit_zero_mean(cv2.resize(small, GRID, interpolation=cv2.INTER_AREA).reshape(-1))
    grey_layout = _unit_zero_mean(cv2.resize(grey, GREY_SIZE, interpolation=cv2.INTER_AREA).reshape(-1))
    out = np.concatenate([WEIGHT_GRADIENTS * grad, WEIGHT_COLOUR * colour, WEIGHT_GREY * grey_layout])
    n = float(np.linalg.norm(out))
    if n < 1e-12:  # a flat image: no structure at all; any fixed unit vector will do
        out = np.full(out.shape, 1.0 / np.sqrt(out.size))
        n = 1.0
    return (out / n).astype(np.float32)


class DescriptorIndex:
    """Bounded store of (key, descriptor) answering cosine top-k queries with one matrix product.

    Keys are ints that grow with time (keyframe stamps or ids); ``query`` can skip keys at or after a
    cut-off, i.e. the recent keyframes that are neighbours rather than loop candidates. Beyond
    ``capacity`` entries the oldest (first added) is evicted. Descriptors are L2-normalised on entry,
    so scores are cosines whatever produced them; the dimension is fixed by the first ``add`` (and
    freed again by ``clear``). Storage grows by doubling up to ``capacity``.
    """

    def __init__(self, capacity: int = 10_000, initial_rows: int = 64) -> None:
        if int(capacity) < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if int(initial_rows) < 1:
            raise ValueError(f"initial_rows must be >= 1, got {initial_rows}")
        self._capacity = int(capacity)
        self._initial_rows = min(int(initial_rows), self._capacity)
        self.clear()

    @property
    def capacity(self) -> int:
        """Most entries kept; adding beyond it evicts the oldest."""
        return self._capacity

    @property
    def dim(self) -> int | None:
        """Descriptor length (None until the first add)."""
        return None if self._mat is None else int(self._mat.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes held by the descriptor matrix and key array (allocated rows, not just used ones)."""
        return 0 if self._mat is None else int(self._mat.nbytes + self._keys.nbytes)

    def __len__(self) -> int:
        return self._size

    def __contains__(self, key: object) -> bool:
        return key in self._slots

    def clear(self) -> None:
        """Forget every entry and release the storage (the next add may use another dimension)."""
        self._mat: np.ndarray | None = None
        self._keys = np.empty(0, dtype=np.int64)
        self._slots: dict[int, int] = {}
        self._size = 0
        self._head = 0  # slot of the oldest entry once the ring is full

    def keys(self) -> list[int]:
        """Stored keys, oldest first."""
        rows = self._mat.shape[0] if self._mat is not None else 0
        order = (self._head + np.arange(self._size)) % max(rows, 1)
        return [int(k) for k in self._keys[order]]

    def add(self, key: int, desc: np.ndarray) -> None:
        """Store ``desc`` under ``key`` (a new key; the oldest entry goes when the index is full)."""
        key = int(key)
        if key in self._slots:
            raise ValueError(f"key {key} is already in the index")
        v = self._normalised(desc)
        if self._mat is None:
            self._mat = np.zeros((self._initial_rows, v.size), dtype=np.float32)
            self._keys = np.zeros(self._initial_rows, dtype=np.int64)
        rows = self._mat.shape[0]
        if self._size == rows and rows < self._capacity:
            grown = min(2 * rows, self._capacity)  # not yet wrapped: entries are slots 0..size-1
            mat = np.zeros((grown, self._mat.shape[1]), dtype=np.float32)
            mat[:rows] = self._mat
            keys = np.zeros(grown, dtype=np.int64)
            keys[:rows] = self._keys
            self._mat, self._keys, rows = mat, keys, grown
        if self._size < rows:
            slot = self._size
            self._size += 1
        else:  # full at capacity: overwrite the oldest
            slot = self._head
            del self._slots[int(self._keys[slot])]
            self._head = (self._head + 1) % rows
        self._mat[slot] = v
        self._keys[slot] = key
        self._slots[key] = slot

    def query(
        self, desc: np.ndarray, exclude_keys_after: int | None = None, top_k: int = 5
    ) -> list[tuple[int, float]]:
        """Up to ``top_k`` (key, cosine) pairs, best first, among keys < ``exclude_keys_after``.

        ``exclude_keys_after=None`` searches every key. Ties keep the older key first.
        """
        if self._mat is None or self._size == 0 or top_k <= 0:
            return []
        v = self._normalised(desc)
        scores = self._mat[: self._size] @ v
        keys = self._keys[: self._size]
        if exclude_keys_after is not None:
            allowed = np.nonzero(keys < int(exclude_keys_after))[0]
            if allowed.size == 0:
                return []
            scores, keys = scores[allowed], keys[allowed]
        k = min(int(top_k), scores.size)
        if k < scores.size:
            part = np.argpartition(-scores, k - 1)[:k]
        else:
            part = np.arange(scores.size)
        best = part[np.lexsort((keys[part], -scores[part]))]
        return [(int(keys[i]), float(scores[i])) for i in best]

    def _normalised(self, desc: np.ndarray) -> np.ndarray:
        v = np.asarray(desc, dtype=np.float32).reshape(-1)
        if self._mat is not None and v.size != self._mat.shape[1]:
            raise ValueError(f"descriptor has {v.size} values, the index holds {self._mat.shape[1]}")
        if v.size == 0 or not np.all(np.isfinite(v)):
            raise ValueError("descriptor must be a non-empty finite vector")
        n = float(np.linalg.norm(v))
        if n < 1e-12:
            raise ValueError("descriptor has zero norm (cosine undefined)")
        return v / np.float32(n)
