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
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr

from walknoise.errors import WalknoiseError

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


def create(
    path: Path, coords: Mapping[str, Any], layer_type: list[str], attrs: Mapping[str, Any]
) -> None:
    """Write a new file with the full grid preallocated (NaN, nothing done)."""
    shape = {k: len(v) for k, v in coords.items()}
    data: dict[str, np.ndarray] = {}
    for name, (dims, _, _) in VARIABLES.items():
        fill = 0 if name in INT_VARS else np.nan
        data[name] = np.full(
            [shape[d] for d in dims], fill, dtype=np.int8 if name in INT_VARS else np.float64
        )
    _atomic(path, lambda f: _write_all(f, coords, layer_type, data, attrs), new=True)


def _write_all(
    f: h5py.File,
    coords: Mapping[str, Any],
    layer_type: list[str],
    data: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any],
) -> None:
    f.create_dataset("layer", data=np.array(coords["layer"], dtype=object), dtype=STR)
    f.create_dataset("sigma", data=np.asarray(coords["sigma"], dtype=np.float64))
    f.create_dataset("repeat", data=np.asarray(coords["repeat"], dtype=np.int64))
    for name, (long_name, units) in COORDS.items():
        f[name].make_scale(name)
        f[name].attrs["long_name"] = long_name
        f[name].attrs["units"] = units
    ltype = f.create_dataset("layer_type", data=np.array(layer_type, dtype=object), dtype=STR)
    ltype.dims[0].attach_scale(f["layer"])
    ltype.attrs["long_name"] = "module class of the injection point"
    for name, (dims, long_name, units) in VARIABLES.items():
        arr = data[name]
        ds = f.create_dataset(name, data=arr)
        if name not in INT_VARS:  # flags use every value; only floats have a "missing"
            ds.attrs["_FillValue"] = np.float64(np.nan)
        ds.attrs["long_name"] = long_name
        ds.attrs["units"] = units
        for i, dim in enumerate(dims):
            ds.dims[i].attach_scale(f[dim])
    for key, value in attrs.items():
        f.attrs[key] = value


def write_layer(path: Path, index: int, values: Mapping[str, Any]) -> None:
    """Store every variable of one finished layer and mark it done, atomically."""

    def update(f: h5py.File) -> None:
        for name, value in values.items():
            f[name][index, ...] = value
        f["layer_done"][index] = 1

    _atomic(path, update)


def read_header(path: Path) -> dict[str, Any]:
    """Root attributes and ``layer_done`` of an existing file, checked to be ours."""
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _decode(v) for k, v in f.attrs.items()}
            if attrs.get("format") != FORMAT:
                raise WalknoiseError(
                    f"{path} is not a walknoise results file; choose another -o path "
                    "(or pass --overwrite to replace it)"
                )
            if int(attrs.get("format_version", 0)) != FORMAT_VERSION:
                raise WalknoiseError(
                    f"{path} has results format version {attrs.get('format_version')}, this "
                    f"walknoise reads version {FORMAT_VERSION}; rerun with --overwrite"
                )
            attrs["layer_done"] = f["layer_done"][...].astype(bool)
            attrs["layer"] = [_decode(v) for v in f["layer"][...]]
            return attrs
    except OSError as err:
        raise WalknoiseError(
            f"cannot read {path} as HDF5 ({err}); it is not a results "
            "file or it is damaged; pass --overwrite to replace it"
        ) from None


def read(path: Path) -> xr.Dataset:
    """The whole file as an ``xarray.Dataset`` (attributes decoded, config as a string)."""
    header = read_header(path)
    with h5py.File(path, "r") as f:
        coords = {
            "layer": header["layer"],
            "sigma": f["sigma"][...],
            "repeat": f["repeat"][...],
        }
        variables = {
            name: (dims, f[name][...], {"long_name": long_name, "units": units})
            for name, (dims, long_name, units) in VARIABLES.items()
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
    coords = {k: ds[k].values.tolist() for k in ("layer", "sigma", "repeat")}
    data = {name: ds[name].values for name in VARIABLES}
    attrs = dict(ds.attrs)
    _atomic(
        path, lambda f: _write_all(f, coords, list(ds["layer_type"].values), data, attrs), new=True
    )


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _atomic(path: Path, edit: Any, *, new: bool = False) -> None:
    """Apply ``edit`` to a copy of ``path`` and rename it into place."""
    path = Path(path)
    if not path.parent.exists():
        raise WalknoiseError(
            f"directory {path.parent} does not exist; create it or choose another output path"
        )
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if not new:
            shutil.copyfile(path, tmp)
        with h5py.File(tmp, "w" if new else "r+") as f:
            edit(f)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def config_of(header: Mapping[str, Any]) -> dict[str, Any]:
    """The scan identity stored in a file's ``config`` attribute, parsed as JSON."""
    try:
        cfg: dict[str, Any] = json.loads(header["config"])["identity"]
        return cfg
    except (KeyError, TypeError, ValueError):
        raise WalknoiseError(
            "the results file has no readable config; pass --overwrite to replace it"
        ) from None
