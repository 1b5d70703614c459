"""Eval-phase cells of many layers at once: one pass over the data for the grid, then one
pass per round of the midpoint refinements (or searches), all layers' probes together.

``eval_layers(work, tasks)`` yields each layer's values as soon as its midpoint is found. The
grid's partial sums are checkpointed while the pass runs (``walknoise.walk.stream``), and kept
once it is complete, so a scan killed during the refinement does not compute its grid again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from walknoise.noise.kinds import make_noise
from walknoise.walk.clean import Clean, clean_of
from walknoise.walk.layout import fast_layout
from walknoise.walk.lockstep import Lockstep
from walknoise.walk.metrics import NEEDS_CLEAN, BatchStats, Target, layer_midpoint
from walknoise.walk.plan import Plan, target_of, widest_after
from walknoise.walk.refine import Curve, midpoint_values, refine, visit_values
from walknoise.walk.runner import Group, LayerRunner, Probed
from walknoise.walk.schema import MAX_VISITS
from walknoise.walk.search import Probe, Search, find_midpoint
from walknoise.walk.stream import CHECKPOINT_EVERY, CLEAN, Checkpoint, Job, stream
from walknoise.walk.trainphase import TrainPhase

# The eval variables, each read from a repeat's stats; the midpoint metric's variable.
_NAMES = ("accuracy", "loss", "nonfinite_fraction", "topk_accuracy", "agreement", "kl")
_READ = (BatchStats.accuracy, BatchStats.mean_loss, BatchStats.nonfinite_fraction,
         BatchStats.topk_accuracy, BatchStats.agreement, BatchStats.mean_kl)  # fmt: skip
_METRIC_VAR = {"accuracy": "accuracy", "topk": "topk_accuracy", "agreement": "agreement",
               "kl": "kl", "loss": "loss"}  # fmt: skip


@dataclasses.dataclass
class Context:
    """What every layer of one call shares."""

    plan: Plan
    nets: list[nn.Module]
    """The model of each repeat: the scanned one, or the train phase's clean model per seed."""
    trainer: TrainPhase | None
    probed: dict[int, Probed] = dataclasses.field(default_factory=dict)
    """Per model, whether its samples mix and where σ copies fan out (probed once)."""

    @property
    def target(self) -> Target:
        """The midpoint metric's clean value and end (by accuracy in a train phase)."""
        spec, trainer = self.plan.spec, self.trainer
        target = target_of(spec.metric, self.plan.clean)
        if trainer is None:
            return target
        clean = float(np.mean([trainer.clean_accuracy(r) for r in range(spec.repeats)]))
        return Target("accuracy", clean, target.end)


def eval_layers(
    model: nn.Module,
    plan: Plan,
    layers: Sequence[str],
    trainer: TrainPhase | None = None,
    progress: Callable[[float], None] | None = None,
    checkpoints: Path | None = None,
    every: int = CHECKPOINT_EVERY,
    on_clean: Callable[[Clean], Plan] | None = None,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(layer, values)`` for each of ``layers``, in the order their midpoints are found.

    With ``checkpoints`` (a folder), the grid's sums are saved there every ``every`` batches
    and resumed from; the checkpoint is removed once every layer has been handed over. With
    ``on_clean``, the clean reference comes from the grid's own pass (the data is read once
    for both) and ``on_clean(clean)`` returns the plan completed with it.
    """
    ctx = _context(model, plan, trainer)
    if plan.spec.midpoint_search:
        yield from _searched(ctx, layers)
        return
    jobs = _grid_jobs(ctx, layers, progress)
    checkpoint = (
        Checkpoint.for_jobs(checkpoints, plan.identity, jobs, every) if checkpoints else None
    )
    clean = (jobs[0].runner, plan.spec.topk) if on_clean else None
    sums = stream(jobs, plan.batches, plan.spec.batch_size, checkpoint, clean=clean)
    if on_clean is not None:
        ctx.plan = on_clean(_clean_reference(ctx.nets[0], plan, sums.pop(CLEAN)))
    yield from _refined(ctx, layers, _grid(ctx, layers, sums))
    if checkpoint is not None:
        checkpoint.remove()


def _context(model: nn.Module, plan: Plan, trainer: TrainPhase | None) -> Context:
    spec, probe, dtype = plan.spec, plan.batches.head(2), _autocast_dtype(plan)
    # a pass holds at most a batch's copies and max_batch: time no more (a small dataset's
    # probe stays small)
    copies = min(spec.batch_size, len(plan.data)) * spec.repeats * len(spec.sigmas)
    most = min(copies, spec.max_batch)
    if trainer is None:
        nets = [fast_layout(model, probe, dtype, most)] * spec.repeats
    else:
        nets = [
            fast_layout(trainer.clean_model(r).to(plan.device), probe, dtype, most)
            for r in range(spec.repeats)
        ]
    return Context(plan, nets, trainer)


def _clean_reference(model: nn.Module, plan: Plan, sums: BatchStats) -> Clean:
    """The clean reference from the grid pass's clean sums (the classes from one sample)."""
    with torch.inference_mode():
        classes = int(model(plan.batches.head(1)).shape[-1])
    return clean_of(sums, classes, plan.spec.topk, {})


