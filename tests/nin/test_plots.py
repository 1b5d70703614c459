"""NIN figures: drawn from real (tiny) results, saved as images, wrong input refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from tests.nin import test_compare as cmp
from tests.nin import test_probe as prb
from walknoise.errors import WalknoiseError
from walknoise.nin import plots as nin_plots
from walknoise.nin.compare import CompareConfig, CompareResult, compare
from walknoise.nin.phases import PHASES
from walknoise.nin.probe import ProbeConfig, ProbeResult, probe
from walknoise.nin.train import torch_threads
from walknoise.walk.plots import save_figure


@pytest.fixture(scope="module")
def probed() -> ProbeResult:
    train, test = prb.data()
    config = ProbeConfig(
        sigma_eps=(0.01, 30.0, 1e4), lr=(0.05, 0.2), seeds=(0, 1), epochs=2, where="all"
    )
    with torch_threads(1):
        return probe(prb.small, train, config, test_data=test, progress=False)


@pytest.fixture(scope="module")
def compared() -> CompareResult:
    train, test = cmp.data()
    config = CompareConfig(
        methods=("none", "in-ninr", "dropout"),
        seeds=(0, 1),
        epochs=2,
        lr=1e-2,
        grids={"none": (1e-2,), "in-ninr": (10.0,), "dropout": (0.2,)},
        perturbations={"gaussian": (1.0,), "rotation": (10.0, 20.0)},
        walk_sigmas="0.1,1,10",
        walk_repeats=1,
    )
    with torch_threads(1):
        return compare(cmp.small, train, config, test_data=test, progress=False)


def test_phase_diagram_names_each_cell(probed: ProbeResult) -> None:
    fig = nin_plots.phase_diagram(probed)
    assert isinstance(fig, Figure)
    texts = [t.get_text().split("\n")[0] for t in fig.axes[0].texts]
    grid = probed.phase_grid()
    assert texts == [grid.iloc[i, j] for i in range(3) for j in range(2)]
    assert all(t in PHASES for t in texts)


def test_phase_diagram_draws_the_predicted_boundary(probed: ProbeResult) -> None:
    ax = nin_plots.phase_diagram(probed).axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    ds = probed.dataset
    # λ₀: the same initial weights in every run of a seed; the largest over the four NINs.
    lam0 = float(np.median(ds["reference_hessian_top_eigenvalue"].isel(hessian_step=0).max("nin")))
    solid = ax.lines[0]
    eta = np.asarray(solid.get_xdata(), dtype=float)
    np.testing.assert_allclose(solid.get_ydata(), np.sqrt(2 / (eta * lam0)), rtol=1e-12)
    assert "λ₀" in str(solid.get_label())
    # Each cell names η σ_ε² λ at the start and at its largest (2 significant digits).
    first = ax.texts[0].get_text().split("\n")[-1]
    sigma, lr = float(ds["sigma_eps"][0]), float(ds["lr"][0])
    top = float(np.median(probed.stability()["eta_sigma2_lambda_max"].values[0, 0]))
    assert first.endswith(f"ησ²λ {lr * sigma**2 * lam0:.2g} → {top:.2g}")


def test_trajectories_one_panel_per_lr(probed: ProbeResult, tmp_path: Path) -> None:
    fig = nin_plots.niw_trajectories(probed, seed=1)
    assert len(fig.axes) == 2
    assert len(fig.axes[0].lines) >= 3 + 1  # a line per σ_ε and the 'start' line
    one = nin_plots.niw_trajectories(probed, nin="1")
    assert "1" in (one._suptitle.get_text() if one._suptitle else "")
    assert save_figure(fig, tmp_path / "niw.png").stat().st_size > 10_000


def test_time_scales(probed: ProbeResult) -> None:
    fig = nin_plots.time_scales(probed)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    drawn = [line for line in ax.lines if len(line.get_xdata()) == 3]
    assert len(drawn) == 2 * 3  # (NIW, train, test) per learning rate
    xs = np.asarray(drawn[0].get_xdata(), dtype=float)
    assert np.allclose(xs, [0.01, 30.0, 1e4])


def test_compare_figure(compared: CompareResult, tmp_path: Path) -> None:
    fig = nin_plots.compare_figure(compared)
    gaussian, rotation, mids = fig.axes  # a panel per perturbation, then the midpoints
    assert [t.get_text() for t in mids.get_legend().get_texts()] == ["none", "in-ninr", "dropout"]
    assert mids.get_yscale() == "log" and rotation.get_title() == "rotation"
    strengths = np.asarray(rotation.lines[0].get_xdata(), dtype=float)
    assert strengths.tolist() == [0.0, 10.0, 20.0]  # 0 = clean
    clean = compared.dataset["clean_accuracy"].values[0].mean()
    assert np.asarray(gaussian.lines[0].get_ydata(), dtype=float)[0] == pytest.approx(clean)
    save_figure(fig, tmp_path / "compare.png")


def test_wrong_inputs(probed: ProbeResult, compared: CompareResult) -> None:
    with pytest.raises(WalknoiseError, match="ProbeResult"):
        nin_plots.phase_diagram(compared)
    with pytest.raises(WalknoiseError, match="CompareResult"):
        nin_plots.compare_figure(probed)
    with pytest.raises(WalknoiseError, match="seed 9"):
        nin_plots.niw_trajectories(probed, seed=9)
    with pytest.raises(WalknoiseError, match="no NIN at"):
        nin_plots.niw_trajectories(probed, nin="fc9")
