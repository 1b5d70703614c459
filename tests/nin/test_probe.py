"""The probe grid: same start for every run, phases and fits stored, a netCDF-4 file."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import xarray as xr

from tests.nin.toy import _one_thread, data, small  # noqa: F401 (an autouse fixture)
from walknoise.data import TensorData
from walknoise.errors import WalknoiseError
from walknoise.nin.phases import PHASES, PhaseCriteria
from walknoise.nin.probe import ProbeConfig, ProbeResult, load_probe, probe
from walknoise.nin.report import probe_text
from walknoise.nin.train import torch_threads
from walknoise.training import seeded_init

CONFIG = ProbeConfig(sigma_eps=(0.01, 1e4), lr=(0.05, 0.2), seeds=(0, 1), epochs=3)


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[ProbeResult, Path]:
    path = tmp_path_factory.mktemp("probe") / "probe.h5"
    train, test = data()
    with torch_threads(1):
        out = probe(small, train, CONFIG, test_data=test, output=path, progress=False)
    return out, path


def test_grid_layout(result: tuple[ProbeResult, Path]) -> None:
    ds = result[0].dataset
    steps = 3 * 8  # 500 samples / 64 per batch = 8 steps per epoch
    sizes = {"sigma_eps": 2, "lr": 2, "seed": 2, "nin": 1, "step": steps + 1}
    assert dict(ds.sizes) == sizes | {"hessian_step": steps + 1}  # 24 // 20: every step
    assert ds["nin"].values.tolist() == ["1"]
    assert set(ds["phase"].values.ravel()) <= set(range(len(PHASES)))
    niw = ds["niw_norm"].values
    # Every σ_ε of a seed starts from the same NIWs (and the same model weights).
    assert np.array_equal(niw[0, :, :, :, 0], niw[1, :, :, :, 0])
    assert not np.array_equal(niw[0, 0, 0, :, 0], niw[0, 0, 1, :, 0])


def test_tiny_noise_tracks_the_reference_and_huge_noise_diverges(
    result: tuple[ProbeResult, Path],
) -> None:
    ds = result[0].dataset
    tiny = ds["train_loss"].sel(sigma_eps=0.01).values
    ref = ds["reference_train_loss"].values
    np.testing.assert_allclose(tiny, ref, rtol=2e-3)  # w·ε ~ 1e-3: nearly no effect
    assert (ds["phase"].sel(sigma_eps=0.01).values == PHASES.index("decoupled")).all()
    assert (ds["phase"].sel(sigma_eps=1e4, lr=0.2).values == PHASES.index("divergent")).all()
    grid = result[0].phase_grid()
    assert grid.loc[0.01].tolist() == ["decoupled", "decoupled"]


def test_file_is_netcdf4_with_dimension_scales(result: tuple[ProbeResult, Path]) -> None:
    memory, path = result
    with xr.open_dataset(path, engine="h5netcdf") as opened:
        assert set(opened.dims) == {"sigma_eps", "lr", "seed", "nin", "step", "hessian_step"}
        assert opened["hessian_top_eigenvalue"].dims[-1] == "hessian_step"
        assert opened["niw_norm"].dims == ("sigma_eps", "lr", "seed", "nin", "step")
        assert opened["niw_norm"].attrs["units"] == "1"
        assert opened["tau_niw"].attrs["long_name"].startswith("exponential decay time")
        assert opened["phase"].attrs["flag_meanings"] == " ".join(PHASES)
        np.testing.assert_array_equal(opened["niw_norm"].values, memory.dataset["niw_norm"].values)
    with h5py.File(path, "r") as f:
        assert f["step"].is_scale and f["nin"].is_scale
        assert f["niw_norm"].dims[3].keys() == ["nin"]
        assert f["nin"].dtype.kind == "O"  # variable-length UTF-8
        config = json.loads(f.attrs["config"])
        assert config["sigma_eps"] == [0.01, 1e4] and config["optimizer"] == "sgd"
        assert f.attrs["format"] == "walknoise-nin-probe"
    back = load_probe(path)
    xr.testing.assert_identical(
        back.dataset[["phase", "niw_norm"]], memory.dataset[["phase", "niw_norm"]]
    )


def test_hessian_top_eigenvalue_over_training(result: tuple[ProbeResult, Path]) -> None:
    ds = result[0].dataset
    lam = ds["hessian_top_eigenvalue"]
    assert lam.dims == ("sigma_eps", "lr", "seed", "nin", "hessian_step")
    ref = ds["reference_hessian_top_eigenvalue"].values
    # Step 0: the same initial weights in every run of a seed, so the same λ.
    start = lam.sel(hessian_step=0).values
    np.testing.assert_allclose(start, np.broadcast_to(ref[..., 0], start.shape), rtol=1e-4)
    # ... and it is the dense Hessian's top eigenvalue (first 512 training samples: all 500).
    train, _ = data()
    for k, seed in enumerate(CONFIG.seeds):
        with seeded_init(seed):
            model = small()
        model.eval()

        def loss(u: torch.Tensor, model: torch.nn.Module = model) -> torch.Tensor:
            z = model[1](model[0](train.x)) + u
            return torch.nn.functional.cross_entropy(model[3](model[2](z)), train.y)

        dense = torch.autograd.functional.hessian(loss, torch.zeros(24))
        top = float(torch.linalg.eigvalsh(dense.double()).max())
        assert ref[:, k, 0, 0] == pytest.approx([top, top], rel=0.01)
    # Training changes it, and the clean runs at tiny σ_ε follow the reference's curvature.
    assert np.isfinite(ref).all() and not np.allclose(ref[..., 0:1], ref[..., -1:], rtol=0.01)
    tiny = lam.sel(sigma_eps=0.01).values
    np.testing.assert_allclose(tiny, ref, rtol=0.05)  # w·ε ~ 1e-3 barely moves the weights


def test_conv_nins_have_no_lambda_and_everything_still_reads() -> None:
    """A pixel-wise conv NIN's curvature is not the common-shift Hessian: NaN, quietly."""
    train, test = data()
    images = [TensorData(d.x.reshape(-1, 1, 4, 4), d.y, d.name) for d in (train, test)]

    def conv() -> torch.nn.Module:
        return torch.nn.Sequential(
            torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(12, 4)
        )

    config = ProbeConfig(sigma_eps=(1.0,), lr=(0.1,), epochs=1, where="all")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no all-NaN warnings from the summaries
        result = probe(conv, images[0], config, test_data=images[1], progress=False)
        lam = result.dataset["hessian_top_eigenvalue"]
        assert np.isnan(lam.sel(nin="0")).all() and np.isfinite(lam.sel(nin="3")).all()
        assert "λ at the start / largest / end" in probe_text(result)
        only_conv = ProbeConfig(sigma_eps=(1.0,), lr=(0.1,), epochs=1)
        bare = probe(conv, images[0], only_conv, test_data=images[1], progress=False)
        assert np.isnan(bare.stability()["lambda_start"]).all()
        assert "- / - / -" in probe_text(bare)


