"""Several bags: one after another, or each as a task on a Ray cluster (``vggt-ros-replay --ray``).

One code path for the per-bag work: the sequential loop and the Ray tasks both call
:func:`replay_one`, which returns a :class:`BagResult` (the metrics, or the error text of a
:class:`ReplayError`); the caller turns the results, in bag order, into the batch table
(:func:`vggt_ros.bag.report.batch_row` / ``write_batch_summary``).

Ray is an optional extra (``pip install -e ".[ray]"``). ``--ray local`` starts a private local
instance (one CPU per bag up to the machine's count, no dashboard, a 100 MiB object store: the tasks
only return metrics dicts) and shuts it down afterwards; ``--ray auto`` or ``--ray HOST:PORT``
connects to a running cluster, whose nodes must have vggt_ros installed and see the bags and the
output folder at the same paths (a shared filesystem): each task writes its bag's outputs itself.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vggt_ros.bag.errors import ReplayError
from vggt_ros.bag.replay import ReplayOptions, replay_bag

LOCAL_OBJECT_STORE_BYTES = 100 * 1024 * 1024
RAY_MISSING = (
    "--ray needs the optional 'ray' extra, which is not installed: "
    "python3 -m pip install -e \".[ray]\" -c constraints/ci.txt (or pip install 'vggt_ros[ray]')"
)


@dataclass(frozen=True)
class BagJob:
    name: str  # row name and, in a batch, the output subfolder
    bag: str
    target: str  # output folder


@dataclass
class BagResult:
    job: BagJob
    metrics: dict[str, Any] | None = None
    error: str = ""  # a ReplayError's text (bad input), or why the Ray task failed
    crashed: bool = False  # the task itself failed (worker died, unexpected exception), not bad input


def replay_one(job: BagJob, opts: ReplayOptions) -> BagResult:
    """Replay one bag; bad input (:class:`ReplayError`) becomes the result's error text."""
    try:
        return BagResult(job, replay_bag(job.bag, job.target, opts))
    except ReplayError as exc:
        return BagResult(job, None, str(exc))


def report_line(r: BagResult) -> None:
    """The per-bag line (stdout, or stderr for an error), printed around any progress bars."""
    if r.error:
        tqdm.write(f"vggt-ros-replay: error: {r.job.name}: {r.error}", file=sys.stderr)
        return
    m = r.metrics or {}
    t = m.get("trajectory") or {}
    ate_txt = f", ATE RMSE {t['ate']['rmse']:.4g} ({t['alignment']})" if "ate" in t else ""
    line = f"{r.job.name}: {m.get('frames_processed')} frames{ate_txt} -> {r.job.target}"
    tqdm.write(line, file=sys.stdout)


def run_sequential(
    jobs: Sequence[BagJob], opts: ReplayOptions, on_result: Callable[[BagResult], None] = report_line
) -> list[BagResult]:
    """One bag after the other; a bar over bags (position 0) above the replay's frame bar."""
    results = []
    with tqdm(total=len(jobs), unit="bag", desc="bags", position=0,
              disable=not opts.progress or len(jobs) < 2) as bar:
        for job in jobs:
            results.append(replay_one(job, opts))
            on_result(results[-1])
            bar.update()
    return results


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ReplayError(RAY_MISSING) from exc
    return ray


def _ray_task(job: BagJob, opts: ReplayOptions, log_level: int) -> BagResult:
    """What a Ray worker runs: the same :func:`replay_one`, with the driver's log level."""
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    return replay_one(job, opts)


def _init_ray(ray: Any, address: str, n_bags: int) -> None:
    if address == "local":
        # The workers import the driver's vggt_ros (not another install on the default path).
        root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        kwargs: dict[str, Any] = dict(
            num_cpus=max(1, min(n_bags, os.cpu_count() or 1)),
            include_dashboard=False,
            object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            runtime_env={"env_vars": {"PYTHONPATH": path}},
        )
    else:
        kwargs = dict(address=address)
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ReplayError(f"--ray {address}: cannot start or reach the Ray cluster: {exc}") from exc


def run_ray(
    jobs: Sequence[BagJob],
    opts: ReplayOptions,
    address: str,
    gpus_per_bag: float = 0.0,
    on_result: Callable[[BagResult], None] = report_line,
) -> list[BagResult]:
    """Each bag as a Ray task (``address``: 'local', 'auto' or a cluster address); the results come
    back in bag order. A bar over finished bags; the workers' frame bars are off. A task that fails
    as a task (its worker died, an unexpected exception) gives an error row marked ``crashed``."""
    if gpus_per_bag < 0:
        raise ReplayError(f"--ray-gpus-per-bag must be >= 0, got {gpus_per_bag:g}")
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        _init_ray(ray, address, len(jobs))
    try:
        task = ray.remote(_ray_task).options(num_cpus=1, num_gpus=gpus_per_bag)
        opts_ref = ray.put(replace(opts, progress=False))
        level = logging.getLogger().getEffectiveLevel()
        pending = {task.remote(job, opts_ref, level): i for i, job in enumerate(jobs)}
        results: list[BagResult | None] = [None] * len(jobs)
        with tqdm(total=len(jobs), unit="bag", desc="bags (ray)", disable=not opts.progress) as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                i = pending.pop(done[0])
                try:
                    r = ray.get(done[0])
                except ray.exceptions.RayError as exc:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    r = BagResult(jobs[i], None, f"ray task failed: {first}", crashed=True)
                results[i] = r
                on_result(r)
                bar.update()
    finally:
        if started:
            ray.shutdown()
    return [r for r in results if r is not None]
