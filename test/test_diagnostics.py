"""Diagnostics levels from the stream's recent behaviour (StreamHealth, diagnostics_report), no ROS.

Every test injects ``now`` (seconds), so nothing depends on the machine's speed.
"""

from __future__ import annotations

import math

import pytest

from vggt_ros.core.oracle import OraclePredictor
from vggt_ros.core.pipeline import StreamingPipeline
from vggt_ros.params.validation import pipeline_config_from_params, validate_params
from vggt_ros.runner.diagnostics import diagnostics_report
from vggt_ros.runner.health import (
    BUCKETS,
    ERROR,
    LATENCY_SAMPLES_PER_BUCKET,
    OK,
    STALE,
    STAMP_CLOCK,
    WARN,
    StreamHealth,
)
from vggt_ros.runner.stream_runner import StreamRunner
from vggt_ros.sim.sequences import make_sequence

HZ = 10.0
STRIDE = 4
LAG = 8  # lag_frames: a window of 8 frames


def stream(h: StreamHealth, t0: float, t1: float, *, reject_every: int = 0, publish: int = STRIDE,
           latency: float = 0.1, bad_frame_every: int = 0) -> float:
    """Frames at HZ from t0 to t1; a window every STRIDE accepted frames (each ``reject_every``-th
    rejected) publishing ``publish`` frames. Returns the time of the last frame."""
    t, i, w = t0, 0, 0
    while t < t1 - 1e-9:
        bad = bad_frame_every and i % bad_frame_every == bad_frame_every - 1
        h.frame_received(int(t * 1e9), accepted=not bad, now=t)
        i += 1
        if not bad and i % STRIDE == 0:
            w += 1
            rejected = reject_every and w % reject_every == 0
            h.window_done(not rejected, 0 if rejected else publish, latency,
                          "low_inliers" if rejected else "", now=t)
        last = t
        t = t0 + i / HZ
    return last


def check(h: StreamHealth, now: float, level: int, *words: str) -> None:
    s = h.evaluate(now, lag_frames=LAG)
    assert s.level == level, s.message
    for w in words:
        assert w in s.message, s.message


def test_stale_before_any_input():
    h = StreamHealth(10.0, clock=lambda: 5.0)
    s = h.evaluate(lag_frames=LAG)
    assert s.level == STALE and s.message == "no input yet"


def test_ok_for_a_healthy_stream_with_windowed_values():
    h = StreamHealth(10.0)
    last = stream(h, 0.0, 30.0)
    s = h.evaluate(last, lag_frames=LAG)
    assert s.level == OK and s.message == "ok"
    v = s.values
    assert v["window_s"] == 10.0
    assert v["input_rate_hz"] == pytest.approx(HZ, rel=0.1)
    assert v["output_rate_hz"] == pytest.approx(HZ, rel=0.1)
    assert v["window_rejection_ratio"] == 0.0 and v["skipped_ratio"] == 0.0
    assert v["latency_p50_s"] == pytest.approx(0.1)


def test_start_up_is_ok_while_the_first_window_fills():
    h = StreamHealth(10.0)
    for i in range(LAG - 1):  # no window yet
        h.frame_received(i * 100_000_000, True, now=i / HZ)
    check(h, 0.7, OK)


def test_stale_after_the_input_stops_and_not_before_the_window_passed():
    h = StreamHealth(10.0)
    last = stream(h, 0.0, 20.0)
    check(h, last + 5.0, OK)  # input stopped, but the window still holds it
    check(h, last + 11.0, STALE, "no input for 11.0 s")


def test_warn_when_many_windows_are_rejected():
    h = StreamHealth(10.0)
    last = stream(h, 0.0, 20.0, reject_every=2)  # half the windows rejected
    s = h.evaluate(last, lag_frames=LAG)
    assert s.level == WARN and "windows rejected" in s.message
    assert s.values["window_rejection_ratio"] == pytest.approx(0.5, abs=0.1)
    ok = StreamHealth(10.0)  # one in five: normal
    check(ok, stream(ok, 0.0, 20.0, reject_every=5), OK)


def test_warn_when_the_queue_policy_skips_many_frames():
    h = StreamHealth(10.0)
    last = stream(h, 0.0, 10.0)
    h.observe_totals(skipped=10, now=5.0)
    check(h, last, OK)  # 10 of 100
    h.observe_totals(skipped=40, now=last)  # 30 more
    s = h.evaluate(last, lag_frames=LAG)
    assert s.level == WARN and "40 of 100 frames skipped" in s.message
    assert s.values["skipped_ratio"] == pytest.approx(0.4)


