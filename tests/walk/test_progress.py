"""The progress bar moves per batch within a layer, and ends at the exact cell count (issue 15,
item 5)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

import walknoise
from walknoise.noise.kinds import make_noise
from walknoise.walk import collect
from walknoise.walk.clean import Tensors
from walknoise.walk.runner import LayerRunner

SIGMAS = (0.1, 1.0, 10.0)


def test_the_runner_reports_each_batch_in_cells(trained_mlp, data) -> None:
    x, y = data  # 600 samples in batches of 250: 250, 250, 100
    calls: list[float] = []
    runner = LayerRunner(
        trained_mlp, Tensors(x, y), make_noise("additive"), SIGMAS, batch_size=250, max_batch=500,
        progress=calls.append,
    )  # fmt: skip
    runner.run_repeat("fc1", ["fc1"], [1.0], 0, 0)
    # one call per batch, each the batch's share of the 3 cells of the repeat
    assert calls == pytest.approx([3 * 250 / 600, 3 * 250 / 600, 3 * 100 / 600])
    assert sum(calls) == pytest.approx(len(SIGMAS))


class Bar:
    """Records what the driver shows: every update, in order."""

    instances: ClassVar[list[Bar]] = []

    def __init__(self, *, total: int, **_kwargs: Any) -> None:
        self.total, self.updates = total, []
        Bar.instances.append(self)

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *_exc: object) -> None:
        pass

    def update(self, n: int) -> None:
        self.updates.append(n)

    def set_postfix_str(self, _s: str) -> None:
        pass


def test_the_bar_moves_within_a_layer(trained_mlp, data, monkeypatch) -> None:
    monkeypatch.setattr(collect, "progress_bar", Bar)
    walknoise.scan(
        trained_mlp, data, layers="fc1,fc2", sigmas=SIGMAS, repeats=2, batch_size=100,
        progress=True,
    )  # fmt: skip
    bar = Bar.instances[-1]
    layers, cells = 3, 2 * len(SIGMAS)  # fc1, fc2, <global>; 6 cells each
    assert bar.total == layers * cells
    # 2 repeats × 6 batches per layer: the bar moves many times per layer, in whole cells,
    # and adds up to the total exactly
    assert len(bar.updates) >= layers * 2 * 3
    assert all(isinstance(n, int) and n > 0 for n in bar.updates)
    assert sum(bar.updates) == bar.total
