"""The vmapped ensemble trains every cell as one-by-one training does, from the same seeds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.conftest import assert_same_accuracy, learnable_data, tiny_mlp
from walknoise.data import TensorData
from walknoise.noise.kinds import Additive, Combined, Multiplicative, Noise
from walknoise.training import TrainConfig
from walknoise.walk.ensemble import blocker, train_ensemble
from walknoise.walk.trainphase import TrainPhase, fresh, train_under_noise

CONFIG = TrainConfig(epochs=2, lr=1e-2, batch_size=48)  # 400 samples: a short last batch
MEMBERS = [(s, 3 + r) for r in range(2) for s in (0.1, 1.0, 4.0)]


def one_by_one(noise: Noise, points: list[str], clamp: float | None = None) -> list[nn.Module]:
    x, y = learnable_data(400, seed=1)
    return [
        train_under_noise(tiny_mlp(), TensorData(x, y, "t"), noise=noise, layer=points,
                          sigma=s, config=CONFIG, seed=seed, clamp=clamp)
        for s, seed in MEMBERS
    ]  # fmt: skip


def together(
    noise: Noise,
    points: list[str],
    clamp: float | None = None,
    members: list[tuple[float, int]] = MEMBERS,
) -> list[nn.Module]:
    x, y = learnable_data(400, seed=1)
    models = [fresh(tiny_mlp(), seed) for _, seed in members]
    return train_ensemble(
        models, list(members), x, y, noise=noise, points=points, scales=[1.0] * len(points),
        config=CONFIG, clamp=clamp,
    )  # fmt: skip


def assert_close(a: list[nn.Module], b: list[nn.Module], atol: float = 1e-5) -> None:
    """Weights of two trainings. The default ``atol`` is for batched vs one-by-one training:
    other kernels round differently (~6e-8 relative per operation), which 18 Adam steps of
    lr 1e-2 carry into the weights (measured: 6e-8, one unit in the last place; another
    CPU's kernels may round more often). 1e-5 is still far below a wrong draw's effect."""
    for ma, mb in zip(a, b, strict=True):
        for (name, pa), pb in zip(ma.state_dict().items(), mb.state_dict().values(), strict=True):
            torch.testing.assert_close(pa, pb, rtol=0, atol=atol, msg=name)


@pytest.mark.parametrize(
    ("noise", "points", "clamp"),
    [
        (Additive(), ["fc1"], None),
        (Multiplicative(), ["act1"], 0.3),
        (Combined(0.3), ["<input>", "fc1", "act1"], None),  # <global>: one stream, 3 calls
    ],
)
def test_same_weights_as_one_by_one(noise: Noise, points: list[str], clamp: float | None) -> None:
    assert_close(together(noise, points, clamp), one_by_one(noise, points, clamp))


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4, 4)
    )


@pytest.mark.parametrize("make", [tiny_mlp, tiny_cnn])
def test_in_float64_the_same_weights_to_the_last_digits(make) -> None:  # type: ignore[no-untyped-def]
    """In float32, rounding differences of the batched kernels can grow during training
    (sometimes to 1e-2 after an epoch on MNIST); in float64 both paths agree to ~1e-15,
    which shows they do the same arithmetic on the same draws."""
    x, y = learnable_data(400, seed=1)
    data, template = TensorData(x.double(), y, "t"), make().double()
    point = "1" if make is tiny_cnn else "fc1"
    slow = [
        train_under_noise(
            template, data, noise=Combined(0.3), layer=point, sigma=s, config=CONFIG, seed=r
        )
        for s, r in MEMBERS
    ]
    fast = train_ensemble(
        [fresh(template, r) for _, r in MEMBERS], MEMBERS, data.x, y, noise=Combined(0.3),
        points=[point], scales=[1.0], config=CONFIG,
    )  # fmt: skip
    assert_close(fast, slow, atol=1e-12)


def test_reproducible_from_its_seeds_in_any_grouping() -> None:
    whole = together(Additive(), ["fc1"])
    again = together(Additive(), ["fc1"])
    assert_close(whole, again, atol=0)  # bit for bit
    halves = together(Additive(), ["fc1"], members=MEMBERS[:2]) + together(
        Additive(), ["fc1"], members=MEMBERS[2:]
    )  # other groups: the same draws per seed, so the same models up to rounding
    assert_close(halves, whole)


def test_models_that_keep_state_are_not_ensembled() -> None:
    assert blocker(tiny_mlp()) is None
    assert "BatchNorm" in (blocker(tiny_mlp(batchnorm=True)) or "")
    assert "Dropout" in (blocker(nn.Sequential(nn.Linear(2, 2), nn.Dropout())) or "")


@pytest.mark.parametrize("batchnorm", [False, True])
def test_train_phase_uses_the_ensemble_where_it_can(batchnorm: bool) -> None:
    x, y = learnable_data(400, seed=1)
    xt, yt = learnable_data(200, seed=2)
    kwargs = dict(
        template=tiny_mlp(batchnorm), train_data=TensorData(x, y, "train"),
        test=TensorData(xt, yt, "test"), noise=Additive(), config=CONFIG, seed=3,
    )  # fmt: skip
    fast = TrainPhase(**kwargs).run_layer("fc1", ["fc1"], [0.1, 2.0], 2, [1.0])
    slow = TrainPhase(**kwargs, ensemble=False).run_layer("fc1", ["fc1"], [0.1, 2.0], 2, [1.0])
    torch.testing.assert_close(
        torch.as_tensor(fast["weight_l2"]), torch.as_tensor(slow["weight_l2"]), rtol=1e-5, atol=0
    )
    # batched and one-by-one training round differently: a test sample (of 200) may flip
    assert_same_accuracy(fast["trained_accuracy"], slow["trained_accuracy"], n=200)
