"""Streamed data sources (issue 16): each checked against the arrays read independently."""

from __future__ import annotations

import gzip
import json
import pickle
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from walknoise.data import NO_LABEL, TensorData, fingerprint, resolve_data
from walknoise.data_norm import PM1, normalization_of
from walknoise.errors import WalknoiseError
from walknoise.sources import (
    Factory,
    IdxFiles,
    InMemory,
    NpyArrays,
    Source,
    load_all,
    measure_standard,
    open_source,
    sample_indices,
)

REPO = Path(__file__).resolve().parent.parent


def _arrays(n: int = 103, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3, 4, 4)).astype(np.float32), rng.integers(0, 7, n)


def _npy_dir(path: Path, x: np.ndarray, y: np.ndarray | None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    np.save(path / "x.npy", x)
    if y is not None:
        np.save(path / "y.npy", y)
    return path


def _all(
    source: Source, batch_size: int, start: int = 0
) -> list[tuple[int, np.ndarray, np.ndarray]]:
    return [(k, x.numpy(), y.numpy()) for k, x, y in source.batches(batch_size, start)]


def _check_batches(source: Source, x: np.ndarray, y: np.ndarray, batch_size: int) -> None:
    """Every batch equals the arrays' slice, bit for bit, in order."""
    got = _all(source, batch_size)
    assert [k for k, _, _ in got] == list(range(-(-len(x) // batch_size)))
    for k, xb, yb in got:
        lo, hi = k * batch_size, min(len(x), (k + 1) * batch_size)
        assert xb.dtype == x.dtype and yb.dtype == np.int64
        np.testing.assert_array_equal(xb, x[lo:hi], strict=True)
        np.testing.assert_array_equal(yb, y[lo:hi].astype(np.int64), strict=True)


def test_npy_batches_equal_the_arrays(tmp_path: Path) -> None:
    x, y = _arrays()
    src = open_source(_npy_dir(tmp_path / "d", x, y))
    assert isinstance(src, NpyArrays)
    assert (len(src), src.input_shape, src.labelled) == (103, (3, 4, 4), True)
    _check_batches(src, x, y, 10)
    assert src.reads == 103  # a full pass reads each sample once
    np.testing.assert_array_equal(src.head(5).numpy(), x[:5])
    assert src.reads == 103  # head does not count
    # the in-memory path gives the same bytes
    mem = InMemory(TensorData(torch.from_numpy(x), torch.from_numpy(y), "m"))
    for (_, a, b), (_, c, d) in zip(_all(src, 16), _all(mem, 16), strict=True):
        assert a.tobytes() == c.tobytes() and b.tobytes() == d.tobytes()


@pytest.mark.parametrize("kind", ["npy", "memory", "factory", "iterable"])
def test_start_k_equals_kth_batch_and_counts_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    x, y = _arrays(57)
    src = _source_of(kind, tmp_path, monkeypatch, x, y)
    full = _all(src, 8)
    assert src.reads == 57
    for k in (0, 3, 7):
        fresh = pickle.loads(pickle.dumps(src))
        tail = _all(fresh, 8, start=k)
        assert [b[0] for b in tail] == list(range(k, 8))
        for (_, a, b), (_, c, d) in zip(tail, full[k:], strict=True):
            np.testing.assert_array_equal(a, c, strict=True)
            np.testing.assert_array_equal(b, d, strict=True)
        # a seekable source reads only the batches from k on; an iterable one skips the rest
        assert fresh.reads == (57 if kind == "iterable" else 57 - 8 * k)
    assert _all(src, 8, start=8) == []


def _source_of(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, x: np.ndarray, y: np.ndarray
) -> Source:
    if kind == "npy":
        return open_source(_npy_dir(tmp_path / "d", x, y))
    if kind == "memory":
        return open_source((x, y))
    np.save(tmp_path / "fx.npy", x)
    np.save(tmp_path / "fy.npy", y)
    module = f"srcfac_{kind}"
    _write_module(tmp_path, module, FACTORIES)
    monkeypatch.chdir(tmp_path)
    return open_source(f"{module}:{'make_iterable' if kind == 'iterable' else 'make_map'}")


FACTORIES = """
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

def _xy():
    return torch.from_numpy(np.load("fx.npy")), torch.from_numpy(np.load("fy.npy"))

def make_map():
    return TensorDataset(*_xy())

def make_loader():
    return DataLoader(TensorDataset(*_xy()), batch_size=5, shuffle=True)

class Stream(IterableDataset):
    def __iter__(self):
        with open("passes.log", "a") as log:
            log.write("pass" + chr(10))
        x, y = _xy()
        return iter([(x[i : i + 5], y[i : i + 5]) for i in range(0, len(x), 5)])

def make_iterable():
    return DataLoader(Stream(), batch_size=None)

class Inputs(IterableDataset):
    def __iter__(self):
        return iter([(xi,) for xi in _xy()[0]])

def make_unlabelled():
    return Inputs()

def make_list():
    return [(xi,) for xi in _xy()[0]]

def make_unlabelled_ds():
    return TensorDataset(_xy()[0])

def make_raises():
    raise ValueError("no such bucket\\nsecond line")

def make_int():
    return 3
"""


def _write_module(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))


def test_pickled_npy_source_ships_paths_not_data(tmp_path: Path) -> None:
    x, y = _arrays(2000)  # 384 kB of inputs
    src = open_source(_npy_dir(tmp_path / "d", x, y))
    _all(src, 500)  # opened and read: the memmap must not travel
    blob = pickle.dumps(src)
    assert len(blob) < 1000
    back = pickle.loads(blob)
    assert back.reads == 0 and back.identity() == src.identity()
    _check_batches(back, x, y, 300)
    # a fresh interpreter (as a worker or SLURM job is) reads the same numbers
    (tmp_path / "src.pkl").write_bytes(blob)
    code = (
        "import json, pickle, sys; s = pickle.load(open(sys.argv[1], 'rb'));"
        "t = sum(float(x.double().sum()) for _, x, _ in s.batches(128));"
        "print(json.dumps([t, s.reads, len(s), s.identity()]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "src.pkl")],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    total, reads, n, ident = json.loads(out.stdout)
    assert (reads, n, ident) == (2000, 2000, src.identity())
    assert total == pytest.approx(float(x.astype(np.float64).sum()), rel=1e-12)


def test_npy_without_labels(tmp_path: Path) -> None:
    x, _ = _arrays(9)
    src = open_source(_npy_dir(tmp_path / "d", x, None))
    assert not src.labelled
    _check_batches(src, x, np.full(9, NO_LABEL), 4)


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        (np.zeros((4, 3), np.uint8), None, r"x in .* has dtype torch.uint8; expected float"),
        (np.zeros(4, np.float32), None, r"has shape \(1,\); expected at least 2-D"),
        (np.zeros((4, 3), np.float32), np.zeros(5, np.int64), "x in .* has 4 samples, y 5"),
        (np.zeros((4, 3), np.float32), np.zeros((4, 2), np.int64), r"y in .* has shape \(4, 2\)"),
        (np.zeros((4, 3), np.float32), np.array([0, -1, 2, 1]), "has 1 negative labels"),
        (np.zeros((4, 3), np.float32), np.zeros(4, np.float32), "y in .* has dtype torch.float32"),
        (np.zeros((0, 3), np.float32), None, "holds no samples"),
    ],
)
def test_npy_bad_arrays(tmp_path: Path, x: np.ndarray, y: np.ndarray | None, match: str) -> None:
    with pytest.raises(WalknoiseError, match=match) as err:
        open_source(_npy_dir(tmp_path / "d", x, y))
    assert "\n" not in str(err.value)


def test_npy_bad_paths_and_values(tmp_path: Path) -> None:
    with pytest.raises(WalknoiseError, match=r"holds neither x\.npy nor IDX files"):
        open_source(tmp_path)
    np.save(tmp_path / "x.npy", np.zeros((2, 2), np.float32))
    with pytest.raises(WalknoiseError, match=r"is one .npy file; pass a directory holding x.npy"):
        open_source(tmp_path / "x.npy")
    with pytest.raises(WalknoiseError, match=r"no such file: .*y\.npy"):
        NpyArrays(str(tmp_path / "x.npy"), str(tmp_path / "y.npy"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.npy").write_bytes(b"not numpy")
    with pytest.raises(WalknoiseError, match=r"cannot read .*x.npy \(.*\); save the array"):
        open_source(tmp_path / "bad")
    x = np.zeros((6, 2), np.float32)
    x[4, 1] = np.nan  # found when its batch is read
    src = open_source(_npy_dir(tmp_path / "nan", x, None))
    assert next(src.batches(4))[0] == 0
    with pytest.raises(WalknoiseError, match=r"samples 4..5\) has 1 non-finite"):
        _all(src, 4, start=1)


def test_factory_map_loader_iterable_equal_the_arrays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = _arrays(23)
    np.save(tmp_path / "fx.npy", x)
    np.save(tmp_path / "fy.npy", y)
    _write_module(tmp_path, "srcfac_equal", FACTORIES)
    monkeypatch.chdir(tmp_path)
    for fn in ("make_map", "make_loader", "make_iterable"):
        src = open_source(f"srcfac_equal:{fn}")
        assert isinstance(src, Factory) and src.labelled and len(src) == 23
        assert src.input_shape == (3, 4, 4)
        _check_batches(src, x, y, 7)  # a shuffling loader's order is not used
        np.testing.assert_array_equal(src.head(3).numpy(), x[:3])
        blob = pickle.dumps(src)
        assert len(blob) < 500  # the recipe, not the dataset
        _check_batches(pickle.loads(blob), x, y, 6)
    for fn in ("make_unlabelled", "make_unlabelled_ds"):
        src = open_source(f"srcfac_equal:{fn}")
        assert not src.labelled
        _check_batches(src, x, np.full(23, NO_LABEL), 10)


def test_factory_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_module(tmp_path, "srcfac_bad", FACTORIES)
    np.save(tmp_path / "fx.npy", np.zeros((3, 2), np.float32))
    np.save(tmp_path / "fy.npy", np.zeros(3, np.int64))
    _write_module(tmp_path, "srcfac_broken", "import no_such_module_xyz\n")
    monkeypatch.chdir(tmp_path)
    cases = {
        "srcfac_bad:make_raises": "data factory srcfac_bad:make_raises raised ValueError: no "
        "such bucket; fix the factory",
        "srcfac_bad:make_int": "returned a int, not a Dataset/DataLoader; fix the factory",
        "srcfac_bad:make_list": "returned a list, not a Dataset/DataLoader; fix the factory",
        "srcfac_bad:nothing": "is not a function in module srcfac_bad",
        "srcfac_broken:make": "cannot be imported (ModuleNotFoundError: No module named "
        "'no_such_module_xyz')",
    }
    for spec, expected in cases.items():
        with pytest.raises(WalknoiseError) as err:
            open_source(spec)
        assert expected in str(err.value) and "\n" not in str(err.value)
        assert "or pass a file" in str(err.value)


def _write_idx(path: Path, arr: np.ndarray) -> None:
    raw = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    raw += arr.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


@pytest.mark.parametrize(("folder", "ext"), [("raw", ".gz"), ("", ""), ("FashionMNIST/raw", "")])
def test_idx_directory(tmp_path: Path, folder: str, ext: str) -> None:
    rng = np.random.default_rng(1)
    files = {}
    for prefix, n in (("t10k", 11), ("train", 13)):
        images, labels = rng.integers(0, 256, (n, 5, 6)), rng.integers(0, 10, n)
        _write_idx(tmp_path / folder / f"{prefix}-images-idx3-ubyte{ext}", images)
        _write_idx(tmp_path / folder / f"{prefix}-labels-idx1-ubyte{ext}", labels)
        files[prefix] = images, labels
    for split, prefix in (("test", "t10k"), ("train", "train")):
        src = open_source(tmp_path, split=split)
        assert isinstance(src, IdxFiles) and src.input_shape == (1, 5, 6)
        images, labels = files[prefix]
        expected = (images.astype(np.float32) / np.float32(255))[:, None]
        _check_batches(src, expected, labels, 4)
        assert len(pickle.dumps(src)) < 500
        assert float(src.head(20).max()) <= 1.0
    pm1 = open_source(tmp_path, normalize="pm1")
    images = files["t10k"][0]
    np.testing.assert_allclose(pm1.head(20).numpy()[:, 0], (images / 255 - 0.5) / 0.5, atol=1e-6)
    with pytest.raises(WalknoiseError, match="unknown split 'all' for the IDX directory"):
        open_source(tmp_path, split="all")


def test_idx_directory_without_labels_file(tmp_path: Path) -> None:
    _write_idx(tmp_path / "raw" / "t10k-images-idx3-ubyte.gz", np.zeros((3, 2, 2)))
    with pytest.raises(WalknoiseError, match="no t10k-labels-idx1-ubyte"):
        open_source(tmp_path)


def test_identity_sampled(tmp_path: Path) -> None:
    x, y = _arrays(500)
    ident = open_source(_npy_dir(tmp_path / "a", x, y)).identity()
    assert open_source(_npy_dir(tmp_path / "a", x, y)).identity() == ident  # re-opened
    assert open_source(_npy_dir(tmp_path / "b", x, y)).identity() == ident  # elsewhere
    picks = sample_indices(500)
    assert picks[0] == 0 and picks[-1] == 499 and 60 <= len(picks) <= 66
    x2 = x.copy()
    x2[picks[7], 2, 1, 3] += 1e-6  # one pixel of a sampled sample
    assert open_source(_npy_dir(tmp_path / "c", x2, y)).identity() != ident
    y2 = y.copy()
    y2[picks[-2]] = (y2[picks[-2]] + 1) % 7
    assert open_source(_npy_dir(tmp_path / "d", x, y2)).identity() != ident
    assert open_source(_npy_dir(tmp_path / "e", x[:499], y[:499])).identity() != ident
    assert open_source(_npy_dir(tmp_path / "f", x, None)).identity() != ident
    assert open_source(tmp_path / "a", normalize="pm1").identity() != ident
    # documented blind spot: a sample outside the sampled set is not hashed
    unsampled = next(i for i in range(500) if i not in picks)
    x3 = x.copy()
    x3[unsampled] += 1
    assert open_source(_npy_dir(tmp_path / "g", x3, y)).identity() == ident


def test_in_memory_identity_is_the_fingerprint() -> None:
    x, y = _arrays(40)
    data = resolve_data((x, y), normalize="pm1")
    src = open_source((x, y), normalize="pm1")
    assert isinstance(src, InMemory) and src.normalization == PM1
    assert src.identity() == fingerprint(data)
    mnist = open_source("mnist:test")
    assert mnist.identity() == fingerprint(resolve_data("mnist", split="test"))
    assert (len(mnist), mnist.name) == (2000, "mnist:test")


def test_factory_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _arrays(31)
    np.save(tmp_path / "fx.npy", x)
    np.save(tmp_path / "fy.npy", y)
    _write_module(tmp_path, "srcfac_ident", FACTORIES)
    monkeypatch.chdir(tmp_path)
    a, b = open_source("srcfac_ident:make_map"), open_source("srcfac_ident:make_loader")
    assert a.identity() == b.identity()  # same samples, same order
    it = open_source("srcfac_ident:make_iterable").identity()
    np.save(tmp_path / "fx.npy", x[:30])
    np.save(tmp_path / "fy.npy", y[:30])
    assert open_source("srcfac_ident:make_map").identity() != a.identity()
    assert open_source("srcfac_ident:make_iterable").identity() != it


def test_standard_measured_by_streaming(tmp_path: Path) -> None:
    x, y = _arrays(3000)  # several STATS_BATCH batches
    x = x * 3 + 2
    src = open_source(_npy_dir(tmp_path / "d", x, y), normalize="standard")
    expected = normalization_of("standard", torch.from_numpy(x), "x")
    assert src.normalization.kind == "standard"
    assert src.normalization.mean == pytest.approx(expected.mean, rel=1e-12)
    assert src.normalization.std == pytest.approx(expected.std, rel=1e-12)
    _, xb, _ = next(src.batches(100, start=2))
    np.testing.assert_array_equal(xb.numpy(), src.normalization.apply(torch.from_numpy(x[200:300])))
    assert measure_standard(open_source(tmp_path / "d")) == src.normalization
    with pytest.raises(WalknoiseError, match="already normalised"):
        measure_standard(src)


def test_batch_arguments_checked(tmp_path: Path) -> None:
    src = open_source(_npy_dir(tmp_path / "d", *_arrays(5)))
    for bs, start in ((0, 0), (4, -1)):
        with pytest.raises(WalknoiseError, match="pass batch_size >= 1 and start >= 0"):
            list(src.batches(bs, start))


def test_pickled_iterable_factory_is_not_counted_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = _arrays(12)
    src = _source_of("iterable", tmp_path, monkeypatch, x, y)
    log = tmp_path / "passes.log"
    opened = len(log.read_text().splitlines())  # labels, shape, length: counted once
    assert opened <= 2 and (len(src), src.input_shape, src.labelled) == (12, (3, 4, 4), True)
    back = pickle.loads(pickle.dumps(src))
    assert (len(back), back.input_shape, back.labelled) == (12, (3, 4, 4), True)
    _check_batches(back, x, y, 5)
    assert len(log.read_text().splitlines()) == opened + 1  # the pass itself, nothing more


@pytest.mark.parametrize("layout", ["fortran", "big-endian", "float64"])
def test_npy_layouts_read_as_stored(tmp_path: Path, layout: str) -> None:
    x, y = _arrays(21)
    x = {
        "fortran": np.asfortranarray(x),
        "big-endian": x.astype(">f4"),
        "float64": x.astype(np.float64),
    }[layout]
    src = open_source(_npy_dir(tmp_path / "d", x, y.astype(">i8")))
    native = x.astype(x.dtype.newbyteorder("="))
    _check_batches(src, np.ascontiguousarray(native), y, 4)
    assert src.identity() == open_source(tmp_path / "d").identity()


def test_npy_file_truncated_after_opening(tmp_path: Path) -> None:
    x, y = _arrays(10)
    src = open_source(_npy_dir(tmp_path / "d", x, y))
    raw = (tmp_path / "d" / "x.npy").read_bytes()
    (tmp_path / "d" / "x.npy").write_bytes(raw[: len(raw) - x[0].nbytes - 5])
    assert next(src.batches(4))[0] == 0
    with pytest.raises(WalknoiseError, match="ends inside sample 8; it is truncated"):
        list(src.batches(4, start=2))


def test_load_all_gives_what_resolve_data_gives(tmp_path: Path) -> None:
    x, y = _arrays(45)
    for labels in (y, None):
        src = open_source(_npy_dir(tmp_path / str(labels is None), x, labels), normalize="pm1")
        data = load_all(src, batch_size=7)
        assert src.reads == 45 and data.labelled == (labels is not None)
        assert fingerprint(data) == fingerprint(resolve_data((x, labels), normalize="pm1"))
    mem = open_source((x, y))
    assert isinstance(mem, InMemory) and load_all(mem) is mem.data