def test_warn_when_frames_are_dropped_after_out_of_memory():
    h = StreamHealth(10.0)
    last = stream(h, 0.0, 10.0)
    h.add("oom_events", 1, now=last)
    check(h, last, WARN, "1 out-of-memory events")
    h2 = StreamHealth(10.0)
    last = stream(h2, 0.0, 10.0)
    h2.add("frames_dropped_oom", 30, now=last)
    check(h2, last, WARN, "30 after out-of-memory")


def test_warn_on_rejected_messages_and_frames():
    h = StreamHealth(10.0)
    last = stream(h, 0.0, 10.0)
    h.observe_totals(rejected_messages=1, now=last)
    check(h, last, WARN, "1 messages / 0 frames rejected")
    h2 = StreamHealth(10.0)
    check(h2, stream(h2, 0.0, 10.0, bad_frame_every=50), WARN, "0 messages / 2 frames rejected")


def test_warn_when_the_output_falls_behind_the_input():
    h = StreamHealth(10.0)
    last = stream(h, 0.0, 20.0, publish=1)  # a quarter of the frames come out
    s = h.evaluate(last, lag_frames=LAG)
    assert s.level == WARN and "below 0.5 x the input" in s.message
    assert s.values["output_rate_hz"] == pytest.approx(HZ / 4, rel=0.15)


def test_warn_when_the_latency_is_high():
    h = StreamHealth(10.0, max_latency_s=2.0)
    check(h, stream(h, 0.0, 20.0, latency=2.5), WARN, "latency p50 2.50 s > 2 s")
    h2 = StreamHealth(10.0, max_latency_s=3.0)
    check(h2, stream(h2, 0.0, 20.0, latency=2.5), OK)


def test_error_when_every_window_is_rejected():
    h = StreamHealth(10.0)
    last = stream(h, 0.0, 10.0)
    last = stream(h, 10.0, 20.0, reject_every=1)
    s = h.evaluate(last, lag_frames=LAG)
    assert s.level == ERROR and "windows rejected" in s.message and "nothing published" in s.message
    assert s.values["window_rejection_ratio"] == 1.0


def test_error_when_nothing_is_published_while_windows_run():
    h = StreamHealth(10.0)
    for i in range(100):
        t = i / HZ
        h.frame_received(int(t * 1e9), True, now=t)
        if i % STRIDE == STRIDE - 1:
            h.add("windows_dropped_oom", now=t)  # every window dropped (out of memory)
    check(h, 9.9, ERROR, "nothing published", "25 dropped out of memory")


def test_error_on_worker_errors_then_ok_again():
    h = StreamHealth(10.0)
    last = stream(h, 0.0, 10.0)
    h.add("worker_errors", now=last)
    check(h, last, ERROR, "1 worker errors")
    check(h, stream(h, 10.0, 25.0), OK)


def test_error_when_every_input_is_rejected():
    h = StreamHealth(10.0)
    h.observe_totals(rejected_messages=5, now=1.0)
    check(h, 1.0, ERROR, "every input rejected")


def test_no_latching_a_burst_of_bad_messages_warns_then_ages_out():
    h = StreamHealth(10.0)
    last = stream(h, 0.0, 5.0)
    h.observe_totals(rejected_messages=7, now=last)  # the caller's cumulative counter
    check(h, last, WARN, "7 messages / 0 frames rejected")
    last = stream(h, 5.0, 16.0)
    h.observe_totals(rejected_messages=7, now=last)  # unchanged total: nothing new
    check(h, last, OK)


def test_resets_do_not_count_as_rejected_windows_and_counters_may_restart():
    h = StreamHealth(10.0)
    last = stream(h, 0.0, 10.0)
    for _ in range(5):
        h.window_done(False, 0, 0.0, "reset", now=last)
    h.observe_totals(skipped=3, now=1.0)
    h.observe_totals(skipped=0, now=2.0)  # the counter restarted: no negative events
    h.observe_totals(skipped=2, now=3.0)
    s = h.evaluate(last, lag_frames=LAG)
    assert s.level == OK and s.values["window_rejection_ratio"] == 0.0
    assert s.values["skipped_ratio"] == pytest.approx(5 / 100)


