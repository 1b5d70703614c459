"""GNI training losses and the gradient-noise tracker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import learnable_data, tiny_mlp
from walknoise.errors import WalknoiseError
from walknoise.gni.measure import GNISpec, load_gni
from walknoise.gni.tracking import GNITracker, GNITraining, NoisyLoss, training_hooks
from walknoise.training import TrainConfig, train_model

CONFIG = TrainConfig(epochs=2, batch_size=100, seed=0)


def _train(loss_fn: NoisyLoss | None, tracker: GNITracker | None) -> dict[str, torch.Tensor]:
    model = tiny_mlp()
    x, y = learnable_data(600)
    train_model(model, x, y, CONFIG, progress=False, loss_fn=loss_fn, on_step=tracker)
    return model.state_dict()


def test_tracker_records_steps_without_changing_training(tmp_path: Path) -> None:
    x, y = learnable_data(600)
    spec = GNISpec(draws=6, batches=2, batch_size=50, sigmas=(0.2,), noise="multiplicative")
    path = tmp_path / "track.h5"
    tracker = GNITracker(spec, 5, path, x, y, last_step=12)
    tracked = _train(NoisyLoss("multiplicative", 0.2, 4, seed=0), tracker)
    plain = _train(NoisyLoss("multiplicative", 0.2, 4, seed=0), None)
    for name, value in plain.items():  # measuring uses private generators and no .grad
        assert torch.equal(value, tracked[name]), name
    ds = load_gni(path).dataset
    assert list(ds["step"].values) == [1, 5, 10, 12]
    assert np.all(np.isfinite(ds["alpha"].values))
    assert list(ds["param_size"].values) == [512, 128]


def test_marginal_loss_varies_less_than_one_draw() -> None:
    model = tiny_mlp()
    x, y = learnable_data(64)

    def spread(draws: int) -> float:
        loss = NoisyLoss("additive", 0.5, draws, seed=1)
        with torch.no_grad():
            return float(np.std([float(loss(model, x, y)[0]) for _ in range(40)]))

    one, many = spread(1), spread(16)
    assert many < one / 2.5  # 1/√16 = 1/4 in expectation


def test_training_hooks_follow_the_mode(tmp_path: Path) -> None:
    data = learnable_data(300)
    assert set(training_hooks(GNITraining(), data, CONFIG)) == {"extra_meta"}
    implicit = training_hooks(GNITraining(mode="implicit", draws=9), data, CONFIG)
    assert implicit["loss_fn"].draws == 1
    marginal = training_hooks(GNITraining(mode="marginal", draws=9), data, CONFIG)
    assert marginal["loss_fn"].draws == 9
    tracked = training_hooks(GNITraining(every=3, output=tmp_path / "t.h5"), data, CONFIG)
    assert tracked["on_step"].last_step == 6  # 300 samples / 100 per step × 2 epochs
    assert tracked["extra_meta"]["gni"]["every"] == 3


@pytest.mark.parametrize(
    ("kwargs", "match", "argument"),
    [
        ({"mode": "loud"}, "unknown GNI mode='loud'", "mode"),
        ({"sigma": 0.0}, "sigma=0.0; it must be positive", "sigma"),
        ({"draws": 0}, "draws=0; it must be at least 1", "draws"),
        ({"every": 0, "output": Path("x.h5")}, "every=0; it must be at least 1", "every"),
        ({"every": 5}, "needs an output file; pass output=PATH", "output"),
        ({"every": 5, "output": Path("/no/such/dir/x.h5")}, "does not exist", None),
    ],
)
def test_bad_training_settings(kwargs: dict[str, object], match: str, argument: str) -> None:
    with pytest.raises(WalknoiseError, match=match) as err:
        GNITraining(**kwargs)  # type: ignore[arg-type]
    assert err.value.argument == argument
