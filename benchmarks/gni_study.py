"""The measurements behind docs/gni.md: implicit gradient noise of GNI on MNIST and the toy.

The paper's statistics (Camuto et al. 2021) are α and β of a stable law fitted to each weight
tensor's pooled noise (walknoise.gni.stable), reported here with 95 % percentile-bootstrap
intervals over the measured batches; the block estimator (alpha_block) stays beside them.
Training is plain SGD, the paper's optimizer, unless a part says otherwise.

0. calibration: the stable fit and the block estimator on known laws, i.i.d. and pooled over
   coordinates of different scales (as a tensor's noise is pooled).
1. sigma: an SGD-trained MLP on bundled MNIST, α, β over a σ grid, additive and
   multiplicative; the multiplicative σ = 0.1 cell again with two other measurement seeds,
   and on the same MLP trained with Adam.
2. training: the MLP trained with plain multiplicative GNI, the noise tracked over training.
3. marginal: held-out loss after training with no noise, plain GNI (K = 1) and the
   noise-averaged loss (K > 1), three seeds, paired by seed.
4. toy_tails: the paper's tail measurement on the 100-column sum of sines (their
   SkewKurtosisGradients notebook): at initialisation and after 100 full-batch SGD steps.
6. ml_check: scipy's likelihood fit against the quantile fit on 400 values of real noise.
5. toy_probe: the paper's marginal toy (ImplicitEffectMarginal: width 256, depth 6, SGD at
   lr 3e-4, 60,000 full-batch steps): step times per K and the first 1,000 steps of K = 1,
   which show why the 60,000-step comparison is not run here.

    nice -n 5 python benchmarks/gni_study.py          # docs/gni_study.json (about 23 min)
    python benchmarks/gni_study.py --quick            # a smoke run of every part (1-2 min)
    python benchmarks/gni_study.py --report           # the tables of docs/gni.md, from the JSON

Figures go to docs/figures/gni_*.png and every number to docs/gni_study.json. torch runs on
one thread: the networks are small, and on a shared 2-core machine a second intra-op thread
mostly waits at barriers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats as sps
from torch import nn

from walknoise.data import resolve_data
from walknoise.gni import plots as gni_plots
from walknoise.gni.measure import (
    GNISpec,
    draw_gradients,
    gradient_noise,
    injection_points,
    noisy_loss,
    parameter_layers,
)
from walknoise.gni.stable import fit_stable, fit_stable_groups
from walknoise.gni.store import concat_steps
from walknoise.gni.tails import robust_columns, standardize, tail_index
from walknoise.gni.toy import fit, sinusoid_columns, sinusoids, toy_mlp
from walknoise.gni.tracking import GNITracker, NoisyLoss
from walknoise.models import build_model
from walknoise.noise.inject import inject
from walknoise.noise.kinds import make_noise
from walknoise.noise.points import INPUT
from walknoise.training import TrainConfig, seeded_init, train_model
from walknoise.types import NoiseKind
from walknoise.walk.plots import save_figure

FIGURES = Path(__file__).resolve().parent.parent / "docs" / "figures"
NUMBERS = FIGURES.parent / "gni_study.json"
INPUT_TO_OUTPUT = [INPUT, "act1", "act2", "act3", "act4", "fc5"]
"""Where SkewKurtosisGradients.ipynb injects: the input, every ReLU and the output."""
SGD_LR = 0.05
"""Constant SGD learning rate of the MNIST MLP (batch 64): the paper's 3e-4 needs tens of
thousands of steps, far beyond this study's budget."""


