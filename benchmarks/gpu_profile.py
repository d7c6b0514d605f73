"""Where the time of one streaming window goes on a GPU: per-module CUDA time, engine variants.

    python3 benchmarks/gpu_profile.py [--size 16] [--shape 518x392] [--repeat 5] [--ops]

1B layout with random weights (speed does not depend on the values). For each variant the
streaming engine (camera + depth heads, patch cache, half of each window's frames cached, bf16
autocast) runs ``--repeat`` windows after a warm-up; CUDA events around every top-level part
(DINOv2 patch embedding, frame blocks, global blocks, camera head, depth head) give the median time
of each. Variants: the reference numerics (DPT head in float32), ``dpt_autocast`` (DPT head in
bf16), and both with TF32 matmuls allowed. ``--ops`` also prints torch.profiler's top CUDA kernels.
Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from model_forward import build_model  # noqa: E402

from vggt_ros.model.engine import InferenceEngine  # noqa: E402

PARTS = ("patch_embed", "frame_blocks", "global_blocks", "camera_head", "depth_head")


class PartTimer:
    """CUDA events before/after each module of a part; summed per part and window."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.events: dict[str, list[tuple[torch.cuda.Event, torch.cuda.Event]]] = defaultdict(list)
        self.handles = []
        agg = model.aggregator
        groups = {"patch_embed": [agg.patch_embed], "frame_blocks": list(agg.frame_blocks),
                  "global_blocks": list(agg.global_blocks), "camera_head": [model.camera_head],
                  "depth_head": [model.depth_head]}
        for part, modules in groups.items():
            for m in modules:
                self.handles.append(m.register_forward_pre_hook(self._pre(part)))
                self.handles.append(m.register_forward_hook(self._post(part)))
        self._open: dict[str, torch.cuda.Event] = {}

    def _pre(self, part: str):
        def hook(module, args):
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self._open[part] = ev
        return hook

    def _post(self, part: str):
        def hook(module, args, out):
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self.events[part].append((self._open.pop(part), ev))
        return hook

    def take(self) -> dict[str, float]:
        torch.cuda.synchronize()
        out = {p: sum(a.elapsed_time(b) for a, b in self.events.get(p, [])) for p in PARTS}
        self.events.clear()
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--shape", default="518x392")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--ops", action="store_true")
    args = ap.parse_args()
    w, h = (int(v) for v in args.shape.split("x"))
    device = torch.device("cuda")
    model = build_model("default", device)
    rng = np.random.default_rng(0)
    S, stride = args.size, args.size // 2
    n = S + stride * (args.repeat + 1)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]
    print(f"# gpu_profile: {torch.cuda.get_device_name()}, torch {torch.__version__}, S={S} stride {stride} "
          f"at {w}x{h}, median of {args.repeat} windows (ms)", flush=True)
    rows = []
    for name, dpt_autocast, tf32 in (("reference heads (DPT fp32)", False, False),
                                     ("dpt_autocast", True, False),
                                     ("reference heads + TF32", False, True),
                                     ("dpt_autocast + TF32", True, True)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        eng = InferenceEngine(model, device=device, dtype="auto", patch_cache_size=2 * S, world_points=False,
                              dpt_autocast=dpt_autocast, target_size=max(w, h))
        timer = PartTimer(model)
        parts: dict[str, list[float]] = defaultdict(list)
        totals = []
        for k in range(args.repeat + 1):
            window = frames[k * stride:k * stride + S]
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            pred = eng.predict(window, None, list(range(k * stride, k * stride + S)))
            end.record()
            t = timer.take()
            if k == 0:
                continue  # warm-up (fills the patch cache)
            totals.append(start.elapsed_time(end))
            for p in PARTS:
                parts[p].append(t[p])
            host = pred.timings["preprocess"] + pred.timings["postprocess"]
            parts["host (preprocess+post)"].append(host * 1e3)
        timer.remove()
        row = {p: statistics.median(v) for p, v in parts.items()}
        row["total"] = statistics.median(totals)
        rows.append((name, row))
        print(name, {k: round(v, 1) for k, v in row.items()}, flush=True)
        if args.ops and dpt_autocast and not tf32:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                eng.predict(frames[:S], None, list(range(S)))
            try:
                print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=18), flush=True)
            except Exception:  # noqa: BLE001  (column name differs across torch versions)
                print(prof.key_averages().table(sort_by="device_time_total", row_limit=18), flush=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    cols = [*PARTS, "host (preprocess+post)", "total"]
    print()
    print("| variant | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for name, row in rows:
        print(f"| {name} | " + " | ".join(f"{row.get(c, float('nan')):.1f}" for c in cols) + " |")


if __name__ == "__main__":
    main()
