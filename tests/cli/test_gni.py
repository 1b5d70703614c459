"""``walknoise gni run``, ``walknoise gni plot`` and ``walknoise train --gni-*`` end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.cli.conftest import assert_user_error, invoke
from walknoise.gni.measure import load_gni

FAST = ("--draws", "5", "--batches", "2", "--quiet")


@pytest.fixture(scope="module")
def gni_file(mlp_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gni") / "gni.h5"
    noise = ("--noise", "multiplicative", "--sigma", "0.05,0.2")
    result = invoke("gni", "run", mlp_checkpoint, *noise, *FAST, "-o", out)
    assert result.exit_code == 0, result.output
    assert "fc1.weight" in result.output and f"wrote {out}" in result.output
    assert "α [95% CI]" in result.output and "β [95% CI]" in result.output
    return out


def test_gni_writes_statistics(gni_file: Path) -> None:
    ds = load_gni(gni_file).dataset
    assert list(ds["param_layer"].values) == [
        "fc1.weight",
        "fc2.weight",
        "fc3.weight",
        "fc4.weight",
    ]
    assert list(ds["sigma"].values) == [0.05, 0.2]
    assert np.all(np.isfinite(ds["alpha"].values)) and np.all(np.isfinite(ds["alpha_block"]))
    # two batches: the bootstrap resamples them, so every cell has an interval around α̂
    assert np.all((ds["alpha_low"] <= ds["alpha"]) & (ds["alpha"] <= ds["alpha_high"]))
    assert ds.attrs["data"] == "mnist:train" and ds.attrs["noise"] == "multiplicative"
    assert ds.attrs["command"].startswith("walknoise gni run ")


@pytest.mark.parametrize("kind", ["sigma", "training", "histogram"])
def test_gni_plot(gni_file: Path, tmp_path: Path, kind: str) -> None:
    out = tmp_path / f"{kind}.png"
    result = invoke("gni", "plot", kind, gni_file, "--sigma", "0.2", "-o", out)
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 10_000


def test_train_tracks_gradient_noise(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 1, 4, 4, generator=g)
    data = tmp_path / "small.npz"
    np.savez(data, x=x.numpy(), y=(x.flatten(1) @ torch.randn(16, 3, generator=g)).argmax(1))
    out = tmp_path / "m.pt"
    args = ("--arch", "mlp", "--data", data, "--epochs", "1", "--batch-size", "100")
    gni = ("--gni-mode", "marginal", "--gni-draws", "2", "--gni-every", "2")
    sgd = ("--optimizer", "sgd")  # the paper's optimizer
    result = invoke("train", *args, *gni, *sgd, "--gni-noise", "multiplicative", "-o", out)
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / 'm.gni.h5'}" in result.output
    ds = load_gni(tmp_path / "m.gni.h5").dataset
    assert list(ds["step"].values) == [1, 2]  # step 1, then every 2nd (the last)
    assert ds.attrs["noise"] == "multiplicative"
    meta = torch.load(out, weights_only=True)["meta"]
    assert meta["gni"]["mode"] == "marginal" and meta["gni"]["draws"] == 2
    assert meta["train"]["optimizer"] == "sgd"
    assert meta["train"]["lr"] == 0.05  # plain SGD's own default step, not Adam's 1e-3


def test_errors_are_one_line(mlp_checkpoint: Path, gni_file: Path, tmp_path: Path) -> None:
    assert_user_error(
        invoke("gni", "run", mlp_checkpoint, "--draws", "1", "-o", tmp_path / "a.h5"), "at least 2"
    )
    assert_user_error(
        invoke("gni", "run", mlp_checkpoint, "--sigma", "0", "-o", tmp_path / "b.h5"), "positive"
    )
    assert_user_error(invoke("gni", "run", mlp_checkpoint, *FAST, "-o", gni_file), "--overwrite")
    assert_user_error(
        invoke("gni", "run", mlp_checkpoint, "--layers", "nope", "-o", tmp_path / "c.h5"),
        "matches no",
    )
    assert_user_error(
        invoke("gni", "plot", "sigma", tmp_path / "none.h5"), "no such gradient-noise"
    )
    out = tmp_path / "m.pt"
    assert_user_error(invoke("train", "--gni-every", "0", "-o", out), "--gni-every")
    assert_user_error(invoke("train", "--gni-sigma", "-1", "-o", out), "--gni-sigma")
