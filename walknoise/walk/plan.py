"""Plan a scan: device, data, points, clean reference, identity, and the grid it fills."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import xarray as xr
from torch import nn

from walknoise.devices import native_dtype, resolve_device
from walknoise.errors import WalknoiseError
from walknoise.io.provenance import provenance
from walknoise.noise.inject import NOISE_STREAM
from walknoise.noise.points import GLOBAL, INPUT, Point, select, survey
from walknoise.sources import InMemory, Source, open_source
from walknoise.walk import store
from walknoise.walk.clean import Clean, Streamed, Tensors, batches_of, clean_pass
from walknoise.walk.guard import model_errors
from walknoise.walk.metrics import LABEL_METRICS, Target
from walknoise.walk.runner import entries
from walknoise.walk.schema import (
    HIST_BINS,
    MAX_VISITS,
    METRIC_VARIABLES,
    MIDPOINT_VARIABLES,
    SEARCH_VARIABLES,
    TRAIN_VARIABLES,
    TRAINED_MIDPOINT_VARIABLES,
)
from walknoise.walk.spec import ScanSpec
from walknoise.walk.weights import param_layers


def model_fingerprint(model: nn.Module) -> str:
    """sha256 over the state dict (names, dtypes, shapes, bytes): the model's identity."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


log = logging.getLogger("walknoise")

BELOW_CHANCE_P = 1e-3
"""Warn when a model this good or worse would be this rare if it guessed: one scan in a
thousand of a guessing model is warned about, any real bug much more surely."""


def below_chance(accuracy: float, n: int, classes: int) -> bool:
    """Whether ``accuracy`` on ``n`` samples is significantly below 1/``classes``: a
    one-sided binomial test (``P(X <= correct) < BELOW_CHANCE_P`` for X ~ Bin(n, 1/classes)),
    so a small test set missing chance by luck is not flagged."""
    if accuracy >= 1.0 / classes:  # every usable model: no test, no scipy import
        return False
    from scipy.special import bdtr  # the binomial CDF; scipy.stats would take ~1.5 s to import

    return bool(bdtr(round(accuracy * n), n, 1.0 / classes) < BELOW_CHANCE_P)


def _warn_below_chance(clean: Clean, n: int) -> None:
    if below_chance(clean.accuracy, n, clean.num_classes):
        log.warning(
            "clean accuracy %.4f on %d samples is below chance %.3g (%d classes, binomial "
            "p < %g): the labels may be permuted, the inputs normalised differently than in "
            "training, or the model made for other data",
            clean.accuracy,
            n,
            1.0 / clean.num_classes,
            clean.num_classes,
            BELOW_CHANCE_P,
        )


FINGERPRINTS = {"data": "data_sha256", "model": "model_sha256"}
"""What a results file was computed from, by the identity key holding its sha256."""


def target_of(metric: str, clean: Clean) -> Target:
    """The clean value and the end value of ``metric`` on this model and data (see
    :class:`Target`); refused where the two coincide, which leaves no midpoint to find."""
    classes = clean.num_classes
    clean_value, end = {
        "accuracy": (clean.accuracy, 1.0 / classes),
        "topk": (clean.topk_accuracy, clean.topk / classes),
        "agreement": (1.0, 1.0 / classes),
        "kl": (0.0, clean.kl_uniform),
        "loss": (clean.loss, math.log(classes)),
    }[metric]
    if metric == "topk" and clean.topk >= classes:
        raise WalknoiseError(
            f"topk={clean.topk} with {classes} classes: every label is in the top k, so "
            "top-k accuracy never falls; choose a smaller topk",
            argument="topk",
        )
    return Target(metric, float(clean_value), float(end))


def _check_trainable(td: Source, spec: ScanSpec) -> None:
    """The train phase evaluates every trained model on data held in memory."""
    if spec.phase != "eval" and not isinstance(td, InMemory):
        raise WalknoiseError(
            f"{td.name} is streamed from disk, and phase={spec.phase!r} needs its test data "
            "in memory; pass a .pt/.npz file, or phase='eval'",
            argument="phase",
        )


def _check_labelled(td: Source, spec: ScanSpec) -> None:
    """Data without labels can drive only a label-free midpoint, and train nothing."""
    if td.labelled:
        return
    if spec.phase != "eval":
        raise WalknoiseError(
            f"{td.name} has no labels, and phase={spec.phase!r} trains on the noise; "
            "pass labelled data, or phase='eval'",
            argument="phase",
        )
    if spec.metric in LABEL_METRICS:
        raise WalknoiseError(
            f"{td.name} has no labels, which metric={spec.metric!r} needs; pass labels "
            "(an (x, y) pair) or choose metric='agreement' or metric='kl'",
            argument="metric",
        )


