"""Launch the VGGT perception node (and optionally RViz).

    ros2 launch vggt_ros vggt.launch.py image_topic:=/camera/image_raw \
        camera_info_topic:=/camera/camera_info checkpoint:=facebook/VGGT-1B rviz:=true

The node subscribes to the relative names 'image' (or 'image/compressed') and 'camera_info', remapped
here; its outputs live in ``namespace`` (default 'vggt', which config/vggt.rviz expects; with
publish_map_to_odom pass rviz_config:=<share>/vggt_ros/config/vggt_map_to_odom.rviz). The
arguments are handled by ``vggt_ros.ros.launch_config`` (unit-tested); this file only wires them.
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from vggt_ros.ros.launch_config import ARGUMENTS, node_launch_config

DEFAULT_PARAMS = PathJoinSubstitution([FindPackageShare("vggt_ros"), "config", "vggt.yaml"])
DEFAULT_RVIZ = PathJoinSubstitution([FindPackageShare("vggt_ros"), "config", "vggt.rviz"])
SHARE_DEFAULTS = {"params_file": DEFAULT_PARAMS, "rviz_config": DEFAULT_RVIZ}  # the None defaults


def _launch_node(context, *args, **kwargs):
    values = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    cfg = node_launch_config(values, DEFAULT_PARAMS.perform(context))
    return [Node(package="vggt_ros", executable="vggt_node", name=cfg.name, namespace=cfg.namespace,
                 output="screen", emulate_tty=True, parameters=cfg.parameters, remappings=cfg.remappings)]


def generate_launch_description() -> LaunchDescription:
    rviz_config = LaunchConfiguration("rviz_config")
    sim_time = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=SHARE_DEFAULTS[name] if default is None else default,
                               description=doc) for name, default, doc in ARGUMENTS]
        + [
            OpaqueFunction(function=_launch_node),
            Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                 arguments=["-d", rviz_config], parameters=[{"use_sim_time": sim_time}],
                 condition=IfCondition(LaunchConfiguration("rviz"))),
        ]
    )
