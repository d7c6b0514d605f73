"""vggt_ros: VGGT on a ROS 2 camera stream (poses on TF, depth, point clouds, keypoint tracks).

Layers: ``model`` (the network, preprocessing, checkpoints, inference engine), ``core`` (windows,
keyframes, alignment, map; ROS-free), ``sim`` (synthetic scenes), ``ros`` (message conversions and
the rclpy node), ``bag`` (rosbag replay), ``eval`` (trajectory and depth metrics).
"""

__version__ = "0.1.0"