def widest_after(points: Sequence[Point]) -> dict[str, int]:
    """Per point, the largest per-sample activation from it to the output (forward order)."""
    widest, out = 1, {}
    for p in reversed(points):
        widest = max(widest, math.prod(p.shape))
        out[p.name] = widest
    return out


@dataclass
class Plan:
    """Everything decided before the first cell runs."""

    spec: ScanSpec
    device: torch.device
    data: Source
    """The test data: its name, normalisation and length (and how to read it)."""
    batches: Tensors | Streamed
    """The data as the runner reads it: in memory on the device, or streamed."""
    found: list[Point]
    chosen: list[str]
    axis: list[str]
    clean: Clean
    scales: dict[str, float]
    identity: dict[str, Any]
    params: list[str]
    compute_dtype: str = "float32"
    """What the noisy passes run in: ``spec.dtype`` where the device has it natively."""

    def points_of(self, layer: str) -> list[str]:
        return self.chosen if layer == GLOBAL else [layer]

    def scales_of(self, layer: str) -> list[float]:
        return [self.scales[p] for p in self.points_of(layer)]

    @property
    def train_phase(self) -> bool:
        return self.spec.phase in ("train", "both")

    @property
    def eval_phase(self) -> bool:
        return self.spec.phase in ("eval", "both")


@model_errors()  # the user's model runs here: its failures are one line
def make_plan(
    model: nn.Module,
    data: Any,
    spec: ScanSpec,
    device: torch.device | None = None,
    clean: bool = True,
) -> Plan:
    """``device`` overrides ``spec.device`` here (workers elsewhere still use the spec's).
    ``clean=False`` leaves the clean reference to the grid's pass (see :func:`complete`);
    the plan then knows only the number of classes."""
    device = device or resolve_device(spec.device)
    td = data if isinstance(data, Source) else open_source(data)
    _check_labelled(td, spec)
    _check_trainable(td, spec)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    model.to(device).eval()
    batches = batches_of(td, device, dtype)
    points = survey(model, td.input_shape, device)
    found = points.points
    chosen = [p.name for p in select(found, spec.layers, spec.types, points.skipped)]
    if clean:
        reference = clean_pass(model, batches, chosen, spec.batch_size, spec.topk)
        target_of(spec.metric, reference)  # a metric without a midpoint fails before any cell
        if spec.phase != "train" and td.labelled:  # a train phase's model may be a template
            _warn_below_chance(reference, len(td))
    else:
        with torch.inference_mode():
            classes = int(model(batches.head(1)).shape[-1])
        reference = Clean(math.nan, math.nan, classes, {}, topk=min(spec.topk, classes))
        target_of(spec.metric, reference)  # the checks that need only the classes
    scales = {p: (reference.output_std[p] if spec.relative else 1.0) for p in chosen}
    compute = native_dtype(spec.dtype, device)
    if compute != spec.dtype:
        log.warning("%s has no native %s kernels: the scan runs in float32", device, spec.dtype)
    # The data and the model by content, not by name: a resume on other samples of the same
    # size (or other weights) must be refused, and a renamed copy of the same file may resume.
    identity = {
        **spec.identity(),
        "model_sha256": model_fingerprint(model),
        "data_sha256": td.identity(),
        "data_normalization": td.normalization.kind,
        "n_samples": len(td),
        "noise_stream": NOISE_STREAM,
        **({"compute_dtype": compute} if compute != "float32" else {}),
    }
    axis = entries(chosen, spec.include_global)
    return Plan(
        spec,
        device,
        td,
        batches,
        found,
        chosen,
        axis,
        reference,
        scales,
        identity,
        param_layers(model) if spec.phase != "eval" else [],
        compute,
    )


def complete(plan: Plan, clean: Clean) -> Plan:
    """``plan`` with the clean reference its grid's pass measured (``make_plan(clean=False)``)."""
    target_of(plan.spec.metric, clean)
    if plan.data.labelled:
        _warn_below_chance(clean, len(plan.data))
    return dataclasses.replace(plan, clean=clean)


