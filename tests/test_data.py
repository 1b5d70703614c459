"""Tests for walknoise.data: IDX reader, bundled MNIST split, resolve_data and its errors."""

from __future__ import annotations

import dataclasses
import gzip
import os
import re
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from walknoise.data import TensorData, load_file, load_mnist, read_idx, resolve_data
from walknoise.errors import WalknoiseError

MNIST_DIR = Path(__file__).resolve().parent.parent / "data" / "mnist"
FILE_LAYOUT = re.escape("a .pt or .npz file holding x (float, shape (N, ...)) and y")


def _write_idx(path: Path, arr: np.ndarray, code: int = 0x08) -> Path:
    raw = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def _raw_mnist() -> tuple[np.ndarray, np.ndarray]:
    """Pixels and labels straight from the gzip bytes (16- and 8-byte headers), no IDX parsing."""
    images = np.frombuffer(
        gzip.decompress((MNIST_DIR / "t10k-images-idx3-ubyte.gz").read_bytes())[16:], np.uint8
    )
    labels = np.frombuffer(
        gzip.decompress((MNIST_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())[8:], np.uint8
    )
    return images.reshape(10000, 784), labels


def _data(n: int = 6, classes: int = 3) -> TensorData:
    x = torch.randn(n, 2, 3, generator=torch.Generator().manual_seed(0))
    return TensorData(x, torch.arange(n) % classes, "tiny")


# --- IDX reader ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_read_idx_values(tmp_path: Path, name: str) -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4) * 10
    out = read_idx(_write_idx(tmp_path / name, arr))
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, arr)
    assert out[1, 2, 3] == 230 and out.flags.writeable


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "bad magic number"),
        (b"\x00\x00", "bad magic number"),
        (b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00\x00\x00\x00", r"type code 0x0d.*\(0x08\)"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x01", "truncated inside its header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02", "holds 2 data bytes but .* needs 3"),
    ],
)
def test_read_idx_corrupt(tmp_path: Path, raw: bytes, match: str) -> None:
    path = tmp_path / "bad.idx.gz"
    path.write_bytes(gzip.compress(raw))
    with pytest.raises(WalknoiseError, match=match):
        read_idx(path)


def test_read_idx_not_gzip(tmp_path: Path) -> None:
    path = tmp_path / "bad.gz"
    path.write_bytes(b"definitely not gzip")
    with pytest.raises(WalknoiseError, match=r"cannot read IDX file .*WALKNOISE_DATA_DIR"):
        read_idx(path)


# --- bundled MNIST ------------------------------------------------------------------------------


@pytest.mark.parametrize(("split", "n"), [("train", 8000), ("test", 2000), ("all", 10000)])
def test_load_mnist_shapes(split: str, n: int) -> None:
    d = load_mnist(split)
    assert d.name == f"mnist:{split}" and len(d) == n
    assert d.x.shape == (n, 1, 28, 28) and d.x.dtype == torch.float32
    assert d.y.shape == (n,) and d.y.dtype == torch.int64
    assert d.x.min() == 0.0 and d.x.max() == 1.0  # ToTensor()'s range, as the authors load it
    assert d.normalization.kind == "none"
    assert set(d.y.tolist()) == set(range(10)) and d.num_classes == 10
    assert d.input_shape == (1, 28, 28)


def test_load_mnist_matches_raw_bytes() -> None:
    pixels, labels = _raw_mnist()
    idx = np.random.default_rng(0).permutation(10000)[8000:]
    expected = (pixels[idx].astype(np.float64) / 255).mean()
    d = load_mnist("test")
    assert abs(float(d.x.double().mean()) - expected) < 1e-6
    np.testing.assert_array_equal(d.y.numpy(), labels[idx])
    np.testing.assert_allclose(d.x[5].flatten(), pixels[idx[5]] / 255, atol=1e-6)
    assert load_mnist("all").y[:5].tolist() == [7, 2, 1, 0, 4]  # well-known first test labels


