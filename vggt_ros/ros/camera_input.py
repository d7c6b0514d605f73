"""CameraInput: camera messages -> frames for the runner (the node's subscription callbacks).

Decodes images (raw or compressed), keeps the latest CameraInfo (a distorted camera's images, and
their metric depth, are undistorted here: :mod:`vggt_ros.core.undistort`), pairs metric depth with images
(:class:`~vggt_ros.runner.depth_pairing.DepthPairing`), looks up the external odometry pose when the
scale comes from it, and hands every frame to ``add_frame``. A message that cannot be decoded is
counted (``rejected_<reason>``) and warned about, never raised: the callbacks stay cheap and safe.
Anything else that goes wrong in a callback is counted (``callback_errors``) and logged; the node
keeps running.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from vggt_ros.core.frame_buffer import Counters
from vggt_ros.core.types import Frame
from vggt_ros.core.undistort import Undistorter
from vggt_ros.messages.camera_info import CameraModel, camera_info_msg_to_model
from vggt_ros.messages.errors import MessageError
from vggt_ros.messages.images import UnsupportedEncoding, depth_msg_to_array, image_msg_to_rgb
from vggt_ros.messages.stamps import stamp_ns_of
from vggt_ros.runner.depth_pairing import DepthPairing, Paired

DEFAULT_CAMERA_FRAME = "camera_optical_frame"


class CameraInput:
    """``add_frame(frame)``: the runner's; ``warn(key, text)``: the node's counted, rate-limited warning;
    ``lookup(target, source, stamp_ns)``: TF (used with ``scale_source: odometry``)."""

    def __init__(self, params: Mapping[str, Any], counters: Counters, warn: Callable[[str, str], None],
                 add_frame: Callable[[Frame], None], lookup: Callable[..., np.ndarray | None]) -> None:
        self.params = params
        self._counters, self._warn, self._add, self._lookup = counters, warn, add_frame, lookup
        self._lock = threading.Lock()
        self._camera_info: CameraModel | None = None
        self.undistorter = Undistorter()
        self.depth_pairing: DepthPairing[Frame] | None = None
        if params["scale_source"] == "depth":
            self.depth_pairing = DepthPairing(int(params["depth_sync_tolerance_s"] * 1e9))

    def clear(self) -> None:
        """Forget waiting images and depths (a reset)."""
        if self.depth_pairing is not None:
            self.depth_pairing.clear()

    def _reject(self, reason: str, what: str, exc: Exception) -> None:
        self._counters.add("rejected_messages")
        self._counters.add(f"rejected_{reason}")
        self._warn(reason, f"{what} rejected: {exc}")

    def _failed(self, what: str, exc: Exception) -> None:
        self._counters.add("callback_errors")
        self._warn("callback_error", f"{what} callback failed: {exc!r}")

    def on_camera_info(self, msg: Any) -> None:
        try:
            self._camera_info_message(msg)
        except Exception as exc:  # never let a callback raise into the executor
            self._failed("camera_info", exc)

    def on_metric_depth(self, msg: Any) -> None:
        try:
            self._depth_message(msg)
        except Exception as exc:
            self._failed("metric_depth", exc)

    def on_image(self, msg: Any) -> None:
        try:
            self._image_message(msg)
        except Exception as exc:
            self._failed("image", exc)

    def _camera_info_message(self, msg: Any) -> None:
        try:
            info = camera_info_msg_to_model(msg)
        except MessageError as exc:
            self._counters.add("rejected_camera_info")
            self._warn("camera_info", f"camera_info ignored: {exc}")
            return
        with self._lock:
            self._camera_info = info
        self._counters.add("camera_infos")

    def _depth_message(self, msg: Any) -> None:
        try:
            depth = depth_msg_to_array(msg)
            stamp_ns = stamp_ns_of(msg)
        except MessageError as exc:  # includes UnsupportedEncoding
            self._counters.add("rejected_metric_depth")
            self._warn("metric_depth", f"metric depth image rejected: {exc}")
            return
        assert self.depth_pairing is not None
        self._add_paired(self.depth_pairing.add_depth(stamp_ns, depth))

    def _image_message(self, msg: Any) -> None:
        try:
            rgb = image_msg_to_rgb(msg)
            stamp_ns = stamp_ns_of(msg)
            header_frame = msg.header.frame_id
            if not isinstance(header_frame, str):
                raise MessageError(f"header.frame_id must be a string, got {type(header_frame).__name__}")
        except UnsupportedEncoding as exc:
            self._reject("unsupported_encoding", "image", exc)
            return
        except (MessageError, AttributeError) as exc:
            self._reject("bad_image", "image", exc)
            return
        frame_id = self.params["camera_frame"] or header_frame
        if not frame_id:
            frame_id = DEFAULT_CAMERA_FRAME
            self._warn("frame_id", f"image without header.frame_id: using '{DEFAULT_CAMERA_FRAME}' (set the "
                       "camera_frame parameter)")
        with self._lock:
            info = self._camera_info
        frame = Frame(stamp_ns=stamp_ns, image=rgb, frame_id=frame_id)
        if info is not None:
            if info.hw == rgb.shape[:2]:
                frame = self.undistorter.frame(frame, info)  # the intrinsics, and undistortion when D != 0
            else:
                self._counters.add("camera_info_size_mismatch")
                self._warn("camera_info_size", f"camera_info is {info.hw}, image is {rgb.shape[:2]}: "
                           "intrinsics not used for this frame")
        if self.params["scale_source"] == "odometry":
            frame.odometry_pose = self._lookup(self.params["odom_frame"], frame_id, stamp_ns)
        if self.depth_pairing is not None:
            self._add_paired(self.depth_pairing.add_image(stamp_ns, frame))
        else:
            self._add(frame)

    def _add_paired(self, paired: list[Paired[Frame]]) -> None:
        with self._lock:
            info = self._camera_info
        for pf in paired:
            depth = pf.depth
            if depth is not None and info is not None and info.distorted and depth.shape[:2] == info.hw:
                depth = self.undistorter.depth(depth, info)  # aligned with the undistorted image
            pf.item.metric_depth = depth
            if pf.depth is None:
                self._counters.add("frames_without_metric_depth")
            self._add(pf.item)
