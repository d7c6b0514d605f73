"""The bag replay: run the node's loop offline over a rosbag and evaluate it (CLI: :mod:`vggt_ros.bag.cli`).

The replay runs the node's own loop (:class:`~vggt_ros.runner.stream_runner.StreamRunner`) and
output builder (:class:`~vggt_ros.outputs.builder.OutputBuilder`) with the same parameter file
(``config/vggt.yaml``), so a replay result is what the node would have published.

Deterministic by default (the runner's synchronous mode): after every added frame every ready window
is run, so no frame is skipped whatever the inference speed; the remaining frames are flushed at the
end. ``--realtime R`` instead runs the node's threaded mode with frame k added (stamp_k - stamp_0) / R
seconds after the first, so the node's skip policy drops what a live node would drop.

Outputs per bag (in ``--out``, or ``--out/<bag name>/`` for several bags): trajectory.tum (every
processed frame), keyframes.tum, metrics.json, summary.md, trajectory.png, map.ply and the ROS 2 bag
``replay_bag/replay_bag.mcap`` with everything the node publishes. Bad input raises
:class:`~vggt_ros.bag.errors.ReplayError` with a message.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vggt_ros.bag.errors import ReplayError
from vggt_ros.bag.groundtruth import GroundTruth, load_tum_groundtruth
from vggt_ros.bag.plausibility import DepthUnitCheck, first_depth_encoding
from vggt_ros.bag.reader import BagFrame, BagSource
from vggt_ros.bag.report import (
    DepthAccumulator,
    latency_stats,
    peak_memory,
    summary_markdown,
    trajectory_metrics,
    write_metrics_json,
)
from vggt_ros.bag.results import (
    optimised_trajectory_metrics,
    stream_warnings,
    write_trajectory_files,
    write_trajectory_plot,
)
from vggt_ros.bag.writer import OutputBagWriter
from vggt_ros.core.frames import world_T_optical_world
from vggt_ros.core.pipeline import StreamingPipeline
from vggt_ros.core.types import Frame, FrameOutput, WindowOutput
from vggt_ros.core.undistort import Undistorter
from vggt_ros.outputs.builder import OutputBuilder
from vggt_ros.outputs.pose_frames import PoseFrames
from vggt_ros.params.table import defaults
from vggt_ros.params.validation import pipeline_config_from_params, validate_params
from vggt_ros.params.yaml_file import load_params_yaml
from vggt_ros.runner.diagnostics import diagnostics_report
from vggt_ros.runner.health import STAMP_CLOCK, StreamHealth
from vggt_ros.runner.stream_runner import StreamRunner

logger = logging.getLogger(__name__)

DEFAULT_PARAMS = Path(__file__).resolve().parents[2] / "config" / "vggt.yaml"
OUTPUT_BAG_NAME = "replay_bag"
ORACLE_GT_TOLERANCE_NS = 20_000_000


@dataclass
class ReplayOptions:
    """Everything one replay needs besides the bag (the CLI fills it; tests build it directly)."""

    params: dict[str, Any] = field(default_factory=dict)  # validated node parameters
    image_topic: str | None = None
    depth_topic: str | None = None
    camera_info_topic: str | None = None
    gt_file: str | None = None
    gt_topic: str | None = None
    realtime: float | None = None
    max_frames: int | None = None
    oracle_noise: dict[str, Any] = field(default_factory=dict)  # OraclePredictor keyword arguments
    seed: int = 0
    progress: bool = False
    predictor: Any = None  # a ready Predictor (tests, benchmarks); None = built from params


@dataclass
class _Collected:
    stamps: list[int] = field(default_factory=list)
    poses: list[np.ndarray] = field(default_factory=list)
    key_stamps: list[int] = field(default_factory=list)
    key_poses: list[np.ndarray] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    window_scales: list[float] = field(default_factory=list)  # alignment scale of each accepted window
    metric: bool = False


class StampStore(Mapping):
    """Per-frame data keyed by stamp, filled while the bag streams and pruned behind the pipeline
    (thread-safe: with ``--realtime`` the reader adds while the runner's threads read and prune)."""

    def __init__(self) -> None:
        self._d: dict[int, Any] = {}
        self._lock = threading.Lock()

    def __getitem__(self, k: int) -> Any:
        with self._lock:
            return self._d[int(k)]

    def __iter__(self) -> Iterator[int]:
        with self._lock:
            return iter(list(self._d))

    def __len__(self) -> int:
        with self._lock:
            return len(self._d)

    def put(self, stamp_ns: int, value: Any) -> None:
        with self._lock:
            self._d[int(stamp_ns)] = value

    def pop(self, stamp_ns: int) -> Any:
        with self._lock:
            return self._d.pop(int(stamp_ns), None)

    def prune(self, up_to_ns: int, keep: set[int] | frozenset[int] = frozenset()) -> None:
        """Forget every stamp <= ``up_to_ns`` that is not in ``keep``."""
        with self._lock:
            for s in [s for s in self._d if s <= up_to_ns and s not in keep]:
                del self._d[s]


class BagTimeSchedule:
    """The node's publication periods (path, map, grid, diagnostics) on the bag's clock."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.period_ns = {k: int(float(params[f"{k}_publish_period_s" if k != "diagnostics"
                                              else "diagnostics_period_s"]) * 1e9)
                          for k in ("path", "map", "grid", "diagnostics")}
        self._last: dict[str, int] = {}

    def due(self, key: str, stamp_ns: int) -> bool:
        last = self._last.get(key)
        if last is not None and stamp_ns - last < self.period_ns[key]:
            return False
        self._last[key] = int(stamp_ns)
        return True


def load_params(
    path: str | os.PathLike[str] | None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The node's parameters from its YAML (default config/vggt.yaml, else the table's defaults) plus
    overrides, validated by the node's own rules."""
    try:
        if path is not None:
            raw = load_params_yaml(path)
        elif DEFAULT_PARAMS.exists():
            raw = load_params_yaml(DEFAULT_PARAMS)
        else:
            raw = defaults()
        raw.update(overrides or {})
        return validate_params(raw)
    except FileNotFoundError:
        raise ReplayError(f"parameter file {path} does not exist") from None
    except ValueError as exc:
        raise ReplayError(f"parameters: {exc}") from None


def _make_predictor(opts: ReplayOptions, growing: StampStore | None) -> Any:
    if opts.predictor is not None:
        return opts.predictor
    p = opts.params
    if p["predictor"] == "oracle":
        import importlib

        from vggt_ros.core.oracle import OraclePredictor

        try:  # the oracle's first predict imports the model's preprocessing (and torch): warm it up so
            importlib.import_module("vggt_ros.model.preprocessing")  # it is not timed as a window
        except ImportError:
            pass

        return OraclePredictor(
            growing,
            preprocess_mode=p["preprocess_mode"],
            target_size=p["target_size"],
            seed=opts.seed,
            **opts.oracle_noise,
        )
    from vggt_ros.model.factory import build_engine

    try:
        return build_engine(p, seed=opts.seed)
    except Exception as exc:  # noqa: BLE001 - weights missing/offline/corrupt: the user must act
        raise ReplayError(
            f"cannot build the VGGT predictor (checkpoint {p['checkpoint']!r}): {type(exc).__name__}: {exc}"
        ) from None


def _check_gt_overlap(src: BagSource, gt: GroundTruth) -> None:
    """Fail early when the GT cannot overlap the bag in time.

    The bag's header-stamp range is estimated from its log-time range and the first image's offset."""
    first = src.first_image_stamp()
    if first is None:
        return
    offset = first[0] - first[1]  # header stamp - log time
    t0, t1 = src.time_range_ns
    b0, b1 = t0 + offset, t1 + offset
    tol = 1_000_000_000
    if gt.stamps_ns[-1] < b0 - tol or gt.stamps_ns[0] > b1 + tol:
        raise ReplayError(
            f"ground truth {gt.source} ({len(gt)} poses, {gt.span_s[0]:.3f}..{gt.span_s[1]:.3f} s) does not "
            f"overlap the bag's images ({b0 / 1e9:.3f}..{b1 / 1e9:.3f} s): wrong file or time base?"
        )


def _undistorted(bf: BagFrame, und: Undistorter) -> BagFrame:
    """A distorted camera's frame undistorted (image, depth and K: see :mod:`vggt_ros.core.undistort`),
    before the oracle's ground truth, the depth metrics and the runner see it."""
    if bf.camera is None:
        return bf
    depth = None if bf.depth is None else und.depth(bf.depth, bf.camera)
    return dataclasses.replace(bf, image=und.image(bf.image, bf.camera), intrinsics=bf.camera.new_K,
                               depth=depth, camera=None)


def _to_frame(bf: BagFrame, params: Mapping[str, Any]) -> Frame:
    fid = params.get("camera_frame") or bf.frame_id
    return Frame(
        stamp_ns=bf.stamp_ns,
        image=bf.image,
        frame_id=fid,
        intrinsics=bf.intrinsics,
        metric_depth=bf.depth if params.get("scale_source") == "depth" else None,
    )


def replay_bag(
    bag: str | os.PathLike[str], out_dir: str | os.PathLike[str], opts: ReplayOptions
) -> dict[str, Any]:
    """Replay one bag into ``out_dir``; returns the metrics dict (also written as metrics.json)."""
    params = opts.params
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []
    oracle = opts.predictor is None and params["predictor"] == "oracle"
    if params["publish_map_to_odom"]:
        warnings.append("publish_map_to_odom is ignored by the replay (no external odometry on TF)")
        params = {**params, "publish_map_to_odom": False}

    tolerance_ns = int(params["depth_sync_tolerance_s"] * 1e9)
    with BagSource(bag, opts.image_topic, opts.depth_topic, opts.camera_info_topic, tolerance_ns) as src:
        if src.num_images == 0:  # before anything that needs a frame (the oracle's intrinsics)
            raise ReplayError(f"{bag}: no image messages in the bag ({src.image_topic} has none)")
        gt: GroundTruth | None = None
        if opts.gt_file and opts.gt_topic:
            raise ReplayError("give either --gt or --gt-topic, not both")
        if opts.gt_file:
            gt = load_tum_groundtruth(opts.gt_file)
        elif opts.gt_topic:
            gt = src.read_gt_topic(opts.gt_topic)
        if gt is not None:
            _check_gt_overlap(src, gt)
        if oracle:
            if gt is None:
                raise ReplayError(
                    "predictor 'oracle' needs ground-truth poses: give --gt FILE or --gt-topic SPEC"
                )
            if not src.depth_topic:
                raise ReplayError(
                    "predictor 'oracle' needs ground-truth depth: the bag has no depth topic "
                    "(give --depth-topic)"
                )
            if src.intrinsics is None:
                raise ReplayError("predictor 'oracle' needs the camera intrinsics (a CameraInfo topic)")
        growing = StampStore() if oracle else None
        undistorter = Undistorter()
        config = pipeline_config_from_params(params)
        pipe = StreamingPipeline(config)
        writer = OutputBagWriter(out / OUTPUT_BAG_NAME, params)
        frames_policy = PoseFrames(params, world_T_optical_world(config.world_frame_convention,
                                                                 config.base_T_camera), None)
        builder = OutputBuilder(params, writer.factory, frames_policy)  # no TF lookups: see PoseFrames
        schedule = BagTimeSchedule(params)
        depth_acc = DepthAccumulator()
        depth_units = DepthUnitCheck()
        gt_depth = StampStore()
        col = _Collected()
        oracle_skipped = 0
        runner: StreamRunner | None = None
        t_start = time.perf_counter()

        def write_accumulated(stamp: int, final: bool = False) -> None:
            if final or schedule.due("path", stamp):
                if (m := builder.path()) is not None:
                    writer.write(m)
            if (final or schedule.due("map", stamp)) and builder.map_due():
                if (m := builder.map(*pipe.map_snapshot())) is not None:
                    writer.write(m)
            if (final or schedule.due("grid", stamp)) and (m := builder.grid()) is not None:
                writer.write(m)
            if final or schedule.due("diagnostics", stamp):
                rate = len(col.stamps) / max(time.perf_counter() - t_start, 1e-9)
                report = diagnostics_report(pipe, runner, src.stats.counts, output_rate_hz=rate,
                                            device=device, scale_source=params["scale_source"])
                if (m := builder.diagnostics(report, stamp, "vggt_ros: pipeline", device)) is not None:
                    writer.write(m)

        def on_output(res: WindowOutput, latency: float) -> None:
            col.latencies.append(latency)
            if not res.accepted:
                return
            col.window_scales.append(float(res.scale))
            for m in builder.window(res):
                writer.write(m)
            for f in res.frames:
                _collect(col, f)
                d = gt_depth.pop(f.stamp_ns)
                if d is not None:
                    depth_acc.add(f.depth, d)
            if res.frames:
                stamp = int(res.frames[-1].stamp_ns)
                gt_depth.prune(stamp)  # depth of frames skipped by the skip policy is never needed
                if growing is not None:
                    growing.prune(stamp, pipe.retained_stamps())
                write_accumulated(stamp)

        def make_runner() -> StreamRunner:
            return StreamRunner(pipe, _make_predictor(opts, growing), on_output,
                                overlap_outputs=params["overlap_outputs"], log=logger,
                                health=StreamHealth.from_params(params, clock=STAMP_CLOCK),  # bag clock
                                time_jump_s=params["time_jump_reset_s"], on_reset=builder.reset,
                                path_max_poses=params["path_max_poses"])

        def frames() -> Iterator[Frame]:
            nonlocal oracle_skipped
            total = opts.max_frames or src.num_images
            from tqdm import tqdm

            bar = tqdm(total=total, unit="frame", desc=Path(bag).name, disable=not opts.progress, leave=False)
            try:
                for bf in src.frames(max_frames=opts.max_frames):
                    bar.update(1)
                    bf = _undistorted(bf, undistorter)
                    if oracle:
                        pose, ok = gt.interpolate([bf.stamp_ns], tolerance_ns=ORACLE_GT_TOLERANCE_NS)
                        if bf.depth is None or not ok[0]:
                            oracle_skipped += 1
                            continue
                        growing.put(bf.stamp_ns, (pose[0], bf.intrinsics, bf.depth))
                    if bf.depth is not None:
                        gt_depth.put(bf.stamp_ns, bf.depth)
                        depth_units.add(bf.depth)
                    yield _to_frame(bf, params)
            finally:
                bar.close()

        device = "n/a (oracle)" if oracle else "custom" if opts.predictor is not None else params["device"]
        try:
            if opts.realtime:
                # a live node loads its model before the first image too
                runner = make_runner()
                _feed_realtime(runner, frames(), float(opts.realtime), gt_depth)
            else:
                for fr in frames():
                    if runner is None:  # built at the first frame, so bad bags fail before loading weights
                        runner = make_runner()
                    if runner.add_frame(fr):
                        runner.run_ready()
                    else:
                        gt_depth.pop(fr.stamp_ns)
            if runner is not None:
                runner.finish()
                jumps = runner.stats().get("time_jump_resets", 0)
                if jumps:
                    warnings.append(f"{jumps} jumps back in the image stamps (over time_jump_reset_s): the "
                                    "world restarted each time; trajectory metrics span several worlds")
                worker_errors = runner.stats().get("worker_errors", 0)
                if worker_errors:
                    warnings.append(f"{worker_errors} windows failed in the runner (see the log)")
            wall = time.perf_counter() - t_start
            last = col.stamps[-1] if col.stamps else 0
            if runner is not None:
                write_accumulated(last, final=True)
        except KeyError as exc:  # oracle without GT for a frame
            raise ReplayError(f"predictor failed: {exc}") from None
        finally:
            writer.close()

        # ---------------------------------------------------------------- results
        stats = src.stats
        anomalies = stats.stamp_anomalies()
        counts = dict(stats.counts)
        pc = pipe.counters()
        units_warning = depth_units.warning(src.depth_topic, first_depth_encoding(src)) \
            if depth_units.implausible else ""
        warnings += stream_warnings(src, pc, params["skip_policy"], oracle_skipped, ORACLE_GT_TOLERANCE_NS,
                                    units_warning)
        for w in warnings:
            logger.warning("%s: %s", Path(bag).name, w)
        if counts.get("frames", 0) == 0:
            raise ReplayError(
                f"{bag}: no usable image in {src.image_topic} "
                f"({counts.get('image_messages', 0)} messages; {'; '.join(warnings) or 'empty'})"
            )
        if oracle and oracle_skipped == counts.get("frames", 0):
            raise ReplayError(
                f"{bag}: no frame has a GT pose (within {ORACLE_GT_TOLERANCE_NS / 1e6:g} ms) and a "
                "depth image, so the oracle cannot run"
            )

        metrics: dict[str, Any] = {
            "bag": str(bag),
            "image_topic": src.image_topic,
            "depth_topic": src.depth_topic,
            "camera_info_topic": src.camera_info_topic,
            "predictor": "custom" if opts.predictor is not None else params["predictor"],
            "mode": f"realtime x{opts.realtime:g}" if opts.realtime else "deterministic (every frame)",
            "image_messages": counts.get("image_messages", 0),
            "frames_decoded": counts.get("frames", 0),
            "frames_processed": len(col.stamps),
            "keyframes": len(col.key_stamps),
            "metric": bool(col.metric),
            "scale_m_per_unit": float(pipe.scale),
            "reader": {**counts, **anomalies},
            "damage": {"damaged_messages_by_topic": dict(stats.damaged), "recovery": dict(stats.recovery)},
            "pipeline_counters": pc,
            "output_bag": str(writer.mcap_file.relative_to(out)),
            "output_messages": writer.counts,
        }
        est = write_trajectory_files(out, col, pipe.world_map)
        traj: dict[str, Any] = {}
        if gt is not None and len(col.stamps):
            traj = trajectory_metrics(col.stamps, est, gt, col.metric)
            if "error" in traj:
                warnings.append(f"trajectory metrics unavailable: {traj['error']}")
        metrics["trajectory"] = traj
        metrics["trajectory_optimised"] = optimised_trajectory_metrics(out, pipe, col, gt, warnings)
        metrics["depth"] = depth_acc.metrics(col.metric) if len(depth_acc) else {"frames": 0}
        ws = np.array([v for v in col.window_scales if np.isfinite(v)])  # world units per window unit
        scales = {"min": ws.min(), "median": np.median(ws), "max": ws.max()} if ws.size else {}
        metrics["windows"] = {"accepted": len(col.window_scales), "alignment_scale": scales}
        wall = max(wall, 1e-9)
        metrics["performance"] = {
            "wall_s": wall,
            "frames_per_s": len(col.stamps) / wall,
            "window_latency_s": latency_stats(col.latencies),
            **peak_memory(),
        }
        metrics["warnings"] = warnings
        write_metrics_json(out / "metrics.json", metrics)
        (out / "summary.md").write_text(summary_markdown(metrics))
        write_trajectory_plot(out / "trajectory.png", traj, np.array(col.stamps), est, Path(bag).name)
        if gt is not None and traj.get("matched", 0) == 0:
            raise ReplayError(
                f"{bag}: none of the {len(col.stamps)} estimated poses has a GT pose within "
                f"20 ms ({gt.source} spans {gt.span_s[0]:.3f}..{gt.span_s[1]:.3f} s); outputs "
                f"written to {out} without trajectory metrics"
            )
        return metrics


def _collect(col: _Collected, f: FrameOutput) -> None:
    col.stamps.append(int(f.stamp_ns))
    col.poses.append(np.asarray(f.world_T_camera, np.float64))
    col.metric = bool(f.metric)
    if f.is_keyframe:
        col.key_stamps.append(int(f.stamp_ns))
        col.key_poses.append(np.asarray(f.world_T_camera, np.float64))


def _feed_realtime(runner: StreamRunner, frames: Iterator[Frame], rate: float, gt_depth: StampStore) -> None:
    """A live camera at ``rate`` x bag speed: frame k is added (stamp_k - stamp_0) / rate seconds after
    the first, while the runner's threads predict as the node's do; the skip policy drops what a live
    node would drop."""
    if rate <= 0:
        raise ReplayError(f"--realtime must be > 0, got {rate}")
    runner.start()
    t0 = stamp0 = None
    for f in frames:
        if t0 is None:
            t0, stamp0 = time.perf_counter(), f.stamp_ns
        delay = t0 + (f.stamp_ns - stamp0) / 1e9 / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if not runner.add_frame(f):
            gt_depth.pop(f.stamp_ns)
