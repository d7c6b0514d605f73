"""trajectory.png: top view and height over time of the (aligned) estimate vs ground truth.

Why: a glance tells whether a low ATE hides a systematic failure (drift, a scale jump, a flipped
axis). The "up" axis is the one along which the ground truth (else the estimate) moves least, so the
plot works for z-up worlds (TUM mocap) and for VGGT's y-down camera world alike.
"""

from __future__ import annotations

import os

import numpy as np


def plot_trajectory(
    path: str | os.PathLike[str],
    est_stamps_ns: np.ndarray,
    est_positions: np.ndarray,
    gt_positions: np.ndarray | None = None,
    errors: np.ndarray | None = None,
    title: str = "",
) -> None:
    """Write the figure. With GT: ``est_positions`` must be aligned to it and matched 1:1 (errors [N])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    est = np.asarray(est_positions, np.float64).reshape(-1, 3)
    ref = None if gt_positions is None else np.asarray(gt_positions, np.float64).reshape(-1, 3)
    basis = ref if ref is not None and len(ref) > 1 else est
    up = int(np.argmin(np.var(basis, axis=0))) if len(basis) > 1 else 2
    a, b = [i for i in range(3) if i != up]
    names = "xyz"
    t = (
        (np.asarray(est_stamps_ns, np.int64) - int(est_stamps_ns[0])) / 1e9
        if len(est_stamps_ns)
        else np.zeros(0)
    )

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1.2, 1]})
    if ref is not None:
        ax0.plot(ref[:, a], ref[:, b], "-", color="0.3", lw=1.5, label="ground truth")
    if errors is not None and len(errors) == len(est):
        sc = ax0.scatter(est[:, a], est[:, b], c=errors, cmap="viridis", s=10, label="estimate (aligned)")
        fig.colorbar(sc, ax=ax0, label="position error")
    else:
        ax0.plot(est[:, a], est[:, b], ".-", color="tab:blue", ms=3, lw=1, label="estimate")
    if len(est):
        ax0.plot(est[0, a], est[0, b], "o", color="tab:green", label="start")
    ax0.set_xlabel(names[a])
    ax0.set_ylabel(names[b])
    ax0.set_aspect("equal", adjustable="datalim")
    ax0.set_title("top view")
    ax0.legend(loc="best", fontsize=8)
    ax0.grid(alpha=0.3)
    if ref is not None:
        ax1.plot(t, ref[:, up], "-", color="0.3", label="ground truth")
    ax1.plot(t, est[:, up], ".-", color="tab:blue", ms=3, lw=1, label="estimate")
    ax1.set_xlabel("time [s]")
    ax1.set_ylabel(f"{names[up]} (height axis)")
    ax1.set_title("height over time")
    ax1.legend(loc="best", fontsize=8)
    ax1.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
