"""``walknoise gni run`` and ``walknoise gni plot``: the implicit gradient noise of GNI."""

from __future__ import annotations

from pathlib import Path

import click

from walknoise.gni.measure import PARAMS, GNISpec, load_gni, run_gni
from walknoise.io.provenance import invoked_as
from walknoise.noise.kinds import KINDS
from walknoise.types import NoiseKind
from walknoise.walk.spec import parse_sigmas, split_names

from .options import (
    command_line,
    data_option,
    model_normalization,
    model_options,
    normalize_option,
    open_model,
    output_options,
)


@click.command()
@model_options
@data_option("8,000-image train split")
@normalize_option(from_model=True)
@click.option("--noise", type=click.Choice(KINDS), default="additive", show_default=True)
@click.option("--ratio", default=0.5, show_default=True, type=float, help="combined noise split.")
@click.option("--sigma", default="0.1", show_default=True, help="A level, a list or a grid.")
@click.option(
    "--layers",
    "layer_names",
    default=None,
    help="Injection points (names or globs); default: the input and every activation.",
)
@click.option("--params", type=click.Choice(PARAMS), default="weights", show_default=True)
@click.option("--draws", default=100, show_default=True, type=int, help="Noise draws K per batch.")
@click.option("--batches", default=10, show_default=True, type=int)
@click.option("--batch-size", default=64, show_default=True, type=int)
@click.option("--max-coords", default=4096, show_default=True, type=int, help="Entries per tensor.")
@click.option(
    "--bootstrap",
    default=100,
    show_default=True,
    type=int,
    help="Bootstrap replicates for the α, β intervals (0: none).",
)
@click.option("--seed", default=0, show_default=True, type=int)
@output_options("gni.h5")
def run(
    model_path: Path,
    arch: str | None,
    trust_pickle: bool,
    data: str,
    normalize: str | None,
    noise: NoiseKind,
    ratio: float,
    sigma: str,
    layer_names: str | None,
    params: str,
    draws: int,
    batches: int,
    batch_size: int,
    max_coords: int,
    bootstrap: int,
    seed: int,
    device: str,
    output: Path,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Stable-law α and β (with bootstrap intervals), block α and skewness of the implicit
    gradient noise, per weight tensor."""
    spec = GNISpec(
        sigmas=parse_sigmas(sigma),
        noise=noise,
        ratio=ratio,
        layers=split_names(layer_names),
        params=params,
        draws=draws,
        batches=batches,
        batch_size=batch_size,
        max_coords=max_coords,
        seed=seed,
        bootstrap=bootstrap,
        device=device,
    )
    loaded = open_model(model_path, arch, trust_pickle)
    with invoked_as(command_line(click.get_current_context())):
        result = run_gni(
            loaded.model, data, spec, output=output, overwrite=overwrite, progress=not quiet,
            normalize=model_normalization(loaded, normalize),
        )  # fmt: skip
    click.echo(result.summary())
    click.echo(f"wrote {output}")


FIGURES = {
    "sigma": "stable-fit α, β and skewness vs σ (at --step, default the last)",
    "training": "stable-fit α, β and skewness vs training step (at --sigma, default the first)",
    "histogram": "standardised noise density against N(0, 1) (at --sigma and --step)",
}


@click.command(
    help="Draw a gradient-noise file over σ, over training or as densities. KIND: "
    + "; ".join(f"{k}: {v}" for k, v in FIGURES.items())
    + ".",
)
@click.argument("kind", type=click.Choice(list(FIGURES)))
@click.argument("results", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--sigma", default=None, type=float, help="σ to show (nearest in the file).")
@click.option("--step", default=None, type=float, help="Training step to show (nearest).")
@click.option(
    "-o",
    "--output",
    default=None,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Image to write (default: gni-KIND.png).",
)
def plot(
    kind: str, results: Path, sigma: float | None, step: float | None, output: Path | None
) -> None:
    from walknoise.gni import plots as gni_plots  # matplotlib: only when drawing
    from walknoise.walk.plots import save_figure

    res = load_gni(results)
    if kind == "sigma":
        fig = gni_plots.over_sigma(res, step=step)
    elif kind == "training":
        fig = gni_plots.over_training(res, sigma=sigma)
    else:
        fig = gni_plots.histograms(res, sigma=sigma, step=step)
    click.echo(f"wrote {save_figure(fig, output or Path(f'gni-{kind}.png'))}")
