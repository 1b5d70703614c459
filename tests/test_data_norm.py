"""Tests for input normalisation: none ([0, 1] MNIST), pm1, standard, and what is recorded."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from walknoise.data import (
    Normalization,
    TensorData,
    data_normalization,
    fingerprint,
    load_mnist,
    resolve_data,
)
from walknoise.errors import WalknoiseError

MNIST_DIR = Path(__file__).resolve().parent.parent / "data" / "mnist"


def _pixels(split: str) -> np.ndarray:
    """The split's raw bytes straight from the gzip file (16-byte header), in split order."""
    raw = gzip.decompress((MNIST_DIR / "t10k-images-idx3-ubyte.gz").read_bytes())[16:]
    images = np.frombuffer(raw, np.uint8).reshape(10000, 784)
    perm = np.random.default_rng(0).permutation(10000)
    return images[perm[:8000] if split == "train" else perm[8000:]]


def test_default_is_zero_one_with_most_pixels_exactly_zero() -> None:
    d = load_mnist()
    assert d.normalization == Normalization() and d.normalization.kind == "none"
    assert float(d.x.min()) == 0.0 and float(d.x.max()) == 1.0
    zeros = float((_pixels("test") == 0).mean())  # counted on the bytes, not the tensor
    assert float((d.x == 0).double().mean()) == pytest.approx(zeros, abs=1e-12)
    assert 0.75 < zeros < 0.85  # MNIST: about 81% background, which multiplicative noise keeps


def test_pm1_is_the_authors_point_five_normalisation() -> None:
    d = load_mnist("test", normalize="pm1")
    # torchvision's Normalize(0.5, 0.5) on ToTensor() output, in float32 as they compute it
    expected = (_pixels("test").astype(np.float32) / np.float32(255) - np.float32(0.5)) / 0.5
    np.testing.assert_array_equal(d.x.reshape(2000, -1).numpy(), expected)
    assert (d.normalization.kind, d.normalization.mean, d.normalization.std) == ("pm1", 0.5, 0.5)


def test_standard_uses_the_train_split_for_every_split() -> None:
    train = _pixels("train").astype(np.float64) / 255
    mean, std = train.mean(), train.std()  # population std, over every pixel of 8,000 images
    for split in ("train", "test"):
        d = load_mnist(split, normalize="standard")
        norm = d.normalization
        # measured on the float32 inputs: each k/255 is off by at most 2^-24 relatively
        assert norm.mean == pytest.approx(mean, rel=1e-7)
        assert norm.std == pytest.approx(std, rel=1e-7)
        assert norm.source == "mnist:train"
        expected = (_pixels(split).astype(np.float64) / 255 - mean) / std
        # float32 arithmetic on values up to (1 - 0.13) / 0.31 ≈ 2.8: a few ulp
        np.testing.assert_allclose(d.x.reshape(len(d), -1).numpy(), expected, atol=1e-6)
    assert float(load_mnist("train", normalize="standard").x.double().mean()) == pytest.approx(
        0.0, abs=1e-6
    )


def test_standard_for_user_data_measures_its_training_data() -> None:
    gen = torch.Generator().manual_seed(0)
    x_eval, x_train = torch.rand(50, 3, generator=gen) * 4, torch.rand(80, 3, generator=gen)
    y_eval, y_train = torch.arange(50) % 2, torch.arange(80) % 2
    own = resolve_data((x_eval, y_eval), normalize="standard")  # no training data: itself
    assert own.normalization.mean == pytest.approx(float(x_eval.double().mean()), rel=1e-12)
    assert own.normalization.std == pytest.approx(float(x_eval.double().std(correction=0)))
    norm = data_normalization("standard", (x_eval, y_eval), train_data=(x_train, y_train))
    assert norm.mean == pytest.approx(float(x_train.double().mean()), rel=1e-12)
    applied = resolve_data((x_eval, y_eval), normalize=norm)
    torch.testing.assert_close(applied.x, (x_eval - norm.mean) / norm.std)
    assert applied.normalization == norm


def test_bad_setting_names_the_argument() -> None:
    with pytest.raises(WalknoiseError, match=r"unknown normalize='zscore'.*'pm1'") as err:
        load_mnist(normalize="zscore")
    assert err.value.argument == "normalize"
    with pytest.raises(WalknoiseError, match="std 0") as err:
        resolve_data((torch.ones(4, 2), torch.zeros(4, dtype=torch.long)), normalize="standard")
    assert err.value.argument == "normalize"


def test_normalised_data_is_not_normalised_twice() -> None:
    pm1 = load_mnist(normalize="pm1")
    assert resolve_data(pm1, normalize="pm1") is pm1  # the same setting: nothing to do
    assert resolve_data(pm1) is pm1  # "none" keeps what was applied, and says so
    with pytest.raises(WalknoiseError, match=r"already normalised \(pm1\)") as err:
        resolve_data(pm1, normalize="standard")
    assert err.value.argument == "normalize"
    assert pm1.subset(3).normalization == pm1.normalization


