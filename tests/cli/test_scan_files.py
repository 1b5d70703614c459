"""``walknoise scan`` and its results file: stale resumes, disk errors, file modes (issue 15)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import numpy as np
import torch

import walknoise
from tests.cli.conftest import assert_user_error, invoke

FAST = ("--sigmas", "0.1,1", "--repeats", "1", "--quiet")


def _mnist_like(path: Path, seed: int, n: int = 200) -> Path:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=g) * 2 - 1
    torch.save({"x": x, "y": torch.randint(0, 10, (n,), generator=g)}, path)
    return path


def test_rerun_on_other_data_in_the_same_file_is_refused(mlp_checkpoint, tmp_path) -> None:
    data, out = tmp_path / "test.pt", tmp_path / "r.h5"
    first = invoke("scan", mlp_checkpoint, "--data", _mnist_like(data, 0), *FAST, "-o", out)
    assert first.exit_code == 0, first.output
    _mnist_like(data, 1)  # same path, same size, other samples
    again = invoke("scan", mlp_checkpoint, "--data", data, *FAST, "-o", out)
    assert_user_error(again, "different data")
    assert again.stderr.startswith("error: --overwrite: ")
    redone = invoke("scan", mlp_checkpoint, "--data", data, *FAST, "-o", out, "--overwrite")
    assert redone.exit_code == 0, redone.output


def test_rerun_on_the_same_data_resumes(mlp_checkpoint, tmp_path) -> None:
    data, out = _mnist_like(tmp_path / "test.pt", 0), tmp_path / "r.h5"
    first = invoke("scan", mlp_checkpoint, "--data", data, *FAST, "-o", out)
    copied = tmp_path / "copy.pt"
    copied.write_bytes(data.read_bytes())  # the data is its bytes, not its file name
    again = invoke("scan", mlp_checkpoint, "--data", copied, *FAST, "-o", out)
    assert again.exit_code == 0, again.output
    assert again.stdout == first.stdout


def _disk_full_after(monkeypatch, files: int) -> None:
    """The disk fills up after ``files`` whole-file fsyncs: creation is the first, each
    finished layer one more (directory fsyncs pass)."""
    calls = []
    real = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            calls.append(fd)
            if len(calls) > files:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_disk_full_at_creation_is_one_line(mlp_checkpoint, tmp_path, monkeypatch) -> None:
    out = tmp_path / "r.h5"
    _disk_full_after(monkeypatch, 0)
    result = invoke("scan", mlp_checkpoint, *FAST, "--no-global", "-o", out)
    assert_user_error(result, f"cannot create {out}: No space left on device")
    assert not out.exists()


def test_disk_full_at_a_later_layer_keeps_the_finished_ones(
    mlp_checkpoint, tmp_path, monkeypatch
) -> None:
    out = tmp_path / "r.h5"
    _disk_full_after(monkeypatch, 3)  # the file and two layers
    result = invoke("scan", mlp_checkpoint, *FAST, "-o", out)
    assert_user_error(result, f"cannot update {out}: No space left on device")
    assert "run the same" in result.stderr
    kept = walknoise.load(out).dataset
    assert kept["layer_done"].values.tolist()[:3] == [1, 1, 0]
    assert np.isfinite(kept["accuracy"].values[:2]).all()
    monkeypatch.undo()  # space freed: the same command finishes the scan
    resumed = invoke("scan", mlp_checkpoint, *FAST, "-o", out)
    assert resumed.exit_code == 0, resumed.output
    assert walknoise.load(out).complete


def test_below_chance_is_one_warning_line(mlp_checkpoint, tmp_path) -> None:
    from walknoise.data import load_mnist

    mnist = load_mnist("test").subset(500)
    data = tmp_path / "shifted.pt"
    torch.save({"x": mnist.x, "y": (mnist.y + 1) % 10}, data)  # every label moved by one
    result = invoke("scan", mlp_checkpoint, "--data", data, *FAST, "-o", tmp_path / "r.h5")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: clean accuracy 0.0"), lines
    assert "below chance 0.1 (10 classes" in lines[0]
