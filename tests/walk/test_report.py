"""The printed midpoint table: one row per entry, intervals only where repeats allow them."""

from __future__ import annotations

import math

import pytest

import walknoise
from walknoise.walk.report import midpoint_table, round_to


def test_one_repeat_says_why_there_is_no_interval(trained_mlp, data) -> None:
    result = walknoise.scan(trained_mlp, data, sigmas="log:1e-2:1e3:11", repeats=1, progress=False)
    table = midpoint_table(result)
    rows = table.splitlines()[3:]
    assert len(rows) == len(result.layers)
    reached = [row for row in rows if row.split()[2][0].isdigit()]
    assert reached and all("needs 2+ repeats" in row for row in reached)
    assert "– >" not in table


def test_interval_brackets_the_midpoint(trained_mlp, data) -> None:
    result = walknoise.scan(trained_mlp, data, sigmas="log:1e-2:1e3:11", repeats=3, progress=False)
    mids = result.midpoints("eval")
    for line in midpoint_table(result).splitlines()[3:]:
        layer, _type, mid, low, _dash, high = line.split()[:6]
        row = mids.loc[layer]
        # no digit finer than the first significant digit of the wider of the bootstrap
        # interval and the bracket; the printed value is the midpoint rounded there
        width = max(row["high"] - row["low"], row["bracket_high"] - row["bracket_low"])
        unit = 10.0 ** -len(mid.partition(".")[2])
        assert unit >= 10.0 ** math.floor(math.log10(width))
        assert abs(float(mid) - row["midpoint"]) <= unit / 2 + 1e-12
        assert float(low) <= float(mid) <= float(high)


@pytest.mark.parametrize(
    ("value", "width", "shown"),
    [
        (1.1834, 0.03, "1.18"),
        (1.1834, 0.3, "1.2"),
        (8.61, 3.0, "9"),
        (14.2, 21.6, "10"),  # one significant digit at least
        (13.597, 0.002, "13.6"),  # three at most
        (0.0123, 0.0004, "0.0123"),
        (2.5e7, 1e6, "2.5e+07"),
        (0.86, float("nan"), "0.860"),  # no interval: three digits
        (float("nan"), 1.0, "-"),
    ],
)
def test_round_to_the_interval(value: float, width: float, shown: str) -> None:
    assert round_to(value, width) == shown


def test_unrefined_and_train_midpoints_are_shown_as_their_bracket(trained_mlp, data) -> None:
    result = walknoise.scan(
        trained_mlp, data, sigmas="log:1e-2:1e3:6", repeats=2, refine=False, progress=False
    )
    table = midpoint_table(result)
    mids = result.midpoints()
    assert not mids["within_rtol"].any()
    for _layer, row in mids.iterrows():
        # grid points a decade apart: the cell is the bracket, not an interpolated number
        assert f"[{row['bracket_low']:.3g}, {row['bracket_high']:.3g}]" in table
        assert row["bracket_high"] / row["bracket_low"] == pytest.approx(10.0)
    assert "more than rtol = 0.05 apart (not refined)" in table


def test_search_says_it_gives_no_interval(trained_mlp, data) -> None:
    result = walknoise.scan(
        trained_mlp, data, sigmas="log:1e-2:1e3:11", repeats=2, midpoint_search=True,
        progress=False,
    )  # fmt: skip
    rows = midpoint_table(result).splitlines()[3:]
    reached = [row for row in rows if row.split()[2][0].isdigit()]
    assert reached and all("not with --midpoint-search" in row for row in reached)
    assert "needs 2+ repeats" not in midpoint_table(result)


def test_nonmonotone_layers_are_flagged_in_the_table(trained_mlp, data) -> None:
    result = walknoise.scan(trained_mlp, data, sigmas="log:1e-2:1e3:11", repeats=2, progress=False)
    assert not result.midpoints()["nonmonotone"].any()
    result.dataset["midpoint_nonmonotone"][1] = 1  # as a curve rising again would set it
    rows = midpoint_table(result).splitlines()
    flagged = [row.split()[0] for row in rows if row.rstrip().endswith("non-monotone")]
    assert flagged == [result.layers[1]]
    assert "non-monotone: mean accuracy rises again after the crossing" in rows


def test_a_file_from_before_the_brackets_still_reads(trained_mlp, data) -> None:
    result = walknoise.scan(trained_mlp, data, sigmas="log:1e-2:1e3:11", repeats=2, progress=False)
    new = ["midpoint_bracket_low", "midpoint_bracket_high", "midpoint_nonmonotone"]
    old = walknoise.Result(result.dataset.drop_vars(new))
    mids = old.midpoints()
    assert mids["bracket_low"].isna().all() and not mids["nonmonotone"].any()
    assert list(mids["midpoint"]) == list(result.midpoints()["midpoint"])
    assert len(midpoint_table(old).splitlines()) == 3 + len(result.layers)
