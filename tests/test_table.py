"""``text_table``: the aligned tables of every report."""

from walknoise.table import text_table


def test_columns_align_under_a_dash_rule() -> None:
    table = text_table([("layer", "σ"), ("fc1", "0.5"), ("<global>", "")])
    assert table.splitlines() == [
        "layer     σ",
        "--------  ---",
        "fc1       0.5",
        "<global>",  # trailing spaces are stripped
    ]


def test_header_alone_and_unicode_widths() -> None:
    assert text_table([["α", "midpoint σ"]]) == "α  midpoint σ\n-  ----------"
