"""Keyframe pose graph (gtsam iSAM2): time per window against graph size, and loop-closure updates.

    PYTHONPATH=. python3 benchmarks/pose_graph.py [--keyframes 5000] [--quick] [--lap 500] [--seed 0]

Why: the graph keeps every keyframe for the whole run, and its update runs once per placed window.
If that update grew with the graph, a long run would slowly fall behind the ~100 ms per window that
the model needs on a GPU. The loop updates after a closure touch many keyframes, so they are
timed separately. No model and no images: only the graph work of the streaming backend
(``vggt_ros/graph/backend.py``) on a synthetic trajectory. The camera drives a closed circuit that
returns to the same places every ``--lap`` keyframes. Each window has a new keyframe and an anchor
3-5 keyframes back, with one factor from the anchor to every later keyframe of the window. The
window reads the anchor's pose, places the new keyframe from it, and calls ``update()``. On every
return to a place, a loop factor links the newest keyframe to the same place on the first lap, then
``update(iterations=4)``. Measurement noise: 0.5 deg per rotation axis, and 1 % of a 3 m scene depth
(3 cm) per translation axis.
"""

from __future__ import annotations

import argparse
import resource
import time

import gtsam
import numpy as np

from vggt_ros.graph.pose_graph import EdgeNoise, KeyframeGraph

VGGT_WINDOW_MS = 100.0  # one VGGT window on a GPU: the budget the graph work shares
ROT_SIGMA = np.radians(0.5)
TRANS_SIGMA = 0.01 * 3.0
STAMP_NS = 33_333_333


def circuit(n: int, lap: int, rng: np.random.Generator) -> np.ndarray:
    """[n, 4, 4] world_T_camera: a 25 m circle with hills, one lap every ``lap`` keyframes, jittered."""
    th = 2 * np.pi * np.arange(n) / lap
    pos = np.stack([25 * np.cos(th), 25 * np.sin(th), 1.5 * np.sin(3 * th)], 1)
    pos += rng.normal(0, 0.1, pos.shape)  # another lap never passes exactly the same spot
    fwd = np.stack([-np.sin(th), np.cos(th), 1.5 * 3 / 25 * np.cos(3 * th)], 1)
    fwd /= np.linalg.norm(fwd, axis=1, keepdims=True)
    down = np.array([0.0, 0.0, -1.0])
    out = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):
        x = np.cross(down, fwd[i])  # camera x right, y down, z forward
        x /= np.linalg.norm(x)
        R = np.stack([x, np.cross(fwd[i], x), fwd[i]], 1)
        jitter = gtsam.Rot3.Expmap(rng.normal(0, np.radians(2), 3)).matrix()
        out[i, :3, :3], out[i, :3, 3] = R @ jitter, pos[i]
    return out


def measure(gt: np.ndarray, a: int, b: int, rng: np.random.Generator) -> np.ndarray:
    """Noisy a_T_b."""
    xi = np.concatenate([rng.normal(0, ROT_SIGMA, 3), rng.normal(0, TRANS_SIGMA, 3)])
    return np.linalg.solve(gt[a], gt[b]) @ gtsam.Pose3.Expmap(xi).matrix()


def stats(ms: list[float]) -> str:
    a = np.asarray(ms)
    return f"{np.median(a):.2f} | {np.percentile(a, 95):.2f} | {a.max():.2f}"


