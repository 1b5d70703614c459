"""Crash safety: SIGKILL a running `walknoise scan` at random moments, resume, lose nothing.

Each round starts the scan on the same file (resuming it), kills it with SIGKILL at a random
moment and checks that the file is readable and that every layer marked done holds the
reference numbers. After the rounds, one uninterrupted rerun finishes the file, which must
equal an uninterrupted scan cell for cell. CI runs 3 rounds; the documented run uses 10:
``WALKNOISE_FAULT_ROUNDS=10 pytest tests/cli/test_faults.py -s``.

Moments are timed from the progress bar's first output (the scan loop starting), so they land
in the compute phase however slow the machine is to start Python: uniformly over the first
half of the time the layers still to do took in the reference run, so each round leaves work
for the next. One kill in five lands during start-up instead (planning, creating the file).
Random moments alone may all miss the layers (on a machine faster or slower than during the
reference run), so the first round is not random: it kills the scan as soon as its first
layer is on disk, while the next is being computed, and the test checks that it did.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import walknoise
from tests.cli.conftest import scan_argv
from walknoise.io.netcdf import stale_temps

ROUNDS = int(os.environ.get("WALKNOISE_FAULT_ROUNDS", "3"))
SEED = int(os.environ.get("WALKNOISE_FAULT_SEED", "0"))
SCAN = ("--sigmas", "log:1e-2:1e3:13", "--repeats", "4")
VOLATILE = {"created", "command"}  # provenance that differs between any two runs
# One intra-op thread in every run (the same arithmetic in each): on a busy machine a second
# thread mostly spins, and the rounds took minutes instead of seconds.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


class Scan:
    """A `walknoise scan` subprocess that notes when its loop starts (the bar's first write)."""

    def __init__(self, model: Path, out: Path) -> None:
        command = scan_argv(model, out, SCAN)
        self.start = time.monotonic()
        self.proc = subprocess.Popen(
            command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self.looping = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        if self.proc.stderr.read(1):
            self.looping.set()
        self.proc.stderr.read()  # drain, so the scan never blocks on a full pipe

    def finish(self) -> tuple[float, float]:
        """Wait for the end; return (seconds to the loop, seconds in all)."""
        self.looping.wait(timeout=1800)
        loop_at = time.monotonic() - self.start
        assert self.proc.wait(timeout=1800) == 0
        return loop_at, time.monotonic() - self.start

    def kill_after(self, delay: float, in_loop: bool) -> str:
        """SIGKILL ``delay`` seconds into the loop, or into start-up."""
        if in_loop:
            self.looping.wait(timeout=1800)
        time.sleep(delay)
        self.proc.kill()
        self.proc.wait(timeout=60)
        self.reader.join(timeout=60)
        return "finished first" if self.proc.returncode == 0 else "killed"

    def kill_mid_layer(self, out: Path) -> int:
        """SIGKILL as soon as ``out`` holds a finished layer; return how many it holds after the
        kill (a fast layer may land between the look and the signal)."""
        done = 0
        while not done and self.proc.poll() is None:
            time.sleep(0.05)
            done = int(walknoise.load(out).dataset["layer_done"].sum()) if out.exists() else 0
        self.proc.kill()
        self.proc.wait(timeout=60)
        self.reader.join(timeout=60)
        assert self.proc.returncode == -9, "the scan ended before the kill"
        return int(walknoise.load(out).dataset["layer_done"].sum())


def assert_same_cells(got: xr.Dataset, want: xr.Dataset, layers: np.ndarray | None = None) -> None:
    """Every variable equal (NaN equal to NaN), on all layers or only on ``layers``.

    Bit for bit on purpose: both files come from the same code path on this machine (the
    same seeds, batch split and thread count), so any difference is a lost or mixed-up cell.
    """
    for name in want.data_vars:
        a, b = got[name].values, want[name].values
        if layers is not None:
            a, b = a[layers], b[layers]
        np.testing.assert_array_equal(a, b, err_msg=name)


def stable_attrs(ds: xr.Dataset) -> dict[str, str]:
    return {k: repr(v) for k, v in ds.attrs.items() if k not in VOLATILE}  # repr: NaN == NaN


def kill_round(
    model: Path, out: Path, reference: xr.Dataset, rng: random.Random, times: tuple[float, float]
) -> str:
    startup, loop = times
    todo = 1 - walknoise.load(out).dataset["layer_done"].values.mean() if out.exists() else 1
    in_loop = rng.random() >= 0.2
    delay = rng.uniform(0, loop * todo / 2 if in_loop else startup)
    how = Scan(model, out).kill_after(delay, in_loop)
    phase = "the loop" if in_loop else "start-up"
    if not out.exists():
        return f"{how} {delay:.2f}s into {phase}, before the file was created"
    partial = walknoise.load(out).dataset  # readable whatever the moment of the kill
    done = partial["layer_done"].values.astype(bool)
    assert_same_cells(partial, reference, done)
    assert np.isnan(partial["accuracy"].values[~done]).all()
    return f"{how} {delay:.2f}s into {phase}, {int(done.sum())}/{done.size} layers on disk"


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(mlp_checkpoint: Path, tmp_path: Path) -> None:
    ref_path, out = tmp_path / "reference.h5", tmp_path / "killed.h5"
    startup, total = Scan(mlp_checkpoint, ref_path).finish()
    reference = walknoise.load(ref_path).dataset
    rng, times = random.Random(SEED), (startup, total - startup)
    layers = reference.sizes["layer"]
    first = Scan(mlp_checkpoint, out).kill_mid_layer(out)
    partial = walknoise.load(out).dataset
    assert 1 <= first < layers, "the kill did not land between the first and the last layer"
    assert_same_cells(partial, reference, partial["layer_done"].values.astype(bool))
    log = [f"killed mid-layer, {first}/{layers} layers on disk"]
    log += [kill_round(mlp_checkpoint, out, reference, rng, times) for _ in range(ROUNDS)]
    print(f"\nfault rounds (seed {SEED}, start-up {startup:.1f}s, loop {times[1]:.1f}s):")
    print("  " + "\n  ".join(log))

    left = layers - int(walknoise.load(out).dataset["layer_done"].sum())
    print(f"  the last run computes the {left} layers left")
    Scan(mlp_checkpoint, out).finish()
    final = walknoise.load(out).dataset
    assert final["layer_done"].values.all()
    assert_same_cells(final, reference)
    assert stable_attrs(final) == stable_attrs(reference)
    assert stale_temps(out) == []  # copies left by kills were cleaned on resume
