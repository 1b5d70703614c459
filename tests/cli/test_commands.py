"""The CLI end to end on bundled MNIST: train, layers, scan, plot."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import walknoise
from tests.cli.conftest import invoke

GOLDEN = Path(__file__).parent.parent / "golden"


def test_train_writes_a_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    result = invoke("train", "--arch", "mlp", "--batchnorm", "--epochs", "1", "-o", out)
    assert result.exit_code == 0, result.output
    assert "test accuracy 0.9" in result.output or "test accuracy 0.8" in result.output
    import torch

    ckpt = torch.load(out, weights_only=True)
    assert ckpt["arch"] == "mlp" and ckpt["arch_kwargs"]["batchnorm"] is True
    assert ckpt["input_shape"] == [1, 28, 28] and ckpt["num_classes"] == 10
    assert ckpt["meta"]["train"]["epochs"] == 1


def test_layers_golden(tmp_path: Path) -> None:
    import torch

    from walknoise.models import lenet5, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path / "lenet.pt"
    save_checkpoint(
        path,
        lenet5(batchnorm=True),
        arch="lenet5",
        arch_kwargs={"batchnorm": True},
        input_shape=(1, 28, 28),
        num_classes=10,
        meta={},
    )
    result = invoke("layers", path)
    assert result.exit_code == 0, result.output
    golden = GOLDEN / "layers_lenet5_bn.txt"
    if os.environ.get("WALKNOISE_REGEN_GOLDEN"):
        golden.write_text(result.output)
    assert result.output == golden.read_text()


def test_scan_then_plots(mlp_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.h5"
    scan = ("scan", mlp_checkpoint, "--sigmas", "log:1e-2:1e3:11", "--repeats", "2")
    scan += ("--layers", "<input>,fc*", "-o", out, "--quiet")
    result = invoke(*scan)
    assert result.exit_code == 0, result.output
    assert "midpoint σ" in result.output and "<global>" in result.output
    res = walknoise.load(out)
    assert res.layers == ["<input>", "fc1", "fc2", "fc3", "fc4", "<global>"]
    assert res.clean_accuracy > 0.85
    acc = res.accuracy.mean("repeat").values
    assert np.all(np.abs(acc[:, 0] - res.clean_accuracy) < 0.03)
    assert np.all(np.abs(acc[:, -1] - 0.1) < 0.03)
    assert res.dataset.attrs["command"].startswith("walknoise scan")
    for kind in ("heatmap", "curves", "midpoints"):
        png = tmp_path / f"{kind}.png"
        shown = invoke("plot", kind, out, "-o", png)
        assert shown.exit_code == 0, shown.output
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a rerun finds every layer done and computes nothing
    again = invoke(*scan)
    assert again.exit_code == 0 and again.output == result.output


def test_state_dict_with_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    (tmp_path / "mymodels.py").write_text(
        "from torch import nn\n"
        "def tiny():\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))\n"
    )
    monkeypatch.chdir(tmp_path)
    from torch import nn

    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    result = invoke(
        "scan",
        "sd.pt",
        "--arch",
        "mymodels:tiny",
        "--sigmas",
        "0.1,1",
        "--repeats",
        "1",
        "-o",
        "r.h5",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert walknoise.load(tmp_path / "r.h5").layers == ["<input>", "1", "<global>"]


def test_train_phase_writes_accuracy_and_every_weight_stat(
    mlp_checkpoint: Path, tmp_path: Path
) -> None:
    from walknoise.walk.schema import TRAIN_VARIABLES

    out = tmp_path / "t.h5"
    result = invoke(
        "scan",
        mlp_checkpoint,
        "--phase",
        "train",
        "--layers",
        "fc1",
        "--sigmas",
        "log:1e-1:1e1:3",
        "--repeats",
        "2",
        "--epochs",
        "1",
        "-o",
        out,
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert "noise-trained" in result.output
    ds = walknoise.load(out).dataset
    assert ds.attrs["phase"] == "train"
    assert list(ds["param_layer"].values) == ["fc1", "fc2", "fc3", "fc4"]
    for name in TRAIN_VARIABLES:
        assert np.isfinite(ds[name].values).all(), name
    assert np.isnan(ds["accuracy"].values).all()  # no eval-only cells in --phase train
