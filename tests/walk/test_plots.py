"""Tests for walknoise.walk.plots on a hand-built scan dataset."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import xarray as xr
from matplotlib.collections import QuadMesh
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.text import Annotation

from walknoise.errors import WalknoiseError
from walknoise.walk import plots

LAYERS = ["<input>", "conv1", "act1", "fc3", "<global>", "fc_pending"]
SIGMA = np.logspace(-3, 1, 17)  # 4 columns per decade; decades at columns 0, 4, 8, 12, 16
# conv1's midpoint is exactly SIGMA[8] = 0.1; fc3 never reaches it; fc_pending is not computed.
MIDS = {"<input>": 0.03, "conv1": float(SIGMA[8]), "act1": 0.5, "fc3": 1e3, "<global>": 0.01}
CLEAN, CHANCE, REPEATS = 0.98, 0.1, 4


def _scan() -> xr.Dataset:
    rng = np.random.default_rng(0)
    acc = np.full((len(LAYERS), len(SIGMA), REPEATS), np.nan)
    for i, name in enumerate(LAYERS):
        if name in MIDS:
            curve = CHANCE + (CLEAN - CHANCE) / (1.0 + (SIGMA / MIDS[name]) ** 2)
            acc[i] = np.clip(curve[:, None] + rng.normal(0, 0.01, (len(SIGMA), REPEATS)), 0, 1)
    mid = np.array([MIDS.get(n, np.nan) for n in LAYERS])
    reached = np.isfinite(mid) & (mid <= SIGMA[-1])
    mid = np.where(reached, mid, np.nan)
    dims3 = ("layer", "sigma", "repeat")
    return xr.Dataset(
        {
            "accuracy": (dims3, acc),
            "loss": (dims3, -np.log(np.clip(acc, 1e-6, 1))),
            "accuracy_drop": (dims3, CLEAN - acc),
            "midpoint": ("layer", mid),
            "midpoint_status": ("layer", reached.astype(np.int8)),
            "midpoint_low": ("layer", mid * 0.8),
            "midpoint_high": ("layer", mid * 1.25),
        },
        coords={"layer": LAYERS, "sigma": SIGMA, "repeat": np.arange(REPEATS)},
        attrs={
            "clean_accuracy": CLEAN,
            "chance_accuracy": CHANCE,
            "noise": "additive",
            "sigma_mode": "absolute",
        },
    )


@pytest.fixture
def scan() -> xr.Dataset:
    return _scan()


def _legend_labels(fig: Figure) -> list[str]:
    legend = fig.axes[0].get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


def _midpoint_markers(fig: Figure) -> Line2D:
    (line,) = [ln for ln in fig.axes[0].lines if ln.get_gid() == "midpoints"]
    return line


def test_heatmap_grid_and_title(scan: xr.Dataset) -> None:
    fig = plots.heatmap(scan)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2  # heatmap + colourbar
    (mesh,) = [c for c in fig.axes[0].collections if isinstance(c, QuadMesh)]
    data: np.ma.MaskedArray[Any, Any] = np.ma.asarray(mesh.get_array())
    assert data.shape == (len(LAYERS), len(SIGMA))
    mask = np.ma.getmaskarray(data)
    assert mask[LAYERS.index("fc_pending")].all()  # not computed: blank
    assert not mask[LAYERS.index("conv1")].any()
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == LAYERS
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [
        "1e-3", "1e-2", "1e-1", "1e0", "1e1"
    ]  # fmt: skip
    assert fig.axes[1].get_ylabel() == "accuracy"
    assert fig.get_suptitle() == "additive noise, clean accuracy 98.0%"
    assert plots.heatmap(scan, title="custom").get_suptitle() == "custom"


def test_heatmap_midpoint_marker_positions(scan: xr.Dataset) -> None:
    line = _midpoint_markers(plots.heatmap(scan))
    xs, ys = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
    reached = [n for n in LAYERS if n in MIDS and MIDS[n] <= SIGMA[-1]]
    assert len(xs) == len(reached)
    # Rows are cell centres i + 0.5, in dataset order.
    np.testing.assert_allclose(ys, [LAYERS.index(n) + 0.5 for n in reached])
    by_layer = dict(zip(reached, xs, strict=True))
    assert by_layer["conv1"] == pytest.approx(8.5)  # midpoint == SIGMA[8]: centre of column 8
    assert by_layer["<global>"] == pytest.approx(4.5)  # 0.01 == SIGMA[4]
    # 0.03 lies between columns 5 (0.0178) and 6 (0.0316): interpolated in log σ.
    assert by_layer["<input>"] == pytest.approx(0.5 + 4 * (np.log10(0.03) + 3))


def test_heatmap_marks_not_reached_and_not_computed(scan: xr.Dataset) -> None:
    ax = plots.heatmap(scan).axes[0]
    texts = {t.get_text(): t for t in ax.texts}
    not_reached = texts["> σ_max"]
    assert isinstance(not_reached, Annotation)
    assert not_reached.xy == pytest.approx((len(SIGMA), LAYERS.index("fc3") + 0.5))  # right edge
    assert texts["not computed"].get_position()[1] == pytest.approx(
        LAYERS.index("fc_pending") + 0.5
    )


def test_heatmap_size_scales_with_layers(scan: xr.Dataset) -> None:
    small = plots.heatmap(scan.isel(layer=slice(0, 2)))
    assert small.get_figheight() < plots.heatmap(scan).get_figheight()


def test_accepts_result_object(scan: xr.Dataset) -> None:
    result = SimpleNamespace(dataset=scan)
    for fn in (plots.heatmap, plots.curves, plots.midpoints):
        assert isinstance(fn(result), Figure)


def test_rejects_non_dataset() -> None:
    with pytest.raises(WalknoiseError, match=r"xarray\.Dataset"):
        plots.heatmap(object())


def test_distinct_figures(scan: xr.Dataset) -> None:
    for fn in (plots.heatmap, plots.curves, plots.midpoints):
        assert fn(scan) is not fn(scan)


def test_curves(scan: xr.Dataset) -> None:
    fig = plots.curves(scan)
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    labels = _legend_labels(fig)
    assert labels[: len(LAYERS)] == [*LAYERS[:-1], "fc_pending (not computed)"]
    assert any(lbl.startswith("clean") for lbl in labels)
    assert any(lbl.startswith("chance") for lbl in labels)
    dashed_y = {np.asarray(ln.get_ydata())[0] for ln in ax.lines if ln.get_linestyle() == "--"}
    assert dashed_y == {CLEAN, CHANCE}
    mean_conv1 = scan["accuracy"].sel(layer="conv1").mean("repeat").values
    (conv1,) = [ln for ln in ax.lines if ln.get_label() == "conv1"]
    np.testing.assert_allclose(np.asarray(conv1.get_ydata()), mean_conv1)


def test_curves_subset_and_unknown_layer(scan: xr.Dataset) -> None:
    fig = plots.curves(scan, layers=["conv1", "fc3"])
    labels = _legend_labels(fig)
    assert labels[:2] == ["conv1", "fc3"] and len(labels) == 4
    with pytest.raises(WalknoiseError, match="choose from"):
        plots.curves(scan, layers=["nope"])


def test_midpoints(scan: xr.Dataset) -> None:
    fig = plots.midpoints(scan)
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_yticklabels()] == LAYERS
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(bars) == len(ax.patches) == len(LAYERS) - 1  # no bar for the layer not computed
    hatched = [b for b in bars if b.get_hatch()]
    assert len(hatched) == 1
    assert hatched[0].get_x() + hatched[0].get_width() == pytest.approx(SIGMA[-1])
    assert any(t.get_text().strip() == "> σ_max" for t in ax.texts)
    conv1 = [b for b in bars if b.get_y() + b.get_height() / 2 == LAYERS.index("conv1")]
    assert conv1[0].get_x() + conv1[0].get_width() == pytest.approx(SIGMA[8])


def test_save_figure_png(scan: xr.Dataset, tmp_path: Path) -> None:
    out = plots.save_figure(plots.heatmap(scan), tmp_path / "heat.png")
    assert out == tmp_path / "heat.png"
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
    svg = plots.save_figure(plots.curves(scan), str(tmp_path / "curves.SVG"))
    assert b"<svg" in svg.read_bytes()[:2000]


@pytest.mark.parametrize("name", ["heat.xyz", "heat"])
def test_save_figure_bad_suffix(scan: xr.Dataset, tmp_path: Path, name: str) -> None:
    with pytest.raises(WalknoiseError, match="use one of") as info:
        plots.save_figure(plots.midpoints(scan), tmp_path / name)
    assert "\n" not in str(info.value)


def test_save_figure_missing_directory(scan: xr.Dataset, tmp_path: Path) -> None:
    with pytest.raises(WalknoiseError, match="create it first"):
        plots.save_figure(plots.midpoints(scan), tmp_path / "missing" / "heat.png")
