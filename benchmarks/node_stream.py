"""Streaming behaviour of the core as the node runs it: input rate vs output rate, skips, latency.

    python3 benchmarks/node_stream.py                                   # oracle + small VGGT, CPU
    python3 benchmarks/node_stream.py --rates 5 10 30 --frames 120 --predictors oracle
    python3 benchmarks/node_stream.py --model default --device cuda --camera 640x480 --target 518 \
        --window 16 --stride 8 --rates 30 60 --frames 480 --predictors vggt-baseline vggt   # GPU, 1B

The node's loop (:class:`vggt_ros.runner.stream_runner.StreamRunner`, threaded) is fed a synthetic
sequence (vggt_ros.sim) at a fixed input rate, like the camera callback; the outputs (``emit``:
per-frame depth, clouds, map update, then the fields of every message the node publishes, built by
its OutputBuilder) are built either on the worker after each window (mode ``serial``) or on the
output thread while the worker predicts the next window (mode ``overlap``, the node's
``overlap_outputs``, its default). Predictors:

* ``oracle``: ground truth + noise (costs only the pipeline itself);
* ``vggt-baseline``: VGGT eager fp32, all heads, no cache. ``--model small`` (default): the golden
  test config with the fixtures' synthetic weights; ``--model default``: the 1B layout with the
  same weight rule (speed does not depend on the values);
* ``vggt``: the same network with the streaming options (patch cache, no point head, and on CUDA
  bf16 autocast, the official dtype policy);
* ``vggt-fast``: plus ``dpt_autocast`` and regional ``torch.compile`` (``compile="blocks"``), which
  compiles the shared network in place: list it last;
* ``device-sim``: stands in for inference on an accelerator when none is lent. The oracle's
  predictions of every window are computed before the timed run (an untimed pass over the same
  stream; with ``--skip-policy keep_all`` the windows are the same in both passes), and ``predict``
  returns the stored prediction after sleeping ``--device-ms`` (the GIL is released, no CPU is used,
  as while a GPU computes). It shows what the CPU side (placement, outputs, map, message fields)
  allows at a given device inference time. Windows missing from the store are predicted by the
  oracle and counted ("misses").

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
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vggt_ros.core.config import PipelineConfig  # noqa: E402
from vggt_ros.core.oracle import OraclePredictor  # noqa: E402
from vggt_ros.core.pipeline import StreamingPipeline  # noqa: E402
from vggt_ros.core.types import PredictorBase  # noqa: E402
from vggt_ros.model.config import VGGTConfig  # noqa: E402
from vggt_ros.model.engine import InferenceEngine  # noqa: E402
from vggt_ros.model.synthetic_weights import SEED_1B, SEED_SMALL, fill_state_dict  # noqa: E402
from vggt_ros.model.vggt import VGGT  # noqa: E402
from vggt_ros.outputs.builder import FieldsOnly, OutputBuilder  # noqa: E402
from vggt_ros.outputs.pose_frames import PoseFrames  # noqa: E402
from vggt_ros.params.validation import pipeline_config_from_params, validate_params  # noqa: E402
from vggt_ros.runner.stream_runner import StreamRunner  # noqa: E402
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


def make_predictor(name: str, seq, target: int, window: int, model_kind: str = "small", device: str = "cpu",
                   cfg: PipelineConfig | None = None, device_ms: float = 0.0):
    if name in ("oracle", "device-sim"):
        oracle = OraclePredictor(seq, target_size=target, pose_noise_rot_deg=0.3, pose_noise_trans=0.005,
                                 depth_noise=0.01, seed=1)
        return oracle if name == "oracle" else DeviceSimPredictor(oracle, cfg, seq.to_frames(), device_ms)
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


class DeviceSimPredictor(PredictorBase):
    """Stored oracle predictions, returned after a sleep standing in for accelerator time."""

    def __init__(self, oracle: OraclePredictor, cfg: PipelineConfig, frames, device_ms: float) -> None:
        self.oracle, self.sleep_s, self.misses = oracle, device_ms / 1e3, 0
        self.store: dict[tuple[int, ...], object] = {}
        pipe = StreamingPipeline(cfg)  # untimed pass: the same windows as the timed run (keep_all)
        for k, f in enumerate(frames):
            pipe.add_frame(f)
            job = pipe.next_window() or (pipe.flush() if k == len(frames) - 1 else None)
            while job is not None:
                pred = oracle.predict(job.images, job.query_points, job.frame_keys)
                pred.world_points = pred.world_points_conf = None  # the node's engine skips the point head
                self.store[tuple(job.frame_keys)] = pred
                pipe.process(job, pred)
                job = pipe.next_window() or (pipe.flush() if k == len(frames) - 1 else None)

    def predict(self, images, query_points=None, frame_keys=None):
        pred = self.store.get(tuple(frame_keys))
        if pred is None:
            self.misses += 1
            return self.oracle.predict(images, query_points, frame_keys)
        time.sleep(self.sleep_s)
        return pred


def run_stream(predictor, seq, rate: float, params: dict, overlap: bool = False) -> dict[str, float]:
    """The node's loop (StreamRunner, threaded) fed at ``rate`` by a producer like the image callback;
    outputs built by the node's OutputBuilder."""
    frames = seq.to_frames()
    pipe = StreamingPipeline(pipeline_config_from_params(params))
    builder = OutputBuilder(params, FieldsOnly(), PoseFrames(params, np.eye(4), None))
    arrival: dict[int, float] = {}
    done: dict[int, float] = {}
    published = 0
    infer: list[float] = []
    window_lat: list[float] = []
    place_s: list[float] = []
    emit_s: list[float] = []

    def on_output(out, latency: float) -> None:
        nonlocal published
        t0 = time.perf_counter()
        builder.window(out)
        now = time.perf_counter()
        if not out.accepted:
            return
        infer.append(out.timings["predict"])
        place_s.append(out.timings["place"])
        emit_s.append(out.timings["emit"] + now - t0)
        window_lat.append(now - max(arrival[int(f.stamp_ns)] for f in out.frames))
        for f in out.frames:
            done[int(f.stamp_ns)] = now
        published += len(out.frames)

    runner = StreamRunner(pipe, predictor, on_output, overlap_outputs=overlap)
    t_start = time.perf_counter()
    runner.start()
    for i, f in enumerate(frames):
        delay = t_start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        arrival[int(f.stamp_ns)] = time.perf_counter()
        runner.add_frame(f)
    runner.finish()
    wall = max(done.values(), default=time.perf_counter()) - t_start
    lat = np.array([done[s] - arrival[s] for s in done]) * 1e3
    c = pipe.counters()
    first, last = min(arrival.values()), max(arrival.values())
    processed = len(done) + c.get("frames_lost_rejected", 0)
    return {
        "input_hz": (len(arrival) - 1) / (last - first) if len(arrival) > 1 else float("nan"),
        "processed_hz": processed / wall,
        "published_hz": published / wall,
        "frames": len(frames), "processed": processed, "published": published,
        "skipped": c.get("skipped", 0), "windows": c.get("windows", 0),
        "rejected": c.get("windows_rejected", 0),
        "infer_ms": statistics.median(infer) * 1e3 if infer else float("nan"),
        "p50": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "p90": float(np.percentile(lat, 90)) if lat.size else float("nan"),
        "p99": float(np.percentile(lat, 99)) if lat.size else float("nan"),
        "max": float(lat.max()) if lat.size else float("nan"),
        "win_p50": float(np.percentile(window_lat, 50)) * 1e3 if window_lat else float("nan"),
        "win_p90": float(np.percentile(window_lat, 90)) * 1e3 if window_lat else float("nan"),
        "place_ms": statistics.median(place_s) * 1e3 if place_s else float("nan"),
        "emit_ms": statistics.median(emit_s) * 1e3 if emit_s else float("nan"),
    }


