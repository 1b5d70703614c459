"""benchmarks/bench_dtype.py's tools: the MNIST-as-CIFAR images the ResNet-20 is trained and
walked on, its saved weights as the child processes load them, and the midpoint comparison."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import _resnet20 as r20
from benchmarks import bench_dtype as bench
from walknoise.data import load_mnist


def test_mnist32_pads_with_zeros_and_repeats_the_channel() -> None:
    x, y = r20.mnist32("test")
    ref = load_mnist("test")
    pixels = ref.x.numpy().reshape(-1, 28, 28)
    assert x.shape == (2000, 3, 32, 32) and x.dtype == torch.float32
    for c in range(3):
        np.testing.assert_array_equal(x[:, c, 2:30, 2:30].numpy(), pixels)
    border = x.clone()
    border[:, :, 2:30, 2:30] = 0
    assert float(border.abs().sum()) == 0.0
    np.testing.assert_array_equal(y.numpy(), ref.y.numpy())


def test_saved_weights_load_as_the_trained_model_with_the_reported_accuracy(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r20.pt"
    info = r20.train_mnist32(path, epochs=1, n=128)
    model = r20.load_trained(path)
    assert not model.training
    x, y = r20.mnist32("test")
    with torch.inference_mode():
        predicted = torch.cat([model(x[s : s + 1000]).argmax(1) for s in (0, 1000)])
    # same weights, same batches of 500 or 1000: the argmax agrees on all but exact ties
    assert math.isclose(info["test_accuracy"], float((predicted == y).float().mean()), abs_tol=1e-3)


def test_rel_diff_skips_unreached_midpoints() -> None:
    a = {"x": 2.0, "y": float("nan"), "z": 4.0}
    b = {"x": 2.1, "y": 1.0, "z": 3.8}
    rel = bench.rel_diff(a, b)
    assert set(rel) == {"x", "z"}
    assert math.isclose(rel["x"], 0.05) and math.isclose(rel["z"], -0.05)
    assert math.isclose(bench.largest(rel), 0.05)
    assert math.isnan(bench.largest({}))
