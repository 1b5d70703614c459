"""The results file: documented, netCDF-friendly, and its header checks."""

from pathlib import Path

import h5py
import pytest

from walknoise import store
from walknoise.errors import WalknoiseError

DOC = Path(__file__).parent.parent / "docs" / "results-format.md"


def test_every_variable_is_documented() -> None:
    text = DOC.read_text()
    for name in [*store.VARIABLES, *store.COORDS, "layer_type"]:
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
