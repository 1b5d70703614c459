"""The measurements behind docs/gni.md: implicit gradient noise of GNI on MNIST and a toy.

0. Calibration: what the tail-index estimator reads on known laws under each scaling.
1. An MLP trained on bundled MNIST: α, skewness, kurtosis per weight tensor over a σ grid,
   additive and multiplicative noise (walknoise.gni.measure.gradient_noise).
2. The same MLP trained with plain (implicit) multiplicative GNI, the noise tracked over
   training (GNITracker).
3. Held-out loss after training with no noise, plain GNI and the noise-averaged loss
   (marginal, K draws), on MNIST and on the paper's sum-of-sines regression.

    python benchmarks/gni_study.py            # the numbers in docs/gni.md (about an hour)
    python benchmarks/gni_study.py --quick    # a smoke run of every step (minutes)

Figures go to docs/figures/gni_*.png and every number to docs/gni_study.json. torch runs on
one thread: the networks are small, and on a shared 2-core machine a second intra-op thread
mostly waits at barriers (we measured 18x slower per step).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from walknoise.data import resolve_data
from walknoise.gni import plots as gni_plots
from walknoise.gni.measure import GNISpec, gradient_noise, noisy_loss
from walknoise.gni.store import concat_steps
from walknoise.gni.tails import robust_columns, standardize, standardize_columns, tail_index
from walknoise.gni.toy import fit, mse, sinusoids, split, toy_mlp
from walknoise.gni.tracking import GNITracker, NoisyLoss
from walknoise.models import build_model
from walknoise.training import TrainConfig, seeded_init, train_model
from walknoise.walk.plots import save_figure

FIGURES = Path(__file__).resolve().parent.parent / "docs" / "figures"
NUMBERS = FIGURES.parent / "gni_study.json"


def mnist_mlp(config: TrainConfig, **hooks: Any) -> tuple[nn.Module, dict[str, float]]:
    train, test = resolve_data("mnist:train"), resolve_data("mnist:test")
    with seeded_init(config.seed):
        model = build_model("mlp")
    metrics = train_model(
        model, train.x, train.y, config, x_test=test.x, y_test=test.y, progress=False, **hooks
    )
    keys = ("test_loss", "test_accuracy", "train_loss", "seconds")
    return model, {k: float(metrics[k]) for k in keys}


def stats_rows(ds: Any) -> list[dict[str, Any]]:
    rows = []
    for name in ds["param_layer"].values:
        for sigma in ds["sigma"].values:
            for step in ds["step"].values:
                cell = ds.sel(param_layer=name, sigma=sigma, step=step)
                row: dict[str, Any] = {
                    "tensor": str(name),
                    "sigma": float(sigma),
                    "step": int(step),
                }
                for mode, suffix in (
                    ("layer", ""),
                    ("coordinate", "_coord"),
                    ("robust", "_robust"),
                ):
                    for var in ("alpha", "skewness", "kurtosis"):
                        row[var + suffix] = round(float(cell[var].sel(standardize=mode)), 3)
                rows.append(row)
    return rows


def part_sigma(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Clean-trained MLP, gradient noise over σ for both noise kinds."""
    model, metrics = mnist_mlp(TrainConfig(epochs=args.epochs, seed=0))
    out["clean_mlp"] = metrics
    for noise in ("additive", "multiplicative"):
        start = time.perf_counter()
        res = gradient_noise(
            model, "mnist", noise=noise, sigma=args.sigmas, draws=args.draws, batches=args.batches
        )
        out[f"sigma_{noise}"] = {
            "seconds": time.perf_counter() - start,
            "rows": stats_rows(res.dataset),
        }
        save_figure(gni_plots.over_sigma(res), args.figures / f"gni_mlp_sigma_{noise}.png")
        if noise == "multiplicative":
            fig = gni_plots.histograms(res, sigma=0.1)
            save_figure(fig, args.figures / "gni_mlp_histogram.png")


