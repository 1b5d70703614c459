"""What a scan should do, kept apart from the code that runs it; JSON round-trip for the file."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from walknoise.errors import WalknoiseError
from walknoise.noise.kinds import KINDS, Combined
from walknoise.types import SCAN_PHASES, DeviceName, NoiseKind, ScanPhase
from walknoise.walk.metrics import METRICS
from walknoise.walk.output import OutputKey, check_key, key_label

# Fields that change how fast a scan runs but not a single number in it; a resumed scan may
# change them freely.
RUNTIME_FIELDS = ("device", "max_batch", "dtype")  # dtype: the plan records what ran
# Fields added after results files were first written, with their defaults: left out of the
# identity at their default, so that those files still resume.
NEW_FIELDS: dict[str, object] = {"topk": 5, "metric": "accuracy"}
# Most (σ, repeat) cells per layer: past it the preallocated grid alone needs gigabytes (and
# the scan would run for years), so it is refused up front instead of dying in MemoryError.
MAX_CELLS = 1_000_000
DTYPES = ("float32", "bfloat16", "float16")
INT64 = 2**63


@dataclass(frozen=True)
class ScanSpec:
    """A layer-wise noise scan: every (layer, σ, repeat) cell, evaluated in eval mode."""

    sigmas: tuple[float, ...]
    """Noise levels, positive and increasing."""
    noise: NoiseKind = "additive"
    """Noise kind: ``additive``, ``multiplicative`` or ``combined``."""
    ratio: float = 0.5
    """For ``combined``: σ_add = σ·ratio, σ_mul = σ·(1 − ratio) (Walking Noise's StdRatio)."""
    repeats: int = 5
    """Independent noise draws per (layer, σ); the spread of the curves comes from them."""
    layers: tuple[str, ...] | None = None
    """Names or globs of points to scan; ``None`` takes the default points."""
    types: tuple[str, ...] | None = None
    """Module class names to keep (e.g. ``Conv2d``); ``None`` keeps all."""
    include_global: bool = True
    """Add the ``<global>`` entry: noise in every chosen point at once."""
    relative: bool = False
    """Scale σ by the std of the point's clean output, so σ is a noise-to-signal ratio."""
    seed: int = 0
    """Root seed; each (layer, repeat) generator is seeded from (seed, layer, repeat)."""
    batch_size: int = 500
    """Clean samples per batch; part of the random stream, so it is part of the identity."""
    max_batch: int = 16384
    """Most stacked samples (σ copies × batch) in one forward pass: the memory budget."""
    device: DeviceName | str = "cpu"
    """``cpu``, ``cuda`` (or ``cuda:N``) or ``auto``."""
    phase: ScanPhase = "eval"
    """``eval``: walk the given model; ``train``: train a fresh model per cell with the noise
    present in training and evaluation; ``both``: the two, eval cells on the clean models."""
    train: dict[str, Any] | None = None
    """Train-phase settings (``TrainConfig`` fields: epochs, lr, batch_size, schedule,
    weight_decay); missing ones take the checkpoint's or the defaults."""
    clamp: float | None = None
    """Train phase: clamp every weight to [-clamp, clamp] after each step (growth control)."""
    train_data: str | None = None
    """Train phase: the training data (default ``mnist:train``)."""
    midpoint_search: bool = False
    """Find each layer's midpoint by an adaptive search in [σ_min, σ_max] instead of
    evaluating every σ of the grid (eval phase)."""
    rtol: float = 0.05
    """Midpoint precision: each midpoint is pinned between two evaluated σ whose ratio is
    at most ``1 + rtol`` (by the refinement, or the search's tolerance)."""
    refine: bool = True
    """Eval phase: after the grid, evaluate extra σ inside the grid interval that holds each
    layer's midpoint until it is within ``rtol`` (with the grid's common random numbers)."""
    topk: int = 5
    """The k of the ``topk_accuracy`` variable (capped at the number of classes)."""
    metric: str = "accuracy"
    """What drives the midpoint (eval phase): ``accuracy``, ``topk`` (top-k accuracy),
    ``agreement`` (with the clean model's predictions; needs no labels), ``kl`` (mean
    KL(p_clean ‖ p_noisy)) or ``loss``; see docs/concepts.md, "Metrics"."""
    dtype: str = "float32"
    """Floating-point type of the noisy forward passes: ``float32``, ``bfloat16`` or
    ``float16`` (autocast; the noise itself and the clean reference stay float32). Where the
    device has no native kernels for it, float32 runs and the file says so."""
    extra: dict[str, object] = field(default_factory=dict)
    """Free-form context recorded with the config (e.g. the data name)."""
    output_key: OutputKey = None
    """Where the logits are in the model's output: ``None`` (the output is the logits), an
    index, a key or attribute name, or a callable taking the output and returning them.
    The config records a callable as ``callable:module.qualname`` (its code is not stored)."""

    def __post_init__(self) -> None:
        check_sigmas(self.sigmas)
        check_key(self.output_key)
        if self.noise not in KINDS:
            raise WalknoiseError(
                f"unknown noise kind {self.noise!r}; choose one of {', '.join(KINDS)}",
                argument="noise",
            )
        if self.noise == "combined":
            Combined(self.ratio)  # validates the ratio
        if self.phase not in SCAN_PHASES:
            raise WalknoiseError(
                f"unknown phase {self.phase!r}; choose one of {', '.join(SCAN_PHASES)}",
                argument="phase",
            )
        self._check_search_and_clamp()
        self._check_metric()
        for name in ("repeats", "batch_size", "max_batch"):
            if getattr(self, name) < 1:
                raise WalknoiseError(
                    f"{name}={getattr(self, name)}; it must be at least 1", argument=name
                )
        if len(self.sigmas) * self.repeats > MAX_CELLS:
            raise WalknoiseError(
                f"{len(self.sigmas)} σ values × {self.repeats} repeats is more than "
                f"{MAX_CELLS:,} cells per layer; use fewer σ values or repeats"
            )
        if not -INT64 <= self.seed < INT64:  # the results file stores it as int64
            raise WalknoiseError(
                f"seed={self.seed} does not fit in 64 bits; use a smaller seed", argument="seed"
            )

    def _check_search_and_clamp(self) -> None:
        if self.midpoint_search and self.phase != "eval":
            raise WalknoiseError(
                f"midpoint_search=True needs phase='eval', not {self.phase!r}",
                argument="midpoint_search",
            )
        if (self.midpoint_search or self.refine) and not 0 < self.rtol < 1:
            raise WalknoiseError(
                f"rtol={self.rtol} is not in (0, 1); choose a relative tolerance such as 0.05",
                argument="rtol",
            )
        if self.clamp is not None and not self.clamp > 0:
            raise WalknoiseError(
                f"clamp={self.clamp}; it must be positive (or None for no clamp)",
                argument="clamp",
            )

    def _check_metric(self) -> None:
        if self.metric not in METRICS:
            raise WalknoiseError(
                f"unknown metric {self.metric!r}; choose one of {', '.join(METRICS)}",
                argument="metric",
            )
        if self.metric != "accuracy" and self.phase != "eval":
            raise WalknoiseError(
                f"metric={self.metric!r} needs phase='eval' (the train phase's midpoint is "
                "that of accuracy); use metric='accuracy' or phase='eval'",
                argument="metric",
            )
        if self.topk < 1:
            raise WalknoiseError(f"topk={self.topk}; it must be at least 1", argument="topk")
        if self.dtype not in DTYPES:
            raise WalknoiseError(
                f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}",
                argument="dtype",
            )

    @property
    def records_visits(self) -> bool:
        """Whether eval cells evaluate σ beyond the grid (search or refinement)."""
        return self.midpoint_search or (self.refine and self.phase != "train")

    def to_json(self) -> str:
        return json.dumps(self._plain(), sort_keys=True)

    def _plain(self) -> dict[str, Any]:
        """The fields as JSON-ready values (a callable ``output_key`` by its name)."""
        return asdict(replace(self, output_key=key_label(self.output_key)))

    @classmethod
    def from_json(cls, text: str) -> ScanSpec:
        raw = json.loads(text)
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in raw.items() if k in names}
        for key in ("sigmas", "layers", "types"):
            if kwargs.get(key) is not None:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    def identity(self) -> dict[str, object]:
        """The fields that decide every number of the scan (what resume must match)."""
        d = self._plain()
        for key in RUNTIME_FIELDS:
            d.pop(key)
        for key, default in NEW_FIELDS.items():  # files from before them resume
            if d[key] == default:
                d.pop(key)
        d["sigmas"] = list(d["sigmas"])
        return d


