"""``walknoise nin probe|compare|plot`` end to end on tiny files, and their one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.cli.conftest import assert_user_error, invoke
from tests.conftest import learnable_data
from walknoise.nin.compare import load_compare
from walknoise.nin.probe import load_probe


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("nin-data")
    x, y = learnable_data(400)
    train, test = root / "train.npz", root / "test.npz"
    np.savez(train, x=x[:300].numpy(), y=y[:300].numpy())
    np.savez(test, x=x[300:].numpy(), y=y[300:].numpy())
    return train, test


def _data(files: tuple[Path, Path]) -> list[str | Path]:
    return ["--data", files[0], "--test-data", files[1]]


def test_probe_writes_results_and_figures(files: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "probe.h5"
    args = ["--sigma-eps", "0.1,1e4", "--lr", "0.05,0.3", "--epochs", "3", "--quiet"]
    result = invoke("nin", "probe", *_data(files), *args, "-o", out)
    assert result.exit_code == 0, result.output
    assert "σ_ε" in result.output and "divergent" in result.output
    figures = [tmp_path / f"probe-{name}.png" for name in ("phases", "niw", "timescales")]
    assert all(f.stat().st_size > 5_000 for f in figures)
    drawn = [f.read_bytes() for f in figures]
    for f in figures:
        f.unlink()
    redrawn = invoke("nin", "plot", out)
    assert redrawn.exit_code == 0, redrawn.output
    assert [f.read_bytes() for f in figures] == drawn  # the same figures, from the file alone
    assert redrawn.output.count("wrote") == 3
    ds = load_probe(out).dataset
    assert ds["sigma_eps"].values.tolist() == [0.1, 1e4]
    assert ds.attrs["command"].startswith("walknoise nin probe")
    again = invoke("nin", "probe", *_data(files), *args, "-o", out)
    assert_user_error(again, "--overwrite")


def test_probe_full_ninr_with_adam(files: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "p.h5"
    args = ["--sigma-eps", "1", "--lr", "0.01", "--epochs", "1", "--where", "all"]
    result = invoke("nin", "probe", *_data(files), *args, "--optimizer", "adam", "-o", out)
    assert result.exit_code == 0, result.output
    assert load_probe(out).dataset["nin"].values.tolist() == ["fc1", "fc2", "fc3", "fc4"]


def test_compare_writes_table_and_figure(files: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "cmp.h5"
    args = [
        "--methods", "none,full-ninr,l2", "--seeds", "0,1", "--epochs", "1", "--lr", "0.01",
        "--grid", "none=0.01,0.05", "--grid", "full-ninr=1,10", "--grid", "l2=1e-4,1e-3",
        "--perturbations", "gaussian,rotation", "--strengths", "gaussian=1,2",
        "--walk-sigmas", "0.1,1,10", "--walk-repeats", "1", "--quiet",
    ]  # fmt: skip
    result = invoke("nin", "compare", *_data(files), *args, "-o", out)
    assert result.exit_code == 0, result.output
    assert "full-ninr" in result.output and "±" in result.output and "ttest_rel" in result.output
    ds = load_compare(out).dataset
    rotations = ["rotation 10", "rotation 20", "rotation 30"]  # the default strengths
    assert ds["condition"].values.tolist() == ["gaussian 1", "gaussian 2", *rotations]
    assert ds["hyperparameter"].values.tolist() == [[0.01, 0.05], [1.0, 10.0], [1e-4, 1e-3]]
    assert ds.attrs["optimizer"] == "sgd" and ds.attrs["test_data"].endswith("test.npz")
    assert (tmp_path / "cmp.png").stat().st_size > 5_000
    redrawn = invoke("nin", "plot", out, "-o", tmp_path / "again.h5")
    assert redrawn.exit_code == 0, redrawn.output
    assert (tmp_path / "again.png").read_bytes() == (tmp_path / "cmp.png").read_bytes()
    assert load_compare(out).methods == ["none", "full-ninr", "l2"]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["probe", "--sigma-eps", "a,b"], "--sigma-eps"),
        (["probe", "--sigma-eps", "-1"], "σ_ε"),
        (["probe", "--lr", "0.1,0.1"], "twice"),
        (["probe", "--seeds", "x"], "--seeds"),
        (["probe", "--where", "act1"], "not a Linear/Conv"),
        (["probe", "--data", "nope.npz"], "no such data file"),
        (["compare", "--methods", "none,magic"], "methods"),
        (["compare", "--grid", "dropout=0.1,1.5,0.2"], "dropout"),
        (["compare", "--grid", "dropout"], "NAME=values"),
        (["compare", "--grid", "l2=1e-3"], "same number of candidates"),
        (["compare", "--walk-sigmas", "log:1:2"], "σ"),
        (["compare", "--strengths", "impulse=0"], "positive"),
        (["compare", "--perturbations", "fog"], "fog"),
        (["compare", "--optimizer", "adam", "--momentum", "0.9"], "momentum"),
    ],
)
def test_user_errors(args: list[str], match: str, tmp_path: Path) -> None:
    assert_user_error(invoke("nin", *args, "-o", tmp_path / "r.h5", "--quiet"), match)


def test_file_data_needs_a_test_set(files: tuple[Path, Path]) -> None:
    assert_user_error(invoke("nin", "probe", "--data", files[0], "--quiet"), "--test-data")


def test_plot_needs_a_nin_file(tmp_path: Path) -> None:
    assert_user_error(invoke("nin", "plot", tmp_path / "none.h5"), "no such NIN probe file")
    other = tmp_path / "other.h5"
    other.write_text("not hdf5")
    assert_user_error(invoke("nin", "plot", other), "cannot read")
