"""`walknoise scan --jobs 2`: killed or interrupted, it loses nothing and leaves no workers."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import walknoise
from tests.cli.conftest import assert_user_error, invoke, scan_argv
from tests.cli.test_faults import assert_same_cells

SCAN = ("--sigmas", "log:1e-2:1e3:13", "--repeats", "4", "--quiet")
# One intra-op thread everywhere: the serial reference and the workers do the same arithmetic.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def scan(model: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    command = scan_argv(model, out, SCAN, *extra)
    return subprocess.Popen(
        command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def children(pid: int) -> set[int]:
    """Processes whose parent is ``pid`` (read from /proc; nothing is killed by name)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def outlive(pids: set[int], seconds: float = 120.0) -> set[int]:
    """Those of ``pids`` still running after ``seconds`` (workers may be mid-import; the
    bound is a safety limit for a loaded machine, not a measure: most are gone at once)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = {p for p in pids if Path(f"/proc/{p}").exists()}
        if not left:
            return left
        time.sleep(0.1)
    return left


def wait_for_layers(out: Path, proc: subprocess.Popen[str], at_least: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and walknoise.load(out).dataset["layer_done"].values.sum() >= at_least:
            return
        time.sleep(0.05)
    pytest.fail("the scan wrote no layer in time")


@pytest.fixture(scope="module")
def reference(mlp_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "serial.h5"
    proc = scan(mlp_checkpoint, out, "--jobs", "1")
    assert proc.wait(timeout=300) == 0, proc.stderr.read() if proc.stderr else ""
    return out


# Two layers, so one per worker, of very unequal cost: noise on the input runs the whole
# network for every σ copy, noise on the logits runs nothing after it. A worker writes its
# layers in one burst when it is done, so the cheap layer is on disk seconds (measured: ~4 s
# of a ~6 s scan on one thread) before the expensive one can be: SIGINT sent when the first
# layer appears lands while the other is still computed, however fast the walk becomes.
UNEVEN = ("--sigmas", "log:1e-2:1e3:25", "--repeats", "40", "--no-global", "--quiet")
UNEVEN_LAYERS = ("--layers", "<input>,fc4")


def uneven_scan(model: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    command = scan_argv(model, out, UNEVEN, *UNEVEN_LAYERS, *extra)
    return subprocess.Popen(
        command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.fixture(scope="module")
def uneven_reference(mlp_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "uneven.h5"
    proc = uneven_scan(mlp_checkpoint, out, "--jobs", "1")
    assert proc.wait(timeout=300) == 0, proc.stderr.read() if proc.stderr else ""
    return out


def wait_for_workers(proc: subprocess.Popen[str]) -> None:
    """Until the driver has started its workers (2 and loky's resource tracker)."""
    deadline = time.monotonic() + 120
    while len(children(proc.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("when", ["workers starting", "layers written"])
def test_killed_parallel_scan_resumes_with_nothing_lost(
    mlp_checkpoint: Path, reference: Path, tmp_path: Path, when: str
) -> None:
    out = tmp_path / "killed.h5"
    proc = scan(mlp_checkpoint, out, "--jobs", "2")
    if when == "workers starting":  # before any has a task: they must still notice
        wait_for_workers(proc)
    else:
        wait_for_layers(out, proc, 1)
    workers = children(proc.pid)
    proc.kill()  # SIGKILL: no cleanup at all in the driver
    proc.wait()
    if out.exists():
        partial = walknoise.load(out).dataset
        done = partial["layer_done"].values.astype(bool)
        assert_same_cells(partial, walknoise.load(reference).dataset, done)
    # at once: the killed driver's lock is gone, and no orphaned worker holds it
    rerun = scan(mlp_checkpoint, out, "--jobs", "2")
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read() if rerun.stderr else ""
    assert_same_cells(walknoise.load(out).dataset, walknoise.load(reference).dataset)
    assert not outlive(workers), "workers outlived their killed driver"


@pytest.mark.usefixtures("ctrl_c")  # SIGINT must raise, whatever we inherited
@pytest.mark.slow
def test_ctrl_c_stops_a_parallel_scan_at_once(
    mlp_checkpoint: Path, uneven_reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "stopped.h5"
    proc = uneven_scan(mlp_checkpoint, out, "--jobs", "2")
    wait_for_layers(out, proc, 1)
    workers = children(proc.pid)
    proc.send_signal(signal.SIGINT)
    # safety only, below loky's 300 s worker timeout: a driver waiting for it fails here
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 130 and "interrupted: finished layers are saved" in err
    partial = walknoise.load(out).dataset
    done = partial["layer_done"].values.astype(bool)
    assert done.any() and not done.all()  # stopped with layers still to do
    assert_same_cells(partial, walknoise.load(uneven_reference).dataset, done)
    assert not outlive(workers), "workers outlived the interrupted driver"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--jobs", "0"), "jobs=0; it must be at least 1"),
        (("--executor", "slurm", "--slurm-cpus", "0"), "cpus=0; it must be at least 1"),
    ],
)
def test_bad_execution_options_are_one_line(
    mlp_checkpoint: Path, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = invoke("scan", mlp_checkpoint, *args, "-o", tmp_path / "r.h5")
    assert_user_error(result, message)
    assert not (tmp_path / "r.h5").exists()