def attrs(plan: Plan) -> dict[str, Any]:
    spec, clean = plan.spec, plan.clean
    target = target_of(spec.metric, clean)
    runtime = {"device": spec.device, "max_batch": spec.max_batch}
    config = {"identity": plan.identity, "runtime": runtime}
    return {
        **provenance(store.FORMAT, store.FORMAT_VERSION, "walknoise layer-wise noise scan", config),
        "model_sha256": plan.identity["model_sha256"],
        "data_sha256": plan.identity["data_sha256"],
        "data": plan.data.name,
        **plan.data.normalization.attrs(),  # data_normalization and its mean/std
        "n_samples": len(plan.data),
        "phase": spec.phase,
        "noise": spec.noise,
        "noise_ratio": spec.ratio if spec.noise == "combined" else float("nan"),
        "sigma_mode": "relative" if spec.relative else "absolute",
        "seed": spec.seed,
        "clean_accuracy": clean.accuracy,
        "clean_loss": clean.loss,
        "num_classes": clean.num_classes,
        "chance_accuracy": 1.0 / clean.num_classes,
        "topk": clean.topk,
        "clean_topk_accuracy": clean.topk_accuracy,
        "clean_kl_uniform": clean.kl_uniform,
        "midpoint_metric": spec.metric,
        "compute_dtype": plan.compute_dtype,
        "midpoint_reference": target.clean,
        "midpoint_end": target.end,
        **({"param_layer_of": json.dumps(param_layer_of(plan))} if plan.params else {}),
    }


def param_layer_of(plan: Plan) -> dict[str, str]:
    """Per chosen point, the last parametrised layer at or before it in execution order: the
    layer whose weights set the scale of what the noise there is added to (none for the input)."""
    owner: str | None = None
    found: dict[str, str] = {}
    for point in plan.found:
        owner = point.name if point.name in plan.params else owner
        if owner is not None and point.name in plan.chosen:
            found[point.name] = owner
    return found


def _types(model_points: Sequence[Point], axis: Sequence[str]) -> list[str]:
    types = {p.name: p.type for p in model_points}
    return [types.get(n, "Global") for n in axis]


def variable_names(plan: Plan) -> list[str]:
    names = list(store.VARIABLES)
    names += list(MIDPOINT_VARIABLES)
    if plan.eval_phase:
        names += list(METRIC_VARIABLES)
    if plan.train_phase:
        names += list(TRAIN_VARIABLES) + list(TRAINED_MIDPOINT_VARIABLES)
    if plan.spec.records_visits:
        names += list(SEARCH_VARIABLES)
    return names


def prepare(plan: Plan, path: Path | None, overwrite: bool) -> xr.Dataset:
    """The in-memory grid: fresh, or the finished layers of a file being resumed."""
    coords: dict[str, Any] = {
        "layer": plan.axis,
        "sigma": list(plan.spec.sigmas),
        "repeat": list(range(plan.spec.repeats)),
    }
    if plan.train_phase:
        coords |= {"param_layer": plan.params, "bin": list(range(HIST_BINS))}
        coords["test_sigma"] = [0.0, *plan.spec.sigmas]  # the train-σ × test-σ matrix
    if plan.spec.records_visits:
        coords["visit"] = list(range(MAX_VISITS))
    types = _types(plan.found, plan.axis)
    if path is not None and path.exists() and not overwrite:
        _check_same(path, plan.identity)
        return store.read(path)
    if path is None:
        return store.empty(coords, types, attrs(plan), variable_names(plan))
    return store.create(path, coords, types, attrs(plan), variable_names(plan))


def _check_same(path: Path, identity: dict[str, Any]) -> None:
    stored = store.config_of(store.read_header(path))
    _check_fingerprints(path, stored, identity)
    wanted = json.loads(json.dumps(identity))
    if stored != wanted:
        diff = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        raise WalknoiseError(
            f"{path} holds a scan with a different config (differs in: {', '.join(diff)}); "
            "pass overwrite=True to replace it, or choose another output path",
            argument="overwrite",
        )


def _check_fingerprints(path: Path, stored: dict[str, Any], identity: dict[str, Any]) -> None:
    """Refuse to resume a file computed from other data or another model, naming which."""
    changed = [
        f"{'a different model' if what == 'model' else 'different data'} "
        f"({_data_change(stored, identity) if what == 'data' else ''}"
        f"sha256 {_short(stored.get(key))} in the file, {_short(identity[key])} now)"
        for what, key in FINGERPRINTS.items()
        if stored.get(key) != identity[key]
    ]
    if changed:
        raise WalknoiseError(
            f"{path} was computed from {' and '.join(changed)}; pass overwrite=True to start "
            "over, or choose another output path",
            argument="overwrite",
        )


def _data_change(stored: dict[str, Any], identity: dict[str, Any]) -> str:
    """``normalised 'pm1' in the file, 'none' now; `` when the normalisations differ."""
    was, now = stored.get("data_normalization", "not recorded"), identity["data_normalization"]
    return f"normalised {was!r} in the file, {now!r} now; " if was != now else ""


def _short(digest: object) -> str:
    return digest[:12] if isinstance(digest, str) else "none recorded"


__all__ = ["INPUT", "Plan", "attrs", "make_plan", "prepare", "resolve_device"]
