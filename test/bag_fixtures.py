"""Shared synthetic bags for the test_bag_* tests (small: 30 frames of 160x120 at 30 Hz)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from vggt_ros.sim.bags import ros2_bag_file, write_groundtruth_tum, write_sequence_bag
from vggt_ros.sim.sequences import SyntheticSequence, make_sequence

NUM_FRAMES = 30
H, W = 120, 160
# The node's parameters (config/vggt.yaml) with a small window and network input, for speed.
FAST = ["--set", "window_size=6", "--set", "stride=3", "--set", "target_size=112"]
FAST_PARAMS = {"window_size": 6, "stride": 3, "target_size": 112}


@dataclass
class Bags:
    seq: SyntheticSequence
    root: Path
    ros1: Path
    mcap: Path
    db3: Path
    mcap_file: Path
    gt: Path

    def path(self, fmt: str) -> Path:
        return {"ros1": self.ros1, "mcap": self.mcap, "db3": self.db3, "mcap_file": self.mcap_file}[fmt]


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> Bags:
    root = tmp_path_factory.mktemp("bags")
    seq = make_sequence("forward", NUM_FRAMES, H, W, fps=30.0, seed=0)
    ros1 = write_sequence_bag(seq, root / "tum_like.bag", "ros1", image_encoding="bgr8")
    mcap = write_sequence_bag(seq, root / "seq_mcap", "mcap")
    db3 = write_sequence_bag(seq, root / "seq_db3", "db3")
    gt = write_groundtruth_tum(seq, root / "groundtruth.txt")
    return Bags(seq, root, ros1, mcap, db3, ros2_bag_file(mcap), gt)
