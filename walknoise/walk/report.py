"""Plain-text presentation of results (used by the CLI, usable in notebooks)."""

from __future__ import annotations

import math

from walknoise.table import text_table
from walknoise.walk.metrics import BELOW_RANGE, REACHED
from walknoise.walk.result import Result


def _sig(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3g}"


def _no_interval(result: Result) -> str:
    """Why a reached midpoint has no bootstrap interval."""
    if result.dataset.sizes["repeat"] < 2:
        return "- (needs 2+ repeats)"
    if "search_visits" in result.dataset:
        return "- (not with --midpoint-search)"
    return "-"


def midpoint_table(result: Result) -> str:
    """Each layer's midpoint noise level, its bootstrap interval and module type (per phase)."""
    return "\n\n".join(_phase_table(result, phase) for phase in result.phases)


def _phase_table(result: Result, phase: str) -> str:
    table = result.midpoints(phase)
    sigma_max, sigma_min = result.sigmas.max(), result.sigmas.min()
    title = "midpoint σ" if phase == "eval" else "midpoint σ (noise-trained)"
    rows = [("layer", "type", title, "95% interval")]
    for layer, row in table.iterrows():
        if not row["done"]:
            mid, interval = "(not computed)", ""
        elif row["status"] == REACHED:
            mid = _sig(row["midpoint"])
            interval = f"{_sig(row['low'])} – {_sig(row['high'])}"
            if math.isnan(row["low"]):
                interval = _no_interval(result)
            elif math.isnan(row["high"]):
                interval = f"{_sig(row['low'])} – > {sigma_max:.3g}"
        elif row["status"] == BELOW_RANGE:
            mid, interval = f"<= {sigma_min:.3g}", ""
        else:
            mid, interval = f"> {sigma_max:.3g}", ""
        rows.append((str(layer), str(row["type"]), mid, interval))
    ds = result.dataset
    head = (
        f"{ds.attrs.get('noise')} noise ({ds.attrs.get('sigma_mode')} σ), clean accuracy "
        f"{result.clean_accuracy:.4f}, chance {result.chance_accuracy:.4f}"
    )
    return "\n".join([head, text_table(rows)])
