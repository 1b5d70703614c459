"""Figures for a layer-wise noise scan: heatmap, accuracy curves, midpoint bars.

Presentation only: every function takes a scan ``Result`` (or its ``xarray.Dataset``)
and returns a fresh :class:`matplotlib.figure.Figure` without touching pyplot's global
state, so it works headless and in parallel. The only arithmetic done here is the mean,
spread and log-interpolation needed to draw what the scan already computed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import seaborn as sns
import xarray as xr
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import offset_copy

from walknoise.errors import WalknoiseError

__all__ = ["curves", "heatmap", "midpoints", "save_figure"]

_OUTLINE = [patheffects.withStroke(linewidth=2.0, foreground="black")]
_MAX_XTICKS = 9
_NOTE: dict[str, Any] = {"va": "center", "fontsize": "small"}
_GREY_NOTE: dict[str, Any] = {**_NOTE, "ha": "center", "color": "0.35", "style": "italic"}
_TOP_LEGEND: dict[str, Any] = {
    "loc": "lower left",
    "bbox_to_anchor": (0.0, 1.0),
    "frameon": False,
    "fontsize": "small",
    "borderaxespad": 0.2,
}


def _dataset(result: object) -> xr.Dataset:
    ds = getattr(result, "dataset", result)
    if not isinstance(ds, xr.Dataset) or "accuracy" not in ds:
        raise WalknoiseError(
            f"cannot plot a {type(result).__name__}: pass a scan Result or its xarray.Dataset"
        )
    return ds


def _fmt_sigma(s: float) -> str:
    """1e-2 style: ``0.01 -> '1e-2'``, ``0.0316 -> '3e-2'``."""
    mantissa, exponent = f"{s:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _layers(ds: xr.Dataset) -> list[str]:
    return [str(name) for name in ds["layer"].values]


def _sigma(ds: xr.Dataset) -> np.ndarray:
    return np.asarray(ds["sigma"].values, dtype=np.float64)


def _layer_vec(ds: xr.Dataset, name: str, nan: float = math.nan) -> np.ndarray:
    """Per-layer variable as float array (NaN-filled if absent)."""
    if name not in ds:
        return np.full(ds.sizes["layer"], nan)
    return np.asarray(ds[name].values, dtype=np.float64)


def _status(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Per layer: (midpoint reached within the grid, any accuracy computed at all)."""
    mid = _layer_vec(ds, "midpoint")
    flag = _layer_vec(ds, "midpoint_status", nan=1.0)
    acc = np.asarray(ds["accuracy"].values, dtype=np.float64)
    reached = np.asarray(np.isfinite(mid) & (flag != 0), dtype=bool)  # -1: at σ_min
    return reached, np.asarray(np.isfinite(acc).any(axis=(1, 2)), dtype=bool)


def _sigma_label(ds: xr.Dataset) -> str:
    mode = ds.attrs.get("sigma_mode")
    return f"noise σ ({mode})" if mode else "noise σ"


def _xtick_columns(sigma: np.ndarray) -> list[int]:
    """A readable subset of columns: the decades if the grid hits them, else every k-th."""
    logs = np.log10(sigma)
    decades = [j for j, v in enumerate(logs) if abs(v - round(v)) < 1e-6]
    if 2 <= len(decades) <= _MAX_XTICKS:
        return decades
    step = max(1, math.ceil(len(sigma) / _MAX_XTICKS))
    return list(range(0, len(sigma), step))


def _column_of(value: float, log_sigma: np.ndarray) -> float:
    """Fractional cell-centre x position of ``value`` in a heatmap whose columns are σ."""
    return float(np.interp(math.log10(value), log_sigma, np.arange(len(log_sigma)))) + 0.5


