"""benchmarks/bench_stream.py's own tools on a tiny set: the data it writes, the child scan it
measures in a fresh process (its reads and batch log), and the file comparison it reports."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_stream as bench


def test_written_data_is_labelled_by_the_model_and_the_head_is_a_prefix(tmp_path: Path) -> None:
    bench.write_data(tmp_path / "big", 300)
    bench.copy_head(tmp_path / "big", tmp_path / "small", 120)
    x, y = np.load(tmp_path / "big" / "x.npy"), np.load(tmp_path / "big" / "y.npy")
    assert x.shape == (300, 3, 32, 32) and x.dtype == np.float32 and y.dtype == np.int64
    with torch.inference_mode():
        predicted = bench.make_model().eval()(torch.from_numpy(x)).argmax(1).numpy()
    np.testing.assert_array_equal(y, predicted)
    assert len(np.unique(y)) > 5  # the centred random net does not predict one class
    np.testing.assert_array_equal(np.load(tmp_path / "small" / "x.npy"), x[:120])
    np.testing.assert_array_equal(np.load(tmp_path / "small" / "y.npy"), y[:120])


def test_child_counts_reads_and_logs_each_batch_once_per_pass(tmp_path: Path) -> None:
    bench.write_data(tmp_path / "d", 100)
    settings = {**bench.SETTINGS, "batch_size": 25, "sigmas": "0.01,1"}
    log = tmp_path / "b.log"
    out = bench.run_child(
        {"data": str(tmp_path / "d"), "in_memory": False, "settings": settings, "log": str(log)}
    )
    assert out["reads"] == 100  # one pass: the clean reference and the grid together
    assert bench.logged_batches(log) == [0, 1, 2, 3]  # cells are computed in the grid pass only
    assert out["peak_rss"] >= out["scan_peak_rss"] >= out["rss_before_scan"] > 0
    assert len(bench.logged_rss(log)) == 4


def test_diffs_reports_the_largest_difference_per_variable() -> None:
    base = xr.Dataset(
        {
            "acc": (("s",), np.array([0.5, np.nan, 1.0])),
            "status": (("s",), np.array(["ok", "ok", "low"])),
        }
    )
    assert bench.diffs(base, base.copy(deep=True)) == {"acc": 0.0, "status": 0.0}  # NaN = NaN
    other = base.copy(deep=True)
    other["acc"][0], other["status"][2] = 0.25, "high"
    assert bench.diffs(base, other) == {"acc": 0.25, "status": float("inf")}
    other["acc"][2] = np.nan  # NaN on one side only: infinitely different
    assert bench.diffs(base, other)["acc"] == float("inf")