def split_names(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``"a,b , c"`` or ``["a", "b", "c"]`` -> ``("a", "b", "c")``; empty -> None."""
    if not value:
        return None
    parts = value.split(",") if isinstance(value, str) else value
    return tuple(v.strip() for v in parts if v.strip()) or None


def check_sigmas(sigmas: tuple[float, ...]) -> None:
    if len(sigmas) == 0:
        raise WalknoiseError(
            "the σ grid is empty; pass e.g. sigmas='log:1e-2:1e3:31'", argument="sigmas"
        )
    arr = np.asarray(sigmas, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise WalknoiseError(
            "σ values must be finite and positive (clean accuracy is measured separately); "
            f"got {list(sigmas)[:6]}",
            argument="sigmas",
        )
    if np.any(np.diff(arr) <= 0):
        raise WalknoiseError(
            "σ values must be strictly increasing, without duplicates", argument="sigmas"
        )


# The σ grids of Walking Noise, from the authors' sweep configs (UniHD-CEG/walking-noise,
# experiment_configs/MNIST/LeNet5_layer_wise_noise_experiment.yaml and
# mlp_layer_wise_noise_experiment.yaml: seml ``loguniform``/``uniform`` grids, i.e.
# np.logspace/np.linspace with ``num`` points). σ = 0 of their linear grid is left out: clean
# accuracy is measured apart. Values: (spec, points); ``NAME:N`` keeps the range and spacing
# rule with N points (the paper's counts mean one training per σ in the train phase).
PRESETS: dict[str, tuple[str, int]] = {
    "paper-additive": ("log:1e-2:1e8", 41),  # gauss_add: 4 per decade
    "paper-multiplicative": ("log:1:1e16", 65),  # gauss_mul_log_space: 4 per decade
    "paper-multiplicative-lin": ("lin:0.1:6", 60),  # gauss_mul: 0, 0.1, ..., 6 without 0
    "paper-combined": ("log:1e-2:1e10", 25),  # gauss_combined StdAmplitude: 2 per decade
}


def _preset(text: str) -> str:
    """``paper-additive`` -> ``log:1e-2:1e8:41``; ``paper-additive:9`` -> 9 points."""
    name, _, count = text.partition(":")
    if name not in PRESETS:
        return text
    spec, points = PRESETS[name]
    return f"{spec}:{count or points}"


def parse_sigmas(text: str) -> tuple[float, ...]:
    """Parse ``log:START:STOP:N``, ``lin:START:STOP:N``, a comma list ``0.1,1,10`` or a
    preset of the paper's grids (:data:`PRESETS`: ``paper-additive``, ``paper-multiplicative``,
    ``paper-multiplicative-lin``, ``paper-combined``; ``NAME:N`` for N points over the
    same range)."""
    text = _preset(text.strip())
    try:
        if text.startswith(("log:", "lin:")):
            kind, a, b, n = text.split(":")
            start, stop, num = float(a), float(b), int(n)
            if num > MAX_CELLS:  # before numpy tries to allocate it
                raise WalknoiseError(
                    f"σ range {text!r} asks for {num:,} values; use fewer", argument="sigmas"
                )
            if num < 1 or (not start < stop and num > 1):
                raise WalknoiseError(
                    f"σ range {text!r} needs START < STOP and N >= 1, e.g. 'log:1e-2:1e3:31'",
                    argument="sigmas",
                )
            if kind == "log":
                if start <= 0:
                    raise WalknoiseError(f"log σ range {text!r} needs START > 0", argument="sigmas")
                values = np.logspace(math.log10(start), math.log10(stop), num)
            else:
                values = np.linspace(start, stop, num)
        else:
            values = np.array(sorted(float(v) for v in text.split(",") if v.strip()))
    except ValueError:
        raise WalknoiseError(
            f"cannot parse σ spec {text!r}; use 'log:1e-2:1e3:31', 'lin:0.1:2:20', '0.1,1,10' "
            "or a preset such as 'paper-additive'",
            argument="sigmas",
        ) from None
    sigmas = tuple(float(v) for v in values)
    check_sigmas(sigmas)
    return sigmas