def test_fingerprint_and_attrs_tell_the_settings_apart() -> None:
    runs = {kind: load_mnist(normalize=kind) for kind in ("none", "pm1", "standard")}
    assert len({fingerprint(d) for d in runs.values()}) == 3
    for d in runs.values():
        attrs = d.normalization.attrs()
        assert attrs["data_normalization"] == d.normalization.kind
        assert Normalization.from_attrs(attrs) == d.normalization
    assert Normalization.from_attrs({}) is None  # a file written before it was recorded
    plain = TensorData(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long), "x")
    labelled = TensorData(plain.x, plain.y, "x", Normalization("pm1", 0.5, 0.5))
    assert fingerprint(plain) != fingerprint(labelled)  # same bytes, another setting


# --- what results files record ------------------------------------------------------------------


def test_scan_file_records_the_setting_and_resume_refuses_another(tmp_path: Path) -> None:
    import walknoise
    from tests.conftest import tiny_mlp

    model, x = tiny_mlp(), torch.rand(80, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    data = TensorData(x, torch.arange(80) % 4, "toy")
    path = tmp_path / "scan.h5"
    run = {"sigmas": "0.1,1", "repeats": 1, "progress": False, "output": path}
    result = walknoise.scan(model, data, normalize="pm1", **run)
    with torch.no_grad():  # the model saw (x - 0.5) / 0.5, not x
        expected = float((model((x - 0.5) / 0.5).argmax(1) == data.y).double().mean())
    assert result.dataset.attrs["clean_accuracy"] == pytest.approx(expected, abs=1e-12)
    loaded = walknoise.load(path)
    assert loaded.normalization == Normalization("pm1", 0.5, 0.5)
    assert loaded.dataset.attrs["data_normalization"] == "pm1"
    with pytest.raises(WalknoiseError, match="normalised 'pm1' in the file, 'none' now") as err:
        walknoise.scan(model, data, **run)  # same samples, other scaling: not resumed
    assert err.value.argument == "overwrite"
    walknoise.scan(model, data, normalize="pm1", **run)  # the same setting resumes


def test_gni_and_nin_files_record_the_setting(tmp_path: Path) -> None:
    from tests.conftest import learnable_data, tiny_mlp
    from walknoise.gni.measure import gradient_noise
    from walknoise.nin.probe import ProbeConfig, probe

    x, y = learnable_data(200)
    x = x.abs()  # a non-zero mean, so standardising moves it
    gni = gradient_noise(tiny_mlp(), (x, y), normalize="standard", batches=1, draws=4)
    norm = gni.normalization
    assert norm is not None and norm.kind == "standard"
    assert norm.mean == pytest.approx(float(x.double().mean()), rel=1e-12)
    train, test = TensorData(x[:150], y[:150], "tr"), TensorData(x[150:], y[150:], "te")
    config = ProbeConfig(sigma_eps=(1.0,), lr=(0.01,), seeds=(0,), epochs=1)
    nin = probe(tiny_mlp, train, config, test_data=test, progress=False, normalize="standard")
    assert nin.normalization is not None
    assert nin.normalization.mean == pytest.approx(float(x[:150].double().mean()), rel=1e-12)
    assert nin.normalization.source == "tr"  # the training data's statistics, not the test's


def test_train_under_noise_trains_on_the_scaled_inputs() -> None:
    from tests.conftest import learnable_data, tiny_mlp
    from walknoise.training import TrainConfig
    from walknoise.walk.trainphase import train_under_noise

    x, y = learnable_data(128)
    x = x.abs()
    config = TrainConfig(epochs=1, batch_size=32)
    scaled = train_under_noise(tiny_mlp, (x, y), config=config, normalize="pm1")
    by_hand = train_under_noise(tiny_mlp, ((x - 0.5) / 0.5, y), config=config)
    raw = train_under_noise(tiny_mlp, (x, y), config=config)
    for a, b in zip(scaled.parameters(), by_hand.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # the same inputs, the same steps
    assert not all(
        torch.equal(a, c) for a, c in zip(scaled.parameters(), raw.parameters(), strict=True)
    )


def test_standard_statistics_do_not_depend_on_the_thread_count() -> None:
    """A resumed scan must normalise to the same bytes, so the mean/std may not move by an
    ulp with torch's thread count (its float64 reductions change order with threads)."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = load_mnist("test", normalize="standard")
        torch.set_num_threads(max(2, threads))
        many = load_mnist("test", normalize="standard")
    finally:
        torch.set_num_threads(threads)
    assert one.normalization == many.normalization
    assert fingerprint(one) == fingerprint(many)
