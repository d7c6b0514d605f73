"""The colcon install space of this repository (built by scripts/colcon_build.sh) for subprocess tests.

The workspace is ``$VGGT_ROS_WS`` or ``/tmp/vggt_ros_ws``, the build script's default. ``environment()``
computes the environment of ``source install/setup.bash`` from the merge-install layout instead of
sourcing it: the layout is fixed by ``--merge-install`` (one prefix: lib/, lib/python3.X/site-packages,
share/), so the variables that matter are a few paths, known exactly and testable without a shell;
sourcing would also chain the wheels' recorded parent prefixes (the wheel builder's /opt/python/...)
and breaks under ``set -u``. The README path that sources setup.bash is tested on its own
(test_colcon_build.py::test_setup_bash_sources).
"""

from __future__ import annotations

import os
import site
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WS = Path("/tmp/vggt_ros_ws")
BUILD_HINT = "run `bash scripts/colcon_build.sh --with-test-tf2-msgs` (README, Set-up)"


class InstallSpaceMissing(RuntimeError):
    """No (or a stale, or another checkout's) colcon install space of this repository."""


@dataclass(frozen=True)
class InstallSpace:
    workspace: Path
    prefix: Path  # WS/install (merge-install)
    site_packages: Path  # the directory holding the installed vggt_ros package
    ros_prefix: Path  # where the ROS wheels put share/ament_index (or a sourced ROS install)

    @property
    def vggt_node(self) -> Path:
        return self.prefix / "lib" / "vggt_ros" / "vggt_node"

    @property
    def replay(self) -> Path:
        return self.prefix / "lib" / "vggt_ros" / "replay"

    @property
    def params_yaml(self) -> Path:
        return self.prefix / "share" / "vggt_ros" / "config" / "vggt.yaml"

    @property
    def share(self) -> Path:
        return self.prefix / "share" / "vggt_ros"


def workspace_dir() -> Path:
    return Path(os.environ.get("VGGT_ROS_WS") or DEFAULT_WS)


def _ros_prefix() -> Path:
    marker = Path("share", "ament_index", "resource_index", "packages", "rclpy")
    candidates = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    candidates += [sys.prefix, site.getuserbase()]
    for prefix in candidates:
        if (Path(prefix) / marker).exists():
            return Path(prefix)
    raise InstallSpaceMissing(f"no ROS 2 prefix with rclpy found; {BUILD_HINT}")


def install_space() -> InstallSpace:
    """The install space, or InstallSpaceMissing with a message saying how to build it."""
    ws = workspace_dir()
    prefix = ws / "install"
    if not (prefix / "share" / "vggt_ros" / "package.xml").is_file():
        raise InstallSpaceMissing(f"no colcon install of vggt_ros in {ws}; {BUILD_HINT}")
    src = ws / "src" / "vggt_ros"
    if not src.exists() or src.resolve() != REPO:
        origin = src.resolve() if src.exists() else "nothing"
        raise InstallSpaceMissing(f"{ws} was built from {origin}, not from {REPO}; {BUILD_HINT}")
    found = sorted(prefix.glob("lib/python3*/site-packages/vggt_ros/__init__.py"))
    found += sorted(prefix.glob("local/lib/python3*/dist-packages/vggt_ros/__init__.py"))
    if not found:
        raise InstallSpaceMissing(f"no installed vggt_ros Python package under {prefix}; {BUILD_HINT}")
    return InstallSpace(ws, prefix, found[0].parent.parent, _ros_prefix())


def _join(*parts: str | os.PathLike | None) -> str:
    return os.pathsep.join(str(p) for p in parts if p)


def environment(space: InstallSpace, domain_id: int, log_dir: str | None = None) -> dict[str, str]:
    """os.environ plus what `source install/setup.bash` sets, and an isolated ROS 2 setup.

    ROS_DOMAIN_ID is the caller's private domain, discovery stays on localhost, logs go to a temporary
    directory and rclpy checks message field types as on Humble (as in test/conftest.py).
    """
    env = dict(os.environ)
    env["AMENT_PREFIX_PATH"] = _join(space.prefix, space.ros_prefix, env.get("AMENT_PREFIX_PATH"))
    env["CMAKE_PREFIX_PATH"] = _join(space.prefix, env.get("CMAKE_PREFIX_PATH"))
    env["PYTHONPATH"] = _join(space.site_packages, env.get("PYTHONPATH"))
    env["LD_LIBRARY_PATH"] = _join(space.prefix / "lib", env.get("LD_LIBRARY_PATH"))
    env["PATH"] = _join(space.prefix / "bin", Path(sys.executable).parent, env.get("PATH"))
    env["COLCON_PREFIX_PATH"] = str(space.prefix)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_LOCALHOST_ONLY", None)
    env["ROS_PYTHON_CHECK_FIELDS"] = "1"
    env["ROS_LOG_DIR"] = log_dir or tempfile.mkdtemp(prefix="vggt_ros_log_")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env
