"""``Result``: a scan's numbers as xarray and pandas, with the midpoint table."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from walknoise.errors import WalknoiseError
from walknoise.io.result import ResultBase
from walknoise.walk import store
from walknoise.walk.schema import METRIC_VARIABLES, MIDPOINT_VARIABLES, SEARCH_VARIABLES

CELL_VARS = (
    "accuracy",
    "accuracy_drop",
    "loss",
    "nonfinite_fraction",
    "topk_accuracy",
    "agreement",
    "kl_divergence",
)
MIDPOINT_NAMES = (
    "midpoint",
    "midpoint_status",
    "midpoint_low",
    "midpoint_high",
    *MIDPOINT_VARIABLES,
)
DEFAULT_RTOL = 0.05


class Result(ResultBase):
    """The outcome of a scan; everything is in ``dataset`` (an ``xarray.Dataset``)."""

    FORMAT = store.FORMAT
    FORMAT_VERSION = store.FORMAT_VERSION
    WHAT = "results"
    CELL = ("layer", "sigma", "repeat")

    @classmethod
    def _read(cls, path: Path) -> xr.Dataset:
        return store.read(path)  # also checks the layout a resume relies on

    @property
    def accuracy(self) -> xr.DataArray:
        """Accuracy per cell, dims ``(layer, sigma, repeat)``."""
        return self.dataset["accuracy"]

    @property
    def layers(self) -> list[str]:
        return [str(v) for v in self.dataset["layer"].values]

    @property
    def sigmas(self) -> np.ndarray:
        return np.asarray(self.dataset["sigma"].values)

    @property
    def clean_accuracy(self) -> float:
        return float(self.dataset.attrs["clean_accuracy"])

    @property
    def chance_accuracy(self) -> float:
        return float(self.dataset.attrs["chance_accuracy"])

    @property
    def complete(self) -> bool:
        """Whether every layer of the grid has been computed."""
        return bool(self.dataset["layer_done"].values.all())

    @property
    def phases(self) -> list[str]:
        """The phases this file holds: ``eval``, ``train`` or both."""
        phase = str(self.dataset.attrs.get("phase", "eval"))
        return ["eval", "train"] if phase == "both" else [phase]

    def for_phase(self, phase: str) -> Result:
        """A view whose ``accuracy``/``midpoint*`` are those of ``phase`` (for plots)."""
        if phase not in self.phases:
            raise WalknoiseError(
                f"this file holds phase {'/'.join(self.phases)}, not {phase!r}; "
                f"choose phase={self.phases[0]!r}",
                argument="phase",
            )
        if phase == "eval":
            return self
        ds = self.dataset.copy()
        for name in (
            "accuracy",
            "accuracy_drop",
            "loss",
            *MIDPOINT_NAMES,
            "layer_done",
        ):
            if "trained_" + name in ds:  # bracket and flag: absent from older files
                ds[name] = ds["trained_" + name]
        # eval-only variables with no train-phase counterpart would read as this phase's
        eval_only = ["nonfinite_fraction", "midpoint_per_repeat", *SEARCH_VARIABLES]
        eval_only += list(METRIC_VARIABLES)
        return Result(ds.drop_vars(eval_only, errors="ignore"))

    @property
    def rtol(self) -> float:
        """The scan's midpoint precision (``rtol`` of its config; 0.05 if not recorded)."""
        try:
            return float(store.config_of(self.dataset.attrs).get("rtol", DEFAULT_RTOL))
        except WalknoiseError:
            return DEFAULT_RTOL

    def midpoints(self, phase: str | None = None) -> pd.DataFrame:
        """One row per layer: the midpoint σ, how precisely it is known, and its module type.

        Columns:

        * ``midpoint``: σ where the repeat-mean accuracy first falls halfway from clean to
          chance (or the metric the file's ``midpoint_metric`` attribute names crosses
          halfway from ``midpoint_reference`` to ``midpoint_end``), interpolated linearly
          in log σ between ``bracket_low`` and ``bracket_high``, the two evaluated σ around
          the crossing; ``within_rtol`` says whether they are at most ``1 + rtol`` apart.
          In the eval phase the refinement evaluates extra σ inside the grid interval until
          they are; a train-phase midpoint (each σ a training) or one of a scan without
          refinement is known only to its bracket, and should be read as the bracket.
        * ``reached``, ``status``: 1 reached, 0 not reached (> σ max), -1 at or below σ min.
        * ``low``, ``high``: bootstrap 95% interval over the repeats. In the eval phase the
          repeats are independent noise draws on one model; in the train phase
          (``phase="train"``) each repeat is an independent training (seed + repeat) under
          its own draws, so the interval covers training-to-training variation too.
        * ``nonmonotone``: the mean accuracy rises again after the crossing by more than the
          spread over repeats: the curve has another crossing or a dip the midpoint hides.
        * ``type``, ``done``: module class of the point; whether the layer is computed.
        """
        ds = self.dataset
        pre = "trained_" if (phase or self.phases[0]) == "train" else ""

        def optional(name: str) -> np.ndarray:  # absent from files written before issue 13
            return ds[pre + name].values if pre + name in ds else np.full(len(self.layers), np.nan)

        b_low, b_high = optional("midpoint_bracket_low"), optional("midpoint_bracket_high")
        return pd.DataFrame(
            {
                "type": ds["layer_type"].values,
                "midpoint": ds[pre + "midpoint"].values,
                "reached": ds[pre + "midpoint_status"].values == 1,
                "status": ds[pre + "midpoint_status"].values,
                "low": ds[pre + "midpoint_low"].values,
                "high": ds[pre + "midpoint_high"].values,
                "bracket_low": b_low,
                "bracket_high": b_high,
                "within_rtol": b_high / b_low <= 1 + self.rtol * (1 + 1e-9),  # float slack
                "nonmonotone": optional("midpoint_nonmonotone") == 1,
                "done": ds[pre + "layer_done"].values.astype(bool),
            },
            index=pd.Index(self.layers, name="layer"),
        )

    def to_dataframe(self, phase: str | None = None) -> pd.DataFrame:
        """Tidy table, one row per (layer, sigma, repeat) cell of ``phase`` (default: the
        file's first phase; ``"train"``: the models trained under the noise)."""
        view = self.for_phase(phase or self.phases[0])
        names = [v for v in CELL_VARS if v in view.dataset]
        return view.dataset[names].to_dataframe().reset_index()

    def _describe(self) -> str:
        ds = self.dataset
        return (
            f"{ds.attrs.get('noise')} noise: {len(self.layers)} layers × "
            f"{ds.sizes['sigma']} σ × {ds.sizes['repeat']} repeats, clean accuracy "
            f"{self.clean_accuracy:.4f}"
        )

    def _repr_html_(self) -> str:
        """Jupyter: the one-line summary, the midpoint table, then xarray's dataset view."""
        table = self.midpoints().to_html(float_format=lambda v: f"{v:.4g}", na_rep="–")
        return (
            f"<div><p><b>walknoise.Result</b>: {html.escape(self._describe())}</p>"
            f"{table}{super()._repr_html_()}</div>"
        )


def load(path: str | Path) -> Result:
    """Read a results file written by ``walknoise scan`` or ``Result.save``."""
    return Result.load(path)
