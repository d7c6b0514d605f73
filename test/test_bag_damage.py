"""Issue 14: damaged messages and damaged bag files never end the replay; what is intact is read.

Bags are generated here (40 frames of 120x160) and damaged by byte manipulation: truncation, bytes
overwritten in the middle of a chunk / SQLite page, garbage CameraInfo and /tf payloads.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from bag_fixtures import FAST

from vggt_ros.bag.cli import main
from vggt_ros.bag.reader import BagSource
from vggt_ros.sim.bags import ros2_bag_file, write_groundtruth_tum, write_sequence_bag
from vggt_ros.sim.sequences import make_sequence

N = 40


@pytest.fixture(scope="module")
def seq():
    return make_sequence("orbit", N, 120, 160)


def _bag_file(seq, tmp_path, fmt):
    p = write_sequence_bag(seq, tmp_path / ("b.bag" if fmt == "ros1" else "b"), fmt, ros1_chunk_bytes=100_000)
    return p if fmt == "ros1" else ros2_bag_file(p)


def _frames(path):
    with BagSource(path) as src:
        frames = list(src.frames())
        return frames, src.stats


def _mcap_chunk_offsets(path):
    from mcap.reader import make_reader

    with path.open("rb") as f:
        return sorted(c.chunk_start_offset for c in make_reader(f).get_summary().chunk_indexes)


@pytest.mark.parametrize("fmt", ["ros1", "mcap", "db3"])
def test_truncated_bag_yields_its_first_half(seq, tmp_path, fmt):
    f = _bag_file(seq, tmp_path, fmt)
    cut = tmp_path / f"cut{f.suffix}"
    cut.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    frames, st = _frames(cut)
    assert N // 2 - 3 <= len(frames) <= N // 2 + 1
    assert st.recovery["reason"].startswith("cannot be opened") and st.recovery["format"] == fmt
    assert [fr.stamp_ns for fr in frames] == [int(s) for s in seq.stamps_ns[: len(frames)]]
    assert st.recovery["hint"].split()[0] in {"`rosbag", "`mcap", "`sqlite3"}


@pytest.mark.parametrize("fmt", ["ros1", "mcap", "db3"])
def test_damage_in_the_middle_recovers_before_and_after(seq, tmp_path, fmt):
    f = _bag_file(seq, tmp_path, fmt)
    data = bytearray(f.read_bytes())
    if fmt == "mcap":  # rosbags' MCAP chunks carry no checksum: break the middle chunk's records
        offs = _mcap_chunk_offsets(f)
        at = offs[len(offs) // 2] + 9 + 40
        data[at : at + 64] = b"\xaa" * 64
    else:
        m = len(data) // 2
        data[m : m + 4096] = b"\xaa" * 4096
    bad = tmp_path / f"bad{f.suffix}"
    bad.write_bytes(bytes(data))
    frames, st = _frames(bad)
    assert len(frames) >= 30, st.recovery
    stamps = {fr.stamp_ns for fr in frames}
    assert int(seq.stamps_ns[0]) in stamps and int(seq.stamps_ns[-1]) in stamps  # before and after
    r = st.recovery
    assert r["skipped"] and (r["chunks_skipped"] or r["rows_unreadable"] or r["bytes_skipped"])
    if fmt == "db3":
        assert ".recover" in r["hint"] and "sqlite_quick_check" in r
    else:
        assert ("rosbag reindex" if fmt == "ros1" else "mcap recover") in r["hint"]


def test_ros1_bz2_middle_damage_in_the_replay_metrics(seq, tmp_path, capsys):
    f = _bag_file(seq, tmp_path, "ros1")
    data = bytearray(f.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4096] = b"\xaa" * 4096
    f.write_bytes(bytes(data))
    gt = write_groundtruth_tum(seq, tmp_path / "gt.txt")
    rc = main([str(f), "--out", str(tmp_path / "o"), "--predictor", "oracle", "--gt", str(gt), *FAST,
               "--no-progress"])
    assert rc == 0
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["frames_processed"] >= 30
    rec = m["damage"]["recovery"]
    assert rec["chunks_skipped"] >= 1 and rec["messages_lost_by_topic"]
    assert any("bag file damaged" in w and "rosbag reindex" in w for w in m["warnings"])


@pytest.mark.parametrize("fmt", ["ros1", "mcap"])
def test_garbage_camera_info_and_tf_are_skipped_and_counted(seq, tmp_path, capsys, fmt):
    bag = write_sequence_bag(
        seq,
        tmp_path / ("g.bag" if fmt == "ros1" else "g"),
        fmt,
        garbage_payloads={"/camera/rgb/camera_info": [0, 1, 7], "/tf": [3, 9]},
    )
    with BagSource(bag) as src:  # the first VALID CameraInfo gives the intrinsics
        np.testing.assert_allclose(src.intrinsics, seq.K)
    rc = main([str(bag), "--out", str(tmp_path / "o"), "--predictor", "oracle", "--gt-topic",
               "/tf:world.kinect", *FAST, "--no-progress"])
    assert rc == 0
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["frames_processed"] == N
    dam = m["damage"]["damaged_messages_by_topic"]
    assert dam["/camera/rgb/camera_info"] == 3 and dam["/tf"] == 2
    assert m["damage"]["recovery"] == {}
    assert any("damaged messages skipped" in w for w in m["warnings"])


def test_camera_info_changes_are_followed(seq, tmp_path):
    """Intrinsics per frame come from the latest valid CameraInfo before the image."""
    from vggt_ros.messages import camera_info as ci_mod

    bag = write_sequence_bag(seq, tmp_path / "k", "mcap", garbage_payloads={"/camera/rgb/camera_info": [5]})
    with BagSource(bag) as src:
        orig = ci_mod.camera_info_msg_to_model
        n = {"i": 0}

        def scaled(msg):  # pretend the calibration changes from the 20th CameraInfo on
            cam = orig(msg)
            n["i"] += 1
            return dataclasses.replace(cam, K=cam.K * 1.5) if n["i"] > 20 else cam

        import vggt_ros.bag.reader as reader_mod

        reader_mod.camera_info_msg_to_model = scaled
        try:
            frames = list(src.frames())
        finally:
            reader_mod.camera_info_msg_to_model = orig
        assert src.stats.damaged == {"/camera/rgb/camera_info": 1}
    assert len(frames) == N
    assert any(np.allclose(f.intrinsics, seq.K) for f in frames)
    assert np.allclose(frames[-1].intrinsics, seq.K * 1.5)
