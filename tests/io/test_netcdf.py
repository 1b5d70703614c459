"""NIN result files: netCDF-4 via h5py, written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from walknoise.errors import WalknoiseError
from walknoise.io import netcdf as nin_store


def _dataset(value: float = 1.0) -> xr.Dataset:
    ds = xr.Dataset(
        {"v": (("name", "t"), np.full((2, 3), value), {"long_name": "a value", "units": "1"})},
        coords={"name": ["α", "b"], "t": np.arange(3)},
        attrs={"format": "x", "format_version": 1, "flag": True},
    )
    return ds


def test_round_trip_with_utf8_and_scales(tmp_path: Path) -> None:
    path = nin_store.save(tmp_path / "r.h5", _dataset())
    back = nin_store.load(path, "x", 1, "test")
    assert back["name"].values.tolist() == ["α", "b"]
    assert back.attrs["flag"] == 1
    xr.testing.assert_equal(back["v"], _dataset()["v"])
    assert [p.name for p in tmp_path.iterdir()] == ["r.h5"]  # no temp file left


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = nin_store.save(tmp_path / "r.h5", _dataset(1.0))
    bad = _dataset(2.0)
    bad.attrs["unstorable"] = {"a dict": 1}
    with pytest.raises(TypeError):
        nin_store.save(path, bad)
    assert float(nin_store.load(path, "x", 1, "test")["v"].values[0, 0]) == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["r.h5"]


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(WalknoiseError, match="does not exist"):
        nin_store.save(tmp_path / "no" / "r.h5", _dataset())
    path = nin_store.save(tmp_path / "r.h5", _dataset())
    with pytest.raises(WalknoiseError, match="version"):
        nin_store.load(path, "x", 2, "test")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(WalknoiseError, match="cannot read"):
        nin_store.load(tmp_path / "junk.h5", "x", 1, "test")
