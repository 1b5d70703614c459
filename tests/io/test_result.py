"""``ResultBase``: one dataset, one file, one table, one repr for every family's result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from walknoise.errors import WalknoiseError
from walknoise.io.result import ResultBase


class Toy(ResultBase):
    FORMAT = "walknoise-toy"
    FORMAT_VERSION = 2
    WHAT = "toy"
    CELL = ("run", "seed")


class Other(Toy):
    FORMAT = "walknoise-other"
    WHAT = "other"


def _toy() -> Toy:
    ds = xr.Dataset(
        {
            "score": (("run", "seed"), np.arange(6.0).reshape(3, 2)),
            "ok": (("run", "seed"), np.ones((3, 2), dtype=np.int8)),
            "curve": (("run", "seed", "step"), np.zeros((3, 2, 4))),
            "total": ((), 1.5),
        },
        coords={"run": ["a", "b", "c"], "seed": [0, 1], "step": np.arange(4)},
        attrs={"format": Toy.FORMAT, "format_version": Toy.FORMAT_VERSION},
    )
    return Toy(ds)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = _toy().save(tmp_path / "toy.h5")
    back = Toy.load(path)
    assert isinstance(back, Toy)
    xr.testing.assert_identical(back.dataset, _toy().dataset)
    assert back.to_xarray() is back.dataset


def test_load_checks_the_subclass_format(tmp_path: Path) -> None:
    path = _toy().save(tmp_path / "toy.h5")
    with pytest.raises(WalknoiseError, match="is not a walknoise other file"):
        Other.load(path)
    with pytest.raises(WalknoiseError, match="no such toy file"):
        Toy.load(tmp_path / "missing.h5")


def test_dataframe_has_a_row_per_cell_and_a_column_per_cell_variable() -> None:
    df = _toy().to_dataframe()
    assert list(df.columns) == ["run", "seed", "score", "ok"]
    assert len(df) == 6
    assert df.loc[(df["run"] == "c") & (df["seed"] == 1), "score"].item() == 5.0


def test_repr_names_the_class_and_sizes() -> None:
    toy = _toy()
    assert repr(toy) == "<walknoise.Toy run 3, seed 2, step 4>"
    assert "score" in toy._repr_html_()