def test_same_config_same_numbers(result: tuple[ProbeResult, Path]) -> None:
    train, test = data()
    config = ProbeConfig(sigma_eps=(1e4,), lr=(0.2,), seeds=(1,), epochs=3)
    again = probe(small, train, config, test_data=test, progress=False).dataset
    first = result[0].dataset.sel(sigma_eps=[1e4], lr=[0.2], seed=[1])
    np.testing.assert_array_equal(again["train_loss"].values, first["train_loss"].values)


def test_phases_table_and_text(result: tuple[ProbeResult, Path]) -> None:
    df = result[0].phases()
    assert len(df) == 8 and set(df["phase"]) <= set(PHASES)
    text = probe_text(result[0])
    assert "decoupled" in text and "lr 0.05" in text and "σ_ε" in text
    assert (
        "η σ_ε² λ at the start / largest / end" in text
        and "boundary at 2" in text
        and "undetermined where" in text
    )
    st = result[0].stability()
    run = df.loc[(0.01, 0.05, 0)]
    lam = result[0].dataset["hessian_top_eigenvalue"].sel(sigma_eps=0.01, lr=0.05, seed=0)
    assert run["lambda_start"] == float(lam.isel(nin=0, hessian_step=0))
    assert run["eta_sigma2_lambda_end"] == pytest.approx(0.05 * 0.01**2 * float(lam[0, -1]))
    assert st["reference_lambda_end"].dims == ("lr", "seed")
    assert run["lambda_max"] == float(lam.max())  # one NIN: its largest along the run


def test_classification_follows_the_criteria() -> None:
    train, test = data()
    strict = ProbeConfig(sigma_eps=(1.0,), lr=(0.05,), epochs=2, criteria=PhaseCriteria(match=0.0))
    ds = probe(small, train, strict, test_data=test, progress=False).dataset
    assert PHASES[int(ds["phase"].values.ravel()[0])] != "decoupled"  # match 0: never


def test_a_run_whose_reference_did_not_learn_is_undetermined() -> None:
    train, test = data()
    config = ProbeConfig(sigma_eps=(0.01, 10.0), lr=(1e-4,), epochs=1)  # 8 tiny steps
    ds = probe(small, train, config, test_data=test, progress=False).dataset
    fall = ds["reference_fall"].values
    assert (fall < 0.05).all()  # the clean test loss barely moved without NINs
    assert (ds["phase"].values == PHASES.index("undetermined")).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigma_eps": (0.0, 1.0)}, "σ_ε"),
        ({"lr": (0.1, 0.1)}, "twice"),
        ({"seeds": ()}, "seeds"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"epochs": 0}, "epochs"),
        ({"init_scale": -1.0}, "init scale"),
    ],
)
def test_bad_config(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(WalknoiseError, match=match):
        ProbeConfig(**kwargs)  # type: ignore[arg-type]


def test_user_mistakes_fail_before_training(tmp_path: Path) -> None:
    train, test = data()
    with pytest.raises(WalknoiseError, match="test set"):
        probe(small, train, CONFIG, progress=False)
    with pytest.raises(WalknoiseError, match="not a Linear/Conv"):
        probe(small, train, ProbeConfig(where=("2",)), test_data=test, progress=False)
    with pytest.raises(WalknoiseError, match="create it"):
        probe(small, train, CONFIG, test_data=test, output=tmp_path / "no" / "p.h5")
    with pytest.raises(WalknoiseError, match="no such"):
        load_probe(tmp_path / "missing.h5")
    other = tmp_path / "other.h5"
    xr.Dataset({"a": ("x", [1.0])}, coords={"x": [0]}).to_netcdf(other, engine="h5netcdf")
    with pytest.raises(WalknoiseError, match="not a walknoise NIN probe file"):
        load_probe(other)


def test_mnist_mlp_phases(tmp_path: Path) -> None:
    """The bundled data, one epoch: no noise effect at small σ_ε, divergence at huge σ_ε·lr."""
    config = ProbeConfig(sigma_eps=(1.0, 3000.0), lr=(0.1,), epochs=1)
    torch.manual_seed(0)
    ds = probe("mlp", "mnist", config, progress=False).dataset
    assert PHASES[int(ds["phase"].sel(sigma_eps=1.0).values.item())] == "decoupled"
    assert PHASES[int(ds["phase"].sel(sigma_eps=3000.0).values.item())] == "divergent"
    assert float(ds["reference_final_test_accuracy"].values.item()) > 0.5
