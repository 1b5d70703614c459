"""The results file: documented, netCDF-friendly, and its header checks."""

import os
import signal
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

from walknoise.errors import WalknoiseError
from walknoise.io import netcdf
from walknoise.io.netcdf import stale_temps
from walknoise.walk import store

DOC = Path(__file__).parents[2] / "docs" / "results-format.md"


def test_every_variable_is_documented() -> None:
    text = DOC.read_text()
    for name in [*store.ALL_VARIABLES, *store.ALL_COORDS, "layer_type"]:
        assert f"`{name}`" in text, name


def test_header_rejects_files_of_other_tools(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = [1, 2, 3]
    with pytest.raises(WalknoiseError, match="not a walknoise results file"):
        store.read_header(path)


def test_header_rejects_other_format_versions(tmp_path: Path) -> None:
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = store.FORMAT
        f.attrs["format_version"] = 0
    with pytest.raises(WalknoiseError, match="format version 0"):
        store.read_header(path)


def test_every_axis_is_a_dimension_scale(tmp_path: Path) -> None:
    path = tmp_path / "r.h5"
    coords = {"layer": ["<input>", "fc1"], "sigma": [0.1, 1.0], "repeat": [0, 1, 2]}
    store.create(path, coords, ["Input", "Linear"], {"format": store.FORMAT})
    with h5py.File(path) as f:
        for name, (dims, _, _) in store.VARIABLES.items():
            for i, dim in enumerate(dims):
                scales = [s.name for s in f[name].dims[i].values()]
                assert scales == [f"/{dim}"], (name, dim)
        assert f["layer"].dtype.kind == "O"  # variable-length UTF-8
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary left behind


def _small_file(path: Path) -> None:
    coords = {"layer": ["<input>", "fc1"], "sigma": [0.1, 1.0], "repeat": [0, 1, 2]}
    store.create(path, coords, ["Input", "Linear"], {"format": store.FORMAT, "format_version": 1})


@pytest.mark.usefixtures("ctrl_c")  # SIGINT must raise, whatever we inherited
def test_ctrl_c_during_an_update_lands_after_it(tmp_path: Path, monkeypatch) -> None:
    """A KeyboardInterrupt halfway through a write would drop a finished layer."""
    path = tmp_path / "r.h5"
    _small_file(path)
    fsync = os.fsync

    def interrupted_fsync(fd: int) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of the update
        fsync(fd)

    monkeypatch.setattr(netcdf.os, "fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        store.write_layer(path, 1, {"accuracy": np.full((2, 3), 0.5)})
    monkeypatch.undo()
    assert store.read_header(path)["layer_done"].tolist() == [False, True]
    assert store.read(path)["accuracy"].values[1].tolist() == [[0.5] * 3] * 2
    assert stale_temps(path) == []


@pytest.mark.parametrize("damage", ["drop accuracy", "short layer_done", "drop sigma"])
def test_damaged_file_is_one_clear_error(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "r.h5"
    _small_file(path)
    with h5py.File(path, "r+") as f:
        if damage == "drop accuracy":
            del f["accuracy"]
        elif damage == "drop sigma":
            del f["sigma"]
        else:
            del f["layer_done"]
            f["layer_done"] = np.ones(5, np.int8)
    with pytest.raises(WalknoiseError, match="damaged walknoise results file") as info:
        store.read(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "config", ["__import__('os').system('touch pwned')", '{"identity": [1]}', "{}", "null"]
)
def test_config_is_parsed_as_json_never_evaluated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WalknoiseError, match="no readable config"):
        store.config_of({"config": config})
    assert not (tmp_path / "pwned").exists()


def test_the_file_holds_what_the_scan_holds_in_memory(tmp_path: Path) -> None:
    """A scan keeps working on the dataset it wrote, so reading the file back must give the
    same dataset: coordinates typed alike, strings as str, flags int8, metadata kept."""
    coords = {"layer": ["<input>", "fc1"], "sigma": [0.1, 1.0], "repeat": [0, 1, 2]}
    attrs = {"format": store.FORMAT, "format_version": 1, "noise": "additive", "seed": 3}
    written = store.create(tmp_path / "r.h5", coords, ["Input", "Linear"], attrs)
    back = store.read(tmp_path / "r.h5")
    xr.testing.assert_identical(back, written)
    assert back["layer_done"].dtype == np.int8 and back["sigma"].dtype == np.float64
    assert back["accuracy"].attrs == {"long_name": "test accuracy under noise", "units": "1"}


def test_write_layer_sets_the_layer_and_its_flag_only(tmp_path: Path) -> None:
    path = tmp_path / "r.h5"
    _small_file(path)
    store.write_layer(path, 0, {"accuracy": np.full((2, 3), 0.25), "midpoint": 0.5})
    ds = store.read(path)
    assert ds["layer_done"].values.tolist() == [1, 0]
    assert ds["midpoint"].values[0] == 0.5 and np.isnan(ds["midpoint"].values[1])
    assert ds["accuracy"].values[0].tolist() == [[0.25] * 3] * 2
    assert np.isnan(ds["accuracy"].values[1]).all()