def test_mnist_split_disjoint_and_deterministic() -> None:
    train, test, full = load_mnist("train"), load_mnist("test"), load_mnist("all")
    rows = {r.tobytes() for r in full.x.reshape(10000, -1).numpy()}
    train_rows = {r.tobytes() for r in train.x.reshape(8000, -1).numpy()}
    test_rows = {r.tobytes() for r in test.x.reshape(2000, -1).numpy()}
    assert not train_rows & test_rows
    assert train_rows | test_rows == rows
    again = load_mnist("test")
    assert torch.equal(again.x, test.x) and torch.equal(again.y, test.y)


def test_mnist_data_dir_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mnist").mkdir()
    images = (np.arange(10000 * 4) % 256).astype(np.uint8).reshape(10000, 2, 2)
    _write_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", np.full(10000, 3, np.uint8))
    monkeypatch.setenv("WALKNOISE_DATA_DIR", str(tmp_path))
    d = load_mnist("all")
    assert d.x.shape == (10000, 1, 2, 2) and d.num_classes == 4
    expected = np.array([[0.0, 1.0], [2.0, 3.0]]) / 255
    np.testing.assert_allclose(d.x[0, 0].numpy(), expected, rtol=0, atol=1e-6)


def test_mnist_bad_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WALKNOISE_DATA_DIR", str(tmp_path))
    with pytest.raises(WalknoiseError, match=r"bundled MNIST file not found.*WALKNOISE_DATA_DIR"):
        load_mnist()
    (tmp_path / "mnist").mkdir()
    _write_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz", np.zeros((5, 2, 2), np.uint8))
    _write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(WalknoiseError, match="expected the 10000 MNIST test images"):
        load_mnist()


def test_mnist_unknown_split() -> None:
    with pytest.raises(WalknoiseError, match="unknown MNIST split 'val'; use one of 'train'"):
        load_mnist("val")
    with pytest.raises(WalknoiseError, match="unknown MNIST split 'tset'"):
        resolve_data("mnist:tset")


# --- TensorData ---------------------------------------------------------------------------------


