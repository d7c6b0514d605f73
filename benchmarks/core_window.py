"""CPU time per window of the streaming core (no model): keyframes, alignment, outputs, map update.

Frames are 518x392 synthetic renders, predicted by the oracle at the network size 518x392 (its time is
not the core's and is reported separately). Prints a table of per-window milliseconds (median, p90)
and, as a baseline measured in the same run, the cost of simply copying the window's depth maps.

    python3 benchmarks/core_window.py [--frames 120] [--sim3-refine 0|1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vggt_ros.core.config import PipelineConfig
from vggt_ros.core.oracle import OraclePredictor
from vggt_ros.core.pipeline import StreamingPipeline
from vggt_ros.sim.sequences import make_sequence


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--kind", default="orbit")
    ap.add_argument("--sim3-refine", type=int, default=1)
    ap.add_argument("--tracks", type=int, default=0, help="num_track_queries")
    args = ap.parse_args()

    seq = make_sequence(args.kind, args.frames, height=392, width=518, fps=10)
    frames = seq.to_frames()
    oracle = OraclePredictor(seq, pose_noise_rot_deg=0.3, pose_noise_trans=0.005, depth_noise=0.02,
                             random_scale=(0.5, 2.0))
    cfg = PipelineConfig(sim3_refine=bool(args.sim3_refine), num_track_queries=args.tracks, voxel_size=0.02,
                         map_max_points=500_000)
    pipe = StreamingPipeline(cfg)
    rows: dict[str, list[float]] = {}
    copy_ms = []
    for f in frames:
        pipe.add_frame(f)
        job = pipe.next_window()
        if job is None:
            continue
        pred = oracle.predict(job.images, job.query_points, job.frame_keys)
        t = time.perf_counter()
        _ = [d.copy() for d in pred.depth] + [c.copy() for c in pred.depth_conf]
        copy_ms.append(1e3 * (time.perf_counter() - t))
        out = pipe.process(job, pred)
        if job.window_index == 0:
            continue  # bootstrap window: no alignment
        for k, v in out.timings.items():
            rows.setdefault(k, []).append(1e3 * v)
        rows.setdefault("oracle (not core)", []).append(1e3 * pred.timings.get("oracle", np.nan))
    n = len(rows.get("process", []))
    print(f"core per-window CPU time, 518x392 frames, window {cfg.window_size}/stride {cfg.stride}, "
          f"{n} windows, sim3_refine={bool(args.sim3_refine)}, map {len(pipe.world_map)} points")
    print(f"{'stage':<20}{'median ms':>12}{'p90 ms':>10}{'x copy':>10}")
    base = float(np.median(copy_ms))
    for k in ("keyframes", "alignment", "outputs", "map", "process", "oracle (not core)"):
        v = np.asarray(rows.get(k, [np.nan]))
        print(f"{k:<20}{np.median(v):>12.2f}{np.percentile(v, 90):>10.2f}{np.median(v) / base:>10.1f}")
    print(f"{'baseline: copy':<20}{base:>12.2f}{np.percentile(copy_ms, 90):>10.2f}{1.0:>10.1f}")
    print("per frame (process / stride):", f"{np.median(rows['process']) / cfg.stride:.2f} ms")


if __name__ == "__main__":
    main()
