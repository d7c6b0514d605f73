"""Streaming cost per frame while a robot patrols a mapped place: loop closures vs stream length.

    PYTHONPATH=. python3 benchmarks/loop_patrol.py [--frames 900] [--rate 15]
    PYTHONPATH=. python3 benchmarks/loop_patrol.py --frames 12000 --long --set graph_max_keyframes=1000

Why: on the closed orbit (vggt_ros.sim.periodic, one lap every 12 s) every keyframe after the first
lap revisits a mapped place. Each closure predicts a verification window, re-optimises the graph and
rebuilds the corrected map and path, so closing a loop at every keyframe made the per-frame cost
climb lap after lap (the node soak's latency went from 0.17 to 1.6 s). The run is the core's loop
(``StreamRunner``, the oracle, the default configuration) on the CPU, timed per frame in fifths of
the stream; the baseline is the same stream with ``loop_cooldown_keyframes: 0``. ``--long``: the
default configuration alone, with the process RSS and the graph's size at each fifth (memory and time
must level off once the graph holds ``graph_max_keyframes``).
"""

from __future__ import annotations

import argparse
import ast
import os
import time

import numpy as np
from node_soak import rss_mib  # the sibling benchmark's /proc reader

from vggt_ros.core.config import PipelineConfig
from vggt_ros.core.oracle import OraclePredictor
from vggt_ros.core.pipeline import StreamingPipeline
from vggt_ros.core.types import Frame
from vggt_ros.runner.stream_runner import StreamRunner
from vggt_ros.sim.periodic import PeriodicOrbit


def run(frames: int, rate: float, **overrides: object) -> tuple[list[float], dict[str, int], list[str]]:
    """Per-frame milliseconds by fifth of the stream, the pipeline's loop counters, and per fifth:
    RSS and graph size."""
    orbit = PeriodicOrbit(fps=rate)
    orbit.prerender()
    lap = list(orbit.seq.to_frames())
    gt_lap = orbit.seq.ground_truth()
    stamps = [10**18 + k * orbit.period_ns for k in range(frames)]
    gt = {s: gt_lap[lap[k % len(lap)].stamp_ns] for k, s in enumerate(stamps)}
    pipe = StreamingPipeline(PipelineConfig(**overrides))
    runner = StreamRunner(pipe, OraclePredictor(gt), lambda out, lat: None)
    per_frame, state = [], []
    for k, s in enumerate(stamps):
        f = lap[k % len(lap)]
        runner.add_frame(Frame(stamp_ns=s, image=f.image, intrinsics=f.intrinsics))
        t0 = time.perf_counter()
        runner.run_ready()
        per_frame.append(time.perf_counter() - t0)
        if (k + 1) % max(1, frames // 5) == 0:
            c = pipe.counters()
            state.append(f"{rss_mib(os.getpid()):.0f} MiB / {c.get('graph_keyframes', 0)} kf")
    runner.finish()
    fifths = [1e3 * float(np.mean(x)) for x in np.array_split(np.array(per_frame), 5)]
    return fifths, {k: v for k, v in pipe.counters().items() if k.startswith(("loop_", "graph_"))}, state


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=900)
    ap.add_argument("--rate", type=float, default=15.0)
    ap.add_argument("--long", action="store_true", help="the default configuration only, with RSS")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a pipeline parameter")
    a = ap.parse_args()
    extra = {k: ast.literal_eval(v) for k, v in (kv.split("=", 1) for kv in a.set)}
    print(f"# {a.frames} frames at {a.rate:g} Hz, a lap every 12 s; per-frame ms by fifth of the stream"
          + (f"; {extra}" if extra else ""))
    print("| loop_cooldown_keyframes | fifths (ms per frame) | last / first | closures | keyframes |"
          + (" RSS / graph by fifth |" if a.long else ""))
    print("|---|---|---:|---:|---:|" + ("---|" if a.long else ""))
    default = PipelineConfig().loop_cooldown_keyframes
    for cooldown in (default,) if a.long else (0, default):
        fifths, c, state = run(a.frames, a.rate, **{"loop_cooldown_keyframes": cooldown, **extra})
        print(f"| {cooldown} | {' / '.join(f'{x:.1f}' for x in fifths)} | {fifths[-1] / fifths[0]:.2f} "
              f"| {c.get('loop_closures', 0)} | {c.get('graph_keyframes', 0)} |"
              + (f" {' / '.join(state)} |" if a.long else ""))


if __name__ == "__main__":
    main()
