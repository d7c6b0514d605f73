"""Speed of the synthetic ray caster and the oracle predictor (prints figures, asserts nothing).

Usage: python3 benchmarks/bench_sim_oracle.py [--frames 8]
The ray caster is compared with a baseline measured in the same run: one dense numpy pass over all
pixels (``np.exp`` of an HxWx3 float32 array), i.e. roughly the cost of touching every ray once.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vggt_ros.core.oracle import OraclePredictor
from vggt_ros.sim.sequences import make_sequence


def _best(fn, repeat: int = 5) -> float:
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=8)
    args = ap.parse_args()
    for h, w in ((392, 518), (480, 640)):
        seq = make_sequence("orbit", args.frames, height=h, width=w, cache=False)
        seq.render_frame(0)  # warm-up (noise tables)
        t_render = _best(lambda seq=seq: seq.render_frame(1))
        grid = np.random.default_rng(0).random((h, w, 3), dtype=np.float32)
        t_base = _best(lambda grid=grid: np.exp(grid))
        print(f"render {w}x{h}: {t_render * 1e3:.1f} ms/frame ({1 / t_render:.1f} fps), "
              f"{t_render / t_base:.0f}x one np.exp pass over HxWx3 ({t_base * 1e3:.2f} ms)")
    seq = make_sequence("orbit", args.frames, height=480, width=640)
    frames = seq.to_frames()
    images = [f.image for f in frames]
    keys = [f.stamp_ns for f in frames]
    oracle = OraclePredictor(seq)
    oracle.predict(images, frame_keys=keys)
    q = np.random.default_rng(1).uniform([0, 0], [640, 480], size=(256, 2))
    t_pred = _best(lambda: oracle.predict(images, frame_keys=keys), repeat=3)
    t_trk = _best(lambda: oracle.predict(images, query_points=q, frame_keys=keys), repeat=3)
    print(f"oracle {args.frames} frames 640x480 -> 518x392: {t_pred * 1e3:.0f} ms/window "
          f"({t_pred / args.frames * 1e3:.1f} ms/frame); with 256 tracks {t_trk * 1e3:.0f} ms "
          f"({t_trk / t_pred:.2f}x)")


if __name__ == "__main__":
    main()
