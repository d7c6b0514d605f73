"""vggt_ros: VGGT on a ROS 2 camera stream (poses on TF, depth, point clouds, keypoint tracks).

Layers: ``model`` (the network, preprocessing, checkpoints, inference engine), ``core`` (windows,
keyframes, alignment, map, depth back-projection; ROS-free), ``messages`` (ROS-free message field
builders and decoders), ``sim`` (synthetic scenes), ``ros`` (parameter table and the rclpy node),
``bag`` (rosbag replay), ``eval`` (trajectory and depth metrics).
"""

__version__ = "0.1.0"

# The generated messages (vggt_ros.msg, built by colcon) live in the install space's vggt_ros package,
# next to a copy of this one: a source checkout on sys.path (tests, development) finds them too.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)
