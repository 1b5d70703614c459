"""Executors: worker processes and job arrays give the serial scan's file, cell for cell."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import torch
import xarray as xr

import tests.crash
import walknoise
from tests.conftest import learnable_data, tiny_mlp
from tests.crash import CrashOnce
from walknoise.errors import WalknoiseError
from walknoise.walk.cells import LayerTask, LayerWork, compute_layer
from walknoise.walk.executors import (
    Joblib,
    LayerFailed,
    Outcome,
    Serial,
    SlurmOptions,
    Submitit,
    make_executor,
)

SCAN = dict(sigmas="log:1e-2:1e2:7", repeats=2, progress=False)
VOLATILE = {"created", "command"}


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Worker processes get ``threads // jobs`` threads; with one thread in the driver too,
    every run does the same arithmetic and files compare bit for bit."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def assert_same_file(a: Path, b: Path) -> None:
    got, want = walknoise.load(a).dataset, walknoise.load(b).dataset
    for name in want.data_vars:
        np.testing.assert_array_equal(got[name].values, want[name].values, err_msg=name)
    assert {k: repr(v) for k, v in got.attrs.items() if k not in VOLATILE} == {
        k: repr(v) for k, v in want.attrs.items() if k not in VOLATILE
    }


def test_jobs_2_gives_the_file_of_jobs_1(trained_mlp, data, tmp_path, one_thread) -> None:
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    walknoise.scan(trained_mlp, data, output=one, jobs=1, **SCAN)
    result = walknoise.scan(trained_mlp, data, output=two, jobs=2, **SCAN)
    assert result.complete
    assert_same_file(two, one)


def test_train_phase_in_workers_matches_serial(tmp_path, one_thread) -> None:
    x, y = learnable_data(200)
    kwargs = dict(
        sigmas="0.1,1", repeats=2, progress=False, layers=["fc1"], phase="both",
        train={"epochs": 1, "batch_size": 50}, train_data=(x, y),
    )  # fmt: skip
    serial = walknoise.scan(tiny_mlp(), (x, y), output=tmp_path / "s.h5", **kwargs)
    parallel = walknoise.scan(tiny_mlp(), (x, y), output=tmp_path / "p.h5", jobs=2, **kwargs)
    for name in ("trained_accuracy", "accuracy", "weight_l2", "clean_model_accuracy"):
        np.testing.assert_array_equal(parallel.dataset[name], serial.dataset[name], err_msg=name)


class Flaky:
    """Fails ``layer`` every time; computes the rest here."""

    remote = False

    def __init__(self, layer: str) -> None:
        self.layer = layer
        self.calls: list[str] = []

    def map(self, work: LayerWork, tasks: Sequence[LayerTask]) -> Iterator[Outcome]:
        for task in tasks:
            self.calls.append(task.layer)
            if task.layer == self.layer:
                yield LayerFailed(task, "job 7_1 failed: UncompletedJobError: died")
            else:
                yield compute_layer(work, task)

    def cancel(self) -> str | None:
        return None


def test_failed_layer_is_retried_then_reported(trained_mlp, data, tmp_path, caplog) -> None:
    flaky, out = Flaky("fc1"), tmp_path / "r.h5"
    with pytest.raises(WalknoiseError, match=r"1 layer failed \(job 7_1 failed.*run the same"):
        walknoise.scan(trained_mlp, data, output=out, executor=flaky, **SCAN)
    assert flaky.calls.count("fc1") == 2  # the first try and one retry
    assert "layer fc1: job 7_1 failed" in caplog.text
    done = walknoise.load(out).dataset["layer_done"].to_series()
    assert done.to_dict() == {"<input>": 1, "fc1": 0, "act1": 1, "fc2": 1, "<global>": 1}
    walknoise.scan(trained_mlp, data, output=out, **SCAN)  # the next run computes the rest
    assert walknoise.load(out).complete


def test_submitit_local_job_that_dies_is_rerun(data, tmp_path, one_thread, caplog) -> None:
    """submitit's local executor: separate processes, the same code path as SLURM."""
    caplog.set_level(logging.WARNING, "walknoise")
    crash = CrashOnce(tiny_mlp().eval(), tmp_path / "crashed")
    layers = ["inner.fc1", "inner.fc2"]
    ref = walknoise.scan(crash, data, layers=layers, **SCAN)  # in this process: no crash
    cloudpickle.register_pickle_by_value(tests.crash)  # the jobs need not import tests/
    try:
        executor = Submitit(SlurmOptions(folder=tmp_path / "jobs"), cluster="local")
        got = walknoise.scan(crash, data, layers=layers, executor=executor, **SCAN)
    finally:
        cloudpickle.unregister_pickle_by_value(tests.crash)
    assert (tmp_path / "crashed").exists() and "failed" in caplog.text
    np.testing.assert_array_equal(got.accuracy.values, ref.accuracy.values)
    assert not list((tmp_path / "jobs").glob("work-*.pkl"))  # the shared pickle is removed


def test_executor_names_and_errors() -> None:
    assert isinstance(make_executor("auto", 1), Serial)
    assert isinstance(make_executor("auto", 3), Joblib)
    assert isinstance(make_executor("slurm", 4), Submitit)
    with pytest.raises(WalknoiseError, match="unknown executor"):
        make_executor("dask")
    with pytest.raises(WalknoiseError, match="jobs=0; it must be at least 1") as err:
        make_executor("auto", 0)
    assert err.value.argument == "jobs"
    with pytest.raises(WalknoiseError, match="gpus=-1; it must be at least 0") as err:
        SlurmOptions(gpus=-1)
    assert err.value.argument == "gpus"


def test_executor_by_name_or_object(trained_mlp, data) -> None:
    a = walknoise.scan(trained_mlp, data, executor="serial", **SCAN).accuracy
    b = walknoise.scan(trained_mlp, data, executor=Serial(), **SCAN).accuracy
    xr.testing.assert_identical(a, b)


class FakeJob:
    """A submitit job as cancel() sees it: an id, a result file, a cancel method."""

    def __init__(self, job_id: str, folder: Path) -> None:
        self.job_id = job_id
        self.paths = type("Paths", (), {"result_pickle": folder / f"{job_id}_result.pkl"})()
        self.cancelled = 0

    def cancel(self, check: bool = False) -> None:
        self.cancelled += 1


def test_both_cancel_calls_of_a_ctrl_c_report_the_cancellation(tmp_path: Path) -> None:
    """Ctrl-C cancels from the watcher thread and from the unwinding generator at once;
    whichever comes second must still get the line to print, and nothing is cancelled twice."""
    import threading

    executor = Submitit(cluster="local")
    jobs = [FakeJob("7_0", tmp_path), FakeJob("7_1", tmp_path)]
    (tmp_path / "7_0_result.pkl").touch()  # finished: not cancelled
    executor._jobs = list(jobs)
    said: list[str | None] = []
    threads = [threading.Thread(target=lambda: said.append(executor.cancel())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert said == ["cancelled unfinished jobs 7_1"] * 2
    assert [j.cancelled for j in jobs] == [1, 1]  # the local cluster cancels each job once
