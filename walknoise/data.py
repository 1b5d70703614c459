"""Evaluation data: the bundled MNIST split, user files, and in-memory tensors/datasets.

Bundled MNIST (:mod:`walknoise.mnist_files`): 10,000 official MNIST test images split once into
8,000 ``"train"`` and 2,000 ``"test"`` images (``"all"``: the 10,000). Images are
``x = pixels / 255`` in [0, 1] (float32, shape (N, 1, 28, 28)), as ``ToTensor()`` leaves them in
the Walking Noise authors' loader (their ``data/MNIST.py``, whose ``normalize=False`` default
adds nothing); labels are int64.

``normalize=`` (:mod:`walknoise.data_norm`) rescales any data: ``"none"`` (the default),
``"pm1"`` (``(x - 0.5) / 0.5``) or ``"standard"`` (mean/std of the training inputs); the
:class:`TensorData` carries what was applied, and results files record it.

Every path ends in :class:`TensorData`, whose constructor runs the one validation routine, so a
bad file, tensor pair or dataset fails early with a :class:`WalknoiseError` naming the fix.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterable, Mapping, Sized
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from walknoise.data_norm import NONE, NORMALIZATIONS, Normalization, check_kind, normalization_of
from walknoise.errors import WalknoiseError
from walknoise.mnist_files import first_line as _first_line
from walknoise.mnist_files import mnist_arrays, read_idx

__all__ = [
    "NORMALIZATIONS",
    "Normalization",
    "TensorData",
    "data_normalization",
    "fingerprint",
    "load_file",
    "load_mnist",
    "read_idx",
    "resolve_data",
]

LAYOUT = "x (float, shape (N, ...)) and y (integer class labels, shape (N,))"
FILE_LAYOUT = f"a .pt or .npz file holding {LAYOUT}"
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
    if n_neg and not bool((y == NO_LABEL).all()):  # all NO_LABEL: data without labels
        raise _negative_labels(n_neg, name)
    n_bad = int((~torch.isfinite(x)).sum())
    if n_bad:
        raise WalknoiseError(
            f"x in {name} has {n_bad} non-finite values (NaN/inf); clean or drop those samples"
        )
    return x.detach(), y


NO_LABEL = -1
"""The label of every sample of data without labels (``y=None``): only metrics that need no
labels (agreement with the clean model, KL from it) can be computed on such data."""


@dataclass(frozen=True)
class TensorData:
    """Inputs and labels held in memory; validated (and y cast to int64) on construction."""

    x: torch.Tensor  # float, (N, ...)
    y: torch.Tensor  # int64, (N,)
    name: str  # e.g. "mnist:test" or the file path
    normalization: Normalization = field(default=NONE)  # what walknoise applied to x

    def __post_init__(self) -> None:
        # _as_tensor: the annotations say Tensor, but numpy arrays passed at runtime are fine,
        # and so is y=None: no labels, stored as NO_LABEL for every sample.
        if self.y is None:
            x = _as_tensor(self.x, "x", self.name)
            object.__setattr__(self, "y", torch.full((len(x),), NO_LABEL, dtype=torch.int64))
        x, y = (_as_tensor(v, k, self.name) for k, v in (("x", self.x), ("y", self.y)))
        x, y = _validated(x, y, self.name)
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def labelled(self) -> bool:
        """Whether the samples have labels (``False`` for data built with ``y=None``)."""
        return has_labels(self.y)

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
        return TensorData(self.x[:n], self.y[:n], self.name, self.normalization)


def has_labels(y: torch.Tensor) -> bool:
    """Whether ``y`` holds labels, rather than :data:`NO_LABEL` for every sample."""
    return not bool((y == NO_LABEL).all())


def fingerprint(data: TensorData) -> str:
    """sha256 of ``x`` then ``y``: each one's dtype and shape, then its bytes in sample order.

    What a results file was computed from: equal for the same samples in the same order,
    whatever the name, device or memory layout; different for one changed bit, another order,
    dtype or shape. Rows are copied to the CPU a chunk at a time, so hashing a big set on the
    GPU never holds a second copy of it.
    """
    h = hashlib.sha256()
    norm = data.normalization
    if norm.kind != "none":  # the bytes differ anyway; the label says why
        h.update(f"normalization:{norm.kind}:{norm.mean!r}:{norm.std!r};".encode())
    for name, t in (("x", data.x), ("y", data.y)):
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        rows = max(1, HASH_CHUNK_BYTES // max(1, t[:1].numel() * t.element_size()))
        for start in range(0, len(t), rows):
            chunk = t[start : start + rows].detach().cpu().contiguous()
            h.update(chunk.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def load_mnist(split: str = "test", normalize: str | Normalization = "none") -> TensorData:
    """The bundled MNIST images for ``split`` ("train": 8,000, "test": 2,000, "all": 10,000),
    in [0, 1] unless ``normalize`` says otherwise (``"standard"``: mean/std of "train")."""
    return _normalized(_mnist_pixels(split), data_normalization(normalize, "mnist"))


def _mnist_pixels(split: str) -> TensorData:
    """``split`` as ``pixels / 255`` (float32, [0, 1]): what ``ToTensor()`` gives."""
    x, y = mnist_arrays(split)
    return TensorData(torch.from_numpy(x), torch.from_numpy(y), f"mnist:{split}")


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
    """``y=None``: data without labels."""
    labels = None if y is None else _given_labels(_as_tensor(y, "y", name), name)
    return TensorData(_as_tensor(x, "x", name), labels, name)  # type: ignore[arg-type]


def _given_labels(y: torch.Tensor, name: str) -> torch.Tensor:
    """Labels a user gave: never negative, so a y of all -1 cannot pass for "no labels"."""
    n_neg = int((y < 0).sum()) if y.dtype in _INT_DTYPES else 0
    if n_neg:
        raise _negative_labels(n_neg, name)
    return y


def _negative_labels(n_neg: int, name: str) -> WalknoiseError:
    return WalknoiseError(
        f"y in {name} has {n_neg} negative labels; expected class labels 0..C-1: remap them"
    )


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
                content = {k: (npz[k] if k in ("x", "y") else None) for k in npz.files}
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
    if "x" not in content:
        raise WalknoiseError(f"data file {path} has no key 'x'; expected {FILE_LAYOUT}")
    others = sorted(str(k) for k in content if k not in ("x", "y"))
    if "y" not in content and others:  # a misnamed label key, not data meant to be unlabelled
        raise WalknoiseError(
            f"data file {path} has no key 'y' (its keys: x, {', '.join(others)}); save the labels "
            "as 'y', or save x alone for data without labels"
        )
    return _pair(content["x"], content.get("y"), str(path))  # no y: data without labels


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
        return TensorData(join(xs), _given_labels(join(ys), name), name)
    except RuntimeError as exc:
        raise WalknoiseError(
            f"cannot combine the samples of {name} ({_first_line(exc)}); expected every x to "
            f"have the same shape and every y to be a scalar label: {LAYOUT}"
        ) from exc


def resolve_data(
    data: object, split: str = "test", normalize: str | Normalization = "none"
) -> TensorData:
    """Turn anything the API/CLI accepts as ``data`` into validated :class:`TensorData`.

    Accepts a TensorData; ``"mnist"`` (uses ``split``), ``"mnist:train"``/``"mnist:test"``/
    ``"mnist:all"``; a path to a .pt/.npz file (``split`` ignored); an ``(x, y)`` tuple/list of
    tensors or arrays; a torch Dataset of (x, y) items; or a DataLoader of (x, y) batches.
    Inputs without labels (``x`` alone, ``(x, None)``, a file without ``y``) give data whose
    labels are all :data:`NO_LABEL`: a scan of it computes only the label-free metrics.
    ``normalize``: a setting of :data:`NORMALIZATIONS` (``"standard"`` measures bundled
    MNIST's train split, other data itself) or a :class:`Normalization` to apply as it is.
    """
    raw = _resolve(data, split)
    if normalize == "standard" and not is_mnist(data):  # measured on the data at hand
        return _normalized(raw, normalization_of("standard", raw.x, raw.name))
    return _normalized(raw, data_normalization(normalize, data))


def data_normalization(
    normalize: str | Normalization, data: object, train_data: object = None
) -> Normalization:
    """The :class:`Normalization` that ``normalize`` means for ``data``: ``"standard"``
    measures ``train_data`` if given, else bundled MNIST's train split when ``data`` names
    MNIST, else ``data`` itself; a :class:`Normalization` is returned as it is."""
    if isinstance(normalize, Normalization):
        return normalize
    if check_kind(normalize) != "standard":
        return normalization_of(normalize)
    if train_data is None and is_mnist(data):
        train_data = "mnist:train"
    reference = _resolve(data if train_data is None else train_data, "train")
    if reference.normalization.kind != "none":
        raise WalknoiseError(
            f"{reference.name} is already normalised ({reference.normalization.describe()}); "
            "pass the raw data to normalize='standard'",
            argument="normalize",
        )
    return normalization_of("standard", reference.x, reference.name)


def is_mnist(data: object) -> bool:
    return isinstance(data, str) and data.lower().split(":")[0] == "mnist"


def _normalized(data: TensorData, norm: Normalization) -> TensorData:
    """``data`` with ``norm`` applied; unchanged if ``norm`` is none or already applied."""
    if norm == data.normalization or norm.kind == "none":
        return data
    if data.normalization.kind != "none":
        raise WalknoiseError(
            f"{data.name} is already normalised ({data.normalization.describe()}); pass the "
            f"raw data to apply {norm.describe()}, or normalize='none' to keep it",
            argument="normalize",
        )
    return TensorData(norm.apply(data.x), data.y, data.name, norm)


def _resolve(data: object, split: str) -> TensorData:
    """:func:`resolve_data` before normalisation."""
    if isinstance(data, TensorData):
        return data
    if isinstance(data, str):
        if data.lower() == "mnist":
            return _mnist_pixels(split)
        if data.lower().startswith("mnist:"):
            return _mnist_pixels(data.split(":", 1)[1].lower())
        return load_file(data)
    if isinstance(data, Path):
        return load_file(data)
    if isinstance(data, torch.Tensor | np.ndarray):  # inputs alone: data without labels
        return _pair(data, None, "in-memory data")
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
