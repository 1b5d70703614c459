"""``--jobs``, ``--executor`` and the ``--slurm-*`` options: where a scan's layers run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from walknoise.types import ExecutorName
from walknoise.walk.executors import EXECUTORS, Executor, SlurmOptions, make_executor

from .options import prefixed_options


def execution_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--jobs``, ``--executor`` and ``--slurm-*`` (read back by ``executor_of``)."""
    options = [
        click.option(
            "--jobs",
            default=1,
            show_default=True,
            type=click.IntRange(min=-1),
            help="Layers computed at once: worker processes (-1: one per core), or with "
            "--executor slurm the most array tasks running at once.",
        ),
        click.option(
            "--executor",
            type=click.Choice(EXECUTORS),
            default="auto",
            show_default=True,
            help="auto: in this process for --jobs 1, joblib workers otherwise; slurm: "
            "one SLURM job array over the layers (pip install 'walknoise[slurm]').",
        ),
        click.option("--slurm-partition", default=None, help="SLURM partition."),
        click.option(
            "--slurm-gpus", default=0, show_default=True, type=int, help="GPUs per array task."
        ),
        click.option(
            "--slurm-cpus", default=1, show_default=True, type=int, help="Cores per array task."
        ),
        click.option(
            "--slurm-time",
            default=60,
            show_default=True,
            type=int,
            help="Time limit per array task, in minutes.",
        ),
        click.option(
            "--slurm-folder",
            default=None,
            type=click.Path(path_type=Path, file_okay=False),
            help="Job scripts and logs, visible from the compute nodes (default: OUTPUT.slurm).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def executor_of(output: Path, jobs: int, executor: ExecutorName, **slurm: Any) -> Executor:
    """The executor the options name (``slurm``: the ``slurm_*`` options)."""
    folder = slurm.pop("slurm_folder") or output.with_name(output.name + ".slurm")
    with prefixed_options("slurm_"):  # SlurmOptions' gpus is --slurm-gpus here
        options = SlurmOptions(
            folder=folder,
            partition=slurm["slurm_partition"],
            gpus=slurm["slurm_gpus"],
            cpus=slurm["slurm_cpus"],
            time=slurm["slurm_time"],
        )
    return make_executor(executor, jobs, options)
