# vggt_ros on ROS 2 Jazzy (Ubuntu 24.04) with CUDA-enabled PyTorch.
#
#   docker build -t vggt_ros .
#   docker run --rm -it --gpus all --net host -v ~/.cache/huggingface:/root/.cache/huggingface vggt_ros \
#       ros2 launch vggt_ros vggt.launch.py image_topic:=/camera/image_raw camera_info_topic:=/camera/camera_info
#
# The PyTorch wheels bundle the CUDA runtime; the host needs an NVIDIA driver and the NVIDIA Container
# Toolkit (`--gpus all`). Pick another CUDA build with --build-arg TORCH_INDEX_URL=.../whl/cu126 etc.
FROM ros:jazzy-ros-base

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PYTHONUNBUFFERED=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

RUN apt-get update && apt-get install -y --no-install-recommends \
        python3-pip python3-colcon-common-extensions python3-rosdep \
        ros-jazzy-rosidl-default-generators ros-jazzy-ament-cmake-python \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /ws
# System dependencies from package.xml first (cached unless package.xml changes); headless: no rviz2.
COPY package.xml src/vggt_ros/package.xml
RUN apt-get update \
    && (rosdep init 2>/dev/null || true) && rosdep update --rosdistro jazzy \
    && rosdep install --from-paths src --ignore-src -y --rosdistro jazzy --skip-keys rviz2 \
    && rm -rf /var/lib/apt/lists/*

# Python dependencies rosdep does not package. torch is pinned and comes from the CUDA index;
# "numpy<2" keeps Ubuntu's numpy 1.26, which the apt scipy/opencv/cv_bridge are built against.
RUN python3 -m pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" \
    && python3 -m pip install "numpy<2" "safetensors>=0.4" "huggingface_hub>=0.20" "rosbags==0.11.9"

COPY . src/vggt_ros
RUN source /opt/ros/jazzy/setup.bash \
    && colcon build --packages-select vggt_ros --event-handlers console_direct+ \
    && rm -rf build log

RUN printf '%s\n' '#!/bin/bash' 'set -e' 'source /opt/ros/jazzy/setup.bash' 'source /ws/install/setup.bash' \
        'exec "$@"' > /vggt_entrypoint.sh \
    && chmod +x /vggt_entrypoint.sh
ENTRYPOINT ["/vggt_entrypoint.sh"]
CMD ["ros2", "launch", "vggt_ros", "vggt.launch.py"]
