"""``walknoise.nin.compare``: NINR against the usual regularisers, tuned alike and tested on
several perturbations.

For every seed, each method (:mod:`walknoise.nin.regularisers`) trains the same architecture
from the same initial weights and data order with SGD (as in the NIN papers; Adam on
request) at a constant learning rate. Each method tries the same number of candidates of its
hyper-parameter on the training data minus a validation split carved from it, and keeps the
best on that split (:mod:`walknoise.nin.tuning`); the test split is used only afterwards.
The chosen model is then tested without any training-time noise: clean test accuracy,
accuracy under each perturbation of :mod:`walknoise.nin.perturb` at several strengths (the
same perturbed inputs for every method of a seed), and each layer's walk midpoint
(:func:`walknoise.scan`). Each number is compared with the baseline ``none`` by a paired test
over seeds (:mod:`walknoise.nin.paired`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from torch import nn

from walknoise.data import Normalization, TensorData
from walknoise.errors import WalknoiseError
from walknoise.io.result import ResultBase
from walknoise.nin.compare_config import CompareConfig
from walknoise.nin.paired import TEST, paired_test
from walknoise.nin.perturb import PERTURBATIONS
from walknoise.nin.probe import ModelFactory, model_factory, train_test_data
from walknoise.nin.regularisers import KNOBS, METHODS, WHAT
from walknoise.nin.results import file_attrs
from walknoise.nin.train import torch_threads
from walknoise.nin.tuning import Tuned, perturbed_accuracy, split_validation, tune
from walknoise.progress import progress_bar
from walknoise.training import evaluate
from walknoise.walk.driver import scan

__all__ = ["FORMAT", "METHODS", "CompareConfig", "CompareResult", "compare", "load_compare"]

FORMAT = "walknoise-nin-compare"
FORMAT_VERSION = 2
VALIDATION_STREAM = 1
"""Seed stream of the perturbations drawn on the validation split (the test's is 0)."""


def compare(
    arch: str | ModelFactory = "mlp",
    data: Any = "mnist",
    config: CompareConfig | None = None,
    *,
    test_data: Any = None,
    output: str | Path | None = None,
    threads: int | None = None,
    progress: bool = True,
    normalize: str | Normalization = "none",
) -> CompareResult:
    """Tune and train every (method, seed) of ``config``, test, and return the numbers.
    ``normalize`` rescales the inputs (:func:`~walknoise.nin.probe.train_test_data`)."""
    cfg = config or CompareConfig()
    if output is not None and not Path(output).parent.is_dir():
        raise WalknoiseError(f"directory {Path(output).parent} does not exist; create it first")
    train, test = train_test_data(data, test_data, normalize)
    fit_data, val = split_validation(train, cfg.validation_fraction, cfg.split_seed)
    factory = model_factory(arch, train)
    conditions = cfg.conditions(images=train.x.dim() == 4)
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    # The baseline first in each seed: its chosen learning rate is every method's.
    order = sorted(range(len(cfg.methods)), key=lambda i: cfg.methods[i] != "none")
    cells = [(i, k) for k in range(len(cfg.seeds)) for i in order]
    base = cfg.fit()
    lr = base.lr
    with torch_threads(threads):
        for i, k in progress_bar(cells, desc="nin compare", unit="method", disable=not progress):
            method, seed = cfg.methods[i], cfg.seeds[k]
            score = _scorer(cfg, val, conditions, seed)
            fit = replace(base, lr=base.lr if method == "none" else lr)
            tuned = tune(method, cfg.grids[method], factory, fit_data, score, fit, seed)
            if method == "none":
                lr = cfg.grids["none"][tuned.chosen] if tuned.trained.finished else base.lr
            rows[i, k] = _test_cell(tuned, test, conditions, cfg, seed)
            rows[i, k]["lr"] = tuned.trained.lr
    sizes = {"fit": len(fit_data), "validation": len(val)}
    attrs = _attrs(cfg, arch, train, test, sizes)
    result = CompareResult(_dataset(cfg, conditions, rows, attrs))
    if output is not None:
        result.save(output)
    return result


def _scorer(
    cfg: CompareConfig, val: TensorData, conditions: list[tuple[str, float]], seed: int
) -> Callable[[nn.Module], float]:
    """The validation score a candidate is chosen by."""
    if cfg.selection == "clean":
        return lambda model: evaluate(model, val.x, val.y)[0]
    return lambda model: float(
        np.mean(perturbed_accuracy(model, val, conditions, seed, VALIDATION_STREAM))
    )


def _test_cell(
    tuned: Tuned,
    test: TensorData,
    conditions: list[tuple[str, float]],
    cfg: CompareConfig,
    seed: int,
) -> dict[str, Any]:
    """Test numbers of the chosen model; NaN throughout when every candidate diverged."""
    row: dict[str, Any] = {
        "validation_score": tuned.scores,
        "candidate_diverged": tuned.diverged,
        "chosen_candidate": tuned.chosen,
        "niw_norm_end": tuned.trained.niw_norm,
        "train_seconds": tuned.seconds,
    }
    if not tuned.trained.finished:
        return row
    model = tuned.trained.model
    accuracy, loss = evaluate(model, test.x, test.y)
    walk = scan(
        model, test, sigmas=cfg.walk_sigmas, repeats=cfg.walk_repeats, progress=False, seed=seed
    )
    mids = walk.midpoints()
    return row | {
        "clean_accuracy": accuracy,
        "clean_loss": loss,
        "accuracy": perturbed_accuracy(model, test, conditions, seed),
        "layers": list(mids.index),
        "midpoint": mids["midpoint"].to_numpy(dtype=np.float64),
        "midpoint_status": mids["status"].to_numpy(dtype=np.int8),
        "walk_sigma_max": float(walk.sigmas.max()),
    }


COORDS = {
    "method": ("training method (regulariser)", ""),
    "seed": ("seed of initial weights, data order, training noise and test perturbations", "1"),
    "candidate": ("index into each method's hyper-parameter grid", "1"),
    "condition": ("test perturbation and strength", ""),
    "perturbation": ("test perturbation (walknoise.nin.perturb)", ""),
    "strength": ("strength of the test perturbation (units: perturbation_units)", ""),
    "layer": ("injection point of the walk (named_modules() name, <input> or <global>)", ""),
}
VARIABLES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "validation_score": (
        ("method", "seed", "candidate"),
        "validation accuracy the candidate was chosen by (NaN: diverged)",
        "1",
    ),
    "candidate_diverged": (("method", "seed", "candidate"), "1: training went non-finite", "1"),
    "chosen_candidate": (("method", "seed"), "index of the chosen candidate", "1"),
    "clean_accuracy": (("method", "seed"), "clean test accuracy", "1"),
    "clean_loss": (("method", "seed"), "clean test cross-entropy", "nat"),
    "accuracy": (("method", "seed", "condition"), "test accuracy under the perturbation", "1"),
    "midpoint": (("method", "seed", "layer"), "midpoint noise level of the walk", "sigma"),
    "midpoint_status": (
        ("method", "seed", "layer"),
        "1 reached in grid, 0 not reached (> sigma max), -1 at or below sigma min",
        "1",
    ),
    "niw_norm_end": (("method", "seed"), "total NIW norm after training (NINR only)", "1"),
    "train_seconds": (("method", "seed"), "wall time of training all candidates", "s"),
    "lr": (("method", "seed"), "learning rate of the chosen model (the baseline's choice)", "1"),
}
INTEGER = {"candidate_diverged", "chosen_candidate", "midpoint_status"}


