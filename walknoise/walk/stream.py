"""Stream the data once for many cell groups: per batch, every pending layer's repeats.

A scan used to walk its data once per (layer, repeat); here each batch is read once and every
group adds its share before the next batch is read, so the data is read once per pass however
many cells there are, and nothing bigger than a batch is held. ε of a batch depends only on
(seed, layer, repeat, batch index), so the numbers equal a layer-at-a-time run's bit for bit.

The sums are checkpointed atomically every ``every`` batches and on Ctrl-C: a pass that is
killed resumes at its last checkpoint, not at the first batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from walknoise.walk.clean import Batches, add_clean
from walknoise.walk.metrics import BatchStats
from walknoise.walk.runner import Group, LayerRunner

CHECKPOINT_EVERY = 10
"""Batches between checkpoints: at most this many batches are computed again after a kill."""

CLEAN = "<clean>"
"""The clean model's sums in a pass that also computes them (``stream(clean=...)``)."""

log = logging.getLogger("walknoise")


@dataclass(frozen=True)
class Job:
    """One cell group on the runner (model, σ stack) that computes it."""

    key: str
    """The group's name in a checkpoint, e.g. ``conv1|2`` (layer, repeat)."""
    runner: LayerRunner
    group: Group


@dataclass(frozen=True)
class Checkpoint:
    """Where a pass keeps its partial sums, and what they must belong to."""

    path: Path
    key: str
    """A digest of everything that decides the sums: a file with another key is ignored."""
    every: int = CHECKPOINT_EVERY

    @classmethod
    def for_jobs(
        cls, folder: Path, identity: dict[str, object], jobs: Sequence[Job], every: int
    ) -> Checkpoint:
        """The checkpoint of ``jobs`` under ``folder``. Its key is what decides each job's sums
        (the scan's identity, the σ stacks, the batch size); the file is named by the jobs."""
        what = {
            "identity": identity,
            "sigmas": sorted({str(j.runner.sigmas.tolist()) for j in jobs}),
            "batch_size": sorted({j.runner.batch_size for j in jobs}),
        }
        key = _digest(what)
        return cls(folder / f"{_digest([j.key for j in jobs])[:20]}.pt", key, every)

    def load(
        self, device: torch.device, keys: Sequence[str]
    ) -> tuple[int, dict[str, BatchStats]] | None:
        """Batches done and the sums so far of ``keys``: from this checkpoint's file, or from
        any other in its folder holding them all (a rerun of fewer layers), the furthest one."""
        best: tuple[int, dict[str, Any]] | None = None
        for path in [self.path, *sorted(self.path.parent.glob("*.pt"))]:
            state = self._read(path)
            if state is None or not set(keys) <= set(state["stats"]):
                continue
            if best is None or int(state["batches"]) > best[0]:
                best = int(state["batches"]), state["stats"]
        if best is None:
            return None
        return best[0], {k: BatchStats.from_state(best[1][k], device) for k in keys}

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            return None
        except Exception as err:  # a torn or foreign file: start again, never fail on it
            log.warning("ignoring unreadable checkpoint %s (%s)", path, err)
            return None
        return state if isinstance(state, dict) and state.get("key") == self.key else None

    def save(self, batches: int, stats: dict[str, BatchStats]) -> None:
        """Write atomically: a kill leaves the old checkpoint or the new one, never half."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "key": self.key,
            "batches": batches,
            "stats": {k: s.state() for k, s in stats.items()},
        }
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        torch.save(state, tmp)
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # the folder goes with its last checkpoint
            self.path.parent.rmdir()


def stream(
    jobs: Sequence[Job],
    data: Batches,
    batch_size: int,
    checkpoint: Checkpoint | None = None,
    on_batch: Callable[[int], None] | None = None,
    clean: tuple[LayerRunner, int] | None = None,
) -> dict[str, BatchStats]:
    """Every job's sums over all of ``data``, each batch read once.

    A batch's sums are added only when every job has computed it, so the totals (and a
    checkpoint) always hold whole batches. ``on_batch(b)`` is called after batch ``b``.
    With ``clean`` (a runner and the top-k), the totals also hold the clean model's sums
    under :data:`CLEAN` (see ``walknoise.walk.clean.add_clean``): the clean reference of a
    scan from the same pass as its grid.
    """
    if not jobs:
        return {}
    first = jobs[0].runner
    start, totals = 0, {j.key: j.runner.zeros(len(j.group.repeats)) for j in jobs}
    if clean is not None:
        totals[CLEAN] = _clean_zeros(clean[0])
    keys = list(totals)
    loaded = checkpoint.load(first.device, keys) if checkpoint else None
    if loaded is not None:
        start, totals = loaded
        log.info("resuming a pass over the data at batch %d", start)
    done = start
    try:
        for b, xb, yb in data.batches(batch_size, start):
            xb, yb = first.to_device(xb, yb)
            fresh = _batch(jobs, b, xb, yb)
            if clean is not None:
                fresh[CLEAN] = _clean_batch(*clean, xb, yb)
            for key, stats in fresh.items():
                totals[key].add(stats)
            done = b + 1
            if on_batch is not None:
                on_batch(b)
            if checkpoint is not None and (done - start) % checkpoint.every == 0:
                checkpoint.save(done, totals)
    except KeyboardInterrupt:
        if checkpoint is not None and done > start:
            checkpoint.save(done, totals)
        raise
    if checkpoint is not None and done > start:
        checkpoint.save(done, totals)  # the whole pass: nothing to compute again after a kill
    return totals


def _clean_zeros(runner: LayerRunner) -> BatchStats:
    stats = BatchStats.zeros(1, runner.device)
    stats.labelled = runner.data.labelled
    return stats


def _clean_batch(runner: LayerRunner, topk: int, xb: torch.Tensor, yb: torch.Tensor) -> BatchStats:
    stats = _clean_zeros(runner)
    with torch.inference_mode():
        add_clean(stats, runner.model(xb), yb, topk)
    return stats


def _digest(what: object) -> str:
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def _batch(
    jobs: Sequence[Job], b: int, xb: torch.Tensor, yb: torch.Tensor
) -> dict[str, BatchStats]:
    """One batch of every job; each model's clean logits computed once."""
    cleans: dict[int, torch.Tensor | None] = {}
    fresh = {}
    for job in jobs:
        runner = job.runner
        if id(runner) not in cleans:
            cleans[id(runner)] = runner.clean_logits(xb)
        fresh[job.key] = stats = runner.zeros(len(job.group.repeats))
        runner.add_batch(job.group, b, xb, yb, cleans[id(runner)], stats)
    return fresh
