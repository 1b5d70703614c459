"""Figures for NIN probes and comparisons; each returns a fresh matplotlib ``Figure``.

Like :mod:`walknoise.walk.plots`: no pyplot, no global state, presentation only — every number
drawn was computed by the probe or the comparison. Save with
:func:`walknoise.walk.plots.save_figure`.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import seaborn as sns
import xarray as xr
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullFormatter, NullLocator, ScalarFormatter

from walknoise.errors import WalknoiseError
from walknoise.nin.phases import PHASES
from walknoise.nin.phases import majority as most_common
from walknoise.nin.results import ProbeResult, median_over_seeds

__all__ = ["compare_figure", "niw_trajectories", "phase_diagram", "time_scales"]

PHASE_COLOURS = {
    "decoupled": "#4C72B0",
    "decay": "#55A868",
    "denoising": "#8172B3",
    "catapult": "#DD8452",
    "divergent": "#C44E52",
    "unclassified": "#BBBBBB",
    "undetermined": "#777777",
}


def _probe(result: object) -> xr.Dataset:
    ds = getattr(result, "dataset", result)
    if not isinstance(ds, xr.Dataset) or "niw_norm" not in ds:
        raise WalknoiseError(
            f"cannot draw a {type(result).__name__}: pass a NIN ProbeResult or its dataset"
        )
    return ds


def _lr_label(lr: float) -> str:
    return f"lr {lr:g}"


def niw_trajectories(result: object, *, seed: int | None = None, nin: str | None = None) -> Figure:
    """NIW norm / its start vs step, one panel per learning rate, one line per σ_ε.

    ``nin`` picks one NIN (default: the total norm over all); ``seed`` one seed (default:
    the first). The line style tells the run's phase.
    """
    ds = _probe(result)
    seed = int(ds["seed"].values[0]) if seed is None else seed
    if seed not in ds["seed"].values:
        raise WalknoiseError(f"seed {seed} is not in the probe; choose from {list(ds.seed.values)}")
    one = ds.sel(seed=seed)
    norms = _norms(one, nin)
    lrs, sigmas = one["lr"].values, one["sigma_eps"].values
    fig = Figure(figsize=(3.6 * len(lrs) + 1.2, 3.8), layout="constrained")
    axes = fig.subplots(1, len(lrs), sharey=True, squeeze=False)[0]
    palette = sns.color_palette("viridis", len(sigmas))
    steps = one["step"].values
    ratio = norms / norms[..., :1]
    for j, ax in enumerate(axes):
        for i, colour in enumerate(palette):
            phase = PHASES[int(one["phase"].values[i, j])]
            ax.plot(steps, ratio[i, j], color=colour, lw=1.4, ls=_STYLE[phase])
            finite = np.flatnonzero(np.isfinite(ratio[i, j]))
            if phase == "divergent" and finite.size:  # its end, even when off the top
                last = finite[-1]
                ax.plot(steps[last], min(ratio[i, j, last], _TOP), "x", color=colour, ms=8)
        ax.set_yscale("log")
        low = np.nanmin(ratio[np.isfinite(ratio)]) if np.isfinite(ratio).any() else 0.1
        ax.set_ylim(max(low * 0.8, 1e-4), _TOP * 1.5)
        ax.set_title(_lr_label(float(lrs[j])), fontsize="medium")
        ax.set_xlabel("step")
        ax.axhline(1.0, color="0.6", lw=0.8, ls=":")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("NIW norm / initial")
    handles = [
        Line2D([], [], color=c, lw=2, label=f"σ_ε {s:g}")
        for s, c in zip(sigmas, palette, strict=True)
    ]
    handles += [Line2D([], [], color="0.3", ls=_STYLE[p], label=p) for p in PHASES]
    handles.append(Line2D([], [], color="0.3", marker="x", ls="", label="end of a divergent run"))
    fig.legend(handles=handles, loc="outside right center", frameon=False, fontsize="small")
    which = "total over NINs" if nin is None else nin
    fig.suptitle(f"NIW norm trajectories ({which}, seed {seed})")
    return fig


_TOP = 1e3  # divergent runs would squash every other line to the bottom
_STYLE: dict[str, Any] = {
    "decoupled": "-",
    "decay": "-.",
    "denoising": (0, (5, 1)),
    "catapult": "--",
    "divergent": ":",
    "unclassified": (0, (3, 1, 1, 1, 1, 1)),
    "undetermined": (0, (1, 3)),
}


def _norms(ds: xr.Dataset, nin: str | None) -> np.ndarray:
    """(sigma_eps, lr, step) norms of one NIN, or the total over NINs."""
    if nin is None:
        total = (ds["niw_norm"] ** 2).sum("nin", skipna=False) ** 0.5
        return np.asarray(total.values)
    names = [str(n) for n in ds["nin"].values]
    if nin not in names:
        raise WalknoiseError(f"no NIN at {nin!r}; the probe has NINs at {', '.join(names)}")
    return np.asarray(ds["niw_norm"].sel(nin=nin).values)


def phase_diagram(result: object) -> Figure:
    """σ_ε × learning rate on log axes, each cell coloured by its most common phase over seeds
    and labelled with η σ_ε² λ at the start → at its largest along the run (medians over
    seeds); the black lines are the linear picture's
    boundary η σ_ε² λ = 2, for λ₀ at initialisation (solid) and for λ of the trained run
    without NINs at each learning rate (dashed). λ is the largest over the NINs."""
    ds = _probe(result)
    codes = ds["phase"].values  # (sigma_eps, lr, seed)
    sigmas, lrs = ds["sigma_eps"].values.astype(float), ds["lr"].values.astype(float)
    majority = np.zeros(codes.shape[:2], dtype=int)
    agree = np.zeros(codes.shape[:2], dtype=int)
    for i in range(len(sigmas)):
        for j in range(len(lrs)):
            name, agree[i, j] = most_common(codes[i, j])
            majority[i, j] = PHASES.index(name)
    fig = Figure(figsize=(3.6 + 1.4 * len(lrs), 2.2 + 0.6 * len(sigmas)), layout="constrained")
    ax = fig.add_subplot()
    cmap = ListedColormap([PHASE_COLOURS[p] for p in PHASES])
    x_edges, y_edges = _edges(lrs), _edges(sigmas)
    ax.pcolormesh(x_edges, y_edges, majority, cmap=cmap, vmin=-0.5, vmax=len(PHASES) - 0.5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    stability = ProbeResult(ds).stability()
    # The boundary is SGD's (w ↦ (1 - η σ_ε² H) w); Adam rescales every step, so none is drawn.
    sgd = ds.attrs.get("optimizer", "sgd") == "sgd"
    predicted = median_over_seeds(stability["eta_sigma2_lambda_start"].values)
    largest = median_over_seeds(stability["eta_sigma2_lambda_max"].values)
    n_seeds = codes.shape[2]
    for i, sigma in enumerate(sigmas):
        for j, lr in enumerate(lrs):
            notes = [f"{agree[i, j]}/{n_seeds} seeds"] if agree[i, j] < n_seeds else []
            if sgd and math.isfinite(predicted[i, j]):
                notes.append(f"ησ²λ {predicted[i, j]:.2g} → {largest[i, j]:.2g}")
            text = "\n".join([PHASES[majority[i, j]], ", ".join(notes)]).strip()
            ax.text(lr, sigma, text, ha="center", va="center", fontsize="small", color="white")
    ax.set_xlim(x_edges[0], x_edges[-1])
    ax.set_ylim(y_edges[0], y_edges[-1])
    handles: list[Any] = _boundaries(ax, stability, lrs, x_edges) if sgd else []
    ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs])
    ax.set_yticks(sigmas, [f"{s:g}" for s in sigmas])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(f"learning rate η ({ds.attrs.get('optimizer', '')})")
    ax.set_ylabel("σ_ε")
    shown = sorted(set(majority.ravel().tolist()))
    handles += [Patch(color=PHASE_COLOURS[PHASES[c]], label=PHASES[c]) for c in shown]
    fig.legend(
        handles=handles, loc="outside lower center", ncols=2, frameon=False, fontsize="small"
    )
    nins = ", ".join(str(n) for n in ds["nin"].values)
    title = f"NIN phases ({ds.attrs.get('arch', '')}, NINs at {nins})"
    if sgd:
        title += "\ncells: η σ_ε² λ at the start → its largest along the run"
    ax.set_title(title, fontsize="medium")
    return fig


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges on a log axis: geometric midpoints, the ends half a step out (×√10 alone)."""
    logs = np.log10(centres)
    half = np.diff(logs) / 2 if logs.size > 1 else np.array([0.5])
    inner = logs[:-1] + half[: logs.size - 1]
    return np.asarray(10 ** np.r_[logs[0] - half[0], inner, logs[-1] + half[-1]])


