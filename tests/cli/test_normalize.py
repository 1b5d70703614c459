"""``--normalize``: train records it, scan of that checkpoint applies it, results files keep it."""

from __future__ import annotations

from pathlib import Path

import pytest

import walknoise
from tests.cli.conftest import assert_user_error, invoke
from walknoise.data import load_mnist
from walknoise.gni.measure import load_gni
from walknoise.models import load_model


@pytest.fixture(scope="module")
def standard_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("norm") / "mlp.pt"
    result = invoke(
        "train", "--arch", "mlp", "--epochs", "1", "--normalize", "standard", "-o", path
    )
    assert result.exit_code == 0, result.output
    return path


def test_train_records_and_scan_applies_the_checkpoints_scaling(
    standard_checkpoint: Path, tmp_path: Path
) -> None:
    meta = load_model(standard_checkpoint).meta
    expected = load_mnist("train", normalize="standard").normalization
    assert meta["data_normalization"] == "standard"
    assert meta["data_normalization_mean"] == pytest.approx(expected.mean, rel=1e-12)
    out = tmp_path / "r.h5"
    scan = ("scan", standard_checkpoint, "--layers", "fc1", "--sigmas", "0.1,1", "--repeats", "1")
    result = invoke(*scan, "--quiet", "-o", out)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr
    recorded = walknoise.load(out).normalization
    assert recorded == expected  # the training split's mean/std, not the test split's
    # Scanning it on other inputs is allowed, and said.
    other = invoke(*scan, "--normalize", "none", "--quiet", "-o", tmp_path / "none.h5")
    assert other.exit_code == 0, other.output
    assert "warning: MODEL was trained on inputs normalised standard" in other.stderr
    none = walknoise.load(tmp_path / "none.h5")
    assert none.normalization is not None and none.normalization.kind == "none"
    assert (
        none.dataset.attrs["clean_accuracy"] < walknoise.load(out).dataset.attrs["clean_accuracy"]
    )


def test_default_is_none_and_a_bad_value_is_refused(mlp_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.h5"
    result = invoke(
        "scan", mlp_checkpoint, "--layers", "fc1", "--sigmas", "1", "--repeats", "1", "--quiet",
        "-o", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert walknoise.load(out).dataset.attrs["data_normalization"] == "none"
    assert_user_error(invoke("train", "--normalize", "zscore", "-o", out), "--normalize")


def test_gni_run_defaults_to_the_checkpoints_scaling(
    standard_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "gni.h5"
    fast = ("--batches", "2", "--draws", "4", "--batch-size", "16", "--bootstrap", "0")
    result = invoke("gni", "run", standard_checkpoint, *fast, "--quiet", "-o", out)
    assert result.exit_code == 0, result.output
    recorded = load_gni(out).normalization
    assert recorded == load_mnist("train", normalize="standard").normalization


def test_an_old_mnist_checkpoint_is_pointed_at_pm1(mlp_checkpoint: Path, tmp_path: Path) -> None:
    """Checkpoints of walknoise train before issue 13 record no scaling: they saw [-1, 1]."""
    import torch

    old = tmp_path / "old.pt"
    content = torch.load(mlp_checkpoint, weights_only=True)
    content["meta"] = {k: v for k, v in content["meta"].items() if "normalization" not in k}
    torch.save(content, old)
    scan = ("scan", old, "--layers", "fc1", "--sigmas", "1", "--repeats", "1", "--quiet")
    result = invoke(*scan, "-o", tmp_path / "a.h5")
    assert result.exit_code == 0, result.output
    assert "pass --normalize pm1 to scan it as trained" in result.stderr
    chosen = invoke(*scan, "--normalize", "pm1", "-o", tmp_path / "b.h5")
    assert chosen.exit_code == 0 and "warning" not in chosen.stderr
