"""The implicit gradient noise of GNI: analytic checks on a linear model, then the pipeline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import xarray as xr
from scipy import stats
from torch import nn

from tests.conftest import learnable_data, tiny_mlp
from walknoise.errors import WalknoiseError
from walknoise.gni import store as gni_store
from walknoise.gni.measure import (
    GNISpec,
    _fill,
    draw_gradients,
    gradient_noise,
    injection_points,
    load_gni,
    noisy_loss,
    parameter_layers,
)
from walknoise.gni.stable import fit_stable
from walknoise.noise.inject import inject
from walknoise.noise.points import INPUT

SIGMA = 0.3


@pytest.fixture
def linear() -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    """A float64 linear regression y ≈ w·x + b with a residual, so every term is non-zero."""
    g = torch.Generator().manual_seed(0)
    model = nn.Linear(5, 1).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, 5, generator=g, dtype=torch.float64))
        model.bias.fill_(0.2)
    x = torch.randn(64, 5, generator=g, dtype=torch.float64)
    y = x @ torch.randn(5, 1, generator=g, dtype=torch.float64) + 0.1
    return model, x, y


def test_noise_averaged_loss_is_clean_loss_plus_sigma2_w2(linear) -> None:  # type: ignore[no-untyped-def]
    """E_ε mean_i (w·(x_i + σε_i) + b − y_i)² = mean_i r_i² + σ²‖w‖², exactly."""
    model, x, y = linear
    w2 = float((model.weight.detach() ** 2).sum())
    with torch.no_grad():
        r = model(x) - y
        clean = float((r**2).mean())
    draws = 4000
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        avg, first = noisy_loss(model, x, y, [INPUT], "additive", SIGMA, draws, gen, loss="mse")
    assert first.shape == (64, 1)
    # One draw's loss has variance (4σ²‖w‖² mean r² + 2σ⁴‖w‖⁴)/N; K draws divide it by K.
    se = math.sqrt((4 * SIGMA**2 * w2 * clean + 2 * SIGMA**4 * w2**2) / len(x) / draws)
    assert abs(float(avg) - (clean + SIGMA**2 * w2)) < 4 * se
    assert SIGMA**2 * w2 > 20 * se  # the check can tell the regulariser from nothing


def test_implicit_gradient_has_mean_zero(linear) -> None:  # type: ignore[no-untyped-def]
    """Per-draw gradients average to ∇(clean loss + σ²‖w‖²): the implicit part is centred."""
    model, x, y = linear
    with torch.no_grad():
        r = model(x) - y
    want_w = (2 * (r * x).mean(dim=0) + 2 * SIGMA**2 * model.weight.detach()[0]).numpy()
    want_b = float(2 * r.mean())
    draws = 2000
    gen = torch.Generator().manual_seed(2)
    with inject(model, INPUT, "additive", SIGMA, generator=gen):
        (gw, gb), _ = draw_gradients(model, x, y, [model.weight, model.bias], draws, loss="mse")
    implicit_w = gw.numpy() - want_w
    implicit_b = gb.numpy()[:, 0] - want_b
    se_w = implicit_w.std(axis=0) / math.sqrt(draws)
    assert np.all(np.abs(implicit_w.mean(axis=0)) < 4 * se_w)
    assert abs(implicit_b.mean()) < 4 * implicit_b.std() / math.sqrt(draws)
    assert np.all(implicit_w.std(axis=0) > 0.05 * np.abs(want_w))  # it is noise, not zero


def test_small_additive_noise_on_a_linear_model_is_nearly_gaussian() -> None:
    """The implicit gradient is linear in ε up to an O(σ²) term: α ≈ 2 and little skew."""
    g = torch.Generator().manual_seed(3)
    model = nn.Linear(20, 1)
    x = torch.randn(640, 20, generator=g)
    y = x @ torch.randn(20, 1, generator=g)
    res = gradient_noise(model, (x, y), sigma=0.01, loss="mse", draws=100, batches=10)
    stats = res.dataset.sel(param_layer="weight").isel(sigma=0, step=0)
    coord = stats.sel(standardize="coordinate")
    assert abs(float(coord["alpha_block"]) - 2.0) < 0.25
    # the stable fit on the pooled noise: a Gaussian reads α near 2; 64,000 values give
    # McCulloch's α̂ a standard error near 0.02, and the pooled coordinates have different
    # scales (a scale mixture reads heavier), hence the wider band
    assert float(stats["alpha"]) > 1.85
    assert abs(float(coord["skewness"])) < 0.1 and abs(float(coord["kurtosis"])) < 0.3


# one small multiplicative-noise measurement, shared by the tests below
SMALL = dict(noise="multiplicative", sigma=[0.1, 0.5], draws=12, batches=3, batch_size=32)
SMALL.update(max_coords=100, params="all")


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("gni") / "gni.h5"
    res = gradient_noise(tiny_mlp(), learnable_data(200), output=path, **SMALL)
    return res, path


def test_result_shapes_and_values(result) -> None:  # type: ignore[no-untyped-def]
    res, _ = result
    ds = res.dataset
    assert list(ds["param_layer"].values) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert ds.sizes == {"param_layer": 4, "sigma": 2, "step": 1, "standardize": 3, "bin": 100}
    assert list(ds["param_coords"].values) == [100, 32, 100, 4]
    assert np.all(np.isfinite(ds["alpha"].values)) and np.all(ds["rms"].values > 0)
    hist = ds["histogram"].sum("bin") + ds["hist_outside"]
    assert np.array_equal(hist.values, ds["n_samples"].sel(standardize="layer").values)
    assert np.all(ds["n_samples"].values <= 3 * 12 * ds["param_coords"].values[:, None, None, None])
    assert float(ds["loss_noisy"].sel(sigma=0.5, step=0)) > float(ds["loss_clean"].sel(step=0))
    assert json.loads(ds.attrs["injection_points"]) == [INPUT, "act1"]
    assert np.all((ds["alpha_low"] <= ds["alpha"]) & (ds["alpha"] <= ds["alpha_high"]))
    assert np.all((ds["beta_low"] <= ds["beta"]) & (ds["beta"] <= ds["beta_high"]))
    table = res.table()
    assert len(table) == 8 and {"alpha", "beta", "alpha_block_robust"} <= set(table.columns)
    assert "fc2.bias" in res.summary() and "β [95% CI]" in res.summary()


def test_same_seed_same_numbers(result) -> None:  # type: ignore[no-untyped-def]
    res, _ = result
    again = gradient_noise(tiny_mlp(), learnable_data(200), **SMALL)
    for name in ("alpha", "beta_high", "alpha_block", "skewness", "histogram", "rms"):
        assert np.array_equal(again.dataset[name].values, res.dataset[name].values, equal_nan=True)


def test_file_is_netcdf_with_scales(result) -> None:  # type: ignore[no-untyped-def]
    res, path = result
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert ds["alpha_block"].dims == ("param_layer", "sigma", "step", "standardize")
        assert ds["alpha"].dims == ("param_layer", "sigma", "step")
        assert ds["alpha"].attrs["units"] == "1" and "stable law" in ds["alpha"].attrs["long_name"]
        assert list(ds["standardize"].values) == ["layer", "coordinate", "robust"]
        assert json.loads(ds.attrs["config"])["draws"] == 12
    with h5py.File(path, "r") as f:
        for name in ("alpha", "alpha_block", "histogram", "loss_noisy", "param_size"):
            scales = [dim[0].name.lstrip("/") for dim in f[name].dims]
            assert scales == list(res.dataset[name].dims)
        assert f["param_layer"].dtype.kind == "O"  # variable-length UTF-8
    loaded = load_gni(path).dataset
    assert np.array_equal(loaded["alpha"].values, res.dataset["alpha"].values, equal_nan=True)
    assert list(loaded["param_layer"].values) == list(res.dataset["param_layer"].values)


def test_default_points_and_parameters() -> None:
    model = tiny_mlp()
    assert injection_points(model, (1, 4, 4)) == [INPUT, "act1"]
    assert injection_points(model, (1, 4, 4), ["fc*"]) == ["fc1", "fc2"]
    assert [n for n, _ in parameter_layers(model)] == ["fc1.weight", "fc2.weight"]


def test_fill_fits_the_stable_law_of_the_centred_noise() -> None:
    """``alpha``/``beta`` are the stable fit of the tensor's noise after the mean over draws
    is removed and dead coordinates are dropped: synthetic per-draw gradients with a known
    law, a batch-dependent mean (the explicit part) and one coordinate the noise never
    moves. Coordinates get scales spread log-normally: pooled, they read heavier than the
    law; ``alpha_mad`` (each coordinate divided by its MAD first) recovers it."""
    rng = np.random.default_rng(0)
    noise = stats.levy_stable.rvs(1.5, 0.5, size=(8, 150, 40), random_state=rng)
    noise *= np.exp(rng.normal(0.0, 1.0, size=(1, 1, 40)))
    g = noise + rng.normal(size=(8, 1, 40)) * 10  # the mean gradient of each batch
    g[:, :, 0] = 3.0  # a dead coordinate: constant over the draws
    ds = gni_store.empty(["w"], [0.1], 0, {})
    _fill(ds, (0, 0), g.astype(np.float32), np.random.default_rng(1), bootstrap=100)
    cell = ds.isel(param_layer=0, sigma=0, step=0)
    centred = (g - g.mean(axis=1, keepdims=True))[:, :, 1:].astype(np.float32)
    want = fit_stable(centred.astype(np.float64))
    # float32 storage moves a few quantiles in the last digits: 1e-3 is far below the
    # differences asserted next
    assert float(cell["alpha"]) == pytest.approx(want[0], abs=1e-3)
    assert float(cell["beta"]) == pytest.approx(want[1], abs=1e-3)
    assert int(cell["stable_n"]) == 8 * 150 * 39  # all of them: under MAX_POINTS
    assert float(cell["alpha_high"]) < 1.4  # the scale mixture reads heavier than 1.5
    # MAD-scaled: each coordinate's MAD comes from 150 draws (about 8 % error, a slight
    # residual mixture), so 0.1 rather than the interval
    assert abs(float(cell["alpha_mad"]) - 1.5) < 0.1 and abs(float(cell["beta_mad"]) - 0.5) < 0.2
    assert float(cell["alpha_mad_low"]) <= float(cell["alpha_mad"]) <= float(cell["alpha_mad_high"])


def test_bad_input_is_a_user_error(tmp_path: Path) -> None:
    data = learnable_data(100)
    for kwargs, match in (
        ({"draws": 1}, "at least 2"),
        ({"sigma": -0.1}, "positive"),
        ({"layers": ["nope"]}, "matches no injection point"),
        ({"params": "some"}, "params must be"),
        ({"loss": "hinge"}, "unknown loss"),
        ({"noise": "pink"}, "unknown noise"),
        ({"loss": "mse"}, "float tensors"),
    ):
        with pytest.raises(WalknoiseError, match=match):
            gradient_noise(tiny_mlp(), data if kwargs != {"loss": "mse"} else "mnist", **kwargs)
    (tmp_path / "taken.h5").write_text("x")
    with pytest.raises(WalknoiseError, match="pass overwrite=True"):
        gradient_noise(tiny_mlp(), data, output=tmp_path / "taken.h5")
    with pytest.raises(WalknoiseError, match=r"cannot read .* as HDF5"):
        load_gni(tmp_path / "taken.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(WalknoiseError, match="not a walknoise gradient-noise"):
        load_gni(tmp_path / "other.h5")
    with pytest.raises(WalknoiseError, match="batches"):
        GNISpec(batches=0)
