"""``walknoise scan`` and its results file: stale resumes, disk errors, file modes (issue 15)."""

from __future__ import annotations

from pathlib import Path

import torch

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
