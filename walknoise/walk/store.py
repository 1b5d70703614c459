"""The scan's results file: its schema, the empty grid, the header checks resume needs.

Layout: dimension-scale coordinates ``layer`` (UTF-8), ``sigma`` and ``repeat``; every data
variable has its axes attached to them and carries ``long_name``/``units``. The grid is
preallocated with NaN and ``layer_done`` marks finished layers, which is what resume reads.
Writing, reading and crash safety (each update edits a copy that is renamed into place) are
:mod:`walknoise.io.netcdf`'s; a scan stores each finished layer with :func:`write_layer`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr

from walknoise.errors import WalknoiseError
from walknoise.io import netcdf
from walknoise.walk.schema import (
    METRIC_VARIABLES,
    MIDPOINT_INT_VARS,
    MIDPOINT_VARIABLES,
    SEARCH_COORDS,
    SEARCH_VARIABLES,
    TRAIN_COORDS,
    TRAIN_INT_VARS,
    TRAIN_VARIABLES,
    TRAINED_MIDPOINT_VARIABLES,
)

FORMAT = "walknoise-results"
FORMAT_VERSION = 1

# name -> (dims, long_name, units); the single source of the file's variables.
VARIABLES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "accuracy": (("layer", "sigma", "repeat"), "test accuracy under noise", "1"),
    "accuracy_drop": (("layer", "sigma", "repeat"), "clean minus noisy accuracy", "1"),
    "loss": (("layer", "sigma", "repeat"), "mean cross-entropy over finite outputs", "nat"),
    "nonfinite_fraction": (
        ("layer", "sigma", "repeat"),
        "fraction of samples with inf/NaN logits",
        "1",
    ),
    "midpoint": (
        ("layer",),
        "midpoint noise level (halfway from midpoint_reference to midpoint_end)",
        "sigma",
    ),
    "midpoint_status": (
        ("layer",),
        "1 reached in grid, 0 not reached (> sigma max), -1 at or below sigma min",
        "1",
    ),
    "midpoint_low": (("layer",), "bootstrap 2.5% quantile of the midpoint", "sigma"),
    "midpoint_high": (("layer",), "bootstrap 97.5% quantile of the midpoint", "sigma"),
    "midpoint_per_repeat": (("layer", "repeat"), "midpoint of each repeat's curve", "sigma"),
    "layer_scale": (
        ("layer",),
        "factor multiplying sigma at this point (clean output std if relative)",
        "1",
    ),
    "layer_done": (("layer",), "1 when every cell of the layer is computed", "1"),
}
INT_VARS = {"midpoint_status", "layer_done"}
COORDS = {
    "layer": ("injection point (named_modules() name, <input> or <global>)", ""),
    "sigma": ("noise level", "1"),
    "repeat": ("independent noise draw", "1"),
}


ALL_VARIABLES = {
    **VARIABLES,
    **TRAIN_VARIABLES,
    **SEARCH_VARIABLES,
    **MIDPOINT_VARIABLES,
    **TRAINED_MIDPOINT_VARIABLES,
    **METRIC_VARIABLES,
}
ALL_INT_VARS = INT_VARS | TRAIN_INT_VARS | MIDPOINT_INT_VARS
ALL_COORDS = {**COORDS, **TRAIN_COORDS, **SEARCH_COORDS}
STRING_COORDS = ("layer", "param_layer")
FLOAT_COORDS = ("sigma", "test_sigma")
LAYER_TYPE = "module class of the injection point"


def empty_arrays(coords: Mapping[str, Any], names: Iterable[str]) -> dict[str, np.ndarray]:
    """Preallocated variables: NaN for numbers, 0 for flags (nothing done)."""
    shape = {k: len(v) for k, v in coords.items()}
    out = {}
    for name in names:
        dims = ALL_VARIABLES[name][0]
        integer = name in ALL_INT_VARS
        out[name] = np.full(
            [shape[d] for d in dims],
            0 if integer else np.nan,
            dtype=np.int8 if integer else np.float64,
        )
    return out


def empty(
    coords: Mapping[str, Any],
    layer_type: list[str],
    attrs: Mapping[str, Any],
    names: Iterable[str] = tuple(VARIABLES),
) -> xr.Dataset:
    """The grid of ``names`` preallocated (NaN, nothing done), with the file's metadata."""
    variables: dict[str, Any] = {
        name: (ALL_VARIABLES[name][0], arr, _meta(*ALL_VARIABLES[name][1:]))
        for name, arr in empty_arrays(coords, names).items()
    }
    variables["layer_type"] = (
        ("layer",),
        np.asarray(layer_type, dtype=str),
        {"long_name": LAYER_TYPE},
    )
    axes: dict[str, Any] = {
        name: ((name,), np.asarray(values, dtype=_coord_dtype(name)), _meta(*ALL_COORDS[name]))
        for name, values in coords.items()
    }
    return xr.Dataset(variables, coords=axes, attrs=dict(attrs))


