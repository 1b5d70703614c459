"""``walknoise demo``: train LeNet-5 on bundled MNIST, scan it, draw it, print midpoints."""

from __future__ import annotations

from pathlib import Path

import click

from walknoise.io.provenance import invoked_as
from walknoise.recipes import run_demo

from .options import normalize_option


@click.command()
@click.option(
    "-o",
    "--output",
    default="demo",
    show_default=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory to write to.",
)
@click.option("--epochs", default=12, show_default=True, type=click.IntRange(min=1))
@click.option("--repeats", default=5, show_default=True, type=click.IntRange(min=1))
@normalize_option()
def demo(output: Path, epochs: int, repeats: int, normalize: str) -> None:
    """The two-minute tour: model.pt, results.h5 and heatmap.png in one directory."""
    scaled = f" --normalize {normalize}" if normalize != "none" else ""
    with invoked_as(f"walknoise demo -o {output}{scaled}"):
        out = run_demo(output, epochs=epochs, repeats=repeats, normalize=normalize)
    click.echo(
        f"LeNet-5 test accuracy {out.test_accuracy:.4f}; wrote {out.model}, "
        f"{out.results}, {out.heatmap}"
    )
    click.echo(out.table)
