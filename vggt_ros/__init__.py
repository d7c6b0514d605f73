"""vggt_ros: VGGT on a ROS 2 camera stream (poses on TF, depth, point clouds, keypoint tracks).

Layers: ``model`` (the network, preprocessing, checkpoints, inference engine), ``core`` (windows,
keyframes, alignment, map, depth back-projection; ROS-free), ``messages`` (ROS-free message field
builders and decoders), ``sim`` (synthetic scenes), ``ros`` (parameter table and the rclpy node),
``bag`` (rosbag replay), ``eval`` (trajectory and depth metrics).
"""

__version__ = "0.1.0"
