"""The regulariser comparison: every method tuned alike on a validation split, tested on
perturbations, compared with the baseline by a paired test over seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from scipy import stats

from tests.nin.toy import _one_thread, data, small  # noqa: F401 (an autouse fixture)
from walknoise.data import TensorData
from walknoise.errors import WalknoiseError
from walknoise.nin.compare import METHODS, CompareConfig, CompareResult, compare, load_compare
from walknoise.nin.compare_report import (
    chosen_table,
    compare_markdown,
    compare_summary,
    compare_tests,
    compare_text,
)
from walknoise.nin.perturb import PERTURBATIONS
from walknoise.nin.regularisers import Fit, train_candidate
from walknoise.nin.train import torch_threads
from walknoise.nin.tuning import condition_seed, perturbed_accuracy
from walknoise.training import evaluate

GRIDS = {
    "none": (0.02, 0.05),
    "in-ninr": (1.0, 30.0),
    "full-ninr": (1.0, 30.0),
    "input-noise": (0.3, 1.0),
    "l2": (1e-4, 1e-2),
    "dropout": (0.1, 0.3),
}
CONFIG = CompareConfig(
    seeds=(0, 1, 2),
    epochs=4,
    lr=0.05,
    grids=GRIDS,
    perturbations={"gaussian": (0.5, 3.0), "rotation": (15.0,), "contrast": (0.5,)},
    walk_sigmas="0.1,1,10,100",
    walk_repeats=1,
)


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[CompareResult, Path]:
    path = tmp_path_factory.mktemp("compare") / "compare.h5"
    train, test = data()
    with torch_threads(1):
        out = compare(small, train, CONFIG, test_data=test, output=path, progress=False)
    return out, path


def test_layout_and_what_was_chosen(result: tuple[CompareResult, Path]) -> None:
    ds = result[0].dataset
    sizes = {"method": 6, "seed": 3, "candidate": 2, "condition": 4, "layer": 5}
    assert dict(ds.sizes) == sizes
    assert ds["condition"].values.tolist() == [
        "gaussian 0.5", "gaussian 3", "rotation 15", "contrast 0.5",
    ]  # fmt: skip
    assert result[0].methods == list(METHODS)
    assert ds.attrs["optimizer"] == "sgd" and ds.attrs["fit_size"] == 400
    assert ds.attrs["validation_size"] == 100  # 20% of the 500 training samples
    assert (ds["clean_accuracy"].values > 0.4).all()  # chance is 0.25: every method learns
    chosen = ds["chosen_candidate"].values
    scores = ds["validation_score"].values
    # The chosen candidate has the best validation score (the first of ties).
    assert np.array_equal(chosen, np.argmax(scores, axis=-1))
    grid = np.array([GRIDS[m] for m in METHODS])
    assert np.array_equal(ds["chosen_value"].values, np.take_along_axis(grid, chosen, 1))
    # Every method of a seed trains at the learning rate the baseline chose for that seed.
    lr = ds["lr"].values
    assert np.array_equal(lr, np.broadcast_to(ds["chosen_value"].values[0], lr.shape))
    niw = ds["niw_norm_end"].values
    assert np.isfinite(niw[1:3]).all() and np.isnan(niw[[0, 3, 4, 5]]).all()


def _check_against_scipy(values: np.ndarray, p: np.ndarray, diff: np.ndarray) -> int:
    """Each method's row against ``ttest_rel`` on the baseline's (row 0); how many had a
    defined p-value."""
    tested = 0
    for j in range(1, len(values)):
        assert diff[j] == pytest.approx(np.mean(values[j] - values[0]), abs=1e-12)
        if np.ptp(values[j] - values[0]) < 1e-9:  # no spread: undefined t, reported as NaN
            assert np.isnan(p[j])
            continue
        tested += 1
        assert p[j] == pytest.approx(stats.ttest_rel(values[j], values[0]).pvalue, rel=1e-9)
    assert np.isnan(p[0]) and np.isnan(diff[0])  # the baseline itself
    return tested


def test_paired_tests_match_scipy(result: tuple[CompareResult, Path]) -> None:
    ds = result[0].dataset
    tested = 0
    for c in range(ds.sizes["condition"]):
        acc = ds["accuracy"].values[:, :, c]
        p, diff = ds["accuracy_p_value"].values[:, c], ds["accuracy_difference"].values[:, c]
        tested += _check_against_scipy(acc, p, diff)
    assert tested >= 10
    _check_against_scipy(
        ds["clean_accuracy"].values, ds["clean_p_value"].values, ds["clean_difference"].values
    )


CELL = {"method": "dropout", "seed": 1}  # a dict: sel(method=...) is xarray's fill method


def test_test_numbers_recomputed_by_hand(result: tuple[CompareResult, Path]) -> None:
    """Retrain the chosen dropout model of seed 1 and recompute its perturbed accuracy with
    the perturbation functions directly."""
    ds = result[0].dataset
    train, test = data()
    value = float(ds["chosen_value"].sel(CELL))
    lr = float(ds["lr"].sel(CELL))
    order = torch.from_numpy(np.random.default_rng(0).permutation(500))
    fit_data = TensorData(train.x[order[:400]], train.y[order[:400]], "fit")
    fit = Fit("sgd", lr, 0.0, 4, 64)
    model = train_candidate("dropout", value, small, fit_data, fit, seed=1).model
    assert evaluate(model, test.x, test.y)[0] == ds["clean_accuracy"].sel(CELL)
    gen = torch.Generator().manual_seed(condition_seed(1, 2))
    rotated = PERTURBATIONS["rotation"].fn(test.x, 15.0, gen)
    want = evaluate(model, rotated, test.y)[0]
    assert ds["accuracy"].sel({"method": "dropout", "seed": 1, "condition": "rotation 15"}) == want
    conditions = [("gaussian", 0.5), ("gaussian", 3.0), ("rotation", 15.0), ("contrast", 0.5)]
    got = perturbed_accuracy(model, test, conditions, seed=1)
    assert got == ds["accuracy"].sel(CELL).values.tolist()


def test_tables(result: tuple[CompareResult, Path]) -> None:
    summary = compare_summary(result[0])
    assert list(summary.columns) == list(METHODS)
    assert list(summary.index) == [
        "clean",
        "gaussian 0.5",
        "gaussian 3",
        "rotation 15",
        "contrast 0.5",
    ]
    acc = result[0].dataset["clean_accuracy"].values[0]
    assert summary.loc["clean", "none"] == f"{acc.mean():.3f} ± {acc.std():.3f}"
    tests = compare_tests(result[0])
    assert list(tests.columns) == list(METHODS[1:])
    ds = result[0].dataset
    diff = float(ds["accuracy_difference"].values[1, 1])
    p = float(ds["accuracy_p_value"].values[1, 1])
    want = f"{diff:+.3f}" + (f" (p {p:.2g})" if p >= 0.001 else " (p < 0.001)")
    assert str(tests.loc["gaussian 3", "in-ninr"]) == (want if np.isfinite(p) else want[:6])
    chosen = chosen_table(result[0])
    assert chosen.loc["l2", "hyper-parameter"] == "weight decay"
    assert chosen.loc["l2", "candidates"] == "0.0001, 0.01"
    text = compare_text(result[0])
    for method in METHODS:
        assert method in text
    assert "ttest_rel" in text and "validation" in text
    markdown = compare_markdown(result[0])
    assert "| test | none | in-ninr |" in markdown and "| `<input>` |" in markdown


def test_file_round_trip(result: tuple[CompareResult, Path]) -> None:
    memory, path = result
    with xr.open_dataset(path, engine="h5netcdf") as opened:
        assert opened["accuracy"].dims == ("method", "seed", "condition")
        assert opened["midpoint"].attrs["units"] == "sigma"
        assert opened["perturbation"].values.tolist()[2] == "rotation"
    back = load_compare(path)
    xr.testing.assert_equal(back.dataset["accuracy"], memory.dataset["accuracy"])
    xr.testing.assert_equal(back.dataset["accuracy_p_value"], memory.dataset["accuracy_p_value"])
    assert back.hyperparameters()["in-ninr"] == "σ_ε"
    assert back.chosen() == memory.chosen()
    assert back.describe()["dropout"].endswith("tuned over 0.1, 0.3")


def test_diverged_candidates_are_never_chosen() -> None:
    train, test = data()
    config = CompareConfig(
        methods=("none", "full-ninr"),
        seeds=(0,),
        epochs=2,
        lr=0.5,
        grids={"none": (0.5, 0.6), "full-ninr": (1.0, 1e6)},
        perturbations={"gaussian": (1.0,)},
        walk_sigmas="0.1,1,10",
        walk_repeats=1,
    )
    ds = compare(small, train, config, test_data=test, progress=False).dataset
    assert ds["candidate_diverged"].sel({"method": "full-ninr"}).values.tolist() == [[0, 1]]
    assert np.isnan(ds["validation_score"].values[1, 0, 1])
    assert ds["chosen_value"].sel({"method": "full-ninr"}).values.tolist() == [1.0]


def test_flat_inputs_skip_image_perturbations() -> None:
    train, test = data()
    flat = [TensorData(d.x.flatten(1), d.y, d.name) for d in (train, test)]
    config = CompareConfig(
        methods=("none", "l2"), seeds=(0,), epochs=1, lr=0.05,
        grids={"none": (0.05,), "l2": (1e-3,)}, walk_sigmas="0.1,1", walk_repeats=1,
    )  # fmt: skip
    ds = compare(small, flat[0], config, test_data=flat[1], progress=False).dataset
    kinds = set(ds["perturbation"].values.tolist())
    assert kinds == {"gaussian", "impulse", "contrast"}
    with pytest.raises(WalknoiseError, match="image inputs"):
        CompareConfig(perturbations={"blur": ()}).conditions(images=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"methods": ("none", "none")}, "methods"),
        ({"methods": ("magic",)}, "methods"),
        ({"seeds": ()}, "seeds"),
        ({"grids": {"in-ninr": (0.0, 1.0, 2.0)}}, "σ_ε"),
        ({"grids": {"dropout": (0.5, 1.0, 0.2)}}, "dropout"),
        ({"grids": {"l2": (1e-3, 1e-2)}}, "same number of candidates"),
        ({"grids": {"l2": (1e-3, 1e-3, 1e-2)}}, "once"),
        ({"grids": {"magic": (1.0,)}}, "not among the methods"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"optimizer": "adam", "momentum": 0.9}, "momentum"),
        ({"validation_fraction": 1.0}, "validation fraction"),
        ({"selection": "test"}, "selection"),
        ({"perturbations": {"fog": (1.0,)}}, "fog"),
        ({"perturbations": {"impulse": (1.5,)}}, "up to 1"),
        ({"walk_sigmas": "log:1:2"}, "σ"),
    ],
)
def test_bad_config(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(WalknoiseError, match=match):
        CompareConfig(**kwargs)  # type: ignore[arg-type]


def test_defaults_are_sgd_with_equal_budgets() -> None:
    sgd, adam = CompareConfig(), CompareConfig(optimizer="adam")
    assert (sgd.optimizer, sgd.lr, sgd.momentum) == ("sgd", 0.1, 0.0)
    assert adam.lr == 1e-3
    assert sgd.candidates == adam.candidates == 3
    assert {len(v) for v in sgd.grids.values()} == {3}
    assert sgd.conditions(images=True)[:3] == [
        ("gaussian", 0.25),
        ("gaussian", 0.5),
        ("gaussian", 1.0),
    ]


def test_user_file_needs_a_test_set() -> None:
    with pytest.raises(WalknoiseError, match="test set"):
        compare(small, data()[0], CONFIG, progress=False)
