"""Evaluation data: the bundled MNIST split, user files, and in-memory tensors/datasets.

Bundled MNIST: the 10,000 official MNIST *test* images ship gzip-compressed in the repository's
``data/mnist/`` folder (override with ``WALKNOISE_DATA_DIR``, a directory containing ``mnist/``).
They are split once, deterministically: ``np.random.default_rng(0).permutation(10000)``; the first
8,000 indices are ``"train"``, the last 2,000 are ``"test"`` (each in permutation order); ``"all"``
is all 10,000 in file order. Images are mapped to [-1, 1], ``x = (pixels / 255 - 0.5) / 0.5``
(float32, shape (N, 1, 28, 28)); labels are int64. The Walking Noise authors' MNIST loader
keeps ``ToTensor()``'s [0, 1] by default (their ``data/MNIST.py``; 0.5/0.5 is an option).

Every path ends in :class:`TensorData`, whose constructor runs the one validation routine, so a
bad file, tensor pair or dataset fails early with a :class:`WalknoiseError` naming the fix.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sized
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from walknoise.errors import WalknoiseError

__all__ = ["TensorData", "fingerprint", "load_file", "load_mnist", "read_idx", "resolve_data"]

MNIST_SIZE = 10_000
MNIST_TRAIN_SIZE = 8_000
MNIST_SPLIT_SEED = 0
MNIST_SPLITS = ("train", "test", "all")
DATA_DIR_ENV = "WALKNOISE_DATA_DIR"
LAYOUT = "x (float, shape (N, ...)) and y (integer class labels, shape (N,))"
FILE_LAYOUT = f"a .pt or .npz file holding {LAYOUT}"
_REFETCH = "restore the file from the walknoise repository or point WALKNOISE_DATA_DIR elsewhere"
_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
HASH_CHUNK_BYTES = 1 << 24
"""Bytes copied to the CPU at a time by :func:`fingerprint` (never the whole set at once)."""


def _validated(x: torch.Tensor, y: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Check ``x``/``y`` against the layout every analysis assumes; return (x, y as int64)."""
    if not torch.is_floating_point(x):
        raise WalknoiseError(
            f"x in {name} has dtype {x.dtype}; expected float inputs of shape (N, ...): convert "
            "to float and normalise (e.g. x = x.float() / 255 for 8-bit images)"
        )
    if y.dtype not in _INT_DTYPES:
        raise WalknoiseError(
            f"y in {name} has dtype {y.dtype}; expected integer class labels of shape (N,) "
            "(int64/int32/uint8): convert whole-number labels with y.long()"
        )
    if x.ndim < 2:
        raise WalknoiseError(
            f"x in {name} has shape {tuple(x.shape)}; expected at least 2-D (N, features...): "
            "add a feature axis (x.reshape(-1, 1)) or a batch axis (x.unsqueeze(0))"
        )
    if y.ndim != 1:
        raise WalknoiseError(
            f"y in {name} has shape {tuple(y.shape)}; expected 1-D integer class labels of shape "
            "(N,): flatten with y.reshape(-1), or use y.argmax(1) for one-hot labels"
        )
    if x.shape[0] != y.shape[0]:
        raise WalknoiseError(
            f"x in {name} has {x.shape[0]} samples, y {y.shape[0]}; expected x (N, ...), y (N,)"
        )
    if x.shape[0] == 0:
        raise WalknoiseError(f"{name} holds no samples; expected at least one sample of {LAYOUT}")
    y = y.detach().to(torch.int64)
    n_neg = int((y < 0).sum())
    if n_neg:
        raise WalknoiseError(
            f"y in {name} has {n_neg} negative labels; expected class labels 0..C-1: remap them"
        )
    n_bad = int((~torch.isfinite(x)).sum())
    if n_bad:
        raise WalknoiseError(
            f"x in {name} has {n_bad} non-finite values (NaN/inf); clean or drop those samples"
        )
    return x.detach(), y


@dataclass(frozen=True)
class TensorData:
    """Inputs and labels held in memory; validated (and y cast to int64) on construction."""

    x: torch.Tensor  # float, (N, ...)
    y: torch.Tensor  # int64, (N,)
    name: str  # e.g. "mnist:test" or the file path

    def __post_init__(self) -> None:
        # _as_tensor: the annotations say Tensor, but numpy arrays passed at runtime are fine.
        x, y = (_as_tensor(v, k, self.name) for k, v in (("x", self.x), ("y", self.y)))
        x, y = _validated(x, y, self.name)
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def num_classes(self) -> int:
        """``max(y) + 1``: a class absent from the top of the range is not counted."""
        return int(self.y.max()) + 1

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, n: int) -> TensorData:
        """The first ``n`` samples (all of them if ``n >= len(self)``)."""
        if n < 1:
            raise WalknoiseError(f"subset size must be at least 1, got {n}; pass a positive count")
        return TensorData(self.x[:n], self.y[:n], self.name)


