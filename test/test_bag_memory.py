"""Replay memory that does not grow with the bag, the incremental depth metrics, input plausibility
warnings and the oracle's random per-window scale on the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bag_fixtures import FAST, bags  # noqa: F401 - fixture

from vggt_ros.bag.cli import main
from vggt_ros.bag.plausibility import DepthUnitCheck
from vggt_ros.bag.report import DepthAccumulator
from vggt_ros.eval.metrics import depth_metrics
from vggt_ros.sim.bags import write_groundtruth_tum, write_sequence_bag
from vggt_ros.sim.sequences import make_sequence

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("abs_rel", "sq_rel", "rmse", "delta1", "scale", "n")


def _depth_pairs(frames: int, h: int = 90, w: int = 120, seed: int = 0):
    rng = np.random.default_rng(seed)
    for i in range(frames):
        gt = rng.uniform(0.5, 6.0, (h, w)).astype(np.float32)
        gt[rng.random((h, w)) < 0.1] = np.nan
        pred = (gt * rng.uniform(0.3, 3.0) * rng.normal(1.0, 0.1, (h, w))).astype(np.float32)
        pred[rng.random((h, w)) < 0.05] = np.nan
        if i == 3:
            pred[:] = np.nan  # a frame without one valid pixel
        yield pred, cv2_upsample(gt) if i % 2 else gt


def cv2_upsample(gt: np.ndarray) -> np.ndarray:
    """A GT map at twice the resolution (the accumulator resizes it to the prediction's, nearest)."""
    return np.repeat(np.repeat(gt, 2, axis=0), 2, axis=1)


def _old_metrics(pairs, metric: bool, max_pixels: int = 4800) -> dict:
    """The previous implementation: stack every frame's grid sample, then depth_metrics on all."""
    import cv2

    ps, gs = [], []
    for pred, gt in pairs:
        h, w = pred.shape
        if gt.shape != pred.shape:
            gt = cv2.resize(gt.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
        step = max(1, int(np.ceil(np.sqrt(h * w / max_pixels))))
        ps.append(pred[::step, ::step])
        gs.append(gt[::step, ::step])
    p, g = np.stack(ps), np.stack(gs)
    out = {"per_frame_median_scale": depth_metrics(p, g, "median", True),
           "per_sequence_median_scale": depth_metrics(p, g, "median", False)}
    if metric:
        out["metric_no_scaling"] = depth_metrics(p, g, "none")
    return out


def test_incremental_depth_metrics_equal_the_exact_ones():
    pairs = list(_depth_pairs(12))
    acc = DepthAccumulator(max_pixels=2000)
    for pred, gt in pairs:
        acc.add(pred, gt)
    new, old = acc.metrics(metric=True), _old_metrics(pairs, True, 2000)
    assert new["frames"] == 12 and new["pixels_per_frame"] == 30 * 40
    for kind in ("per_frame_median_scale", "per_sequence_median_scale", "metric_no_scaling"):
        for k in KEYS:
            assert new[kind][k] == pytest.approx(old[kind][k], rel=1e-9), (kind, k)
    assert new["per_sequence_median_scale"]["sampled"] == old["per_sequence_median_scale"]["n"]


def test_per_sequence_metrics_from_a_bounded_reservoir_are_close():
    """A reservoir of under half the valid pixels: per-frame values stay exact, the per-sequence ones
    (scaled by the medians of all pixels) are unbiased, within 2 % here though the frames' own scales
    vary 10x (std over reservoir seeds: 0.3 %)."""
    pairs = list(_depth_pairs(40, seed=1))
    acc = DepthAccumulator(reservoir=40_000)
    for pred, gt in pairs:
        acc.add(pred, gt)
    new, old = acc.metrics(metric=False), _old_metrics(pairs, False)
    assert "metric_no_scaling" not in new
    for k in KEYS:
        assert new["per_frame_median_scale"][k] == pytest.approx(old["per_frame_median_scale"][k], rel=1e-9)
    seq, ref = new["per_sequence_median_scale"], old["per_sequence_median_scale"]
    assert seq["sampled"] == 40_000 and seq["n"] == ref["n"] > 80_000
    for k in ("abs_rel", "sq_rel", "rmse", "delta1", "scale"):
        assert seq[k] == pytest.approx(ref[k], rel=0.02), k


def test_depth_accumulator_keeps_no_depth_map_alive():
    """The grid samples used to be views that kept each full-size map (gigabytes over a long bag)."""
    pred = np.ones((480, 640), np.float32)
    gt = np.full((480, 640), 2.0, np.float32)
    before = sys.getrefcount(pred), sys.getrefcount(gt)
    acc = DepthAccumulator()
    for _ in range(3):
        acc.add(pred, gt)
    assert (sys.getrefcount(pred), sys.getrefcount(gt)) == before
    assert acc.metrics(False)["per_frame_median_scale"]["scale"] == pytest.approx(2.0)


# Peak RSS growth from 100 to 400 frames of 160x120 with the default outputs, in fresh processes.
# Before (views kept every depth map): 409 -> 514 MiB, 105 MiB. Now: 398 -> 405 MiB, 7 MiB.
MAX_GROWTH_MIB = 40.0


def test_replay_memory_does_not_grow_with_the_bag(tmp_path):
    out = tmp_path / "rss.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "replay_memory.py"), "--sizes", "100x160x120",
         "400x160x120", "--json", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    small, large = json.loads(out.read_text())
    assert small["processed"] == 100 and large["processed"] == 400
    growth = large["peak_rss_mib"] - small["peak_rss_mib"]
    assert growth < MAX_GROWTH_MIB, proc.stdout


# ---------------------------------------------------------------------------- plausibility warnings
class _ScaledDepth:
    """A sequence whose depth maps are multiplied by ``factor`` (wrong units on purpose)."""

    def __init__(self, seq, factor: float) -> None:
        self.seq, self.factor = seq, factor
        self.K, self.stamps_ns, self.world_T_camera = seq.K, seq.stamps_ns, seq.world_T_camera

    def __len__(self) -> int:
        return len(self.seq)

    def render_frame(self, i: int):
        rgb, depth = self.seq.render_frame(i)
        return rgb, depth * np.float32(self.factor)


@pytest.fixture(scope="module")
def small_seq():
    return make_sequence("orbit", 12, 60, 80)


def _replay(bag, gt, out, *extra) -> tuple[int, dict]:
    rc = main([str(bag), "--out", str(out), "--predictor", "oracle", "--gt", str(gt), *FAST, "--no-progress",
               *map(str, extra)])
    return rc, json.loads((out / "metrics.json").read_text()) if rc == 0 else {}


@pytest.mark.parametrize(("factor", "encoding", "expected"), [
    (1000.0, "32FC1", "looks like millimetres"),
    (0.001, "16UC1", "looks like metres"),
    (1.0, "16UC1", None),
    (1.0, "32FC1", None),
])
def test_depth_units_that_look_wrong_are_reported_once(small_seq, tmp_path, caplog, factor, encoding,
                                                        expected):
    bag = write_sequence_bag(_ScaledDepth(small_seq, factor), tmp_path / "bag", "mcap",
                             depth_encoding=encoding)
    gt = write_groundtruth_tum(small_seq, tmp_path / "gt.txt")
    with caplog.at_level("WARNING"):
        rc, m = _replay(bag, gt, tmp_path / "o")
    assert rc == 0
    found = [w for w in m["warnings"] if "GT depth" in w]
    if expected is None:
        assert not found
    else:
        assert len(found) == 1 and expected in found[0] and f"({encoding})" in found[0]
        assert sum(expected in r.getMessage() for r in caplog.records) == 1


def test_depth_unit_check_thresholds():
    c = DepthUnitCheck(frames=2)
    assert c.warning() is None and not c.implausible  # nothing seen
    c.add(np.array([[np.nan, 0.0, 1500.0, 2500.0]], np.float32))
    c.add(np.array([[900.0]], np.float32))
    c.add(np.array([[1.0]], np.float32))  # past the frames looked at
    assert c.medians == [2000.0, 900.0] and c.implausible and "millimetres" in c.warning()
    ok = DepthUnitCheck()
    ok.add(np.array([[0.4, 3.0, 40.0]], np.float32))
    assert ok.warning() is None


def test_a_bag_without_image_messages_says_so_not_missing_intrinsics(tmp_path, capsys):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    from vggt_ros.sim.bags import CAMERA_INFO_TOPIC, DEPTH_TOPIC, IMAGE_TOPIC

    ts = get_typestore(Stores.ROS2_JAZZY)
    with Writer(tmp_path / "empty", version=9, storage_plugin=StoragePlugin.MCAP) as w:
        for topic, msgtype in ((IMAGE_TOPIC, "sensor_msgs/msg/Image"), (DEPTH_TOPIC, "sensor_msgs/msg/Image"),
                               (CAMERA_INFO_TOPIC, "sensor_msgs/msg/CameraInfo")):
            w.add_connection(topic, msgtype, typestore=ts)
    gt = tmp_path / "gt.txt"
    gt.write_text("1.0 0 0 0 0 0 0 1\n2.0 0 0 0 0 0 0 1\n")
    for extra in (["--predictor", "oracle", "--gt", str(gt)], []):
        rc = main([str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--no-progress", *extra])
        err = capsys.readouterr().err
        assert rc == 2 and "no image messages in the bag" in err and "intrinsics" not in err


# ---------------------------------------------------------------------------- oracle random scale
def test_oracle_random_scale_on_the_command_line(bags, tmp_path, capsys):  # noqa: F811
    rc, plain = _replay(bags.mcap, bags.gt, tmp_path / "plain")
    assert rc == 0
    rc, m = _replay(bags.mcap, bags.gt, tmp_path / "scaled", "--oracle-random-scale", 0.5, 2.0)
    assert rc == 0
    # each window arrives at its own scale; the alignment takes it out, the trajectory still holds
    s, s0 = m["windows"]["alignment_scale"], plain["windows"]["alignment_scale"]
    assert s["max"] / s["min"] > 2.0 and s0["max"] / s0["min"] < 1.1  # (plain: VGGT's normalisation only)
    t = m["trajectory"]
    assert t["alignment"] == "sim3" and t["matched"] == m["frames_processed"]
    assert t["ate_rmse_over_length"] < 1e-4
    for kind in ("per_frame_median_scale", "per_sequence_median_scale"):  # the windows' scales are taken
        d, d0 = m["depth"][kind], plain["depth"][kind]  # out: depth errors as without them (resampling)
        assert d["abs_rel"] == pytest.approx(d0["abs_rel"], rel=1e-4) and d["abs_rel"] < 0.02
    assert main([str(bags.mcap), "--out", str(tmp_path / "bad"), "--oracle-random-scale", "2", "1"]) == 2
    assert "0 < LO <= HI" in capsys.readouterr().err
