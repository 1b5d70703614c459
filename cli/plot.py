"""``walknoise plot``: figures from a results file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from walknoise import plots
from walknoise.result import load

RESULTS = click.Path(path_type=Path, dir_okay=False)


def _figure_command(name: str, draw: Callable[[Any], Any], helptext: str) -> click.Command:
    @click.command(name=name, help=helptext)
    @click.argument("results", type=RESULTS)
    @click.option(
        "-o",
        "--output",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help=f"Image to write (default: {name}.png).",
    )
    def command(results: Path, output: Path | None) -> None:
        if not results.exists():
            from walknoise.errors import WalknoiseError

            raise WalknoiseError(
                f"no such results file: {results} (run `walknoise scan` first, or check the path)"
            )
        path = plots.save_figure(draw(load(results)), output or Path(f"{name}.png"))
        click.echo(f"wrote {path}")

    return command


@click.group()
def plot() -> None:
    """Draw a results file: heatmap, curves or midpoints."""


plot.add_command(
    _figure_command(
        "heatmap", plots.heatmap, "Layers × log σ coloured by accuracy, midpoints marked."
    )
)
plot.add_command(
    _figure_command("curves", plots.curves, "Accuracy vs σ per layer with the spread over repeats.")
)
plot.add_command(
    _figure_command("midpoints", plots.midpoints, "One bar per layer: its midpoint noise level.")
)
