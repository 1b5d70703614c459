"""``walknoise.scan``: plan a walk, run it layer by layer, keep each finished layer on disk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from torch import nn
from tqdm.auto import tqdm

from walknoise import store
from walknoise.data import resolve_data
from walknoise.lock import locks_output
from walknoise.metrics import BatchStats, layer_midpoint
from walknoise.noise import make_noise
from walknoise.plan import Plan, make_plan, prepare, resolve_device, widest_after
from walknoise.result import Result
from walknoise.runner import LayerRunner
from walknoise.search import find_midpoint
from walknoise.spec import ScanSpec, parse_sigmas
from walknoise.train_schema import MAX_VISITS
from walknoise.training import TrainConfig
from walknoise.trainphase import TrainPhase
from walknoise.weights import weight_hists, weight_stats

__all__ = ["resolve_device", "run_spec", "scan"]


def scan(
    model: nn.Module,
    data: Any = "mnist",
    *,
    noise: str = "additive",
    sigmas: str | Sequence[float] = "log:1e-2:1e3:31",
    layers: Sequence[str] | None = None,
    repeats: int = 5,
    output: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    command: str | None = None,
    **options: Any,
) -> Result:
    """Evaluate ``model`` with noise at each layer (and all at once) over a σ grid.

    ``data`` is a name (``"mnist"``), an ``(x, y)`` pair, a ``Dataset``/``DataLoader`` or a
    ``.pt``/``.npz`` path. Further ``options`` are ``ScanSpec`` fields (``ratio``, ``types``,
    ``relative``, ``include_global``, ``seed``, ``batch_size``, ``max_batch``, ``device``,
    ``phase``, ``train``, ``clamp``, ``train_data``). With ``output``, each finished layer is
    written at once and a rerun resumes.
    """
    grid = parse_sigmas(sigmas) if isinstance(sigmas, str) else tuple(float(s) for s in sigmas)
    if options.get("types") is not None:
        options["types"] = tuple(options["types"])
    train_source = options.get("train_data")
    if train_source is not None and not isinstance(train_source, str):
        train_source = resolve_data(train_source)  # in-memory data: its name goes in the spec
        options["train_data"] = train_source.name
    spec = ScanSpec(
        sigmas=grid,
        noise=noise,
        repeats=repeats,
        layers=tuple(layers) if layers else None,
        **options,
    )
    return run_spec(
        model,
        data,
        spec,
        output=output,
        overwrite=overwrite,
        progress=progress,
        command=command,
        train_data=train_source,
    )


@locks_output  # one writer per results file (walknoise/lock.py)
def run_spec(
    model: nn.Module,
    data: Any,
    spec: ScanSpec,
    *,
    output: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    command: str | None = None,
    train_data: Any = None,
) -> Result:
    """Run a ``ScanSpec`` (the CLI and ``scan`` both end here).

    ``train_data`` overrides ``spec.train_data`` with data that has no name to store.
    """
    plan = make_plan(model, data, spec)
    path = Path(output) if output else None
    ds = prepare(plan, path, overwrite, command)
    trainer = _trainer(model, plan, train_data) if plan.train_phase else None
    cells_per_layer = spec.repeats * len(spec.sigmas)
    todo = _todo(ds, plan)
    with tqdm(
        total=len(todo) * cells_per_layer, unit="cell", disable=not progress, desc="scan"
    ) as bar:
        for i, done_flag in todo:
            layer = plan.axis[i]
            bar.set_postfix_str(f"{layer} ({'train' if done_flag.startswith('t') else 'eval'})")
            whole: dict[str, Any] = {}
            if done_flag == "layer_done":
                values = _eval_layer(model, plan, layer, trainer)
            else:
                assert trainer is not None
                values, whole = _train_layer(plan, layer, trainer)
            if path is not None:
                store.write_layer(path, i, values, done=done_flag, whole=whole)
            _update(ds, i, values, done_flag, whole)
            bar.update(cells_per_layer)
    return Result(ds)


def _todo(ds: xr.Dataset, plan: Plan) -> list[tuple[int, str]]:
    flags = (["layer_done"] if plan.eval_phase else []) + (
        ["trained_layer_done"] if plan.train_phase else []
    )
    return [(i, f) for f in flags for i, done in enumerate(ds[f].values) if not done]


def _update(
    ds: xr.Dataset, i: int, values: dict[str, Any], done_flag: str, whole: dict[str, Any]
) -> None:
    for name, value in values.items():
        ds[name][i] = value
    for name, value in whole.items():
        ds[name][...] = value
    ds[done_flag][i] = 1


def _trainer(model: nn.Module, plan: Plan, train_data: Any) -> TrainPhase:
    spec = plan.spec
    return TrainPhase(
        template=model,
        train_data=resolve_data(train_data or spec.train_data or "mnist:train"),
        test=plan.data,
        noise=make_noise(spec.noise, spec.ratio),
        config=TrainConfig(**(spec.train or {})),
        seed=spec.seed,
        clamp=spec.clamp,
        batch_size=spec.batch_size,
        device=plan.device,
    )


def _eval_layer(
    model: nn.Module, plan: Plan, layer: str, trainer: TrainPhase | None
) -> dict[str, Any]:
    """Eval-only cells: the given model, or with a train phase the clean model of each seed."""
    spec = plan.spec
    if spec.midpoint_search:
        return _search_layer(model, plan, layer)
    acc, loss, nonfin = (np.full((len(spec.sigmas), spec.repeats), np.nan) for _ in range(3))
    clean = plan.clean.accuracy
    for r in range(spec.repeats):
        net = model if trainer is None else trainer.clean_model(r).to(plan.device)
        runner = _runner(net, plan)
        stats: BatchStats = runner.run_repeat(
            layer, plan.points_of(layer), plan.scales_of(layer), spec.seed, r
        )
        acc[:, r], loss[:, r] = stats.accuracy(), stats.mean_loss()
        nonfin[:, r] = stats.nonfinite_fraction()
    if trainer is not None:
        clean = float(np.mean(_clean_accuracies(plan, trainer)))
    mid = _midpoint(plan, acc, clean)
    return {
        "accuracy": acc,
        "accuracy_drop": clean - acc,
        "loss": loss,
        "nonfinite_fraction": nonfin,
        "midpoint": mid.value,
        "midpoint_status": mid.status,
        "midpoint_low": mid.low,
        "midpoint_high": mid.high,
        "midpoint_per_repeat": mid.per_repeat,
        "layer_scale": plan.scales.get(layer, float("nan")),
    }


def _search_layer(model: nn.Module, plan: Plan, layer: str) -> dict[str, Any]:
    """The midpoint by adaptive search: only the σ values it visits are evaluated."""
    spec, points, scales = plan.spec, plan.points_of(layer), plan.scales_of(layer)

    def probe(sigma: float) -> np.ndarray:
        runner = _runner(model, plan, (sigma,))
        return np.array(
            [
                runner.run_repeat(layer, points, scales, spec.seed, r).accuracy()[0]
                for r in range(spec.repeats)
            ]
        )

    found = find_midpoint(
        probe,
        min(spec.sigmas),
        max(spec.sigmas),
        plan.clean.accuracy,
        1.0 / plan.clean.num_classes,
        rtol=spec.rtol,
        max_evals=MAX_VISITS,
    )
    sigmas = np.full(MAX_VISITS, np.nan)
    acc = np.full((MAX_VISITS, spec.repeats), np.nan)
    sigmas[: len(found.sigmas)] = found.sigmas
    acc[: len(found.accuracy)] = found.accuracy
    return {
        "midpoint": found.value,
        "midpoint_status": found.status,
        "search_sigma": sigmas,
        "search_accuracy": acc,
        "search_visits": len(found.sigmas),
        "layer_scale": plan.scales.get(layer, float("nan")),
    }


def _runner(model: nn.Module, plan: Plan, sigmas: Sequence[float] | None = None) -> LayerRunner:
    return LayerRunner(
        model,
        plan.x,
        plan.y,
        make_noise(plan.spec.noise, plan.spec.ratio),
        plan.spec.sigmas if sigmas is None else sigmas,
        batch_size=plan.spec.batch_size,
        max_batch=plan.spec.max_batch,
        widths=widest_after(plan.found),
    )


def _midpoint(plan: Plan, acc: np.ndarray, clean: float) -> Any:
    chance = 1.0 / plan.clean.num_classes
    return layer_midpoint(np.asarray(plan.spec.sigmas), acc, clean, chance)


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
    values |= {
        "trained_midpoint": mid.value,
        "trained_midpoint_status": mid.status,
        "trained_midpoint_low": mid.low,
        "trained_midpoint_high": mid.high,
    }
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
    return out
