"""Global image descriptor and bounded index: loop revisits found, non-revisits score lower, twins fool it."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vggt_ros.graph.descriptors import DESCRIPTOR_DIM, DescriptorIndex, image_descriptor
from vggt_ros.sim.sequences import LOOP_PERIMETER, LOOP_SPEED, make_sequence
from vggt_ros.sim.twin import make_twin_sequence

H, W, FPS = 60, 80, 5.0
RECENT = 0.3  # the last 30 % of frames before a query are neighbours, not loop candidates


@pytest.fixture(scope="module")
def loop():
    n = math.ceil(LOOP_PERIMETER / LOOP_SPEED * FPS) + 3
    seq = make_sequence("loop", n, height=H, width=W, fps=FPS, seed=0)
    descs = np.stack([image_descriptor(seq.render_frame(i)[0]) for i in range(n)])
    index = DescriptorIndex(capacity=1000)
    for stamp, d in zip(seq.stamps_ns, descs):
        index.add(int(stamp), d)
    return seq, descs, index


def _pose_gaps(seq, i: int, js: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances (m) and rotation angles (deg) between frame i and frames js (ground truth)."""
    P = seq.world_T_camera
    d = np.linalg.norm(P[js, :3, 3] - P[i, :3, 3], axis=1)
    rel = np.einsum("nji,jk->nik", P[js, :3, :3], P[i, :3, :3])
    return d, np.degrees(Rotation.from_matrix(rel).magnitude())


def test_descriptor_shape_norm_and_validation():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    d = image_descriptor(img)
    assert d.dtype == np.float32 and d.shape == (DESCRIPTOR_DIM,)
    assert np.linalg.norm(d) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_array_equal(d, image_descriptor(img.copy()))
    flat = image_descriptor(np.full((48, 64, 3), 128, np.uint8))
    assert np.all(np.isfinite(flat)) and np.linalg.norm(flat) == pytest.approx(1.0, abs=1e-5)
    bads = (np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), np.zeros((0, 4, 3), np.uint8))
    for bad in bads:
        with pytest.raises(ValueError):
            image_descriptor(bad)


def test_loop_revisits_rank_the_first_frames_on_top(loop):
    seq, descs, index = loop
    n = len(seq)
    recent = int(round(RECENT * n))
    revisit, fresh = [], []
    for i in range(recent + 1, n):
        cut = i - recent
        hits = index.query(descs[i], exclude_keys_after=int(seq.stamps_ns[cut]), top_k=3)
        assert len(hits) == min(3, cut) and all(seq.index_of(k) < cut for k, _ in hits)
        assert all(a[1] >= b[1] for a, b in zip(hits, hits[1:]))
        d, a = _pose_gaps(seq, i, np.arange(cut))
        j = seq.index_of(hits[0][0])
        if np.any((d < 0.4) & (a < 15.0)):  # a true revisit of an allowed (old) frame exists
            assert d[j] < 0.6 and a[j] < 20.0, (i, j, d[j], a[j], hits[0][1])
            revisit.append(hits[0][1])
        elif not np.any((d < 1.5) & (a < 45.0)):  # nothing old is anywhere near this view
            fresh.append(hits[0][1])
    assert len(revisit) >= 4 and len(fresh) >= 20, (len(revisit), len(fresh))
    margin = min(revisit) - max(fresh)
    print(f"\nloop {n} frames at {H}x{W}: revisit best scores {min(revisit):.3f}..{max(revisit):.3f} "
          f"({len(revisit)} frames), non-revisit best {min(fresh):.3f}..{max(fresh):.3f} "
          f"({len(fresh)} frames), margin {margin:.3f}")
    assert margin > 0.1


