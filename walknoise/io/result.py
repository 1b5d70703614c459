"""``ResultBase``: what every family's result shares (its dataset, file, tables and repr).

A result is an ``xarray.Dataset`` with a few views on top; the file is that dataset written
by :mod:`walknoise.io.netcdf`. A subclass names its file format (``FORMAT``,
``FORMAT_VERSION``, ``WHAT`` for messages), the dimensions of one row of its table
(``CELL``) and a one-line description for ``repr``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

import pandas as pd
import xarray as xr

from walknoise.data_norm import Normalization
from walknoise.io import netcdf

__all__ = ["ResultBase"]


class ResultBase:
    """Everything is in ``dataset`` (an ``xarray.Dataset``)."""

    FORMAT: ClassVar[str]
    FORMAT_VERSION: ClassVar[int]
    WHAT: ClassVar[str]
    """The file's kind in messages: ``no such {WHAT} file``."""
    CELL: ClassVar[tuple[str, ...]]
    """Dimensions of one row of :meth:`to_dataframe`."""

    def __init__(self, dataset: xr.Dataset) -> None:
        self.dataset = dataset

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a file of this kind (its format and version are checked)."""
        return cls(cls._read(Path(path)))

    @classmethod
    def _read(cls, path: Path) -> xr.Dataset:
        return netcdf.load(path, cls.FORMAT, cls.FORMAT_VERSION, cls.WHAT)

    def save(self, path: str | Path) -> Path:
        """Write the results file (netCDF-4-compatible HDF5), replacing any old one."""
        return netcdf.save(path, self.dataset)

    @property
    def normalization(self) -> Normalization | None:
        """How the inputs were scaled (``data_normalization`` and its mean/std attributes);
        ``None`` for a file written before walknoise recorded it."""
        return Normalization.from_attrs(self.dataset.attrs)

    def to_xarray(self) -> xr.Dataset:
        return self.dataset

    def to_dataframe(self) -> pd.DataFrame:
        """Tidy table: one row per ``CELL``, a column per variable with exactly those dims."""
        names = [str(n) for n, var in self.dataset.data_vars.items() if var.dims == self.CELL]
        return self.dataset[names].to_dataframe().reset_index()

    def _describe(self) -> str:
        """What ``repr`` says after the class name."""
        return ", ".join(f"{n} {size}" for n, size in self.dataset.sizes.items())

    def __repr__(self) -> str:
        return f"<walknoise.{type(self).__name__} {self._describe()}>"

    def _repr_html_(self) -> str:
        return str(self.dataset._repr_html_())
