"""Self-binarization statistics at the noisy point, each against a computation by hand.

The reference forward passes below spell out the tiny model (flatten, fc1, ReLU, fc2) and
draw ε from the cell's generator in the runner's order: one tensor of the point's shape per
batch. They share nothing with walknoise but that generator seed, so a wrong code, a wrong
amplitude, a binarized layer other than the point's own, or other draws all show.
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

import walknoise
from tests.conftest import assert_same_accuracy, learnable_data, tiny_mlp
from walknoise.data import TensorData
from walknoise.noise.inject import batch_seed, make_generator
from walknoise.noise.kinds import Multiplicative
from walknoise.training import TrainConfig
from walknoise.walk.schema import TRAIN_VARIABLES
from walknoise.walk.selfbin import NoisyEval, activity, cell_stats, clean_stats, onoff_code
from walknoise.walk.trainphase import TrainPhase, fresh

SEED, REPEAT, BATCH = 3, 1, 37  # 37: batches of unequal size, so the sums cross batches
X, Y = learnable_data(200, seed=2)


def trained() -> nn.Module:
    x, y = learnable_data(400, seed=1)
    model = tiny_mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


MODEL = trained()


def evaluation(layer: str = "act1", points: tuple[str, ...] | None = None) -> NoisyEval:
    points = points or (layer,)
    scales = (1.0,) * len(points)
    return NoisyEval(X, Y, Multiplicative(), layer, points, scales, SEED, REPEAT, BATCH)


def fc(model: nn.Module, name: str) -> nn.Linear:
    layer = getattr(model, name)
    assert isinstance(layer, nn.Linear)
    return layer


def hidden(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.relu(fc(model, "fc1")(x.flatten(1)))


def by_hand(
    model: nn.Module, sigma: float, code: Callable[[torch.Tensor], torch.Tensor] = lambda h: h
) -> float:
    """Accuracy with y(1 + σε) at act1 after ``code``, ε drawn per batch as the cell does."""
    correct = 0
    for start in range(0, len(X), BATCH):
        xb, yb = X[start : start + BATCH], Y[start : start + BATCH]
        h = code(hidden(model, xb))
        gen = make_generator(batch_seed(SEED, "act1", REPEAT, start // BATCH))
        eps = torch.randn((1, *h.shape), generator=gen)[0]
        logits = fc(model, "fc2")(h * (1 + sigma * eps))
        correct += int((logits.argmax(1) == yb).sum())
    return correct / len(X)


def test_activity_counts_zeros_and_bimodality_as_scipy_does() -> None:
    with torch.no_grad():
        h = hidden(MODEL, X)
    act = activity(MODEL, "act1", X, BATCH)
    assert act.zero_fraction == float((h == 0).double().mean())  # a count: exact
    flat = h.double().flatten().numpy()
    want = (stats.skew(flat) ** 2 + 1) / stats.kurtosis(flat, fisher=False)
    # shifted float64 sums vs scipy's two-pass moments: both ~1e-15 relative
    assert act.bimodality == pytest.approx(want, rel=1e-9)
    assert 0.2 < act.zero_fraction < 0.8  # a ReLU layer: the test is not vacuous
    on = [float(h[:, c][h[:, c] > 0].mean()) if (h[:, c] > 0).any() else 0.0 for c in range(32)]
    np.testing.assert_allclose(act.on_amplitude.numpy(), on, rtol=1e-6)  # float32 inputs
    assert float(act.off_amplitude.abs().max()) == 0.0  # nothing below 0 after a ReLU


def test_signed_point_gets_one_amplitude_per_sign() -> None:
    with torch.no_grad():
        z = fc(MODEL, "fc1")(X.flatten(1))
    act = activity(MODEL, "fc1", X, BATCH)
    code = onoff_code(act)(z)
    a_pos = torch.stack([z[:, c][z[:, c] > 0].mean() for c in range(32)])
    a_neg = torch.stack([-z[:, c][z[:, c] < 0].mean() for c in range(32)])
    want = torch.where(z > 0, a_pos, -a_neg)  # no exact zeros at a Linear's output
    torch.testing.assert_close(code, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sigma", [0.0, 0.5, 3.0])
def test_onoff_accuracy_is_the_coded_point_under_the_same_draws(sigma: float) -> None:
    with torch.no_grad():
        h = hidden(MODEL, X)
    amp = torch.stack([h[:, c][h[:, c] > 0].mean() for c in range(32)]).nan_to_num(0.0)
    got = cell_stats(evaluation(), MODEL, sigma, "fc1", [0.0, sigma])
    with torch.no_grad():
        want = by_hand(MODEL, sigma, lambda hb: amp * (hb > 0))
        plain = by_hand(MODEL, sigma)
    assert_same_accuracy(got["onoff_accuracy"], want, len(X))
    # the test σ grid starts the same generator: the model's own accuracy at σ, and clean at 0
    assert_same_accuracy(got["cross_accuracy"], [by_hand(MODEL, 0.0), plain], len(X))
    assert got["onoff_accuracy"] != plain or sigma == 0  # the code changes the number


def test_own_layer_binarization_replaces_only_the_feeding_layer() -> None:
    sigma = 0.5
    got = cell_stats(evaluation(), MODEL, sigma, "fc1", [0.0])
    for key, dims in (("", None), ("_per_channel", 1)):
        manual = tiny_mlp()
        manual.load_state_dict(MODEL.state_dict())
        with torch.no_grad():
            w = fc(manual, "fc1").weight
            scale = w.abs().mean() if dims is None else w.abs().mean(dim=dims, keepdim=True)
            w.copy_(torch.sign(w) * scale)
            want = by_hand(manual, sigma)
        assert_same_accuracy(got["own_layer_binarized_accuracy" + key], want, len(X))
    assert got["own_layer_binarized_accuracy"] != got["own_layer_binarized_accuracy_per_channel"]


def test_no_point_statistic_without_a_point_or_a_feeding_layer() -> None:
    got = cell_stats(evaluation("<input>"), MODEL, 0.5, None, [0.0])
    assert np.isnan(got["own_layer_binarized_accuracy"])
    assert got["activation_zero_fraction"] == float((X == 0).double().mean())
    glob = clean_stats(evaluation("<global>", ("fc1", "act1")), MODEL, [0.5, 1.0])
    assert np.isnan(glob["clean_activation_zero_fraction"])
    assert np.isnan(glob["clean_onoff_accuracy"]).all()


def test_clean_stats_evaluate_every_sigma_with_the_cells_draws() -> None:
    got = clean_stats(evaluation(), MODEL, [0.5, 3.0])
    with torch.no_grad():
        want = [by_hand(MODEL, s) for s in (0.5, 3.0)]
    assert_same_accuracy(got["clean_noisy_accuracy"], want, len(X))
    assert got["clean_activation_zero_fraction"] == activity(MODEL, "act1", X, 100).zero_fraction


def test_init_kurtosis_is_the_fresh_models_and_uniform_init_is_near_1_8() -> None:
    x, y = torch.randn(20, 400), torch.arange(20) % 4
    tp = TrainPhase(
        template=lambda: nn.Sequential(nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, 4)),
        train_data=TensorData(x, y, "train"),
        test=TensorData(x, y, "test"),
        noise=Multiplicative(),
        config=TrainConfig(epochs=1),
        seed=SEED,
    )
    got = tp.init_kurtosis(REPEAT, ["0", "2"])
    first = fresh(tp.template, SEED + REPEAT).get_submodule("0")
    assert isinstance(first, nn.Linear)
    w = first.weight.detach().double().flatten().numpy()
    assert got[0] == pytest.approx(stats.kurtosis(w, fisher=False), rel=1e-9)
    # 160,000 uniform draws: the sample kurtosis has sd ≈ 0.004 about 1.8
    assert got[0] == pytest.approx(1.8, abs=0.02)
    assert tp.owner("1") == "0" and tp.owner("<input>") is None


def test_train_phase_file_records_the_statistics_and_keeps_midpoints(tmp_path: Path) -> None:
    x, y = learnable_data(400, seed=1)
    sigmas = [0.5, 5.0]
    res = walknoise.scan(
        tiny_mlp(),
        (X, Y),
        noise="multiplicative",
        sigmas=sigmas,
        layers=["<input>", "act1"],
        repeats=2,
        phase="train",
        train={"epochs": 2, "lr": 1e-2, "batch_size": 50},
        train_data=(x, y),
        output=tmp_path / "r.h5",
        progress=False,
    )
    ds = walknoise.load(tmp_path / "r.h5").dataset
    for name, (dims, _, _) in TRAIN_VARIABLES.items():
        assert ds[name].dims == dims, name
    assert list(ds["test_sigma"].values) == [0.0, *sigmas]
    act1 = ds.sel(layer="act1")
    assert np.isfinite(act1["onoff_accuracy"]).all()
    assert np.isfinite(act1["own_layer_binarized_accuracy"]).all()
    assert np.isnan(ds.sel(layer="<input>")["own_layer_binarized_accuracy"]).all()
    # the matrix's diagonal is the cell's own accuracy: same model, same draws
    matrix = act1["cross_accuracy"].sel(test_sigma=sigmas).values  # (sigma, repeat, test σ)
    diag = matrix.diagonal(axis1=0, axis2=2)  # (repeat, sigma)
    assert_same_accuracy(diag.T, act1["trained_accuracy"].values, len(X))
    assert {"midpoint", "low", "high"} <= set(res.midpoints("train").columns)
    assert {"midpoint", "low", "high"} <= set(walknoise.load(tmp_path / "r.h5").midpoints())


def test_per_channel_binarization_scales_each_output_row() -> None:
    """sign(w)·mean|w| over each output feature's row (dim 0 of a Linear's weight), written
    out for a 2×3 weight whose rows and columns have different mean magnitudes."""
    from walknoise.walk.weights import binarized

    net = nn.Sequential(nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -2.0, 3.0], [-0.5, 0.25, 0.75]]))
    rows = binarized(net, ["0"], per_channel=True)[0].weight
    want = torch.tensor([[2.0, -2.0, 2.0], [-0.5, 0.5, 0.5]])  # row means 2 and 0.5
    torch.testing.assert_close(rows, want)
    whole = binarized(net, ["0"])[0].weight  # one scale: mean of all six, 1.25
    torch.testing.assert_close(whole, torch.tensor([[1.25, -1.25, 1.25], [-1.25, 1.25, 1.25]]))