def heatmap(result: object, *, title: str | None = None) -> Figure:
    """Layers × σ heatmap of mean accuracy, with each layer's midpoint marked."""
    ds = _dataset(result)
    layers, sigma = _layers(ds), _sigma(ds)
    mean = np.asarray(ds["accuracy"].mean("repeat", skipna=True).values, dtype=np.float64)
    n_layers, n_sigma = mean.shape
    height = 1.9 + 0.42 * n_layers
    width = min(14.0, max(6.5, 3.5 + 0.3 * n_sigma))
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.add_subplot()
    ax.set_facecolor("0.85")  # blank (NaN) cells show as grey
    sns.heatmap(
        mean,
        ax=ax,
        cmap="viridis",
        vmin=0.0,
        vmax=1.0,
        xticklabels=False,
        yticklabels=layers,
        cbar_kws={"label": "accuracy", "pad": 0.02, "shrink": min(1.0, 5.0 / height)},
    )
    cols = _xtick_columns(sigma)
    ax.set_xticks([j + 0.5 for j in cols], [_fmt_sigma(sigma[j]) for j in cols], rotation=0)
    ax.tick_params(axis="y", rotation=0)
    ax.set_xlabel(_sigma_label(ds))
    ax.set_ylabel("injection point")

    log_sigma = np.log10(sigma)
    mid, low, high = (_layer_vec(ds, v) for v in ("midpoint", "midpoint_low", "midpoint_high"))
    reached, computed = _status(ds)
    xs, ys = [], []
    for i in range(n_layers):
        y = i + 0.5
        if not computed[i]:
            ax.text(n_sigma / 2, y, "not computed", **_GREY_NOTE)
        elif reached[i]:
            xs.append(_column_of(mid[i], log_sigma))
            ys.append(y)
            if np.isfinite(low[i]) and np.isfinite(high[i]):
                span = [_column_of(low[i], log_sigma), _column_of(high[i], log_sigma)]
                ax.plot(span, [y, y], color="white", lw=1.5, path_effects=_OUTLINE)
        else:
            # Right edge, offset in points so it stays readable however narrow the cells.
            edge = offset_copy(ax.transData, fig=fig, x=-7, units="points")
            ax.plot([n_sigma], [y], ">", color="white", mec="black", ms=8, transform=edge)
            halo = [patheffects.withStroke(linewidth=2.5, foreground="white")]
            style = {**_NOTE, "ha": "right", "color": "black", "path_effects": halo}
            ax.annotate("> σ_max", (n_sigma, y), (-15, 0), textcoords="offset points", **style)
    ax.plot(xs, ys, "o", color="white", mec="black", mew=1.2, ms=8, gid="midpoints")

    handles = [
        Line2D([], [], marker="o", ls="", color="white", mec="black", label="midpoint (95% CI)"),
        Line2D([], [], marker=">", ls="", color="white", mec="black", label="not reached"),
        Patch(facecolor="0.85", edgecolor="0.6", label="not computed"),
    ]
    ax.legend(handles=handles, ncols=3, **_TOP_LEGEND)
    if title is None:
        noise = ds.attrs.get("noise", "")
        title = f"{noise} noise".strip()
        clean = ds.attrs.get("clean_accuracy")
        if clean is not None and np.isfinite(clean):
            title += f", clean accuracy {float(clean):.1%}"
    fig.suptitle(title)
    return fig


def _reference_lines(ax: Axes, ds: xr.Dataset) -> None:
    for key, label, grey in (
        ("clean_accuracy", "clean", "0.2"),
        ("chance_accuracy", "chance", "0.6"),
    ):
        value = ds.attrs.get(key)
        if value is not None and np.isfinite(value):
            ax.axhline(float(value), color=grey, ls="--", lw=1.2, label=f"{label} ({value:.1%})")