def _boundaries(ax: Any, stability: xr.Dataset, lrs: np.ndarray, x_edges: np.ndarray) -> list[Any]:
    """Draw σ_ε = sqrt(2 / (η λ)) for λ₀ and for the trained references' λ; their handles."""
    handles: list[Any] = []
    start = stability["reference_lambda_start"].values
    lam0 = float(np.median(start[np.isfinite(start)])) if np.isfinite(start).any() else math.nan
    if lam0 > 0:
        eta = np.geomspace(x_edges[0], x_edges[-1], 100)
        (line,) = ax.plot(eta, np.sqrt(2 / (eta * lam0)), color="black", lw=1.8)
        line.set_label(f"η σ_ε² λ₀ = 2 (λ₀ = {lam0:.2g}, initialisation)")
        handles.append(line)
    end = median_over_seeds(stability["reference_lambda_end"].values)
    ok = np.isfinite(end) & (end > 0)
    if ok.any():
        sigma = np.sqrt(2 / (lrs[ok] * end[ok]))
        (line,) = ax.plot(lrs[ok], sigma, color="black", ls="--", marker="o", ms=4, lw=1.2)
        line.set_label("η σ_ε² λ = 2, λ of the trained run without NINs")
        handles.append(line)
    return handles


def time_scales(result: object) -> Figure:
    """Decay times of the NIW norm, the train loss and the test loss vs σ_ε, per lr.

    Medians over seeds (and NINs); a missing point means no decay within the run. The dashed
    horizontal lines are the runs without NINs.
    """
    ds = _probe(result)
    sigmas, lrs = ds["sigma_eps"].values, ds["lr"].values
    series = {
        "NIW norm": ds["tau_niw"].median(("nin", "seed")).values,
        "train loss": ds["tau_train_loss"].median("seed").values,
        "test loss": ds["tau_test_loss"].median("seed").values,
    }
    ref = ds["reference_tau_test_loss"].median("seed").values
    markers = {"NIW norm": "o", "train loss": "s", "test loss": "^"}
    fig = Figure(figsize=(7.5, 4.6), layout="constrained")
    ax = fig.add_subplot()
    palette = sns.color_palette("colorblind", len(lrs))
    for j, colour in enumerate(palette):
        for name, values in series.items():
            style = "-" if name == "NIW norm" else ":"
            ax.plot(sigmas, values[:, j], marker=markers[name], ls=style, color=colour)
        if math.isfinite(ref[j]):
            ax.axhline(ref[j], color=colour, ls="--", lw=0.8)
    ax.set_xscale("log")
    if any(np.isfinite(v).any() for v in series.values()) or np.isfinite(ref).any():
        ax.set_yscale("log")
    else:  # nothing decayed: say so instead of an empty log axis
        ax.text(0.5, 0.5, "no decay within the runs", transform=ax.transAxes, ha="center")
    ax.set_xlabel("σ_ε")
    ax.set_ylabel("decay time τ (optimiser steps)")
    ax.grid(True, which="major", alpha=0.3)
    handles: list[Any] = [
        Patch(color=c, label=_lr_label(float(lr))) for lr, c in zip(lrs, palette, strict=True)
    ]
    handles += [Line2D([], [], color="0.3", marker=m, ls="", label=n) for n, m in markers.items()]
    handles.append(Line2D([], [], color="0.3", ls="--", label="test loss, no NIN"))
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_title("Does the NIW decay track the loss? (fits from each series' peak)")
    return fig


