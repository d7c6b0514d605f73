"""Write what the node publishes into a ROS 2 MCAP bag (rosbags Writer), for Foxglove / ``ros2 bag``.

Why a bag: the replay's results can be inspected with the same tools as a live run (Foxglove, RViz
via ``ros2 bag play``), and an independent decoder (mcap_ros2) can check them. The messages come
from the node's own :class:`~vggt_ros.outputs.builder.OutputBuilder` through a rosbags typestore
(ROS 2 Jazzy plus ``vggt_ros/msg/KeypointTracks``), on the topics of the output plan in the node's
namespace (``/vggt`` as in launch/vggt.launch.py). Log time = header stamp = the input frame's
stamp, so the output lines up with the input bag.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vggt_ros.messages.builders import to_rosbags
from vggt_ros.messages.tracks import register_custom_types
from vggt_ros.outputs.builder import Outgoing
from vggt_ros.outputs.plan import enabled_outputs, full_topic

DEFAULT_NAMESPACE = "/vggt"
TF_MESSAGE_TYPE = "tf2_msgs/msg/TFMessage"


class RosbagsMessages:
    """Message factory of the output builder for a rosbags typestore."""

    def __init__(self, typestore: Any) -> None:
        self.typestore = typestore

    def build(self, msg_type: str, fields: Mapping[str, Any]) -> Any:
        return to_rosbags(self.typestore, msg_type, fields)


class OutputBagWriter:
    """Serialise output messages into a ROS 2 bag directory ``path`` holding ``<name>.mcap``.

    params: the node's validated parameters (which outputs are on). ``topics``: output key ->
    (topic, message type) of the enabled outputs.
    """

    def __init__(self, path: str | os.PathLike[str], params: Mapping[str, Any],
                 namespace: str = DEFAULT_NAMESPACE, overwrite: bool = True) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        self.path = Path(path)
        if self.path.exists():
            if not overwrite:
                raise FileExistsError(f"{self.path} exists")
            shutil.rmtree(self.path)
        self.typestore = get_typestore(Stores.ROS2_JAZZY)
        register_custom_types(self.typestore)
        self.factory = RosbagsMessages(self.typestore)
        self.topics = {o.key: (full_topic(o, namespace), o.msg_type) for o in enabled_outputs(params)}
        self._writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._conns: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    @property
    def mcap_file(self) -> Path:
        """The .mcap file inside the bag directory (what Foxglove opens)."""
        return self.path / f"{self.path.name}.mcap"

    def write(self, m: Outgoing) -> None:
        """One builder message, at log time = its stamp (TF as a TFMessage, as a broadcaster sends;
        serialised messages as they are)."""
        topic, msgtype = self.topics[m.key]
        if isinstance(m.message, bytes):  # already serialised (the Path)
            raw = m.message
        elif m.key == "tf":
            tf = self.factory.build(TF_MESSAGE_TYPE, {"transforms": m.message})
            raw = self.typestore.serialize_cdr(tf, msgtype)
        else:
            raw = self.typestore.serialize_cdr(m.message, msgtype)
        if m.key not in self._conns:
            self._conns[m.key] = self._writer.add_connection(topic, msgtype, typestore=self.typestore)
        self._writer.write(self._conns[m.key], int(m.stamp_ns), raw)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> OutputBagWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
