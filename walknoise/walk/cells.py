"""Layers' cells, computed wherever an executor puts them.

``compute_tasks(work, tasks)`` is a top-level function over plain, picklable data (the model,
the plan with its data or the recipe to read it, the train phase), so it runs alike in the
driver, in a joblib worker or in a SLURM job. It yields each layer's values and never touches
the results file: the driver (``walknoise.walk.driver``) is its only writer.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from walknoise.devices import resolve_device
from walknoise.walk.clean import Clean
from walknoise.walk.evaluate import eval_layers
from walknoise.walk.guard import model_errors
from walknoise.walk.metrics import Midpoint, layer_midpoint
from walknoise.walk.plan import Plan
from walknoise.walk.refine import midpoint_values
from walknoise.walk.stream import CHECKPOINT_EVERY
from walknoise.walk.trainphase import TrainPhase
from walknoise.walk.weights import weight_hists, weight_stats

EVAL, TRAIN = "layer_done", "trained_layer_done"  # the done flag of each kind of cell


@dataclass(frozen=True)
class LayerTask:
    """All cells of one entry of the layer axis, of one phase."""

    index: int
    """Position on the layer axis."""
    layer: str
    flag: str
    """``layer_done`` (eval-only cells) or ``trained_layer_done`` (train phase)."""


@dataclass
class LayerDone:
    """A finished task: the layer's values and the layer-less values it rewrites."""

    task: LayerTask
    values: dict[str, Any]
    whole: dict[str, Any] = field(default_factory=dict)


@dataclass
class LayerWork:
    """Everything needed to compute any layer of one scan; what a worker receives."""

    model: nn.Module
    plan: Plan
    trainer: TrainPhase | None = None
    threads: int | None = None
    """Intra-op threads for a worker process (``None``: leave torch's choice)."""
    checkpoints: Path | None = None
    """Folder of the eval grid's partial sums (next to the results file), or ``None``."""
    checkpoint_every: int = CHECKPOINT_EVERY
    """Batches between checkpoints of the partial sums."""
    on_clean: Callable[[Clean], Plan] | None = field(default=None, repr=False)
    """In this process only: take the clean reference from the grid's pass and complete the
    plan with it (``walknoise.walk.evaluate.eval_layers``)."""
    progress: Callable[[float], None] | None = field(default=None, repr=False)
    """Cells finished, reported per batch of an eval layer; in this process only (a copy
    shipped to a worker leaves it behind, so those layers count when they arrive)."""

    def portable(self, threads: int | None = None) -> LayerWork:
        """A copy to ship to another process: tensors on the CPU; the worker picks its device
        (a SLURM job may have the GPU that the submitting machine lacks)."""
        cpu = torch.device("cpu")  # a streamed source ships as its recipe
        plan = dataclasses.replace(self.plan, batches=self.plan.batches.on(cpu), device=cpu)
        trainer = self.trainer
        if trainer is not None:
            trainer = dataclasses.replace(
                trainer,
                device=torch.device("cpu"),
                clean={r: _on_cpu(m) for r, m in trainer.clean.items()},
            )
        return dataclasses.replace(
            self, model=_on_cpu(self.model), plan=plan, trainer=trainer, threads=threads,
            progress=None, on_clean=None,
        )  # fmt: skip

    def localized(self) -> LayerWork:
        """In the worker: move everything to the device ``spec.device`` names here."""
        device = resolve_device(self.plan.spec.device)
        if device.type == "cpu":
            return self
        plan = dataclasses.replace(self.plan, batches=self.plan.batches.on(device), device=device)
        trainer = self.trainer and dataclasses.replace(self.trainer, device=device)
        return dataclasses.replace(self, model=self.model.to(device), plan=plan, trainer=trainer)


def _on_cpu(model: nn.Module) -> nn.Module:
    if all(t.device.type == "cpu" for t in model.state_dict().values()):
        return model  # pickling copies it anyway
    return copy.deepcopy(model).cpu()


def compute_layer(work: LayerWork, task: LayerTask) -> LayerDone:
    """The cells of one task, computed here."""
    (done,) = compute_tasks(work, [task])
    return done


def compute_tasks(work: LayerWork, tasks: Sequence[LayerTask]) -> Iterator[LayerDone]:
    """The cells of ``tasks``, computed here, each task as soon as it is done: the eval
    tasks together (one pass over the data for all of them), then the train tasks."""
    evals = {t.layer: t for t in tasks if t.flag == EVAL}
    with model_errors():  # the user's model runs here: its failures are one line
        if evals:
            found = eval_layers(
                work.model, work.plan, list(evals), work.trainer, work.progress,
                work.checkpoints, work.checkpoint_every, work.on_clean,
            )  # fmt: skip
            for layer, values in found:
                yield LayerDone(evals[layer], values)
        for task in tasks:
            if task.flag == TRAIN:
                assert work.trainer is not None
                yield LayerDone(task, *_train_layer(work.plan, task.layer, work.trainer))


def _midpoint(
    plan: Plan, acc: np.ndarray, clean: float, sigmas: np.ndarray | None = None
) -> Midpoint:
    chance = 1.0 / plan.clean.num_classes
    grid = np.asarray(plan.spec.sigmas) if sigmas is None else sigmas
    return layer_midpoint(grid, acc, clean, chance)


def _clean_accuracies(plan: Plan, trainer: TrainPhase) -> list[float]:
    return [trainer.clean_accuracy(r) for r in range(plan.spec.repeats)]


def _train_layer(
    plan: Plan, layer: str, trainer: TrainPhase
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train-phase cells of one entry, and the clean reference of every seed."""
    spec = plan.spec
    values: dict[str, Any] = trainer.run_layer(
        layer, plan.points_of(layer), spec.sigmas, spec.repeats, plan.scales_of(layer)
    )
    clean = np.asarray(_clean_accuracies(plan, trainer))
    values["trained_accuracy_drop"] = clean[None, :] - values["trained_accuracy"]
    mid = _midpoint(plan, values["trained_accuracy"], float(clean.mean()))
    values |= midpoint_values(mid, "trained_")  # not refined: each σ is a training
    return values, _clean_reference(plan, trainer, clean)


def _clean_reference(plan: Plan, trainer: TrainPhase, clean: np.ndarray) -> dict[str, Any]:
    """Per-seed clean-model values (no layer axis): the same for every layer, so rewritten
    with each, which keeps a resumed file complete whichever layer finished last."""
    models = [trainer.clean_model(r) for r in range(plan.spec.repeats)]
    out: dict[str, Any] = {"clean_model_accuracy": clean}
    stats = [weight_stats(m, plan.params) for m in models]
    for name in stats[0]:
        out["clean_" + name] = np.array([s[name] for s in stats])
    out["clean_weight_hist"] = np.array([weight_hists(m, plan.params) for m in models])
    out["init_weight_kurtosis"] = np.array(
        [trainer.init_kurtosis(r, plan.params) for r in range(plan.spec.repeats)]
    )
    return out
