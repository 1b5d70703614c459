"""The one netCDF layer: every walknoise results file is written and read here.

Files are netCDF-4-compatible HDF5: every dimension is a coordinate variable made a
dimension scale, strings are variable-length UTF-8, floats carry ``_FillValue = NaN``
(integer flags and counts use every value, so they have none), variables keep their
``long_name``/``units`` and the root carries ``format``/``format_version`` (see
:mod:`walknoise.io.provenance`). ``xarray.open_dataset(path, engine="h5netcdf")`` opens any
of them.

Writing goes through h5py rather than ``Dataset.to_netcdf``: a scan rewrites one layer's
slab in place (:func:`write_at`) in a file whose layout must stay exactly the one
:func:`save` made (no chunking or compression chosen by a backend, booleans as int8), and
every write, whole or partial, edits a copy in memory that is written to a temporary file,
fsynced and renamed into place (``os.replace`` is atomic), so a reader never sees half a
file, and a full disk is one error with the old file intact. Reading goes through
xarray + h5netcdf after a cheap h5py look at the root attributes, so a foreign or outdated
file is refused with one line before xarray parses it.
"""

from __future__ import annotations

import errno
import glob
import io
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr

from walknoise.errors import WalknoiseError
from walknoise.io.files import temp_beside

__all__ = [
    "WRITING",
    "atomic_update",
    "header",
    "load",
    "open_dataset",
    "save",
    "stale_temps",
    "write_at",
]

STR = h5py.string_dtype("utf-8")
WRITING = threading.Lock()
"""Held while a results file is replaced; a hard stop (``walknoise.cli.interrupt``) waits for it."""
REWRITE = "check the path, or write the file again with this walknoise"
NO_SPACE = "free some space or choose another path"


# --- writing ----------------------------------------------------------------------------------


def save(path: str | Path, ds: xr.Dataset, fix: str = NO_SPACE) -> Path:
    """Write ``ds`` (every dim must have a coordinate) atomically to ``path``; an ``OSError``
    is one line ending with ``fix``."""
    path = Path(path)
    missing = [str(d) for d in ds.dims if d not in ds.coords]
    if missing:
        raise ValueError(f"dimensions without coordinates: {missing}")  # a bug, not a user error
    atomic_update(path, lambda f: _write(f, ds), new=True, fix=fix)
    return path


def write_at(
    path: Path,
    index: int,
    values: Mapping[str, Any],
    whole: Mapping[str, Any] | None = None,
    fix: str = NO_SPACE,
) -> None:
    """Set entry ``index`` of the leading axis of each of ``values`` (and all of each of
    ``whole``) in the existing file ``path``, atomically; an ``OSError`` ends with ``fix``."""

    def update(f: h5py.File) -> None:
        for name, value in values.items():
            f[name][index, ...] = value
        for name, value in (whole or {}).items():
            f[name][...] = value

    atomic_update(path, update, fix=fix)


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
        h5.attrs.update({key: _attr(value) for key, value in coord.attrs.items()})
    for name, var in ds.data_vars.items():
        h5 = _create(f, str(name), var.values)
        if var.dtype.kind == "f":  # only floats have a 'missing' value
            h5.attrs["_FillValue"] = np.asarray(np.nan, dtype=var.dtype)
        h5.attrs.update({key: _attr(value) for key, value in var.attrs.items()})
        for i, dim in enumerate(var.dims):
            h5.dims[i].attach_scale(f[str(dim)])
    f.attrs.update({key: _attr(value) for key, value in ds.attrs.items()})


# --- reading ----------------------------------------------------------------------------------


