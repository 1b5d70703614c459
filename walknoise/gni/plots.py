"""Figures of the implicit gradient noise: statistics vs σ, over training, and histograms.

Presentation only, in the style of :mod:`walknoise.walk.plots`: each function takes a
``GNIResult`` (or its ``xarray.Dataset``) and returns a fresh matplotlib ``Figure``; pyplot
is never touched. The α and β panels show the paper's statistics, a stable law fitted to
each tensor's pooled noise, as solid lines with their bootstrap intervals shaded; the α panel
adds the same fit after each coordinate is divided by its MAD (dotted), the block estimator
(dashed), and the skewness panel the sample skewness per tensor
(solid) and per coordinate (dashed).
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
    ("beta", "asymmetry β", 0.0, "symmetric: β = 0"),
    ("skewness", "sample skewness", 0.0, "symmetric: 0"),
)
# (variable, standardisation or None, line style, legend label)
_FIT = "stable fit, 95% interval"
_LINES = {
    "alpha": (
        ("alpha", None, "-", _FIT),
        ("alpha_mad", None, ":", "stable fit, coordinates MAD-scaled"),
        ("alpha_block", "layer", "--", "block estimator"),
    ),
    "beta": (("beta", None, "-", _FIT),),
    "skewness": (
        ("skewness", "layer", "-", "skew per tensor"),
        ("skewness", "coordinate", ":", "skew per coordinate"),
    ),
}


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


def _series(ds: xr.Dataset, var: str, mode: str | None, name: str) -> np.ndarray:
    data = ds[var].sel(param_layer=name)
    return np.asarray((data if mode is None else data.sel(standardize=mode)).values, dtype=float)


def _trend(ds: xr.Dataset, x_dim: str, caption: str) -> Figure:
    names = [str(v) for v in ds["param_layer"].values]
    xs = np.asarray(ds[x_dim].values, dtype=np.float64)
    fig = Figure(figsize=(13.0, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    colours = _colours(len(names))
    for ax, (var, label, ref, ref_label) in zip(axes, _PANELS, strict=True):
        ax.axhline(ref, color="0.6", lw=1.0, ls="-.", label=ref_label)
        for name, colour in zip(names, colours, strict=True):
            for line_var, mode, style, _ in _LINES[var]:
                ys = _series(ds, line_var, mode, name)
                ax.plot(xs, ys, ls=style, marker="o", ms=3.5, color=colour, lw=1.5)
            if var in ("alpha", "beta"):
                low, high = (_series(ds, f"{var}_{end}", None, name) for end in ("low", "high"))
                ax.fill_between(xs, low, high, color=colour, alpha=0.2, lw=0)
        ax.set_ylabel(label)
        ax.set_xlabel("noise σ" if x_dim == "sigma" else "training step")
        if x_dim == "sigma" and len(xs) > 1:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(NullFormatter())  # 2×10⁻¹ labels would collide
        ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], color=c, lw=2, label=n) for n, c in zip(names, colours, strict=True)]
    styles = {(s, lab) for lines in _LINES.values() for _, _, s, lab in lines}
    handles += [Line2D([], [], color="0.3", ls=s, label=lab) for s, lab in sorted(styles)]
    handles.append(Line2D([], [], color="0.6", ls="-.", label="Gaussian / symmetric value"))
    fig.legend(handles=handles, loc="outside right upper", frameon=False, fontsize="small")
    fig.suptitle(f"implicit gradient noise, {ds.attrs.get('noise', '')} noise, {caption}")
    return fig


def over_sigma(result: object, *, step: float | None = None) -> Figure:
    """Stable-fit α and β (with intervals), block α and skewness per tensor against σ."""
    ds = _pick(_dataset(result), "step", step)
    return _trend(ds, "sigma", f"weights of step {int(ds['step'])}")


def over_training(result: object, *, sigma: float | None = None) -> Figure:
    """Stable-fit α and β (with intervals), block α and skewness against the training step."""
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
    layer = cell.sel(standardize="layer")
    text = (
        f"α = {float(cell['alpha']):.2f}\nβ = {float(cell['beta']):.2f}\n"
        f"block α = {float(layer['alpha_block']):.2f}"
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
