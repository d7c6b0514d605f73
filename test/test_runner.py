"""The shared streaming loop (StreamRunner), its depth pairing, OOM trimming and rate meter (no ROS)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from predictor_doubles import OomAbove

from vggt_ros.core.oracle import OraclePredictor
from vggt_ros.core.pipeline import StreamingPipeline
from vggt_ros.core.types import Frame, PredictorBase
from vggt_ros.core.window_types import WindowJob
from vggt_ros.params.validation import pipeline_config_from_params, validate_params
from vggt_ros.runner.depth_pairing import DepthPairing
from vggt_ros.runner.diagnostics import RateMeter
from vggt_ros.runner.oom import trim_job
from vggt_ros.runner.stream_runner import StreamRunner
from vggt_ros.sim.sequences import make_sequence

TARGET = 126


def _job(n_ctx: int, n_new: int) -> WindowJob:
    frames = [Frame(stamp_ns=i, image=np.zeros((4, 4, 3), np.uint8)) for i in range(n_ctx + n_new)]
    return WindowJob(7, frames, [False] * n_ctx + [True] * n_new, np.zeros((3, 2), np.float32))


def test_trim_job_drops_context_before_new_frames_and_keeps_the_anchor():
    job, dropped = trim_job(_job(4, 3), 5)
    assert [f.stamp_ns for f in job.frames] == [0, 3, 4, 5, 6] and dropped == 0
    assert job.new_mask == [False, False, True, True, True]
    job, dropped = trim_job(_job(4, 3), 3)
    assert [f.stamp_ns for f in job.frames] == [0, 5, 6] and dropped == 1
    job, dropped = trim_job(_job(0, 6), 4)  # bootstrap: the newest frames survive, queries dropped
    assert [f.stamp_ns for f in job.frames] == [2, 3, 4, 5] and dropped == 2 and job.query_points is None
    same, dropped = trim_job(_job(2, 2), 8)
    assert len(same.frames) == 4 and dropped == 0


def test_rate_meter():
    r = RateMeter(window_s=10.0)
    for i in range(11):
        r.add(1, now=100.0 + i * 0.5)
    assert r.rate(now=105.0) == pytest.approx(11 / 5.0)
    assert r.rate(now=200.0) == 0.0


def _depth(v: float) -> np.ndarray:
    return np.full((2, 2), v, np.float32)


def test_depth_pairing_takes_the_nearest_depth_within_the_tolerance_keeps_order_and_never_stalls():
    p: DepthPairing[str] = DepthPairing(tolerance_ns=10, max_wait=2)
    assert p.add_image(100, "a") == []  # waits: no depth seen yet
    assert p.add_depth(95, _depth(1.0)) == []  # a match 5 ns off, but a closer one may still come
    out = p.add_depth(101, _depth(2.0))  # 1 ns off; the newest depth is past 100 + 1: settled
    assert [(x.item, x.stamp_ns, x.depth_stamp_ns) for x in out] == [("a", 100, 101)]
    assert float(out[0].depth[0, 0]) == 2.0
    assert p.add_image(200, "b") == []
    assert p.add_image(300, "c") == []
    out = p.add_image(400, "d")  # 200 waited behind 2 newer images: released without depth
    assert [(x.item, x.depth) for x in out] == [("b", None)]
    out = p.add_depth(300, _depth(3.0))  # exact match for 300; 400 still waits
    assert [(x.item, float(x.depth[0, 0])) for x in out] == [("c", 3.0)]
    out = p.add_depth(450, _depth(4.0))  # 400 has no depth within 10 ns, and none can still come
    assert [(x.item, x.depth) for x in out] == [("d", None)]
    assert p.add_image(500, "e") == []
    assert [(x.item, x.depth) for x in p.drain()] == [("e", None)]  # end of stream


def test_depth_pairing_waits_for_the_depth_of_an_image_whose_stamp_went_back():
    p: DepthPairing[str] = DepthPairing(tolerance_ns=20)
    assert p.add_image(200, "b") == []
    assert [x.item for x in p.add_depth(200, _depth(2.0))] == ["b"]  # exact: no closer one can come
    assert p.add_image(167, "a") == []  # stamps went back: depth 200 is newer, but came before it
    out = p.add_depth(167, _depth(1.0))
    assert [(x.item, float(x.depth[0, 0])) for x in out] == [("a", 1.0)]


def test_depth_pairing_rejects_a_negative_tolerance():
    with pytest.raises(ValueError, match="tolerance"):
        DepthPairing(-1)


# --------------------------------------------------------------------------------------------- runner


@pytest.fixture(scope="module")
def seq():
    s = make_sequence("orbit", 14, height=60, width=80, fps=10.0)
    _ = s.rgb
    return s


def _pipeline(**overrides) -> StreamingPipeline:
    params = validate_params(dict(predictor="oracle", checkpoint="", window_size=6, stride=3,
                                  skip_policy="keep_all", target_size=TARGET, **overrides))
    return StreamingPipeline(pipeline_config_from_params(params))


def _run(seq, threaded: bool, overlap: bool, predictor=None) -> tuple[list, StreamRunner]:
    outs: list = []
    callers: set[str] = set()

    def on_output(out, latency):
        callers.add(threading.current_thread().name)
        assert latency >= 0
        outs.append(out)

    pred = predictor or OraclePredictor(seq, target_size=TARGET, pose_noise_rot_deg=0.2, seed=3)
    runner = StreamRunner(_pipeline(), pred, on_output, overlap_outputs=overlap)
    if threaded:
        runner.start()
    for f in seq.to_frames():
        runner.add_frame(f)
        if not threaded:
            runner.run_ready()
        else:
            time.sleep(0.01)
    runner.finish()
    assert not runner.threaded and not runner.has_output_thread  # finish joined the threads
    expected = {"MainThread"} if not threaded else {"vggt_outputs" if overlap else "vggt_inference",
                                                    "MainThread"}
    assert callers <= expected
    return outs, runner


@pytest.mark.parametrize("threaded,overlap", [(True, True), (True, False)], ids=["overlap", "serial"])
def test_threaded_runner_gives_the_synchronous_runs_outputs(seq, threaded, overlap):
    ref, _ = _run(seq, threaded=False, overlap=overlap)
    got, runner = _run(seq, threaded=threaded, overlap=overlap)
    assert [o.window_index for o in got] == [o.window_index for o in ref]
    stamps = [f.stamp_ns for o in got for f in o.frames]
    assert stamps == [int(s) for s in seq.stamps_ns]  # keep_all: every frame once, in order
    for a, b in zip((f for o in ref for f in o.frames), (f for o in got for f in o.frames), strict=True):
        np.testing.assert_array_equal(a.world_T_camera, b.world_T_camera)
        np.testing.assert_array_equal(a.depth, b.depth)
    assert runner.stats()["windows_emitted"] == len(got) and not runner.stats().get("worker_errors")


def test_out_of_memory_shrinks_the_windows_in_both_modes(seq):
    for threaded in (False, True):
        pred = OomAbove(OraclePredictor(seq, target_size=TARGET), 4)
        outs, runner = _run(seq, threaded=threaded, overlap=True, predictor=pred)
        s = runner.stats()
        assert s["oom_events"] == 2 and s["frames_dropped_oom"] == 2 and runner.max_window_frames == 4
        assert pred.sizes[:3] == [6, 5, 4] and max(pred.sizes[3:]) <= 4
        assert [f.stamp_ns for o in outs for f in o.frames] == [int(x) for x in seq.stamps_ns[2:]]


class _Hooks(OraclePredictor):
    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.prefetched, self.warmups, self.clears = [], [], 0

    def prefetch(self, images, frame_keys):
        self.prefetched.extend(int(k) for k in frame_keys)

    def warmup(self, window_size, stride, image_hw=None, eager_on_recompile=False):
        self.warmups.append((window_size, stride, image_hw, eager_on_recompile))
        return {"compiled": False}

    def clear_caches(self):
        self.clears += 1


def test_warm_up_once_prefetch_every_accepted_frame_and_reset_epochs(seq):
    pred = _Hooks(seq, target_size=TARGET)
    outs: list = []
    runner = StreamRunner(_pipeline(), pred, lambda o, lat: outs.append(o), overlap_outputs=True)
    frames = seq.to_frames()
    for f in frames[:6]:
        runner.add_frame(f)
    job = runner.pipeline.next_window()  # taken before the reset: must never be integrated after it
    runner.reset()
    runner._run_job(job, serial=True)
    assert outs[-1].accepted is False and outs[-1].rejection_reason == "reset"
    for f in frames[:6]:  # the same stamps are a new stream after the reset
        runner.add_frame(f)
    runner.run_ready()
    assert outs[-1].accepted and [f.stamp_ns for f in outs[-1].frames] == [int(s) for s in seq.stamps_ns[:6]]
    assert pred.warmups == [(6, 3, (60, 80), True)]  # once, before the first window
    assert pred.prefetched == [int(s) for s in seq.stamps_ns[:6]] * 2 and pred.clears == 1


def test_a_failing_window_is_counted_and_the_threaded_runner_goes_on(seq):
    class FailOnce(PredictorBase):
        def __init__(self, inner) -> None:
            self.inner, self.calls = inner, 0

        def predict(self, images, query_points=None, frame_keys=None):
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("boom")
            return self.inner.predict(images, query_points, frame_keys)

    outs, runner = _run(seq, threaded=True, overlap=True,
                        predictor=FailOnce(OraclePredictor(seq, target_size=TARGET)))
    assert runner.stats()["worker_errors"] == 1
    assert len(outs) >= 2 and outs[-1].frames[-1].stamp_ns == int(seq.stamps_ns[-1])


def test_stamps_jumping_back_start_a_new_world_and_small_reorders_are_rejected(seq):
    resets: list[int] = []
    outs: list = []
    pred = OraclePredictor(seq, target_size=TARGET)
    runner = StreamRunner(_pipeline(), pred, lambda o, lat: outs.append(o), time_jump_s=1.0,
                          on_reset=lambda: resets.append(1))
    frames = seq.to_frames()  # 14 frames at 10 Hz: 1.3 s
    for f in frames:
        runner.add_frame(f)
        runner.run_ready()
    late = frames[5]  # 0.8 s back: a reorder, rejected as out of order, no reset
    runner.add_frame(late)
    assert runner.pipeline.counters()["rejected_out_of_order"] == 1 and not resets
    for f in frames[:6]:  # the bag again from its start: 1.3 s back
        runner.add_frame(f)
        runner.run_ready()
    assert runner.stats()["time_jump_resets"] == 1 and resets == [1]
    assert runner.pipeline.counters()["resets"] == 1
    assert outs[-1].accepted and [f.stamp_ns for f in outs[-1].frames] == [int(s) for s in seq.stamps_ns[:6]]
    never = StreamRunner(_pipeline(), pred, lambda o, lat: None)  # time_jump_s 0: never
    for f in [*frames, *frames[:6]]:
        never.add_frame(f)
    assert never.stats().get("time_jump_resets", 0) == 0
    assert never.pipeline.counters()["rejected_out_of_order"] == 6
