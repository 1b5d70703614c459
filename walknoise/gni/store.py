"""The gradient-noise results file: netCDF-4-compatible HDF5 written with h5py.

Axes ``param_layer`` (UTF-8 parameter names), ``sigma``, ``step`` (the training step the
weights come from), ``standardize`` (``layer``: one scale for the whole parameter tensor, as
the paper; ``coordinate``: each coordinate of each batch by its std over the draws;
``robust``: by its median absolute deviation instead) and ``bin``
(histogram bin centres in standard deviations). Every axis is a dimension scale, every
variable has ``long_name``/``units``, and the file is replaced atomically on each write.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import xarray as xr

from walknoise._version import __version__
from walknoise.errors import WalknoiseError
from walknoise.gni.tails import bin_centres
from walknoise.io.netcdf import atomic_update

FORMAT = "walknoise-gni"
FORMAT_VERSION = 1
STR = h5py.string_dtype("utf-8")
STANDARDIZE = ("layer", "coordinate", "robust")

_CELL = ("param_layer", "sigma", "step")
_BY_MODE = (*_CELL, "standardize")
# name -> (dims, long_name, units, dtype); the single source of the file's variables.
VARIABLES: dict[str, tuple[tuple[str, ...], str, str, str]] = {
    "alpha": (_BY_MODE, "tail index (Mohammadi et al. 2015 estimator)", "1", "f8"),
    "skewness": (_BY_MODE, "sample skewness of the implicit gradient noise", "1", "f8"),
    "kurtosis": (_BY_MODE, "sample excess kurtosis of the implicit gradient noise", "1", "f8"),
    "n_samples": (_BY_MODE, "gradient-noise values the statistics use", "1", "i8"),
    "stable_alpha": (_CELL, "stable-law alpha (McCulloch quantile fit, subsample)", "1", "f8"),
    "stable_beta": (_CELL, "stable-law beta, the skewness parameter (same fit)", "1", "f8"),
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
    config: Mapping[str, Any], points: Sequence[str], data: str, n: int, command: str | None
) -> dict[str, Any]:
    """Root attributes of a gradient-noise file: format, versions, config JSON, provenance."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "title": "walknoise implicit gradient noise of Gaussian noise injections",
        "walknoise_version": __version__,
        "torch_version": str(torch.__version__),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command or " ".join(sys.argv),
        "config": json.dumps(dict(config), sort_keys=True),
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
    data = {}
    for name, (dims, long_name, units, dtype) in VARIABLES.items():
        fill = np.nan if dtype == "f8" else 0
        arr = np.full([sizes[d] for d in dims], fill, dtype=dtype)
        data[name] = (dims, arr, {"long_name": long_name, "units": units})
    return xr.Dataset(data, coords=coords, attrs=dict(attrs))


def concat_steps(parts: Sequence[xr.Dataset]) -> xr.Dataset:
    """Join one-step datasets along ``step`` (per-parameter variables are shared)."""
    shared = ["param_size", "param_coords"]
    joined = xr.concat([p.drop_vars(shared) for p in parts], dim="step")
    return joined.assign({name: parts[0][name] for name in shared})


def save(path: str | Path, ds: xr.Dataset) -> Path:
    """Write ``ds`` as the results file, replacing any old one atomically."""
    path = Path(path)
    atomic_update(path, lambda f: _write(f, ds), new=True)
    return path


def _write(f: h5py.File, ds: xr.Dataset) -> None:
    for name, (long_name, units) in COORDS.items():
        values = ds[name].values
        if values.dtype.kind in "OU":
            f.create_dataset(name, data=np.array(values, dtype=object), dtype=STR)
        else:
            f.create_dataset(name, data=values)
        f[name].make_scale(name)
        f[name].attrs.update({"long_name": long_name, "units": units})
    f["bin"].attrs["bin_width"] = float(np.diff(ds["bin"].values[:2])[0])
    for name, (dims, long_name, units, dtype) in VARIABLES.items():
        out = f.create_dataset(name, data=np.asarray(ds[name].values, dtype=dtype))
        if dtype == "f8":  # integer counts use every value; only floats have a "missing"
            out.attrs["_FillValue"] = np.float64(np.nan)
        out.attrs.update({"long_name": long_name, "units": units})
        for i, dim in enumerate(dims):
            out.dims[i].attach_scale(f[dim])
    for key, value in ds.attrs.items():
        f.attrs[key] = value


def load(path: str | Path) -> xr.Dataset:
    """Read a gradient-noise file (``walknoise gni`` or ``train --gni-every``) into memory."""
    path = Path(path)
    if not path.is_file():
        raise WalknoiseError(f"no such gradient-noise file: {path}; run `walknoise gni` first")
    try:
        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("format")
    except OSError as err:
        raise WalknoiseError(
            f"cannot read {path} as HDF5 ({err}); pass a file written by `walknoise gni`"
        ) from None
    if fmt != FORMAT:
        raise WalknoiseError(
            f"{path} is not a walknoise gradient-noise file (from `walknoise gni`)"
        )
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        loaded = ds.load()
    # h5netcdf hands variable-length strings back as objects; make them plain str labels.
    labels = {
        name: [str(v) for v in loaded[name].values] for name in ("param_layer", "standardize")
    }
    return loaded.assign_coords(labels)
