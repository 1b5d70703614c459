"""The SLURM executor against a real one-node cluster (tests/slurm/start_cluster.sh).

Skipped unless ``WALKNOISE_SLURM=1`` (set by ``.ci/run`` once the cluster is up):

    eval "$(tests/slurm/start_cluster.sh "$(mktemp -d)")"   # prints `export SLURM_CONF=...`
    WALKNOISE_SLURM=1 .venv/bin/pytest tests/cli/test_slurm.py
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import numpy as np
import pytest

import tests.crash
import walknoise
from tests.cli.conftest import scan_argv
from tests.conftest import tiny_mlp
from tests.crash import CrashOnce
from walknoise.walk.executors import ACTIVE, SlurmOptions, Submitit

pytestmark = pytest.mark.skipif(
    os.environ.get("WALKNOISE_SLURM") != "1", reason="needs a SLURM cluster: WALKNOISE_SLURM=1"
)
SCAN = ("--sigmas", "log:1e-2:1e3:9", "--repeats", "2", "--quiet", "--layers", "fc1,fc2,fc4")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_scan(model: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = scan_argv(model, out, SCAN, *extra)
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)


def states(job_ids: list[str]) -> dict[str, str]:
    """Job id -> state, from the accounting database."""
    text = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(job_ids)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("|")[:2] for line in text.splitlines() if line)


def test_job_array_gives_the_local_accuracies(mlp_checkpoint: Path, tmp_path: Path) -> None:
    local = run_scan(mlp_checkpoint, tmp_path / "local.h5")
    assert local.returncode == 0, local.stderr
    start = time.monotonic()
    remote = run_scan(mlp_checkpoint, tmp_path / "slurm.h5", "--executor", "slurm")
    assert remote.returncode == 0, remote.stderr
    print(f"\nSLURM scan, 4 layers as one job array: {time.monotonic() - start:.1f} s")
    got, want = (walknoise.load(tmp_path / n).dataset for n in ("slurm.h5", "local.h5"))
    # bit for bit: the test cluster is this machine and both runs use one thread, so the jobs
    # do the local run's arithmetic (nodes with other CPUs would agree to float rounding only)
    np.testing.assert_array_equal(got["accuracy"].values, want["accuracy"].values)
    np.testing.assert_allclose(got["loss"].values, want["loss"].values, rtol=1e-6)
    scripts = list((tmp_path / "slurm.h5.slurm").glob("*_submission.sh"))
    assert len(scripts) == 1 and "#SBATCH --array=0-3" in scripts[0].read_text()


def test_array_task_that_dies_is_reported_and_rerun(data, tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING, "walknoise")
    crash = CrashOnce(tiny_mlp().eval(), tmp_path / "crashed")
    kwargs = dict(sigmas="log:1e-2:1e2:7", repeats=2, progress=False, layers=["inner.fc1"])
    want = walknoise.scan(crash, data, **kwargs)  # in this process: never crashes
    cloudpickle.register_pickle_by_value(tests.crash)
    try:
        executor = Submitit(SlurmOptions(folder=tmp_path / "jobs", time=5))
        got = walknoise.scan(crash, data, executor=executor, output=tmp_path / "r.h5", **kwargs)
    finally:
        cloudpickle.unregister_pickle_by_value(tests.crash)
    assert (tmp_path / "crashed").exists()
    failed = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert failed and "layer inner.fc1: job" in failed[0]
    np.testing.assert_array_equal(got.accuracy.values, want.accuracy.values)
    assert walknoise.load(tmp_path / "r.h5").complete


@pytest.mark.usefixtures("ctrl_c")  # SIGINT must raise, whatever we inherited
def test_ctrl_c_cancels_the_job_array(mlp_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.h5"
    command = [
        sys.executable,
        "-m",
        "walknoise.cli",
        "scan",
        str(mlp_checkpoint),
        *SCAN,
        "-o",
        str(out),
    ]
    proc = subprocess.Popen(
        [*command, "--executor", "slurm"], env=ENV, stderr=subprocess.PIPE, text=True
    )
    active = tmp_path / "r.h5.slurm" / ACTIVE
    deadline = time.monotonic() + 60
    while not active.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    ids = active.read_text().split()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "cancelled unfinished jobs" in err, err
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not {"RUNNING", "PENDING"} & set(states(ids).values()):
            break
        time.sleep(0.5)
    assert all(s.startswith(("CANCELLED", "COMPLETED")) for s in states(ids).values())
