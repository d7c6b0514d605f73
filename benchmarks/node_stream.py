"""Streaming behaviour of the core as the node runs it: input rate vs output rate, skips, latency.

    python3 benchmarks/node_stream.py                                   # oracle + small VGGT, CPU
    python3 benchmarks/node_stream.py --rates 5 10 30 --frames 120 --predictors oracle
    python3 benchmarks/node_stream.py --model default --device cuda --camera 640x480 --target 518 \
        --window 16 --stride 8 --rates 30 60 --frames 480 --predictors vggt-baseline vggt   # GPU, 1B

A producer thread feeds a synthetic sequence (vggt_ros.sim) into ``StreamingPipeline.add_frame`` at
a fixed input rate, like the camera callback; a worker thread loops ``next_window`` /
``run_window`` like the node's worker. Predictors:

* ``oracle``: ground truth + noise (costs only the pipeline itself);
* ``vggt-baseline``: VGGT eager fp32, all heads, no cache. ``--model small`` (default): the golden
  test config with the fixtures' synthetic weights; ``--model default``: the 1B layout with the
  same weight rule (speed does not depend on the values);
* ``vggt``: the same network with the streaming options (patch cache, no point head, and on CUDA
  bf16 autocast, the official dtype policy);
* ``vggt-fast``: plus ``dpt_autocast`` and regional ``torch.compile`` (``compile="blocks"``), which
  compiles the shared network in place: list it last.

Synthetic weights make VGGT's predictions meaningless, so windows may be rejected by the alignment:
"processed" counts new frames whose window finished (accepted or not), "published" those output.
Latency = time from a frame's arrival (add_frame) to the end of its window's processing; it
includes the wait for the window's other new frames (up to stride / rate). "window latency" = time
from the arrival of a window's newest frame (the moment the window can start) to the end of its
processing: what the node adds on top of the camera.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vggt_ros.core.config import PipelineConfig  # noqa: E402
from vggt_ros.core.oracle import OraclePredictor  # noqa: E402
from vggt_ros.core.pipeline import StreamingPipeline  # noqa: E402
from vggt_ros.model.config import VGGTConfig  # noqa: E402
from vggt_ros.model.engine import InferenceEngine  # noqa: E402
from vggt_ros.model.synthetic_weights import SEED_1B, SEED_SMALL, fill_state_dict  # noqa: E402
from vggt_ros.model.vggt import VGGT  # noqa: E402
from vggt_ros.sim.sequences import make_sequence  # noqa: E402

GOLDEN_CONFIGS = Path(__file__).resolve().parents[1] / "test" / "data" / "golden" / "configs.json"


_MODELS: dict[tuple[str, str], VGGT] = {}


def _model(kind: str, device: str) -> VGGT:
    """One network per (config, device), shared by the predictors (weights are never modified)."""
    if (kind, device) not in _MODELS:
        if kind == "small":
            model = VGGT(VGGTConfig(**json.loads(GOLDEN_CONFIGS.read_text())["small"])).eval()
            # the golden fixtures' weight rule: finite cameras (PyTorch's default init: FoV 0)
            fill_state_dict(model, SEED_SMALL)
            model = model.to(device)
        else:  # 1B layout with the golden weight rule: finite cameras and depths, like a real model
            model = VGGT.empty(VGGTConfig(), device=device)
            fill_state_dict(model, SEED_1B)
            model = model.eval()
        _MODELS[(kind, device)] = model
    return _MODELS[(kind, device)]


def make_predictor(name: str, seq, target: int, window: int, model_kind: str = "small", device: str = "cpu"):
    if name == "oracle":
        return OraclePredictor(seq, target_size=target, pose_noise_rot_deg=0.3, pose_noise_trans=0.005,
                               depth_noise=0.01, seed=1)
    model = _model(model_kind, device)
    if name == "vggt-baseline":
        return InferenceEngine(model, device=device, dtype="float32", target_size=target, patch_cache_size=0,
                               world_points=True)
    if name == "vggt-fast":  # DPT head under autocast + regional torch.compile (compiles the shared model
        # in place: run it after the other vggt predictors)
        return InferenceEngine(model, device=device, target_size=target, patch_cache_size=2 * window,
                               world_points=False, dpt_autocast=True, compile="blocks")
    return InferenceEngine(model, device=device, target_size=target, patch_cache_size=2 * window,
                           world_points=False)


def run_stream(predictor, seq, rate: float, cfg: PipelineConfig) -> dict[str, float]:
    frames = seq.to_frames()
    pipe = StreamingPipeline(cfg)
    arrival: dict[int, float] = {}
    done: dict[int, float] = {}
    published = 0
    infer: list[float] = []
    window_lat: list[float] = []
    producer_done = threading.Event()
    wake = threading.Event()

    def producer() -> None:
        t0 = time.perf_counter()
        for i, f in enumerate(frames):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            arrival[int(f.stamp_ns)] = time.perf_counter()
            if pipe.add_frame(f) and hasattr(predictor, "prefetch"):  # as the node's image callback
                predictor.prefetch([f.image], [f.stamp_ns])
            wake.set()
        producer_done.set()
        wake.set()

    def handle(job) -> None:
        nonlocal published
        out = pipe.run_window(job, predictor)
        now = time.perf_counter()
        infer.append(out.timings.get("predict", float("nan")))
        newest = max((arrival[int(f.stamp_ns)] for f, new in zip(job.frames, job.new_mask) if new),
                     default=None)
        if newest is not None:
            window_lat.append(now - newest)
        for f, new in zip(job.frames, job.new_mask):
            if new:
                done[int(f.stamp_ns)] = now
        published += len(out.frames)

    def worker() -> None:
        while True:
            job = pipe.next_window()
            if job is not None:
                handle(job)
                continue
            if producer_done.is_set():
                job = pipe.next_window() or pipe.flush()
                if job is None:
                    return
                handle(job)
                continue
            wake.wait(0.005)
            wake.clear()

    t_start = time.perf_counter()
    threads = [threading.Thread(target=producer), threading.Thread(target=worker)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = max(done.values(), default=time.perf_counter()) - t_start
    lat = np.array([done[s] - arrival[s] for s in done]) * 1e3
    c = pipe.counters()
    first, last = min(arrival.values()), max(arrival.values())
    return {
        "input_hz": (len(arrival) - 1) / (last - first) if len(arrival) > 1 else float("nan"),
        "processed_hz": len(done) / wall,
        "published_hz": published / wall,
        "frames": len(frames), "processed": len(done), "published": published,
        "skipped": c.get("skipped", 0), "windows": len(infer), "rejected": c.get("windows_rejected", 0),
        "infer_ms": statistics.median(infer) * 1e3 if infer else float("nan"),
        "p50": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "p90": float(np.percentile(lat, 90)) if lat.size else float("nan"),
        "p99": float(np.percentile(lat, 99)) if lat.size else float("nan"),
        "max": float(lat.max()) if lat.size else float("nan"),
        "win_p50": float(np.percentile(window_lat, 50)) * 1e3 if window_lat else float("nan"),
        "win_p90": float(np.percentile(window_lat, 90)) * 1e3 if window_lat else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--predictors", nargs="+", default=["oracle", "vggt-baseline", "vggt"],
                    choices=["oracle", "vggt-baseline", "vggt", "vggt-fast"])
    ap.add_argument("--rates", type=float, nargs="+", default=[5.0, 15.0], help="input rates, Hz")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--camera", default="160x120", help="camera W x H")
    ap.add_argument("--target", type=int, default=168, help="network width (multiple of 14)")
    ap.add_argument("--skip-policy", default="keep_newest", choices=["keep_newest", "keep_all"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--model", choices=["small", "default"], default="small",
                    help="VGGT config of the vggt predictors: small (golden test config) or default (1B)")
    ap.add_argument("--device", default="cpu", help="device of the vggt predictors (cpu, cuda)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cw, ch = (int(v) for v in args.camera.lower().split("x"))
    cfg = PipelineConfig(window_size=args.window, stride=args.stride, skip_policy=args.skip_policy,
                         min_valid_pixels=50)
    gpu = f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""
    print(f"# node_stream: {platform.machine()} {platform.processor() or ''}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, camera {cw}x{ch}, network width {args.target}, window "
          f"{args.window}, stride {args.stride}, {args.frames} frames, policy {args.skip_policy}, model "
          f"{args.model} on {args.device}"
          f"{gpu}", flush=True)
    rows = []
    for rate in args.rates:
        seq = make_sequence("forward", args.frames, height=ch, width=cw, fps=rate)
        for _ in seq:  # render (and cache) every image before timing
            pass
        for name in args.predictors:
            pred = make_predictor(name, seq, args.target, args.window, args.model, args.device)
            if name != "oracle":  # warm-up window: CUDA context, kernels, allocator
                warm = seq.to_frames()[:args.window + 2 * args.stride]
                for k in range(3):  # windows like the stream's (cache misses, then hits): compiled code
                    chunk = warm[k * args.stride:k * args.stride + args.window]  # sees its shapes
                    keys = [-1 - k * args.stride - i for i in range(len(chunk))]  # overlap -> cache hits
                    pred.predict([f.image for f in chunk], None, keys)
            r = run_stream(pred, seq, rate, cfg)
            rows.append((name, rate, r))
            print(f"{name:14s} in {r['input_hz']:6.2f} Hz  processed {r['processed_hz']:6.2f} Hz  "
                  f"published {r['published_hz']:6.2f} Hz  skipped {r['skipped']:3d}  "
                  f"windows {r['windows']:3d} (rejected {r['rejected']})  infer {r['infer_ms']:7.1f} ms  "
                  "latency p50/p90/p99/max "
                  f"{r['p50']:.0f}/{r['p90']:.0f}/{r['p99']:.0f}/{r['max']:.0f} ms  window latency p50/p90 "
                  f"{r['win_p50']:.0f}/{r['win_p90']:.0f} ms", flush=True)
    print()
    print("| predictor | input Hz | processed Hz | published Hz | out/in | skipped | windows (rejected) "
          "| inference ms/window | latency p50 / p90 / p99 / max ms | window latency p50 / p90 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for name, _rate, r in rows:
        print(f"| {name} | {r['input_hz']:.2f} | {r['processed_hz']:.2f} | {r['published_hz']:.2f} | "
              f"{r['processed_hz'] / r['input_hz']:.2f} | {r['skipped']} | {r['windows']} "
              f"({r['rejected']}) | {r['infer_ms']:.1f} | "
              f"{r['p50']:.0f} / {r['p90']:.0f} / {r['p99']:.0f} / {r['max']:.0f} | "
              f"{r['win_p50']:.0f} / {r['win_p90']:.0f} |")


if __name__ == "__main__":
    main()