def curves(result: object, *, layers: Sequence[str] | None = None) -> Figure:
    """Mean accuracy vs σ per layer, with a min..max band over repeats."""
    ds = _dataset(result)
    names = _layers(ds) if layers is None else [str(name) for name in layers]
    unknown = [name for name in names if name not in _layers(ds)]
    if unknown:
        raise WalknoiseError(
            f"unknown layer(s) {', '.join(unknown)}: choose from {', '.join(_layers(ds))}"
        )
    sigma = _sigma(ds)
    acc = ds["accuracy"].sel(layer=names)
    mean, lo, hi = (
        np.asarray(a.values, dtype=np.float64)
        for a in (acc.mean("repeat"), acc.min("repeat"), acc.max("repeat"))
    )
    fig = Figure(figsize=(8.5, 5.0), layout="constrained")
    ax = fig.add_subplot()
    palette = sns.color_palette("colorblind" if len(names) <= 10 else "husl", len(names))
    for i, (name, colour) in enumerate(zip(names, palette, strict=True)):
        if not np.isfinite(mean[i]).any():
            ax.plot([], [], color=colour, label=f"{name} (not computed)")
            continue
        ax.plot(sigma, mean[i], color=colour, lw=1.8, marker=".", label=name)
        ax.fill_between(sigma, lo[i], hi[i], color=colour, alpha=0.2, lw=0)
    _reference_lines(ax, ds)
    ax.set_xscale("log")
    if len(sigma) > 1:
        ax.set_xlim(sigma[0], sigma[-1])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(_sigma_label(ds))
    ax.set_ylabel("accuracy (mean, band = min..max over repeats)")
    ax.grid(True, which="major", alpha=0.3)
    ncols = 1 if len(names) <= 18 else 2
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, ncols=ncols)
    return fig


def midpoints(result: object) -> Figure:
    """One horizontal bar per layer up to its midpoint σ, with 95% CI error bars."""
    ds = _dataset(result)
    layers, sigma = _layers(ds), _sigma(ds)
    mid, low, high = (_layer_vec(ds, v) for v in ("midpoint", "midpoint_low", "midpoint_high"))
    reached, computed = _status(ds)
    fig = Figure(figsize=(7.5, 1.4 + 0.4 * len(layers)), layout="constrained")
    ax = fig.add_subplot()
    ax.set_xscale("log")
    left, right = sigma[0], sigma[-1]
    colour = sns.color_palette("colorblind")[0]
    for i in range(len(layers)):
        if not computed[i]:
            ax.text(math.sqrt(left * right), i, "not computed", **_GREY_NOTE)
        elif reached[i]:
            ax.barh(i, mid[i] - left, left=left, height=0.6, color=colour)
            if np.isfinite(low[i]) and np.isfinite(high[i]):
                err = [[max(mid[i] - low[i], 0.0)], [max(high[i] - mid[i], 0.0)]]
                ax.errorbar(mid[i], i, xerr=err, color="black", capsize=3, lw=1.2)
        else:
            hatched = {"facecolor": "none", "edgecolor": colour, "hatch": "//"}
            ax.barh(i, right - left, left=left, height=0.6, **hatched)
            ax.text(right, i, " > σ_max", ha="left", **_NOTE)
    ax.set_yticks(range(len(layers)), layers)
    ax.set_ylim(len(layers) - 0.5, -0.5)  # dataset order, top to bottom
    ax.set_xlim(left, right * 3.0)
    ax.axvline(right, color="0.5", ls=":", lw=1.0)
    ax.set_xlabel(f"midpoint {_sigma_label(ds)}")
    ax.set_ylabel("injection point")
    ax.grid(True, axis="x", which="major", alpha=0.3)
    handles = [
        Patch(color=colour, label="midpoint (95% CI)"),
        Patch(facecolor="none", edgecolor=colour, hatch="//", label="not reached (> σ_max)"),
    ]
    ax.legend(handles=handles, ncols=2, **_TOP_LEGEND)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 150) -> Path:
    """Save ``fig`` to ``path`` in the format named by its suffix; returns the path."""
    path = Path(path)
    formats = FigureCanvasBase.get_supported_filetypes()
    fmt = path.suffix.lower().lstrip(".")
    what = f"cannot save figure to {path}"
    if fmt not in formats:
        choices = ", ".join(f".{f}" for f in sorted(formats))
        raise WalknoiseError(f"{what}: unsupported suffix '{path.suffix}'; use one of {choices}")
    if not path.parent.is_dir():
        raise WalknoiseError(f"{what}: directory {path.parent} does not exist; create it first")
    try:
        fig.savefig(path, dpi=dpi, format=fmt, bbox_inches="tight")
    except OSError as exc:
        raise WalknoiseError(f"{what}: {exc.strerror or exc}") from exc
    return path