def sgd(epochs: int, seed: int = 0) -> TrainConfig:
    return TrainConfig(epochs=epochs, lr=SGD_LR, schedule="constant", optimizer="sgd", seed=seed)


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
    """Every (tensor, σ, step) cell: the stable fit with its interval, then block α, skew."""
    rows = []
    fit_vars = [f"{v}{s}{e}" for s in ("", "_mad") for v in ("alpha", "beta")
                for e in ("", "_low", "_high")]  # fmt: skip
    modes = (("layer", ""), ("coordinate", "_coord"), ("robust", "_robust"))
    for name in ds["param_layer"].values:
        for sigma in ds["sigma"].values:
            for step in ds["step"].values:
                cell = ds.sel(param_layer=name, sigma=sigma, step=step)
                row: dict[str, Any] = {"tensor": str(name), "sigma": float(sigma)}
                row["step"] = int(step)
                row.update({v: round(float(cell[v]), 3) for v in fit_vars})
                row["n_fit"] = int(cell["stable_n"])
                block = cell["alpha_block"]
                for mode, suffix in modes:
                    row["alpha_block" + suffix] = round(float(block.sel(standardize=mode)), 3)
                row["skewness"] = round(float(cell["skewness"].sel(standardize="layer")), 3)
                rows.append(row)
    return rows