def _dataset(
    cfg: CompareConfig,
    conditions: list[tuple[str, float]],
    rows: dict[tuple[int, int], dict[str, Any]],
    attrs: dict[str, Any],
) -> xr.Dataset:
    tested = [row for row in rows.values() if "layers" in row]
    if not tested:
        raise WalknoiseError(
            "every candidate of every method diverged; lower the learning rate (e.g. lr=0.01)"
        )
    layers: list[str] = tested[0]["layers"]
    shape = {"method": len(cfg.methods), "seed": len(cfg.seeds), "candidate": cfg.candidates}
    shape.update(condition=len(conditions), layer=len(layers))
    data_vars: dict[str, Any] = {}
    for name, (dims, long_name, units) in VARIABLES.items():
        integer = name in INTEGER
        fill = -2 if name == "midpoint_status" else (0 if integer else np.nan)
        arr = np.full([shape[d] for d in dims], fill, dtype=np.int8 if integer else np.float64)
        for (i, k), row in rows.items():
            if name in row:
                arr[i, k] = row[name]
        data_vars[name] = (dims, arr, {"long_name": long_name, "units": units})
    grid = np.array([cfg.grids[m] for m in cfg.methods])
    data_vars["hyperparameter"] = (
        ("method", "candidate"),
        grid,
        {"long_name": "each method's candidate values (names: attribute hyperparameters)"},
    )
    chosen = np.take_along_axis(grid, data_vars["chosen_candidate"][1].astype(int), axis=1)
    data_vars["chosen_value"] = (
        ("method", "seed"),
        chosen,
        {"long_name": "hyper-parameter value chosen on the validation split"},
    )
    coords = {
        "method": list(cfg.methods),
        "seed": np.array(cfg.seeds),
        "candidate": np.arange(cfg.candidates),
        "condition": [f"{name} {s:g}" for name, s in conditions],
        "layer": layers,
    }
    # Plain variables, not coordinates: the results file keeps only dimension coordinates.
    data_vars["perturbation"] = ("condition", np.array([name for name, _ in conditions]))
    data_vars["strength"] = ("condition", np.array([s for _, s in conditions], dtype=float))
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    ds.attrs["walk_sigma_max"] = tested[0]["walk_sigma_max"]
    for name, (long_name, units) in COORDS.items():
        ds[name].attrs.update(long_name=long_name, units=units)
    return _with_tests(ds)


