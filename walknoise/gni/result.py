"""``GNIResult``: gradient-noise statistics as xarray and pandas, and a plain-text summary."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from walknoise.gni import store as gni_store
from walknoise.io.result import ResultBase
from walknoise.table import text_table

# (table column(s), summary title): the stable fit with its interval, then the block
# estimator and moments; "/coord", "/robust": scaled per coordinate by std, by MAD.
_COLUMNS = (
    (("param_layer",), "tensor"),
    (("sigma",), "σ"),
    (("step",), "step"),
    (("alpha", "alpha_low", "alpha_high"), "α [95% CI]"),
    (("beta", "beta_low", "beta_high"), "β [95% CI]"),
    (("alpha_mad", "alpha_mad_low", "alpha_mad_high"), "α/MAD [95% CI]"),
    (("alpha_block",), "α block"),
    (("alpha_block_coord",), "block/coord"),
    (("alpha_block_robust",), "block/robust"),
    (("skewness",), "skew"),
    (("kurtosis",), "kurt"),
)
_FIT = [
    *("alpha", "alpha_low", "alpha_high", "beta", "beta_low", "beta_high", "stable_n", "rms"),
    *("alpha_mad", "alpha_mad_low", "alpha_mad_high", "beta_mad", "beta_mad_low", "beta_mad_high"),
]


class GNIResult(ResultBase):
    """Gradient-noise statistics; everything is in ``dataset`` (an ``xarray.Dataset``)."""

    FORMAT = gni_store.FORMAT
    FORMAT_VERSION = gni_store.FORMAT_VERSION
    WHAT = gni_store.WHAT
    CELL = ("param_layer", "sigma", "step")

    def table(self) -> pd.DataFrame:
        """One row per (param_layer, sigma, step): the stable fit's α and β with their
        bootstrap intervals (suffix ``_mad``: each coordinate divided by its MAD first),
        RMS, and the block α, skewness, kurtosis under the three
        scalings (suffix ``_coord``: per coordinate by std, ``_robust``: by MAD)."""
        ds = self.dataset
        parts = [ds[_FIT].to_dataframe()]
        for mode, suffix in (("layer", ""), ("coordinate", "_coord"), ("robust", "_robust")):
            sel = ds[["alpha_block", "skewness", "kurtosis"]].sel(standardize=mode, drop=True)
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
        table = self.table()
        rows: list[tuple[str, ...]] = [tuple(title for _, title in _COLUMNS)]
        for _, rec in table.iterrows():
            cells = [_cell([rec[c] for c in columns]) for columns, _ in _COLUMNS[3:]]
            rows.append((str(rec["param_layer"]), f"{rec['sigma']:.3g}", str(rec["step"]), *cells))
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


def _num(value: object, digits: int = 3) -> str:
    v = float(value)  # type: ignore[arg-type]
    return "-" if math.isnan(v) else f"{v:.{digits}f}"


def _cell(values: list[object]) -> str:
    """A value, or a value and its interval: ``1.73 [1.70, 1.76]`` (two decimals: the
    bootstrap intervals are rarely narrower than 0.01)."""
    if len(values) == 1:
        return _num(values[0])
    low, high = (float(v) for v in values[1:])  # type: ignore[arg-type]
    interval = "" if math.isnan(low) else f" [{_num(low, 2)}, {_num(high, 2)}]"
    return _num(values[0], 2) + interval


def load_gni(path: str | Path) -> GNIResult:
    """Read a file written by ``walknoise gni run``, ``GNIResult.save`` or
    ``walknoise train --gni-every``."""
    return GNIResult.load(path)
