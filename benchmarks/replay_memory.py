"""Peak memory of the bag replay against bag length: it must stay flat, whatever the number of frames.

    python3 benchmarks/replay_memory.py [--sizes 300x320x240 1200x320x240 2500x640x480] [--json out.json]
                                        [--set NAME=VALUE ...] [--keep DIR]

Each size (FRAMESxWIDTHxHEIGHT) is a synthetic RGB-D bag (MCAP, 32FC1 depth, TUM ground truth) replayed
with the oracle predictor and the default outputs (config/vggt.yaml) in a fresh Python process, whose
peak RSS (``ru_maxrss``) is reported with the wall time. Why a looped orbit: rendering 2500 frames of
640x480 takes ~8 minutes (0.19 s a frame on one core); the closed 30 Hz orbit of
:class:`vggt_ros.sim.periodic.PeriodicOrbit` (360 frames, one turn) is rendered once and written again
and again with increasing stamps, so the camera never jumps and the ground truth stays exact.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_SIZES = ("300x320x240", "1200x320x240", "2500x640x480")


class LoopedOrbit:
    """``frames`` frames of the closed orbit, looped: what :func:`write_sequence_bag` needs of a sequence."""

    def __init__(self, frames: int, height: int, width: int, fps: float = 30.0) -> None:
        from vggt_ros.sim.periodic import PeriodicOrbit

        self.orbit = PeriodicOrbit(fps=fps, height=height, width=width)
        seq = self.orbit.seq
        n = len(seq)
        idx = np.arange(frames) % n
        self.K = seq.K
        self.stamps_ns = seq.stamps_ns[0] + self.orbit.period_ns * np.arange(frames, dtype=np.int64)
        self.world_T_camera = seq.world_T_camera[idx]

    def __len__(self) -> int:
        return int(self.stamps_ns.shape[0])

    def render_frame(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.orbit.seq.render_frame(i % len(self.orbit.seq))


def make_bag(root: Path, frames: int, width: int, height: int) -> tuple[Path, Path, float]:
    """(bag dir, groundtruth.txt, seconds taken) of a looped-orbit bag."""
    from vggt_ros.sim.bags import write_groundtruth_tum, write_sequence_bag

    t0 = time.perf_counter()
    seq = LoopedOrbit(frames, height, width)
    bag = write_sequence_bag(seq, root / f"orbit_{frames}_{width}x{height}", "mcap")
    gt = write_groundtruth_tum(seq, root / f"groundtruth_{frames}_{width}x{height}.txt")
    return bag, gt, time.perf_counter() - t0


def child(bag: str, gt: str, out: str, sets: list[str]) -> None:
    """Replay in this (fresh) process and print one JSON line."""
    import logging

    logging.basicConfig(level=logging.ERROR)
    from vggt_ros.bag.cli import _parse_set
    from vggt_ros.bag.replay import ReplayOptions, load_params, replay_bag

    params = load_params(None, {"predictor": "oracle", **_parse_set(sets)})
    t0 = time.perf_counter()
    m = replay_bag(bag, out, ReplayOptions(params=params, gt_file=gt))
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    t = m.get("trajectory") or {}
    print(json.dumps({"frames": m["frames_decoded"], "processed": m["frames_processed"], "peak_rss_mib": rss,
                      "wall_s": wall, "ate_rmse": (t.get("ate") or {}).get("rmse"),
                      "depth_abs_rel": (m["depth"].get("per_frame_median_scale") or {}).get("abs_rel")}))


def measure(size: str, root: Path, sets: list[str]) -> dict[str, Any]:
    frames, width, height = (int(v) for v in size.lower().split("x"))
    bag, gt, gen_s = make_bag(root, frames, width, height)
    cmd = [sys.executable, __file__, "--child", str(bag), str(gt), str(root / f"out_{size}")]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"replay of {size} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res.update(size=size, width=width, height=height, bag_write_s=gen_s)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), metavar="FRAMESxWxH")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="node parameter")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--keep", default=None, help="write the bags and outputs here (default: a temp dir)")
    ap.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child, args.set)
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="replay_memory_") as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        head = f"{'frames':>7} {'size':>8} {'peak RSS MiB':>13} {'replay s':>9} {'bag write s':>12}"
        print(head, flush=True)
        for size in args.sizes:
            r = measure(size, root, args.set)
            results.append(r)
            print(f"{r['frames']:>7} {r['width']:>4}x{r['height']:<4}{r['peak_rss_mib']:>13.0f} "
                  f"{r['wall_s']:>9.1f} {r['bag_write_s']:>12.1f}", flush=True)
            if not args.keep:  # bags of 640x480 are gigabytes
                shutil.rmtree(root / f"orbit_{r['frames']}_{r['width']}x{r['height']}", ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
