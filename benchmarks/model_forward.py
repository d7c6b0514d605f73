"""VGGT forward time per frame and peak memory vs window size (prints a table, asserts nothing).

Run from the repository root (PYTHONPATH=. unless the package is installed):

    python3 benchmarks/model_forward.py                       # 1B layout, random weights, S = 1 4 8 16
    python3 benchmarks/model_forward.py --config small --sizes 1 4
    python3 benchmarks/model_forward.py --sizes 1 4 --shapes 518x392 --devices cpu

Random weights (no checkpoint needed): speed and memory do not depend on the values. Each row is
one full forward (aggregator + camera/depth/point heads, no tracks) on S frames at the network size
W x H (518x392 = a 4:3 camera in the official crop mode; 518x518 = square or pad mode). The baseline
measured in the same run is S = 1 of the same device/shape: "per-frame vs S=1" shows how the cost per
frame grows with the window (global attention is quadratic in S * tokens). fp32 on CPU; on CUDA the
official autocast dtype (bf16 on compute capability >= 8, else fp16). CPU memory is the process's
peak RSS so far (a high-water mark, so it only grows down the table); CUDA memory is the peak
allocated during that forward. Also prints the preprocessing cost of one 640x480 camera image.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vggt_ros.model.config import VGGTConfig
from vggt_ros.model.engine import resolve_dtype
from vggt_ros.model.preprocessing import preprocess_images
from vggt_ros.model.vggt import VGGT

GOLDEN_CONFIGS = Path(__file__).resolve().parents[1] / "test" / "data" / "golden" / "configs.json"


def build_model(name: str, device: torch.device) -> VGGT:
    """Model with cheap random weights (skips the slow default init of 1.3 B parameters)."""
    cfg = VGGTConfig(**json.loads(GOLDEN_CONFIGS.read_text())[name]) if name == "small" else VGGTConfig()
    model = VGGT.empty(cfg, device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for key, p in model.state_dict().items():
            if key.endswith("weight") and p.ndim == 1:
                p.fill_(1.0)  # norm scales
            else:
                p.normal_(0.0, 0.02, generator=gen)
    return model.eval()


def peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def time_forward(model: VGGT, images: torch.Tensor, dtype: torch.dtype, repeat: int,
                 part: str = "full") -> float:
    device = images.device
    run = model if part == "full" else (lambda x: model.aggregator(x[None], keep_layers=None))
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        with torch.inference_mode(), torch.autocast(device_type=device.type, dtype=dtype,
                                                    enabled=device.type == "cuda" and dtype != torch.float32):
            run(images)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", choices=["default", "small"], default="default",
                    help="default = VGGT-1B layout (random weights); small = the golden test config")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8, 16], help="window sizes S")
    ap.add_argument("--shapes", nargs="+", default=["518x392", "518x518"], help="network W x H")
    ap.add_argument("--devices", nargs="+", default=None, help="cpu and/or cuda (default: all available)")
    ap.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16 (CUDA only)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="timed runs per row (default: 1 on CPU, 5 on CUDA)")
    ap.add_argument("--part", choices=["full", "aggregator"], default="full",
                    help="full forward (heads included) or the aggregator alone (as the official table)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])

    rng = np.random.default_rng(0)
    cam = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    preprocess_images([cam])
    t = time.perf_counter()
    for _ in range(10):
        preprocess_images([cam])
    print(f"preprocess 640x480 -> 518x392 (PIL bicubic): {(time.perf_counter() - t) / 10 * 1e3:.1f} ms/frame",
          flush=True)

    header = f"{'config':8} {'device':6} {'dtype':9} {'WxH':8} {'S':>3} {'forward s':>10} {'s/frame':>9} " \
             f"{'per-frame vs S=1':>17} {'peak MB':>9}"
    for dev_name in devices:
        device = torch.device(dev_name)
        dtype = resolve_dtype(args.dtype, device)
        repeat = args.repeat or (5 if device.type == "cuda" else 1)
        t = time.perf_counter()
        model = build_model(args.config, device)
        print(f"\nbuilt {args.config} model on {device} in {time.perf_counter() - t:.1f} s "
              f"({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M params), torch threads "
              f"{torch.get_num_threads()}", flush=True)
        print(f"timing: {args.part}", flush=True)
        print(header, flush=True)
        for shape in args.shapes:
            w, h = (int(v) for v in shape.lower().split("x"))
            base = None
            # Warm-up (kernel selection, allocator) on one frame, not timed.
            time_forward(model, torch.rand(1, 3, h, w, device=device), dtype, 1, args.part)
            for s in args.sizes:
                images = torch.rand(s, 3, h, w, device=device)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                try:
                    sec = time_forward(model, images, dtype, repeat, args.part)
                except torch.OutOfMemoryError:
                    print(f"{args.config:8} {dev_name:6} {'':9} {shape:8} {s:>3} out of memory", flush=True)
                    torch.cuda.empty_cache()
                    break
                per = sec / s
                base = per if base is None and s == args.sizes[0] else base
                ratio = f"{per / base:.2f}x" if base else "-"
                print(f"{args.config:8} {dev_name:6} {str(dtype).replace('torch.', ''):9} {shape:8} {s:>3} "
                      f"{sec:>10.3f} {per:>9.3f} {ratio:>17} {peak_mb(device):>9.0f}", flush=True)
                del images
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
