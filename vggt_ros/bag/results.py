"""What a replay leaves behind besides its output bag: the warnings of a run, the trajectory files
and the trajectory plot (``vggt_ros.bag.replay`` assembles metrics.json and summary.md from them)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vggt_ros.bag.groundtruth import GroundTruth
from vggt_ros.bag.reader import BagSource
from vggt_ros.bag.report import trajectory_metrics
from vggt_ros.core.pipeline import StreamingPipeline
from vggt_ros.core.world_map import WorldMap
from vggt_ros.eval.tum import write_tum

logger = logging.getLogger(__name__)


class Trajectory(Protocol):
    stamps: list[int]
    poses: list[np.ndarray]
    key_stamps: list[int]
    key_poses: list[np.ndarray]
    metric: bool


def stream_warnings(src: BagSource, pipeline_counters: Mapping[str, int], skip_policy: str,
                    oracle_skipped: int, oracle_tolerance_ns: int, depth_units_warning: str) -> list[str]:
    """One line per thing a user should know about how the bag streamed: odd stamps, skipped or
    damaged messages, frames the oracle could not answer, depth pairing and units, frames and
    windows the pipeline dropped."""
    stats = src.stats
    counts = stats.counts
    out = [f"{v} {k.replace('_', ' ')} in the image stamps" for k, v in stats.stamp_anomalies().items() if v]
    if counts.get("skipped_unsupported_encoding"):
        out.append(f"{counts['skipped_unsupported_encoding']} frames skipped: unsupported encoding "
                   f"{dict(stats.encodings_skipped)}")
    if counts.get("skipped_decode_error"):
        out.append(f"{counts['skipped_decode_error']} frames skipped: image could not be decoded")
    if stats.read_error:
        out.append(f"bag ended early (truncated or damaged?) after {counts.get('image_messages', 0)} "
                   f"image messages: {stats.read_error}")
    out.extend(stats.damage_warnings())  # damaged messages skipped, damaged file salvaged
    if oracle_skipped:
        out.append(f"{oracle_skipped} frames skipped: no GT pose within {oracle_tolerance_ns / 1e6:g} ms "
                   "or no depth (needed by the oracle)")
    if depth_units_warning:  # once per bag
        out.append(depth_units_warning)
    if src.depth_topic and counts.get("depth_missing"):
        out.append(f"{counts['depth_missing']} frames without a depth image within "
                   f"{src.depth_match_ns / 1e6:g} ms")
    pc = pipeline_counters
    if pc.get("skipped"):
        out.append(f"{pc['skipped']} frames skipped by the skip policy ({skip_policy})")
    if pc.get("rejected"):
        out.append(f"{pc['rejected']} frames rejected by the pipeline "
                   f"({ {k: v for k, v in pc.items() if k.startswith('rejected_')} })")
    if pc.get("windows_rejected"):
        out.append(f"{pc['windows_rejected']} windows rejected by the alignment")
    return out


def write_trajectory_files(out: Path, col: Trajectory, world_map: WorldMap) -> np.ndarray:
    """trajectory.tum (every processed frame), keyframes.tum and map.ply; returns the poses [N, 4, 4]."""
    est = np.stack(col.poses) if col.poses else np.zeros((0, 4, 4))
    write_tum(out / "trajectory.tum", np.array(col.stamps, np.int64), est)
    write_tum(out / "keyframes.tum", np.array(col.key_stamps, np.int64),
              np.stack(col.key_poses) if col.key_poses else np.zeros((0, 4, 4)))
    world_map.save_ply(out / "map.ply")
    return est


def write_trajectory_plot(path: Path, traj: Mapping[str, Any], stamps: np.ndarray, est: np.ndarray,
                          title: str) -> None:
    """trajectory.png: aligned against the ground truth when there is one; a plot failure is logged,
    never allowed to lose the metrics."""
    try:
        from vggt_ros.bag.plots import plot_trajectory

        if "_aligned" in traj:
            plot_trajectory(path, traj["_stamps"], traj["_aligned"], traj["_gt"], traj["_errors"],
                            title=title)
        elif len(stamps):
            plot_trajectory(path, stamps, est[:, :3, 3], title=title)
    except Exception as exc:  # noqa: BLE001
        logger.warning("trajectory.png not written: %s", exc)


def optimised_trajectory_metrics(out: Path, pipe: StreamingPipeline, col: Trajectory, gt: GroundTruth | None,
                                 warnings: list[str]) -> dict[str, Any]:
    """The pose graph's trajectory (every frame it kept, after the last loop closure) next to the
    odometry's: trajectory_optimised.tum and its ATE (empty without a pose graph)."""
    opt = pipe.optimised_trajectory()
    stamps = [s for s in col.stamps if s in opt]
    if not stamps:
        return {}
    poses = np.stack([opt[s] for s in stamps])
    write_tum(out / "trajectory_optimised.tum", np.array(stamps, np.int64), poses)
    loops = int(pipe.counters().get("loop_closures", 0))
    res: dict[str, Any] = {"frames": len(stamps), "loop_closures": loops}
    if gt is not None:
        res.update(trajectory_metrics(stamps, poses, gt, col.metric))
        if "error" in res:
            warnings.append(f"optimised trajectory metrics unavailable: {res['error']}")
    return res
