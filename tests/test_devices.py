"""Scans on CUDA (skipped without a GPU): data, noise and training live on the device.

CPU and CUDA generators are different algorithms (Mersenne Twister and Philox), so the same
seed gives other ε on the GPU: a CUDA scan is checked cell by cell against a by-hand
computation fed the CUDA draws, and against the CPU scan where noise cannot matter (clean
accuracy) or only statistically (repeat-mean curves, midpoints).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import walknoise
from walknoise.devices import resolve_device
from walknoise.errors import WalknoiseError
from walknoise.noise.inject import batch_seed

GPU = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not GPU, reason="needs a CUDA GPU")
SCAN = dict(sigmas="log:1e-2:1e2:9", repeats=3, progress=False, batch_size=128)


def by_hand(model: nn.Module, x: torch.Tensor, y: torch.Tensor, layer: str, sigma: float) -> float:
    """Cell (layer, σ, repeat 0) with a plain hook and the cell's own CUDA generator."""
    gen = torch.Generator(device="cuda")
    module = dict(model.named_modules())[layer]

    def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
        eps = torch.randn((1, *out.shape), generator=gen, device="cuda")[0]
        return out + sigma * eps

    handle = module.register_forward_hook(hook)
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), 128):
            gen.manual_seed(batch_seed(0, layer, 0, start // 128))
            logits = model(x[start : start + 128])
            correct += int((logits.argmax(1) == y[start : start + 128]).sum())
    handle.remove()
    return correct / len(x)


def test_names_and_devices_resolve() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if GPU else "cpu")


@pytest.mark.parametrize("name", ["mps", "meta", "tpu", "gpu"])
def test_other_devices_are_refused_naming_the_argument(name: str) -> None:
    with pytest.raises(WalknoiseError, match="unknown device") as err:
        resolve_device(name)
    assert err.value.argument == "device"


@pytest.mark.skipif(GPU, reason="needs a machine without a GPU")
@pytest.mark.parametrize("name", ["cuda", "cuda:1", torch.device("cuda", 0)])
def test_cuda_without_a_gpu_says_what_to_choose(name: str | torch.device) -> None:
    with pytest.raises(WalknoiseError, match="no CUDA GPU is visible; choose device='cpu'") as err:
        resolve_device(name)
    assert err.value.argument == "device"


@needs_gpu
def test_auto_picks_the_gpu() -> None:
    assert resolve_device("auto").type == "cuda"
    assert resolve_device("cuda:0") == torch.device("cuda", 0)


@needs_gpu
def test_cuda_scan_is_the_by_hand_computation(trained_mlp, data) -> None:
    x, y = (t.cuda() for t in data)
    model = copy.deepcopy(trained_mlp).cuda()
    result = walknoise.scan(model, (x, y), device="cuda", **SCAN)
    for layer, j in [("fc1", 4), ("act1", 6), ("fc2", 5)]:
        expected = by_hand(model, x, y, layer, float(result.sigmas[j]))
        got = result.accuracy.sel(layer=layer, repeat=0).values[j]
        assert abs(got - expected) <= 2 / len(x)  # an argmax tie or two from float rounding


@needs_gpu
def test_cuda_scan_agrees_with_the_cpu_scan(trained_mlp, data) -> None:
    cpu = walknoise.scan(copy.deepcopy(trained_mlp), data, device="cpu", **SCAN)
    gpu = walknoise.scan(copy.deepcopy(trained_mlp), data, device="cuda", **SCAN)
    assert abs(gpu.clean_accuracy - cpu.clean_accuracy) <= 2 / len(data[0])
    gap = np.abs(gpu.accuracy.mean("repeat").values - cpu.accuracy.mean("repeat").values)
    assert gap.max() < 0.08  # other draws: the same curves within sampling noise
    mids = np.array([cpu.midpoints()["midpoint"], gpu.midpoints()["midpoint"]])
    np.testing.assert_allclose(mids[1], mids[0], rtol=0.25)


@needs_gpu
def test_train_phase_on_cuda(data) -> None:
    from tests.conftest import tiny_mlp

    result = walknoise.scan(
        tiny_mlp(),
        data,
        sigmas="0.1,1",
        repeats=2,
        progress=False,
        layers=["fc1"],
        phase="train",
        train={"epochs": 1, "batch_size": 100},
        train_data=data,
        device="cuda",
    )
    assert np.isfinite(result.dataset["trained_accuracy"].values).all()