def fingerprint(data: TensorData) -> str:
    """sha256 of ``x`` then ``y``: each one's dtype and shape, then its bytes in sample order.

    What a results file was computed from: equal for the same samples in the same order,
    whatever the name, device or memory layout; different for one changed bit, another order,
    dtype or shape. Rows are copied to the CPU a chunk at a time, so hashing a big set on the
    GPU never holds a second copy of it.
    """
    h = hashlib.sha256()
    for name, t in (("x", data.x), ("y", data.y)):
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        rows = max(1, HASH_CHUNK_BYTES // max(1, t[:1].numel() * t.element_size()))
        for start in range(0, len(t), rows):
            chunk = t[start : start + rows].detach().cpu().contiguous()
            h.update(chunk.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def read_idx(path: str | Path) -> npt.NDArray[np.uint8]:
    """Read an IDX file of unsigned bytes (type code 0x08), gzip-compressed if named ``*.gz``."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise WalknoiseError(
            f"cannot read IDX file {path} ({_first_line(exc)}); {_REFETCH}"
        ) from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[3] == 0:
        raise WalknoiseError(f"IDX file {path} has a bad magic number; " + _REFETCH)
    if raw[2] != 0x08:
        raise WalknoiseError(
            f"IDX file {path} has data type code {raw[2]:#04x}; only unsigned bytes (0x08) are "
            "supported: " + _REFETCH
        )
    header = 4 + 4 * raw[3]
    if len(raw) < header:
        raise WalknoiseError(f"IDX file {path} is truncated inside its header; " + _REFETCH)
    dims = struct.unpack(f">{raw[3]}I", raw[4:header])
    if len(raw) - header != math.prod(dims):
        raise WalknoiseError(
            f"IDX file {path} holds {len(raw) - header} data bytes but its header {dims} needs "
            f"{math.prod(dims)}; " + _REFETCH
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _mnist_dir() -> Path:
    env = os.environ.get(DATA_DIR_ENV)
    base = Path(env) if env else Path(__file__).resolve().parent.parent / "data"
    return base / "mnist"


def load_mnist(split: str = "test") -> TensorData:
    """The bundled MNIST images for ``split`` ("train": 8,000, "test": 2,000, "all": 10,000)."""
    if split not in MNIST_SPLITS:
        raise WalknoiseError(f"unknown MNIST split {split!r}; use one of 'train', 'test', 'all'")
    root = _mnist_dir()
    files = [root / "t10k-images-idx3-ubyte.gz", root / "t10k-labels-idx1-ubyte.gz"]
    for f in files:
        if not f.is_file():
            raise WalknoiseError(
                f"bundled MNIST file not found: {f} (set {DATA_DIR_ENV} to a directory "
                "containing mnist/, or run from a walknoise checkout that has data/mnist/)"
            )
    images, labels = read_idx(files[0]), read_idx(files[1])
    if images.ndim != 3 or labels.ndim != 1 or not len(images) == len(labels) == MNIST_SIZE:
        raise WalknoiseError(
            f"MNIST files in {root} hold images {images.shape} and labels {labels.shape}; "
            f"expected the {MNIST_SIZE} MNIST test images (N, 28, 28) and labels (N,): " + _REFETCH
        )
    if split != "all":
        perm = np.random.default_rng(MNIST_SPLIT_SEED).permutation(MNIST_SIZE)
        idx = perm[:MNIST_TRAIN_SIZE] if split == "train" else perm[MNIST_TRAIN_SIZE:]
        images, labels = images[idx], labels[idx]
    x = (images.astype(np.float32) / np.float32(255.0) - np.float32(0.5)) / np.float32(0.5)
    return TensorData(
        torch.from_numpy(x[:, None]), torch.from_numpy(labels.astype(np.int64)), f"mnist:{split}"
    )


def _first_line(exc: BaseException) -> str:
    """The exception squeezed onto one line, so our messages stay one-liners."""
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:160]}"


def _as_tensor(value: object, what: str, name: str) -> torch.Tensor:
    """Tensor/ndarray/number -> tensor (numpy memory is shared when possible)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":  # others: no torch dtype
        return torch.from_numpy(value if value.flags.writeable else value.copy())
    if isinstance(value, int | float | np.integer | np.floating):
        return torch.as_tensor(value)
    kind = (
        f"array of dtype {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__
    )
    raise WalknoiseError(f"{what} in {name} has unsupported type {kind}; expected {LAYOUT}")


def _pair(x: object, y: object, name: str) -> TensorData:
    return TensorData(_as_tensor(x, "x", name), _as_tensor(y, "y", name), name)


def load_file(path: str | Path) -> TensorData:
    """Load ``{"x": ..., "y": ...}`` from a ``.pt`` (tensors) or ``.npz`` (arrays) file."""
    path = Path(path)
    if not path.is_file():
        raise WalknoiseError(
            f"no such data file: {path} (check the path, or use data='mnist' for the bundled MNIST)"
        )
    suffix = path.suffix.lower()
    if suffix not in (".pt", ".npz"):
        raise WalknoiseError(
            f"data file {path} has unknown extension {path.suffix!r}; expected {FILE_LAYOUT} "
            "(supported extensions: .pt, .npz)"
        )
    try:  # any failure here means the file itself is unreadable
        if suffix == ".pt":
            content = torch.load(path, map_location="cpu", weights_only=True)
        elif not zipfile.is_zipfile(path):  # else np.load falls back to unpickling: odd message
            raise ValueError("not a zip archive")
        else:
            with np.load(path, allow_pickle=False) as npz:
                content = {k: npz[k] for k in ("x", "y") if k in npz.files}
    except Exception as exc:
        # torch's own text is a long essay on weights_only; its type name is enough.
        why = f"{type(exc).__name__}: corrupt, or holds non-tensor objects"
        raise WalknoiseError(
            f"cannot read data file {path} ({why if suffix == '.pt' else _first_line(exc)}); "
            f"expected {FILE_LAYOUT}, saved with torch.save({{'x': x, 'y': y}}, path) or "
            "np.savez(path, x=x, y=y)"
        ) from exc
    if not isinstance(content, Mapping):
        raise WalknoiseError(
            f"data file {path} holds a {type(content).__name__}, not a dict; expected {FILE_LAYOUT}"
            ", saved with torch.save({'x': x, 'y': y}, path)"
        )
    for key in ("x", "y"):
        if key not in content:
            raise WalknoiseError(f"data file {path} has no key {key!r}; expected {FILE_LAYOUT}")
    return _pair(content["x"], content["y"], str(path))


def _stack_pairs(items: Iterable[object], name: str, batched: bool) -> TensorData:
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    for item in items:
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise WalknoiseError(
                f"{name} yields a {type(item).__name__}; expected (x, y) pairs building {LAYOUT}"
            )
        xs.append(_as_tensor(item[0], "x", name))
        ys.append(_as_tensor(item[1], "y", name))
    if not xs:
        raise WalknoiseError(f"{name} holds no samples; expected at least one sample of {LAYOUT}")
    # A DataLoader without automatic batching yields single samples, so stack instead of cat.
    join = torch.cat if batched and ys[0].ndim >= 1 else torch.stack
    try:
        return TensorData(join(xs), join(ys), name)
    except RuntimeError as exc:
        raise WalknoiseError(
            f"cannot combine the samples of {name} ({_first_line(exc)}); expected every x to "
            f"have the same shape and every y to be a scalar label: {LAYOUT}"
        ) from exc


def resolve_data(data: object, split: str = "test") -> TensorData:
    """Turn anything the API/CLI accepts as ``data`` into validated :class:`TensorData`.

    Accepts a TensorData; ``"mnist"`` (uses ``split``), ``"mnist:train"``/``"mnist:test"``/
    ``"mnist:all"``; a path to a .pt/.npz file (``split`` ignored); an ``(x, y)`` tuple/list of
    tensors or arrays; a torch Dataset of (x, y) items; or a DataLoader of (x, y) batches.
    """
    if isinstance(data, TensorData):
        return data
    if isinstance(data, str):
        if data.lower() == "mnist":
            return load_mnist(split)
        if data.lower().startswith("mnist:"):
            return load_mnist(data.split(":", 1)[1].lower())
        return load_file(data)
    if isinstance(data, Path):
        return load_file(data)
    if isinstance(data, tuple | list):
        if len(data) != 2:
            raise WalknoiseError(f"an (x, y) pair needs 2 items, not {len(data)}; pass {LAYOUT}")
        return _pair(data[0], data[1], "in-memory data")
    if isinstance(data, DataLoader):
        return _stack_pairs(data, f"DataLoader({type(data.dataset).__name__})", batched=True)
    if isinstance(data, IterableDataset):
        return _stack_pairs(data, type(data).__name__, batched=False)
    if isinstance(data, Dataset):
        if not isinstance(data, Sized):
            raise WalknoiseError(f"{type(data).__name__} has no __len__; give the Dataset a length")
        items = (data[i] for i in range(len(data)))
        return _stack_pairs(items, type(data).__name__, batched=False)
    raise WalknoiseError(
        f"cannot use data of type {type(data).__name__}; pass 'mnist' / 'mnist:train' / "
        "'mnist:test', a path to a .pt or .npz file, an (x, y) pair of tensors or numpy arrays, "
        "a torch Dataset or DataLoader of (x, y) pairs, or a TensorData"
    )