def test_memory_stays_bounded():
    h = StreamHealth(10.0)
    for i in range(100_000):  # all at once: one bucket, latencies capped
        h.frame_received(i, True, now=1.0)
        h.window_done(True, 1, 0.1, now=1.0)
    assert h.bucket_count() == 1
    assert sum(len(b.latencies) for b in h._buckets) <= LATENCY_SAMPLES_PER_BUCKET
    for i in range(100_000):  # spread over 10,000 s: old buckets leave
        t = i * 0.1
        h.frame_received(int(t * 1e9), True, now=t)
        h.add("skipped", 1, now=t)
        h.window_done(i % 2 == 0, 1, 0.1, now=t)
    assert h.bucket_count() <= BUCKETS + 1
    assert sum(len(b.latencies) for b in h._buckets) <= (BUCKETS + 1) * LATENCY_SAMPLES_PER_BUCKET
    counts, _ = h.window_counts(100_000 * 0.1)
    assert counts["received"] <= 10.0 / 0.1 + 1


def test_stamp_clock_follows_the_frames():
    h = StreamHealth(10.0, clock=STAMP_CLOCK)
    assert h.evaluate().message == "no input yet"
    for i in range(200):  # 20 s of bag time, fed in no time
        h.frame_received(int(1e18) + i * 100_000_000, True)
        if i % STRIDE == STRIDE - 1:
            h.window_done(True, STRIDE, 0.1)
    assert h.now() == pytest.approx(1e9 + 19.9)
    s = h.evaluate(lag_frames=LAG)
    assert s.level == OK and s.values["input_rate_hz"] == pytest.approx(HZ, rel=0.1)


def test_parameters_build_the_health():
    p = validate_params(dict(predictor="oracle", checkpoint="", diagnostics_window_s=3.0,
                             diagnostics_max_latency_s=0.5))
    h = StreamHealth.from_params(p)
    assert (h.window_s, h.max_latency_s) == (3.0, 0.5)
    assert validate_params({})["diagnostics_window_s"] == 10.0
    with pytest.raises(ValueError):
        validate_params(dict(diagnostics_window_s=0.0))


def test_report_of_a_runner_keeps_the_values_and_takes_the_level_from_the_window():
    seq = make_sequence("orbit", 12, height=60, width=80, fps=10.0)
    params = validate_params(dict(predictor="oracle", checkpoint="", window_size=6, stride=3,
                                  skip_policy="keep_all", target_size=126))
    pipe = StreamingPipeline(pipeline_config_from_params(params))
    runner = StreamRunner(pipe, OraclePredictor(seq, target_size=126), lambda o, lat: None,
                          health=StreamHealth.from_params(params, clock=STAMP_CLOCK))
    for f in seq.to_frames():
        runner.add_frame(f)
        runner.run_ready()
    runner.finish()

    def report(counters, now=None):
        return diagnostics_report(pipe, runner, counters, output_rate_hz=3.0, device="cpu",
                                  scale_source="none", now=now)

    r = report({"frames_published": 12})
    assert r.level == OK and r.message == "not metric (VGGT world units); ok", r.message
    v = r.values
    assert v["frames_published"] == 12 and v["messages_rejected"] == 0 and v["frames_skipped"] == 0
    assert v["metric"] is False and v["depth_units"] == "VGGT world units" and v["device"] == "cpu"
    assert v["max_window_frames"] == 6 and v["output_rate_wall_hz"] == 3.0
    for k in ("input_rate_hz", "output_rate_hz", "window_rejection_ratio", "skipped_ratio", "latency_p50_s",
              "window_s"):
        assert k in v and not (isinstance(v[k], float) and math.isnan(v[k]) and k != "latency_p50_s")
    assert v["window_s"] == 10.0 and v["input_rate_hz"] == pytest.approx(HZ, rel=0.15)
    # a bad message now: WARN (the node's cumulative counter feeds it)
    r = report({"frames_published": 12, "rejected_messages": 1})
    assert r.level == WARN and "1 messages / 0 frames rejected" in r.message
    assert r.values["messages_rejected"] == 1
    # long after the last frame: the input is stale, the old message no longer counts
    end = runner.health.now()
    r = report({"frames_published": 12, "rejected_messages": 1}, now=end + 30.0)
    assert r.level == STALE and "no input for 30.0 s" in r.message and "rejected" not in r.message
    assert r.values["messages_rejected"] == 1  # the cumulative count stays
