"""``vggt-ros-replay``: the command line of the bag replay (:mod:`vggt_ros.bag.replay`).

    vggt-ros-replay BAG [BAG ...] --out DIR [--params config/vggt.yaml] [--predictor vggt|oracle]
        [--checkpoint CKPT] [--image-topic T] [--depth-topic T] [--gt FILE | --gt-topic SPEC]
        [--realtime RATE] [--max-frames N] [--set NAME=VALUE ...] [--ray local|auto|ADDRESS]

Several bags give one subfolder each plus summary.md and summary.csv with one row per bag; with
``--ray`` each bag is a Ray task (:mod:`vggt_ros.bag.batch`; the optional ``ray`` extra). Exit code
2 on bad input (a message, no traceback), 1 when a Ray task itself failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vggt_ros.bag.batch import BagJob, run_ray, run_sequential
from vggt_ros.bag.errors import ReplayError
from vggt_ros.bag.replay import ReplayOptions, load_params
from vggt_ros.bag.report import batch_row, write_batch_summary


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ReplayError(f"--set expects NAME=VALUE, got {item!r}")
        out[name.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def build_arg_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="vggt-ros-replay",
        description="Replay rosbags (ROS 1 .bag, ROS 2 .db3/.mcap) through the vggt_ros pipeline and "
        "evaluate "
        "against ground truth.",
    )
    ap.add_argument(
        "bags", nargs="+", metavar="BAG", help="ROS 1 .bag, ROS 2 bag directory, or .mcap/.db3 file"
    )
    ap.add_argument("--out", required=True, help="output folder (one subfolder per bag when several)")
    ap.add_argument("--params", default=None, help="node parameter YAML (default: config/vggt.yaml)")
    ap.add_argument(
        "--predictor", choices=("vggt", "oracle"), default=None, help="override the 'predictor' parameter"
    )
    ap.add_argument("--checkpoint", default=None, help="override the 'checkpoint' parameter")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override any node parameter (YAML value), repeatable",
    )
    ap.add_argument("--image-topic", default=None)
    ap.add_argument("--depth-topic", default=None, help="GT depth topic (16UC1 mm or 32FC1 m); '' = none")
    ap.add_argument("--camera-info-topic", default=None)
    g = ap.add_mutually_exclusive_group()
    g.add_argument(
        "--gt", default=None, metavar="FILE", help="TUM ground truth (timestamp tx ty tz qx qy qz qw)"
    )
    g.add_argument(
        "--gt-topic",
        default=None,
        metavar="SPEC",
        help="GT in the bag: '/tf:world.kinect' (TF frame path) or an Odometry/PoseStamped topic",
    )
    ap.add_argument(
        "--realtime",
        type=float,
        default=None,
        metavar="RATE",
        help="simulate a live camera at RATE x bag speed (the node's skip policy applies)",
    )
    ap.add_argument("--max-frames", type=int, default=None, metavar="N")
    ap.add_argument("--oracle-rot-noise-deg", type=float, default=0.0)
    ap.add_argument("--oracle-trans-noise", type=float, default=0.0)
    ap.add_argument("--oracle-depth-noise", type=float, default=0.0)
    ap.add_argument("--oracle-random-scale", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                    help="oracle: a random extra scale factor per window, uniform in [LO, HI]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--ray",
        default=None,
        metavar="ADDRESS",
        help="run each bag as a Ray task: 'local' (a private local instance), 'auto' (the running "
        "cluster) or HOST:PORT; needs the 'ray' extra",
    )
    ap.add_argument("--ray-gpus-per-bag", type=float, default=0.0, metavar="N", help="GPUs per Ray task")
    ap.add_argument("--no-progress", action="store_true", help="no bars over bags and frames")
    ap.add_argument("--log-level", default="WARNING")
    return ap


def _bag_name(path: str, used: set[str]) -> str:
    p = Path(path.rstrip("/"))
    name = p.stem if p.suffix in (".bag", ".mcap", ".db3") else p.name
    base, i = name or "bag", 1
    while name in used:
        i += 1
        name = f"{base}_{i}"
    used.add(name)
    return name


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code (0 ok, 2 bad input in at least one bag)."""
    args = build_arg_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        overrides = _parse_set(args.set)
        if args.predictor:
            overrides["predictor"] = args.predictor
        if args.checkpoint is not None:
            overrides["checkpoint"] = args.checkpoint
        params = load_params(args.params, overrides)
        if args.max_frames is not None and args.max_frames < 1:
            raise ReplayError("--max-frames must be >= 1")
        noise = {
            "pose_noise_rot_deg": args.oracle_rot_noise_deg,
            "pose_noise_trans": args.oracle_trans_noise,
            "depth_noise": args.oracle_depth_noise,
        }
        if args.oracle_random_scale is not None:
            lo, hi = args.oracle_random_scale
            if not 0 < lo <= hi:
                raise ReplayError(f"--oracle-random-scale needs 0 < LO <= HI, got {lo:g} {hi:g}")
            noise["random_scale"] = (lo, hi)
        opts = ReplayOptions(
            params=params,
            image_topic=args.image_topic,
            depth_topic=args.depth_topic,
            camera_info_topic=args.camera_info_topic,
            gt_file=args.gt,
            gt_topic=args.gt_topic,
            realtime=args.realtime,
            max_frames=args.max_frames,
            seed=args.seed,
            oracle_noise={k: v for k, v in noise.items() if v},
            progress=not args.no_progress and sys.stderr.isatty(),
        )
    except ReplayError as exc:
        print(f"vggt-ros-replay: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    batch = len(args.bags) > 1
    used: set[str] = set()
    names = [_bag_name(bag, used) for bag in args.bags]
    jobs = [BagJob(n, bag, str(out / n if batch else out)) for n, bag in zip(names, args.bags)]
    try:
        if args.ray:
            results = run_ray(jobs, opts, args.ray, args.ray_gpus_per_bag)
        else:
            results = run_sequential(jobs, opts)
    except ReplayError as exc:
        print(f"vggt-ros-replay: error: {exc}", file=sys.stderr)
        return 2
    if batch:
        out.mkdir(parents=True, exist_ok=True)
        write_batch_summary(out, [batch_row(r.job.name, r.metrics, r.error) for r in results])
    if any(r.error and not r.crashed for r in results):
        return 2
    return 1 if any(r.crashed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