def test_tensordata_properties() -> None:
    d = _data(7, 3)
    assert len(d) == 7 and d.input_shape == (2, 3) and d.num_classes == 3
    s = d.subset(4)
    assert len(s) == 4 and torch.equal(s.x, d.x[:4]) and torch.equal(s.y, d.y[:4])
    assert len(d.subset(100)) == 7
    with pytest.raises(WalknoiseError, match="subset size must be at least 1"):
        d.subset(0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.name = "other"  # type: ignore[misc]


def test_tensordata_casts_labels_and_detaches() -> None:
    x = torch.ones(3, 2, requires_grad=True)
    d = TensorData(x, torch.tensor([0, 1, 2], dtype=torch.uint8), "t")
    assert d.y.dtype == torch.int64 and not d.x.requires_grad


# --- resolve_data: accepted kinds ---------------------------------------------------------------


class _MapDataset(Dataset[tuple[np.ndarray, int]]):
    def __len__(self) -> int:
        return 5

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return np.full((1, 4), i, np.float32), i % 2


class _StreamDataset(IterableDataset[tuple[torch.Tensor, torch.Tensor]]):
    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(4):
            yield torch.full((3,), float(i)), torch.tensor(i)


def test_resolve_tensordata_and_names() -> None:
    d = _data()
    assert resolve_data(d) is d
    assert resolve_data("mnist", split="train").name == "mnist:train"
    assert len(resolve_data("mnist")) == 2000
    assert len(resolve_data("mnist:train", split="test")) == 8000
    assert torch.equal(resolve_data("mnist:test").y, load_mnist("test").y)


@pytest.mark.parametrize("as_path", [str, Path])
def test_resolve_files(tmp_path: Path, as_path: Callable[[str], object]) -> None:
    d = _data()
    torch.save({"x": d.x, "y": d.y.to(torch.int32), "extra": torch.zeros(1)}, tmp_path / "d.pt")
    np.savez(tmp_path / "d.npz", x=d.x.numpy(), y=d.y.numpy().astype(np.uint8))
    for name in ("d.pt", "d.npz"):
        got = resolve_data(as_path(str(tmp_path / name)), split="train")
        assert got.name == str(tmp_path / name) and got.y.dtype == torch.int64
        assert torch.equal(got.x, d.x) and torch.equal(got.y, d.y)
    assert torch.equal(load_file(tmp_path / "d.npz").x, d.x)


def test_resolve_pairs() -> None:
    d = _data()
    for pair in [(d.x, d.y), [d.x.numpy(), d.y.numpy().astype(np.int32)]]:
        got = resolve_data(pair)
        assert torch.equal(got.x, d.x) and torch.equal(got.y, d.y)
        assert got.y.dtype == torch.int64


def test_resolve_datasets_and_loaders() -> None:
    d = _data(7)
    for data in [
        TensorDataset(d.x, d.y),
        DataLoader(TensorDataset(d.x, d.y), batch_size=3),
        DataLoader(TensorDataset(d.x, d.y), batch_size=None),
    ]:
        got = resolve_data(data)
        assert torch.equal(got.x, d.x) and torch.equal(got.y, d.y)
    assert resolve_data(DataLoader(TensorDataset(d.x, d.y))).name == "DataLoader(TensorDataset)"
    mapped = resolve_data(_MapDataset())
    assert mapped.x.shape == (5, 1, 4) and mapped.y.tolist() == [0, 1, 0, 1, 0]
    assert mapped.x[3].flatten().tolist() == [3.0] * 4 and mapped.name == "_MapDataset"
    stream = resolve_data(_StreamDataset())
    assert stream.x.shape == (4, 3) and stream.y.tolist() == [0, 1, 2, 3]
    assert len(resolve_data(DataLoader(_StreamDataset(), batch_size=3))) == 4


# --- bad inputs ---------------------------------------------------------------------------------

N = 4
X, Y = torch.zeros(N, 3), torch.arange(N)
NAN_X = X.clone()
NAN_X[0, 0], NAN_X[1, 2], NAN_X[3, 1] = float("nan"), float("inf"), float("-inf")


@pytest.mark.parametrize(
    ("pair", "match"),
    [
        ((X, Y.float()), r"dtype torch\.float32; expected integer class labels of shape \(N,\)"),
        ((X.to(torch.uint8), Y), r"expected float inputs of shape \(N, \.\.\.\): convert to float"),
        ((torch.zeros(N), Y), r"shape \(4,\); expected at least 2-D \(N, features\.\.\.\)"),
        ((X, Y[:, None]), r"expected 1-D integer class labels of shape \(N,\)"),
        ((X, Y[:3]), r"4 samples, y 3; expected x \(N, \.\.\.\), y \(N,\)"),
        ((X[:0], Y[:0]), r"no samples; expected at least one sample of x \(float, shape"),
        ((NAN_X, Y), r"3 non-finite values \(NaN/inf\); clean or drop"),
        ((X, Y - 2), r"2 negative labels; expected class labels 0\.\.C-1"),
        ((X, Y, Y), r"pair needs 2 items, not 3; pass x \(float"),
        ((X, ["a"] * N), r"y in in-memory data has unsupported type list; expected x \(float"),
        ((np.array([["a"]] * N), Y), r"array of dtype <U1; expected x \(float"),
    ],
)
def test_bad_pairs(pair: tuple[object, ...], match: str) -> None:
    with pytest.raises(WalknoiseError, match=match) as info:
        resolve_data(pair)
    assert "\n" not in str(info.value)


class _Blob:
    """An arbitrary pickled object, which torch.load(weights_only=True) must refuse."""


def _pt(obj: object) -> Callable[[Path], Path]:
    def write(tmp: Path) -> Path:
        torch.save(obj, tmp / "d.pt")
        return tmp / "d.pt"

    return write


def _npz(**arrays: np.ndarray) -> Callable[[Path], Path]:
    def write(tmp: Path) -> Path:
        np.savez(tmp / "d.npz", **arrays)  # type: ignore[arg-type]
        return tmp / "d.npz"

    return write


def _raw(name: str, data: bytes) -> Callable[[Path], Path]:
    def write(tmp: Path) -> Path:
        (tmp / name).write_bytes(data)
        return tmp / name

    return write


NOISE = np.random.default_rng(1).integers(0, 256, 512, dtype=np.uint8).tobytes()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        # a file without y is data without labels (tests/walk/test_metrics_extra.py)
        (_pt({"inputs": X, "y": Y}), f"d.pt has no key 'x'; expected {FILE_LAYOUT}"),
        (_pt((X, Y)), f"d.pt holds a tuple, not a dict; expected {FILE_LAYOUT}"),
        (
            _pt({"x": X, "y": Y.double()}),
            r"d\.pt has dtype torch\.float64; expected integer",
        ),
        (_npz(x=np.zeros(N), y=Y.numpy()), r"d\.npz has shape \(4,\); expected at least 2-D"),
        (_npz(x=X.numpy(), y=Y.numpy()[:2]), r"y 2; expected x \(N, \.\.\.\), y \(N,\)"),
        (_npz(x=NAN_X.numpy(), y=Y.numpy()), "3 non-finite values"),
        (_raw("d.pt", NOISE), f"cannot read data file .*d\\.pt .*expected {FILE_LAYOUT}"),
        (
            _raw("d.npz", NOISE),
            f"cannot read .*not a zip archive.*expected {FILE_LAYOUT}",
        ),
        (_raw("d.csv", b"1,2\n"), r"unknown extension '\.csv'; expected .*\.pt, \.npz"),
        (_pt({"x": X, "y": _Blob()}), f"cannot read data file .*d\\.pt.*{FILE_LAYOUT}"),
        (_npz(x=np.array([None] * N), y=Y.numpy()), f"cannot read data file .*{FILE_LAYOUT}"),
    ],
)
def test_bad_files(tmp_path: Path, make: Callable[[Path], Path], match: str) -> None:
    path = make(tmp_path)
    with pytest.raises(WalknoiseError, match=match) as info:
        resolve_data(str(path))
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pt"
    msg = re.escape(f"no such data file: {missing} (check the path, or use data='mnist'")
    with pytest.raises(WalknoiseError, match=msg):
        load_file(missing)
    with pytest.raises(WalknoiseError, match="no such data file"):
        resolve_data(os.fspath(missing))


