"""A NIN probe's results: the ``xarray.Dataset`` it builds, and :class:`ProbeResult`.

Dimensions ``sigma_eps``, ``lr``, ``seed``, ``nin`` and ``step`` (0 = initialisation); the
runs without NINs ("reference") have no ``sigma_eps`` or ``nin``. :data:`VARIABLES` is the
single source of the variables, their dimensions, long names and units.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from walknoise.data import TensorData
from walknoise.io.provenance import provenance
from walknoise.io.result import ResultBase
from walknoise.nin.config import ProbeConfig
from walknoise.nin.phases import (
    PHASES,
    PhaseCriteria,
    PhaseEvidence,
    classify_evidence,
    evidence,
    fit_decay,
    majority,
)
from walknoise.nin.train import Trace

__all__ = [
    "COORDS",
    "FORMAT",
    "VARIABLES",
    "ProbeResult",
    "Runs",
    "build_dataset",
    "file_attrs",
    "load_probe",
    "median_over_seeds",
]

FORMAT = "walknoise-nin-probe"
FORMAT_VERSION = 2  # 2: papers' phase names, undetermined, Hessian eigenvalues


@dataclass
class Runs:
    """Traces of the whole grid, filled as the runs finish."""

    nin: dict[tuple[int, int, int], Trace] = field(default_factory=dict)
    reference: dict[tuple[int, int], Trace] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    hessian_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    """Steps at which λ was measured."""
    hessian: dict[tuple[int, int, int], np.ndarray] = field(default_factory=dict)
    """λ per NIN run, ``(nins, hessian steps)``."""
    reference_hessian: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)


def file_attrs(
    fmt: str,
    version: int,
    title: str,
    config: Mapping[str, Any],
    arch: object,
    train: TensorData,
    test: TensorData,
) -> dict[str, Any]:
    """Root attributes of a NIN file (probe or comparison): provenance, with the architecture
    and data names added to ``config``, then those names as attributes of their own."""
    name = arch if isinstance(arch, str) else getattr(arch, "__name__", "custom")
    config = {**config, "arch": name, "train_data": train.name, "test_data": test.name}
    names = {"arch": name, "data": train.name, "test_data": test.name}
    return {**provenance(fmt, version, title, config), **names, **train.normalization.attrs()}


def _fit_tau(trace_values: np.ndarray, window: int) -> float:
    return fit_decay(np.arange(trace_values.size), trace_values, window).tau


def build_dataset(cfg: ProbeConfig, runs: Runs, steps: int, attrs: dict[str, Any]) -> xr.Dataset:
    s_, r_, k_, n_ = len(cfg.sigma_eps), len(cfg.lr), len(cfg.seeds), len(runs.names)
    h_ = len(runs.hessian_steps)
    window = max(1, round(cfg.criteria.smooth * steps))
    grid: dict[str, np.ndarray] = {
        name: np.full(shape, np.nan)
        for name, shape in {
            "niw_norm": (s_, r_, k_, n_, steps + 1),
            "hessian_top_eigenvalue": (s_, r_, k_, n_, h_),
            "reference_hessian_top_eigenvalue": (r_, k_, n_, h_),
            "tau_niw": (s_, r_, k_, n_),
            **{v: (s_, r_, k_, steps + 1) for v in ("train_loss", "test_loss", "test_accuracy")},
            **{v: (r_, k_, steps + 1) for v in _REF_SERIES},
            **{v: (s_, r_, k_) for v in _RUN_SCALARS},
            **{v: (r_, k_) for v in _REF_SCALARS},
        }.items()
    }
    phase = np.zeros((s_, r_, k_), dtype=np.int8)
    for (j, k), ref in runs.reference.items():
        _fill_reference(grid, j, k, ref, window)
    for at, values in runs.hessian.items():
        grid["hessian_top_eigenvalue"][at] = values
    for (j, k), values in runs.reference_hessian.items():
        grid["reference_hessian_top_eigenvalue"][j, k] = values
    for (i, j, k), trace in runs.nin.items():
        ref = runs.reference[j, k]
        ev = evidence(trace.niw, trace.train_loss, ref.train_loss, cfg.criteria, ref.test_loss)
        phase[i, j, k] = PHASES.index(classify_evidence(ev, cfg.criteria))
        _fill_run(grid, (i, j, k), trace, ev, window)
    coords = {
        "sigma_eps": np.array(cfg.sigma_eps),
        "lr": np.array(cfg.lr),
        "seed": list(cfg.seeds),
        "nin": runs.names,
        "step": np.arange(steps + 1),
        "hessian_step": np.asarray(runs.hessian_steps, dtype=np.int64),
    }
    data_vars: dict[str, Any] = {
        name: (VARIABLES[name][0], values, _meta(name)) for name, values in grid.items()
    }
    data_vars["phase"] = (VARIABLES["phase"][0], phase, _phase_meta())
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    for name, (long_name, units) in COORDS.items():
        ds[name].attrs.update(long_name=long_name, units=units)
    return ds


def _fill_reference(grid: dict[str, np.ndarray], j: int, k: int, ref: Trace, window: int) -> None:
    grid["reference_train_loss"][j, k] = ref.train_loss
    grid["reference_test_loss"][j, k] = ref.test_loss
    grid["reference_test_accuracy"][j, k] = ref.test_accuracy
    grid["reference_tau_train_loss"][j, k] = _fit_tau(ref.train_loss, window)
    grid["reference_tau_test_loss"][j, k] = _fit_tau(ref.test_loss, 1)
    grid["reference_final_test_accuracy"][j, k] = ref.final_test_accuracy


def _fill_run(
    grid: dict[str, np.ndarray],
    at: tuple[int, int, int],
    trace: Trace,
    ev: PhaseEvidence,
    window: int,
) -> None:
    grid["niw_norm"][at] = trace.niw
    grid["train_loss"][at] = trace.train_loss
    grid["test_loss"][at] = trace.test_loss
    grid["test_accuracy"][at] = trace.test_accuracy
    if ev.finite:  # a run cut short by a blow-up has no decay to fit
        grid["tau_niw"][at] = [_fit_tau(row, 1) for row in trace.niw]
        grid["tau_train_loss"][at] = _fit_tau(trace.train_loss, window)
        grid["tau_test_loss"][at] = _fit_tau(trace.test_loss, 1)
    grid["final_test_accuracy"][at] = trace.final_test_accuracy
    grid["seconds"][at] = trace.seconds
    for name in _EVIDENCE:
        grid[name][at] = float(getattr(ev, name))


_RUN = ("sigma_eps", "lr", "seed")
_REF = ("lr", "seed")
_EVIDENCE = (
    "niw_peak",
    "niw_fall",
    "niw_end",
    "loss_peak",
    "loss_fall",
    "loss_end",
    "loss_gap",
    "reference_fall",
)
_REF_SERIES = ("reference_train_loss", "reference_test_loss", "reference_test_accuracy")
_RUN_SCALARS = ("tau_train_loss", "tau_test_loss", "final_test_accuracy", "seconds", *_EVIDENCE)
_REF_SCALARS = (
    "reference_tau_train_loss",
    "reference_tau_test_loss",
    "reference_final_test_accuracy",
)
COORDS = {
    "sigma_eps": ("noise scale of the NINs (std of epsilon)", "1"),
    "lr": ("constant learning rate", "1"),
    "seed": ("seed of initial weights, NIWs, data order and noise", "1"),
    "nin": ("layer carrying the NIN (named_modules() name)", ""),
    "step": ("optimiser updates made (0: initialisation)", "1"),
    "hessian_step": ("optimiser updates made when the Hessian was measured", "1"),
}
_SERIES = (*_RUN, "step")
# name -> (dims, long_name, units): the single source of the file's variables.
VARIABLES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "niw_norm": ((*_RUN, "nin", "step"), "L2 norm of the noise injection weights", "1"),
    "hessian_top_eigenvalue": (
        (*_RUN, "nin", "hessian_step"),
        "top eigenvalue of the Hessian of the clean loss w.r.t. the NIN layer's output",
        "1",
    ),
    "reference_hessian_top_eigenvalue": (
        (*_REF, "nin", "hessian_step"),
        "top Hessian eigenvalue w.r.t. the NIN layer's output, run without NINs",
        "1",
    ),
    "train_loss": (_SERIES, "loss of the training batch of this update (NINs on)", "nat"),
    "test_loss": (_SERIES, "clean test loss (NINs off), NaN where not evaluated", "nat"),
    "test_accuracy": (_SERIES, "clean test accuracy (NINs off)", "1"),
    "reference_train_loss": ((*_REF, "step"), "train loss of the run without NINs", "nat"),
    "reference_test_loss": ((*_REF, "step"), "test loss of the run without NINs", "nat"),
    "reference_test_accuracy": ((*_REF, "step"), "test accuracy without NINs", "1"),
    "phase": (_RUN, "phase of the run", "1"),
    "tau_niw": ((*_RUN, "nin"), "exponential decay time of the NIW norm", "step"),
    "tau_train_loss": (_RUN, "exponential decay time of the train loss", "step"),
    "tau_test_loss": (_RUN, "exponential decay time of the test loss", "step"),
    "reference_tau_train_loss": (_REF, "train-loss decay time without NINs", "step"),
    "reference_tau_test_loss": (_REF, "test-loss decay time without NINs", "step"),
    "final_test_accuracy": (_RUN, "clean test accuracy at the end of the run", "1"),
    "reference_final_test_accuracy": (_REF, "final test accuracy without NINs", "1"),
    "seconds": (_RUN, "wall time of the run", "s"),
    "niw_peak": (_RUN, "largest NIW-norm peak / start over the NINs", "1"),
    "niw_fall": (_RUN, "1 - end / peak of that NIN's norm", "1"),
    "niw_end": (_RUN, "total NIW norm, end / start", "1"),
    "loss_peak": (_RUN, "train-loss peak / start", "1"),
    "loss_fall": (_RUN, "1 - train-loss end / peak", "1"),
    "loss_end": (_RUN, "train-loss end / start", "1"),
    "loss_gap": (_RUN, "mean |loss - reference loss| / reference loss drop", "1"),
    "reference_fall": (_RUN, "1 - end / start of the reference's clean test loss", "1"),
}


def _meta(name: str) -> dict[str, str]:
    _, long_name, units = VARIABLES[name]
    return {"long_name": long_name, "units": units}


def _phase_meta() -> dict[str, Any]:
    # CF-style flags, so netCDF tools can name the codes.
    return {
        **_meta("phase"),
        "flag_values": np.arange(len(PHASES), dtype=np.int8),
        "flag_meanings": " ".join(PHASES),
    }


class ProbeResult(ResultBase):
    """A probe's numbers; everything is in ``dataset`` (an ``xarray.Dataset``)."""

    FORMAT = FORMAT
    FORMAT_VERSION = FORMAT_VERSION
    WHAT = "NIN probe"
    CELL = _RUN

    def phases(self) -> Any:
        """One row per run: phase, time scales, final accuracy and the curvature λ with the
        linear picture's η σ_ε² λ at the start and the end (see :meth:`stability`)."""
        ds = self.dataset
        cols = ["tau_train_loss", "tau_test_loss", "final_test_accuracy", "loss_gap", "niw_end"]
        df = ds[cols].to_dataframe()
        df.insert(0, "phase", [PHASES[c] for c in ds["phase"].values.ravel()])
        df.insert(1, "tau_niw", ds["tau_niw"].median("nin").values.ravel())
        return df.join(self.stability().to_dataframe())

    def criteria(self) -> PhaseCriteria:
        """The thresholds the phases were classified with (from the file's config)."""
        config = json.loads(str(self.dataset.attrs.get("config", "{}")))
        return PhaseCriteria(**config.get("criteria", {}))

    def stability(self) -> xr.Dataset:
        """Per run (σ_ε, lr, seed): ``lambda_start``, ``lambda_max`` and ``lambda_end`` (the
        top Hessian eigenvalue at the first measurement, its largest along the run, and at the
        last finite measurement; largest over the NINs: the first to go unstable), and
        ``eta_sigma2_lambda_*`` = η σ_ε² λ of each, which the linear picture puts at 2 on the
        phase boundary. Also
        ``reference_lambda_start``/``_end`` per (lr, seed) from the runs without NINs."""
        ds = self.dataset
        lam = np.fmax.reduce(ds["hessian_top_eigenvalue"].values, axis=3)  # over NINs
        ref = np.fmax.reduce(ds["reference_hessian_top_eigenvalue"].values, axis=2)
        scale = ds["lr"].values[None, :, None] * ds["sigma_eps"].values[:, None, None] ** 2
        start, end = lam[..., 0], _last_finite(lam)
        top = np.fmax.reduce(lam, axis=-1)  # NaN only where no measurement is finite
        return xr.Dataset(
            {
                "lambda_start": (_RUN, start),
                "lambda_max": (_RUN, top),
                "lambda_end": (_RUN, end),
                "eta_sigma2_lambda_start": (_RUN, scale * start),
                "eta_sigma2_lambda_max": (_RUN, scale * top),
                "eta_sigma2_lambda_end": (_RUN, scale * end),
                "reference_lambda_start": (_REF, ref[..., 0]),
                "reference_lambda_end": (_REF, _last_finite(ref)),
            },
            coords={name: ds[name].values for name in _RUN},
        )

    def phase_grid(self) -> Any:
        """σ_ε × lr table of each cell's most common phase over seeds (pandas DataFrame)."""
        codes = self.dataset["phase"].values
        table = [
            [majority(codes[i, j])[0] for j in range(codes.shape[1])] for i in range(len(codes))
        ]
        return pd.DataFrame(
            table,
            index=pd.Index(self.dataset["sigma_eps"].values, name="sigma_eps"),
            columns=pd.Index(self.dataset["lr"].values, name="lr"),
        )

    def _describe(self) -> str:
        ds = self.dataset
        return (
            f"{ds.sizes['sigma_eps']} σ_ε × {ds.sizes['lr']} lr × {ds.sizes['seed']} seeds, "
            f"{ds.sizes['step'] - 1} steps, NINs at {', '.join(str(n) for n in ds['nin'].values)}"
        )


def median_over_seeds(values: np.ndarray) -> np.ndarray:
    """Median over the last axis (seeds), ignoring NaN; NaN where every seed is NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN cell stays NaN, quietly
        return np.asarray(np.nanmedian(values, axis=-1))


def _last_finite(values: np.ndarray) -> np.ndarray:
    """The last finite entry along the last axis (NaN where there is none)."""
    finite = np.isfinite(values)
    last = np.where(finite, np.arange(values.shape[-1]), -1).max(axis=-1)
    picked = np.take_along_axis(values, np.maximum(last, 0)[..., None], axis=-1)[..., 0]
    return np.where(last >= 0, picked, np.nan)


def load_probe(path: str | Path) -> ProbeResult:
    """Read a probe file written by :func:`probe` or ``walknoise nin probe``."""
    return ProbeResult.load(path)
