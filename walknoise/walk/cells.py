"""One layer's cells, computed wherever an executor puts them.

``compute_layer(work, task)`` is a top-level function over plain, picklable data (the model,
the plan with its data, the train phase), so it runs alike in the driver, in a joblib worker
or in a SLURM job. It returns the layer's values and never touches the results file: the
driver (``walknoise.walk.driver``) is its only writer.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from walknoise.devices import resolve_device
from walknoise.noise.kinds import make_noise
from walknoise.walk.guard import model_errors
from walknoise.walk.layout import fast_layout
from walknoise.walk.metrics import NEEDS_CLEAN, BatchStats, Midpoint, Target, layer_midpoint
from walknoise.walk.plan import Plan, target_of, widest_after
from walknoise.walk.refine import Curve, midpoint_values, refine, visit_values
from walknoise.walk.runner import LayerRunner
from walknoise.walk.schema import MAX_VISITS
from walknoise.walk.search import Probe, Search, find_midpoint
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
        return LayerWork(_on_cpu(self.model), plan, trainer, threads)

    def localized(self) -> LayerWork:
        """In the worker: move everything to the device ``spec.device`` names here."""
        device = resolve_device(self.plan.spec.device)
        if device.type == "cpu":
            return self
        plan = dataclasses.replace(self.plan, batches=self.plan.batches.on(device), device=device)
        trainer = self.trainer and dataclasses.replace(self.trainer, device=device)
        return LayerWork(self.model.to(device), plan, trainer, self.threads)


def _on_cpu(model: nn.Module) -> nn.Module:
    if all(t.device.type == "cpu" for t in model.state_dict().values()):
        return model  # pickling copies it anyway
    return copy.deepcopy(model).cpu()


@model_errors()  # the user's model runs here: its failures are one line
def compute_layer(work: LayerWork, task: LayerTask) -> LayerDone:
    """The cells of one task, computed here."""
    if task.flag == EVAL:
        return LayerDone(
            task, _eval_layer(work.model, work.plan, task.layer, work.trainer, work.progress)
        )
    assert work.trainer is not None
    return LayerDone(task, *_train_layer(work.plan, task.layer, work.trainer))


def _eval_layer(
    model: nn.Module,
    plan: Plan,
    layer: str,
    trainer: TrainPhase | None,
    progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Eval-only cells: the given model, or with a train phase the clean model of each seed."""
    spec = plan.spec
    model = fast_layout(model, plan.batches.head(2))
    if spec.midpoint_search:
        return _search_layer(model, plan, layer)
    names = ("accuracy", "loss", "nonfinite_fraction", "topk_accuracy", "agreement", "kl")
    grid = {k: np.full((len(spec.sigmas), spec.repeats), np.nan) for k in names}
    acc, target = grid["accuracy"], target_of(spec.metric, plan.clean)
    nets = [
        model
        if trainer is None
        else fast_layout(trainer.clean_model(r).to(plan.device), plan.batches.head(2))
        for r in range(spec.repeats)
    ]
    for r, net in enumerate(nets):
        runner = _runner(net, plan, progress=progress)
        stats: BatchStats = runner.run_repeat(
            layer, plan.points_of(layer), plan.scales_of(layer), spec.seed, r
        )
        for k, v in zip(names, (*_LABELLED, *_FREE), strict=True):
            grid[k][:, r] = v(stats)
    if trainer is not None:  # the train phase's scans drive the midpoint by accuracy
        target = Target("accuracy", float(np.mean(_clean_accuracies(plan, trainer))), target.end)
    clean, chance = target.refs
    curve = Curve(np.asarray(spec.sigmas), target.falling(grid[_METRIC_VAR[spec.metric]]))
    if spec.refine:  # the midpoint to rtol, with extra σ inside its grid interval
        probe = _probe(plan, layer, nets, target)
        curve = refine(curve.sigmas, curve.accuracy, clean, chance, probe, rtol=spec.rtol)
    mid = layer_midpoint(curve.sigmas, curve.accuracy, clean, chance)
    return {
        **{k: grid[k] for k in names if k != "kl"},
        "kl_divergence": grid["kl"],
        "accuracy_drop": target.clean - acc if trainer is not None else plan.clean.accuracy - acc,
        **midpoint_values(mid),
        "midpoint_per_repeat": mid.per_repeat,
        **(visit_values(_unsigned(curve.visits, target), spec.repeats) if spec.refine else {}),
        "layer_scale": plan.scales.get(layer, float("nan")),
    }


# The eval variables, each read from a repeat's stats; the midpoint metric's variable.
_LABELLED = (BatchStats.accuracy, BatchStats.mean_loss, BatchStats.nonfinite_fraction)
_FREE = (BatchStats.topk_accuracy, BatchStats.agreement, BatchStats.mean_kl)
_METRIC_VAR = {"accuracy": "accuracy", "topk": "topk_accuracy", "agreement": "agreement",
               "kl": "kl", "loss": "loss"}  # fmt: skip


def _unsigned(found: Search, target: Target) -> Search:
    """The search path with the metric's own values (rising metrics were negated)."""
    return dataclasses.replace(found, accuracy=[target.falling(a) for a in found.accuracy])


def _probe(plan: Plan, layer: str, nets: Sequence[nn.Module], target: Target) -> Probe:
    """The midpoint metric of each repeat at one σ (falling: see ``Target``), with the grid's
    draws; repeat r runs on ``nets[r]``."""
    spec, points, scales = plan.spec, plan.points_of(layer), plan.scales_of(layer)
    extra = spec.metric in NEEDS_CLEAN  # else a probe's clean pass would be wasted

    def probe(sigma: float) -> np.ndarray:
        if all(net is nets[0] for net in nets):  # one model: the repeats stacked as copies
            return target.falling(
                _runner(nets[0], plan, (sigma,), extra=extra).run_repeats(
                    layer, points, scales, spec.seed, spec.repeats, spec.metric
                )
            )
        return target.falling(
            [
                _runner(net, plan, (sigma,), extra=extra)
                .run_repeat(layer, points, scales, spec.seed, r)
                .values(spec.metric)[0]
                for r, net in enumerate(nets)
            ]
        )

    return probe


def _search_layer(model: nn.Module, plan: Plan, layer: str) -> dict[str, Any]:
    """The midpoint by adaptive search: only the σ values it visits are evaluated."""
    spec = plan.spec
    target = target_of(spec.metric, plan.clean)
    found = find_midpoint(
        _probe(plan, layer, [model] * spec.repeats, target),
        min(spec.sigmas),
        max(spec.sigmas),
        *target.refs,
        rtol=spec.rtol,
        max_evals=MAX_VISITS,
    )
    found = _unsigned(found, target)
    return {
        "midpoint": found.value,
        "midpoint_status": found.status,
        "midpoint_bracket_low": found.low,
        "midpoint_bracket_high": found.high,
        **visit_values(found, spec.repeats),
        "layer_scale": plan.scales.get(layer, float("nan")),
    }


def _runner(
    model: nn.Module,
    plan: Plan,
    sigmas: Sequence[float] | None = None,
    progress: Callable[[float], None] | None = None,
    extra: bool = True,
) -> LayerRunner:
    """``extra``: also top-k, agreement and KL (one clean forward pass per batch more)."""
    return LayerRunner(
        model,
        plan.batches,
        make_noise(plan.spec.noise, plan.spec.ratio),
        plan.spec.sigmas if sigmas is None else sigmas,
        batch_size=plan.spec.batch_size,
        max_batch=plan.spec.max_batch,
        widths=widest_after(plan.found),
        progress=progress,
        topk=plan.clean.topk if extra else None,
    )


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
