"""``walknoise.scan``: plan a walk, run its layers on an executor, keep each finished layer.

The driver is the results file's only writer: executors (``walknoise.walk.executors``) compute
layers wherever they run and hand them back; each one is written as it arrives.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import xarray as xr
from torch import nn

from walknoise.data import Normalization, data_normalization, is_mnist, resolve_data
from walknoise.devices import resolve_device
from walknoise.errors import WalknoiseError
from walknoise.io.lock import locks_output
from walknoise.noise.kinds import make_noise
from walknoise.sources import InMemory, Source, open_source
from walknoise.training import TrainConfig
from walknoise.types import Device, ExecutorName, NoiseKind, ScanPhase
from walknoise.walk.cells import LayerWork
from walknoise.walk.clean import Clean
from walknoise.walk.collect import count, every_eval, run_all, todo
from walknoise.walk.executors import Executor, Serial, make_executor
from walknoise.walk.output import OutputKey, selecting_output
from walknoise.walk.plan import Plan, complete, make_plan, prepare
from walknoise.walk.result import Result
from walknoise.walk.spec import ScanSpec, parse_sigmas, split_names
from walknoise.walk.stream import CHECKPOINT_EVERY
from walknoise.walk.trainphase import TrainPhase

__all__ = ["resolve_device", "run_spec", "scan"]

log = logging.getLogger("walknoise")


def scan(
    model: nn.Module,
    data: Any = "mnist",
    *,
    noise: NoiseKind = "additive",
    sigmas: str | Sequence[float] = "log:1e-2:1e3:31",
    layers: str | Sequence[str] | None = None,
    repeats: int = 5,
    ratio: float = 0.5,
    types: str | Sequence[str] | None = None,
    include_global: bool = True,
    relative: bool = False,
    seed: int = 0,
    batch_size: int = 500,
    max_batch: int = 16384,
    device: Device = "cpu",
    phase: ScanPhase = "eval",
    train: dict[str, Any] | None = None,
    clamp: float | None = None,
    train_data: Any = None,
    normalize: str | Normalization = "none",
    midpoint_search: bool = False,
    rtol: float = 0.05,
    refine: bool = True,
    topk: int = 5,
    metric: str = "accuracy",
    dtype: str = "float32",
    extra: dict[str, object] | None = None,
    output_key: OutputKey = None,
    output: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    jobs: int = 1,
    executor: ExecutorName | Executor = "auto",
    checkpoint_every: int = CHECKPOINT_EVERY,
) -> Result:
    """Evaluate ``model`` with noise at each layer (and all at once) over a σ grid.

    Every keyword but the last six is a :class:`~walknoise.walk.spec.ScanSpec` field and
    takes its default; invalid values raise :class:`~walknoise.errors.WalknoiseError`.

    Args:
        model: The trained model to walk (left unchanged).
        data: Test data: a name (``"mnist"``), an ``(x, y)`` pair, a ``Dataset`` or
            ``DataLoader``, or a ``.pt``/``.npz`` path.
        noise: ``"additive"`` (y + σε), ``"multiplicative"`` (y(1 + σε)) or ``"combined"``.
        sigmas: The σ grid: ``"log:START:STOP:N"``, ``"lin:START:STOP:N"``, ``"0.1,1,10"``
            or a sequence of increasing positive numbers.
        layers: Points to scan: names or globs, as a list or comma-separated
            (``"conv*,fc1"``); ``None`` takes the default points.
        repeats: Independent noise draws per (layer, σ).
        ratio: ``combined`` only: σ_add = σ·ratio, σ_mul = σ·(1 − ratio), in [0, 1].
        types: Module class names to keep (``"Conv2d,Linear"``); ``None`` keeps all.
        include_global: Add the ``<global>`` entry: noise in every chosen point at once.
        relative: Scale σ by the std of each point's clean output (a noise-to-signal ratio).
        seed: Root seed of every (layer, repeat) generator.
        batch_size: Clean samples per batch; part of the random stream.
        max_batch: Most stacked samples (σ copies × batch) per forward pass: the memory
            budget; changing it changes no number.
        device: ``"cpu"``, ``"cuda"`` (or ``"cuda:N"``, a ``torch.device``) or ``"auto"``.
        phase: ``"eval"`` walks ``model``; ``"train"`` trains a fresh model per cell with
            the noise present; ``"both"`` does the two.
        train: Train phase: :class:`~walknoise.training.TrainConfig` fields (``epochs``,
            ``lr``, ``batch_size``, ``schedule``, ``weight_decay``).
        clamp: Train phase: clamp every weight to [-clamp, clamp] after each step.
        train_data: Train phase: the training data, in any form ``data`` takes
            (default ``"mnist:train"``).
        normalize: Input scaling of ``data`` and ``train_data``: ``"none"`` (as given;
            bundled MNIST in [0, 1]), ``"pm1"`` ((x - 0.5) / 0.5) or ``"standard"``
            (mean/std of ``train_data`` if given, of bundled MNIST's train split for
            ``"mnist"``, else of ``data``); recorded in the results file.
        midpoint_search: Find each layer's midpoint by an adaptive search in
            [σ_min, σ_max] instead of evaluating the whole grid (eval phase only).
        rtol: Midpoint precision, in (0, 1): each midpoint is pinned between two evaluated
            σ at most ``1 + rtol`` apart (by ``refine`` or the search).
        refine: Eval phase: evaluate extra σ inside the grid interval that holds each
            midpoint until it is within ``rtol``; ``False`` reports the grid bracket.
        topk: The k of the ``topk_accuracy`` variable (capped at the number of classes).
        metric: What drives the midpoint (eval phase): ``"accuracy"``, ``"topk"``,
            ``"agreement"`` (needs no labels), ``"kl"`` or ``"loss"``; each one's halfway
            target is in docs/concepts.md, "Metrics".
        dtype: Floating-point type of the noisy passes: ``"float32"``, ``"bfloat16"`` or
            ``"float16"`` (float32 where the device lacks native kernels; the file says
            which ran).
        extra: Free-form context recorded with the config in the results file.
        output_key: Where the logits are when the model returns more than a tensor: an
            index (``0`` for ``(logits, h)``), a key (``"logits"`` for a dict) or a
            callable taking the model's output and returning the logits.
        output: Results file: each finished layer is written at once, and a rerun of the
            same scan resumes.
        overwrite: Replace an ``output`` file written by a different scan.
        progress: Show a progress bar (moving per batch; per layer with worker processes
            or SLURM, which report whole layers).
        jobs: Worker processes computing layers (``-1``: one per core).
        checkpoint_every: With ``output``: batches between checkpoints of a pass's partial
            sums (in ``OUT.partial/``), so that a killed scan resumes within this many.
        executor: ``"auto"``, ``"serial"``, ``"joblib"`` or ``"slurm"``, or an executor
            from :mod:`walknoise.walk.executors`.

    Returns:
        The :class:`~walknoise.walk.result.Result` of the scan.
    """
    grid = parse_sigmas(sigmas) if isinstance(sigmas, str) else tuple(float(s) for s in sigmas)
    train_source = train_data
    if train_data is not None and not isinstance(train_data, str):
        train_source = resolve_data(train_data)  # in-memory data: its name goes in the spec
        train_data = train_source.name
    spec = ScanSpec(
        sigmas=grid,
        noise=noise,
        ratio=ratio,
        repeats=repeats,
        layers=split_names(layers),
        types=split_names(types),
        include_global=include_global,
        relative=relative,
        seed=seed,
        batch_size=batch_size,
        max_batch=max_batch,
        device=str(device),  # the spec is stored as JSON
        phase=phase,
        train=train,
        clamp=clamp,
        train_data=train_data,
        midpoint_search=midpoint_search,
        rtol=rtol,
        refine=refine,
        topk=topk,
        metric=metric,
        dtype=dtype,
        extra=extra or {},
        output_key=output_key,
    )
    return run_spec(
        model,
        data,
        spec,
        output=output,
        overwrite=overwrite,
        progress=progress,
        train_data=train_source,
        normalize=normalize,
        executor=make_executor(executor, jobs) if isinstance(executor, str) else executor,
        checkpoint_every=checkpoint_every,
    )


@locks_output  # one writer per results file (walknoise/io/lock.py)
def run_spec(
    model: nn.Module,
    data: Any,
    spec: ScanSpec,
    *,
    output: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    train_data: Any = None,
    normalize: str | Normalization = "none",
    executor: Executor | None = None,
    retries: int = 1,
    checkpoint_every: int = CHECKPOINT_EVERY,
) -> Result:
    """Run a ``ScanSpec`` (the CLI and ``scan`` both end here).

    ``train_data`` overrides ``spec.train_data`` with data that has no name to store. Layers
    whose job failed (SLURM) are submitted again up to ``retries`` times. ``normalize`` is
    applied to the test and training data alike (see :func:`scan`).
    """
    executor = executor or Serial()
    if checkpoint_every < 1:
        raise WalknoiseError(
            f"checkpoint_every={checkpoint_every}; pass a number of batches >= 1",
            argument="checkpoint_every",
        )
    data = _open(data, normalize, train_data or spec.train_data)  # the plan and the trainer
    # every pass sees the logits; the selector hook travels with the model to the workers;
    # the walk needs eval mode, and the caller gets the model back in its own modes
    path = Path(output) if output else None
    fused = _fuses(executor, data, spec, path, overwrite)
    with selecting_output(model, spec.output_key), kept_modes(model):
        plan = make_plan(model, data, spec, _planning_device(spec, executor), clean=not fused)
        files: list[xr.Dataset] = [] if fused else [prepare(plan, path, overwrite)]

        def on_clean(clean: Clean) -> Plan:  # the grid's pass measured the clean reference
            done = complete(plan, clean)
            files.append(prepare(done, path, overwrite))
            return done

        trainer = _trainer(model, plan, train_data) if plan.train_phase else None
        if trainer is not None and not isinstance(executor, Serial):
            for r in range(spec.repeats):  # trained once here, not once per worker
                trainer.clean_accuracy(r)
        work = LayerWork(
            model,
            plan,
            trainer,
            checkpoints=partial_folder(path),
            checkpoint_every=checkpoint_every,
            on_clean=on_clean if fused else None,
        )
        tasks = todo(files[0], plan) if files else every_eval(plan)
        failed = run_all(executor, work, tasks, lambda: files[0], path, progress, retries)
    folder = partial_folder(path)
    if not failed and folder is not None:  # every layer is in the file: no partial sums needed
        shutil.rmtree(folder, ignore_errors=True)
    if failed:
        where = f"finished layers are saved in {path}; " if path else ""
        raise WalknoiseError(
            f"{count(failed)} failed ({failed[0].message}); {where}"
            "run the same scan again to compute the rest"
        )
    return Result(files[0])


def _fuses(
    executor: Executor, data: Source, spec: ScanSpec, path: Path | None, overwrite: bool
) -> bool:
    """Whether the clean reference comes from the grid's own pass, so that streamed data is
    read once: a new eval scan in this process that needs no clean statistics before its
    first noisy pass (relative σ needs each point's clean std; the search needs the target)."""
    fresh = path is None or overwrite or not path.exists()
    return (
        isinstance(executor, Serial) and not isinstance(data, InMemory) and fresh
        and spec.phase == "eval" and not spec.relative and not spec.midpoint_search
    )  # fmt: skip


def partial_folder(path: Path | None) -> Path | None:
    """Where the partial sums of an unfinished pass over the data are kept: ``OUT.partial/``
    next to the results file ``OUT``."""
    return None if path is None else path.with_name(path.name + ".partial")


@contextmanager
def kept_modes(model: nn.Module) -> Iterator[None]:
    """Restore every submodule's ``training`` flag when the block ends, however it ends."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _open(data: Any, normalize: str | Normalization, train_data: Any) -> Source:
    """The test data as a source, normalised: ``"standard"`` with training data measures that,
    else the data itself (a streamed source with one pass of its own)."""
    if normalize == "standard" and train_data is None and not is_mnist(data):
        return open_source(data, normalize="standard")
    return open_source(data, normalize=data_normalization(normalize, data, train_data))


def _planning_device(spec: ScanSpec, executor: Executor) -> torch.device | None:
    """Where the driver plans: the spec's device, or the CPU when only the remote jobs
    have it (a login node without GPUs submitting to GPU nodes)."""
    if executor.remote and spec.device != "cpu":
        try:
            resolve_device(spec.device)
        except WalknoiseError:
            return torch.device("cpu")
    return None


def _trainer(model: nn.Module, plan: Plan, train_data: Any) -> TrainPhase:
    spec = plan.spec
    assert isinstance(plan.data, InMemory)  # the plan refuses a train phase on streamed data
    return TrainPhase(
        template=model,
        train_data=resolve_data(
            train_data or spec.train_data or "mnist:train", normalize=plan.data.normalization
        ),
        test=plan.data.data,
        noise=make_noise(spec.noise, spec.ratio),
        config=TrainConfig(**(spec.train or {})),
        seed=spec.seed,
        clamp=spec.clamp,
        batch_size=spec.batch_size,
        device=plan.device,
    )
