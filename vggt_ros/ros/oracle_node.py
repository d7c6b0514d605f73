"""``python3 -m vggt_ros.ros.oracle_node``: the VGGT node answered by ground truth of the synthetic orbit.

The node is the real one (same class, parameters, loop and outputs); only the predictor is the
oracle (:class:`vggt_ros.core.oracle.OraclePredictor`) over :class:`vggt_ros.sim.periodic.PeriodicOrbit`,
which :mod:`vggt_ros.ros.sim_camera` publishes. Why: the node process can be run and measured for
minutes on a CPU (tests, the long-run benchmark, demos), with outputs checkable against the truth.

    python3 -m vggt_ros.ros.oracle_node [--rate 30 --width 160 --height 120 --target 126]
        [--rot-noise-deg 0 --trans-noise 0] --ros-args ...    (the node's own ROS arguments)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vggt_ros.core.oracle import OraclePredictor
from vggt_ros.ros.node import main as node_main
from vggt_ros.sim.periodic import PeriodicOrbit


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args = argv[argv.index("--ros-args"):] if "--ros-args" in argv else []
    own = argv[: len(argv) - len(ros_args)]
    ap = argparse.ArgumentParser(prog="oracle_node", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=30.0, help="the sim camera's rate (frame period)")
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--height", type=int, default=120)
    ap.add_argument("--target", type=int, default=126, help="network input width (multiple of 14)")
    ap.add_argument("--rot-noise-deg", type=float, default=0.0)
    ap.add_argument("--trans-noise", type=float, default=0.0)
    args = ap.parse_args(own)
    orbit = PeriodicOrbit(args.rate, args.height, args.width)
    orbit.prerender()  # the ground truth of every stamp is ready before the node starts
    oracle = OraclePredictor(orbit.ground_truth(), target_size=args.target,
                             pose_noise_rot_deg=args.rot_noise_deg, pose_noise_trans=args.trans_noise)
    return node_main(["oracle_node", *ros_args], predictor=oracle)


if __name__ == "__main__":
    sys.exit(main())
