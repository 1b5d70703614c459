"""Figures of the implicit gradient noise: statistics vs σ, over training, and histograms.

Presentation only, in the style of :mod:`walknoise.walk.plots`: each function takes a
``GNIResult`` (or its ``xarray.Dataset``) and returns a fresh matplotlib ``Figure``; pyplot
is never touched. Solid lines are the paper's per-tensor standardisation; dashed and dotted
lines scale each coordinate by its std and by its median absolute deviation over the draws.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import seaborn as sns
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FormatStrFormatter, NullFormatter

from walknoise.errors import WalknoiseError

__all__ = ["histograms", "over_sigma", "over_training"]

_PANELS = (
    ("alpha", "tail index α", 2.0, "Gaussian: α = 2"),
    ("skewness", "skewness", 0.0, "symmetric: 0"),
    ("kurtosis", "excess kurtosis", 0.0, "Gaussian: 0"),
)
_MODES = (
    ("layer", "-", "per tensor"),
    ("coordinate", "--", "per coordinate (std)"),
    ("robust", ":", "per coordinate (MAD)"),
)


def _dataset(result: object) -> xr.Dataset:
    ds = getattr(result, "dataset", result)
    if not isinstance(ds, xr.Dataset) or "alpha" not in ds or "param_layer" not in ds.dims:
        raise WalknoiseError(
            f"cannot plot a {type(result).__name__}: pass a GNIResult or a gradient-noise dataset"
        )
    return ds


def _pick(ds: xr.Dataset, dim: str, value: float | None) -> xr.Dataset:
    """One entry of ``dim``: the nearest to ``value``, or the last (step) / first (σ)."""
    coord = np.asarray(ds[dim].values, dtype=np.float64)
    if value is None:
        index = len(coord) - 1 if dim == "step" else 0
    else:
        index = int(np.argmin(np.abs(coord - value)))
    return ds.isel({dim: index})


def _colours(n: int) -> list[tuple[float, float, float]]:
    return list(sns.color_palette("colorblind" if n <= 10 else "husl", n))


def _trend(ds: xr.Dataset, x_dim: str, caption: str) -> Figure:
    names = [str(v) for v in ds["param_layer"].values]
    xs = np.asarray(ds[x_dim].values, dtype=np.float64)
    fig = Figure(figsize=(13.0, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    colours = _colours(len(names))
    for ax, (var, label, ref, ref_label) in zip(axes, _PANELS, strict=True):
        ax.axhline(ref, color="0.6", lw=1.0, ls="-.", label=ref_label)
        # MAD-scaled moments run to 10⁵ when a coordinate has a narrow core and rare
        # jumps; they would flatten the other curves, so only its α is drawn.
        for mode, style, _ in _MODES if var == "alpha" else _MODES[:2]:
            data = ds[var].sel(standardize=mode)
            for name, colour in zip(names, colours, strict=True):
                ys = np.asarray(data.sel(param_layer=name).values, dtype=np.float64)
                ax.plot(xs, ys, ls=style, marker="o", ms=3.5, color=colour, lw=1.5)
        ax.set_ylabel(label)
        ax.set_xlabel("noise σ" if x_dim == "sigma" else "training step")
        if x_dim == "sigma" and len(xs) > 1:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(NullFormatter())  # 2×10⁻¹ labels would collide
        ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], color=c, lw=2, label=n) for n, c in zip(names, colours, strict=True)]
    handles += [Line2D([], [], color="0.3", ls=s, label=lab) for _, s, lab in _MODES]
    handles.append(Line2D([], [], color="0.6", ls="-.", label="Gaussian value"))
    fig.legend(handles=handles, loc="outside right upper", frameon=False, fontsize="small")
    fig.suptitle(f"implicit gradient noise, {ds.attrs.get('noise', '')} noise, {caption}")
    return fig


def over_sigma(result: object, *, step: float | None = None) -> Figure:
    """α, skewness and excess kurtosis per parameter tensor against σ (at one step)."""
    ds = _pick(_dataset(result), "step", step)
    return _trend(ds, "sigma", f"weights of step {int(ds['step'])}")


def over_training(result: object, *, sigma: float | None = None) -> Figure:
    """α, skewness and excess kurtosis per parameter tensor against the training step."""
    ds = _pick(_dataset(result), "sigma", sigma)
    return _trend(ds, "step", f"σ = {float(ds['sigma']):.3g}")


def _histogram_panel(ax: Axes, ds: xr.Dataset, name: str) -> None:
    cell = ds.sel(param_layer=name)
    counts = np.asarray(cell["histogram"].values, dtype=np.float64)
    centres = np.asarray(ds["bin"].values, dtype=np.float64)
    width = float(centres[1] - centres[0])
    total = counts.sum() + float(cell["hist_outside"])
    if total == 0:
        ax.text(0.5, 0.5, "no noise reached this tensor", ha="center", transform=ax.transAxes)
        return
    density = np.where(counts > 0, counts / (total * width), np.nan)
    ax.plot(centres, density, "o", ms=3, color=_colours(1)[0], label="implicit gradient noise")
    gauss = np.exp(-(centres**2) / 2) / math.sqrt(2 * math.pi)
    ax.plot(centres, gauss, color="0.2", lw=1.2, ls="--", label="N(0, 1)")
    ax.set_yscale("log")
    ax.set_ylim(0.5 / total / width, 1.0)
    stats = cell.sel(standardize="layer")
    text = (
        f"α = {float(stats['alpha']):.2f}\nskew = {float(stats['skewness']):.2f}\n"
        f"kurt = {float(stats['kurtosis']):.1f}"
    )
    style: dict[str, Any] = {"va": "top", "fontsize": "small", "family": "monospace"}
    ax.text(0.03, 0.97, text, transform=ax.transAxes, **style)
    ax.set_title(name, fontsize="medium")
    ax.set_xlabel("standardised value")
    ax.grid(True, alpha=0.3)


def histograms(result: object, *, sigma: float | None = None, step: float | None = None) -> Figure:
    """Per parameter tensor: the standardised noise density (log scale) against N(0, 1)."""
    ds = _pick(_pick(_dataset(result), "sigma", sigma), "step", step)
    names = [str(v) for v in ds["param_layer"].values]
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(3.6 * cols, 3.2 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False, sharey=True)).reshape(-1)
    for ax, name in zip(axes, names, strict=False):
        _histogram_panel(ax, ds, name)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    axes[0].set_ylabel("density")
    axes[0].legend(loc="upper right", fontsize="x-small", frameon=False)
    fig.suptitle(
        f"standardised implicit gradient noise, {ds.attrs.get('noise', '')} noise, "
        f"σ = {float(ds['sigma']):.3g}, step {int(ds['step'])}"
    )
    return fig
