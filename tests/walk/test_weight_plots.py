"""Train-phase figures on a small real train-phase result."""

import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from tests.walk.test_trainphase import phase
from walknoise.errors import WalknoiseError
from walknoise.walk import weight_plots


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    import walknoise

    tp = phase()
    return walknoise.scan(
        tp.template,
        tp.test,
        sigmas=[0.1, 1.0],
        repeats=1,
        phase="train",
        train={"epochs": 1},
        layers=["fc1", "act1"],
        progress=False,
        train_data=tp.train_data,
    )


def test_weights_heatmaps(trained) -> None:  # type: ignore[no-untyped-def]
    fig = weight_plots.weights(trained)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    ds = trained.dataset
    # each point's own parametrised layer: the last one at or before it in execution order
    assert json.loads(ds.attrs["param_layer_of"]) == {"fc1": "fc1", "act1": "fc1"}
    assert list(ds["layer"].values) == ["fc1", "act1", "<global>"]
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["fc1 (fc1)", "act1 (fc1)", "<global> (all)"]
    # growth: geometric mean over repeats of the own layer; <global>: over every layer too
    mesh = fig.axes[0].collections[0].get_array().reshape(3, 2)
    log_growth = np.log(ds["growth_l2"])
    own = np.exp(log_growth.sel(param_layer="fc1").mean("repeat"))
    np.testing.assert_allclose(mesh[:2], own.sel(layer=["fc1", "act1"]).values)
    every = np.exp(log_growth.sel(layer="<global>").mean(["repeat", "param_layer"]))
    np.testing.assert_allclose(mesh[2], every.values)
    clean = ds["clean_weight_kurtosis"]
    right = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    assert right[0] == f"clean {float(clean.sel(param_layer='fc1').mean()):.2f}"
    assert right[2] == f"clean {float(clean.mean()):.2f}"
    kurt = fig.axes[1].collections[0].get_array().reshape(3, 2)
    expected = ds["weight_kurtosis"].sel(layer="act1", param_layer="fc1").mean("repeat")
    np.testing.assert_allclose(kurt[1], expected.values)


def test_histogram_and_errors(trained) -> None:  # type: ignore[no-untyped-def]
    fig = weight_plots.histogram(trained, "fc1", 1.0)
    assert len(fig.axes) == 2  # fc1 and fc2 of the tiny MLP
    with pytest.raises(WalknoiseError, match="no layer"):
        weight_plots.histogram(trained, "conv9", 1.0)
    with pytest.raises(WalknoiseError, match="no train phase"):
        weight_plots.weights(trained.for_phase("train").dataset.drop_vars("weight_kurtosis"))


def test_train_only_file_gives_the_trained_cells_as_a_dataframe(trained) -> None:  # type: ignore[no-untyped-def]
    frame = trained.to_dataframe()
    ds = trained.dataset
    assert "nonfinite_fraction" not in frame  # eval-only: not recorded for trained models
    assert len(frame) == ds.sizes["layer"] * ds.sizes["sigma"] * ds.sizes["repeat"]
    expected = ds["trained_accuracy"].to_dataframe().reset_index()["trained_accuracy"]
    assert frame["accuracy"].tolist() == expected.tolist()
    assert frame["accuracy"].notna().all()
