"""Write what the node publishes into a ROS 2 MCAP bag (rosbags Writer), for Foxglove / ``ros2 bag``.

Why a bag: the replay's results can be inspected with the same tools as a live run (Foxglove, RViz
via ``ros2 bag play``), and an independent decoder (mcap_ros2) can check them. Messages are built
with :mod:`vggt_ros.messages` (the node's own field builders), serialised with the ROS 2
Jazzy typestore plus ``vggt_ros/msg/KeypointTracks``. Log time = header stamp = the input frame's
stamp, so the output lines up with the input bag.

Topics (node namespace ``/vggt`` as in launch/vggt.launch.py; disabled publishers are skipped like
in the node): /tf, /vggt/odometry, /vggt/path, /vggt/depth/image, /vggt/depth/camera_info,
/vggt/depth/confidence, /vggt/depth/rgb, /vggt/points, /vggt/map, /vggt/tracks, /diagnostics.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vggt_ros.core.types import FrameOutput, WindowOutput
from vggt_ros.messages.builders import to_rosbags
from vggt_ros.messages.camera_info import camera_info_fields
from vggt_ros.messages.diagnostics import diagnostic_array_fields, diagnostic_status_fields
from vggt_ros.messages.images import confidence_image_fields, depth_image_fields, rgb_image_fields
from vggt_ros.messages.point_clouds import pointcloud2_fields
from vggt_ros.messages.poses import odometry_fields, path_fields, transform_stamped_fields
from vggt_ros.messages.tracks import KEYPOINT_TRACKS_TYPE, keypoint_tracks_fields, register_custom_types

logger = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "/vggt"


def output_topics(namespace: str = DEFAULT_NAMESPACE) -> dict[str, tuple[str, str]]:
    """key -> (topic, message type) of everything the replay can write."""
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return {
        "tf": ("/tf", "tf2_msgs/msg/TFMessage"),
        "odometry": (f"{ns}/odometry", "nav_msgs/msg/Odometry"),
        "path": (f"{ns}/path", "nav_msgs/msg/Path"),
        "depth": (f"{ns}/depth/image", "sensor_msgs/msg/Image"),
        "depth_info": (f"{ns}/depth/camera_info", "sensor_msgs/msg/CameraInfo"),
        "confidence": (f"{ns}/depth/confidence", "sensor_msgs/msg/Image"),
        "depth_rgb": (f"{ns}/depth/rgb", "sensor_msgs/msg/Image"),
        "points": (f"{ns}/points", "sensor_msgs/msg/PointCloud2"),
        "map": (f"{ns}/map", "sensor_msgs/msg/PointCloud2"),
        "tracks": (f"{ns}/tracks", KEYPOINT_TRACKS_TYPE),
        "diagnostics": ("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray"),
    }


def _flags(params: Mapping[str, Any]) -> dict[str, bool]:
    g = params.get
    return {
        "tf": bool(g("publish_tf", True)),
        "odometry": bool(g("publish_odometry", True)),
        "path": bool(g("publish_path", True)),
        "depth": bool(g("publish_depth", True)),
        "depth_info": bool(g("publish_depth", True)),
        "confidence": bool(g("publish_confidence", False)),
        "depth_rgb": bool(g("publish_depth_rgb", False)),
        "points": bool(g("publish_cloud", True)),
        "map": bool(g("publish_map", True)),
        "tracks": bool(g("publish_tracks", True)),
        "diagnostics": bool(g("publish_diagnostics", True)),
    }


class OutputBagWriter:
    """Serialise pipeline outputs into a ROS 2 bag directory ``path`` holding ``<name>.mcap``.

    params: the node's validated parameters (publish_* flags, map_frame, camera_frame,
    path_max_poses); unknown/missing keys take the node's defaults.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        params: Mapping[str, Any] | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        overwrite: bool = True,
    ) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        params = dict(params or {})
        self.path = Path(path)
        if self.path.exists():
            if not overwrite:
                raise FileExistsError(f"{self.path} exists")
            shutil.rmtree(self.path)
        self.typestore = get_typestore(Stores.ROS2_JAZZY)
        register_custom_types(self.typestore)
        self.topics = output_topics(namespace)
        self.enabled = _flags(params)
        self.map_frame = str(params.get("map_frame", "map"))
        self.camera_frame = str(params.get("camera_frame", ""))
        self.path_max = int(params.get("path_max_poses", 10000))
        # The whole path in every message: throttled (bag time) so long bags stay O(N), not O(N^2).
        self.path_period_ns = int(float(params.get("diagnostics_period_s", 1.0)) * 1e9)
        self._last_path_ns: int | None = None
        self._writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._conns: dict[str, Any] = {}
        self._path_poses: list[np.ndarray] = []
        self._path_stamps: list[int] = []
        self.counts: dict[str, int] = {}

    @property
    def mcap_file(self) -> Path:
        """The .mcap file inside the bag directory (what Foxglove opens)."""
        return self.path / f"{self.path.name}.mcap"

    def _put(self, key: str, fields: Mapping[str, Any], stamp_ns: int) -> None:
        if not self.enabled.get(key, True):
            return
        topic, msgtype = self.topics[key]
        if key not in self._conns:
            self._conns[key] = self._writer.add_connection(topic, msgtype, typestore=self.typestore)
        msg = to_rosbags(self.typestore, msgtype, fields)
        self._writer.write(self._conns[key], int(stamp_ns), self.typestore.serialize_cdr(msg, msgtype))
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def _frame_id(self, f: FrameOutput) -> str:
        return self.camera_frame or f.frame_id

    def write_frame(self, f: FrameOutput) -> None:
        """Everything the node publishes for one frame (TF, odometry, depth, cloud)."""
        s, cam = int(f.stamp_ns), self._frame_id(f)
        T = np.asarray(f.world_T_camera, np.float64)
        self._put("tf", {"transforms": [transform_stamped_fields(T, s, self.map_frame, cam)]}, s)
        self._put("odometry", odometry_fields(T, s, self.map_frame, cam), s)
        hd, wd = f.depth.shape
        self._put("depth", depth_image_fields(f.depth, s, cam), s)
        self._put("depth_info", camera_info_fields(f.depth_intrinsics, hd, wd, s, cam), s)
        self._put("confidence", confidence_image_fields(f.depth_conf, s, cam), s)
        self._put("depth_rgb", rgb_image_fields(f.rgb, s, cam), s)
        self._put("points", pointcloud2_fields(f.points, f.colors, s, cam), s)
        self._path_poses.append(T)
        self._path_stamps.append(s)
        if self.path_max and len(self._path_poses) > self.path_max:
            del self._path_poses[0], self._path_stamps[0]

    def write_window(self, out: WindowOutput) -> None:
        """The frames of an accepted window, then its path and tracks (stamp of the newest frame)."""
        if not out.accepted or not out.frames:
            return
        for f in out.frames:
            self.write_frame(f)
        last = int(out.frames[-1].stamp_ns)
        if self._last_path_ns is None or last - self._last_path_ns >= self.path_period_ns:
            self.write_path(last)
        if out.tracks is not None:
            fid = self.camera_frame or out.tracks.frame_id or out.frames[-1].frame_id
            self._put("tracks", keypoint_tracks_fields(out.tracks, frame_id=fid), last)

    def write_path(self, stamp_ns: int) -> None:
        """The path so far (also written on close, so the last message holds every pose)."""
        if self._path_poses:
            self._put(
                "path", path_fields(self._path_poses, self._path_stamps, self.map_frame, stamp_ns), stamp_ns
            )
            self._last_path_ns = int(stamp_ns)

    def write_map(self, points: np.ndarray, colors: np.ndarray | None, stamp_ns: int) -> None:
        """The accumulated world map (map_frame)."""
        pts = np.asarray(points, np.float32).reshape(-1, 3)
        cols = None if colors is None else np.asarray(colors, np.uint8).reshape(-1, 3)
        self._put("map", pointcloud2_fields(pts, cols, int(stamp_ns), self.map_frame), stamp_ns)

    def write_diagnostics(
        self, values: Mapping[str, Any], stamp_ns: int, level: int = 0, message: str = ""
    ) -> None:
        status = diagnostic_status_fields("vggt_ros: pipeline", values, level, message, "vggt_ros")
        self._put("diagnostics", diagnostic_array_fields([status], int(stamp_ns)), stamp_ns)

    def close(self) -> None:
        if self._writer is not None:
            if self._path_stamps and self._last_path_ns != self._path_stamps[-1]:
                self.write_path(self._path_stamps[-1])
            self._writer.close()
            self._writer = None

    def __enter__(self) -> OutputBagWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
