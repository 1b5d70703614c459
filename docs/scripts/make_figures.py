"""Draw the figures of the documentation pages index.md and concepts.md.

    python docs/scripts/make_figures.py          # about 15 s on 2 CPU cores

Every figure is written to docs/figures/docs_*.png from a small, seeded run on the bundled
MNIST split: an MLP trained for 5 epochs, walked with additive and multiplicative noise, and
a tiny train-phase scan. The figures of gni.md and nin.md come from benchmarks/gni_study.py
and benchmarks/nin_study.py.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

import walknoise
from walknoise.data import resolve_data
from walknoise.models import build_model
from walknoise.noise.kinds import Additive, Combined, Multiplicative
from walknoise.training import TrainConfig, seeded_init, train_model
from walknoise.walk import plots, weight_plots
from walknoise.walk.plots import save_figure
from walknoise.walk.weights import bimodality, kurtosis, mode_fraction

FIGURES = Path(__file__).resolve().parent.parent / "figures"
SIGMAS = "log:1e-2:1e2:17"


def trained_mlp(epochs: int) -> nn.Module:
    """The zoo MLP trained on the bundled 8,000-image split (seed 0)."""
    train = resolve_data("mnist:train")
    with seeded_init(0):
        model = build_model("mlp")
    train_model(model, train.x, train.y, TrainConfig(epochs=epochs, seed=0), progress=False)
    return model.eval()


def noise_kinds(out: Path) -> None:
    """One ReLU activation vector under the three noise kinds at the same σ and ε."""
    gen = torch.Generator().manual_seed(0)
    y = torch.relu(torch.randn(40, generator=gen) * 1.5)
    eps = torch.randn(2, 40, generator=gen)
    sigma = torch.tensor(0.5)
    kinds = [
        ("additive  y + σε", Additive()),
        ("multiplicative  y(1 + σε)", Multiplicative()),
        ("combined (ratio 0.5)", Combined(0.5)),
    ]
    fig = Figure(figsize=(9.0, 3.0), layout="constrained")
    axes = fig.subplots(1, 3, sharey=True)
    x = np.arange(len(y))
    for ax, (title, kind) in zip(axes, kinds, strict=True):
        noisy = kind.apply(y, sigma, eps[: kind.draws])
        ax.bar(x, y.numpy(), color="0.75", label="clean y")
        ax.plot(x, noisy.numpy(), ".", color="C3", label="noisy")
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("unit")
    axes[0].set_ylabel("activation")
    axes[0].legend(fontsize="small", frameon=False)
    fig.suptitle("σ = 0.5, the same ε: multiplicative noise leaves zeros at zero")
    save_figure(fig, out)


def midpoint_construction(result: walknoise.Result, layer: str, out: Path) -> None:
    """How the midpoint of one layer is read off its repeat-mean accuracy curve."""
    ds = result.dataset
    sigma = result.sigmas
    acc = ds["accuracy"].sel(layer=layer).values
    mean = acc.mean(axis=1)
    clean, chance = result.clean_accuracy, result.chance_accuracy
    threshold = chance + (clean - chance) / 2
    mid = float(ds["midpoint"].sel(layer=layer))
    low, high = (float(ds[v].sel(layer=layer)) for v in ("midpoint_low", "midpoint_high"))
    i = int(np.flatnonzero(mean <= threshold)[0])

    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for r in range(acc.shape[1]):
        ax.plot(sigma, acc[:, r], color="C0", alpha=0.35, lw=1, label="repeats" if r == 0 else "")
    ax.plot(sigma, mean, "o-", color="C0", ms=4, label="repeat mean")
    ax.axhline(clean, color="0.2", ls="--", lw=1, label=f"clean {clean:.3f}")
    ax.axhline(chance, color="0.6", ls="--", lw=1, label=f"chance {chance:.3f}")
    ax.axhline(threshold, color="C3", ls=":", lw=1.2, label=f"halfway {threshold:.3f}")
    ax.plot(sigma[i - 1 : i + 1], mean[i - 1 : i + 1], "s", color="C1", ms=8, mfc="none")
    ax.axvspan(low, high, color="C3", alpha=0.15, label="bootstrap 95% interval")
    ax.plot([mid], [threshold], "o", color="C3", ms=9, mec="black", label=f"midpoint σ = {mid:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("noise σ")
    ax.set_ylabel("accuracy")
    ax.set_title(
        f"{layer}: the first grid point at or below halfway and the one before it (squares);\n"
        "the midpoint is interpolated linearly in log σ between them",
        fontsize="medium",
    )
    ax.legend(fontsize="small", frameon=False, loc="lower left")
    save_figure(fig, out)


def weight_shapes(out: Path) -> None:
    """The binarization statistics on four weight distributions of known shape."""
    gen = torch.Generator().manual_seed(0)
    n = 20_000
    two_point = torch.sign(torch.randn(n, generator=gen)) * 0.1
    cases = [
        ("Gaussian", torch.randn(n, generator=gen) * 0.1),
        ("uniform", (torch.rand(n, generator=gen) * 2 - 1) * 0.17),
        ("near-binary ±0.1", two_point + torch.randn(n, generator=gen) * 0.01),
        ("binary ±0.1", two_point),
    ]
    fig = Figure(figsize=(11.0, 2.9), layout="constrained")
    axes = fig.subplots(1, 4, sharex=True)
    for ax, (name, w) in zip(axes, cases, strict=True):
        ax.hist(w.numpy(), bins=60, range=(-0.35, 0.35), color="C0")
        ax.set_title(name, fontsize="medium")
        ax.set_yticks([])
        text = (
            f"kurtosis {kurtosis(w):.2f}\nbimodality {bimodality(w):.2f}\n"
            f"mode fraction {mode_fraction(w):.2f}"
        )
        ax.text(0.02, 0.97, text, transform=ax.transAxes, va="top", fontsize="small")
        ax.set_xlabel("weight")
    save_figure(fig, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=FIGURES, help="where the PNGs go")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # small models on a shared machine: one thread is fastest
    start = time.perf_counter()

    noise_kinds(args.out / "docs_noise_kinds.png")
    weight_shapes(args.out / "docs_weight_stats.png")

    model = trained_mlp(epochs=5)
    additive = walknoise.scan(model, "mnist", sigmas=SIGMAS, repeats=3, progress=False)
    save_figure(plots.heatmap(additive), args.out / "docs_heatmap.png")
    curves = plots.curves(additive, layers=["<input>", "fc1", "act2", "fc4", "<global>"])
    save_figure(curves, args.out / "docs_curves.png")
    save_figure(plots.midpoints(additive), args.out / "docs_midpoints.png")
    midpoint_construction(additive, "fc2", args.out / "docs_midpoint_construction.png")
    multiplicative = walknoise.scan(
        model, "mnist", noise="multiplicative", sigmas=SIGMAS, repeats=3, progress=False
    )
    save_figure(plots.heatmap(multiplicative), args.out / "docs_heatmap_multiplicative.png")

    with tempfile.TemporaryDirectory() as tmp:  # the train phase: a fresh model per cell
        trained = walknoise.scan(
            model,
            "mnist",
            noise="additive",
            sigmas="0.1,1,10",
            layers=["fc1", "fc3"],
            repeats=1,
            phase="train",
            train={"epochs": 2},
            include_global=False,
            progress=False,
            output=Path(tmp) / "trained.h5",
        )
        save_figure(weight_plots.weights(trained), args.out / "docs_train_weights.png")
    print(f"wrote docs_*.png to {args.out} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