PAIRED = {"clean_accuracy": "clean", "accuracy": "accuracy", "midpoint": "midpoint"}
"""Variables compared with the baseline, and the prefix of their test variables."""


def _with_tests(ds: xr.Dataset) -> xr.Dataset:
    """Add ``<prefix>_difference`` and ``<prefix>_p_value``: each method minus ``none``,
    paired over seeds (NaN for ``none`` itself, and throughout without ``none``)."""
    methods = [str(m) for m in ds["method"].values]
    for name, prefix in PAIRED.items():
        values = ds[name].where(ds["midpoint_status"] == 1) if name == "midpoint" else ds[name]
        seeds_last = values.transpose("method", ..., "seed")
        mean = np.full(seeds_last.shape[:-1], np.nan)
        p = mean.copy()
        if "none" in methods:
            base = seeds_last.values[methods.index("none")]
            mean, p = paired_test(seeds_last.values, base[None])
            mean[methods.index("none")] = p[methods.index("none")] = np.nan
        dims = seeds_last.dims[:-1]
        what = f"{ds[name].attrs['long_name']}, method minus none, mean over seeds"
        ds[f"{prefix}_difference"] = (dims, mean, {"long_name": what})
        ds[f"{prefix}_p_value"] = (dims, p, {"long_name": f"p-value of the {TEST}"})
    return ds


def _attrs(
    cfg: CompareConfig,
    arch: str | ModelFactory,
    train: TensorData,
    test: TensorData,
    sizes: dict[str, int],
) -> dict[str, Any]:
    title = "walknoise comparison of NINR with other regularisers"
    units = {name: PERTURBATIONS[name].unit for name in PERTURBATIONS}
    return file_attrs(FORMAT, FORMAT_VERSION, title, cfg.to_dict(), arch, train, test) | {
        "methods": json.dumps({m: _what(m, cfg.grids[m]) for m in cfg.methods}),
        "hyperparameters": json.dumps(cfg.hyperparameters()),
        "perturbation_units": json.dumps(units),
        "optimizer": cfg.optimizer,
        "lr": cfg.lr,
        "momentum": cfg.momentum,
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "selection": cfg.selection,
        "validation_fraction": cfg.validation_fraction,
        "split_seed": cfg.split_seed,
        "fit_size": sizes["fit"],
        "validation_size": sizes["validation"],
        "paired_test": TEST,
    }


def _what(method: str, grid: tuple[float, ...]) -> str:
    return f"{WHAT[method]}; {KNOBS[method]} tuned over {', '.join(f'{v:g}' for v in grid)}"


class CompareResult(ResultBase):
    """A comparison's numbers; everything is in ``dataset`` (an ``xarray.Dataset``)."""

    FORMAT = FORMAT
    FORMAT_VERSION = FORMAT_VERSION
    WHAT = "NIN comparison"
    CELL = ("method", "seed")

    @property
    def methods(self) -> list[str]:
        return [str(m) for m in self.dataset["method"].values]

    def describe(self) -> dict[str, str]:
        """Each method in words, with its candidates."""
        described: dict[str, str] = json.loads(self.dataset.attrs["methods"])
        return described

    def hyperparameters(self) -> dict[str, str]:
        """Each method's tuned hyper-parameter."""
        named: dict[str, str] = json.loads(self.dataset.attrs["hyperparameters"])
        return named

    def chosen(self) -> dict[str, list[float]]:
        """Each method's chosen hyper-parameter value, per seed."""
        values = self.dataset["chosen_value"]
        return {m: [float(v) for v in values.values[i]] for i, m in enumerate(self.methods)}

    def _describe(self) -> str:
        ds = self.dataset
        return (
            f"{', '.join(self.methods)} × {ds.sizes['seed']} seeds, "
            f"{ds.attrs.get('arch')} on {ds.attrs.get('data')}, {ds.attrs.get('optimizer')}"
        )


def load_compare(path: str | Path) -> CompareResult:
    """Read a comparison written by :func:`compare` or ``walknoise nin compare``."""
    return CompareResult.load(path)
