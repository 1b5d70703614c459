"""``walknoise plot KIND``: figures from a scan's results file.

The plotting modules import matplotlib and seaborn; they are imported inside the commands so
that listing or asking for help stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from walknoise.errors import WalknoiseError
from walknoise.walk.result import load

RESULTS = click.Path(path_type=Path, dir_okay=False)


def _output(name: str) -> Callable[..., Any]:
    return click.option(
        "-o",
        "--output",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help=f"Image to write (default: {name}.png).",
    )


def _scan_figure(name: str, helptext: str) -> click.Command:
    """``walknoise plot NAME``: draws ``walknoise.walk.plots.NAME`` of one phase."""

    @click.command(name=name, help=helptext)
    @click.argument("results", type=RESULTS)
    @_output(name)
    @click.option(
        "--phase",
        type=click.Choice(["eval", "train"]),
        default=None,
        help="Which phase to draw (default: the file's last).",
    )
    def command(results: Path, output: Path | None, phase: str | None) -> None:
        from walknoise.walk import plots

        result = load(results)
        draw = getattr(plots, name)
        path = plots.save_figure(
            draw(result.for_phase(phase or result.phases[-1])), output or Path(f"{name}.png")
        )
        click.echo(f"wrote {path}")

    return command


heatmap = _scan_figure("heatmap", "Layers × log σ coloured by accuracy, midpoints marked.")
curves = _scan_figure("curves", "Accuracy vs σ per layer with the spread over repeats.")
midpoints = _scan_figure("midpoints", "One bar per layer: its midpoint noise level.")


@click.command()
@click.argument("results", type=RESULTS)
@_output("weights")
def weights(results: Path, output: Path | None) -> None:
    """Train phase: each entry's own-layer weight growth and kurtosis, layer × σ."""
    from walknoise.walk import plots, weight_plots

    path = plots.save_figure(weight_plots.weights(load(results)), output or Path("weights.png"))
    click.echo(f"wrote {path}")


@click.command()
@click.argument("results", type=RESULTS)
@click.option(
    "--cell",
    required=True,
    metavar="layer=NAME,sigma=S[,repeat=R]",
    help="The train-phase cell to draw (σ: the nearest grid value).",
)
@_output("histogram")
def histogram(results: Path, cell: str, output: Path | None) -> None:
    """Train phase: one cell's weight histograms against the clean model's."""
    from walknoise.walk import plots, weight_plots

    layer, sigma, repeat = parse_cell(cell)
    result = load(results)
    fig = weight_plots.histogram(result, layer, sigma, repeat)
    click.echo(f"wrote {plots.save_figure(fig, output or Path('histogram.png'))}")


def parse_cell(text: str) -> tuple[str, float, int]:
    """``layer=conv1,sigma=0.1,repeat=0`` -> ``("conv1", 0.1, 0)``."""
    try:
        fields = dict(part.split("=", 1) for part in text.split(","))
        return fields["layer"], float(fields["sigma"]), int(fields.get("repeat", 0))
    except (KeyError, ValueError):
        raise WalknoiseError(
            f"cannot read --cell {text!r}; write it as layer=NAME,sigma=S[,repeat=R]"
        ) from None
