"""The printed midpoint table: one row per entry, intervals only where repeats allow them."""

from __future__ import annotations

import walknoise
from walknoise.walk.report import midpoint_table


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
        assert float(mid) == float(f"{row['midpoint']:.3g}")
        assert float(low) <= float(mid) <= float(high)


def test_search_says_it_gives_no_interval(trained_mlp, data) -> None:
    result = walknoise.scan(
        trained_mlp, data, sigmas="log:1e-2:1e3:11", repeats=2, midpoint_search=True,
        progress=False,
    )  # fmt: skip
    rows = midpoint_table(result).splitlines()[3:]
    reached = [row for row in rows if row.split()[2][0].isdigit()]
    assert reached and all("not with --midpoint-search" in row for row in reached)
    assert "needs 2+ repeats" not in midpoint_table(result)
