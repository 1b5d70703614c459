"""Train phase: fresh models per cell, the clean cache, reproducibility, clamping."""

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import assert_same_accuracy, learnable_data, tiny_mlp
from walknoise.data import TensorData
from walknoise.errors import WalknoiseError
from walknoise.noise.kinds import Additive, Multiplicative, Noise
from walknoise.training import TrainConfig
from walknoise.walk.clean import Tensors
from walknoise.walk.runner import LayerRunner
from walknoise.walk.trainphase import TrainPhase, fresh, train_phase_spec, train_under_noise
from walknoise.walk.weights import kurtosis, param_layers

CONFIG = TrainConfig(epochs=2, lr=1e-2, batch_size=50)


def phase(noise: Noise | None = None, clamp: float | None = None) -> TrainPhase:
    x, y = learnable_data(400, seed=1)
    xt, yt = learnable_data(200, seed=2)
    return TrainPhase(
        template=tiny_mlp(),
        train_data=TensorData(x, y, "train"),
        test=TensorData(xt, yt, "test"),
        noise=noise or Additive(),
        config=CONFIG,
        seed=3,
        clamp=clamp,
        batch_size=100,
    )


def test_fresh_is_deterministic_and_new() -> None:
    template = tiny_mlp()
    a, b, c = fresh(template, 1), fresh(template, 1), fresh(template, 2)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb)
        assert not torch.equal(pa, pc)
    assert not torch.equal(a.fc1.weight, template.fc1.weight)


def test_fresh_refuses_what_it_cannot_reinitialise() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.scale

    with pytest.raises(WalknoiseError, match="reset_parameters"):
        fresh(nn.Sequential(nn.Linear(2, 2), Scaled()), 0)
    assert isinstance(fresh(lambda: nn.Linear(2, 2), 0), nn.Linear)  # factories are fine


def test_clean_model_trained_once_per_seed() -> None:
    tp = phase()
    for layer in ("fc1", "act1"):
        tp.run_layer(layer, [layer], [0.1, 1.0], repeats=2, scales=[1.0])
    tp.clean_accuracy(0)
    assert sorted(tp.clean) == [0, 1]
    assert tp.trainings == 2 + 2 * 2 * 2  # two clean models + (layer, σ, repeat) cells


def test_cell_reproducible_from_its_seed() -> None:
    tp = phase(Multiplicative())
    out = tp.run_layer("fc1", ["fc1"], [0.1, 2.0], repeats=2, scales=[1.0])
    # recompute cell (σ=2.0, repeat=1) independently: train, then walk the same noise
    model = train_under_noise(
        tp.template,
        tp.train_data,
        noise=Multiplicative(),
        layer="fc1",
        sigma=2.0,
        config=CONFIG,
        seed=3 + 1,
    )
    runner = LayerRunner(
        model, Tensors(tp.test.x, tp.test.y), Multiplicative(), [2.0], batch_size=100, max_batch=100
    )
    stats = runner.run_repeat("fc1", ["fc1"], [1.0], 3, 1)
    names = param_layers(model)
    # The ensemble trains the copies as one batched computation, this model alone: the same
    # arithmetic in another order, so the weights agree to float32 rounding (~1e-7 relative
    # per step, a few hundred steps), not to the bit on every CPU; and so do the accuracies,
    # up to a sample whose two top logits are that close.
    assert_same_accuracy(out["trained_accuracy"][1, 1], stats.accuracy()[0], n=len(tp.test.y))
    assert out["weight_kurtosis"][1, 1, 0] == pytest.approx(
        kurtosis(dict(model.named_modules())[names[0]].weight.detach()), rel=1e-5
    )


def test_growth_is_relative_to_the_clean_model_of_the_same_seed() -> None:
    tp = phase()
    out = tp.run_layer("fc1", ["fc1"], [1e-6], repeats=2, scales=[1.0])
    # vanishing noise trains the same model as the clean one: growth exactly ~1
    np.testing.assert_allclose(out["growth_l2"], 1.0, rtol=1e-3)


def test_clamp_bounds_every_weight() -> None:
    out = phase(clamp=0.05).run_layer("fc1", ["fc1"], [1.0], repeats=1, scales=[1.0])
    assert (out["weight_max_abs"] <= 0.05 + 1e-7).all()


def test_train_phase_spec_takes_the_checkpoint_then_overrides() -> None:
    meta = {"train": {"epochs": 12, "lr": 1e-3, "batch_size": 64, "seed": 5}, "data": "mnist:train"}
    spec = train_phase_spec(meta, phase="train", epochs=1)
    assert spec["train"] == {"epochs": 1, "lr": 1e-3, "batch_size": 64}
    assert spec["train_data"] == "mnist:train"
    assert train_phase_spec(meta) == {"phase": "eval"}
    with pytest.raises(WalknoiseError):
        train_phase_spec(meta, phase="train", lr=-1.0)