def test_neighbouring_frames_are_stable_and_distant_places_differ(loop):
    seq, descs, _ = loop
    n = len(seq)
    consecutive = np.einsum("ij,ij->i", descs[1:], descs[:-1])
    assert consecutive.min() > 0.6, consecutive.min()
    # Half a lap apart: the camera is on the far side looking the other way.
    opposite = np.einsum("ij,ij->i", descs[: n // 2], descs[n // 2: 2 * (n // 2)])
    assert opposite.max() < 0.6 < consecutive.mean()


def test_twin_places_match_each_other():
    """Appearance alone cannot reject the twin: the second half matches its twin one period back."""
    seq = make_twin_sequence(24, height=H, width=W, fps=4.0, seed=0)
    half = seq.twin_offset
    index = DescriptorIndex(capacity=64)
    descs = [image_descriptor(seq.render_frame(i)[0]) for i in range(len(seq))]
    for i in range(half):
        index.add(int(seq.stamps_ns[i]), descs[i])
    scores = []
    for j in range(half, len(seq)):
        (key, score), *_ = index.query(descs[j], exclude_keys_after=int(seq.stamps_ns[half]), top_k=2)
        assert seq.index_of(key) == j - half
        d = np.linalg.norm(seq.world_T_camera[j, :3, 3] - seq.world_T_camera[j - half, :3, 3])
        assert d == pytest.approx(seq.period_m)
        scores.append(score)
    print(f"\ntwin: second half matches its twin {seq.period_m} m back with cosine >= {min(scores):.4f}")
    # As high as the best true revisits of the loop (here: identical images).
    assert min(scores) > 0.99


def test_index_capacity_eviction_growth_and_clear():
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(12, 16)).astype(np.float32)
    index = DescriptorIndex(capacity=5, initial_rows=2)
    assert len(index) == 0 and index.nbytes == 0 and index.dim is None and index.query(vecs[0]) == []
    sizes = []
    for k in range(8):
        index.add(100 + k, vecs[k])
        sizes.append(index.nbytes)
    assert index.capacity == 5 and len(index) == 5 and index.dim == 16
    assert index.keys() == [103, 104, 105, 106, 107] and 102 not in index and 107 in index
    # Storage doubled 2 -> 4 -> 5 rows (capped at capacity), then stayed.
    row = 16 * 4 + 8
    assert sizes == [2 * row, 2 * row, 4 * row, 4 * row, 5 * row, 5 * row, 5 * row, 5 * row]
    # An evicted descriptor is no longer found; a kept one is found exactly.
    assert all(k != 100 for k, _ in index.query(vecs[0], top_k=5))
    (k, s), *_ = index.query(vecs[6], top_k=1)
    assert k == 106 and s == pytest.approx(1.0, abs=1e-5)
    # The ring keeps evicting the oldest after wrapping round.
    for k in range(8, 12):
        index.add(100 + k, vecs[k])
    assert index.keys() == [107, 108, 109, 110, 111]
    index.clear()
    assert len(index) == 0 and index.nbytes == 0 and index.dim is None
    index.add(1, np.ones(3))  # another dimension after clear
    assert index.dim == 3


def test_index_query_semantics_and_validation():
    index = DescriptorIndex(capacity=100)
    rng = np.random.default_rng(2)
    vecs = rng.normal(size=(20, 1024))  # e.g. pooled network tokens: any dimension, any scale
    for k, v in enumerate(vecs):
        index.add(10 * k, 3.0 * v)
    exact = vecs @ vecs[7] / (np.linalg.norm(vecs, axis=1) * np.linalg.norm(vecs[7]))
    hits = index.query(vecs[7], top_k=4)
    assert hits[0][0] == 70 and [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    np.testing.assert_allclose([s for _, s in hits], np.sort(exact)[::-1][:4], atol=1e-5)
    # Keys >= the cut-off are excluded (the query's own key 70 included).
    hits = index.query(vecs[7], exclude_keys_after=70, top_k=50)
    assert len(hits) == 7 and all(k < 70 for k, _ in hits)
    assert index.query(vecs[7], exclude_keys_after=0) == [] and index.query(vecs[7], top_k=0) == []
    with pytest.raises(ValueError, match="already"):
        index.add(70, vecs[0])
    with pytest.raises(ValueError, match="1024"):
        index.add(999, np.ones(5))
    with pytest.raises(ValueError, match="zero norm"):
        index.add(999, np.zeros(1024))
    with pytest.raises(ValueError, match="finite"):
        index.query(np.full(1024, np.nan))
    with pytest.raises(ValueError, match="capacity"):
        DescriptorIndex(capacity=0)
    assert index.nbytes == 64 * (1024 * 4 + 8)  # 20 entries fit the 64 initial rows


def test_descriptor_timing_at_640x480():
    img = make_sequence("loop", 1, height=480, width=640).render_frame(0)[0]
    for _ in range(5):
        image_descriptor(img)
    reps = 200
    t0 = time.perf_counter()
    for _ in range(reps):
        image_descriptor(img)
    ms = (time.perf_counter() - t0) / reps * 1e3
    index = DescriptorIndex(capacity=10_000)
    rng = np.random.default_rng(3)
    for k in range(10_000):
        index.add(k, rng.normal(size=DESCRIPTOR_DIM))
    d = image_descriptor(img)
    index.query(d, exclude_keys_after=9_000, top_k=5)
    t0 = time.perf_counter()
    for _ in range(20):
        index.query(d, exclude_keys_after=9_000, top_k=5)
    q_ms = (time.perf_counter() - t0) / 20 * 1e3
    print(f"\nimage_descriptor 640x480: {ms:.3f} ms; query over 10000 x {DESCRIPTOR_DIM}: {q_ms:.3f} ms; "
          f"index {index.nbytes / 1e6:.1f} MB")
    assert ms < 5.0  # ~0.3 ms on one core of the dev machine; loose for busy CI machines
