"""Compiled transformer blocks in a sliding-window stream: compilations and per-window time.

    python3 benchmarks/compile_shapes.py                          # CPU, small config, dynamo "eager"
    python3 benchmarks/compile_shapes.py --backend inductor       # CPU inductor: minutes of C++ builds
    python3 benchmarks/compile_shapes.py --device cuda --config default --camera 480x640 --target 518 \
        --backend inductor                                        # GPU, the node's setting

A stream of random camera frames is cut into windows of ``--window`` frames; after the bootstrap
window each window brings a random number (1..``--stride``, same seeded sequence for every variant)
of new frames, i.e. uncached frames for the DINOv2 blocks, as the node's ``keep_newest`` policy
produces. Variants, each on a fresh copy of the model with dynamo's caches reset:

* eager: no compilation (the reference time per window);
* auto-dynamic, no warm-up: ``compile_blocks(dynamic=None)``, the engine before bucketing: dynamo
  compiles on first sight, recompiles a symbolic-shape graph on the second size and specialises 1;
* static, warm-up, no buckets: ``shape_buckets=False``: the warm-up compiles some batch sizes, the
  other uncached counts compile during the stream;
* static, warm-up, buckets: the engine default: the DINOv2 batch is padded to a few sizes, all
  compiled by :meth:`InferenceEngine.warmup`, so the stream compiles nothing.

"graphs" counts dynamo graphs compiled (``counters["stats"]["unique_graphs"]``). With the default
"eager" backend dynamo captures graphs and guards (what decides recompilation) without code
generation, so a compilation costs far less than with inductor (seconds per graph on a GPU);
window times then show the padding overhead, not the compiled speed-up.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from model_forward import build_model  # noqa: E402  (cheap random-weight builder)

from vggt_ros.model.compiled import compile_blocks, compiled_graph_count  # noqa: E402
from vggt_ros.model.engine import InferenceEngine  # noqa: E402


def uncached_counts(windows: int, stride: int, seed: int) -> list[int]:
    return [int(n) for n in np.random.default_rng(seed).integers(1, stride + 1, windows)]


def run_stream(engine: InferenceEngine, pool: list[np.ndarray], window: int, counts: list[int]
               ) -> tuple[list[float], list[int]]:
    """Bootstrap + one window per count; per-window seconds and graphs compiled per window."""
    keys = list(range(window))
    nxt = window
    times, graphs = [], []
    for n in [0, *counts]:
        keys = keys[n:] + list(range(nxt, nxt + n))
        nxt += n
        g, t = compiled_graph_count(), time.perf_counter()
        engine.predict([pool[k % len(pool)] for k in keys], frame_keys=keys)
        times.append(time.perf_counter() - t)
        graphs.append(compiled_graph_count() - g)
    return times, graphs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", choices=("small", "default"), default="small")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="eager", help="dynamo backend (eager: no code generation)")
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--stride", type=int, default=8)
    ap.add_argument("--windows", type=int, default=30, help="steady windows after the bootstrap")
    ap.add_argument("--camera", default="120x160", help="camera HxW")
    ap.add_argument("--target", type=int, default=168, help="network long side")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", type=int, nargs="+", default=[0, 1, 2, 3],
                    help="indices of the variants to run (0 eager, 1 auto-dynamic, 2 no buckets, 3 buckets)")
    args = ap.parse_args()

    device = torch.device(args.device)
    h, w = (int(v) for v in args.camera.lower().split("x"))
    rng = np.random.default_rng(args.seed)
    pool = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(8)]
    counts = uncached_counts(args.windows, args.stride, args.seed)
    base = build_model(args.config, device)
    print(f"# {platform.node()} torch {torch.__version__} {device} threads {torch.get_num_threads()}; "
          f"config {args.config}, camera {h}x{w} -> target {args.target}, window {args.window} stride "
          f"{args.stride}, {args.windows} steady windows, backend {args.backend}")
    print(f"# uncached frames per steady window: {counts}")
    if args.backend == "eager":
        print("# backend 'eager': dynamo graph capture only (no inductor code generation), so a "
              "compilation here is far cheaper than on a real inductor run; counts are what matter")

    common = dict(device=device, target_size=args.target, world_points=False, patch_cache_size=64)
    rows = []
    variants = ("eager", "auto-dynamic, no warm-up", "static, warm-up, no buckets",
                "static, warm-up, buckets")
    for name in [variants[i] for i in args.variants]:
        torch._dynamo.reset()
        model = copy.deepcopy(base)
        if name == "eager":
            engine = InferenceEngine(model, **common)
        elif name.startswith("auto-dynamic"):
            compile_blocks(model, backend=args.backend, dynamic=None)
            engine = InferenceEngine(model, **common)  # compiled model, engine unaware: no padding
        else:
            engine = InferenceEngine(model, compile="blocks", compile_backend=args.backend,
                                     shape_buckets="no buckets" not in name, **common)
        report = engine.warmup(args.window, args.stride, image_hw=(h, w))
        times, graphs = run_stream(engine, pool, args.window, counts)
        steady = [t * 1e3 for t in times[1:]]
        q = statistics.quantiles(steady, n=10) if len(steady) > 1 else steady * 9
        rows.append((name, report.get("seconds", 0.0), report.get("graphs_compiled", 0), sum(graphs),
                     sum(1 for g in graphs if g), times[0] * 1e3, statistics.median(steady), q[8],
                     max(steady), sum(times)))
        print(f"# {name}: graphs per window {graphs}", flush=True)

    print()
    print("| variant | warm-up s | graphs in warm-up | graphs in stream | windows that compiled "
          "| bootstrap ms | steady window ms p50 / p90 / max | stream s |")
    print("|---|---:|---:|---:|---:|---:|---|---:|")
    for name, wu, gw, gs, wc, boot, p50, p90, mx, total in rows:
        print(f"| {name} | {wu:.1f} | {gw} | {gs} | {wc} | {boot:.0f} | {p50:.0f} / {p90:.0f} / {mx:.0f} "
              f"| {total:.1f} |")


if __name__ == "__main__":
    main()
