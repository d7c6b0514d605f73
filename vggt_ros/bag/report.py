"""Replay evaluation: trajectory and depth metrics vs ground truth, performance, and the written reports.

Why here and not in ``vggt_ros.eval``: this module only *applies* the shared metrics (Umeyama, ATE,
RPE, depth errors from :mod:`vggt_ros.eval.metrics`) to a replay's outputs, decides which alignment
is meaningful (Sim(3) for up-to-scale output, SE(3) when metric) and formats ``metrics.json``,
``summary.md`` and the batch table.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import resource
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from vggt_ros.bag.groundtruth import GroundTruth
from vggt_ros.eval.metrics import align_trajectory, associate, ate, rpe

logger = logging.getLogger(__name__)

GT_MATCH_NS = 20_000_000  # TUM's association tolerance


def trajectory_length(poses: np.ndarray) -> float:
    """Sum of the distances between consecutive positions."""
    p = np.asarray(poses, np.float64)[:, :3, 3]
    return float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum()) if len(p) > 1 else 0.0


def orthonormalize(poses: np.ndarray) -> np.ndarray:
    """Project rotations onto SO(3) (nearest rotation). Why: the predictions are float32, and the
    arccos in the RPE rotation angle turns a 1e-7 non-orthogonality into ~0.01 deg of fake error."""
    p = np.array(poses, np.float64, copy=True)
    if len(p):
        p[:, :3, :3] = Rotation.from_matrix(p[:, :3, :3]).as_matrix()
    return p


def trajectory_metrics(
    est_stamps: Sequence[int] | np.ndarray,
    est_poses: np.ndarray,
    gt: GroundTruth,
    metric: bool,
    max_diff_ns: int = GT_MATCH_NS,
) -> dict[str, Any]:
    """ATE (Sim(3), or SE(3) when ``metric``), RPE and the alignment of estimate vs GT.

    Poses are matched by nearest stamp within ``max_diff_ns`` (one-to-one). Also returns the aligned
    estimate positions and per-pose errors (for plots) under private keys ``_aligned``/``_errors``.
    """
    es = np.asarray(est_stamps, np.int64)
    ep = orthonormalize(est_poses)
    ia, ib = associate(es, gt.stamps_ns, max_diff_ns)
    res: dict[str, Any] = {
        "gt_source": gt.source,
        "gt_poses": len(gt),
        "estimated_poses": int(es.size),
        "matched": int(ia.size),
        "match_max_diff_ms": max_diff_ns / 1e6,
    }
    if ia.size < 3:
        res["error"] = (
            f"only {ia.size} of {es.size} estimated poses have a GT pose within "
            f"{max_diff_ns / 1e6:g} ms (GT spans {gt.span_s[0]:.3f}..{gt.span_s[1]:.3f} s)"
        )
        return res
    est, ref = ep[ia], gt.poses[ib]
    align = "se3" if metric else "sim3"
    a = ate(est, ref, align=align)
    res["alignment"] = align
    res["ate"] = {k: a[k] for k in ("rmse", "mean", "median", "std", "max")}
    res["scale_factor"] = a["scale"]
    if metric:
        sim = ate(est, ref, align="sim3")
        res["ate_sim3"] = {k: sim[k] for k in ("rmse", "mean", "median", "std", "max")}
        res["scale_factor_sim3"] = sim["scale"]
    r = rpe(est, ref, delta=1, align="none" if metric else "sim3")
    res["rpe"] = {k: r[k] for k in ("trans_rmse", "trans_mean", "rot_rmse_deg", "rot_mean_deg", "n")}
    length = trajectory_length(ref)
    res["gt_length"] = length
    res["ate_rmse_over_length"] = a["rmse"] / length if length > 0 else float("nan")
    aligned, _, _, _ = align_trajectory(est, ref, align)
    res["_aligned"] = aligned[:, :3, 3]
    res["_gt"] = ref[:, :3, 3]
    res["_stamps"] = es[ia]
    res["_errors"] = np.linalg.norm(aligned[:, :3, 3] - ref[:, :3, 3], axis=1)
    return res


class _ErrorSums:
    """Running sums of the depth errors over the pixels seen (the means of :func:`depth_metrics`)."""

    def __init__(self) -> None:
        self.abs_rel = self.sq_rel = self.sq = 0.0
        self.delta1 = self.n = 0
        self.scales: list[float] = []  # one float per frame: 8 bytes a frame

    def add(self, p: np.ndarray, g: np.ndarray, scale: float = 1.0) -> None:
        """p, g: valid pixels (float64) of one frame; p is multiplied by ``scale``."""
        if not p.size:
            return
        p = p * scale
        diff = p - g
        self.abs_rel += float(np.sum(np.abs(diff) / g))
        self.sq_rel += float(np.sum(diff**2 / g))
        self.sq += float(np.sum(diff**2))
        self.delta1 += int(np.count_nonzero(np.maximum(p / g, g / p) < 1.25))
        self.n += int(p.size)

    def result(self, scale: float) -> dict[str, Any]:
        if self.n == 0:
            nan = float("nan")
            return {"abs_rel": nan, "sq_rel": nan, "rmse": nan, "delta1": nan, "scale": nan, "n": 0}
        n = self.n
        return {"abs_rel": self.abs_rel / n, "sq_rel": self.sq_rel / n, "rmse": math.sqrt(self.sq / n),
                "delta1": self.delta1 / n, "scale": scale, "n": n}


class DepthAccumulator:
    """Sequence-level depth metrics of (predicted, GT) depth on a fixed pixel grid per frame, computed
    while the bag streams, in memory that does not grow with the bag.

    Each frame's grid sample (at most ``max_pixels``, a regular grid: the statistics of full
    resolution to well under a percent) is copied and reduced at once:

    * per-frame median scaling and metric (no scaling): the frame's own scale is known, so the
      metrics are running sums, exactly :func:`vggt_ros.eval.metrics.depth_metrics`'s means (up to
      float rounding);
    * per-sequence median scaling needs the medians of *all* valid GT and predicted depth before any
      error can be summed: it is computed on a uniform random sample (reservoir sampling, seeded,
      ``reservoir`` valid pixel pairs, 8 bytes each). Exact while the bag has at most ``reservoir``
      valid grid pixels (~200 frames at the default sizes); beyond, a random sample of 2**20 pixels
      puts the medians within ~0.1 % and the means within the sampling error of that many pixels.
      ``n`` stays the count of all valid pixels; ``sampled`` is the number the metrics used.

    Why copies: a grid sample taken as a numpy view keeps the whole depth map alive (it kept every
    predicted and GT map of the bag: gigabytes).
    """

    def __init__(self, max_pixels: int = 4800, reservoir: int = 1 << 20, seed: int = 0) -> None:
        self.max_pixels = int(max_pixels)
        self.capacity = int(reservoir)
        self._rng = np.random.default_rng(seed)
        self._res = np.empty((self.capacity, 2), np.float32)  # (pred, gt) pairs
        self._seen = 0  # valid pairs offered to the reservoir
        self.frames = 0
        self.shapes: set[tuple[int, int]] = set()
        self._per_frame = _ErrorSums()
        self._none = _ErrorSums()

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """pred: [h, w] output depth (NaN invalid); gt: [H, W] metres, resized (nearest) to [h, w]."""
        h, w = pred.shape
        if gt.shape != pred.shape:
            gt = cv2.resize(gt.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
        step = max(1, math.ceil(math.sqrt(h * w / self.max_pixels)))
        p = np.array(pred[::step, ::step], np.float32).astype(np.float64)  # copies: no view survives
        g = np.array(gt[::step, ::step], np.float32).astype(np.float64)
        self.frames += 1
        self.shapes.add(p.shape)
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(g) & (g > 1e-3) & np.isfinite(p) & (p > 0)  # as depth_metrics
        pv, gv = p[valid], g[valid]
        if pv.size:
            scale = float(np.median(gv) / np.median(pv))
            self._per_frame.add(pv, gv, scale)
            self._per_frame.scales.append(scale)
            self._none.add(pv, gv)
            self._offer(np.stack([pv, gv], axis=1).astype(np.float32))

    def _offer(self, pairs: np.ndarray) -> None:
        """Algorithm R: pair number j (0-based) replaces a random slot with probability C / (j + 1)."""
        k, cap = len(pairs), self.capacity
        fill = max(0, min(k, cap - self._seen))
        if fill:
            self._res[self._seen : self._seen + fill] = pairs[:fill]
        if k > fill:
            j = self._seen + np.arange(fill, k)
            slot = self._rng.integers(0, j + 1)
            keep = slot < cap
            self._res[slot[keep]] = pairs[fill:][keep]  # later pairs win on repeated slots, as in order
        self._seen += k

    def __len__(self) -> int:
        return self.frames

    def metrics(self, metric: bool) -> dict[str, Any]:
        if not self.frames or len(self.shapes) != 1:
            return (
                {"frames": self.frames, "error": "no depth pairs (or varying depth size)"}
                if self.frames
                else {"frames": 0}
            )
        (shape,) = self.shapes
        out: dict[str, Any] = {"frames": self.frames, "pixels_per_frame": int(shape[0] * shape[1])}
        pf = self._per_frame
        if pf.n == 0:
            logger.warning("depth metrics: no pixel is valid in both maps")
        out["per_frame_median_scale"] = pf.result(float(np.mean(pf.scales)) if pf.scales else float("nan"))
        sample = self._res[: min(self._seen, self.capacity)].astype(np.float64)
        seq = _ErrorSums()
        scale = float("nan")
        if len(sample):
            scale = float(np.median(sample[:, 1]) / np.median(sample[:, 0]))
            seq.add(sample[:, 0], sample[:, 1], scale)
        res = seq.result(scale)
        out["per_sequence_median_scale"] = {**res, "n": pf.n, "sampled": res["n"]}
        if metric:
            out["metric_no_scaling"] = self._none.result(1.0)
        return out


def latency_stats(latencies_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean of per-window latencies, seconds."""
    a = np.asarray(latencies_s, np.float64)
    if a.size == 0:
        return {"n": 0}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {
        "n": int(a.size),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "max": float(a.max()),
        "mean": float(a.mean()),
    }


