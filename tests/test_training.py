"""Training loop: learns, is reproducible, leaves the global RNG alone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from walknoise.errors import WalknoiseError
from walknoise.models import build_model
from walknoise.training import TrainConfig, evaluate, seeded_init, train_model


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Tiny models run much slower with intra-op threads on a busy CPU.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable labels: argmax of a fixed linear map of the inputs."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(16, 10, generator=torch.Generator().manual_seed(123))
    x = torch.randn(n, 1, 4, 4, generator=gen)
    return x, (x.flatten(1) @ w).argmax(dim=1)


def _train(seed: int, progress: bool = False) -> tuple[torch.nn.Module, dict[str, Any]]:
    x, y = _data(512)
    xt, yt = _data(256, seed=1)
    with seeded_init(seed):
        model = build_model("mlp", input_shape=(1, 4, 4))
    config = TrainConfig(epochs=15, lr=3e-3, batch_size=32, seed=seed)
    return model, train_model(model, x, y, config, x_test=xt, y_test=yt, progress=progress)


def test_learns_above_chance() -> None:
    model, result = _train(0)
    assert result["test_accuracy"] > 0.6  # chance is about 0.1
    assert result["train_accuracy"] > 0.6
    assert not model.training
    history = result["history"]
    assert isinstance(history, list) and len(history) == 15
    assert history[-1]["loss"] < history[0]["loss"]
    assert {"train_loss", "test_loss", "seconds", "steps"} <= set(result)


def test_same_seed_same_weights() -> None:
    a, _ = _train(5)
    b, _ = _train(5, progress=True)
    c, _ = _train(6)
    for key, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[key])
    assert not torch.equal(a.state_dict()["fc1.weight"], c.state_dict()["fc1.weight"])


def test_seeded_init_keeps_global_rng() -> None:
    torch.manual_seed(42)
    state = torch.get_rng_state()
    with seeded_init(7):
        first = build_model("lenet5").state_dict()["conv1.weight"]
    assert torch.equal(torch.get_rng_state(), state)
    with seeded_init(7):
        second = build_model("lenet5").state_dict()["conv1.weight"]
    assert torch.equal(first, second)


def test_training_does_not_touch_global_rng() -> None:
    x, y = _data(64)
    model = build_model("mlp", input_shape=(1, 4, 4))
    state = torch.get_rng_state()
    train_model(model, x, y, TrainConfig(epochs=1), progress=False)
    assert torch.equal(torch.get_rng_state(), state)


def test_constant_schedule_and_evaluate() -> None:
    x, y = _data(128)
    model = build_model("mlp", input_shape=(1, 4, 4), batchnorm=True)
    config = TrainConfig(epochs=2, schedule="constant", weight_decay=1e-4)
    train_model(model, x, y, config, progress=False)
    model.train()
    acc, loss = evaluate(model, x, y, batch_size=50)
    assert 0.0 <= acc <= 1.0 and loss > 0
    assert model.training  # mode restored
    assert TrainConfig().to_dict() == {
        "epochs": 5, "lr": 1e-3, "batch_size": 64, "seed": 0,
        "schedule": "cosine", "weight_decay": 0.0, "optimizer": "adam",
    }  # fmt: skip


def test_sgd_takes_the_plain_gradient_step() -> None:
    """optimizer="sgd" is w ← w − lr·∇L, the update of Camuto et al.'s notebooks: one
    full-batch step checked against autograd on a copy of the model."""
    import copy

    x, y = _data(64)
    with seeded_init(0):
        model = build_model("mlp", input_shape=(1, 4, 4))
    reference = copy.deepcopy(model)
    config = TrainConfig(epochs=1, lr=0.1, batch_size=64, schedule="constant", optimizer="sgd")
    train_model(model, x, y, config, progress=False)
    loss = torch.nn.functional.cross_entropy(reference(x), y)
    grads = torch.autograd.grad(loss, list(reference.parameters()))
    for after, before, g in zip(model.parameters(), reference.parameters(), grads, strict=True):
        # the shuffled batch sums its 64 losses in another order: float32 rounding only
        torch.testing.assert_close(after.detach(), before.detach() - 0.1 * g, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        *({"epochs": 0}, {"lr": 0.0}, {"batch_size": 0}, {"schedule": "step"}),
        *({"weight_decay": -1}, {"optimizer": "rmsprop"}),
    ],
)
def test_bad_config(kwargs: dict[str, object]) -> None:
    with pytest.raises(WalknoiseError):
        TrainConfig(**kwargs)  # type: ignore[arg-type]


def test_bad_data() -> None:
    model = build_model("mlp", input_shape=(1, 4, 4))
    x, y = _data(10)
    with pytest.raises(WalknoiseError, match="labels"):
        train_model(model, x, y[:5], TrainConfig(), progress=False)
    with pytest.raises(WalknoiseError, match="empty"):
        train_model(model, x[:0], y[:0], TrainConfig(), progress=False)
