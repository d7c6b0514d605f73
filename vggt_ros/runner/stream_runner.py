"""StreamRunner: the one loop from camera frames to window outputs.

The node drives it from its callbacks (threaded), the bag replay from the bag (synchronous, or
threaded with ``--realtime``), the node-stream benchmark from a paced producer. Why one class: the
worker, the output thread, back-pressure, out-of-memory trimming, the warm-up and reset epochs are
where copies drift; here they exist once.

Synchronous mode (deterministic): after :meth:`add_frame` the caller runs :meth:`run_ready`, which
predicts, places and emits every ready window in the calling thread; :meth:`finish` flushes the rest.
No frame is skipped because inference is slow.

Threaded mode (:meth:`start`): an inference worker takes windows as frames arrive; with
``overlap_outputs`` an output thread emits placed windows while the worker predicts the next one.
At most ``OUTPUT_QUEUE_SIZE`` placed windows wait; beyond that the worker waits (nothing dropped).
When inference cannot keep up, the pipeline's ``skip_policy`` decides which pending frames go.

Either way ``on_output(window_output, latency_s)`` is called once per window, in window order, on
one thread at a time (the output thread, the worker, or the caller).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from vggt_ros.core.frame_buffer import Counters
from vggt_ros.core.pipeline import StreamingPipeline
from vggt_ros.core.types import Frame, Predictor, WindowOutput
from vggt_ros.core.window_types import PlacedWindow, WindowJob
from vggt_ros.runner.health import StreamHealth
from vggt_ros.runner.oom import oom_exception_types, trim_job

logger = logging.getLogger(__name__)

OUTPUT_QUEUE_SIZE = 2  # placed windows waiting for the output thread before the worker waits
IDLE_WAIT_S = 0.05  # how long the worker sleeps when no window is ready (woken early by add_frame)

OutputCallback = Callable[[WindowOutput, float], None]


class StreamRunner:
    """Runs ``predictor`` over the windows of ``pipeline`` and hands every output to ``on_output``.

    log: anything with ``info``/``warning``/``error`` taking one string (a ``logging.Logger`` or the
    node's rcl logger), so the runner's messages reach the node's log.
    health: where the runner records the stream's recent events for the diagnostics level (frames
    added, windows emitted, out-of-memory, worker errors); a wall-clock one with the defaults if None.
    """

    def __init__(self, pipeline: StreamingPipeline, predictor: Predictor, on_output: OutputCallback, *,
                 overlap_outputs: bool = True, log: Any = None, health: StreamHealth | None = None,
                 time_jump_s: float = 0.0, on_reset: Callable[[], None] | None = None,
                 path_max_poses: int = 0) -> None:
        self.pipeline = pipeline
        self._path_max_poses = int(path_max_poses)  # the poses a loop closure re-publishes (0: all)
        self.predictor = predictor
        self._on_output = on_output
        self._overlap = bool(overlap_outputs)
        self._log = log if log is not None else logger
        self._stats = Counters()
        self.health = health if health is not None else StreamHealth()
        self._latencies: deque[float] = deque(maxlen=50)
        self._max_window_frames = int(pipeline.config.window_size)
        self._oom_types = oom_exception_types()
        self._warmed_up = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._placed: queue.Queue[tuple[PlacedWindow, float]] = queue.Queue(maxsize=OUTPUT_QUEUE_SIZE)
        self._worker: threading.Thread | None = None
        self._emitter: threading.Thread | None = None
        self._time_jump_ns = int(time_jump_s * 1e9)  # 0: never reset on stamps going back
        self._on_reset = on_reset
        self._newest_stamp: int | None = None
        self._stamp_lock = threading.Lock()

    # ------------------------------------------------------------------ state
    def stats(self) -> dict[str, int]:
        """The runner's counters: oom_events, frames_dropped_oom, worker_errors, warmup_failures,
        windows_emitted."""
        return self._stats.snapshot()

    def latencies(self) -> list[float]:
        """Window latencies (take to outputs built), newest last, at most the last 50."""
        return list(self._latencies)

    @property
    def max_window_frames(self) -> int:
        """Frames per window now (shrinks after out-of-memory errors)."""
        return self._max_window_frames

    @property
    def threaded(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    @property
    def has_output_thread(self) -> bool:
        return self._emitter is not None and self._emitter.is_alive()

    # ------------------------------------------------------------------ input
    def add_frame(self, frame: Frame) -> bool:
        """Queue a frame (thread-safe, cheap); False if the pipeline rejected it (counted there).

        Stamps going back by more than ``time_jump_s`` (a bag played in a loop, a restarted clock)
        start a new world first, as tf2's buffer clears itself on a jump back; smaller reorders are
        rejected by the pipeline as out of order."""
        stamp = int(frame.stamp_ns)
        with self._stamp_lock:
            newest = self._newest_stamp
            jumped = self._time_jump_ns > 0 and newest is not None and stamp < newest - self._time_jump_ns
            self._newest_stamp = stamp if newest is None or jumped else max(newest, stamp)
        if jumped:
            self._stats.add("time_jump_resets")
            self._log.warning(f"stamps jumped back by {(newest - stamp) / 1e9:.3f} s (a bag loop or a "
                              "restarted clock?): starting a new world")
            self.reset()
        accepted = self.pipeline.add_frame(frame)
        self.health.frame_received(frame.stamp_ns, accepted)
        if accepted:  # the engine preprocesses it now, in its own thread (non-blocking)
            self.predictor.prefetch([frame.image], [frame.stamp_ns])
        self._wake.set()
        return accepted

    def reset(self) -> None:
        """Start a new world at the next frame. Windows taken or placed before are dropped by the
        pipeline (reset epochs); the predictor forgets its per-frame caches (stamps may repeat)."""
        self.pipeline.reset()
        self.predictor.clear_caches()
        if self._on_reset is not None:  # the caller's state of the old world (outputs, pairing)
            self._on_reset()

    # ------------------------------------------------------------------ synchronous mode
    def run_ready(self) -> int:
        """Run every ready window in the calling thread; returns how many ran."""
        n = 0
        while (job := self.pipeline.next_window()) is not None:
            self._run_job(job, serial=True)
            n += 1
        return n

    def finish(self, timeout: float = 30.0) -> int:
        """End of stream: stop the threads (their queued windows are still emitted), then run what is
        ready and the remaining frames in the calling thread. Returns the windows run here."""
        self.stop(timeout)
        n = self.run_ready()
        while (job := self.pipeline.flush()) is not None:
            self._run_job(job, serial=True)
            n += 1
        return n

    # ------------------------------------------------------------------ threaded mode
    def start(self) -> None:
        """Start the inference thread and, with ``overlap_outputs``, the output thread (idempotent)."""
        if self.threaded:
            return
        self._stop.clear()
        if self._overlap and not self.has_output_thread:
            self._emitter = threading.Thread(target=self._emit_loop, name="vggt_outputs", daemon=True)
            self._emitter.start()
        self._worker = threading.Thread(target=self._worker_loop, name="vggt_inference", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the worker, then let the output thread emit what was already placed. True when both
        threads ended within ``timeout`` (each)."""
        self._stop.set()
        self._wake.set()
        for t in (self._worker, self._emitter):
            if t is not None:
                t.join(timeout)
        alive = any(t is not None and t.is_alive() for t in (self._worker, self._emitter))
        if not alive:
            self._worker = self._emitter = None
        return not alive

    def _worker_loop(self) -> None:
        while not self._stop.is_set():
            try:
                job = self.pipeline.next_window()
            except Exception as exc:  # never let the worker die silently
                self._count("worker_errors")
                self._log.error(f"next_window failed: {exc!r}")
                job = None
            if job is None:
                self._wake.wait(IDLE_WAIT_S)
                self._wake.clear()
                continue
            try:
                self._run_job(job, serial=False)
            except Exception as exc:
                self._count("worker_errors")
                self._log.error(f"window {job.window_index} failed: {exc!r}")

    def _emit_loop(self) -> None:
        """Output thread: emit placed windows in order; drains the queue on stop."""
        while True:
            try:
                placed, t0 = self._placed.get(timeout=IDLE_WAIT_S)
            except queue.Empty:
                if self._stop.is_set() and (self._worker is None or not self._worker.is_alive()):
                    return
                continue
            try:
                self._emit(placed, t0)
            except Exception as exc:  # never let the output thread die silently
                self._count("worker_errors")
                self._log.error(f"window {placed.job.window_index} outputs failed: {exc!r}")
            finally:
                self._placed.task_done()

    # ------------------------------------------------------------------ one window
    def _run_job(self, job: WindowJob, serial: bool) -> None:
        if not self._warmed_up:
            self._warm_up(job)
        t0 = time.perf_counter()
        prediction = None
        while prediction is None:
            job, dropped = trim_job(job, self._max_window_frames)
            if dropped:
                self._count("frames_dropped_oom", dropped)
            try:
                prediction = self.predictor.predict(job.images, job.query_points, job.frame_keys)
            except self._oom_types as exc:
                if not self._shrink_after_oom(job, exc):
                    return
        t1 = time.perf_counter()
        placed = self.pipeline.place(job, prediction)  # the next window's context is now known
        if placed.timings is not None:
            placed.timings["predict"] = t1 - t0
        if placed.accepted:
            self._verify_loop(placed)
        if serial or not self.has_output_thread:
            self._emit(placed, t0)
            return
        while True:  # back-pressure: wait for the output thread, never drop a placed window
            try:
                self._placed.put((placed, t0), timeout=0.1)
                return
            except queue.Full:
                if not self.has_output_thread:
                    self._count("worker_errors")
                    self._log.error("output thread is not running: window emitted on the worker")
                    self._emit(placed, t0)
                    return

    def _verify_loop(self, placed: PlacedWindow) -> None:
        """Predict the pose graph's loop candidate window, if any, and let the pipeline verify it; an
        accepted loop travels with this window (its outputs carry the new correction)."""
        job = self.pipeline.loop_job()
        if job is None:
            return
        t0 = time.perf_counter()
        try:
            prediction = self.predictor.predict(job.images, None, job.frame_keys)
        except self._oom_types as exc:
            self._count("loop_oom")
            self._log.warning(f"out of memory verifying a loop candidate ({exc}); candidate skipped")
            return
        except Exception as exc:  # a failed verification never costs the window
            self._count("loop_errors")
            self._log.error(f"loop candidate {job.match} -> {job.query} could not be predicted: {exc!r}")
            return
        event = self.pipeline.close_loop(job, prediction)
        if placed.timings is not None:
            placed.timings["loop"] = time.perf_counter() - t0
        if event is not None:
            placed.loop_closures.append(event)
            placed.map_T_odom = self.pipeline.map_T_odom()
            placed.optimised_poses = self.pipeline.optimised_trajectory(newest=self._path_max_poses)

    def _shrink_after_oom(self, job: WindowJob, exc: BaseException) -> bool:
        """Count an out-of-memory error and shrink the windows; False when the window is dropped."""
        self._count("oom_events")
        n = len(job.frames)
        if n <= 2:
            self._count("frames_dropped_oom", sum(job.new_mask))
            self.health.add("windows_dropped_oom")
            self._log.error(f"out of memory even with a 2-frame window ({exc}); window {job.window_index} "
                            "dropped")
            return False
        self._max_window_frames = n - 1
        self._log.warning(f"out of memory with a {n}-frame window: windows now hold at most "
                          f"{self._max_window_frames} frames ({exc})")
        return True

    def _emit(self, placed: PlacedWindow, t0: float) -> None:
        output = self.pipeline.emit(placed)
        latency = time.perf_counter() - t0
        self._latencies.append(latency)
        self.health.window_done(output.accepted, len(output.frames), latency, output.rejection_reason)
        self._stats.add("windows_emitted")
        self._on_output(output, latency)

    def _count(self, key: str, n: int = 1) -> None:
        """A runner counter (stats) that is also a health event (oom, dropped frames, worker errors)."""
        self._stats.add(key, n)
        self.health.add(key, n)

    def _warm_up(self, job: WindowJob) -> None:
        """Once, before the first window: let a compiled engine compile every window shape of the
        stream now, so that no later window stalls on compilation. Shapes it did not cover (flush,
        out-of-memory trimming) then run eagerly instead."""
        self._warmed_up = True
        cfg = self.pipeline.config
        try:
            report = self.predictor.warmup(cfg.window_size, cfg.stride,
                                           image_hw=tuple(job.images[0].shape[:2]), eager_on_recompile=True)
        except Exception as exc:  # out of memory included: the stream still runs, compiling on use
            self._stats.add("warmup_failures")
            self._log.error(f"model warm-up failed ({exc!r}); windows compile when they occur")
            return
        if report.get("compiled"):
            self._log.info(f"model warm-up: {report['graphs_compiled']} graphs compiled in "
                           f"{report['seconds']:.1f} s (window sizes {report['window_sizes']}, DINOv2 "
                           f"batches {report['dino_buckets']})")
