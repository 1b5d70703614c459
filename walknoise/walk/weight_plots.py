"""Figures of the train phase: weight growth and kurtosis heatmaps, weight histograms.

Presentation only, like ``walknoise.walk.plots``: each function takes a ``Result`` (or its
dataset) holding a train phase and returns a new ``Figure``.
"""

from __future__ import annotations

import json

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
            "this results file has no train phase; scan with phase='train' (or 'both') first"
        )
    return ds


def _sigma_labels(ds: xr.Dataset) -> list[str]:
    return [f"{s:.2g}" for s in ds["sigma"].values]


def weights(result: object) -> Figure:
    """Layer × σ heatmaps of the noise-trained weights, repeat means: L2 growth against the
    clean model (geometric mean) and kurtosis (binary weights give 1).

    Each row shows the noisy point's own parametrised layer (the last one at or before it,
    named in the row label), whose weights scale what the noise is added to; rows without
    one (``<input>``, ``<global>``) and files from before this was recorded show the mean
    over all parametrised layers (``all``)."""
    ds = _dataset(result)
    owner = json.loads(str(ds.attrs.get("param_layer_of", "{}")))
    layers = [str(v) for v in ds["layer"].values]
    log_growth = ds["growth_l2"].copy(data=np.log(ds["growth_l2"].values))
    growth = np.exp(np.stack([_own(log_growth, owner.get(n), n) for n in layers]))
    kurt = np.stack([_own(ds["weight_kurtosis"], owner.get(n), n) for n in layers])
    clean = [float(_own_clean(ds, owner.get(n))) for n in layers]
    labels = [f"{n} ({owner.get(n, 'all')})" for n in layers]
    # two panels of one annotated cell per σ: about 0.55 in per cell keeps "1.00" legible
    fig = Figure(figsize=(3.5 + 1.1 * ds.sizes["sigma"], 1.4 + 0.5 * ds.sizes["layer"]))
    axes = fig.subplots(1, 2)
    panels: list[tuple[np.ndarray, str, str, dict[str, float]]] = [
        (growth, "L2 growth vs clean", "vlag", {"center": 1.0}),
        (kurt, "kurtosis (Gaussian 3, binary 1)", "mako", {}),
    ]
    for ax, (values, title, cmap, extra) in zip(axes, panels, strict=True):
        sns.heatmap(
            values,
            ax=ax,
            cmap=cmap,
            annot=True,
            fmt=".2f",
            xticklabels=_sigma_labels(ds),
            yticklabels=labels,
            cbar=False,
            **extra,
        )
        ax.set_title(title)
        ax.set_xlabel(f"noise σ ({ds.attrs.get('noise', '')})")
    axes[1].yaxis.tick_right()  # each row's clean-model kurtosis, the reference for the row
    axes[1].set_yticklabels([f"clean {k:.2f}" for k in clean], rotation=0)
    fig.tight_layout()
    return fig


def _own(values: xr.DataArray, param: str | None, layer: str) -> np.ndarray:
    """Repeat mean of one row (per σ): its own parametrised layer, or the mean over all."""
    row = values.sel(layer=layer)
    if param is None:
        return np.asarray(row.mean(("repeat", "param_layer")).values)
    return np.asarray(row.sel(param_layer=param).mean("repeat").values)


def _own_clean(ds: xr.Dataset, param: str | None) -> float:
    """Clean-model kurtosis of a row's own layer (mean over seeds), or of all layers."""
    values = ds["clean_weight_kurtosis"]
    return float((values if param is None else values.sel(param_layer=param)).mean())


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
