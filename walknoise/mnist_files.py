"""The bundled MNIST files: reading IDX, finding the folder, the fixed 8,000/2,000 split.

The 10,000 official MNIST *test* images ship gzip-compressed in the repository's ``data/mnist/``
folder (override with ``WALKNOISE_DATA_DIR``, a directory containing ``mnist/``). They are split
once, deterministically: ``np.random.default_rng(0).permutation(10000)``; the first 8,000
indices are ``"train"``, the last 2,000 are ``"test"`` (each in permutation order); ``"all"`` is
all 10,000 in file order. :mod:`walknoise.data` turns the arrays into ``TensorData``.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

from walknoise.errors import WalknoiseError

__all__ = ["first_line", "mnist_arrays", "read_idx"]

MNIST_SIZE = 10_000
MNIST_TRAIN_SIZE = 8_000
MNIST_SPLIT_SEED = 0
MNIST_SPLITS = ("train", "test", "all")
DATA_DIR_ENV = "WALKNOISE_DATA_DIR"
_REFETCH = "restore the file from the walknoise repository or point WALKNOISE_DATA_DIR elsewhere"


def first_line(exc: BaseException) -> str:
    """The exception squeezed onto one line, so our messages stay one-liners."""
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:160]}"


def read_idx(path: str | Path) -> npt.NDArray[np.uint8]:
    """Read an IDX file of unsigned bytes (type code 0x08), gzip-compressed if named ``*.gz``."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise WalknoiseError(
            f"cannot read IDX file {path} ({first_line(exc)}); {_REFETCH}"
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


def mnist_arrays(split: str) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """``split`` as ``pixels / 255`` (float32, (N, 1, 28, 28), in [0, 1]) and int64 labels."""
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
    x = images.astype(np.float32) / np.float32(255.0)
    return x[:, None], labels.astype(np.int64)
