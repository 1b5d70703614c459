"""Plain-text presentation of results (used by the CLI, usable in notebooks).

A midpoint is printed with no digit finer than what it is known to: the wider of its
bootstrap interval and its interpolation bracket sets the last digit (:func:`round_to`); a
midpoint whose bracket is wider than ``rtol`` (train phase, or a scan without refinement) is
printed as the bracket itself, ``[a, b]``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from walknoise.errors import WalknoiseError
from walknoise.table import text_table
from walknoise.walk import store
from walknoise.walk.metrics import BELOW_RANGE, REACHED, RISING
from walknoise.walk.result import Result

MAX_DIGITS = 3  # significant digits when the interval allows more (or there is none)


def round_to(value: float, width: float, max_digits: int = MAX_DIGITS) -> str:
    """``value`` rounded to the first significant digit of ``width``, the size of the
    interval it is known to, keeping 1 to ``max_digits`` significant digits.

    ``round_to(1.1834, 0.03)`` is ``1.18``, ``round_to(1.1834, 0.3)`` is ``1.2``,
    ``round_to(8.61, 3)`` is ``9``, ``round_to(14.2, 21.6)`` is ``10``; with no usable
    width, ``max_digits`` significant digits.
    """
    if not math.isfinite(value):
        return "-" if math.isnan(value) else str(value)
    if value == 0:
        return "0"
    top = math.floor(math.log10(abs(value)))  # decimal exponent of the leading digit
    last = math.floor(math.log10(width)) if math.isfinite(width) and width > 0 else -math.inf
    last = int(min(max(last, top - max_digits + 1), top))  # exponent of the last digit shown
    rounded = round(value, -last)
    if not -4 <= top < 6:
        return f"{rounded:.{top - last + 1}g}"
    return f"{rounded:.{max(0, -last)}f}"


def _sig(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3g}"


def _uses_search(result: Result) -> bool:
    try:
        return bool(store.config_of(result.dataset.attrs).get("midpoint_search", False))
    except WalknoiseError:
        return "search_visits" in result.dataset and np.isnan(result.accuracy.values).all()


def _no_interval(result: Result) -> str:
    """Why a reached midpoint has no bootstrap interval."""
    if result.dataset.sizes["repeat"] < 2:
        return "- (needs 2+ repeats)"
    if _uses_search(result):
        return "- (not with --midpoint-search)"
    return "-"


def midpoint_table(result: Result) -> str:
    """Each layer's midpoint noise level, its bootstrap interval and module type (per phase)."""
    return "\n\n".join(_phase_table(result, phase) for phase in result.phases)


def _reached(result: Result, row: pd.Series) -> tuple[str, str]:
    """The midpoint and interval cells of a reached midpoint, to the digits they support."""
    sigma_max = result.sigmas.max()
    low, high = float(row["low"]), float(row["high"])
    widths = [high - low, float(row["bracket_high"]) - float(row["bracket_low"])]
    width = max((w for w in widths if math.isfinite(w)), default=math.nan)
    if not row["within_rtol"] and math.isfinite(row["bracket_low"]):
        mid = f"[{_sig(row['bracket_low'])}, {_sig(row['bracket_high'])}]"
    else:
        mid = round_to(row["midpoint"], width)
    # the interval's ends are known to the interval's own width
    if math.isnan(low):
        interval = _no_interval(result)
    elif math.isnan(high):
        interval = f"{round_to(low, widths[0])} – > {sigma_max:.3g}"
    else:
        interval = f"{round_to(low, widths[0])} – {round_to(high, widths[0])}"
    return mid, interval


def _phase_table(result: Result, phase: str) -> str:
    table = result.midpoints(phase)
    sigma_max, sigma_min = result.sigmas.max(), result.sigmas.min()
    title = "midpoint σ" if phase == "eval" else "midpoint σ (noise-trained)"
    rows = [("layer", "type", title, "95% interval", "note")]
    for layer, row in table.iterrows():
        note = "non-monotone" if row["nonmonotone"] else ""
        if not row["done"]:
            mid, interval, note = "(not computed)", "", ""
        elif row["status"] == REACHED:
            mid, interval = _reached(result, row)
        elif row["status"] == BELOW_RANGE:
            mid, interval = f"<= {sigma_min:.3g}", ""
        else:
            mid, interval = f"> {sigma_max:.3g}", ""
        rows.append((str(layer), str(row["type"]), mid, interval, note))
    ds = result.dataset
    head = (
        f"{ds.attrs.get('noise')} noise ({ds.attrs.get('sigma_mode')} σ), clean accuracy "
        f"{result.clean_accuracy:.4f}, chance {result.chance_accuracy:.4f}"
    )
    metric = str(ds.attrs.get("midpoint_metric", "accuracy"))
    if phase == "eval" and metric != "accuracy":
        head += (
            f"\nmidpoint of {metric}: halfway from {float(ds.attrs['midpoint_reference']):.4g} "
            f"to {float(ds.attrs['midpoint_end']):.4g}"
        )
    return "\n".join([head, text_table(rows), *_footnotes(result, phase, table)])


def _footnotes(result: Result, phase: str, table: pd.DataFrame) -> list[str]:
    """Lines under the table: what a bracket and the flag mean, where outputs overflowed."""
    lines = []
    reached = table[table["done"] & (table["status"] == REACHED)]
    if (~reached["within_rtol"] & reached["bracket_low"].notna()).any():
        why = "each σ is a training" if phase == "train" else "not refined"
        lines.append(
            f"[a, b]: the midpoint lies between these evaluated σ, more than rtol = "
            f"{result.rtol:g} apart ({why})"
        )
    if reached["nonmonotone"].any() or table["nonmonotone"].any():
        metric = str(result.dataset.attrs.get("midpoint_metric", "accuracy"))
        again = "falls" if metric in RISING and phase == "eval" else "rises"
        name = metric if phase == "eval" else "accuracy"
        lines.append(f"non-monotone: mean {name} {again} again after the crossing")
    nonfinite = result.dataset.get("nonfinite_fraction")
    if phase == "eval" and nonfinite is not None and bool((nonfinite > 0).any()):
        first = float(result.sigmas[np.flatnonzero((nonfinite > 0).any(["layer", "repeat"]))[0]])
        lines.append(
            f"from σ = {first:.3g} some outputs overflowed float32; those samples count as "
            "wrong (nonfinite_fraction)"
        )
    return lines
