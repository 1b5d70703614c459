"""Data factories: ``"package.module:function"`` returning a torch Dataset or DataLoader."""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Iterator, Sized
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from walknoise.data import NO_LABEL, _as_tensor, _given_labels, _validated
from walknoise.data_norm import NONE, Normalization
from walknoise.errors import WalknoiseError
from walknoise.mnist_files import first_line
from walknoise.models.zoo import import_from_cwd
from walknoise.sources_base import STATS_BATCH, Batch, Source, _n_batches

__all__ = ["Factory"]


@dataclass(frozen=True)
class _Built:
    """A factory's output and what one look at it told; pickled without ``dataset``, so a
    worker does not count an iterable dataset again."""

    dataset: Any  # a map-style Dataset, or the iterable (IterableDataset / DataLoader)
    iterable: bool
    batched: bool  # the iterable yields batches (a DataLoader with a batch size)
    labelled: bool
    length: int
    shape: tuple[int, ...]  # of one input


@dataclass(frozen=True, eq=False)
class Factory(Source):
    """``"package.module:function"``: a function of no arguments returning a torch Dataset of
    ``(x, y)`` or ``(x,)`` items, or a DataLoader. Imported (from the working directory too,
    like ``arch=``) and called in each process that reads it.

    A map-style dataset (also a DataLoader's, whose batching, sampler and collate_fn are then
    not used) is read by index, in index order. An iterable one is read in its own order and
    must yield the same samples on every pass: its length and identity (a hash of every
    sample) cost one extra pass when it is first opened, and resuming at batch ``k`` reads
    the samples before it again.
    """

    spec: str
    normalization: Normalization = NONE
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.spec)
        self._built()  # fail here, in the process that opened it, not in a worker

    def __len__(self) -> int:
        return self._built().length

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._built().shape

    @property
    def labelled(self) -> bool:
        return self._built().labelled

    def _built(self) -> _Built:
        cache = self._cache()
        if cache.opened is None:
            known = self.__dict__.get("_meta")
            built = _build(self.spec, self.name, known if isinstance(known, _Built) else None)
            self.__dict__["_meta"] = replace(built, dataset=None)
            cache.opened = built
        return cache.opened  # type: ignore[no-any-return]

    def _read(self, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        built = self._built()
        if built.iterable:
            x, y = next(_rebatch(built, hi - lo, self.name, skip=lo))
            return self._checked(x, y, lo, hi)
        items = [_split_item(built.dataset[i], self.name) for i in range(lo, hi)]
        x = _stack([xi for xi, _ in items], self.name)
        ys = [yi for _, yi in items if yi is not None]
        if len(ys) != (len(items) if built.labelled else 0):
            raise WalknoiseError(
                f"{self.name} yields items with and without labels; yield one kind"
            )
        y = _stack(ys, self.name) if ys else None
        return self._checked(x, y, lo, hi)

    def _checked(
        self, x: torch.Tensor, y: torch.Tensor | None, lo: int, hi: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        where = f"{self.name} (samples {lo}..{hi - 1})"
        labels = torch.full((len(x),), NO_LABEL) if y is None else _given_labels(y, where)
        x, labels = _validated(x, labels, where)
        return self.normalization.apply(x), labels

    def batches(self, batch_size: int, start: int = 0) -> Iterator[Batch]:
        built = self._built()
        if not built.iterable:
            yield from super().batches(batch_size, start)
            return
        _n_batches(built.length, batch_size, start)
        skip = start * batch_size
        self._cache().reads += min(skip, built.length)
        for k, (x, y) in enumerate(_rebatch(built, batch_size, self.name, skip), start):
            self._cache().reads += len(x)
            yield k, *self._checked(x, y, k * batch_size, k * batch_size + len(x))

    def identity(self) -> str:
        built = self._built()
        if built.iterable:  # no random access: hash every sample, one pass
            return self._stream_identity(built)

        def sample(i: int) -> bytes:
            x, y = _split_item(built.dataset[i], self.name)
            return _bytes(x) + (b"" if y is None else _bytes(y))

        x0, y0 = _split_item(built.dataset[0], self.name)
        header = f"x:{x0.dtype}:{tuple(x0.shape)};y:{None if y0 is None else y0.dtype}"
        return self._sampled_identity(header, sample)

    def _stream_identity(self, built: _Built) -> str:
        norm = self.normalization
        h = hashlib.sha256(f"walknoise-stream-v1;n:{built.length};".encode())
        h.update(f"normalization:{norm.kind}:{norm.mean!r}:{norm.std!r};".encode())
        for x, y in _rebatch(built, STATS_BATCH, self.name):
            h.update(f"x:{x.dtype}:{tuple(x.shape)};".encode() + _bytes(x))
            h.update(b"" if y is None else _bytes(y.to(torch.int64)))
        return h.hexdigest()


def _bytes(t: torch.Tensor) -> bytes:
    return bytes(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)


def _factory_error(spec: str, why: str) -> WalknoiseError:
    return WalknoiseError(
        f"data factory {spec} {why}; fix the factory (a function of no arguments returning a "
        "torch Dataset or DataLoader of (x, y) items) or pass a file",
        argument="data",
    )


def _build(spec: str, name: str, known: _Built | None) -> _Built:
    """Import and call the factory ``spec``; inspect its first item (an iterable dataset:
    count it, unless ``known`` from the process that opened it first)."""
    module_name, _, attr = spec.rpartition(":")
    import_from_cwd()
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a user module may fail in any way while importing
        raise _factory_error(spec, f"cannot be imported ({first_line(exc)})") from exc
    function = getattr(module, attr, None)
    if not callable(function):
        raise _factory_error(spec, f"is not a function in module {module_name}")
    try:
        out = function()
    except WalknoiseError:
        raise
    except Exception as exc:
        raise _factory_error(spec, f"raised {first_line(exc)}") from exc
    dataset = out.dataset if isinstance(out, DataLoader) else out
    if isinstance(dataset, IterableDataset):
        if known is not None:
            return replace(known, dataset=out)
        batched = isinstance(out, DataLoader) and out.batch_size is not None
        return _counted(_Built(out, True, batched, False, 0, ()), spec)
    if not isinstance(dataset, Dataset):
        raise _factory_error(spec, f"returned a {type(out).__name__}, not a Dataset/DataLoader")
    if not isinstance(dataset, Sized) or len(dataset) < 1:
        raise _factory_error(spec, "returned a Dataset without samples (or without __len__)")
    x, y = _split_item(dataset[0], name)
    return _Built(dataset, False, False, y is not None, len(dataset), tuple(x.shape))


def _counted(built: _Built, name: str) -> _Built:
    """An iterable dataset's labelledness, input shape and length: one pass."""
    first = next(iter(built.dataset), None)
    if first is None:
        raise _factory_error(name, "returned a dataset without samples")
    built = replace(built, labelled=_split_item(first, name)[1] is not None)
    length = 0
    for x, _ in _rebatch(built, STATS_BATCH, name):
        built = built if length else replace(built, shape=tuple(x.shape[1:]))
        length += len(x)
    return replace(built, length=length)


def _split_item(item: object, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """An item (or a DataLoader's batch) as ``(x, y)``; ``y`` None for ``(x,)`` or bare x."""
    if isinstance(item, tuple | list) and len(item) in (1, 2):
        y = _as_tensor(item[1], "y", name) if len(item) == 2 else None
        return _as_tensor(item[0], "x", name), y
    if isinstance(item, torch.Tensor | np.ndarray):
        return _as_tensor(item, "x", name), None
    raise WalknoiseError(
        f"{name} yields a {type(item).__name__}; expected (x, y) items (or (x,) without labels)"
    )


def _stack(parts: list[torch.Tensor], name: str, cat: bool = False) -> torch.Tensor:
    try:
        return torch.cat(parts) if cat else torch.stack(parts)
    except RuntimeError as exc:
        raise WalknoiseError(
            f"cannot combine the samples of {name} ({first_line(exc)}); expected every x to "
            "have the same shape and every y to be a scalar label"
        ) from exc


def _rebatch(
    built: _Built, size: int, name: str, skip: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """An iterable dataset's samples from ``skip`` on, in batches of ``size``."""
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    held = 0
    for item in built.dataset:
        x, y = _split_item(item, name)
        if (y is not None) != built.labelled:
            raise WalknoiseError(f"{name} yields items with and without labels; yield one kind")
        if not (built.batched or (y is not None and y.ndim == 1)):  # a sample: scalar label
            x, y = x[None], None if y is None else y.reshape(1)
        cut = min(skip, len(x))
        skip -= cut
        if cut == len(x):
            continue
        xs.append(x[cut:])
        ys.extend([] if y is None else [y[cut:]])
        held += len(x) - cut
        while held >= size:
            xb, yb = _stack(xs, name, cat=True), _stack(ys, name, cat=True) if ys else None
            yield xb[:size], None if yb is None else yb[:size]
            xs, ys, held = [xb[size:]], [] if yb is None else [yb[size:]], held - size
    if held:
        yield _stack(xs, name, cat=True), _stack(ys, name, cat=True) if ys else None
