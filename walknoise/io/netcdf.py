"""NIN result files: netCDF-4-compatible HDF5 written with h5py from an ``xarray.Dataset``.

The conventions of :mod:`walknoise.walk.store`: every dimension is a coordinate variable made a
dimension scale, strings are UTF-8, every variable has ``long_name``/``units``, the root
carries ``format``/``format_version``, versions and the config as JSON, and the file is
written to a temporary copy, fsynced and renamed into place (``os.replace`` is atomic), so
a reader never sees half a file. ``xarray.open_dataset(path, engine="h5netcdf")`` opens it.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr

from walknoise.errors import WalknoiseError

STR = h5py.string_dtype("utf-8")
WRITING = threading.Lock()
"""Held while a results file is replaced; a hard stop (``walknoise.cli.interrupt``) waits for it."""


def _array(values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind in "OUS":
        return np.array([str(v) for v in arr.ravel()], dtype=object).reshape(arr.shape)
    return arr


def _create(f: h5py.File, name: str, values: Any) -> h5py.Dataset:
    arr = _array(values)
    if arr.dtype == object:
        return f.create_dataset(name, data=arr, dtype=STR)
    return f.create_dataset(name, data=arr)


def _attr(value: Any) -> Any:
    if isinstance(value, bool | np.bool_):
        return np.int8(value)
    return value


def _write(f: h5py.File, ds: xr.Dataset) -> None:
    for dim in ds.dims:
        coord = ds[dim]
        h5 = _create(f, str(dim), coord.values)
        h5.make_scale(str(dim))
        for key, value in coord.attrs.items():
            h5.attrs[key] = _attr(value)
    for name, var in ds.data_vars.items():
        h5 = _create(f, str(name), var.values)
        if var.dtype.kind == "f":  # only floats have a 'missing' value
            h5.attrs["_FillValue"] = np.asarray(np.nan, dtype=var.dtype)
        for key, value in var.attrs.items():
            h5.attrs[key] = _attr(value)
        for i, dim in enumerate(var.dims):
            h5.dims[i].attach_scale(f[str(dim)])
    for key, value in ds.attrs.items():
        f.attrs[key] = _attr(value)


def save(path: str | Path, ds: xr.Dataset) -> Path:
    """Write ``ds`` (every dim must have a coordinate) atomically to ``path``."""
    path = Path(path)
    missing = [str(d) for d in ds.dims if d not in ds.coords]
    if missing:
        raise ValueError(f"dimensions without coordinates: {missing}")  # a bug, not a user error
    atomic_update(path, lambda f: _write(f, ds), new=True)
    return path


def load(path: str | Path, fmt: str, version: int, what: str) -> xr.Dataset:
    """Read a file written by :func:`save`, checking its ``format`` and version."""
    path = Path(path)
    if not path.is_file():
        raise WalknoiseError(f"no such {what} file: {path}; check the path")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as opened:
            ds = opened.load()
    except (OSError, ValueError) as err:
        first = (str(err).strip().splitlines() or [""])[0][:120]
        raise WalknoiseError(f"cannot read {path} as a {what} file ({first})") from None
    if ds.attrs.get("format") != fmt:
        raise WalknoiseError(f"{path} is not a {what} file (format {ds.attrs.get('format')!r})")
    if int(ds.attrs.get("format_version", 0)) != version:
        raise WalknoiseError(
            f"{path} has {what} format version {ds.attrs.get('format_version')}; this walknoise "
            f"reads version {version}: rerun to rewrite it"
        )
    return ds


def atomic_update(path: Path, edit: Any, *, new: bool = False) -> None:
    """Apply ``edit`` to a copy of ``path`` (an empty file if ``new``) and rename it into
    place: a kill at any moment leaves the old file or the new one, never a torn one."""
    path = Path(path)
    if not path.parent.exists():
        raise WalknoiseError(
            f"directory {path.parent} does not exist; create it or choose another output path"
        )
    with WRITING, _interrupt_held():
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
            _fsync_dir(path.parent)  # so the rename itself survives a power cut
        finally:
            tmp.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a directory; the rename is atomic anyway
        pass
    finally:
        os.close(fd)


@contextmanager
def _interrupt_held() -> Iterator[None]:
    """Hold Ctrl-C back until the block ends: an update takes milliseconds and carries a
    finished layer, which a KeyboardInterrupt halfway would throw away."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals
        return
    caught: list[tuple[int, Any]] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(*caught[0])


def stale_temps(path: Path) -> list[Path]:
    """Copies that ``atomic_update`` leaves behind when its process is killed mid-update."""
    path = Path(path)
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
