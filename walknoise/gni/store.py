"""The gradient-noise results file: its schema, the empty one-step dataset, joining steps.

Axes ``param_layer`` (UTF-8 parameter names), ``sigma``, ``step`` (the training step the
weights come from), ``standardize`` (``layer``: one scale for the whole parameter tensor, as
the paper; ``coordinate``: each coordinate of each batch by its std over the draws;
``robust``: by its median absolute deviation instead) and ``bin``
(histogram bin centres in standard deviations). Every axis is a dimension scale, every
variable has ``long_name``/``units``; :mod:`walknoise.io.netcdf` writes and reads the file
(replaced atomically on each write).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from walknoise.gni.tails import bin_centres
from walknoise.io.provenance import provenance

FORMAT = "walknoise-gni"
FORMAT_VERSION = 2
"""2: ``alpha``/``beta`` are the stable fit with intervals; the block estimator is
``alpha_block`` (version 1 called it ``alpha``)."""
WHAT = "gradient-noise"
STANDARDIZE = ("layer", "coordinate", "robust")

_CELL = ("param_layer", "sigma", "step")
_BY_MODE = (*_CELL, "standardize")
# name -> (dims, long_name, units, dtype); the single source of the file's variables.
VARIABLES: dict[str, tuple[tuple[str, ...], str, str, str]] = {
    "alpha": (_CELL, "tail index of a fitted stable law (McCulloch quantiles)", "1", "f8"),
    "alpha_low": (_CELL, "alpha, lower end of the percentile-bootstrap interval", "1", "f8"),
    "alpha_high": (_CELL, "alpha, upper end of the percentile-bootstrap interval", "1", "f8"),
    "beta": (_CELL, "asymmetry beta of the fitted stable law (0 when alpha = 2)", "1", "f8"),
    "beta_low": (_CELL, "beta, lower end of the percentile-bootstrap interval", "1", "f8"),
    "beta_high": (_CELL, "beta, upper end of the percentile-bootstrap interval", "1", "f8"),
    "stable_n": (_CELL, "gradient-noise values the stable fit uses", "1", "i8"),
    **{
        f"{var}_mad{end}": (_CELL, f"{var}{what}, each coordinate divided by its MAD", "1", "f8")
        for var in ("alpha", "beta")
        for end, what in (
            ("", ""),
            ("_low", ", interval low end"),
            ("_high", ", interval high end"),
        )
    },
    "alpha_block": (_BY_MODE, "tail index (Mohammadi et al. 2015 block estimator)", "1", "f8"),
    "skewness": (_BY_MODE, "sample skewness of the implicit gradient noise", "1", "f8"),
    "kurtosis": (_BY_MODE, "sample excess kurtosis of the implicit gradient noise", "1", "f8"),
    "n_samples": (_BY_MODE, "gradient-noise values the statistics use", "1", "i8"),
    "rms": (_CELL, "root mean square of the implicit gradient noise", "loss/param", "f8"),
    "histogram": ((*_CELL, "bin"), "counts of layer-standardised noise per bin", "1", "i8"),
    "hist_outside": (_CELL, "layer-standardised values beyond the histogram range", "1", "i8"),
    "loss_clean": (("step",), "mean loss without noise over the measured batches", "nat", "f8"),
    "loss_noisy": (("sigma", "step"), "mean loss under noise over batches and draws", "nat", "f8"),
    "param_size": (("param_layer",), "number of entries of the parameter tensor", "1", "i8"),
    "param_coords": (("param_layer",), "entries sampled (fixed random subset)", "1", "i8"),
}
COORDS: dict[str, tuple[str, str]] = {
    "param_layer": ("parameter tensor (named_parameters() name)", ""),
    "sigma": ("noise level", "1"),
    "step": ("training step of the weights (0: as loaded)", "1"),
    "standardize": ("scale: per tensor, per coordinate by std, or by MAD", ""),
    "bin": ("histogram bin centre, in standard deviations", "1"),
}


def file_attrs(
    config: Mapping[str, Any], points: Sequence[str], data: str, n: int
) -> dict[str, Any]:
    """Root attributes of a gradient-noise file: provenance, then what was measured."""
    title = "walknoise implicit gradient noise of Gaussian noise injections"
    return {
        **provenance(FORMAT, FORMAT_VERSION, title, config),
        "injection_points": json.dumps(list(points)),
        "data": data,
        "n_samples": n,
        "noise": str(config.get("noise", "")),
    }


def empty(
    params: Sequence[str], sigmas: Sequence[float], step: int, attrs: Mapping[str, Any]
) -> xr.Dataset:
    """A one-step dataset with every variable allocated (NaN or 0)."""
    coords: dict[str, Any] = {
        "param_layer": list(params),
        "sigma": np.asarray(sigmas, dtype=np.float64),
        "step": np.asarray([step], dtype=np.int64),
        "standardize": list(STANDARDIZE),
        "bin": bin_centres(),
    }
    sizes = {k: len(v) for k, v in coords.items()}
    axes = {name: ((name,), coords[name], _meta(*COORDS[name])) for name in COORDS}
    axes["bin"][2]["bin_width"] = float(np.diff(coords["bin"][:2])[0])
    data = {}
    for name, (dims, long_name, units, dtype) in VARIABLES.items():
        fill = np.nan if dtype == "f8" else 0
        arr = np.full([sizes[d] for d in dims], fill, dtype=dtype)
        data[name] = (dims, arr, _meta(long_name, units))
    return xr.Dataset(data, coords=axes, attrs=dict(attrs))


def concat_steps(parts: Sequence[xr.Dataset]) -> xr.Dataset:
    """Join one-step datasets along ``step`` (per-parameter variables are shared)."""
    shared = ["param_size", "param_coords"]
    joined = xr.concat([p.drop_vars(shared) for p in parts], dim="step")
    return joined.assign({name: parts[0][name] for name in shared})


def _meta(long_name: str, units: str) -> dict[str, Any]:
    return {"long_name": long_name, "units": units}