def header(
    path: str | Path,
    fmt: str,
    version: int,
    what: str,
    *,
    fix: str = REWRITE,
    inspect: Callable[[h5py.File], Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Root attributes of ``path`` (decoded), checked to be ``fmt`` version ``version``;
    ``inspect`` may look further into the open file and add entries. Every error is one
    line naming ``what`` (e.g. ``"results"``) and ending with ``fix``."""
    path = Path(path)
    if not path.is_file():
        raise WalknoiseError(f"no such {what} file: {path}; {fix}")
    try:
        with h5py.File(path, "r") as f:
            attrs = {key: _decode(value) for key, value in f.attrs.items()}
            if attrs.get("format") != fmt:
                found = attrs.get("format")
                raise WalknoiseError(
                    f"{path} is not a walknoise {what} file (format {found!r}); {fix}"
                )
            if attrs.get("format_version") != version:
                raise WalknoiseError(
                    f"{path} has {what} format version {attrs.get('format_version')!r}, this "
                    f"walknoise reads version {version}; {fix}"
                )
            return {**attrs, **(inspect(f) if inspect else {})}
    except OSError as err:
        raise _unreadable(path, err, what, fix) from None


def open_dataset(path: str | Path, what: str, fix: str = REWRITE) -> xr.Dataset:
    """The whole file in memory through xarray: strings as ``str``, attributes as plain
    Python values (no format check; see :func:`load`)."""
    path = Path(path)
    try:
        with xr.open_dataset(path, engine="h5netcdf") as opened:
            ds = opened.load()
    except (OSError, ValueError) as err:
        raise _unreadable(path, err, what, fix) from None
    # h5netcdf hands variable-length strings back as objects; make them plain str labels.
    strings = {
        str(name): (var.dims, var.values.astype(str), var.attrs)
        for name, var in ds.variables.items()
        if var.dtype == object
    }
    ds = ds.assign_coords({k: v for k, v in strings.items() if k in ds.coords})
    ds = ds.assign({k: v for k, v in strings.items() if k not in ds.coords})
    ds.attrs = {key: _decode(value) for key, value in ds.attrs.items()}
    return ds


def load(path: str | Path, fmt: str, version: int, what: str, fix: str = REWRITE) -> xr.Dataset:
    """Read a file written by :func:`save`, checking its ``format`` and version first."""
    header(path, fmt, version, what, fix=fix)
    return open_dataset(path, what, fix)


def _unreadable(path: Path, err: Exception, what: str, fix: str) -> WalknoiseError:
    detail = " ".join(str(err).split())[:200]
    return WalknoiseError(
        f"cannot read {path} as HDF5 ({detail}); it is not a {what} file or it is damaged; {fix}"
    )


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- atomic replacement -----------------------------------------------------------------------


def atomic_update(
    path: Path,
    edit: Callable[[h5py.File], None],
    *,
    new: bool = False,
    fix: str = NO_SPACE,
) -> None:
    """Apply ``edit`` to a copy of ``path`` (an empty file if ``new``) and rename it into
    place: a kill at any moment leaves the old file or the new one, never a torn one.

    The copy is edited in memory (HDF5's core driver) and written with plain file I/O, so a
    full disk or any other ``OSError`` surfaces as one :class:`WalknoiseError` (naming the
    path and the error, ending with ``fix``) rather than inside HDF5, where a failed write
    at file creation can crash the process; the file on disk stays as it was.
    """
    path = Path(path)
    if not path.parent.exists():
        raise WalknoiseError(
            f"directory {path.parent} does not exist; create it or choose another output path"
        )
    existed = path.exists()
    with WRITING, _interrupt_held():
        try:
            _replace(path, _edited_image(path, edit, new))
        except OSError as err:
            kept = "the file is intact" if existed else "nothing was written"
            raise WalknoiseError(
                f"cannot {'update' if existed else 'create'} {path}: {_os_error(err)}; "
                f"{kept}; {fix}"
            ) from None


def _edited_image(path: Path, edit: Callable[[h5py.File], None], new: bool) -> bytes:
    """The bytes of ``path`` (or of an empty file) after ``edit``, made in memory."""
    buffer = io.BytesIO(b"" if new else path.read_bytes())
    with h5py.File(buffer, "w" if new else "r+") as f:
        edit(f)
    return buffer.getvalue()


def _replace(path: Path, image: bytes) -> None:
    tmp = temp_beside(path)  # the new file's mode: the umask's, or the old file's
    try:
        with open(tmp, "wb") as fh:
            fh.write(image)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)  # so the rename itself survives a power cut
    finally:
        tmp.unlink(missing_ok=True)


def _os_error(err: OSError) -> str:
    """``No space left on device (ENOSPC)``: the system's text and the errno's name."""
    if err.errno is None:
        return " ".join(str(err).split())[:200]
    name = errno.errorcode.get(err.errno, str(err.errno))
    return f"{err.strerror or os.strerror(err.errno)} ({name})"


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
