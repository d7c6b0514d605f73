"""Batch replay on Ray (``--ray local``): two small bags as Ray tasks give the same summary table as
the sequential batch; without the ``ray`` extra, ``--ray`` is a clear error (exit 2).

The Ray test starts a private local instance (2 CPUs, 100 MiB object store, no dashboard) and shuts it
down at the end. Measured on 2 cores: ~25 s for the test (sequential ~6 s, Ray ~19 s: ~9 s start-up, ~5 s
for each worker to import torch and vggt_ros, 1.5 s shut-down); the whole process tree peaks at ~1.7 GB RSS.
"""

from __future__ import annotations

import csv
import json
import sys

import pytest
from bag_fixtures import FAST, NUM_FRAMES, bags  # noqa: F401 - fixture

from vggt_ros.bag import batch
from vggt_ros.bag.cli import main

TIMING = {"frames_per_s", "latency_p50_s"}  # differ between two runs of the same bag


def _args(bags, out, *extra_bags):  # noqa: F811
    return [str(bags.db3), str(bags.mcap_file), *map(str, extra_bags), "--out", str(out),
            "--predictor", "oracle", "--gt", str(bags.gt), *FAST, "--no-progress"]


def _rows(out):
    rows = list(csv.DictReader(open(out / "summary.csv")))
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def test_ray_batch_matches_sequential(bags, tmp_path, capsys):  # noqa: F811
    """Two good bags and a missing one: the same rows (bag order, errors included) and exit code 2 from
    the Ray tasks as from the sequential loop; the good bags' outputs are written by the workers."""
    pytest.importorskip("ray", reason="the 'ray' extra is not installed (CI installs it)")
    args = _args(bags, tmp_path / "seq", tmp_path / "missing.mcap")
    assert main(args) == 2
    args[args.index("--out") + 1] = str(tmp_path / "ray")
    capsys.readouterr()
    assert main([*args, "--ray", "local"]) == 2
    captured = capsys.readouterr()
    seq, ray_rows = _rows(tmp_path / "seq"), _rows(tmp_path / "ray")
    expected = [("seq_db3", "ok"), ("seq_mcap", "ok"), ("missing", "error")]
    assert [(r["bag"], r["status"]) for r in ray_rows] == expected
    assert ray_rows == seq
    assert all(int(r["processed"]) == NUM_FRAMES for r in ray_rows[:2])
    assert "missing: " in captured.err and "Traceback" not in captured.err
    for name in ("seq_db3", "seq_mcap"):
        assert f"{name}: {NUM_FRAMES} frames" in captured.out
        m = json.loads((tmp_path / "ray" / name / "metrics.json").read_text())
        assert m["trajectory"]["ate"]["rmse"] < 1e-5 * m["trajectory"]["gt_length"]
    assert "| bag |" in (tmp_path / "ray" / "summary.md").read_text()
    import ray

    assert not ray.is_initialized()  # the CLI shut its local instance down


def test_ray_missing_extra_is_a_clear_error(bags, tmp_path, capsys, monkeypatch):  # noqa: F811
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert main([*_args(bags, tmp_path / "o"), "--ray", "local"]) == 2
    err = capsys.readouterr().err
    assert batch.RAY_MISSING in err and "Traceback" not in err
    assert not (tmp_path / "o" / "summary.csv").exists()  # nothing ran
