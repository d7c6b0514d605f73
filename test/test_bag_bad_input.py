"""Bad input to the replay: a clear message and exit code 2 (or a counted warning), never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from bag_fixtures import FAST, NUM_FRAMES, bags  # noqa: F401 - fixture

from vggt_ros.bag.cli import main
from vggt_ros.bag.errors import ReplayError
from vggt_ros.bag.reader import BagSource
from vggt_ros.sim.bags import write_groundtruth_tum, write_sequence_bag
from vggt_ros.sim.sequences import make_sequence


@pytest.fixture(scope="module")
def small_seq():
    return make_sequence("orbit", 8, 60, 80)


def _run(args, capsys):
    rc = main([*map(str, args), "--no-progress"])
    return rc, capsys.readouterr().err


def test_no_image_topic(small_seq, tmp_path, capsys):
    bag = write_sequence_bag(small_seq, tmp_path / "noimg.bag", "ros1", with_images=False)
    rc, err = _run([bag, "--out", tmp_path / "o"], capsys)
    assert rc == 2
    assert "no camera image topic" in err and "/camera/depth/image" in err  # lists what is there


def test_truncated_bag_cli_exit_code(bags, tmp_path):  # noqa: F811
    data = bags.ros1.read_bytes()
    cut = tmp_path / "cut.bag"
    cut.write_bytes(data[: len(data) // 2])
    proc = subprocess.run(
        [sys.executable, "-m", "vggt_ros.bag.cli", str(cut), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "truncated or damaged" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("suffix", [".mcap", ".db3"])
def test_truncated_ros2_file(bags, tmp_path, capsys, suffix):  # noqa: F811
    src = bags.mcap_file if suffix == ".mcap" else next(bags.db3.glob("*.db3"))
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
    # issue 14: a truncated file yields its intact part (it used to be refused: exit code 2)
    rc, err = _run([cut, "--out", tmp_path / "o", "--predictor", "oracle", "--gt", bags.gt, *FAST], capsys)
    assert rc == 0
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["damage"]["recovery"]["reason"].startswith("cannot be opened")
    assert 0 < m["frames_processed"] < NUM_FRAMES
    # nothing readable at all: still exit code 2 with the format's repair hint
    cut.write_bytes(src.read_bytes()[:64])
    rc, err = _run([cut, "--out", tmp_path / "o2"], capsys)
    assert rc == 2 and "truncated or damaged" in err
    assert ("mcap recover" if suffix == ".mcap" else ".recover") in err


def test_unknown_encoding_frames_are_counted_and_skipped(bags, tmp_path, capsys):  # noqa: F811
    bag = write_sequence_bag(bags.seq, tmp_path / "yuv", "mcap", bad_encoding_frames=[4, 11])
    rc, err = _run([bag, "--out", tmp_path / "o", "--predictor", "oracle", "--gt", bags.gt, *FAST], capsys)
    assert rc == 0
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["reader"]["skipped_unsupported_encoding"] == 2
    assert m["frames_decoded"] == m["frames_processed"] == NUM_FRAMES - 2
    assert any("unsupported encoding" in w and "yuv422" in w for w in m["warnings"])
    assert "yuv422" in (tmp_path / "o" / "summary.md").read_text()


def test_every_frame_unknown_encoding_is_an_error(small_seq, tmp_path, capsys):
    bag = write_sequence_bag(small_seq, tmp_path / "allyuv.bag", "ros1", bad_encoding_frames=range(8))
    rc, err = _run([bag, "--out", tmp_path / "o", *FAST], capsys)
    assert rc == 2 and "no usable image" in err and "yuv422" in err


def test_gt_not_overlapping_in_time(bags, tmp_path, capsys):  # noqa: F811
    gt = write_groundtruth_tum(bags.seq, tmp_path / "late.txt", stamp_offset_ns=1000 * 10**9)
    rc, err = _run([bags.mcap, "--out", tmp_path / "o", "--predictor", "oracle", "--gt", gt, *FAST], capsys)
    assert rc == 2 and "does not overlap" in err


def test_oracle_needs_gt_and_depth(small_seq, tmp_path, capsys):
    bag = write_sequence_bag(small_seq, tmp_path / "nodepth.bag", "ros1", with_depth=False)
    rc, err = _run([bag, "--out", tmp_path / "o", "--predictor", "oracle", *FAST], capsys)
    assert rc == 2 and "needs ground-truth poses" in err
    rc, err = _run(
        [bag, "--out", tmp_path / "o", "--predictor", "oracle", "--gt-topic", "/tf:world.kinect", *FAST],
        capsys,
    )
    assert rc == 2 and "no depth topic" in err


def test_several_image_topics_need_a_choice(tmp_path, capsys):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    from vggt_ros.messages.builders import to_rosbags
    from vggt_ros.messages.images import rgb_image_fields

    ts = get_typestore(Stores.ROS2_JAZZY)
    path = tmp_path / "two_cams"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        for topic in ("/left/image_rect", "/right/image_rect"):
            c = w.add_connection(topic, "sensor_msgs/msg/Image", typestore=ts)
            msg = to_rosbags(
                ts, "sensor_msgs/msg/Image", rgb_image_fields(np.zeros((4, 4, 3), np.uint8), 1, "c")
            )
            w.write(c, 1, ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    with pytest.raises(ReplayError, match="several image topics.*--image-topic.*/left/image_rect.*/right"):
        BagSource(path).open()
    rc, err = _run([path, "--out", tmp_path / "o", "--image-topic", "/nope"], capsys)
    assert rc == 2 and "/nope is not in" in err


def test_bad_parameters_are_reported(bags, tmp_path, capsys):  # noqa: F811
    rc, err = _run(
        [bags.mcap, "--out", tmp_path / "o", "--set", "stride=9", "--set", "window_size=4"], capsys
    )
    assert rc == 2 and "stride" in err


def test_out_of_order_stamps_and_time_jump_are_counted(tmp_path, capsys):
    seq = make_sequence("orbit", 12, 60, 80)
    stamps = [int(s) for s in seq.stamps_ns]
    stamps[5], stamps[6] = stamps[6], stamps[5]  # one pair swapped
    stamps[9:] = [s + 3 * 10**9 for s in stamps[9:]]  # a 3 s gap
    bag = write_sequence_bag(seq, tmp_path / "odd.bag", "ros1", header_stamps_ns=stamps)
    rc, err = _run(
        [
            bag,
            "--out",
            tmp_path / "o",
            "--predictor",
            "oracle",
            "--gt-topic",
            "/tf:world.kinect",
            "--set",
            "window_size=4",
            "--set",
            "stride=2",
            "--set",
            "target_size=56",
        ],
        capsys,
    )
    assert rc == 0
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["reader"]["out_of_order"] == 1 and m["reader"]["time_jumps"] == 1
    assert m["pipeline_counters"]["rejected_out_of_order"] == 1  # the node's rule, counted
    assert m["frames_processed"] == 11
    assert any("1 out of order" in w for w in m["warnings"]) and any(
        "1 time jumps" in w for w in m["warnings"]
    )
