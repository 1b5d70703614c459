"""What a scan tells its user besides the numbers: a below-chance warning, the Jupyter view."""

from __future__ import annotations

import logging
from html import escape

import pytest
import torch

import walknoise
from walknoise.walk.plan import below_chance

KW = dict(sigmas="0.1,1", repeats=1, progress=False, include_global=False)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_permuted_labels_warn_once(trained_mlp, data, caplog) -> None:
    caplog.set_level(logging.WARNING, "walknoise")
    x, y = data
    walknoise.scan(trained_mlp, (x, (y + 1) % 4), **KW)
    (message,) = _warnings(caplog)
    assert message.startswith("clean accuracy 0.0") and "below chance 0.25 (4 classes" in message
    assert "labels" in message and "normalis" in message and "other data" in message


def test_right_labels_and_labels_at_chance_do_not_warn(trained_mlp, data, caplog) -> None:
    caplog.set_level(logging.WARNING, "walknoise")
    x, y = data
    walknoise.scan(trained_mlp, (x, y), **KW)
    noise = torch.randint(0, 4, y.shape, generator=torch.Generator().manual_seed(1))
    walknoise.scan(trained_mlp, (x, noise), **KW)  # unrelated labels: chance, not below it
    assert _warnings(caplog) == []


@pytest.mark.parametrize(
    ("correct", "n", "classes", "below"),
    [
        (0, 100, 10, True),  # P(X <= 0) = 0.9^100 = 2.7e-5 < 1e-3
        (3, 100, 10, False),  # P(X <= 3) = 0.008: a small set misses by luck that often
        (160, 2000, 10, False),  # 8% of 2,000 vs 10%: p = 1.2e-3, not yet
        (150, 2000, 10, True),  # 7.5%: p = 6e-5
        (45, 100, 2, False),  # a coin: p = 0.18
        (1, 1, 2, False),  # not below at all
    ],
)
def test_below_chance_is_a_binomial_test(correct, n, classes, below) -> None:
    assert below_chance(correct / n, n, classes) is below


def test_result_html_shows_the_summary_the_midpoints_and_the_dataset(trained_mlp, data) -> None:
    result = walknoise.scan(trained_mlp, data, **KW)
    html = result._repr_html_()
    mids = result.midpoints()
    assert html.startswith("<div") and "clean accuracy" in html
    assert f"{result.clean_accuracy:.4f}" in html
    assert "<table" in html and all(f"<th>{escape(layer)}</th>" in html for layer in mids.index)
    assert "xarray.Dataset" in html  # the full dataset summary follows the table
