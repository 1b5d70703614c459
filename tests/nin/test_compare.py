"""The regulariser comparison: one model per (method, seed), evaluated without training noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from tests.nin.toy import _one_thread, data, small  # noqa: F401 (an autouse fixture)
from walknoise.errors import WalknoiseError
from walknoise.nin.compare import (
    METHODS,
    CompareConfig,
    CompareResult,
    _dropout,
    compare,
    load_compare,
    noisy_accuracy,
    train_method,
)
from walknoise.nin.report import compare_summary, compare_text
from walknoise.nin.train import torch_threads
from walknoise.training import evaluate

CONFIG = CompareConfig(
    seeds=(0, 1),
    epochs=6,
    lr=1e-2,
    test_sigmas=(0.5, 3.0),
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


def test_table_layout(result: tuple[CompareResult, Path]) -> None:
    ds = result[0].dataset
    assert dict(ds.sizes) == {"method": 6, "seed": 2, "sigma": 2, "layer": 5}
    assert ds["layer"].values.tolist() == ["<input>", "1", "2", "3", "<global>"]
    assert result[0].methods == list(METHODS)
    clean = ds["clean_accuracy"].values
    assert (clean > 0.5).all()  # chance is 0.25: every method learns
    # Methods differ only by their regulariser, so their models differ.
    assert len({round(float(v), 6) for v in clean[:, 0]}) > 1
    assert (ds["noisy_accuracy"].sel(sigma=3.0).values < clean).all()
    niw = ds["niw_norm_end"].values
    assert np.isfinite(niw[1:3]).all() and np.isnan(niw[[0, 3, 4, 5]]).all()


def test_text_and_summary(result: tuple[CompareResult, Path]) -> None:
    summary = compare_summary(result[0])
    assert list(summary.index) == list(METHODS)
    assert summary.loc["none", "clean"].count("±") == 1
    text = compare_text(result[0])
    for method in METHODS:
        assert method in text
    assert "L2 weight decay 0.0005" in text and "σ_ε = 100" in text


def test_file_round_trip(result: tuple[CompareResult, Path]) -> None:
    memory, path = result
    with xr.open_dataset(path, engine="h5netcdf") as opened:
        assert opened["midpoint"].dims == ("method", "seed", "layer")
        assert opened["midpoint"].attrs["units"] == "sigma"
        assert opened["method"].values.tolist() == list(METHODS)
    back = load_compare(path)
    xr.testing.assert_equal(back.dataset["noisy_accuracy"], memory.dataset["noisy_accuracy"])
    assert back.describe()["dropout"].startswith("dropout p = 0.2")


def test_noisy_accuracy_matches_a_hand_computation() -> None:
    train, test = data()
    model, _ = train_method("none", small, train, CONFIG, seed=0)
    gen = torch.Generator().manual_seed(7)
    noisy_x = test.x + 0.8 * torch.randn(test.x.shape, generator=gen)
    by_hand = evaluate(model, noisy_x, test.y)[0]
    assert noisy_accuracy(model, test, [0.8], seed=7) == [by_hand]


def test_ninr_model_comes_back_bare() -> None:
    train, _ = data()
    model, niw = train_method("full-ninr", small, train, CONFIG, seed=0)
    assert niw > 0
    assert not any(m._forward_hooks for m in model.modules())
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in small().parameters()
    )


def test_dropout_hooks_are_seeded_and_removed() -> None:
    model = small().train()
    x = data()[1].x
    with _dropout(model, 0.5, seed=3):
        a = model(x)
    with _dropout(model, 0.5, seed=3):
        b = model(x)
        c = model(x)
    assert torch.equal(a, b) and not torch.equal(b, c)
    assert not any(m._forward_hooks for m in model.modules())
    plain = model.eval()(x)
    with _dropout(model, 0.5, seed=3):
        assert torch.equal(model(x), plain)  # eval mode: no dropout


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"methods": ("none", "none")}, "methods"),
        ({"methods": ("magic",)}, "methods"),
        ({"seeds": ()}, "seeds"),
        ({"nin_sigma": 0.0}, "σ_ε"),
        ({"weight_decay": -1.0}, "weight decay"),
        ({"dropout": 1.0}, "dropout"),
        ({"test_sigmas": (0.0,)}, "positive"),
        ({"walk_sigmas": "log:1:2"}, "σ"),
    ],
)
def test_bad_config(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(WalknoiseError, match=match):
        CompareConfig(**kwargs)  # type: ignore[arg-type]


def test_user_file_needs_a_test_set() -> None:
    with pytest.raises(WalknoiseError, match="test set"):
        compare(small, data()[0], CONFIG, progress=False)
