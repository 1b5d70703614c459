"""The results file: netCDF-4-compatible HDF5 written with h5py, read back as xarray.

Layout: dimension-scale coordinates ``layer`` (UTF-8), ``sigma`` and ``repeat``; every data
variable has its axes attached to them and carries ``long_name``/``units``. The grid is
preallocated with NaN and ``layer_done`` marks finished layers, which is what resume reads.

Crash safety: every update copies the file, writes the copy, fsyncs it and renames it over
the original (``os.replace`` is atomic on POSIX), so a kill at any moment leaves either the
old or the new complete file, never a half-written one. Results files are small (kilobytes
to a few megabytes), so the copy costs little next to a layer's compute.
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
from walknoise.io.netcdf import atomic_update
from walknoise.walk.schema import (
    SEARCH_COORDS,
    SEARCH_VARIABLES,
    TRAIN_COORDS,
    TRAIN_INT_VARS,
    TRAIN_VARIABLES,
)

FORMAT = "walknoise-results"
FORMAT_VERSION = 1
STR = h5py.string_dtype("utf-8")

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
    "midpoint": (("layer",), "midpoint noise level (halfway from clean to chance)", "sigma"),
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


ALL_VARIABLES = {**VARIABLES, **TRAIN_VARIABLES, **SEARCH_VARIABLES}
ALL_INT_VARS = INT_VARS | TRAIN_INT_VARS
ALL_COORDS = {**COORDS, **TRAIN_COORDS, **SEARCH_COORDS}
STRING_COORDS = ("layer", "param_layer")


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


def create(
    path: Path,
    coords: Mapping[str, Any],
    layer_type: list[str],
    attrs: Mapping[str, Any],
    names: Iterable[str] = tuple(VARIABLES),
) -> None:
    """Write a new file with the grid of ``names`` preallocated (NaN, nothing done)."""
    data = empty_arrays(coords, names)
    atomic_update(path, lambda f: _write_all(f, coords, layer_type, data, attrs), new=True)


def _write_all(
    f: h5py.File,
    coords: Mapping[str, Any],
    layer_type: list[str],
    data: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any],
) -> None:
    for name, values in coords.items():
        if name in STRING_COORDS:
            f.create_dataset(name, data=np.array(values, dtype=object), dtype=STR)
        else:
            kind = np.float64 if name == "sigma" else np.int64
            f.create_dataset(name, data=np.asarray(values, dtype=kind))
        f[name].make_scale(name)
        f[name].attrs["long_name"], f[name].attrs["units"] = ALL_COORDS[name]
    ltype = f.create_dataset("layer_type", data=np.array(layer_type, dtype=object), dtype=STR)
    ltype.dims[0].attach_scale(f["layer"])
    ltype.attrs["long_name"] = "module class of the injection point"
    for name, arr in data.items():
        dims, long_name, units = ALL_VARIABLES[name]
        ds = f.create_dataset(name, data=arr)
        if name not in ALL_INT_VARS:  # flags use every value; only floats have a "missing"
            ds.attrs["_FillValue"] = np.float64(np.nan)
        ds.attrs["long_name"] = long_name
        ds.attrs["units"] = units
        for i, dim in enumerate(dims):
            ds.dims[i].attach_scale(f[dim])
    for key, value in attrs.items():
        f.attrs[key] = value


def write_layer(
    path: Path,
    index: int,
    values: Mapping[str, Any],
    done: str = "layer_done",
    whole: Mapping[str, Any] | None = None,
) -> None:
    """Store one finished layer (``whole``: variables without a layer axis) and set its
    ``done`` flag, atomically."""

    def update(f: h5py.File) -> None:
        for name, value in values.items():
            f[name][index, ...] = value
        for name, value in (whole or {}).items():
            f[name][...] = value
        f[done][index] = 1

    atomic_update(path, update)


# How to get past a file that is not (or no longer) a readable results file: a scan may
# replace it, a reader can only be pointed elsewhere.
TO_WRITE = "pass --overwrite to replace it, or choose another -o path"
TO_READ = "give the path of a file written by `walknoise scan`"


def read_header(path: Path, fix: str = TO_WRITE) -> dict[str, Any]:
    """Root attributes and ``layer_done`` of an existing file, checked to be ours; errors end
    with ``fix``."""
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _decode(v) for k, v in f.attrs.items()}
            if attrs.get("format") != FORMAT:
                raise WalknoiseError(f"{path} is not a walknoise results file; {fix}")
            if attrs.get("format_version") != FORMAT_VERSION:
                raise WalknoiseError(
                    f"{path} has results format version {attrs.get('format_version')!r}, this "
                    f"walknoise reads version {FORMAT_VERSION}; {fix}"
                )
            _check_layout(path, f, fix)
            attrs["layer_done"] = f["layer_done"][...].astype(bool)
            attrs["layer"] = [_decode(v) for v in f["layer"][...]]
            return attrs
    except OSError as err:
        raise WalknoiseError(
            f"cannot read {path} as HDF5 ({' '.join(str(err).split())[:200]}); it is not a results "
            f"file or it is damaged; {fix}"
        ) from None


def read(path: Path) -> xr.Dataset:
    """The whole file as an ``xarray.Dataset`` (attributes decoded, config as a string)."""
    header = read_header(path, TO_READ)
    with h5py.File(path, "r") as f:
        coords = {
            name: [_decode(v) for v in f[name][...]] if name in STRING_COORDS else f[name][...]
            for name in ALL_COORDS
            if name in f
        }
        variables = {
            name: (dims, f[name][...], {"long_name": long_name, "units": units})
            for name, (dims, long_name, units) in ALL_VARIABLES.items()
            if name in f
        }
        variables["layer_type"] = (
            ("layer",),
            np.array([_decode(v) for v in f["layer_type"]]),
            {"long_name": "module class of the injection point"},
        )
    attrs = {k: v for k, v in header.items() if k not in ("layer_done", "layer")}
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def save(path: Path, ds: xr.Dataset) -> None:
    """Write a complete dataset (e.g. a ``Result`` built in memory) as a results file."""
    coords = {k: ds[k].values.tolist() for k in ALL_COORDS if k in ds.coords}
    data = {name: ds[name].values for name in ALL_VARIABLES if name in ds}
    attrs = dict(ds.attrs)
    atomic_update(
        path, lambda f: _write_all(f, coords, list(ds["layer_type"].values), data, attrs), new=True
    )


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def config_of(header: Mapping[str, Any]) -> dict[str, Any]:
    """The scan identity stored in a file's ``config`` attribute, parsed as JSON."""
    try:
        cfg = json.loads(header["config"])["identity"]
    except (KeyError, TypeError, ValueError):
        cfg = None
    if not isinstance(cfg, dict):
        raise WalknoiseError(
            "the results file has no readable config; pass --overwrite to replace it"
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
