"""Figures of the reproduction, drawn from its JSON report only (so ``--replot`` and the
docs show exactly the numbers of the file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

ARCHS = ("lenet5", "mlp")
TITLES = {"lenet5": "LeNet-5", "mlp": "MLP (3×64)"}


def _err(stat: dict[str, Any]) -> tuple[float, float, float]:
    """(mean, lower error, upper error) of an interval, NaN where missing."""
    m, lo, hi = (np.nan if stat.get(k) is None else stat[k] for k in ("mean", "low", "high"))
    return m, m - lo, hi - m


def midpoints(report: dict[str, Any], path: Path) -> None:
    """(a) and (b): eval-phase midpoint per layer with its 95% interval over seeds, and the
    midpoint of models trained under the noise where they were trained."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, arch in zip(axes, ARCHS, strict=True):
        if report[arch]["a"] is None:
            ax.set_visible(False)
            continue
        a = report[arch]["a"]["layers"]
        names = list(a)
        x = np.arange(len(names))
        for shift, key, label, color in (
            (-0.15, "a", "eval only, additive", "C0"),
            (0.15, "a_multiplicative", "eval only, multiplicative", "C2"),
        ):
            if report[arch][key] is None:
                continue
            cells = [report[arch][key]["layers"].get(n, {}) for n in names]
            vals = [_err(c if c.get("not_finite", 1) == 0 else {}) for c in cells]
            m, lo, hi = (np.array(v) for v in zip(*vals, strict=True))
            ax.errorbar(x + shift, m, yerr=[lo, hi], fmt="o", color=color, label=label, ms=4)
        b = (report[arch]["b"] or {"layers": {}})["layers"]
        # a mean over the seeds that reached it would understate a midpoint beyond the grid
        done = [n for n in b if b[n]["trained"]["not_finite"] == 0]
        tx = [names.index(n) for n in done]
        vals = [_err(b[n]["trained"]) for n in done]
        if vals:
            m, lo, hi = (np.array(v) for v in zip(*vals, strict=True))
            ax.errorbar(tx, m, yerr=[lo, hi], fmt="s", color="C3", label="trained, additive")
        ax.set_xticks(x, names, rotation=45, ha="right")
        ax.set_yscale("log")
        ax.set_ylabel("midpoint σ (95% interval over seeds)")
        ax.set_title(TITLES[arch])
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    _save(fig, path)


def growth(report: dict[str, Any], path: Path) -> None:
    """(c): own-layer L2 growth against σ, free and with weights clamped."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, arch in zip(axes, ARCHS, strict=True):
        c = report[arch]["c"]
        if c["free"] is None:
            ax.set_visible(False)
            continue
        for i, (layer, cell) in enumerate(c["free"]["layers"].items()):
            _line(
                ax, c["free"]["sigmas"], cell["growth_l2"], f"C{i}", "-", f"{layer} ({cell['own']})"
            )
            for key, style in (("clamp1", "--"), ("clampmax", ":")):
                other = c.get(key, {"layers": {}})["layers"].get(layer)
                if other:
                    label = f"{layer}, clamp {c[key]['clamp']:.2g}"
                    _line(ax, c[key]["sigmas"], other["growth_l2"], f"C{i}", style, label)
        ax.axhline(1, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("training σ (additive)")
        ax.set_ylabel("L2 norm: noise-trained / clean (own layer)")
        ax.set_title(TITLES[arch])
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, which="both")
    _save(fig, path)


def selfbin(report: dict[str, Any], path: Path) -> None:
    """(d): at each multiplicative training σ, the trained model under the noise, the same
    with an on/off code at the point, with its own layer binarized, the clean model under the
    noise, the trained model without noise, and the fraction of exact zeros at the point."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    series = (
        ("trained_accuracy", "trained, under the noise", "C3", "-"),
        ("onoff_accuracy", "on/off code at the point", "C1", "-"),
        ("own_layer_binarized_accuracy", "own layer binarized", "C4", "-"),
        ("clean_noisy_accuracy", "clean model, under the noise", "C0", "-"),
        ("no_noise_accuracy", "trained, without noise", "C2", "-"),
        ("activation_zero_fraction", "exact zeros at the point", "k", "--"),
    )
    for ax, arch in zip(axes, ARCHS, strict=True):
        d = report[arch]["d"]
        if d is None:
            ax.set_visible(False)
            continue
        layer, cell = next(iter(d["layers"].items()))
        for key, label, color, style in series:
            if key in cell:
                _line(ax, d["sigmas"], cell[key], color, style, label)
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("training σ (multiplicative)")
        ax.set_title(f"{TITLES[arch]}, noise at {layer}")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    _save(fig, path)


def cross(report: dict[str, Any], path: Path) -> None:
    """(d): accuracy of each model trained at σ (rows) tested at σ' (columns, 0 first)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, arch in zip(axes, ARCHS, strict=True):
        d = report[arch]["d"]
        cell = {} if d is None else next(iter(d["layers"].values()))
        layer = "" if d is None else next(iter(d["layers"]))
        if "cross_mean" not in cell:
            ax.set_visible(False)
            continue
        grid = np.array(cell["cross_mean"], dtype=float)
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w")
        ax.set_xticks(range(len(d["test_sigmas"])), [f"{s:g}" for s in d["test_sigmas"]])
        ax.set_yticks(range(len(d["sigmas"])), [f"{s:g}" for s in d["sigmas"]])
        ax.set_xlabel("test σ")
        ax.set_ylabel("training σ")
        ax.set_title(f"{TITLES[arch]}, multiplicative at {layer} (mean of seeds)")
        fig.colorbar(im, ax=ax, label="accuracy")
    _save(fig, path)


def _line(
    ax: Any, xs: list[float], cells: list[dict[str, Any]], color: str, style: str, label: str
) -> None:
    m, lo, hi = (np.array(v, dtype=float) for v in zip(*(_err(c) for c in cells), strict=True))
    ax.errorbar(
        xs, m, yerr=[lo, hi], color=color, ls=style, marker="o", ms=3, label=label, capsize=2
    )


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


FIGURES = {"midpoints": midpoints, "growth": growth, "selfbin": selfbin, "cross": cross}


def draw_all(report: dict[str, Any], out: Path, prefix: str) -> list[Path]:
    paths = []
    for name, draw in FIGURES.items():
        path = out / f"reproduction_{prefix}_{name}.png"
        draw(report, path)
        paths.append(path)
    return paths
