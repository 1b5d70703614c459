"""``GNIResult``: gradient-noise statistics as xarray and pandas, and a plain-text summary."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from walknoise.gni import store as gni_store
from walknoise.io.result import ResultBase
from walknoise.table import text_table

# (table column, summary title); "/coord", "/robust": scaled per coordinate by std, by MAD.
_COLUMNS = (
    ("param_layer", "tensor"),
    ("sigma", "σ"),
    ("step", "step"),
    ("alpha", "α"),
    ("alpha_coord", "α/coord"),
    ("alpha_robust", "α/robust"),
    ("skewness", "skew"),
    ("skewness_coord", "skew/coord"),
    ("kurtosis", "kurt"),
    ("kurtosis_coord", "kurt/coord"),
    ("stable_alpha", "stable α"),
    ("stable_beta", "stable β"),
)


class GNIResult(ResultBase):
    """Gradient-noise statistics; everything is in ``dataset`` (an ``xarray.Dataset``)."""

    FORMAT = gni_store.FORMAT
    FORMAT_VERSION = gni_store.FORMAT_VERSION
    WHAT = gni_store.WHAT
    CELL = ("param_layer", "sigma", "step")

    def table(self) -> pd.DataFrame:
        """One row per (param_layer, sigma, step): α, skewness, kurtosis under both
        standardisations (suffix ``_coord``: per coordinate by std, ``_robust``: by MAD),
        stable fit and RMS."""
        ds = self.dataset
        parts = [ds[["stable_alpha", "stable_beta", "rms"]].to_dataframe()]
        for mode, suffix in (("layer", ""), ("coordinate", "_coord"), ("robust", "_robust")):
            sel = ds[["alpha", "skewness", "kurtosis"]].sel(standardize=mode, drop=True)
            parts.append(sel.to_dataframe().add_suffix(suffix))
        return pd.concat(parts, axis=1).reset_index()

    def summary(self) -> str:
        """The table as aligned text, with the losses and injection points above it."""
        ds = self.dataset
        points = ", ".join(json.loads(str(ds.attrs.get("injection_points", "[]"))))
        head = [f"{ds.attrs.get('noise')} noise at {points or '(none)'}"]
        for s in ds["sigma"].values:
            noisy = float(ds["loss_noisy"].sel(sigma=s).isel(step=-1))
            clean = float(ds["loss_clean"].isel(step=-1))
            head.append(f"σ = {s:.3g}: loss clean {clean:.4f}, under noise {noisy:.4f}")
        table = self.table()[[column for column, _ in _COLUMNS]]
        rows: list[tuple[str, ...]] = [tuple(title for _, title in _COLUMNS)]
        for rec in table.itertuples(index=False):
            rows.append((str(rec[0]), f"{rec[1]:.3g}", str(rec[2]), *map(_num, rec[3:])))
        return "\n".join([*head, text_table(rows)])

    def to_dataframe(self) -> pd.DataFrame:
        """The :meth:`table`."""
        return self.table()

    def _describe(self) -> str:
        ds = self.dataset
        return (
            f"{ds.attrs.get('noise')} noise: {ds.sizes['param_layer']} parameter tensors × "
            f"{ds.sizes['sigma']} σ × {ds.sizes['step']} steps"
        )


def _num(value: object) -> str:
    v = float(value)  # type: ignore[arg-type]
    return "-" if math.isnan(v) else f"{v:.3f}"


def load_gni(path: str | Path) -> GNIResult:
    """Read a file written by ``walknoise gni run``, ``GNIResult.save`` or
    ``walknoise train --gni-every``."""
    return GNIResult.load(path)
