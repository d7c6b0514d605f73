"""Streaming throughput of the VGGT engine: optimised paths vs a plain eager baseline, same run.

    python3 benchmarks/model_throughput.py                          # GPU: 1B, S = 8 16 32 64 @ 518x392
    python3 benchmarks/model_throughput.py --config small --sizes 4 8 16 --shape 518x392   # CPU
    python3 benchmarks/model_throughput.py --config default --sizes 2 4 --shape 182x140    # 1B on CPU

A stream of random camera frames (already at the network size, so preprocessing is a copy) is cut
into windows of S frames with stride S/2, as the node does. For every window, each variant runs
once, in an interleaved order (so machine noise hits all variants alike):

* baseline: eager fp32, no autocast, no patch cache, all heads incl. the point head (the official
  ``model(images)`` call);
* lean heads: camera + depth only (the core builds points from depth + cameras);
* lean + cache: plus the per-frame patch-token cache (half of each window's frames are cached);
* lean + cache + autocast: plus bf16 (fp16 before Ampere) autocast, CUDA only (the DPT head stays
  float32, as the reference);
* + dpt_autocast: the DPT head in bf16 too (CUDA only; depth differs by bf16 rounding);
* [--compile] + regional torch.compile of the transformer blocks (``compile="blocks"``, on a copy
  of the model); its first window includes the compilation.

Latency is the median (``--stat min`` on a shared CPU) over the windows after the first
``--warmup`` ones (the first window fills the cache); frames/s = stride / latency (new frames per
second of inference). Peak memory: CUDA = ``max_memory_allocated`` during the variant's windows;
CPU = peak RSS above the pre-call RSS (peak reset through /proc/self/clear_refs), i.e. the working
memory of one window. Random weights: speed and memory do not depend on the values.
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

from model_forward import build_model  # noqa: E402  (same cheap random-weight builder)

from vggt_ros.model.engine import InferenceEngine, InferenceOutOfMemory  # noqa: E402
from vggt_ros.model.vggt import VGGT  # noqa: E402


def _proc_status_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


class PeakMemory:
    """Peak working memory of a call: CUDA allocated, or CPU RSS above the RSS before the call."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0.0

    def run(self, fn):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            before = torch.cuda.memory_allocated(self.device)
            result = fn()
            torch.cuda.synchronize(self.device)
            used = (torch.cuda.max_memory_allocated(self.device) - before) / 2**20
        else:
            try:
                with open("/proc/self/clear_refs", "w") as fh:
                    fh.write("5")  # reset VmHWM (peak RSS) to the current RSS
            except OSError:
                pass
            before = _proc_status_mb("VmRSS")
            result = fn()
            used = _proc_status_mb("VmHWM") - before
        self.peak = max(self.peak, used)
        return result


