"""File-backed sources: memory-mapped ``.npy`` arrays and MNIST-style IDX directories.

``.npy`` convention: a *directory* holding ``x.npy`` (float inputs, shape (N, ...)) and, for
labelled data, ``y.npy`` (integer class labels, shape (N,)); without ``y.npy`` the data has no
labels. ``x.npy``'s header is read through a memory map, its samples a batch at a time with
plain file reads: pages touched through a map count in the process's RSS until the kernel
drops them, so reading a 600 MB file through one grew peak RSS by 600 MB, plain reads by one
batch. ``y.npy`` is loaded whole (N integers) to be validated when the source is opened.

IDX convention: a directory holding the MNIST/FashionMNIST files as torchvision leaves them,
``t10k-images-idx3-ubyte`` + ``t10k-labels-idx1-ubyte`` (split ``"test"``) or ``train-...``
(split ``"train"``), each ``.gz`` or not, directly in the directory, in ``raw/`` or in
``*/raw/`` (``root/FashionMNIST/raw``). Read into memory (they are small) as
``pixels / 255`` in [0, 1], shape (N, 1, H, W), like the bundled MNIST.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from walknoise.data import NO_LABEL, TensorData, _as_tensor, _given_labels, _validated
from walknoise.data_norm import NONE, Normalization
from walknoise.errors import WalknoiseError
from walknoise.mnist_files import first_line, read_idx
from walknoise.sources_base import InMemory, Source

__all__ = ["IdxFiles", "NpyArrays", "as_file_source", "find_idx"]

NPY_LAYOUT = "a directory holding x.npy (float inputs (N, ...)) and y.npy (integer labels (N,))"
IDX_SPLITS = {"test": "t10k", "train": "train"}


def _native(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """``a`` in native byte order (torch cannot wrap big-endian arrays)."""
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def _load(path: Path, mmap: bool) -> npt.NDArray[Any]:
    if not path.is_file():
        raise WalknoiseError(f"no such file: {path}; a .npy dataset is {NPY_LAYOUT}")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)  # type: ignore[no-any-return]
    except Exception as exc:
        raise WalknoiseError(
            f"cannot read {path} ({first_line(exc)}); save the array with np.save(path, array)"
        ) from exc


@dataclass(frozen=True)
class _Rows:
    """Where ``x.npy``'s rows lie: read with seek + readinto (``mmap`` only for Fortran order)."""

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    offset: int
    mmap: npt.NDArray[Any] | None

    def read(self, lo: int, hi: int) -> npt.NDArray[Any]:
        if self.mmap is not None:
            return np.array(self.mmap[lo:hi])
        out = np.empty((hi - lo, *self.shape[1:]), self.dtype)
        with open(self.path, "rb") as f:
            f.seek(self.offset + lo * (out.nbytes // max(1, hi - lo)))
            got = f.readinto(out.reshape(-1).view(np.uint8).data)
        if got != out.nbytes:
            raise WalknoiseError(
                f"{self.path} ends inside sample {lo + got // max(1, out[:1].nbytes)}"
                "; it is truncated: save the array again with np.save"
            )
        return out


def _rows(x: npt.NDArray[Any]) -> _Rows:
    """Plain reads for a C-order memmap; others (Fortran order, or what np.load did not map,
    like an empty array) are sliced as they are."""
    if isinstance(x, np.memmap) and (x.ndim < 2 or x.flags.c_contiguous):
        return _Rows(str(x.filename), x.shape, x.dtype, int(x.offset), None)
    return _Rows("", x.shape, x.dtype, 0, x)


@dataclass(frozen=True, eq=False)
class NpyArrays(Source):
    """``x.npy`` read a batch at a time (opened lazily in each process), ``y.npy`` whole."""

    x_path: str
    y_path: str | None = None
    normalization: Normalization = NONE
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.x_path)
        self._arrays()  # validate here, in the process that opened it

    def _arrays(self) -> tuple[_Rows, npt.NDArray[Any] | None]:
        cache = self._cache()
        if cache.opened is None:
            cache.opened = self._open()
        return cache.opened  # type: ignore[no-any-return]

    def _open(self) -> tuple[_Rows, npt.NDArray[Any] | None]:
        x = _load(Path(self.x_path), mmap=True)
        y = None if self.y_path is None else _load(Path(self.y_path), mmap=False)
        if x.ndim and y is not None and y.ndim and len(x) != len(y):
            raise WalknoiseError(
                f"x in {self.name} has {len(x)} samples, y {len(y)}; expected x (N, ...), "
                f"y (N,): {NPY_LAYOUT}"
            )
        labels = (
            None if y is None else _given_labels(_as_tensor(_native(y), "y", self.name), self.name)
        )
        if labels is not None:  # all of them, now: y is small
            _validated(torch.zeros(len(labels), 1), labels, self.name)
        first = _as_tensor(_native(np.array(x[:1] if x.ndim else x)), "x", self.name)
        _validated(first, _first_labels(labels, len(first)), self.name)  # dtype/shape messages
        return _rows(x), y

    def __len__(self) -> int:
        return int(self._arrays()[0].shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self._arrays()[0].shape[1:])

    @property
    def labelled(self) -> bool:
        return self.y_path is not None

    def _read(self, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = self._arrays()
        x = torch.from_numpy(_native(xs.read(lo, hi)))
        y = torch.full((hi - lo,), NO_LABEL) if ys is None else torch.from_numpy(_native(ys[lo:hi]))
        x, y = _validated(x, y, f"{self.name} (samples {lo}..{hi - 1})")  # non-finite values
        return self.normalization.apply(x), y

    def identity(self) -> str:
        """:meth:`Source._sampled_identity` over the stored bytes of the sampled samples."""
        xs, ys = self._arrays()
        header = f"x:{xs.dtype.str}:{xs.shape};y:{None if ys is None else ys.dtype.str}"

        def sample(i: int) -> bytes:
            return bytes(xs.read(i, i + 1).tobytes()) + (b"" if ys is None else ys[i].tobytes())

        return self._sampled_identity(header, sample)


def _first_labels(labels: torch.Tensor | None, n: int) -> torch.Tensor:
    return torch.full((n,), NO_LABEL) if labels is None else labels[:n]


@dataclass(frozen=True, eq=False)
class IdxFiles(Source):
    """An IDX image file and its label file, read into memory in each process that uses
    them (only the paths are pickled); batches, head and identity are :class:`InMemory`'s."""

    images: str
    labels: str
    normalization: Normalization = NONE
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.images)
        self._inner()

    def _inner(self) -> InMemory:
        cache = self._cache()
        if cache.opened is None:
            cache.opened = InMemory(self._load())
        return cache.opened  # type: ignore[no-any-return]

    def _load(self) -> TensorData:
        images, labels = read_idx(self.images), read_idx(self.labels)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise WalknoiseError(
                f"IDX files {self.images} and {self.labels} hold images {images.shape} and "
                f"labels {labels.shape}; expected images (N, H, W) and labels (N,) of one split"
            )
        x = images.astype(np.float32) / np.float32(255.0)  # as the bundled MNIST
        x_t = self.normalization.apply(torch.from_numpy(x[:, None]))
        return TensorData(x_t, torch.from_numpy(labels), self.name, self.normalization)

    def __len__(self) -> int:
        return len(self._inner())

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._inner().input_shape

    @property
    def labelled(self) -> bool:
        return True

    def _read(self, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._inner()._read(lo, hi)

    def identity(self) -> str:
        """:func:`walknoise.data.fingerprint` of the (normalised) images and labels."""
        return self._inner().identity()


def find_idx(root: Path, split: str) -> tuple[Path, Path] | None:
    """The (images, labels) IDX files of ``split`` under ``root``, or None if it has none."""
    if split not in IDX_SPLITS:
        raise WalknoiseError(
            f"unknown split {split!r} for the IDX directory {root}; use 'test' or 'train'",
            argument="split",
        )
    prefix = IDX_SPLITS[split]
    for folder in [root, root / "raw", *sorted(root.glob("*/raw"))]:
        images = _either(folder / f"{prefix}-images-idx3-ubyte")
        if images is None:
            continue
        labels = _either(folder / f"{prefix}-labels-idx1-ubyte")
        if labels is None:
            raise WalknoiseError(
                f"IDX directory {folder} has {images.name} but no {prefix}-labels-idx1-ubyte"
                "[.gz]; put the label file beside it"
            )
        return images, labels
    return None


def _either(path: Path) -> Path | None:
    gz = path.with_name(path.name + ".gz")
    return path if path.is_file() else gz if gz.is_file() else None


def as_file_source(path: Path, split: str) -> Source | None:
    """A directory as :class:`NpyArrays` or :class:`IdxFiles`; None for other paths (files
    ``resolve_data`` reads), a WalknoiseError for a directory or ``.npy`` file of neither."""
    if path.suffix.lower() == ".npy":
        raise WalknoiseError(
            f"{path} is one .npy file; pass {NPY_LAYOUT} (y.npy optional), not the file",
            argument="data",
        )
    if not path.is_dir():
        return None
    if (path / "x.npy").is_file():
        y = path / "y.npy"
        return NpyArrays(str(path / "x.npy"), str(y) if y.is_file() else None, name=str(path))
    found = find_idx(path, split)
    if found is not None:
        return IdxFiles(str(found[0]), str(found[1]), name=f"{path}:{split}")
    prefix = IDX_SPLITS[split]
    raise WalknoiseError(
        f"directory {path} holds neither x.npy nor IDX files ({prefix}-images-idx3-ubyte[.gz] "
        f"directly, in raw/ or in */raw/); pass {NPY_LAYOUT}, an IDX directory or a data file",
        argument="data",
    )
