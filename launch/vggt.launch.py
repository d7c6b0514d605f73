"""Launch the VGGT perception node (and optionally RViz).

    ros2 launch vggt_ros vggt.launch.py image_topic:=/camera/image_raw \
        camera_info_topic:=/camera/camera_info checkpoint:=facebook/VGGT-1B rviz:=true

The node subscribes to the relative names 'image' (or 'image/compressed') and 'camera_info', remapped
here; its outputs (depth/image, points, map, path, odometry, tracks) live in ``namespace`` (default
'vggt', which config/vggt.rviz expects). An empty ``checkpoint`` keeps the value of the params file.
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

DEFAULT_PARAMS = PathJoinSubstitution([FindPackageShare("vggt_ros"), "config", "vggt.yaml"])

ARGUMENTS = (
    ("image_topic", "/camera/image_raw",
     "sensor_msgs/Image topic (image_topic + '/compressed' with image_transport 'compressed')"),
    ("camera_info_topic", "/camera/camera_info", "sensor_msgs/CameraInfo topic of the same camera"),
    ("checkpoint", "", "VGGT weights: HF repo id or local file/directory; empty = the params file's value"),
    ("params_file", DEFAULT_PARAMS, "Parameter YAML (default share/vggt_ros/config/vggt.yaml)"),
    ("namespace", "vggt", "Namespace of the node and its topics"),
    ("use_sim_time", "false", "Use /clock (true when replaying a bag with `ros2 bag play --clock`)"),
    ("rviz", "false", "Start RViz with config/vggt.rviz"),
)


def _is_true(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"expected true or false, got {text!r}")
    return value in ("true", "1", "yes")


def _launch_node(context, *args, **kwargs):
    """Resolve the arguments once, so an empty checkpoint/params_file can fall back to defaults."""
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    params_file = arg("params_file") or DEFAULT_PARAMS.perform(context)
    overrides = {"use_sim_time": _is_true(arg("use_sim_time"))}
    if arg("checkpoint"):
        overrides["checkpoint"] = arg("checkpoint")
    image_topic = arg("image_topic")
    return [
        Node(
            package="vggt_ros",
            executable="vggt_node",
            name="vggt_node",
            namespace=arg("namespace"),
            output="screen",
            emulate_tty=True,
            parameters=[params_file, overrides],
            remappings=[
                ("image", image_topic),
                ("image/compressed", image_topic.rstrip("/") + "/compressed"),
                ("camera_info", arg("camera_info_topic")),
            ],
        )
    ]


def generate_launch_description() -> LaunchDescription:
    rviz_config = PathJoinSubstitution([FindPackageShare("vggt_ros"), "config", "vggt.rviz"])
    sim_time = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=val, description=doc) for name, val, doc in ARGUMENTS]
        + [
            OpaqueFunction(function=_launch_node),
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                arguments=["-d", rviz_config],
                parameters=[{"use_sim_time": sim_time}],
                condition=IfCondition(LaunchConfiguration("rviz")),
                output="screen",
            ),
        ]
    )