def _grid_jobs(
    ctx: Context, layers: Sequence[str], progress: Callable[[float], None] | None
) -> list[Job]:
    """One job per layer, every (repeat, σ) of the grid as copies of a batch, so that the
    layers before the point run once for all; one per (layer, repeat) where each repeat has
    a model of its own (the train phase's clean models)."""
    if _one_model(ctx):
        runner, repeats = _runner(ctx, ctx.nets[0], progress=progress), tuple(range(len(ctx.nets)))
        return [Job(layer, runner, _group(ctx.plan, layer, repeats)) for layer in layers]
    runners: dict[int, LayerRunner] = {}
    jobs = []
    for layer in layers:
        for r, net in enumerate(ctx.nets):
            if id(net) not in runners:
                runners[id(net)] = _runner(ctx, net, progress=progress)
            jobs.append(Job(f"{layer}|{r}", runners[id(net)], _group(ctx.plan, layer, (r,))))
    return jobs


def _one_model(ctx: Context) -> bool:
    """Whether every repeat evaluates the same model (its repeats then stack as copies)."""
    return all(net is ctx.nets[0] for net in ctx.nets)


def _repeat_sums(sums: Mapping[str, BatchStats], key: str, r: int, per: int) -> BatchStats:
    """Repeat ``r``'s sums: its own job's, or its rows of the stacked job ``key``."""
    if key in sums:
        return sums[key].rows(slice(r * per, (r + 1) * per))
    return sums[f"{key}|{r}"]


def _grid(
    ctx: Context, layers: Sequence[str], sums: Mapping[str, BatchStats]
) -> dict[str, dict[str, np.ndarray]]:
    """Every (layer, σ, repeat) cell's variables from the grid pass's sums."""
    spec = ctx.plan.spec
    grid = {}
    for layer in layers:
        values = {k: np.empty((len(spec.sigmas), spec.repeats)) for k in _NAMES}
        for r in range(spec.repeats):
            stats = _repeat_sums(sums, layer, r, len(spec.sigmas))
            for k, read in zip(_NAMES, _READ, strict=True):
                values[k][:, r] = read(stats)
        grid[layer] = values
    return grid


def _group(plan: Plan, layer: str, repeats: tuple[int, ...]) -> Group:
    points, scales = tuple(plan.points_of(layer)), tuple(plan.scales_of(layer))
    return Group(layer, points, scales, plan.spec.seed, repeats)


