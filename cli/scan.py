"""``walknoise scan``: evaluate MODEL under noise at each layer, write an HDF5 results file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from walknoise.devices import resolve_device
from walknoise.io.provenance import invoked_as
from walknoise.noise.kinds import KINDS
from walknoise.types import ExecutorName, NoiseKind
from walknoise.walk.driver import partial_folder, run_spec
from walknoise.walk.metrics import METRICS
from walknoise.walk.report import midpoint_table
from walknoise.walk.spec import DTYPES, ScanSpec, parse_sigmas, split_names
from walknoise.walk.stream import CHECKPOINT_EVERY
from walknoise.walk.trainphase import train_phase_spec

from .execution import execution_options, executor_of
from .interrupt import stop_promptly
from .options import (
    command_line,
    data_option,
    model_normalization,
    model_options,
    normalize_option,
    open_model,
    output_options,
    train_phase_options,
)


@click.command()
@model_options
@data_option("2,000-image test split", streamed=True)
@normalize_option(from_model=True)
@click.option("--noise", type=click.Choice(KINDS), default="additive", show_default=True)
@click.option(
    "--ratio",
    default=0.5,
    show_default=True,
    type=float,
    help="combined noise: σ_add = σ·ratio, σ_mul = σ·(1-ratio).",
)
@click.option(
    "--sigmas",
    default="log:1e-2:1e3:31",
    show_default=True,
    help="'log:START:STOP:N', 'lin:START:STOP:N', '0.1,1,10' or a preset of the paper's "
    "grids: paper-additive, paper-multiplicative, paper-multiplicative-lin, paper-combined "
    "(NAME:N: N points over the same range).",
)
@click.option("--repeats", default=5, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--layers",
    "layer_names",
    default=None,
    help="Comma-separated names or globs (see `walknoise layers`).",
)
@click.option("--types", default=None, help="Comma-separated module types, e.g. Conv2d,Linear.")
@click.option("--no-global", is_flag=True, help="Leave out the <global> entry.")
@click.option(
    "--midpoint-search",
    is_flag=True,
    help="Find each midpoint by adaptive search in [σ_min, σ_max] instead of the full grid.",
)
@click.option(
    "--rtol",
    default=0.05,
    show_default=True,
    type=float,
    help="Midpoint precision: each midpoint is pinned between two evaluated σ at most "
    "1+rtol apart (by the refinement, or --midpoint-search).",
)
@click.option(
    "--refine/--no-refine",
    default=True,
    show_default=True,
    help="Eval phase: evaluate extra σ inside the grid interval holding each midpoint until "
    "it is within --rtol; --no-refine reports the grid bracket [a, b] instead.",
)
@click.option(
    "--metric",
    type=click.Choice(METRICS),
    default="accuracy",
    show_default=True,
    help="What drives the midpoint (eval phase): accuracy, top-k accuracy, agreement with the "
    "clean model (needs no labels), KL(p_clean||p_noisy) or loss; see docs/concepts.md.",
)
@click.option(
    "--topk",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="The k of the topk_accuracy variable (and of --metric topk).",
)
@click.option("--relative", is_flag=True, help="Scale σ by each point's clean output std.")
@click.option(
    "--output-key",
    default=None,
    metavar="KEY|INDEX",
    help="Where the logits are when MODEL returns a tuple or dict: 'logits', '0'.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--max-batch",
    default=16384,
    show_default=True,
    type=click.IntRange(min=1),
    help="Most stacked samples (σ copies × batch) per forward pass.",
)
@click.option(
    "--dtype",
    type=click.Choice(DTYPES),
    default="float32",
    show_default=True,
    help="Floating-point type of the noisy passes (float32 where the device lacks it).",
)
@click.option(
    "--checkpoint-every",
    default=CHECKPOINT_EVERY,
    show_default=True,
    type=click.IntRange(min=1),
    help="Batches between checkpoints of a pass's partial sums (OUTPUT.partial/).",
)
@output_options("results.h5")
@execution_options
@train_phase_options
def scan(
    model_path: Path,
    arch: str | None,
    trust_pickle: bool,
    data: str,
    normalize: str | None,
    noise: NoiseKind,
    ratio: float,
    sigmas: str,
    repeats: int,
    layer_names: str | None,
    types: str | None,
    no_global: bool,
    midpoint_search: bool,
    rtol: float,
    refine: bool,
    metric: str,
    topk: int,
    relative: bool,
    output_key: str | None,
    seed: int,
    batch_size: int,
    max_batch: int,
    checkpoint_every: int,
    dtype: str,
    device: str,
    output: Path,
    overwrite: bool,
    quiet: bool,
    jobs: int,
    executor: ExecutorName,
    **options: Any,
) -> None:
    """Scan MODEL layer by layer over a σ grid; rerun the same command to resume."""
    slurm = {k: options.pop(k) for k in list(options) if k.startswith("slurm_")}
    runs_on = executor_of(output, jobs, executor, **slurm)
    if executor != "slurm" or not device.startswith("cuda"):  # SLURM nodes may have GPUs
        resolve_device(device)  # fail before the slow part
    loaded = open_model(model_path, arch, trust_pickle)
    spec = ScanSpec(
        sigmas=parse_sigmas(sigmas),
        noise=noise,
        ratio=ratio,
        repeats=repeats,
        layers=split_names(layer_names),
        types=split_names(types),
        include_global=not no_global,
        midpoint_search=midpoint_search,
        rtol=rtol,
        refine=refine,
        metric=metric,
        topk=topk,
        relative=relative,
        output_key=_index_or_key(output_key),
        seed=seed,
        batch_size=batch_size,
        max_batch=max_batch,
        dtype=dtype,
        device=device,
        **train_phase_spec(loaded.meta, **options),
    )
    command = command_line(click.get_current_context())

    def stopped() -> str:  # asked at the Ctrl-C: the file may not exist yet
        partial = partial_folder(Path(output))
        if not Path(output).exists():
            if partial is not None and any(partial.glob("*.pt")):  # a streamed first pass
                return (
                    f"interrupted: the pass's partial sums are saved in {partial}; "
                    "run the same command again to resume"
                )
            return f"interrupted before {output} was written; nothing to resume"
        return (
            f"interrupted: finished layers are saved in {output}; "
            "run the same command again to resume"
        )

    with stop_promptly(stopped, cleanup=runs_on.cancel), invoked_as(command):
        result = run_spec(
            loaded.model,
            data,
            spec,
            output=output,
            overwrite=overwrite,
            progress=not quiet,
            normalize=model_normalization(loaded, normalize),
            executor=runs_on,
            checkpoint_every=checkpoint_every,
        )
    click.echo(midpoint_table(result))
    click.echo(f"wrote {output}")


def _index_or_key(text: str | None) -> int | str | None:
    """``0`` and ``-1`` are indices (a dict's ``"0"`` key is found from them too)."""
    return int(text) if text is not None and text.lstrip("-").isdigit() else text