def print_row(name: str, r: dict[str, float]) -> None:
    print(f"{name:24s} in {r['input_hz']:6.2f} Hz  processed {r['processed_hz']:6.2f} Hz  "
          f"published {r['published_hz']:6.2f} Hz  skipped {r['skipped']:3d}  "
          f"windows {r['windows']:3d} (rejected {r['rejected']})  infer {r['infer_ms']:7.1f} ms  "
          "latency p50/p90/p99/max "
          f"{r['p50']:.0f}/{r['p90']:.0f}/{r['p99']:.0f}/{r['max']:.0f} ms  window latency p50/p90 "
          f"{r['win_p50']:.0f}/{r['win_p90']:.0f} ms  place {r['place_ms']:.1f} ms  outputs+fields "
          f"{r['emit_ms']:.1f} ms", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--predictors", nargs="+", default=["oracle", "vggt-baseline", "vggt"],
                    choices=["oracle", "device-sim", "vggt-baseline", "vggt", "vggt-fast"])
    ap.add_argument("--device-ms", type=float, default=183.0,
                    help="device-sim: simulated accelerator time per window, ms (default: the H200's "
                         "compiled 1B S=16 inference)")
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
    ap.add_argument("--modes", nargs="+", default=["serial", "overlap"], choices=["serial", "overlap"],
                    help="outputs on the worker (serial) or an output thread (overlap, node default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cw, ch = (int(v) for v in args.camera.lower().split("x"))
    params = validate_params(dict(predictor="oracle", checkpoint="", window_size=args.window,
                                  stride=args.stride, skip_policy=args.skip_policy, min_valid_pixels=50))
    cfg = pipeline_config_from_params(params)
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
            pred = make_predictor(name, seq, args.target, args.window, args.model, args.device, cfg,
                                  args.device_ms)
            if name == "vggt-fast":  # compile every window shape of the stream first, as the node does
                report = pred.warmup(args.window, args.stride, image_hw=(ch, cw), eager_on_recompile=True)
                print(f"#   warm-up: {report['graphs_compiled']} graphs in {report['seconds']:.1f} s",
                      flush=True)
            if name not in ("oracle", "device-sim"):  # warm-up window: CUDA context, kernels, allocator
                warm = seq.to_frames()[:args.window + 2 * args.stride]
                for k in range(3):  # windows like the stream's (cache misses, then hits): compiled code
                    chunk = warm[k * args.stride:k * args.stride + args.window]  # sees its shapes
                    keys = [-1 - k * args.stride - i for i in range(len(chunk))]  # overlap -> cache hits
                    pred.predict([f.image for f in chunk], None, keys)
            for mode in args.modes:
                r = run_stream(pred, seq, rate, params, overlap=mode == "overlap")
                rows.append((f"{name} ({mode})", rate, r))
                print_row(f"{name} ({mode})", r)
                if name == "device-sim":
                    print(f"#   device-sim: {args.device_ms:.0f} ms per window, windows not in the store "
                          f"(predicted by the oracle instead): {pred.misses}", flush=True)
                    pred.misses = 0
    print()
    print("| predictor | input Hz | processed Hz | published Hz | out/in | skipped | windows (rejected) "
          "| inference ms/window | place ms | outputs + fields ms | latency p50 / p90 / p99 / max ms "
          "| window latency p50 / p90 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for name, _rate, r in rows:
        print(f"| {name} | {r['input_hz']:.2f} | {r['processed_hz']:.2f} | {r['published_hz']:.2f} | "
              f"{r['processed_hz'] / r['input_hz']:.2f} | {r['skipped']} | {r['windows']} "
              f"({r['rejected']}) | {r['infer_ms']:.1f} | {r['place_ms']:.1f} | {r['emit_ms']:.1f} | "
              f"{r['p50']:.0f} / {r['p90']:.0f} / {r['p99']:.0f} / {r['max']:.0f} | "
              f"{r['win_p50']:.0f} / {r['win_p90']:.0f} |")


if __name__ == "__main__":
    main()
