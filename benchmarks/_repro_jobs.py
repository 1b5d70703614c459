"""The runs behind benchmarks/reproduce_walking_noise.py: profiles, jobs and how each runs.

Each job writes one results file (a ``walknoise.scan`` HDF5 file, or a JSON file for global
noise in training, which ``scan`` cannot train on its own) and is independent of the others,
so jobs run in parallel processes and an interrupted run resumes where it stopped. The
conditions follow the authors' code (UniHD-CEG/walking-noise); docs/reproduction.md lists
where they differ and why.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

import walknoise
from walknoise.data import resolve_data
from walknoise.models import build_model
from walknoise.noise.points import select, survey
from walknoise.training import TrainConfig, evaluate
from walknoise.walk.trainphase import train_under_noise

ARCHS = ("lenet5", "mlp")
RATIOS = (0.1, 0.5, 0.9)  # the authors' StdRatio choices without the extremes 0.01, 0.99
BATCH = 128  # data/MNIST.py of the authors: DataLoader batch_size 128


@dataclass(frozen=True)
class Profile:
    """One size of the reproduction; every field is a condition of the runs."""

    name: str
    """``quick`` or ``full``: the prefix of the JSON and figures."""
    epochs: dict[str, int]
    """Training epochs per architecture (the authors: LeNet-5 50, MLP 100)."""
    seeds: int
    """Independent trainings (seeds 0..seeds-1) per cell: the intervals come from them."""
    eval_sigmas: dict[str, str]
    """Eval-phase σ grid per noise kind (the authors' full grids or every n-th point)."""
    train_layers: dict[str, tuple[str, ...]]
    """Points trained under additive noise, per architecture (findings b, c)."""
    train_sigmas: str
    """σ of the additive train phase."""
    clamp_layers: dict[str, tuple[str, ...]]
    """Points trained with clamped weights (±1 as the authors, and at the clean max|w|)."""
    clamp_sigmas: str
    """σ of the clamped train phase."""
    mult_layers: dict[str, tuple[str, ...]]
    """Points trained under multiplicative noise (finding d)."""
    mult_sigmas: str
    """σ of the multiplicative train phase (the authors' grid reaches 1e16)."""
    combined_layer: dict[str, str]
    """The point trained under combined noise at each ratio."""
    combined_sigmas: str
    """σ amplitudes of the combined train phase (σ_add = σ·ratio, σ_mul = σ·(1 − ratio))."""
    global_sigmas: dict[str, str]
    """σ of training with noise at every point at once, per noise kind."""
    bn_layer: dict[str, str]
    """The point of the BatchNorm model trained under additive noise."""
    bn_sigmas: str
    """σ of the BatchNorm train phase."""


QUICK = Profile(
    name="quick",
    epochs={"lenet5": 2, "mlp": 10},
    seeds=3,
    eval_sigmas={
        "additive": "paper-additive:11",
        "multiplicative": "paper-multiplicative:5",
        "combined": "paper-combined:4",
    },
    train_layers={"lenet5": ("conv1",), "mlp": ("fc1",)},
    train_sigmas="1,10,100",
    clamp_layers={"lenet5": ("conv1",), "mlp": ("fc1",)},
    clamp_sigmas="10",
    mult_layers={"lenet5": ("pool1",), "mlp": ("act1",)},
    mult_sigmas="1,100,1e16",
    combined_layer={"lenet5": "act2", "mlp": "act1"},
    combined_sigmas="10",
    global_sigmas={"additive": "1", "multiplicative": "1"},
    bn_layer={"lenet5": "conv1", "mlp": "fc1"},
    bn_sigmas="10",
)
# Sized to ~40 min on 2 cores shared with other work: measured with one thread, a LeNet-5
# training epoch on the 8,000 images takes 0.5-0.75 CPU-s, the MLP's 0.05-0.08, and each
# train cell adds ~1 CPU-s of self-binarization statistics; under the load of the shared
# machine a process got ~0.2 of a core.
FULL = Profile(
    name="full",
    epochs={"lenet5": 6, "mlp": 30},
    seeds=3,
    # half the authors' points per decade: each eval midpoint is refined inside its grid
    # interval afterwards (walknoise/walk/refine.py), so the grid sets only the bracket
    eval_sigmas={
        "additive": "paper-additive:21",
        "multiplicative": "paper-multiplicative:9",
        "combined": "paper-combined:7",
    },
    train_layers={"lenet5": ("conv1", "act2", "fc3"), "mlp": ("fc1", "act2", "fc4")},
    train_sigmas="1,10,100,1e3",
    clamp_layers={"lenet5": ("conv1",), "mlp": ("fc1",)},
    clamp_sigmas="10",
    mult_layers={"lenet5": ("pool1", "act4"), "mlp": ("act1", "act3")},
    mult_sigmas="1,100,1e4,1e16",
    combined_layer={"lenet5": "act2", "mlp": "act1"},
    combined_sigmas="10",
    global_sigmas={"additive": "1", "multiplicative": "1"},
    bn_layer={"lenet5": "conv1", "mlp": "fc1"},
    bn_sigmas="1,10",
)
PROFILES = {"quick": QUICK, "full": FULL}


@dataclass(frozen=True)
class Job:
    """One results file to make: ``kind`` names the function in :data:`RUNNERS`."""

    kind: str
    arch: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        tail = "_".join(f"{k}{v}" for k, v in sorted(self.options.items()))
        return "_".join(s for s in (self.arch, self.kind, tail) if s)


def jobs(profile: Profile) -> list[Job]:
    """Every job of a profile, most needed first (the eval phase that (a) and (b) compare
    with, then the train phases of (b)-(d), then the extra conditions), so that a run stopped
    early still reports the findings."""
    seeds = range(profile.seeds)
    kinds: list[tuple[str, dict[str, Any]]] = [
        *(("eval", {"seed": s}) for s in seeds),
        ("train", {"noise": "additive"}),
        ("train", {"noise": "multiplicative"}),
        ("clamp", {"at": "1"}),
        ("clamp", {"at": "max"}),
        *(("combined", {"ratio": r}) for r in RATIOS),
        ("global", {"noise": "additive"}),
        ("global", {"noise": "multiplicative"}),
        *(("bn_eval", {"seed": s}) for s in seeds),
        ("bn_train", {}),
    ]
    return [Job(kind, arch, options) for kind, options in kinds for arch in ARCHS]


def train_config(profile: Profile, arch: str) -> dict[str, Any]:
    """The authors' optimiser: Adam, lr 1e-3, cosine annealing, batch 128 (main.py)."""
    return {"epochs": profile.epochs[arch], "lr": 1e-3, "batch_size": BATCH}


def template(arch: str, bn: bool = False) -> torch.nn.Module:
    return build_model(arch, batchnorm=True) if bn else build_model(arch)


def clean_model(profile: Profile, arch: str, seed: int, bn: bool, cache: Path) -> torch.nn.Module:
    """The clean model of ``seed``, trained as the train phase trains its reference (same
    template, config and seed, so the same weights), cached on disk for the other jobs."""
    path = cache / f"{profile.name}_{arch}{'_bn' if bn else ''}_clean_seed{seed}.pt"
    model = template(arch, bn)
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    cfg = TrainConfig(**train_config(profile, arch))
    trained = train_under_noise(model, "mnist:train", config=cfg, seed=seed)
    tmp = path.with_suffix(".tmp")
    torch.save(trained.state_dict(), tmp)
    tmp.replace(path)  # atomic: a parallel job never reads half a file
    return trained.eval()


def _scan(
    profile: Profile, job: Job, out: Path, model: torch.nn.Module, **options: Any
) -> dict[str, Any]:
    walknoise.scan(
        model,
        "mnist",
        progress=False,
        output=out / f"{profile.name}_{job.name}.h5",
        **options,
    )
    return {}


def run_eval(profile: Profile, job: Job, out: Path, bn: bool = False) -> dict[str, Any]:
    """Eval phase on the clean model of one seed: every point and the global entry, the
    authors' additive, multiplicative and combined grids (one noise draw per cell: the
    interval comes from the seeds)."""
    seed = int(job.options["seed"])
    model = clean_model(profile, job.arch, seed, bn, out)
    sigmas = profile.eval_sigmas
    kinds = [("additive", None)] if bn else [("additive", None), ("multiplicative", None)]
    kinds += [] if bn else [("combined", r) for r in RATIOS]
    for noise, ratio in kinds:
        suffix = noise if ratio is None else f"combined{ratio}"
        walknoise.scan(
            model,
            "mnist",
            noise=noise,
            ratio=0.5 if ratio is None else ratio,
            sigmas=sigmas[noise],
            repeats=1,
            seed=seed,
            progress=False,
            output=out / f"{profile.name}_{job.name}_{suffix}.h5",
        )
    return {}


def run_train(profile: Profile, job: Job, out: Path) -> dict[str, Any]:
    noise = job.options["noise"]
    additive = noise == "additive"
    return _scan(
        profile,
        job,
        out,
        template(job.arch),
        noise=noise,
        sigmas=profile.train_sigmas if additive else profile.mult_sigmas,
        layers=list((profile.train_layers if additive else profile.mult_layers)[job.arch]),
        include_global=False,
        repeats=profile.seeds,
        phase="train",
        train=train_config(profile, job.arch),
    )


def run_clamp(profile: Profile, job: Job, out: Path) -> dict[str, Any]:
    """Clamped training: at ±1 (the authors' WeightClamper, general.weight_clamping) or at
    the largest |w| of the clean models of all seeds."""
    at = job.options["at"]
    if at == "max":
        models = [clean_model(profile, job.arch, s, False, out) for s in range(profile.seeds)]
        clamp = max(
            float(p.detach().abs().max())
            for m in models
            for n, p in m.named_parameters()
            if n.endswith("weight")
        )
    else:
        clamp = float(at)
    _scan(
        profile,
        job,
        out,
        template(job.arch),
        noise="additive",
        sigmas=profile.clamp_sigmas,
        layers=list(profile.clamp_layers[job.arch]),
        include_global=False,
        repeats=profile.seeds,
        phase="train",
        train=train_config(profile, job.arch),
        clamp=clamp,
    )
    return {"clamp": clamp}


def run_combined(profile: Profile, job: Job, out: Path) -> dict[str, Any]:
    return _scan(
        profile,
        job,
        out,
        template(job.arch),
        noise="combined",
        ratio=float(job.options["ratio"]),
        sigmas=profile.combined_sigmas,
        layers=[profile.combined_layer[job.arch]],
        include_global=False,
        repeats=profile.seeds,
        phase="train",
        train=train_config(profile, job.arch),
    )


def run_bn_train(profile: Profile, job: Job, out: Path) -> dict[str, Any]:
    return _scan(
        profile,
        job,
        out,
        template(job.arch, bn=True),
        noise="additive",
        sigmas=profile.bn_sigmas,
        layers=[profile.bn_layer[job.arch]],
        include_global=False,
        repeats=profile.seeds,
        phase="train",
        train=train_config(profile, job.arch),
    )


def run_global(profile: Profile, job: Job, out: Path) -> dict[str, Any]:
    """Noise at every point at once in training and test (the authors' noise_settings.default).

    ``scan`` trains one entry per chosen point, so this trains the global cells directly:
    ``train_under_noise`` with every point, then the test accuracy under the same noise (one
    seeded draw) and without it.
    """
    noise = job.options["noise"]
    test = resolve_data("mnist")
    test_xy = (test.x, test.y)
    found = survey(template(job.arch), test.input_shape)
    points = [p.name for p in select(found.points, None, None, found.skipped)]
    cfg = TrainConfig(**train_config(profile, job.arch))
    rows = []
    for sigma in (float(s) for s in profile.global_sigmas[noise].split(",")):
        for seed in range(profile.seeds):
            model = train_under_noise(
                template(job.arch),
                "mnist:train",
                noise=noise,
                layer=points,
                sigma=sigma,
                config=cfg,
                seed=seed,
            )
            clean = clean_model(profile, job.arch, seed, False, out)
            row = {"sigma": sigma, "seed": seed, "accuracy_no_noise": evaluate(model, *test_xy)[0]}
            for key, m in (("accuracy", model), ("clean_model_accuracy", clean)):
                # the same seeded draw for both models: a paired comparison
                gen = torch.Generator().manual_seed(seed)
                with walknoise.inject(m, points, noise, sigma, generator=gen):
                    row[key] = evaluate(m, *test_xy)[0]
            rows.append(row)
    return {"noise": noise, "points": points, "cells": rows}


RUNNERS = {
    "eval": run_eval,
    "bn_eval": lambda p, j, o: run_eval(p, j, o, bn=True),
    "train": run_train,
    "clamp": run_clamp,
    "combined": run_combined,
    "bn_train": run_bn_train,
    "global": run_global,
}


def run_job(profile: Profile, job: Job, out: Path) -> dict[str, Any]:
    """Run one job (one thread: the machine's cores go to parallel jobs) and record its
    outcome next to its results in ``<job>.json``."""
    torch.set_num_threads(1)
    done = out / f"{profile.name}_{job.name}.json"
    if done.exists():
        return dict(json.loads(done.read_text()))
    start, cpu = time.perf_counter(), time.process_time()
    info = RUNNERS[job.kind](profile, job, out)
    info |= {
        "job": asdict(job),
        "seconds": round(time.perf_counter() - start, 1),
        "cpu_seconds": round(time.process_time() - cpu, 1),
    }
    done.write_text(json.dumps(info, indent=1))
    return info