def compare_figure(result: object) -> Figure:
    """Top: test accuracy against each perturbation's strength (0 = clean), a panel per
    perturbation, mean ± std over seeds per method; bottom: each layer's walk midpoint."""
    ds = getattr(result, "dataset", result)
    if not isinstance(ds, xr.Dataset) or "accuracy" not in ds or "condition" not in ds.dims:
        raise WalknoiseError(f"cannot draw a {type(result).__name__}: pass a CompareResult")
    methods = [str(m) for m in ds["method"].values]
    kinds = list(dict.fromkeys(str(p) for p in ds["perturbation"].values))
    palette = sns.color_palette("colorblind", len(methods))
    cols = min(3, len(kinds))
    rows = -(-len(kinds) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows + 3.6), layout="constrained")
    grid = fig.add_gridspec(rows + 1, cols, height_ratios=[1] * rows + [1.2])
    for n, kind in enumerate(kinds):
        ax = fig.add_subplot(grid[n // cols, n % cols])
        here = ds["perturbation"].values == kind
        strength = np.concatenate([[0.0], ds["strength"].values[here]])
        for i, colour in enumerate(palette):
            acc = np.column_stack(
                [ds["clean_accuracy"].values[i], ds["accuracy"].values[i][:, here]]
            )
            mean, std = _nan_mean_std(acc)
            ax.errorbar(strength, mean, std, color=colour, marker="o", ms=3, capsize=2)
        ax.set_title(kind, fontsize="medium")
        ax.set_xlabel(_unit(ds, kind))
        ax.grid(True, alpha=0.3)
    fig.axes[0].set_ylabel("test accuracy")
    mid = fig.add_subplot(grid[rows, :])
    layers = [str(v) for v in ds["layer"].values]
    for i, (method, colour) in enumerate(zip(methods, palette, strict=True)):
        mids = np.where(ds["midpoint_status"].values[i] == 1, ds["midpoint"].values[i], np.nan)
        offset = (i - (len(methods) - 1) / 2) * 0.08
        mean, std = _nan_mean_std(mids)
        x = np.arange(len(layers)) + offset
        mid.errorbar(x, mean, std, color=colour, marker="o", ls="-", lw=1, label=method)
    mid.set_yscale("log")
    mid.yaxis.set_major_formatter(ScalarFormatter())
    mid.yaxis.set_minor_formatter(NullFormatter())
    mid.set_xticks(range(len(layers)), layers, rotation=30, ha="right")
    mid.set_ylabel("walk midpoint σ")
    mid.grid(True, which="major", alpha=0.3)
    mid.set_title("per-layer walk midpoint (additive; higher = more robust)", fontsize="medium")
    mid.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize="small")
    fig.suptitle(
        f"NINR vs other regularisers (mean ± std over {ds.sizes['seed']} seeds): "
        f"{ds.attrs.get('arch', '')} on {ds.attrs.get('data')}, {ds.attrs.get('optimizer')}"
    )
    return fig


def _unit(ds: xr.Dataset, kind: str) -> str:
    units: dict[str, str] = json.loads(ds.attrs.get("perturbation_units", "{}"))
    return units.get(kind, "strength")


def _nan_mean_std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column (layer) mean and std over the finite rows (seeds); NaN where none."""
    finite = np.isfinite(values)
    count = finite.sum(axis=0)
    safe = np.where(finite, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = safe.sum(axis=0) / count
        var = (np.where(finite, values - mean, 0.0) ** 2).sum(axis=0) / count
    return np.where(count > 0, mean, np.nan), np.where(count > 0, np.sqrt(var), np.nan)
