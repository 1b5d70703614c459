"""Streamed evaluation data: sources a scan reads once, batch by batch, in sample order.

A :class:`Source` is a cheap *recipe* for the data (a path, a factory name), so a worker process
or a SLURM job that unpickles it opens the data itself instead of receiving tensors:

- :class:`InMemory`: a :class:`~walknoise.data.TensorData` (whatever ``resolve_data`` gives);
  it pickles its tensors, as scans always did. It and the :class:`Source` interface live in
  :mod:`walknoise.sources_base`.
- :class:`NpyArrays` (:mod:`walknoise.sources_files`): memory-mapped ``x.npy`` (+ ``y.npy``).
- :class:`IdxFiles` (same module): MNIST/FashionMNIST IDX files, read into memory.
- :class:`Factory` (:mod:`walknoise.sources_factory`): ``"package.module:function"`` returning
  a torch ``Dataset`` or ``DataLoader``, imported and called in every process that reads it.

:func:`open_source` turns anything ``data=`` accepts into a source. Every source yields
``(batch index, x, y)`` with ``x`` normalised as it is read (in the dtype it is stored in,
float32 for most data; the runner casts it to the model's dtype) and ``y`` int64,
:data:`~walknoise.data.NO_LABEL` for data without labels.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from walknoise.data import NO_LABEL, resolve_data
from walknoise.data_norm import Normalization, check_kind, normalization_of
from walknoise.errors import WalknoiseError
from walknoise.sources_base import (
    Batch,
    InMemory,
    Source,
    load_all,
    measure_standard,
    sample_indices,
)
from walknoise.sources_factory import Factory
from walknoise.sources_files import IdxFiles, NpyArrays, as_file_source

__all__ = [
    "NO_LABEL",
    "Batch",
    "Factory",
    "IdxFiles",
    "InMemory",
    "NpyArrays",
    "Source",
    "load_all",
    "measure_standard",
    "open_source",
    "sample_indices",
]


def _is_factory(data: str) -> bool:
    """``package.module:function``, not ``mnist:train``."""
    if data.lower().startswith("mnist:"):
        return False
    module, sep, attr = data.rpartition(":")
    parts = module.split(".") if sep else []
    return bool(parts) and all(p.isidentifier() for p in [*parts, attr])


def open_source(
    data: object, *, normalize: str | Normalization = "none", split: str = "test"
) -> Source:
    """Anything ``data=`` accepts, as a :class:`Source`.

    - a Source: returned as it is (``normalize`` must be ``"none"`` or its own);
    - ``"package.module:function"`` (not ``mnist:...``): a :class:`Factory`;
    - a directory holding ``x.npy`` (+ ``y.npy`` for labels): memory-mapped
      :class:`~walknoise.sources_files.NpyArrays`;
    - a directory holding MNIST/FashionMNIST IDX files (directly, in ``raw/`` or in
      ``*/raw/``, ``.gz`` or not): :class:`~walknoise.sources_files.IdxFiles` for ``split``
      (``"test"``: the ``t10k-`` files, ``"train"``: the ``train-`` files), in [0, 1];
    - everything else :func:`~walknoise.data.resolve_data` takes (bundled MNIST, .pt/.npz
      files, tensors, datasets): :class:`InMemory`, normalised as ``resolve_data`` does.

    ``normalize="standard"`` on a streamed source measures its mean/std with one streaming
    pass over the source itself (:func:`measure_standard`); a Normalization is applied as is.
    """
    if isinstance(data, Source):
        if normalize in ("none", data.normalization):
            return data
        raise WalknoiseError(
            f"{data.name} is a Source with normalisation {data.normalization.describe()}; "
            "build it with the normalisation you want",
            argument="normalize",
        )
    source: Source | None = None
    if isinstance(data, str) and _is_factory(data) and not Path(data).exists():
        source = Factory(data)
    if source is None and isinstance(data, str | Path):
        source = as_file_source(Path(data), split)
    if source is None:
        return InMemory(resolve_data(data, split=split, normalize=normalize))
    return _normalize(source, normalize)


def _normalize(source: Source, normalize: str | Normalization) -> Source:
    if isinstance(normalize, Normalization):
        norm = normalize
    elif check_kind(normalize) == "standard":
        norm = measure_standard(source)
    else:
        norm = normalization_of(normalize)
    if norm == source.normalization:
        return source
    return replace(source, normalization=norm)  # type: ignore[type-var]