def part_calibration(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """The stable fit and the block estimator on known laws."""
    rng = np.random.default_rng(0)
    iid: list[dict[str, Any]] = []
    start = time.perf_counter()
    for alpha in (1.2, 1.5, 1.8, 2.0):
        for beta in (-0.5, 0.0, 0.5):
            x = sps.levy_stable.rvs(alpha, beta, size=100_000, random_state=rng)
            a_hat, b_hat = fit_stable(x)
            block = tail_index(x - np.median(x), rng=rng)
            iid.append({"alpha": alpha, "beta": beta, "alpha_hat": round(a_hat, 3),
                        "beta_hat": round(b_hat, 3), "alpha_block": round(block, 3)})  # fmt: skip
    seconds = time.perf_counter() - start
    # A tensor's noise pools coordinates of different scales: Gaussian or stable noise per
    # coordinate, scales log-normal (σ = 0 … 1) as the measured per-coordinate RMS spread.
    pooled: list[dict[str, Any]] = []
    shape = (10, 100, 200)  # batches × draws × coordinates, as a measurement has
    for alpha in (1.5, 2.0):
        for spread in (0.0, 0.5, 1.0):
            x = sps.levy_stable.rvs(alpha, 0.0, size=shape, random_state=rng)
            x = x * np.exp(rng.normal(0.0, spread, size=(1, 1, shape[2])))
            fit = fit_stable_groups(list(x), rng, replicates=args.bootstrap)
            mad = fit_stable_groups(list(robust_columns(x, axis=1)), rng, replicates=0)
            block = tail_index(standardize(x).ravel(), rng=rng)
            pooled.append({"alpha": alpha, "scale_spread": spread,
                           "alpha_hat": round(fit.alpha, 3),
                           "interval": [round(fit.alpha_low, 3), round(fit.alpha_high, 3)],
                           "alpha_mad": round(mad.alpha, 3),
                           "alpha_block": round(block, 3)})  # fmt: skip
    out["calibration"] = {"iid": iid, "iid_fit_seconds": round(seconds, 2), "pooled": pooled}
    print(json.dumps(out["calibration"]), flush=True)


def measure_mlp(
    model: nn.Module, noise: NoiseKind, sigmas: Any, args: argparse.Namespace, seed: int = 0
) -> Any:
    return gradient_noise(
        model, "mnist", noise=noise, sigma=sigmas, draws=args.draws, batches=args.batches,
        bootstrap=args.bootstrap, seed=seed,
    )  # fmt: skip


def part_sigma(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """SGD-trained MLP, gradient noise over σ; seed and optimizer checks at one cell."""
    x = resolve_data("mnist:train").x
    out["mnist_input_range"] = [float(x.min()), float(x.max())]
    model, metrics = mnist_mlp(sgd(args.epochs))
    out["sgd_mlp"] = {"config": sgd(args.epochs).to_dict(), **metrics}
    kinds: tuple[NoiseKind, ...] = ("additive", "multiplicative")
    for noise in kinds:
        start = time.perf_counter()
        res = measure_mlp(model, noise, args.sigmas, args)
        out[f"sigma_{noise}"] = {
            "seconds": time.perf_counter() - start,
            "rows": stats_rows(res.dataset),
        }
        save_figure(gni_plots.over_sigma(res), args.figures / f"gni_mlp_sigma_{noise}.png")
        if noise == "multiplicative":
            fig = gni_plots.histograms(res, sigma=0.1)
            save_figure(fig, args.figures / "gni_mlp_histogram.png")
    # Does the interval cover what other measurement seeds (other batches, other ε) read?
    out["seed_check"] = {
        str(seed): stats_rows(measure_mlp(model, "multiplicative", [0.1], args, seed).dataset)
        for seed in (1, 2)
    }
    adam = TrainConfig(epochs=args.epochs, seed=0)  # Adam, cosine: the previous study's model
    adam_model, adam_metrics = mnist_mlp(adam)
    out["adam_mlp"] = {"config": adam.to_dict(), **adam_metrics}
    out["adam_multiplicative"] = stats_rows(
        measure_mlp(adam_model, "multiplicative", [0.1], args).dataset
    )


def part_training(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Plain multiplicative GNI training (SGD) of the MLP, the noise tracked along the way."""
    config = sgd(args.epochs)
    train = resolve_data("mnist:train")
    spec = GNISpec(
        sigmas=(0.1,), noise="multiplicative", draws=args.draws, batches=4,
        bootstrap=args.bootstrap,
    )  # fmt: skip
    steps = -(-len(train) // config.batch_size) * config.epochs
    scratch = Path(args.scratch) / "gni_training.h5"
    tracker = GNITracker(spec, steps // 5, scratch, train.x, train.y, last_step=steps)
    loss = NoisyLoss("multiplicative", 0.1, 1, seed=0)
    _, metrics = mnist_mlp(config, loss_fn=loss, on_step=tracker)
    ds = concat_steps(tracker.parts)
    out["training"] = {"metrics": metrics, "rows": stats_rows(ds)}
    save_figure(gni_plots.over_training(ds), args.figures / "gni_mlp_training.png")


def part_marginal(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Held-out loss: no noise (K = 0), plain GNI (K = 1), noise-averaged loss (K > 1)."""
    rows = []
    noise: NoiseKind = "multiplicative"
    sigma = 0.5
    for seed in range(args.seeds):
        for draws in (0, 1, *args.draws_marginal):
            hooks = {} if draws == 0 else {"loss_fn": NoisyLoss(noise, sigma, draws, seed)}
            _, metrics = mnist_mlp(sgd(args.epochs, seed), **hooks)
            rows.append({"noise": noise, "sigma": sigma, "seed": seed, "K": draws, **metrics})
            print(rows[-1], flush=True)
    out["marginal_mnist"] = {"rows": rows, "paired": paired(rows)}


def paired(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per K > 1: test loss minus that of K = 1, seed by seed, mean ± std and paired t."""
    by = {(r["K"], r["seed"]): r["test_loss"] for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    result = {}
    for k in sorted({r["K"] for r in rows} - {0, 1}):
        diff = np.array([by[(k, s)] - by[(1, s)] for s in seeds])
        test = sps.ttest_1samp(diff, 0.0) if len(diff) > 1 else None
        result[f"K{k}_minus_K1"] = {
            "diffs": [round(float(d), 4) for d in diff],
            "mean": round(float(diff.mean()), 4),
            "std": round(float(diff.std(ddof=1)), 4) if len(diff) > 1 else None,
            "p_value": None if test is None else round(float(test.pvalue), 3),
        }
    return result


def part_toy_tails(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """The 100-column toy at initialisation and after 100 plain-GNI SGD steps (additive 0.1,
    noise on the input, every ReLU and the output, as SkewKurtosisGradients.ipynb)."""
    rows = []
    for seed in range(args.toy_seeds):
        x, y = sinusoid_columns(200, 100, 100, seed=seed)
        model = toy_mlp(args.toy_width, 4, seed=seed, inputs=100, outputs=100)
        gen = torch.Generator().manual_seed(seed)

        def loss(m: nn.Module, xs: torch.Tensor, ys: torch.Tensor, g: torch.Generator = gen) -> Any:
            return noisy_loss(m, xs, ys, INPUT_TO_OUTPUT, "additive", 0.1, 1, g, loss="mse")

        for step in (0, args.toy_tail_steps):
            if step:
                fit(model, x, y, loss, steps=step, lr=3e-4)
            res = gradient_noise(
                model, (x, y), sigma=0.1, layers=INPUT_TO_OUTPUT, loss="mse", draws=args.draws,
                batches=1, batch_size=len(x), bootstrap=args.bootstrap, seed=seed,
            )  # fmt: skip
            rows += [{"seed": seed, **r, "step": step} for r in stats_rows(res.dataset)]
    out["toy_tails"] = rows


def part_toy_probe(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Step times of the paper's marginal toy per K, and K = 1's first steps at lr 3e-4."""
    x, y = sinusoids(200, seed=0)
    points = [f"act{i}" for i in range(1, 7)]
    times = {}
    for draws in (1, 4, 16):
        model = toy_mlp(256, 6, seed=0)
        gen = torch.Generator().manual_seed(0)

        def loss(
            m: nn.Module, xs: torch.Tensor, ys: torch.Tensor, k: int = draws,
            g: torch.Generator = gen,
        ) -> Any:  # fmt: skip
            return noisy_loss(m, xs, ys, points, "multiplicative", 0.1, k, g, loss="mse")

        start = time.perf_counter()
        fit(model, x, y, loss, steps=args.probe_timing_steps, lr=3e-4)
        times[str(draws)] = (time.perf_counter() - start) / args.probe_timing_steps
    model = toy_mlp(256, 6, seed=0)
    gen = torch.Generator().manual_seed(0)

    def loss1(m: nn.Module, xs: torch.Tensor, ys: torch.Tensor) -> Any:
        return noisy_loss(m, xs, ys, points, "multiplicative", 0.1, 1, gen, loss="mse")

    trajectory = [(0, clean_mse(model, x, y))]
    for _ in range(args.probe_blocks):
        fit(model, x, y, loss1, steps=250, lr=3e-4)
        trajectory.append((trajectory[-1][0] + 250, clean_mse(model, x, y)))
    out["toy_probe"] = {
        "seconds_per_step": {k: round(v, 4) for k, v in times.items()},
        "hours_for_60000_steps": {k: round(v * 60_000 / 3600, 2) for k, v in times.items()},
        "train_mse_k1": [(s, round(v, 5)) for s, v in trajectory],
        "target_variance": round(float(y.var()), 5),
    }


def part_ml_check(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """scipy's maximum-likelihood stable fit (levy_stable.fit, the kind of fit the paper's
    notebooks make with PyLevy) against the quantile fit, on the same random subsample of the
    SGD MLP's pooled noise (multiplicative σ = 0.1); one likelihood fit takes about a minute."""
    from scipy import stats

    model, _ = mnist_mlp(sgd(args.epochs))
    model.eval()
    train = resolve_data("mnist:train")
    points = injection_points(model, tuple(train.x.shape[1:]))
    params = parameter_layers(model)
    gen = torch.Generator().manual_seed(0)
    coords = [torch.randperm(p.numel(), generator=gen)[:4096] for _, p in params]
    pooled: list[list[np.ndarray]] = [[] for _ in params]
    with inject(model, points, make_noise("multiplicative"), 0.1, generator=gen):
        for b in range(args.batches):
            xb, yb = train.x[b * 64 : (b + 1) * 64], train.y[b * 64 : (b + 1) * 64]
            grads, _ = draw_gradients(
                model, xb, yb, [p for _, p in params], args.draws, coords=coords
            )
            for j, g in enumerate(grads):
                raw = g.numpy().astype(np.float64)
                raw -= raw.mean(axis=0)
                pooled[j].append(raw[:, np.any(raw != 0, axis=0)].ravel())
    rng = np.random.default_rng(0)
    rows = []
    for (name, _), parts in zip(params, pooled, strict=True):
        values = np.concatenate(parts)
        sub = rng.choice(values, size=args.ml_points, replace=False)
        start = time.perf_counter()
        ml = stats.levy_stable.fit(sub)
        seconds = time.perf_counter() - start
        quantile_sub = fit_stable(sub)
        quantile_all = fit_stable(rng.choice(values, size=min(values.size, 50_000), replace=False))
        rows.append({"tensor": name, "n_sub": args.ml_points,
                     "ml_alpha": round(float(ml[0]), 3), "ml_beta": round(float(ml[1]), 3),
                     "quantile_alpha_sub": round(quantile_sub[0], 3),
                     "quantile_beta_sub": round(quantile_sub[1], 3),
                     "quantile_alpha_50k": round(quantile_all[0], 3),
                     "quantile_beta_50k": round(quantile_all[1], 3),
                     "ml_seconds": round(seconds, 1)})  # fmt: skip
        print(rows[-1], flush=True)
    out["ml_check"] = rows


def clean_mse(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(((model(x) - y) ** 2).mean())


def ci(row: dict[str, Any], var: str) -> str:
    """``1.73 [1.70, 1.76]``: the estimate and its 95 % interval, two decimals."""
    low, high = row.get(f"{var}_low"), row.get(f"{var}_high")
    interval = "" if low is None or np.isnan(low) else f" [{low:.2f}, {high:.2f}]"
    return f"{row[var]:.2f}{interval}"


def stats_table(rows: list[dict[str, Any]], key: str) -> list[str]:
    """Markdown rows for docs/gni.md: α, β with intervals, MAD-scaled α, block α, skew."""
    head = f"| tensor | {key} | α [95% CI] | β [95% CI] | α, MAD-scaled | α block | skew |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = (ci(r, "alpha"), ci(r, "beta"), ci(r, "alpha_mad"), f"{r['alpha_block']:.2f}")
        lines.append(f"| {r['tensor']} | {r[key]:g} | {' | '.join(cells)} | {r['skewness']:.2f} |")
    return lines


def report(out: dict[str, Any]) -> None:
    """Print the markdown tables of docs/gni.md from the JSON."""
    for noise in ("multiplicative", "additive"):
        print(f"\n### sigma_{noise}")
        print("\n".join(stats_table(out[f"sigma_{noise}"]["rows"], "sigma")))
    checks = [r for seed in ("1", "2") for r in out["seed_check"][seed]]
    print("\n### seed_check (seeds 1, 2), then adam_multiplicative")
    print("\n".join(stats_table(checks + out["adam_multiplicative"], "sigma")))
    print("\n### training")
    print("\n".join(stats_table(out["training"]["rows"], "step")))
    print("\n### toy_tails")
    print("\n".join(stats_table(out["toy_tails"], "step")))


PARTS = {
    "calibration": part_calibration,
    "sigma": part_sigma,
    "training": part_training,
    "marginal": part_marginal,
    "toy_tails": part_toy_tails,
    "toy_probe": part_toy_probe,
    "ml_check": part_ml_check,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check the script runs")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--scratch", default="/tmp")
    parser.add_argument("--report", action="store_true", help="print the docs' tables only")
    args = parser.parse_args()
    if args.report:
        report(json.loads(NUMBERS.read_text()))
        return
    torch.set_num_threads(1)
    quick = args.quick
    args.epochs = 1 if quick else 5
    args.draws = 10 if quick else 100
    args.batches = 2 if quick else 10
    args.bootstrap = 20 if quick else 100
    args.sigmas = [0.1, 0.3] if quick else [0.03, 0.1, 0.3, 1.0]
    args.seeds = 1 if quick else 3
    args.draws_marginal = (4,) if quick else (4, 16)
    args.toy_seeds, args.toy_width = (1, 32) if quick else (3, 512)  # the notebook's width
    args.toy_tail_steps = 5 if quick else 100
    args.probe_timing_steps = 3 if quick else 20
    args.probe_blocks = 1 if quick else 4
    args.ml_points = 40 if quick else 400
    args.figures = Path(args.scratch) if quick else FIGURES  # a smoke run leaves docs alone
    args.figures.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = json.loads(NUMBERS.read_text()) if NUMBERS.exists() and not quick else {}
    for name in args.parts.split(","):
        start = time.perf_counter()
        PARTS[name](args, out)
        out.setdefault("seconds", {})[name] = round(time.perf_counter() - start, 1)
        print(f"{name}: {out['seconds'][name]} s", flush=True)
        if not quick:
            NUMBERS.write_text(json.dumps(out, indent=1, default=float))
    print(json.dumps(out["seconds"]))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
