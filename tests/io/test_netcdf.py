"""The one netCDF layer: whole files written atomically, read back through xarray."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

from walknoise.errors import WalknoiseError
from walknoise.io import netcdf


def _dataset(value: float = 1.0) -> xr.Dataset:
    ds = xr.Dataset(
        {
            "v": (("name", "t"), np.full((2, 3), value), {"long_name": "a value", "units": "1"}),
            "flag": (("name",), np.array([1, -1], dtype=np.int8), {"long_name": "a flag"}),
            "kind": (("name",), ["Linear", "Input"]),
        },
        coords={"name": ["α", "b"], "t": np.arange(3)},
        attrs={"format": "x", "format_version": 1, "flag": True},
    )
    ds["v"].values[1, 2] = np.nan
    ds["name"].attrs.update(long_name="a name", units="")
    return ds


def test_round_trip_keeps_strings_flags_and_nans(tmp_path: Path) -> None:
    path = netcdf.save(tmp_path / "r.h5", _dataset())
    back = netcdf.load(path, "x", 1, "test")
    assert back["name"].values.tolist() == ["α", "b"]
    assert back["name"].dtype.kind == "U" and back["kind"].dtype.kind == "U"
    assert back["kind"].values.tolist() == ["Linear", "Input"]
    assert back["flag"].dtype == np.int8 and back["flag"].values.tolist() == [1, -1]
    assert np.isnan(back["v"].values[1, 2]) and back["v"].values[0, 0] == 1.0
    assert back["name"].attrs == {"long_name": "a name", "units": ""}
    assert back.attrs["flag"] == 1 and type(back.attrs["format_version"]) is int
    xr.testing.assert_equal(back, _dataset().assign_attrs(flag=1))
    assert [p.name for p in tmp_path.iterdir()] == ["r.h5"]  # no temp file left


def test_file_is_netcdf4_for_other_readers(tmp_path: Path) -> None:
    path = netcdf.save(tmp_path / "r.h5", _dataset())
    with h5py.File(path) as f:
        assert [s.name for s in f["v"].dims[0].values()] == ["/name"]
        assert [s.name for s in f["v"].dims[1].values()] == ["/t"]
        assert f["name"].dtype.kind == "O"  # variable-length UTF-8
        assert np.isnan(f["v"].attrs["_FillValue"])
        assert "_FillValue" not in f["flag"].attrs  # a flag uses every value
    with xr.open_dataset(path, engine="h5netcdf") as plain:
        assert int(plain["flag"].sum()) == 0 and plain.sizes == {"name": 2, "t": 3}


def test_write_at_updates_one_entry_of_the_leading_axis(tmp_path: Path) -> None:
    path = netcdf.save(tmp_path / "r.h5", _dataset())
    netcdf.write_at(path, 1, {"v": [7.0, 8.0, 9.0], "flag": 5}, whole={"kind": ["x", "y"]})
    back = netcdf.load(path, "x", 1, "test")
    assert back["v"].values.tolist() == [[1.0] * 3, [7.0, 8.0, 9.0]]
    assert back["flag"].values.tolist() == [1, 5]
    assert back["kind"].values.tolist() == ["x", "y"]
    assert netcdf.stale_temps(path) == []


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = netcdf.save(tmp_path / "r.h5", _dataset(1.0))
    bad = _dataset(2.0)
    bad.attrs["unstorable"] = {"a dict": 1}
    with pytest.raises(TypeError):
        netcdf.save(path, bad)
    assert float(netcdf.load(path, "x", 1, "test")["v"].values[0, 0]) == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["r.h5"]


def test_a_dimension_without_coordinate_is_a_bug(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="without coordinates"):
        netcdf.save(tmp_path / "r.h5", xr.Dataset({"v": ("x", [1.0])}))


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("missing", "no such test file"),
        ("text", "cannot read .* as HDF5"),
        ("other format", r"is not a walknoise test file \(format 'y'\)"),
        ("no format", r"is not a walknoise test file \(format None\)"),
        ("newer version", "has test format version 2, this walknoise reads version 1"),
        ("version as text", "has test format version '1'"),
    ],
)
def test_wrong_files_give_one_line_errors(tmp_path: Path, case: str, words: str) -> None:
    path = tmp_path / "r.h5"
    if case == "text":
        path.write_text("layer,sigma\n")
    elif case != "missing":
        attrs = {
            "other format": {"format": "y", "format_version": 1},
            "no format": {},
            "newer version": {"format": "x", "format_version": 2},
            "version as text": {"format": "x", "format_version": "1"},
        }[case]
        ds = _dataset()
        ds.attrs = attrs
        netcdf.save(path, ds)
    with pytest.raises(WalknoiseError, match=words) as info:
        netcdf.load(path, "x", 1, "test", fix="do this")
    assert "\n" not in str(info.value)
    assert str(info.value).endswith("; do this")


def test_directory_must_exist(tmp_path: Path) -> None:
    with pytest.raises(WalknoiseError, match="does not exist"):
        netcdf.save(tmp_path / "no" / "r.h5", _dataset())


def test_header_reads_root_attributes_and_what_inspect_adds(tmp_path: Path) -> None:
    path = netcdf.save(tmp_path / "r.h5", _dataset())
    head = netcdf.header(path, "x", 1, "test", inspect=lambda f: {"n": f["v"].shape[0]})
    assert head == {"format": "x", "format_version": 1, "flag": 1, "n": 2}
