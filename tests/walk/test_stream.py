"""Streamed scans: each pass reads the data once for every cell, partial sums resume.

The in-memory path and the streamed path (an npy directory read batch by batch) give the same
batches, so the same numbers bit for bit on one machine; reads are counted by the source;
interrupted passes resume from their last checkpoint, by Ctrl-C and by kill -9.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import walknoise
from tests.conftest import learnable_data
from walknoise.errors import WalknoiseError
from walknoise.sources import open_source
from walknoise.walk import stream

N, BATCH = 600, 50  # 12 batches
KW = dict(sigmas="log:1e-2:1e2:7", repeats=2, batch_size=BATCH, progress=False)


def npy_dir(tmp_path: Path, x: torch.Tensor, y: torch.Tensor) -> Path:
    folder = tmp_path / "npy"
    folder.mkdir(exist_ok=True)
    np.save(folder / "x.npy", x.numpy())
    np.save(folder / "y.npy", y.numpy())
    return folder


def same_files(a: walknoise.Result, b: walknoise.Result) -> None:
    for name in a.dataset.data_vars:
        np.testing.assert_array_equal(a.dataset[name].values, b.dataset[name].values, name)


@pytest.mark.parametrize("refine", [False, True])
def test_streamed_scan_equals_in_memory_and_reads_once_per_pass(
    trained_mlp, tmp_path: Path, refine: bool
) -> None:  # type: ignore[no-untyped-def]
    x, y = learnable_data(N)
    source = open_source(npy_dir(tmp_path, x, y))
    streamed = walknoise.scan(trained_mlp, source, refine=refine, **KW)
    in_memory = walknoise.scan(trained_mlp, (x, y), refine=refine, **KW)
    same_files(streamed, in_memory)  # the same batches, the same path: the same bits
    # one pass for the clean reference and the grid of all 5 layers × 2 repeats, one pass per
    # round of the refinements (every layer's next σ in the same round): not one per cell
    rounds = int(streamed.dataset["search_visits"].max()) if refine else 0
    assert source.reads == (1 + rounds) * N
    assert streamed.clean_accuracy == in_memory.clean_accuracy  # from the grid's pass
    assert rounds > 0 or not refine


def test_ctrl_c_in_a_pass_resumes_at_the_last_whole_batch(
    trained_mlp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    x, y = learnable_data(N)
    full = walknoise.scan(trained_mlp, (x, y), output=tmp_path / "full.h5", **KW)
    done: list[int] = []
    original, interrupt = stream._batch, [True]

    def counted(jobs, b, xb, yb):  # type: ignore[no-untyped-def]
        if len(done) == 7 and interrupt and interrupt.pop():
            raise KeyboardInterrupt  # in the middle of batch 7, some groups added
        done.append(b)
        return original(jobs, b, xb, yb)

    monkeypatch.setattr(stream, "_batch", counted)
    out = tmp_path / "r.h5"
    with pytest.raises(KeyboardInterrupt):
        walknoise.scan(trained_mlp, (x, y), output=out, checkpoint_every=3, **KW)
    saved = torch.load(next((tmp_path / "r.h5.partial").glob("*.pt")), weights_only=True)
    assert saved["batches"] == 7  # Ctrl-C saved the 7 whole batches, not the torn 8th
    done.clear()
    resumed = walknoise.scan(trained_mlp, (x, y), output=out, checkpoint_every=3, **KW)
    assert done[: N // BATCH - 7] == list(range(7, N // BATCH))  # then refinement passes
    same_files(resumed, full)
    assert not (tmp_path / "r.h5.partial").exists()  # removed with the finished scan


CHILD = """
import sys, time
import torch
import walknoise
from walknoise.walk import stream

model_path, data, log_path, pause, out = sys.argv[1:]
model = torch.load(model_path, weights_only=False)
log = open(log_path, "a", buffering=1)
original = stream._batch

def logged(jobs, b, xb, yb):
    sums = original(jobs, b, xb, yb)
    time.sleep(float(pause))  # slow enough to be killed in the middle of the pass
    log.write(f"{b}\\n")
    return sums

stream._batch = logged
walknoise.scan(model, data, output=out, checkpoint_every=4, sigmas="log:1e-2:1e2:7",
               repeats=2, batch_size=25, progress=False)