def pos_err(graph: KeyframeGraph, gt: np.ndarray, k: int) -> float:
    return float(np.linalg.norm(graph.pose(k * STAMP_NS)[:3, 3] - gt[k, :3, 3]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keyframes", type=int, default=5000)
    ap.add_argument("--quick", action="store_true", help="1000 keyframes")
    ap.add_argument("--lap", type=int, default=500, help="keyframes per lap of the circuit (loop period)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n = 1000 if args.quick else args.keyframes
    rng = np.random.default_rng(args.seed)
    gt = circuit(n, args.lap, rng)
    noise = EdgeNoise(ROT_SIGMA, TRANS_SIGMA)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    graph = KeyframeGraph()
    # bootstrap: the first window places keyframes 0..4 from keyframe 0
    graph.add_keyframe(0, gt[0])
    for b in range(1, 5):
        rel = measure(gt, 0, b, rng)
        graph.add_keyframe(b * STAMP_NS, gt[0] @ rel)
        graph.add_relative(0, b * STAMP_NS, rel, noise)
    graph.update()

    window_ms: list[tuple[int, float]] = []  # (keyframes before the window, ms)
    loops: list[tuple[int, float, float, float, float]] = []  # (size, gate ms, loop ms, err before, after)
    loop_at: list[int] = []
    t_run = time.perf_counter()
    for k in range(5, n):
        back = int(rng.integers(3, 6))  # anchor 3-5 keyframes back: 3-5 factors
        a = k - back
        rels = {b: measure(gt, a, b, rng) for b in range(a + 1, k + 1)}  # the window's prediction
        t0 = time.perf_counter()
        a_graph = graph.pose(a * STAMP_NS)
        graph.add_keyframe(k * STAMP_NS, a_graph @ rels[k])
        for b, rel in rels.items():
            graph.add_relative(a * STAMP_NS, b * STAMP_NS, rel, noise)
        graph.update()
        window_ms.append((k, 1e3 * (time.perf_counter() - t0)))
        if k >= args.lap and k % args.lap == args.lap // 2:  # back at the place of keyframe k % lap
            m = k % args.lap
            before = pos_err(graph, gt, k)
            rel = measure(gt, m, k, rng)
            t0 = time.perf_counter()
            graph.relative_covariance_trace(m * STAMP_NS, k * STAMP_NS)  # the backend's loop gate
            t1 = time.perf_counter()
            graph.add_relative(m * STAMP_NS, k * STAMP_NS, rel, noise, loop=True)
            graph.update(iterations=4)
            t2 = time.perf_counter()
            loop_at.append(k)
            loops.append((len(graph), 1e3 * (t1 - t0), 1e3 * (t2 - t1), before, pos_err(graph, gt, k)))
    t_run = time.perf_counter() - t_run

    t0 = time.perf_counter()
    graph.pose((n - 1) * STAMP_NS)
    t_pose = time.perf_counter() - t0
    t0 = time.perf_counter()
    graph.pose((n - 1) * STAMP_NS)
    t_pose_cached = time.perf_counter() - t0
    t0 = time.perf_counter()
    est = graph.all_poses()
    t_all = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    err = np.array([np.linalg.norm(est[k * STAMP_NS][:3, 3] - gt[k, :3, 3]) for k in range(n)])

    print(f"{n} keyframes, {graph.num_factors} factors ({graph.num_loops} loops), lap {args.lap}, "
          f"{len(window_ms)} windows in {t_run:.1f} s")
    print("\n| graph size [keyframes] | windows | median ms | p95 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    width = max(n // 10, 1)
    medians = []
    for lo in range(0, n, width):
        ms = [t for k, t in window_ms if lo <= k < lo + width]
        if ms:
            medians.append(float(np.median(ms)))
            print(f"| {lo}-{lo + width} | {len(ms)} | {stats(ms)} |")
    all_ms = [t for _, t in window_ms]
    print(f"| all | {len(all_ms)} | {stats(all_ms)} |")
    slow = [k for k, t in window_ms if t > 5.0]
    after = [k for k in slow if any(0 < k - j <= 20 for j in loop_at)]
    print(f"\nwindows over 5 ms: {len(slow)}, of them within 20 windows after a loop closure: {len(after)}")
    print(f"median(last bucket) / median(first bucket) = {medians[-1] / medians[0]:.2f}")
    print(f"per-window budget: median {np.median(all_ms):.2f} ms = "
          f"{100 * np.median(all_ms) / VGGT_WINDOW_MS:.1f} % of a {VGGT_WINDOW_MS:.0f} ms VGGT window, "
          f"p95 {100 * np.percentile(all_ms, 95) / VGGT_WINDOW_MS:.1f} %, "
          f"max {100 * max(all_ms) / VGGT_WINDOW_MS:.1f} %")
    if loops:
        print("\n| loop at graph size | gate (covariance) ms | add + update(4) ms "
              "| newest kf error before -> after [m] |")
        print("|---:|---:|---:|---|")
        for size, gate, ms, e0, e1 in loops:
            print(f"| {size} | {gate:.2f} | {ms:.2f} | {e0:.3f} -> {e1:.3f} |")
    print(f"\npose(newest): {1e3 * t_pose:.3f} ms after an update, {1e3 * t_pose_cached:.4f} ms cached; "
          f"all_poses(): {1e3 * t_all:.1f} ms")
    print(f"position error vs ground truth: RMS {np.sqrt(np.mean(err**2)):.3f} m, max {err.max():.3f} m")
    print(f"peak RSS: {rss1:.0f} MiB ({rss1 - rss0:.0f} MiB above the {rss0:.0f} MiB after imports)")


if __name__ == "__main__":
    main()
