"""The small model and data the NIN probe and comparison tests share, on one thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from torch import nn

from tests.conftest import learnable_data
from walknoise.data import TensorData
from walknoise.nin.train import torch_threads


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


def small() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 4))


def data() -> tuple[TensorData, TensorData]:
    x, y = learnable_data(700)
    return TensorData(x[:500], y[:500], "toy:train"), TensorData(x[500:], y[500:], "toy:test")
