"""Models whose output for one sample depends on the others in its batch (issue 15, item 2).

Stacking σ copies into one forward pass would mix their batch statistics; such models run one
copy per pass, so a cell's number depends on ``batch_size`` (as the user's own model does)
but never on the other σ of the grid or on ``max_batch``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import walknoise
from tests.conftest import fit, learnable_data
from walknoise.noise.inject import batch_seed, make_generator
from walknoise.walk.batchstats import batch_statistics_modules, mixes_samples

N, BATCH, SEED = 230, 64, 3  # the last batch holds 38 samples
POOL = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


class BatchCentre(nn.Module):
    """Subtracts the batch mean: no known type, only the probe can find it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(dim=0, keepdim=True)


def bn_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(16, 32),
        nn.ReLU(),
        nn.BatchNorm1d(32, track_running_stats=False),
        nn.Linear(32, 4),
    )


def centred_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.ReLU(),
        BatchCentre(),
        nn.Flatten(),
        nn.Linear(96, 4),
    )


def bn_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.BatchNorm2d(6, track_running_stats=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(96, 4),
    )


MODELS: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "mlp": (bn_mlp, "1"),  # noise before the BatchNorm
    "cnn": (centred_cnn, "0"),
    "bn-cnn": (bn_cnn, "<input>"),
}
_trained: dict[str, tuple[nn.Module, torch.Tensor, torch.Tensor]] = {}
_reference: dict[tuple[str, float], float] = {}


def trained(name: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    if name not in _trained:
        x, y = learnable_data(N)
        _trained[name] = (fit(MODELS[name][0](), x, y, steps=60), x, y)
    return _trained[name]


def cell(name: str, sigmas: list[float], sigma: float, max_batch: int = 16384) -> float:
    model, x, y = trained(name)
    result = walknoise.scan(
        model, (x, y), layers=MODELS[name][1], sigmas=sigmas, repeats=1, seed=SEED,
        batch_size=BATCH, max_batch=max_batch, progress=False,
    )  # fmt: skip
    return float(result.accuracy.sel(sigma=sigma).values.item())


def by_hand(name: str, sigma: float) -> float:
    """The true value: the model on batches of ``BATCH`` with σ·ε added at the point, ε drawn
    per batch from the cell's generator."""
    model, x, y = trained(name)
    point = MODELS[name][1]
    gen = make_generator(0)

    def noisy(t: torch.Tensor) -> torch.Tensor:
        return t + sigma * torch.randn((1, *t.shape), generator=gen)[0]

    correct = 0
    with torch.inference_mode():
        for i in range(0, N, BATCH):
            xb = x[i : i + BATCH]
            gen.manual_seed(batch_seed(SEED, point, 0, i // BATCH))
            if point == "<input>":
                out = model(noisy(xb))
            else:
                handle = model.get_submodule(point).register_forward_hook(
                    lambda _m, _i, o: noisy(o)
                )
                try:
                    out = model(xb)
                finally:
                    handle.remove()
            correct += int((out.argmax(1) == y[i : i + BATCH]).sum())
    return correct / N


@pytest.mark.parametrize("name", list(MODELS))
@settings(max_examples=8, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(
    sigma=st.sampled_from(POOL),
    others=st.sets(st.sampled_from(POOL), max_size=4),
    max_batch=st.sampled_from([1, 64, 100, 200, 500, 16384]),
)
def test_a_cell_does_not_depend_on_the_grid_or_max_batch(
    name: str, sigma: float, others: set[float], max_batch: int
) -> None:
    key = (name, sigma)
    if key not in _reference:
        _reference[key] = cell(name, [sigma], sigma)
    grid = sorted(others | {sigma})
    # one σ copy per pass whatever the grid: the very same computation, so exactly equal
    assert cell(name, grid, sigma, max_batch) == _reference[key]


@pytest.mark.parametrize("name", list(MODELS))
def test_a_cell_is_the_model_on_its_own_batches(name: str) -> None:
    for sigma in (0.3, 3.0):
        # The scan may lay out a CNN's activations differently (channels-last), which can
        # round differently in the last bit and flip the argmax of a sample on a tie: at
        # most one such sample (1/N) is tolerated; a mixed batch statistic moves dozens.
        assert cell(name, list(POOL), sigma) == pytest.approx(by_hand(name, sigma), abs=1.01 / N)


def test_detection() -> None:
    x, _ = learnable_data(8)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(16, 4)).eval()
    per_sample = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4).eval(),  # running statistics in eval mode: per sample
        nn.GroupNorm(2, 4),
        nn.InstanceNorm2d(4),  # its statistics are over one sample's pixels
        nn.LayerNorm([4, 4, 4]),
        nn.Flatten(),
        nn.Linear(64, 4),
    ).eval()
    for model in (plain, per_sample):
        assert not batch_statistics_modules(model)
        assert not mixes_samples(model, x, ["1"])
    assert batch_statistics_modules(bn_cnn()) == ["1"]
    training_bn = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(16), nn.Linear(16, 4))
    assert batch_statistics_modules(training_bn.train()) == ["1"]
    assert not batch_statistics_modules(training_bn.eval())
    # no known type: the probe finds it, from a perturbation at the input or at the point
    centred = centred_cnn().eval()
    assert not batch_statistics_modules(centred)
    assert mixes_samples(centred, x, ["0"]) and mixes_samples(centred, x, ["<input>"])
    assert mixes_samples(centred, x[:1], ["0"])  # one sample: its σ copies still mix
