"""Load: a long scan keeps memory flat and leaves no hooks behind, even when interrupted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import walknoise
from tests.conftest import Residual, assert_same_accuracy, fit, learnable_data, tiny_mlp
from walknoise.noise.kinds import make_noise
from walknoise.walk import runner
from walknoise.walk.clean import Tensors

# Runs in a fresh interpreter so that peak RSS (VmHWM) belongs to these scans alone: the cnn
# zoo model, 11 entries × 10 σ × 10 repeats = 1,100 cells on 16 MNIST images, scanned three
# times. RSS and peak RSS are read from /proc after every finished layer. The first scan also
# pays for first-use allocations (torch kernels, allocator arenas); anything a scan leaked
# (hooks, tensors, generators, cached ε) would make each later 1,100 cells need more.
PROBE = """
import gc, json, sys
import torch
import walknoise
from walknoise.walk import store
from walknoise.data import load_mnist
from walknoise.models import build_model
from walknoise.training import seeded_init

def rss():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return [int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")]

def tensors():
    return sum(isinstance(o, torch.Tensor) for o in gc.get_objects())

with seeded_init(0):
    model = build_model("cnn").eval()
data = load_mnist("test").subset(16)
samples = []
write = store.write_layer
def measured(*args, **kwargs):
    write(*args, **kwargs)
    samples[-1].append(rss())
store.write_layer = measured
before = tensors()
for run in range(3):
    samples.append([])
    result = walknoise.scan(model, data, sigmas="log:1e-2:1e3:10", repeats=10,
                            progress=False, output=f"{sys.argv[1]}/r{run}.h5")
gc.collect()
hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
print(json.dumps({"cells": int(result.accuracy.size), "samples": samples, "hooks": hooks,
                  "new_tensors": tensors() - before}))
"""


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.slow
def test_memory_stays_flat_over_1000_cells(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True, text=True, check=True
    )
    probe = json.loads(out.stdout.splitlines()[-1])
    first, second, third = probe["samples"]
    rss = [max(r for r, _ in scan) for scan in (second, third)]
    peak = [scan[-1][1] for scan in (second, third)]
    print(
        f"\n3 × {probe['cells']} cells: RSS {first[0][0]:.0f} MiB after the first layer, "
        f"{third[-1][0]:.0f} MiB after the last; highest RSS after a layer {rss[0]:.0f} -> "
        f"{rss[1]:.0f} MiB, peak RSS {peak[0]:.0f} -> {peak[1]:.0f} MiB"
    )
    assert probe["cells"] >= 1000
    assert probe["hooks"] == 0 and probe["new_tensors"] <= 0
    # One leaked activation per cell would be 1.6 MB, 1.7 GB over a scan. glibc's arenas
    # move RSS by a few tens of MiB from run to run (seen: +25 MiB in CI), so 64 MiB is noise
    # and the steady state (second vs third scan) is compared, not the warm-up.
    assert rss[1] - rss[0] < 64 and peak[1] - peak[0] < 64, probe["samples"]


def test_interrupted_scan_leaves_no_hooks(trained_mlp, data, monkeypatch) -> None:
    calls = {"n": 0}
    score = runner.score_of

    def interrupted(*args):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 5:  # in the middle of a layer, hooks attached
            raise KeyboardInterrupt
        return score(*args)

    monkeypatch.setattr("walknoise.walk.runner.score_of", interrupted)
    with pytest.raises(KeyboardInterrupt):
        walknoise.scan(trained_mlp, data, sigmas="0.1,1,10", repeats=3, progress=False)
    assert calls["n"] == 5
    assert hook_count(trained_mlp) == 0
    x, _ = data
    with torch.inference_mode():  # and the model computes exactly as before
        assert torch.equal(trained_mlp(x), trained_mlp(x))


@pytest.mark.parametrize(
    ("make", "points", "noise"),
    [
        (lambda: tiny_mlp(), ["fc1"], "additive"),
        (lambda: tiny_mlp(batchnorm=True), ["<input>", "act1"], "combined"),  # two draws
        (lambda: Residual(), ["fc1"], "multiplicative"),  # not a cut: replicated input
    ],
)
@pytest.mark.parametrize("budget", [2**21, 200])  # 200 elements: repeats in chunks of 3 + 2
def test_stacked_repeats_draw_what_each_repeat_draws_alone(
    make, points, noise, budget, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(runner, "element_budget", lambda device: budget)
    x, y = learnable_data(300)
    model = fit(make(), x, y, steps=50).eval()
    layer = points[0] if len(points) == 1 else "<global>"
    for sigma in (0.3, 3.0):
        one = runner.LayerRunner(
            model, Tensors(x, y), make_noise(noise), [sigma], batch_size=64, max_batch=4096
        )
        alone = [one.run_repeat(layer, points, [1.0] * len(points), 7, r) for r in range(5)]
        alone_acc = np.array([s.accuracy()[0] for s in alone])
        stacked = one.run_repeats(layer, points, [1.0] * len(points), 7, 5)
        # the same draws, but one forward pass over 5 stacked repeats: another batch shape
        assert_same_accuracy(stacked, alone_acc, n=len(y))
        assert len(set(alone_acc.tolist())) > 1 or sigma < 1  # the repeats do differ


@pytest.mark.parametrize(
    ("make", "points", "noise"),
    [
        (lambda: tiny_mlp(), ["<input>"], "additive"),  # linear path: fc1 after flatten
        (lambda: tiny_mlp(), ["act1"], "multiplicative"),  # linear path: fc2
        (lambda: tiny_mlp(), ["fc1"], "combined"),  # plain path: ReLU next
        (lambda: Residual(), ["inner"], "additive"),  # not a cut: the traced block
        (lambda: tiny_mlp(), ["fc1", "act1"], "additive"),  # <global>: σ chunks per repeat
    ],
)
@pytest.mark.parametrize("budget", [2**21, 300])  # 300 elements: windows of a few samples
def test_grid_of_stacked_repeats_equals_each_repeat_alone(
    make, points, noise, budget, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Every (repeat, σ) of a layer in one pass, the prefix run once for all: each repeat's
    rows hold what that repeat computes alone (its own draws, shared by its σ copies)."""
    monkeypatch.setattr(runner, "element_budget", lambda device: budget)
    x, y = learnable_data(300)
    model = fit(make(), x, y, steps=50).eval()
    layer = points[0] if len(points) == 1 else "<global>"
    sigmas, scales = [0.1, 0.5, 1.5, 4.0], [1.0] * len(points)
    grid = runner.LayerRunner(
        model, Tensors(x, y), make_noise(noise), sigmas, batch_size=64, max_batch=4096
    )
    stacked = grid.run(runner.Group(layer, tuple(points), tuple(scales), 7, (0, 1, 2)))
    assert len(stacked.correct) == 3 * len(sigmas)
    for r in range(3):
        alone = grid.run_repeat(layer, points, scales, 7, r)
        mine = stacked.rows(slice(r * len(sigmas), (r + 1) * len(sigmas)))
        assert_same_accuracy(mine.accuracy(), alone.accuracy(), n=len(y))
        # the same draws through another batch shape: losses agree to float32 rounding
        np.testing.assert_allclose(mine.mean_loss(), alone.mean_loss(), rtol=1e-4)
    first = stacked.accuracy()[: len(sigmas)]
    assert not np.array_equal(first, stacked.accuracy()[len(sigmas) :][: len(sigmas)])


def test_stacked_repeats_stay_within_max_batch(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """4 σ × 3 repeats are 12 copies; ``max_batch=16`` allows two repeats of a two-sample
    window per pass, so the third runs in a pass of its own, with its own draws as before."""
    x, y = learnable_data(300)
    model = fit(tiny_mlp(), x, y, steps=50).eval()
    seen: list[int] = []
    forward = runner.LayerRunner._model

    def recorded(self, xb):  # type: ignore[no-untyped-def]
        out = forward(self, xb)
        seen.append(len(out))
        return out

    monkeypatch.setattr(runner.LayerRunner, "_model", recorded)
    sigmas, make = [0.1, 0.5, 1.5, 4.0], make_noise("additive")
    small = runner.LayerRunner(model, Tensors(x, y), make, sigmas, batch_size=64, max_batch=16)
    stacked = small.run(runner.Group("fc1", ("fc1",), (1.0,), 7, (0, 1, 2)))
    assert seen and max(seen) <= 16
    for r in range(3):
        alone = small.run_repeat("fc1", ["fc1"], [1.0], 7, r)
        mine = stacked.rows(slice(r * 4, (r + 1) * 4))
        assert_same_accuracy(mine.accuracy(), alone.accuracy(), n=len(y))
