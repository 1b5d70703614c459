"""``walknoise scan --data package.module:factory``: with worker processes, with the real SLURM
executor (``WALKNOISE_SLURM=1``), and a factory that raises is one line, exit code 2.

Workers and array jobs receive the factory's name, never the tensors: each one imports the
module (from the directory the command runs in) and builds the dataset itself.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import walknoise
from tests.cli.conftest import scan_argv
from walknoise.data import load_mnist
from walknoise.models import load_model

FACTORY = """
from torch.utils.data import TensorDataset
from walknoise.data import load_mnist

def make_dataset():
    data = load_mnist("test").subset(300)
    return TensorDataset(data.x, data.y)

def broken():
    raise ValueError("no such split")
"""
SCAN = ("--sigmas", "log:1e-1:1e2:4", "--repeats", "2", "--layers", "fc1,fc2", "--quiet")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(model: Path, out: Path, cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = scan_argv(model, out, SCAN, *extra)
    return subprocess.run(argv, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)


@pytest.fixture
def factory_dir(tmp_path: Path) -> Path:
    (tmp_path / "wn_data_factory.py").write_text(FACTORY)
    return tmp_path


def local(model: Path, out: Path) -> walknoise.Result:
    """The same scan in this process, on the same 300 images held in memory."""
    data = load_mnist("test").subset(300)
    loaded = load_model(model)
    return walknoise.scan(
        loaded.model, (data.x, data.y), sigmas="log:1e-1:1e2:4", repeats=2,
        layers="fc1,fc2", progress=False, output=out,
    )  # fmt: skip


def test_factory_with_two_workers(mlp_checkpoint: Path, factory_dir: Path) -> None:
    done = run(mlp_checkpoint, factory_dir / "r.h5", factory_dir, "--data",
               "wn_data_factory:make_dataset", "--jobs", "2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    got = walknoise.load(factory_dir / "r.h5").dataset
    want = local(mlp_checkpoint, factory_dir / "here.h5").dataset
    assert got.attrs["data"] == "wn_data_factory:make_dataset"
    # the same batches and draws; each worker runs one thread, this process maybe two, and
    # a matrix product may round differently with another thread count: a flipped sample
    np.testing.assert_allclose(got["accuracy"].values, want["accuracy"].values, atol=1 / 300)
    np.testing.assert_allclose(got["loss"].values, want["loss"].values, rtol=1e-5)


def test_factory_that_raises_is_one_line(mlp_checkpoint: Path, factory_dir: Path) -> None:
    done = run(mlp_checkpoint, factory_dir / "r.h5", factory_dir, "--data",
               "wn_data_factory:broken")  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "wn_data_factory:broken raised ValueError" in lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(
    os.environ.get("WALKNOISE_SLURM") != "1", reason="needs a SLURM cluster: WALKNOISE_SLURM=1"
)
def test_factory_in_slurm_array_jobs(mlp_checkpoint: Path, factory_dir: Path) -> None:
    done = run(mlp_checkpoint, factory_dir / "r.h5", factory_dir, "--data",
               "wn_data_factory:make_dataset", "--executor", "slurm")  # fmt: skip
    assert done.returncode == 0, done.stderr
    got = walknoise.load(factory_dir / "r.h5").dataset
    want = local(mlp_checkpoint, factory_dir / "here.h5").dataset
    np.testing.assert_allclose(got["accuracy"].values, want["accuracy"].values, atol=1 / 300)
