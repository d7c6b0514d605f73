"""ROS-free message field builders and decoders, by message family.

Shared by the rclpy node (:mod:`vggt_ros.ros.node`) and the offline bag reader/writer
(:mod:`vggt_ros.bag`), so both publish and read exactly the same bytes. Nothing here imports ROS:
every ``*_fields`` function returns a plain nested ``dict`` of field values (numpy arrays for numeric
sequences, ints, floats, strings, nested dicts for sub-messages, lists of dicts for message
sequences), which :mod:`vggt_ros.messages.builders` turns into an rclpy message or a ``rosbags``
dataclass. The readers (``image_to_rgb``, ``pointcloud2_to_xyz_rgb``, ``*_msg_*`` helpers) are
duck-typed: they accept rclpy messages, rosbags dataclasses and ``mcap_ros2`` decoded objects alike,
and always return new arrays (never views of a message buffer).

Modules: :mod:`~vggt_ros.messages.stamps` (Time, Header), :mod:`~vggt_ros.messages.images` (Image,
CompressedImage), :mod:`~vggt_ros.messages.camera_info`, :mod:`~vggt_ros.messages.point_clouds`
(PointCloud2; the back-projection itself is :mod:`vggt_ros.core.backprojection`),
:mod:`~vggt_ros.messages.poses` (Pose, Transform, Odometry, Path), :mod:`~vggt_ros.messages.tracks`
(the custom ``vggt_ros/msg/KeypointTracks``), :mod:`~vggt_ros.messages.diagnostics`,
:mod:`~vggt_ros.messages.builders` (fields <-> rclpy / rosbags messages),
:mod:`~vggt_ros.messages.errors` (:class:`~vggt_ros.messages.errors.MessageError`: every decoder
raises it, and only it, for a malformed message; ``MAX_IMAGE_PIXELS``).

Conventions: REP 103 (metres, right-handed), REP 118 depth (``32FC1`` metres, NaN = invalid,
little-endian), quaternions ``(x, y, z, w)``, poses as 4x4 ``parent_T_child`` float64 matrices,
stamps as integer nanoseconds.
"""