def test_bad_datasets_and_types() -> None:
    with pytest.raises(WalknoiseError, match="TensorDataset holds no samples; expected at least"):
        resolve_data(TensorDataset(X[:0], Y[:0]))
    with pytest.raises(WalknoiseError, match=r"yields a tuple; expected \(x, y\) pairs"):
        resolve_data(TensorDataset(X, Y, Y))
    ragged = [(torch.zeros(3), 0), (torch.zeros(2), 1)]

    class Ragged(Dataset[tuple[torch.Tensor, int]]):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return ragged[i]

    with pytest.raises(WalknoiseError, match=r"cannot combine the samples of Ragged.*same shape"):
        resolve_data(Ragged())
    with pytest.raises(WalknoiseError, match=r"type int; pass 'mnist'.*\.pt or \.npz.*DataLoader"):
        resolve_data(3)


@pytest.mark.parametrize("how", ["pair", "file"])
def test_labels_all_minus_one_are_refused_not_taken_for_no_labels(tmp_path: Path, how: str) -> None:
    # -1 is walknoise's internal "no label"; a user's y of all -1 is a labelling mistake
    x, y = np.zeros((3, 1, 4, 4), np.float32), np.full(3, -1)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data: object = (x, y) if how == "pair" else tmp_path / "d.npz"
    with pytest.raises(WalknoiseError, match="3 negative labels"):
        resolve_data(data)
