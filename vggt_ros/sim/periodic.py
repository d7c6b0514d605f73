"""An endless camera stream from one closed orbit: live-like stamps, ground truth from the stamp alone.

Why: process-level and long-run tests feed the node for minutes at 30 Hz without rendering thousands
of frames. The "orbit" sequence with ``round(12 * fps)`` frames closes exactly (30 deg/s, one turn),
so frame k of the stream shows orbit frame ``k mod n`` and the camera never jumps. Stamps are
multiples of the frame period (near the wall clock, so receivers can measure latency), and the
orbit frame of any stamp is ``(stamp // period) mod n``: the publisher and the oracle answering for
it need no shared state.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

import numpy as np

from vggt_ros.sim.sequences import SyntheticSequence, make_sequence

ORBIT_SECONDS = 12.0  # 360 degrees at the orbit's 30 deg/s


class PeriodicOrbit:
    """The closed orbit (``height`` x ``width`` at ``fps``) and the stamp <-> frame rule."""

    def __init__(self, fps: float = 30.0, height: int = 120, width: int = 160, seed: int = 0) -> None:
        n = int(round(ORBIT_SECONDS * fps))
        self.seq: SyntheticSequence = make_sequence("orbit", n, height=height, width=width, fps=fps,
                                                    seed=seed)
        self.period_ns = int(round(1e9 / fps))

    def __len__(self) -> int:
        return len(self.seq)

    def prerender(self) -> None:
        """Render (and cache) every frame now, so that a timed stream does not render on the way."""
        for i in range(len(self.seq)):
            self.seq.render_frame(i)

    def index(self, stamp_ns: int) -> int:
        """Orbit frame shown at ``stamp_ns`` (a multiple of the period)."""
        return int(stamp_ns // self.period_ns) % len(self.seq)

    def first_stamp(self, now_ns: int | None = None) -> int:
        """The next period multiple after ``now_ns`` (default: the wall clock)."""
        now = time.time_ns() if now_ns is None else int(now_ns)
        return (now // self.period_ns + 1) * self.period_ns

    def frame(self, stamp_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """(rgb, depth) shown at ``stamp_ns``."""
        return self.seq.render_frame(self.index(stamp_ns))

    def ground_truth(self) -> Mapping[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """stamp -> (world_T_camera, K, depth) for any period-multiple stamp (the oracle's input)."""
        return _PeriodicGT(self)


class _PeriodicGT(Mapping):
    def __init__(self, orbit: PeriodicOrbit) -> None:
        self._o = orbit

    def __getitem__(self, stamp: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if int(stamp) % self._o.period_ns:
            raise KeyError(f"stamp {stamp} ns is not a multiple of the {self._o.period_ns} ns frame period")
        i = self._o.index(int(stamp))
        return self._o.seq.world_T_camera[i], self._o.seq.K, self._o.seq.render_frame(i)[1]

    def __iter__(self) -> Iterator[int]:  # endless stream: no finite key set
        return iter(())

    def __len__(self) -> int:
        return 0
