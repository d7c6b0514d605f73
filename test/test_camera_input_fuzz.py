"""The node's camera callbacks (``vggt_ros.ros.camera_input.CameraInput``) under arbitrary messages:
they never raise, and every message either becomes a frame or is counted as rejected."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("rclpy")

from test_messages_fuzz import (  # noqa: E402
    COLOR,
    DEPTH,
    DERANDOMIZE,
    as_message,
    camera_infos,
    raw_images,
    stamps,
)

from vggt_ros.core.frame_buffer import Counters  # noqa: E402
from vggt_ros.params.validation import validate_params  # noqa: E402
from vggt_ros.ros.camera_input import CameraInput  # noqa: E402

SETTINGS = settings(max_examples=200, deadline=None, database=None, derandomize=DERANDOMIZE,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def make_input(scale_source: str = "none") -> tuple[CameraInput, Counters, list]:
    params = validate_params({"predictor": "oracle", "checkpoint": "", "scale_source": scale_source,
                              **({"fixed_scale": 1.0} if scale_source == "fixed" else {})})
    counters, frames = Counters(), []
    cam = CameraInput(params, counters, lambda key, text: None, frames.append, lambda *a: None)
    return cam, counters, frames


def with_stamp(draw, msg):
    """A header whose stamp is fuzzed too (or a message without a usable header)."""
    frame_id = draw(st.one_of(st.just("cam"), st.text(max_size=4), st.none(), st.integers()))
    header = SimpleNamespace(stamp=draw(stamps()), frame_id=frame_id)
    try:
        msg.header = header
    except (AttributeError, TypeError):
        pass
    return msg


@SETTINGS
@given(st.data())
def test_image_callback_never_raises_and_accounts_for_every_message(data):
    cam, counters, frames = make_input()
    fields = data.draw(raw_images(COLOR))
    msg = with_stamp(data.draw, as_message(data.draw, "sensor_msgs/msg/Image", fields))
    cam.on_image(msg)
    c = counters.snapshot()
    rejected = c.get("rejected_messages", 0) + c.get("callback_errors", 0)
    assert len(frames) + rejected == 1, (c, len(frames))
    for f in frames:
        assert f.image.dtype == np.uint8 and f.image.ndim == 3 and isinstance(f.stamp_ns, int)


@SETTINGS
@given(st.data())
def test_camera_info_and_depth_callbacks_never_raise(data):
    cam, counters, frames = make_input("depth")
    info = as_message(data.draw, "sensor_msgs/msg/CameraInfo", data.draw(camera_infos()))
    cam.on_camera_info(with_stamp(data.draw, info))
    depth = as_message(data.draw, "sensor_msgs/msg/Image", data.draw(raw_images(DEPTH)))
    depth = with_stamp(data.draw, depth)
    cam.on_metric_depth(depth)
    c = counters.snapshot()
    assert c.get("camera_infos", 0) + c.get("rejected_camera_info", 0) + c.get("callback_errors", 0) >= 1
    assert frames == []  # no image: nothing goes to the pipeline