"""


def test_kill_9_mid_pass_resumes_from_the_checkpoint(trained_mlp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    x, y = learnable_data(N)  # 24 batches of 25, a checkpoint every 4
    data, out, log = npy_dir(tmp_path, x, y), tmp_path / "r.h5", tmp_path / "batches.log"
    torch.save(trained_mlp, tmp_path / "model.pt")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the three runs alike: one thread each

    def run(pause: float, output: Path) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-c", CHILD, str(tmp_path / "model.pt"), str(data), str(log)]
        return subprocess.Popen([*argv, str(pause), str(output)], env=env)

    child, folder = run(0.05, out), tmp_path / "r.h5.partial"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        if list(folder.glob("*.pt")) and log.exists() and len(log.read_text().split()) >= 10:
            break
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    before = [int(b) for b in log.read_text().split()]
    assert 10 <= len(before) < 24, "the child was not killed in the middle of its grid pass"
    checkpoint = torch.load(next(folder.glob("*.pt")), weights_only=True)["batches"]
    log.unlink()
    assert run(0, out).wait(timeout=300) == 0
    after = [int(b) for b in log.read_text().split()]
    assert after[: 24 - checkpoint] == list(range(checkpoint, 24))  # then refinement passes
    recomputed = len(before) - checkpoint  # done before the kill, computed again after it
    assert 0 <= recomputed < 4, (len(before), checkpoint)
    assert run(0, tmp_path / "u.h5").wait(timeout=300) == 0
    same_files(walknoise.load(out), walknoise.load(tmp_path / "u.h5"))


FACTORY = """
import torch
from torch.utils.data import TensorDataset
from tests.conftest import learnable_data

def make_dataset():
    x, y = learnable_data(300)
    return TensorDataset(x, y)

def broken():
    raise ValueError("no such split")
"""


def test_a_factory_streams_like_its_tensors(trained_mlp, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "wn_factory_mod.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    x, y = learnable_data(300)
    from_factory = walknoise.scan(trained_mlp, "wn_factory_mod:make_dataset", **KW)
    same_files(from_factory, walknoise.scan(trained_mlp, (x, y), **KW))
    with pytest.raises(WalknoiseError, match="wn_factory_mod:broken raised ValueError"):
        walknoise.scan(trained_mlp, "wn_factory_mod:broken", **KW)


def test_streamed_data_refuses_a_train_phase(trained_mlp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    x, y = learnable_data(N)
    with pytest.raises(WalknoiseError, match="needs its test data in memory") as err:
        walknoise.scan(trained_mlp, str(npy_dir(tmp_path, x, y)), phase="train", **KW)
    assert err.value.argument == "phase"


def test_the_checkpoint_key_names_what_decides_the_sums(tmp_path: Path) -> None:
    """A checkpoint of other σ, batch size or scan identity is never loaded."""
    runner = walknoise.walk.runner
    x, y = learnable_data(40)
    from tests.conftest import tiny_mlp
    from walknoise.noise.kinds import make_noise
    from walknoise.walk.clean import Tensors

    def job(sigmas: list[float], batch: int) -> stream.Job:
        r = runner.LayerRunner(
            tiny_mlp(), Tensors(x, y), make_noise("additive"), sigmas, batch_size=batch,
            max_batch=1000,
        )  # fmt: skip
        return stream.Job("fc1|0", r, runner.Group("fc1", ("fc1",), (1.0,), 0, (0,)))

    base = stream.Checkpoint.for_jobs(tmp_path, {"a": 1}, [job([0.1, 1.0], 10)], 2)
    sums = stream.stream([job([0.1, 1.0], 10)], Tensors(x, y), 10, base)
    assert base.load(torch.device("cpu"), ["fc1|0"]) is not None
    for identity, sigmas, batch in [({"a": 2}, [0.1, 1.0], 10), ({"a": 1}, [0.1, 2.0], 10),
                                    ({"a": 1}, [0.1, 1.0], 20)]:  # fmt: skip
        other = stream.Checkpoint.for_jobs(tmp_path, identity, [job(sigmas, batch)], 2)
        assert other.load(torch.device("cpu"), ["fc1|0"]) is None
    loaded = base.load(torch.device("cpu"), ["fc1|0"])
    assert loaded is not None and loaded[0] == 4
    assert torch.equal(loaded[1]["fc1|0"].correct, sums["fc1|0"].correct)
    assert json.dumps(loaded[1]["fc1|0"].state()["total"]) == "40"
