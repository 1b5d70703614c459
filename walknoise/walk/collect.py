"""Run a scan's layer tasks on an executor and keep each finished layer as it arrives.

The driver (``walknoise.walk.driver``) plans and prepares; this is its loop: hand the tasks
to the executor, write every finished layer to the results file (the file's only writer)
and into the in-memory grid, resubmit failed ones.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xarray as xr

from walknoise.progress import progress_bar
from walknoise.walk import store
from walknoise.walk.cells import EVAL, TRAIN, LayerTask, LayerWork
from walknoise.walk.executors import Executor, LayerFailed
from walknoise.walk.plan import Plan
from walknoise.walk.runner import CellCounter

log = logging.getLogger("walknoise")


def every_eval(plan: Plan) -> list[LayerTask]:
    return [LayerTask(i, layer, EVAL) for i, layer in enumerate(plan.axis)]


def run_all(
    executor: Executor,
    work: LayerWork,
    tasks: list[LayerTask],
    ds: Callable[[], xr.Dataset],
    path: Path | None,
    progress: bool,
    retries: int,
) -> list[LayerFailed]:
    """Every task, and failed ones again up to ``retries`` times; the ones that still fail.
    ``ds()`` is the in-memory grid, there by the time the first layer arrives."""
    spec = work.plan.spec
    cells = spec.repeats * len(spec.sigmas)
    failed: list[LayerFailed] = []
    with progress_bar(
        total=len(tasks) * cells, unit="cell", disable=not progress, desc="scan"
    ) as bar:
        counter = CellCounter(bar)  # per batch in this process, per layer from workers
        work = dataclasses.replace(work, progress=counter.advance)
        for attempt in range(retries + 1):
            failed = _run(executor, work, tasks, ds, path, counter, cells)
            if not failed:
                break
            tasks = [f.task for f in failed]
            again = "submitting them again" if attempt < retries else "giving up"
            log.warning("%s failed, %s", count(failed), again)
    return failed


def count(failed: list[LayerFailed]) -> str:
    return f"{len(failed)} layer{'s' if len(failed) != 1 else ''}"


def _run(
    executor: Executor,
    work: LayerWork,
    tasks: list[LayerTask],
    dataset: Callable[[], xr.Dataset],
    path: Path | None,
    counter: CellCounter,
    cells_per_layer: int,
) -> list[LayerFailed]:
    """Store each layer as it arrives; return the tasks that failed."""
    failed = []
    for outcome in executor.map(work, tasks):
        task = outcome.task
        if isinstance(outcome, LayerFailed):
            log.warning("layer %s: %s", task.layer, outcome.message)
            failed.append(outcome)
            continue
        # a file resumed from before a variable existed (e.g. topk_accuracy) keeps its own set
        ds = dataset()
        outcome.values = {k: v for k, v in outcome.values.items() if k in ds}
        if path is not None:
            store.write_layer(path, task.index, outcome.values, done=task.flag, whole=outcome.whole)
        _update(ds, task.index, outcome.values, task.flag, outcome.whole)
        counter.bar.set_postfix_str(f"{task.layer} ({'train' if task.flag == TRAIN else 'eval'})")
        counter.layer_done(cells_per_layer)
    return failed


def todo(ds: xr.Dataset, plan: Plan) -> list[LayerTask]:
    flags = ([EVAL] if plan.eval_phase else []) + ([TRAIN] if plan.train_phase else [])
    return [
        LayerTask(i, plan.axis[i], f)
        for f in flags
        for i, done in enumerate(ds[f].values)
        if not done
    ]


def _update(
    ds: xr.Dataset, i: int, values: dict[str, Any], done_flag: str, whole: dict[str, Any]
) -> None:
    for name, value in values.items():
        ds[name][i] = value
    for name, value in whole.items():
        ds[name][...] = value
    ds[done_flag][i] = 1
