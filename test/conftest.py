"""Shared test setup: ROS 2 environment for the real rclpy wheels, isolated from other processes."""

import os

# Field types checked as on Humble; an isolated DDS domain on localhost only.
os.environ.setdefault("ROS_PYTHON_CHECK_FIELDS", "1")
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


import pytest  # noqa: E402


@pytest.fixture(scope="module")
def ctx():
    """An rclpy context of the test module's own (the node tests' executors and nodes live in it)."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)


@pytest.fixture(scope="module")
def space():
    """The colcon install space (test/colcon_install.py), or a failure saying how to build it."""
    from colcon_install import InstallSpaceMissing, install_space

    try:
        return install_space()
    except InstallSpaceMissing as exc:
        pytest.fail(str(exc), pytrace=False)
