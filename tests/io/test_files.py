"""Files walknoise writes get the user's umask (issue 15, item 5), whatever writes them."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import xarray as xr

from tests.conftest import tiny_mlp
from walknoise.errors import WalknoiseError
from walknoise.io import netcdf
from walknoise.models import save_checkpoint


@pytest.fixture
def umask() -> Iterator[object]:
    """Set the process umask for one test and restore the caller's afterwards."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _dataset() -> xr.Dataset:
    return xr.Dataset({"v": (("t",), [1.0, 2.0])}, coords={"t": [0, 1]})


def _checkpoint(path: Path) -> None:
    save_checkpoint(
        path, tiny_mlp(), arch="x", arch_kwargs={}, input_shape=(1, 4, 4), num_classes=4, meta={}
    )


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_files_get_the_umask(umask, tmp_path: Path, mask: int, expected: int) -> None:
    umask(mask)
    assert _mode(netcdf.save(tmp_path / "r.h5", _dataset())) == expected
    _checkpoint(tmp_path / "m.pt")
    assert _mode(tmp_path / "m.pt") == expected


def test_an_update_keeps_the_files_mode(umask, tmp_path: Path) -> None:
    path = netcdf.save(tmp_path / "r.h5", _dataset())
    path.chmod(0o640)  # the user's choice, not the umask's
    umask(0o077)
    netcdf.write_at(path, 1, {"v": 5.0})
    assert _mode(path) == 0o640
    netcdf.save(path, _dataset())  # replacing it keeps it too
    assert _mode(path) == 0o640
    assert netcdf.stale_temps(path) == []


def _disk_full(monkeypatch: pytest.MonkeyPatch, after: int = 0) -> list[int]:
    """Every ``os.fsync`` of a file after the first ``after`` fails as on a full disk (the
    moment a real ENOSPC shows at the latest); directory fsyncs pass."""
    calls: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            calls.append(fd)
            if len(calls) > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def test_disk_full_at_creation_is_one_line_and_leaves_nothing(tmp_path, monkeypatch) -> None:
    _disk_full(monkeypatch)
    path = tmp_path / "r.h5"
    with pytest.raises(WalknoiseError) as err:
        netcdf.save(path, _dataset())
    message = str(err.value)
    assert message.startswith(f"cannot create {path}: No space left on device")
    assert "\n" not in message and not path.exists() and netcdf.stale_temps(path) == []


def test_disk_full_at_an_update_leaves_the_file_intact(tmp_path, monkeypatch) -> None:
    path = netcdf.save(tmp_path / "r.h5", _dataset())
    before = path.read_bytes()
    _disk_full(monkeypatch)
    full = r"cannot update .*: No space left on device \(ENOSPC\); the file is intact; run it"
    with pytest.raises(WalknoiseError, match=full):
        netcdf.write_at(path, 1, {"v": 5.0}, fix="run it again")
    assert path.read_bytes() == before and netcdf.stale_temps(path) == []
    assert netcdf.open_dataset(path, "test")["v"].values.tolist() == [1.0, 2.0]
