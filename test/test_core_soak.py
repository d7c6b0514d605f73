"""Soak: 10,000 frames through buffer + keyframes + alignment + map with the oracle, memory bounded."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest

from vggt_ros.core.config import PipelineConfig
from vggt_ros.core.oracle import OraclePredictor
from vggt_ros.core.pipeline import StreamingPipeline
from vggt_ros.core.types import Frame
from vggt_ros.sim.sequences import make_sequence

LOOP = 240  # rendered frames of one full orbit, replayed with fresh stamps
TOTAL = 10_000


class _LoopGT(Mapping):
    """Ground truth of the looped orbit by stamp (the orbit closes, so the loop is seamless)."""

    def __init__(self, seq, step_ns: int, start_ns: int) -> None:
        self.seq, self.step, self.start = seq, step_ns, start_ns
        self.depth = seq.depth

    def __getitem__(self, stamp: int):
        i = (int(stamp) - self.start) // self.step % LOOP
        return self.seq.world_T_camera[i], self.seq.K, self.depth[i]

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.start + TOTAL * self.step, self.step))

    def __len__(self) -> int:
        return TOTAL


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.slow
def test_soak_10000_frames_memory_bounded() -> None:
    seq = make_sequence("orbit", LOOP, height=48, width=64, fps=10)
    rgb = seq.rgb
    step, start = 100_000_000, 1_000_000_000
    oracle = OraclePredictor(_LoopGT(seq, step, start), pose_noise_rot_deg=0.3, pose_noise_trans=0.005,
                             depth_noise=0.02, random_scale=(0.5, 2.0), target_size=70)
    cfg = PipelineConfig(voxel_size=0.02, map_max_points=20_000, map_update="all", min_valid_pixels=100,
                         num_track_queries=16)
    pipe = StreamingPipeline(cfg)
    rss_mid = 0
    published = 0
    for k in range(TOTAL):
        pipe.add_frame(Frame(start + k * step, rgb[k % LOOP], intrinsics=seq.K))
        if k % 8 == 0:  # inference slower than the camera: frames get skipped
            job = pipe.next_window()
            if job is not None:
                out = pipe.run_window(job, oracle)
                published += len(out.frames)
        if k == 2000:
            rss_mid = _rss_bytes()
        if k % 1000 == 0:
            assert len(pipe.world_map) <= cfg.map_max_points
            assert len(pipe._states) <= 2 * cfg.window_size  # placed-frame state is pruned
    c = pipe.counters()
    growth = _rss_bytes() - rss_mid
    print(f"soak: {c['windows']} windows, {c['keyframes']} keyframes, {c['skipped']} skipped, "
          f"map {c['map_points']} pts / {c['map_bytes'] / 1e6:.2f} MB, dropped {c['map_points_dropped']}, "
          f"rejected windows {c['windows_rejected']}, RSS growth after frame 2000: {growth / 1e6:.1f} MB")
    assert c["accepted"] == TOTAL and published + c["skipped"] + 4 * c["windows_rejected"] >= TOTAL - 8
    assert c["windows_rejected"] <= 0.01 * c["windows"]
    assert c["map_points"] <= cfg.map_max_points and c["map_points_dropped"] > 0
    assert c["map_bytes"] <= cfg.map_max_points * 31
    assert growth < 60e6