def part_training(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Plain multiplicative GNI training of the MLP, the noise tracked along the way."""
    config = TrainConfig(epochs=args.epochs, seed=0)
    train = resolve_data("mnist:train")
    spec = GNISpec(sigmas=(0.1,), noise="multiplicative", draws=args.draws, batches=4)
    steps = -(-len(train) // config.batch_size) * config.epochs
    scratch = Path(args.scratch) / "gni_training.h5"
    tracker = GNITracker(spec, steps // 10, scratch, train.x, train.y, last_step=steps)
    loss = NoisyLoss("multiplicative", 0.1, 1, seed=0)
    _, metrics = mnist_mlp(config, loss_fn=loss, on_step=tracker)
    ds = concat_steps(tracker.parts)
    out["training"] = {"metrics": metrics, "rows": stats_rows(ds)}
    save_figure(gni_plots.over_training(ds), args.figures / "gni_mlp_training.png")


def part_marginal_mnist(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Held-out loss: no noise, plain GNI (K = 1) and the noise-averaged loss (K > 1)."""
    rows = []
    for noise, sigma in args.mnist_settings:
        for seed in range(args.seeds):
            for draws in (0, 1, *args.draws_marginal):
                config = TrainConfig(epochs=args.epochs, seed=seed)
                hooks = {} if draws == 0 else {"loss_fn": NoisyLoss(noise, sigma, draws, seed)}
                _, metrics = mnist_mlp(config, **hooks)
                rows.append({"noise": noise, "sigma": sigma, "seed": seed, "K": draws, **metrics})
                print(rows[-1], flush=True)
    out["marginal_mnist"] = rows


def toy_loss(sigma: float, draws: int, seed: int) -> Any:
    gen = torch.Generator().manual_seed(seed)

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Any:
        points = [n for n, m in model.named_modules() if isinstance(m, nn.ReLU)]
        if draws == 0:
            out = model(x)
            return ((out - y) ** 2).mean(), out
        return noisy_loss(model, x, y, points, "additive", sigma, draws, gen, loss="mse")

    return loss


def part_toy(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """The sum of sines: held-out MSE by K, and the implicit noise before and after."""
    rows, stats = [], {}
    for seed in range(args.seeds):
        x, y = sinusoids(200, seed=seed)
        xtr, ytr, xte, yte = split(x, y, 0.25, seed=seed)
        for draws in (0, 1, *args.draws_marginal):
            model = toy_mlp(args.toy_width, args.toy_depth, seed=seed)
            if seed == 0 and draws == 1:
                stats["init"] = toy_stats(model, xtr, ytr, args)
            fit(model, xtr, ytr, toy_loss(args.toy_sigma, draws, seed), steps=args.toy_steps)
            if seed == 0 and draws == 1:
                stats["trained"] = toy_stats(model, xtr, ytr, args)
            errors = {"train_mse": mse(model, xtr, ytr), "test_mse": mse(model, xte, yte)}
            rows.append({"seed": seed, "K": draws, **errors})
            print(rows[-1], flush=True)
    out["toy"] = {"rows": rows, "stats": stats}


def toy_stats(model: nn.Module, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace) -> Any:
    points = [n for n, m in model.named_modules() if isinstance(m, nn.ReLU)]
    res = gradient_noise(
        model, (x, y), sigma=args.toy_sigma, layers=points, loss="mse", draws=args.draws,
        batches=1, batch_size=len(x),
    )  # fmt: skip
    return stats_rows(res.dataset)


def part_calibration(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """What α̂ reads on known laws, pooled and scaled as the three standardisations do."""
    from scipy import stats

    rng = np.random.default_rng(0)
    cal: dict[str, float] = {}
    for n in (100_000, 1_000_000):
        cal[f"laplace_n{n}"] = tail_index(rng.laplace(size=n), rng=rng)
        cal[f"student_t3_n{n}"] = tail_index(rng.standard_t(3, size=n), rng=rng)
    shape = (10, 100, 1000)  # batches × draws × coordinates, as a measurement has
    scales = np.exp(rng.normal(0.0, 1.0, size=(10, 1, 1000)))
    for alpha in (1.5, 1.8, 2.0):
        x = stats.levy_stable.rvs(alpha, 0.0, size=shape, random_state=rng)
        x = (x - x.mean(axis=1, keepdims=True)) * scales
        cal[f"stable{alpha}_layer"] = tail_index(standardize(x).ravel(), rng=rng)
        cal[f"stable{alpha}_coordinate"] = tail_index(standardize_columns(x, 1).ravel(), rng=rng)
        cal[f"stable{alpha}_robust"] = tail_index(robust_columns(x, 1).ravel(), rng=rng)
    out["calibration"] = {k: round(v, 3) for k, v in cal.items()}
    print(out["calibration"], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check the script runs")
    parser.add_argument("--parts", default="calibration,sigma,training,marginal,toy")
    parser.add_argument("--scratch", default="/tmp")
    args = parser.parse_args()
    torch.set_num_threads(1)
    quick = args.quick
    args.epochs = 1 if quick else 12
    args.draws = 10 if quick else 100
    args.batches = 2 if quick else 10
    args.sigmas = [0.1, 0.3] if quick else [0.03, 0.1, 0.3, 1.0]
    args.seeds = 1 if quick else 3
    args.draws_marginal = (4,) if quick else (4, 16)
    args.mnist_settings = [("multiplicative", 0.5), ("additive", 0.5)]
    args.toy_width, args.toy_depth = (32, 2) if quick else (256, 6)  # the paper's MLP
    args.toy_steps = 50 if quick else 3000
    args.toy_sigma = 0.1
    args.figures = Path(args.scratch) if quick else FIGURES  # a smoke run leaves docs alone
    args.figures.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = json.loads(NUMBERS.read_text()) if NUMBERS.exists() and not quick else {}
    parts = {"sigma": part_sigma, "training": part_training, "marginal": part_marginal_mnist}
    parts["toy"] = part_toy
    parts["calibration"] = part_calibration
    for name in args.parts.split(","):
        start = time.perf_counter()
        parts[name](args, out)
        out.setdefault("seconds", {})[name] = round(time.perf_counter() - start, 1)
        print(f"{name}: {out['seconds'][name]} s", flush=True)
        if not quick:
            NUMBERS.write_text(json.dumps(out, indent=1, default=float))
    print(json.dumps(out["seconds"]))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