def peak_memory() -> dict[str, float]:
    """Peak resident memory of this process (MiB) and, if torch uses CUDA, the peak allocated."""
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"peak_rss_mib": ru / 1024.0 if sys.platform != "darwin" else ru / 2**20}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _clean(obj: Any) -> Any:
    """JSON-safe copy: drop private keys, numpy -> Python, NaN/inf -> None."""
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


def write_metrics_json(path: str | os.PathLike[str], metrics: Mapping[str, Any]) -> None:
    Path(path).write_text(json.dumps(_clean(metrics), indent=2, sort_keys=False) + "\n")


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "-" if not math.isfinite(v) else f"{v:.{digits}g}"
    return str(v)


def summary_markdown(m: Mapping[str, Any]) -> str:
    """A readable report of one replay."""
    units = "m" if m.get("metric") else "GT units"
    lines = [f"# vggt_ros replay: {m.get('bag', '')}", ""]
    kind = "metric (metres)" if m.get("metric") else "up to scale"
    lines += [
        f"- predictor: **{m.get('predictor')}**, output {kind}"
        f" (metres per world unit applied: {_fmt(m.get('scale_m_per_unit'))})",
        f"- image topic: `{m.get('image_topic')}`, depth topic: `{m.get('depth_topic') or '-'}`, "
        f"GT: `{m.get('trajectory', {}).get('gt_source', '-')}`",
        f"- frames: {m.get('frames_decoded')} decoded of {m.get('image_messages')} image messages, "
        f"{m.get('frames_processed')} processed, {m.get('keyframes')} keyframes, mode {m.get('mode')}",
        "",
    ]
    t = m.get("trajectory") or {}
    lines += ["## Trajectory", ""]
    if "ate" in t:
        a = t["ate"]
        lines += [
            "| metric | value |",
            "|---|---|",
            f"| alignment | {t['alignment'].upper()} (Umeyama) |",
            f"| matched poses | {t['matched']} of {t['estimated_poses']} "
            f"(<= {t['match_max_diff_ms']:g} ms) |",
            f"| ATE RMSE / mean / median [{units}] | {_fmt(a['rmse'])} / {_fmt(a['mean'])} / "
            f"{_fmt(a['median'])} |",
            f"| ATE RMSE / GT length | {_fmt(t['ate_rmse_over_length'])} (length {_fmt(t['gt_length'])}) |",
            f"| scale factor found | {_fmt(t['scale_factor'])} |",
            f"| RPE translation RMSE [{units}/frame] | {_fmt(t['rpe']['trans_rmse'])} |",
            f"| RPE rotation RMSE [deg/frame] | {_fmt(t['rpe']['rot_rmse_deg'])} |",
        ]
        if "ate_sim3" in t:
            lines.append(
                f"| ATE RMSE with Sim(3) instead | {_fmt(t['ate_sim3']['rmse'])} "
                f"(scale {_fmt(t['scale_factor_sim3'])}) |"
            )
        o = m.get("trajectory_optimised") or {}
        if "ate" in o:
            lines.append(
                f"| ATE RMSE, pose graph (trajectory_optimised.tum) [{units}] | {_fmt(o['ate']['rmse'])} "
                f"({o['loop_closures']} loop closures) |"
            )
    else:
        lines.append(t.get("error", "no ground truth given (use --gt FILE or --gt-topic SPEC)"))
    d = m.get("depth") or {}
    lines += ["", "## Depth", ""]
    if "per_frame_median_scale" in d:
        pf, ps = d["per_frame_median_scale"], d["per_sequence_median_scale"]
        lines += [
            "| scale alignment | AbsRel | delta<1.25 | RMSE [m] |",
            "|---|---|---|---|",
            f"| per-frame median | {_fmt(pf['abs_rel'])} | {_fmt(pf['delta1'])} | {_fmt(pf['rmse'])} |",
            f"| per-sequence median | {_fmt(ps['abs_rel'])} | {_fmt(ps['delta1'])} | {_fmt(ps['rmse'])} |",
        ]
        if "metric_no_scaling" in d:
            mn = d["metric_no_scaling"]
            lines.append(
                f"| none (metric) | {_fmt(mn['abs_rel'])} | {_fmt(mn['delta1'])} | {_fmt(mn['rmse'])} |"
            )
        lines.append(f"\n{d['frames']} frames, {d['pixels_per_frame']} grid pixels per frame.")
        if ps.get("sampled", ps["n"]) < ps["n"]:
            lines.append(f"Per-sequence median scaling: a sample of {ps['sampled']} of {ps['n']} pixels.")
    else:
        lines.append("no GT depth topic in the bag")
    p = m.get("performance") or {}
    lat = p.get("window_latency_s") or {}
    lines += [
        "",
        "## Performance",
        "",
        "| metric | value |",
        "|---|---|",
        f"| frames/s (processed frames / wall time) | {_fmt(p.get('frames_per_s'))} |",
        f"| windows | {lat.get('n', 0)} |",
        f"| window latency p50 / p90 / p99 [ms] | {_fmt(1e3 * lat['p50'] if 'p50' in lat else None)} / "
        f"{_fmt(1e3 * lat['p90'] if 'p90' in lat else None)} / "
        f"{_fmt(1e3 * lat['p99'] if 'p99' in lat else None)} |",
        f"| peak RSS [MiB] | {_fmt(p.get('peak_rss_mib'))} |",
    ]
    if "cuda_peak_allocated_mib" in p:
        lines.append(f"| CUDA peak allocated [MiB] | {_fmt(p['cuda_peak_allocated_mib'])} |")
    warn = m.get("warnings") or []
    if warn:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in warn]
    lines += [
        "",
        "Files: trajectory.tum, keyframes.tum, metrics.json, map.ply, trajectory.png, "
        f"{m.get('output_bag', '')}",
        "",
    ]
    return "\n".join(lines)


