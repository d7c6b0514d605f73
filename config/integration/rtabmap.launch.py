"""RTAB-Map (ROS 2) mapping on vggt_ros outputs: our odometry, our depth and our RGB; no visual odometry.

    ros2 launch vggt_ros vggt.launch.py image_topic:=/camera/image_raw camera_info_topic:=/camera/camera_info
    ros2 launch <share>/vggt_ros/config/integration/rtabmap.launch.py

Wiring (the node in its default namespace 'vggt', in its default TF mode):
  * odom -> /vggt/odometry: RTAB-Map takes the odometry from our topic (no rgbd_odometry node is
    started: visual odometry is off), as rtabmap_launch's `visual_odometry:=false
    odom_topic:=/vggt/odometry` would do;
  * depth/image -> /vggt/depth/image (32FC1, metres with a metric scale_source), rgb/image ->
    /vggt/depth/rgb (the colour image resampled to the depth resolution, so RGB and depth are
    registered pixel for pixel) and rgb/camera_info -> /vggt/depth/camera_info (the intrinsics of
    both at that resolution). All four carry the image's stamp, so exact synchronisation works.
  * TF: RTAB-Map publishes map -> odom (its loop closures) while our node publishes odom -> base_link:
    keep publish_map_to_odom false (the default). Were our node to publish map -> odom too, set
    RTAB-Map's publish_tf to false.
The equivalent with rtabmap_launch: `ros2 launch rtabmap_launch rtabmap.launch.py visual_odometry:=false
odom_topic:=/vggt/odometry rgb_topic:=/vggt/depth/rgb depth_topic:=/vggt/depth/image
camera_info_topic:=/vggt/depth/camera_info frame_id:=base_link approx_sync:=false`.
"""

from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

# (RTAB-Map's input, our output topic)
REMAPPINGS = [
    ("odom", "/vggt/odometry"),
    ("rgb/image", "/vggt/depth/rgb"),
    ("rgb/camera_info", "/vggt/depth/camera_info"),
    ("depth/image", "/vggt/depth/image"),
]

PARAMETERS = {
    "frame_id": "base_link",  # our base_frame
    "map_frame_id": "map",  # our map_frame
    "odom_frame_id": "",  # empty: the odometry comes from the 'odom' topic, not from TF
    "subscribe_depth": True,
    "subscribe_rgb": True,
    "subscribe_odom_info": False,  # no rtabmap odometry node
    "approx_sync": False,  # depth, rgb, camera_info and odometry share the image stamp
    "sync_queue_size": 30,  # our outputs come a window's frames at a time
    "topic_queue_size": 30,
    "publish_tf": True,  # map -> odom
}


def generate_launch_description() -> LaunchDescription:
    sim_time = {"use_sim_time": LaunchConfiguration("use_sim_time")}
    return LaunchDescription([
        DeclareLaunchArgument("use_sim_time", default_value="false", description="Use /clock (bag replay)"),
        DeclareLaunchArgument("rtabmap_viz", default_value="false", description="Start rtabmap_viz"),
        # -d: start from an empty database (delete ~/.ros/rtabmap.db)
        Node(package="rtabmap_slam", executable="rtabmap", output="screen", arguments=["-d"],
             parameters=[PARAMETERS, sim_time], remappings=REMAPPINGS),
        Node(package="rtabmap_viz", executable="rtabmap_viz", output="screen",
             parameters=[PARAMETERS, sim_time], remappings=REMAPPINGS,
             condition=IfCondition(LaunchConfiguration("rtabmap_viz"))),
    ])
