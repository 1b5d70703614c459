"""The :class:`Source` interface (streamed evaluation data) and :class:`InMemory`.

See :mod:`walknoise.sources` for the sources there are and :func:`~walknoise.sources.open_source`.
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from walknoise.data import TensorData, fingerprint
from walknoise.data_norm import Normalization
from walknoise.errors import WalknoiseError

__all__ = ["InMemory", "Source", "load_all", "measure_standard", "sample_indices"]

IDENTITY_SAMPLES = 64
"""Evenly spaced samples (besides the first and the last) that :meth:`Source.identity` hashes."""
STATS_BATCH = 1024
"""Batch size of the streaming pass that measures ``normalize='standard'`` (fixed, so the
measured mean/std are the same bits on every run)."""
Batch = tuple[int, torch.Tensor, torch.Tensor]


class _Cache:
    """Per-process state of a source: the read counter and whatever it opened (never pickled)."""

    def __init__(self) -> None:
        self.reads = 0
        self.opened: Any = None


def sample_indices(n: int) -> list[int]:
    """The samples :meth:`Source.identity` hashes: first, last and ~64 evenly spaced."""
    picks = {0, n - 1} | {
        round(i * (n - 1) / (IDENTITY_SAMPLES - 1)) for i in range(IDENTITY_SAMPLES)
    }
    return sorted(picks)


class Source(ABC):
    """Evaluation data read batch by batch; subclasses are frozen dataclasses (recipes).

    ``reads`` counts the samples :meth:`batches` read in this process (those it skips to
    reach ``start`` included where the source cannot seek; passes made with it, such as
    :func:`measure_standard`'s and :func:`load_all`'s, included); :meth:`head` and
    :meth:`identity` do not count.
    """

    name: str
    normalization: Normalization

    @abstractmethod
    def __len__(self) -> int: ...

    @property
    @abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input, without the sample axis."""

    @property
    @abstractmethod
    def labelled(self) -> bool:
        """Whether the samples have labels (else every ``y`` is NO_LABEL)."""

    @abstractmethod
    def _read(self, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples ``lo..hi-1``: x normalised and validated, y int64."""

    @abstractmethod
    def identity(self) -> str:
        """A sha256 naming the data for resume, computed without a full pass where the source
        can seek (:meth:`_sampled_identity`, which says what it misses); in-memory data hash
        every byte (:func:`~walknoise.data.fingerprint`), iterable factories every sample."""

    @property
    def reads(self) -> int:
        return self._cache().reads

    def batches(self, batch_size: int, start: int = 0) -> Iterator[Batch]:
        """``(k, x, y)`` for batches ``k = start, start + 1, ...`` of ``batch_size`` samples
        (the last may be short); batch ``k`` is read without reading those before it."""
        n_batches = _n_batches(len(self), batch_size, start)
        for k in range(start, n_batches):
            lo, hi = k * batch_size, min(len(self), (k + 1) * batch_size)
            x, y = self._read(lo, hi)
            self._cache().reads += hi - lo
            yield k, x, y

    def head(self, n: int) -> torch.Tensor:
        """The first ``n`` inputs (all of them if fewer), normalised."""
        return self._read(0, max(1, min(n, len(self))))[0]

    def _cache(self) -> _Cache:
        cache = self.__dict__.get("_per_process")
        if not isinstance(cache, _Cache):
            cache = self.__dict__["_per_process"] = _Cache()
        return cache

    def __getstate__(self) -> dict[str, Any]:
        """The recipe alone: open files, datasets and the read counter stay in this process."""
        return {k: v for k, v in self.__dict__.items() if k != "_per_process"}

    def _sampled_identity(self, header: str, sample: Any) -> str:
        """sha256 over ``header`` (length, dtypes, shapes), the normalisation, and the stored
        bytes of x and y of :func:`sample_indices` (``sample(i)`` gives them).

        Cheap (~66 samples), so it can miss a change to any sample not in that set: an edit
        in place of an unsampled sample, or two unsampled samples swapped, keeps the identity.
        Any change of length, dtype, shape, normalisation or a sampled sample changes it.
        """
        norm = self.normalization
        h = hashlib.sha256(f"walknoise-source-v1;{header};n:{len(self)};".encode())
        h.update(f"normalization:{norm.kind}:{norm.mean!r}:{norm.std!r};".encode())
        for i in sample_indices(len(self)):
            h.update(f"{i};".encode())
            h.update(sample(i))
        return h.hexdigest()


def _n_batches(n: int, batch_size: int, start: int) -> int:
    if batch_size < 1 or start < 0:
        raise WalknoiseError(
            f"batch_size={batch_size}, start={start}; pass batch_size >= 1 and start >= 0",
            argument="batch_size",
        )
    return math.ceil(n / batch_size)


@dataclass(frozen=True, eq=False)
class InMemory(Source):
    """A :class:`TensorData` (already normalised, as it records), sliced into batches."""

    data: TensorData

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.data.name)
        object.__setattr__(self, "normalization", self.data.normalization)

    def __len__(self) -> int:
        return len(self.data)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.data.input_shape

    @property
    def labelled(self) -> bool:
        return self.data.labelled

    def _read(self, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data.x[lo:hi], self.data.y[lo:hi]

    def identity(self) -> str:
        """:func:`walknoise.data.fingerprint` of the data: every byte (cheap in memory)."""
        return fingerprint(self.data)


def measure_standard(source: Source) -> Normalization:
    """``normalize='standard'`` for ``source``: one mean and one std over every input value,
    measured by one streaming pass (batches of :data:`STATS_BATCH`, merged in float64 as in
    Chan et al.), equal to :func:`~walknoise.data_norm.normalization_of` up to rounding."""
    if source.normalization.kind != "none":
        raise WalknoiseError(
            f"{source.name} is already normalised ({source.normalization.describe()}); pass "
            "the raw data to normalize='standard'",
            argument="normalize",
        )
    count, mean, m2 = 0, 0.0, 0.0
    for _, x, _ in source.batches(STATS_BATCH):
        values = x.detach().cpu().to(torch.float64).numpy().ravel()
        n_b, mean_b = values.size, float(values.mean())
        m2_b = float(np.square(values - mean_b).sum())
        delta, total = mean_b - mean, count + n_b
        mean += delta * n_b / total
        m2 += m2_b + delta * delta * count * n_b / total
        count = total
    std = math.sqrt(m2 / count)
    if not (math.isfinite(std) and std > 0):
        raise WalknoiseError(
            f"normalize='standard': the inputs of {source.name} have std {std:g}, so they cannot "
            "be standardised; use normalize='none'",
            argument="normalize",
        )
    return Normalization("standard", mean, std, source.name)


def load_all(source: Source, batch_size: int = STATS_BATCH) -> TensorData:
    """Every sample of ``source`` in memory (one pass), as the :class:`TensorData` the
    in-memory path takes: the same bytes ``resolve_data`` gives for the same data and
    normalisation, so the same :func:`~walknoise.data.fingerprint`."""
    if isinstance(source, InMemory):
        return source.data
    parts = [(x, y) for _, x, y in source.batches(batch_size)]
    x, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    return TensorData(x, y if source.labelled else None, source.name, source.normalization)  # type: ignore[arg-type]
