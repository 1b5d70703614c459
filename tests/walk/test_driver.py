"""End-to-end scans checked against independent computations."""

import dataclasses
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

import walknoise
from tests.conftest import Residual, assert_same_accuracy, fit, learnable_data, tiny_mlp
from walknoise.errors import WalknoiseError
from walknoise.noise.inject import batch_seed
from walknoise.walk import enclosing, evaluate, runner
from walknoise.walk.spec import ScanSpec

SIGMAS = "log:1e-2:1e2:9"


def by_hand(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    layer: str,
    sigma: float,
    repeat: int,
    batch: int,
    seed: int = 0,
) -> float:
    """One cell recomputed with a plain hook and its own draws from the cell's seed."""
    gen = torch.Generator()
    module = dict(model.named_modules())[layer]

    def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
        return out + sigma * torch.randn((1, *out.shape), generator=gen)[0]

    handle = module.register_forward_hook(hook)
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch):
            gen.manual_seed(batch_seed(seed, layer, repeat, start // batch))
            logits = model(x[start : start + batch])
            correct += int((logits.argmax(1) == y[start : start + batch]).sum())
    handle.remove()
    return correct / len(x)


def test_one_cell_recomputed_exactly_from_its_seed(trained_mlp, data) -> None:
    x, y = data
    result = walknoise.scan(
        trained_mlp,
        (x, y),
        sigmas=SIGMAS,
        repeats=2,
        batch_size=128,
        progress=False,
        max_batch=1000,
    )  # σ split into chunks
    for layer, j, r in [("fc1", 4, 1), ("act1", 6, 0), ("fc2", 5, 1)]:
        sigma = float(result.sigmas[j])
        expected = by_hand(trained_mlp, x, y, layer, sigma, r, batch=128)
        assert result.accuracy.sel(layer=layer, repeat=r).values[j] == expected


def test_accuracy_falls_from_clean_to_chance(trained_mlp, data) -> None:
    result = walknoise.scan(trained_mlp, data, sigmas="log:1e-3:1e3:7", repeats=2, progress=False)
    acc = result.accuracy.mean("repeat")
    assert result.clean_accuracy > 0.9
    assert np.allclose(acc.isel(sigma=0), result.clean_accuracy, atol=0.02)
    assert np.all(np.abs(acc.isel(sigma=-1) - 0.25) < 0.08)  # 4 classes
    mids = result.midpoints()
    assert mids["reached"].all() and list(mids.index)[-1] == "<global>"
    # noise everywhere at once hurts at least as much as noise at any one point
    assert mids.loc["<global>", "midpoint"] <= mids["midpoint"].min() * 1.0001


@pytest.mark.parametrize("make", [lambda: tiny_mlp(batchnorm=True), Residual])
def test_fanout_equals_replicated_input(make, monkeypatch) -> None:
    x, y = learnable_data(300)
    model = fit(make(), x, y, steps=50)
    kwargs = dict(sigmas=SIGMAS, repeats=2, batch_size=64, progress=False, noise="combined")
    fast = walknoise.scan(model, (x, y), **kwargs)
    original = runner.LayerRunner._forward

    def replicate(self, xb, fo, points):  # type: ignore[no-untyped-def]
        self._fans[points] = False  # as if fan-out had failed: the input is replicated
        return original(self, xb, fo, points)

    monkeypatch.setattr(runner.LayerRunner, "_forward", replicate)
    monkeypatch.setattr(runner, "linear_successors", lambda model: {})  # the plain path
    monkeypatch.setattr(enclosing, "WAYS", ())  # no traced graph: the input
    plain = walknoise.scan(model, (x, y), **kwargs)
    # Two computations of the same cells (the prefix once and fanned out, or on a replicated
    # input): logits agree to float32 rounding (~1e-6 relative after a few layers), and a mean
    # loss over 300 samples adds little to that; 1e-5 leaves room for a 10x larger error.
    np.testing.assert_allclose(fast.dataset["loss"], plain.dataset["loss"], rtol=1e-5)
    assert_same_accuracy(fast.accuracy, plain.accuracy, n=len(y))


def test_file_opens_in_xarray_with_coordinates(trained_mlp, data, tmp_path: Path) -> None:
    out = tmp_path / "r.h5"
    walknoise.scan(trained_mlp, data, sigmas=SIGMAS, repeats=3, output=out, progress=False)
    ds = xr.open_dataset(out, engine="h5netcdf")
    assert list(ds["layer"].values) == ["<input>", "fc1", "act1", "fc2", "<global>"]
    assert ds["sigma"].values == pytest.approx(np.logspace(-2, 2, 9))
    assert list(ds["repeat"].values) == [0, 1, 2]
    assert ds["accuracy"].dims == ("layer", "sigma", "repeat")
    assert ds["midpoint"].attrs["long_name"].startswith("midpoint noise level")
    assert ds.attrs["walknoise_version"] == walknoise.__version__
    assert len(ds.attrs["model_sha256"]) == 64
    loaded = walknoise.load(out)
    np.testing.assert_array_equal(loaded.accuracy.values, ds["accuracy"].values)
    assert loaded.complete and len(loaded.to_dataframe()) == 5 * 9 * 3


def test_resume_after_interrupt_gives_same_file(trained_mlp, data, tmp_path, monkeypatch):
    full = walknoise.scan(
        trained_mlp, data, sigmas=SIGMAS, repeats=2, output=tmp_path / "full.h5", progress=False
    )
    calls = {"n": 0}
    original = evaluate._values

    def flaky(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(evaluate, "_values", flaky)
    out = tmp_path / "resumed.h5"
    with pytest.raises(KeyboardInterrupt):
        walknoise.scan(trained_mlp, data, sigmas=SIGMAS, repeats=2, output=out, progress=False)
    partial = walknoise.load(out)
    assert partial.dataset["layer_done"].values.tolist() == [1, 1, 0, 0, 0]
    assert np.isnan(partial.accuracy.sel(layer="act1")).all()
    resumed = walknoise.scan(
        trained_mlp, data, sigmas=SIGMAS, repeats=2, output=out, progress=False
    )
    assert calls["n"] == 3 + 3  # only the three missing layers ran again
    for name in full.dataset.data_vars:  # bit for bit: the same path in the same process
        np.testing.assert_array_equal(resumed.dataset[name].values, full.dataset[name].values)
    assert walknoise.load(out).complete


def test_different_config_on_existing_file_is_refused(trained_mlp, data, tmp_path) -> None:
    out = tmp_path / "r.h5"
    walknoise.scan(trained_mlp, data, sigmas=SIGMAS, repeats=1, output=out, progress=False)
    with pytest.raises(WalknoiseError, match="differs in: repeats") as err:
        walknoise.scan(trained_mlp, data, sigmas=SIGMAS, repeats=2, output=out, progress=False)
    assert "pass overwrite=True" in str(err.value) and err.value.argument == "overwrite"
    walknoise.scan(
        trained_mlp, data, sigmas=SIGMAS, repeats=2, output=out, overwrite=True, progress=False
    )
    assert walknoise.load(out).dataset.sizes["repeat"] == 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_huge_sigma_counts_nonfinite_as_wrong(trained_mlp, data, dtype) -> None:
    import copy

    model = copy.deepcopy(trained_mlp).to(dtype)
    result = walknoise.scan(
        model,
        data,
        sigmas="1e-3,1e10,1e16",
        repeats=1,
        progress=False,
        noise="additive",
        layers=["fc1", "fc2"],
    )
    acc = result.accuracy.values
    assert np.isfinite(acc).all() and (acc >= 0).all() and (acc <= 1).all()
    assert (acc[:, -1] <= 0.4).all()  # additive noise of 1e16 leaves nothing but chance
    if dtype == torch.float16:  # 1e10 overflows float16: every row non-finite, all wrong
        assert (result.dataset["nonfinite_fraction"].sel(sigma=1e10).values == 1).all()
        assert (acc[:, 1] == 0).all()
        assert np.isnan(result.dataset["loss"].sel(sigma=1e10).values).all()


@pytest.mark.parametrize("noise", ["additive", "multiplicative", "combined"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_sigma_up_to_1e16_poisons_no_other_cell(trained_mlp, data, dtype, noise) -> None:
    """Overflowing cells are counted wrong, every statistic stays finite or explicitly NaN,
    and the small-σ cells are exactly what a grid without the huge σ gives."""
    import copy

    model = copy.deepcopy(trained_mlp).to(dtype)
    kwargs = dict(repeats=2, progress=False, noise=noise, layers=["<input>", "fc1", "fc2"])
    huge = walknoise.scan(model, data, sigmas="1e-3,1e-1,1e4,1e10,1e16", **kwargs).dataset
    small = walknoise.scan(model, data, sigmas="1e-3,1e-1", **kwargs).dataset
    # Five σ stack more copies per forward pass than two: another batch shape, so the same
    # cells may round differently (see assert_same_accuracy). Losses then agree to a few units
    # of the dtype's rounding (16 u: float32 1e-6, bfloat16 6%), and no sample of the fitted
    # model has its two top logits within 16 u of each other (measured), so none can flip.
    # Poisoning by the huge σ would give NaN, inf or chance-level cells instead.
    rtol = 16 * torch.finfo(dtype).eps / 2
    np.testing.assert_allclose(huge["loss"].values[:, :2], small["loss"].values, rtol=rtol)
    for name in ("accuracy", "nonfinite_fraction"):  # both a count of samples / n
        assert_same_accuracy(huge[name].values[:, :2], small[name].values, n=len(data[1]))
    for name in ("accuracy", "accuracy_drop", "nonfinite_fraction"):
        assert np.isfinite(huge[name].values).all(), name
    acc, nonfinite = huge["accuracy"].values, huge["nonfinite_fraction"].values
    assert ((acc >= 0) & (acc <= 1)).all() and ((nonfinite >= 0) & (nonfinite <= 1)).all()
    loss = huge["loss"].values  # NaN exactly when no sample had finite logits
    np.testing.assert_array_equal(np.isnan(loss), nonfinite == 1)
    status, mid = huge["midpoint_status"].values, huge["midpoint"].values
    assert set(status.tolist()) <= {-1, 0, 1}
    np.testing.assert_array_equal(np.isnan(mid), status == 0)  # NaN means "not reached"
    for name in ("midpoint_low", "midpoint_high", "midpoint_per_repeat"):
        values = huge[name].values
        assert (np.isnan(values) | ((values > 0) & np.isfinite(values))).all(), name


def test_relative_sigma_records_scale(trained_mlp, data) -> None:
    result = walknoise.scan(
        trained_mlp,
        data,
        sigmas=SIGMAS,
        repeats=1,
        relative=True,
        progress=False,
        layers=["fc1"],
        include_global=False,
    )
    x, _ = data
    expected = trained_mlp.fc1(x.flatten(1)).std(unbiased=False).item()
    assert result.dataset["layer_scale"].sel(layer="fc1").item() == pytest.approx(
        expected, rel=1e-4
    )
    assert result.dataset.attrs["sigma_mode"] == "relative"


def test_layers_as_a_comma_separated_string_or_a_list(trained_mlp, data) -> None:
    kw = dict(sigmas="0.1,1", repeats=1, progress=False)
    text = walknoise.scan(trained_mlp, data, layers="fc1, act*", **kw)
    listed = walknoise.scan(trained_mlp, data, layers=["fc1", "act*"], **kw)
    assert list(text.accuracy["layer"].values) == list(listed.accuracy["layer"].values)
    assert "fc1" in text.accuracy["layer"].values and "<input>" not in text.accuracy["layer"]


def test_scan_takes_every_spec_field_with_the_spec_default() -> None:
    """scan()'s keywords are ScanSpec's fields, keyword-only, with the same defaults."""
    params = inspect.signature(walknoise.scan).parameters
    assert not any(p.kind is p.VAR_KEYWORD for p in params.values())
    assert "command" not in params
    for f in dataclasses.fields(ScanSpec):
        param = params[f.name]
        assert param.kind is param.KEYWORD_ONLY, f.name
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory() or None  # extra={} is passed as None
        else:
            continue  # sigmas: scan() has a grid, the spec none
        assert param.default == default, f.name
    assert params["noise"].annotation == "NoiseKind"
    assert params["phase"].annotation == "ScanPhase"


def test_scan_takes_a_torch_device_and_records_its_name(trained_mlp, data) -> None:
    kw = dict(sigmas="0.1,1", repeats=1, progress=False, layers="fc1")
    by_object = walknoise.scan(trained_mlp, data, device=torch.device("cpu"), **kw)
    by_name = walknoise.scan(trained_mlp, data, device="cpu", **kw)
    xr.testing.assert_identical(by_object.accuracy, by_name.accuracy)
    assert '"device": "cpu"' in by_object.dataset.attrs["config"]
