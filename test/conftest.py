"""Shared test setup: ROS 2 environment for the real rclpy wheels, isolated from other processes."""

import os

# Field types checked as on Humble; an isolated DDS domain on localhost only.
os.environ.setdefault("ROS_PYTHON_CHECK_FIELDS", "1")
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