def variants(model: VGGT, device: torch.device, size: int, use_compile: bool,
             target_size: int, mode: str, only: list[str] | None = None) -> dict[str, InferenceEngine]:
    common = dict(device=device, target_size=target_size, preprocess_mode=mode)
    out = {
        "baseline": InferenceEngine(model, dtype="float32", patch_cache_size=0, world_points=True, **common),
        "lean heads": InferenceEngine(model, dtype="float32", patch_cache_size=0, world_points=False,
                                      **common),
        "lean+cache": InferenceEngine(model, dtype="float32", patch_cache_size=2 * size, world_points=False,
                                      **common),
    }
    if device.type == "cuda":
        out["lean+cache+autocast"] = InferenceEngine(model, dtype="auto", patch_cache_size=2 * size,
                                                     world_points=False, **common)
        out["+dpt_autocast"] = InferenceEngine(model, dtype="auto", patch_cache_size=2 * size,
                                               world_points=False, dpt_autocast=True, **common)
    if use_compile:  # regional compile changes the module in place: give it its own copy
        out["+compile(blocks)"] = InferenceEngine(copy.deepcopy(model), dtype="auto",
                                                  patch_cache_size=2 * size, world_points=False,
                                                  dpt_autocast=device.type == "cuda", compile="blocks",
                                                  **common)
    if only:
        out = {k: v for k, v in out.items() if k in only or k == "baseline"}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", choices=["default", "small"], default="default")
    ap.add_argument("--sizes", type=int, nargs="+", default=None,
                    help="window sizes S (default: 8 16 32 64 on CUDA, 4 8 on CPU)")
    ap.add_argument("--shape", default="518x392", help="network W x H (camera frames are made this size)")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    ap.add_argument("--windows", type=int, default=None, help="streamed windows per size (default 8 / 4)")
    ap.add_argument("--warmup", type=int, default=1, help="windows excluded from the latency statistic")
    ap.add_argument("--stat", choices=["median", "min"], default="median",
                    help="latency statistic over the windows (min resists other processes on a shared CPU)")
    ap.add_argument("--compile", action="store_true", help="add a torch.compile variant (slow warm-up)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--variants", nargs="+", default=None,
                    help="run only these variants (plus the baseline), e.g. for large S")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    sizes = args.sizes or ([8, 16, 32, 64] if device.type == "cuda" else [4, 8])
    n_windows = args.windows or (8 if device.type == "cuda" else 4)
    w, h = (int(v) for v in args.shape.lower().split("x"))
    if max(w, h) % 14 or min(w, h) % 14:
        raise SystemExit("--shape sides must be multiples of 14")

    t = time.perf_counter()
    model = build_model(args.config, device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"# model_throughput: config {args.config} ({params_m:.1f} M params, built in "
          f"{time.perf_counter() - t:.1f} s), device {device} ({gpu}), torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, network {w}x{h}, {n_windows} windows per size, stride S/2, "
          f"{args.stat} after {args.warmup} warm-up window(s)", flush=True)
    rng = np.random.default_rng(0)
    rows = []
    for size in sizes:
        stride = max(1, size // 2)
        n_frames = size + stride * (n_windows - 1)
        frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n_frames)]
        engines = variants(model, device, size, args.compile, max(w, h), "crop" if w >= h else "pad",
                           args.variants)
        times: dict[str, list[float]] = {k: [] for k in engines}
        mem = {k: PeakMemory(device) for k in engines}
        oom = False
        try:
            for k in range(n_windows):
                window = frames[k * stride:k * stride + size]
                keys = list(range(k * stride, k * stride + size))
                names = list(engines) if k % 2 == 0 else list(engines)[::-1]  # alternate the order
                for name in names:
                    eng = engines[name]
                    t0 = time.perf_counter()
                    mem[name].run(lambda eng=eng, window=window, keys=keys: eng.predict(window, None, keys))
                    times[name].append(time.perf_counter() - t0)
        except InferenceOutOfMemory as exc:
            print(f"S={size}: {exc}", flush=True)
            oom = True
        if oom:
            break
        stat = statistics.median if args.stat == "median" else min
        base = stat(times["baseline"][args.warmup:])
        base_mem = mem["baseline"].peak
        for name in engines:
            lat = stat(times[name][args.warmup:])
            rows.append((size, stride, name, lat, stride / lat, base / lat, mem[name].peak,
                         mem[name].peak / base_mem if base_mem > 0 else float("nan")))
            print(f"S={size:3d} {name:22s} {lat * 1e3:9.1f} ms/window  {stride / lat:7.2f} frames/s  "
                  f"x{base / lat:5.2f}  peak {mem[name].peak:8.1f} MB", flush=True)
        if "lean+cache" in engines:
            print(f"S={size:3d} patch cache: {engines['lean+cache'].patch_cache.stats()}", flush=True)
        del engines
        if device.type == "cuda":
            torch.cuda.empty_cache()

    print()
    print("| S | stride | variant | latency ms/window | frames/s | speedup vs baseline | peak MB "
          "| memory vs baseline |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    for size, stride, name, lat, fps, speed, peak, mratio in rows:
        print(f"| {size} | {stride} | {name} | {lat * 1e3:.1f} | {fps:.2f} | {speed:.2f}x | {peak:.0f} | "
              f"{mratio:.2f}x |")


if __name__ == "__main__":
    main()
