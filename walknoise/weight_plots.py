"""Figures of the train phase: weight growth and kurtosis heatmaps, weight histograms.

Presentation only, like ``walknoise.plots``: each function takes a ``Result`` (or its
dataset) holding a train phase and returns a new ``Figure``.
"""

from __future__ import annotations

import numpy as np
import seaborn as sns
import xarray as xr
from matplotlib.figure import Figure

from walknoise.errors import WalknoiseError

__all__ = ["histogram", "weights"]


def _dataset(result: object) -> xr.Dataset:
    ds = getattr(result, "dataset", result)
    if not isinstance(ds, xr.Dataset) or "weight_kurtosis" not in ds:
        raise WalknoiseError(
            "this results file has no train phase; run `walknoise scan --phase train` first"
        )
    return ds


def _sigma_labels(ds: xr.Dataset) -> list[str]:
    return [f"{s:.2g}" for s in ds["sigma"].values]


def weights(result: object) -> Figure:
    """Layer × σ heatmaps: L2 growth against the clean model (geometric mean over the
    parametrised layers and repeats) and the weights' kurtosis (mean; binary weights give 1)."""
    ds = _dataset(result)
    over = ("repeat", "param_layer")
    growth = np.exp(np.log(ds["growth_l2"]).mean(over))  # type: ignore[arg-type]
    kurt = ds["weight_kurtosis"].mean(over)
    clean_kurt = float(ds["clean_weight_kurtosis"].mean())
    fig = Figure(figsize=(5 + 0.35 * ds.sizes["sigma"], 1.2 + 0.9 * ds.sizes["layer"]))
    axes = fig.subplots(1, 2)
    panels: list[tuple[xr.DataArray, str, str, dict[str, float]]] = [
        (growth, "L2 growth vs clean", "vlag", {"center": 1.0}),
        (kurt, f"kurtosis (clean {clean_kurt:.2f}, binary 1)", "mako", {}),
    ]
    for ax, (values, title, cmap, extra) in zip(axes, panels, strict=True):
        sns.heatmap(
            values.values,
            ax=ax,
            cmap=cmap,
            annot=True,
            fmt=".2f",
            xticklabels=_sigma_labels(ds),
            yticklabels=list(ds["layer"].values),
            cbar=False,
            **extra,
        )
        ax.set_title(title)
        ax.set_xlabel(f"noise σ ({ds.attrs.get('noise', '')})")
    axes[1].set_yticklabels([])
    fig.tight_layout()
    return fig


def histogram(result: object, layer: str, sigma: float, repeat: int = 0) -> Figure:
    """Weight histograms of one train-phase cell against the clean model of the same seed,
    one panel per parametrised layer."""
    ds = _dataset(result)
    if layer not in list(ds["layer"].values):
        raise WalknoiseError(
            f"no layer {layer!r} in the file; choose one of {', '.join(ds['layer'].values)}"
        )
    cell = ds.sel(layer=layer, repeat=repeat).sel(sigma=sigma, method="nearest")
    names = list(ds["param_layer"].values)
    fig = Figure(figsize=(3.2 * len(names), 2.8))
    axes = np.atleast_1d(fig.subplots(1, len(names)))
    for ax, name in zip(axes, names, strict=True):
        for prefix, label, color in (("clean_", "clean", "0.5"), ("", "noise-trained", "C3")):
            src = ds.sel(repeat=repeat, param_layer=name) if prefix else cell.sel(param_layer=name)
            density = src[prefix + "weight_hist"].values
            edge = float(src[prefix + "weight_max_abs"])
            centers = np.linspace(-edge, edge, len(density) + 1)
            ax.stairs(density, centers, label=label, color=color, fill=not prefix, alpha=0.6)
        ax.set_title(name)
        ax.set_xlabel("weight")
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize="small")
    fig.suptitle(f"{layer}, σ = {float(cell['sigma']):.3g}, repeat {repeat}")
    fig.tight_layout()
    return fig
