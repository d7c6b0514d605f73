"""Checks that need a GPU (run on one when available; CI has none): prints a table, exits 1 on failure.

    python3 benchmarks/gpu_checks.py [--skip-1b]

1. Golden parity on CUDA in float32 (TF32 off): all four fixture cases (small a/b, 1B a/b) through
   the model on the GPU, every stored output key against the official outputs with the tolerances of
   shared/spec/golden/README.md 4.2 (as test/test_model_golden.py does on CPU). Also reported, not
   checked: the same under the official bf16 autocast, and with ``dpt_autocast``.
2. The engine's CUDA input path (uint8 pinned upload, converted on the device) gives the same
   predictions as feeding the float tensor of the CPU preprocessing; its output path (one
   asynchronous copy into page-locked host memory) gives the same values as ``.cpu()``.
3. GPU out of memory: a window far too large raises ``InferenceOutOfMemory`` (not a crash), and the
   same engine then predicts a normal window correctly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test"))

from golden_weights import GOLDEN_DIR, SEED_1B, fill_state_dict, golden_config, small_golden_model  # noqa: E402

from vggt_ros.model import VGGT, VGGTConfig  # noqa: E402
from vggt_ros.model.engine import InferenceEngine, InferenceOutOfMemory  # noqa: E402
from vggt_ros.model.host_transfer import host_arrays  # noqa: E402
from vggt_ros.model.preprocessing import preprocess_images  # noqa: E402

REL_KEYS = ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf")
TRACK_ABS = {"track_list[0]": 1e-3, "track_list[1]": 1e-2, "vis": 2e-3, "conf": 2e-3}
rows: list[tuple[str, str, str, float, float, bool | None]] = []


def rel_bound(expected: torch.Tensor, rel: float = 1e-4) -> float:
    return rel * max(1.0, expected.abs().max().item())


def check(case: str, mode: str, key: str, actual: torch.Tensor, expected: torch.Tensor, bound: float,
          enforce: bool) -> None:
    actual = actual.detach().float().cpu()
    if actual.shape != expected.shape and actual.ndim >= 4:  # small_case_b stores dense maps at ::7
        actual = actual[:, :, ::7, ::7]
    finite = bool(torch.isfinite(actual).all())
    err = (actual.double() - expected.double()).abs().max().item() if finite else float("inf")
    rows.append((case, mode, key, err, bound, (err <= bound) if enforce else None))


def run_case(model: VGGT, case: str, device: torch.device) -> None:
    g = load_file(GOLDEN_DIR / f"{case}.safetensors")
    images = (g["images"] if "images" in g else g["images_u8"].float() / 255).to(device)
    q = g.get("query_points")
    q = None if q is None else q.to(device)
    small = case.startswith("small")
    modes = ("fp32", "bf16 autocast", "bf16 + dpt_autocast") if device.type == "cuda" else ("fp32",)
    for mode in modes:
        auto = mode != "fp32"
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=auto):
            out = model(images, query_points=q if small else None, dpt_autocast=mode.endswith("dpt_autocast"))
        enforce = mode == "fp32"
        for key in REL_KEYS:
            if key in g and key in out:
                check(case, mode, key, out[key], g[key], rel_bound(g[key]), enforce)
        if small and q is not None and "track_list" in out:
            for i in range(2):
                key = f"track_list[{i}]"
                check(case, mode, key, out["track_list"][i], g["track_list"][i], TRACK_ABS[key], enforce)
            for key in ("vis", "conf"):
                check(case, mode, key, out[key], g[key], TRACK_ABS[key], enforce)
        del out
    if device.type == "cuda":
        torch.cuda.empty_cache()


def engine_checks(model: VGGT, device: torch.device) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(4)]
    eng = InferenceEngine(model, device=device, dtype="float32", target_size=84, patch_cache_size=0)
    prepared = eng.prepare(frames)
    t = prepared.tensor
    ok_pinned = device.type != "cuda" or (t.dtype == torch.uint8 and t.is_pinned())
    pred = eng.predict_prepared(prepared)
    x, _ = preprocess_images(frames, target_size=84)
    with torch.inference_mode():
        ref = model(x.to(device), heads={"camera", "depth"})
    err = (torch.from_numpy(pred.depth) - ref["depth"][0, ..., 0].float().cpu()).abs().max().item()
    rows.append(("engine", "uint8 upload", "depth vs float input", err, 0.0, ok_pinned and err == 0.0))
    if device.type != "cuda":
        return
    host = host_arrays({"depth": ref["depth"][..., 0], "conf": ref["depth_conf"]}, eng.device)
    err = max((torch.from_numpy(host["depth"]) - ref["depth"][0, ..., 0].cpu()).abs().max().item(),
              (torch.from_numpy(host["conf"]) - ref["depth_conf"][0].cpu()).abs().max().item())
    pinned = all(torch.from_numpy(a).is_pinned() for a in host.values())
    rows.append(("engine", "pinned download", "outputs vs .cpu()", err, 0.0, pinned and err == 0.0))

    # out of memory: cap this process at 512 MiB of GPU memory (a real allocator OOM, as on a busy
    # card), then send a 256-frame 518x392 window (its float input alone is 0.6 GB)
    big = InferenceEngine(model, device=device, dtype="float32", target_size=518, patch_cache_size=0)
    frame = rng.integers(0, 256, (392, 518, 3), dtype=np.uint8)
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction(512 * 2**20 / total)
    raised = False
    try:
        big.predict([frame] * 256)
    except InferenceOutOfMemory as exc:
        raised = True
        print(f"OOM surfaced as InferenceOutOfMemory: {str(exc)[:160]}", flush=True)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    after = eng.predict(frames)
    same = float(np.abs(after.depth - pred.depth).max())
    rows.append(("engine", "GPU OOM", "raised, then same result", same, 0.0, raised and same == 0.0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-1b", action="store_true")
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of the fp32 checks")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"# gpu_checks: {name}, torch {torch.__version__}", flush=True)
    small = small_golden_model().to(device)
    for case in ("small_case_a", "small_case_b"):
        run_case(small, case, device)
    engine_checks(small, device)
    if not args.skip_1b:
        big = VGGT.empty(VGGTConfig(**golden_config("default")), device=device)
        fill_state_dict(big, SEED_1B)
        big.eval()
        for case in ("vggt1b_case_a", "vggt1b_case_b"):
            run_case(big, case, device)
    print()
    print("| case | mode | key | max abs error | bound | result |")
    print("|---|---|---|---:|---:|---|")
    for case, mode, key, err, bound, ok in rows:
        res = "reported" if ok is None else ("ok" if ok else "FAIL")
        print(f"| {case} | {mode} | {key} | {err:.3g} | {bound:.3g} | {res} |")
    failed = [r for r in rows if r[5] is False]
    print(f"\n{len(failed)} failed of {sum(r[5] is not None for r in rows)} checked")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