def create(
    path: Path,
    coords: Mapping[str, Any],
    layer_type: list[str],
    attrs: Mapping[str, Any],
    names: Iterable[str] = tuple(VARIABLES),
) -> xr.Dataset:
    """Write a new file with the grid of ``names`` preallocated (NaN, nothing done)."""
    ds = empty(coords, layer_type, attrs, names)
    netcdf.save(path, ds, fix=f"{netcdf.NO_SPACE}, then run the scan again")
    return ds


def write_layer(
    path: Path,
    index: int,
    values: Mapping[str, Any],
    done: str = "layer_done",
    whole: Mapping[str, Any] | None = None,
) -> None:
    """Store one finished layer (``whole``: variables without a layer axis) and set its
    ``done`` flag, atomically."""
    netcdf.write_at(path, index, {**values, done: 1}, whole, fix=KEEPS_LAYERS)


KEEPS_LAYERS = (
    "it keeps every layer finished before: free some space and run the same scan again to resume"
)

# How to get past a file that is not (or no longer) a readable results file: a scan may
# replace it, a reader can only be pointed elsewhere.
TO_WRITE = "pass overwrite=True to replace it, or choose another output path"
TO_READ = "give the path of a file written by `walknoise scan`"


def read_header(path: Path, fix: str = TO_WRITE) -> dict[str, Any]:
    """Root attributes, ``layer`` and ``layer_done`` of an existing file, checked to be ours
    and whole; errors end with ``fix``."""

    def layout(f: h5py.File) -> dict[str, Any]:
        _check_layout(path, f, fix)
        return {
            "layer_done": f["layer_done"][...].astype(bool),
            "layer": f["layer"].asstr()[...].tolist(),
        }

    try:
        return netcdf.header(path, FORMAT, FORMAT_VERSION, "results", fix=fix, inspect=layout)
    except WalknoiseError as err:
        if fix == TO_WRITE and err.argument is None:  # a scan's way past it: overwrite=True
            err.argument = "overwrite"
        raise


def read(path: Path) -> xr.Dataset:
    """The whole file as an ``xarray.Dataset`` (attributes decoded, config as a string)."""
    read_header(path, TO_READ)
    return netcdf.open_dataset(path, "results", TO_READ)


def _meta(long_name: str, units: str) -> dict[str, str]:
    return {"long_name": long_name, "units": units}


def _coord_dtype(name: str) -> type:
    return str if name in STRING_COORDS else float if name in FLOAT_COORDS else np.int64


def config_of(header: Mapping[str, Any]) -> dict[str, Any]:
    """The scan identity stored in a file's ``config`` attribute, parsed as JSON."""
    try:
        cfg = json.loads(header["config"])["identity"]
    except (KeyError, TypeError, ValueError):
        cfg = None
    if not isinstance(cfg, dict):
        raise WalknoiseError(
            "the results file has no readable config; pass overwrite=True to replace it",
            argument="overwrite",
        )
    return cfg


def _check_layout(path: Path, f: h5py.File, fix: str) -> None:
    """Every scan variable present with the shape its dimensions give, else one clear error.

    A file that says it is ours may still be cut short or edited by hand; without this the
    reader fails later with a KeyError or a shape mismatch deep inside xarray.
    """
    sizes: dict[str, int] = {}
    for name in COORDS:
        ds = f.get(name)
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 1:
            raise _damaged(path, f"no 1-D coordinate {name!r}", fix)
        sizes[name] = ds.shape[0]
    wanted = {**{n: dims for n, (dims, _, _) in VARIABLES.items()}, "layer_type": ("layer",)}
    for name, dims in wanted.items():
        ds = f.get(name)
        shape = tuple(sizes[d] for d in dims)
        if not isinstance(ds, h5py.Dataset) or ds.shape != shape:
            found = "missing" if ds is None else f"shape {getattr(ds, 'shape', '?')}"
            raise _damaged(path, f"variable {name!r} is {found}, expected shape {shape}", fix)


def _damaged(path: Path, why: str, fix: str) -> WalknoiseError:
    return WalknoiseError(f"{path} is a damaged walknoise results file ({why}); {fix}")