def _refined(
    ctx: Context, layers: Sequence[str], grid: Mapping[str, dict[str, np.ndarray]]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each layer's midpoint from its grid, refined to ``rtol`` with all layers in lockstep."""
    spec, target = ctx.plan.spec, ctx.target
    clean, chance = target.refs
    sigmas = np.asarray(spec.sigmas)

    def search(layer: str) -> Callable[[Probe], Curve]:
        curve = Curve(sigmas, target.falling(grid[layer][_METRIC_VAR[spec.metric]]))
        if not spec.refine:
            return lambda _probe: curve
        return lambda probe: refine(
            curve.sigmas, curve.accuracy, clean, chance, probe, rtol=spec.rtol
        )

    lock: Lockstep[Curve] = Lockstep(lambda asked: _probe_round(ctx, layers, asked))
    for i, curve in lock.run([search(layer) for layer in layers]):
        yield layers[i], _values(ctx, layers[i], grid[layers[i]], curve)


def _values(ctx: Context, layer: str, grid: dict[str, np.ndarray], curve: Curve) -> dict[str, Any]:
    plan, target = ctx.plan, ctx.target
    mid = layer_midpoint(curve.sigmas, curve.accuracy, *target.refs)
    clean = target.clean if ctx.trainer is not None else plan.clean.accuracy
    refined = visit_values(_unsigned(curve.visits, target), plan.spec.repeats)
    return {
        **{k: grid[k] for k in _NAMES if k != "kl"},
        "kl_divergence": grid["kl"],
        "accuracy_drop": clean - grid["accuracy"],
        **midpoint_values(mid),
        "midpoint_per_repeat": mid.per_repeat,
        **(refined if plan.spec.refine else {}),
        "layer_scale": plan.scales.get(layer, float("nan")),
    }


def _searched(ctx: Context, layers: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each midpoint by adaptive search in [σ_min, σ_max]: only the σ it visits are run."""
    spec, target = ctx.plan.spec, ctx.target

    def search(probe: Probe) -> Search:
        lo, hi = min(spec.sigmas), max(spec.sigmas)
        return find_midpoint(probe, lo, hi, *target.refs, rtol=spec.rtol, max_evals=MAX_VISITS)

    lock: Lockstep[Search] = Lockstep(lambda asked: _probe_round(ctx, layers, asked))
    for i, found in lock.run([search] * len(layers)):
        found = _unsigned(found, target)
        yield (
            layers[i],
            {
                "midpoint": found.value,
                "midpoint_status": found.status,
                "midpoint_bracket_low": found.low,
                "midpoint_bracket_high": found.high,
                **visit_values(found, spec.repeats),
                "layer_scale": ctx.plan.scales.get(layers[i], float("nan")),
            },
        )


def _probe_round(
    ctx: Context, layers: Sequence[str], asked: Mapping[int, float]
) -> dict[int, np.ndarray]:
    """The midpoint metric of every repeat at each asked (layer, σ), in one pass over the
    data, with the grid's draws (falling: see ``Target``)."""
    plan, spec = ctx.plan, ctx.plan.spec
    extra = spec.metric in NEEDS_CLEAN  # else each batch's clean pass would be wasted
    jobs = []
    for i, sigma in asked.items():
        layer = layers[i]
        if _one_model(ctx):  # the repeats as copies
            runner = _runner(ctx, ctx.nets[0], [sigma], extra=extra)
            jobs.append(Job(f"{i}", runner, _group(plan, layer, tuple(range(spec.repeats)))))
        else:
            for r, net in enumerate(ctx.nets):
                runner = _runner(ctx, net, [sigma], extra=extra)
                jobs.append(Job(f"{i}|{r}", runner, _group(plan, layer, (r,))))
    sums = stream(jobs, plan.batches, spec.batch_size)
    out = {}
    for i in asked:
        if f"{i}" in sums:
            values = sums[f"{i}"].values(spec.metric)
        else:
            values = np.array(
                [sums[f"{i}|{r}"].values(spec.metric)[0] for r in range(spec.repeats)]
            )
        out[i] = ctx.target.falling(values)
    return out


def _unsigned(found: Search, target: Target) -> Search:
    """The search path with the metric's own values (rising metrics were negated)."""
    return dataclasses.replace(found, accuracy=[target.falling(a) for a in found.accuracy])


def _runner(
    ctx: Context,
    model: nn.Module,
    sigmas: Sequence[float] | None = None,
    progress: Callable[[float], None] | None = None,
    extra: bool = True,
) -> LayerRunner:
    """``extra``: also top-k, agreement and KL (one clean forward pass per batch more).
    The runners of one model share what they probed about it."""
    plan = ctx.plan
    return LayerRunner(
        model,
        plan.batches,
        make_noise(plan.spec.noise, plan.spec.ratio),
        plan.spec.sigmas if sigmas is None else sigmas,
        batch_size=plan.spec.batch_size,
        max_batch=plan.spec.max_batch,
        widths=widest_after(plan.found),
        progress=progress,
        topk=plan.spec.topk if extra else None,  # capped at the classes where used
        probed=ctx.probed.setdefault(id(model), Probed()),
        dtype=_autocast_dtype(plan),
    )


def _autocast_dtype(plan: Plan) -> torch.dtype | None:
    """The dtype the noisy passes run in under autocast (``None``: the model's own)."""
    return None if plan.compute_dtype == "float32" else getattr(torch, plan.compute_dtype)