BATCH_COLUMNS = (
    "bag",
    "status",
    "frames",
    "processed",
    "keyframes",
    "matched",
    "alignment",
    "ate_rmse",
    "ate_rmse_optimised",
    "ate_rmse_over_length",
    "scale_factor",
    "rpe_trans_rmse",
    "rpe_rot_rmse_deg",
    "depth_abs_rel",
    "depth_delta1",
    "frames_per_s",
    "latency_p50_s",
    "error",
)


def batch_row(name: str, m: Mapping[str, Any] | None, error: str = "") -> dict[str, Any]:
    """One row of the batch table from a replay's metrics (or its error)."""
    row: dict[str, Any] = dict.fromkeys(BATCH_COLUMNS, "")
    row.update(bag=name, status="error" if error else "ok", error=error)
    if m:
        t = m.get("trajectory") or {}
        d = (m.get("depth") or {}).get("per_frame_median_scale") or {}
        p = m.get("performance") or {}
        row.update(
            frames=m.get("frames_decoded"),
            processed=m.get("frames_processed"),
            keyframes=m.get("keyframes"),
            matched=t.get("matched", ""),
            alignment=t.get("alignment", ""),
            ate_rmse=(t.get("ate") or {}).get("rmse", ""),
            ate_rmse_optimised=((m.get("trajectory_optimised") or {}).get("ate") or {}).get("rmse", ""),
            ate_rmse_over_length=t.get("ate_rmse_over_length", ""),
            scale_factor=t.get("scale_factor", ""),
            rpe_trans_rmse=(t.get("rpe") or {}).get("trans_rmse", ""),
            rpe_rot_rmse_deg=(t.get("rpe") or {}).get("rot_rmse_deg", ""),
            depth_abs_rel=d.get("abs_rel", ""),
            depth_delta1=d.get("delta1", ""),
            frames_per_s=p.get("frames_per_s", ""),
            latency_p50_s=(p.get("window_latency_s") or {}).get("p50", ""),
        )
    return row


def write_batch_summary(out_dir: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """summary.csv and summary.md with one row per bag."""
    out = Path(out_dir)
    with open(out / "summary.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(BATCH_COLUMNS))
        w.writeheader()
        for r in rows:
            w.writerow({k: _clean(v) if v is not None else "" for k, v in r.items()})
    head = "| " + " | ".join(BATCH_COLUMNS) + " |"
    sep = "|" + "---|" * len(BATCH_COLUMNS)
    body = [
        "| " + " | ".join(_fmt(r.get(c)) if r.get(c) != "" else "" for c in BATCH_COLUMNS) + " |"
        for r in rows
    ]
    text = [
        "# vggt_ros replay: batch summary",
        "",
        "ATE after Sim(3) alignment (SE(3) when the output is metric); depth at per-frame median scale.",
        "",
        head,
        sep,
        *body,
        "",
    ]
    (out / "summary.md").write_text("\n".join(text))
