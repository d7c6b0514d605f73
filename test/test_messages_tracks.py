"""KeypointTracks fields, decoding and schema (vggt_ros.messages.tracks).

Messages are checked against the real ROS 2 message definitions: built as rosbags messages and
serialised to CDR, and as rclpy messages (ROS_PYTHON_CHECK_FIELDS=1, set in conftest.py); all
comparisons are by value, never by CDR bytes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from message_samples import make_typestore, sample_tracks

from vggt_ros.messages.builders import to_rosbags
from vggt_ros.messages.stamps import stamp_to_ns
from vggt_ros.messages.tracks import (
    KEYPOINT_TRACKS_TYPE,
    keypoint_tracks_fields,
    keypoint_tracks_msg_path,
    keypoint_tracks_msg_text,
    keypoint_tracks_msg_to_output,
    keypoint_tracks_schema,
)


@pytest.fixture(scope="module")
def typestore():
    return make_typestore()


def test_keypoint_tracks_roundtrip(typestore):
    tracks = sample_tracks()
    f = keypoint_tracks_fields(tracks)
    assert f["num_frames"] == 4 and f["num_tracks"] == 5
    assert stamp_to_ns(**f["header"]["stamp"]) == tracks.stamps_ns[-1]
    # documented layout: x of track j in frame i at positions[(i * N + j) * 2]
    assert f["positions"][(2 * 5 + 3) * 2] == tracks.positions[2, 3, 0]
    assert f["positions"][(2 * 5 + 3) * 2 + 1] == tracks.positions[2, 3, 1]
    assert f["visibility"][2 * 5 + 3] == tracks.visibility[2, 3]
    msg = to_rosbags(typestore, KEYPOINT_TRACKS_TYPE, f)
    back = keypoint_tracks_msg_to_output(
        typestore.deserialize_cdr(
            typestore.serialize_cdr(msg, KEYPOINT_TRACKS_TYPE), KEYPOINT_TRACKS_TYPE
        )
    )
    assert (
        back.stamps_ns == tracks.stamps_ns
        and back.query_frame_index == 1
        and back.frame_id == tracks.frame_id
    )
    for name in ("track_ids", "positions", "visibility", "confidence"):
        np.testing.assert_array_equal(getattr(back, name), getattr(tracks, name))
        assert getattr(back, name).dtype == getattr(tracks, name).dtype


def test_keypoint_tracks_validation():
    t = sample_tracks()
    t.visibility = t.visibility[:, :2]
    with pytest.raises(ValueError, match="visibility"):
        keypoint_tracks_fields(t)
    t = sample_tracks()
    t.stamps_ns = t.stamps_ns[:2]
    with pytest.raises(ValueError, match="stamps"):
        keypoint_tracks_fields(t)
    t = sample_tracks()
    t.query_frame_index = 9
    with pytest.raises(ValueError, match="query_frame_index"):
        keypoint_tracks_fields(t)


def test_keypoint_tracks_schema_is_read_from_the_msg_file():
    text = keypoint_tracks_msg_path().read_text()
    assert keypoint_tracks_msg_text() == text
    schema = keypoint_tracks_schema()
    assert [name for _, name in schema] == list(keypoint_tracks_fields(sample_tracks()))
    assert ("float32[]", "positions") in schema and ("std_msgs/Header", "header") in schema


def test_keypoint_tracks_msg_path_search_order(monkeypatch, tmp_path):
    """Source checkout first, then share/vggt_ros/msg under AMENT_PREFIX_PATH, then under sys.prefix;
    a clear error naming every place when none has it."""
    import vggt_ros.messages.tracks as tracks_module

    assert keypoint_tracks_msg_path() == Path(__file__).resolve().parents[1] / "msg" / "KeypointTracks.msg"
    text = keypoint_tracks_msg_text()
    monkeypatch.setattr(tracks_module, "_SOURCE_MSG", tmp_path / "repo" / "msg" / "KeypointTracks.msg")
    overlay, underlay, prefix = tmp_path / "overlay", tmp_path / "underlay", tmp_path / "venv"
    monkeypatch.setattr(sys, "prefix", str(prefix))
    monkeypatch.setenv("AMENT_PREFIX_PATH", os.pathsep.join([str(overlay), str(underlay)]))
    with pytest.raises(FileNotFoundError) as err:
        keypoint_tracks_msg_path()
    for where in (tmp_path / "repo", overlay, underlay, prefix):
        assert str(where) in str(err.value)
    share = Path("share") / "vggt_ros" / "msg" / "KeypointTracks.msg"
    for where in (prefix, underlay, overlay):  # each one found first in turn
        (where / share).parent.mkdir(parents=True)
        (where / share).write_text(text)
        assert keypoint_tracks_msg_path() == where / share
    tracks_module._SOURCE_MSG.parent.mkdir(parents=True)
    tracks_module._SOURCE_MSG.write_text(text)
    assert keypoint_tracks_msg_path() == tracks_module._SOURCE_MSG
