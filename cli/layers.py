"""``walknoise layers``: every injection point with type, output shape and parameters."""

from __future__ import annotations

from pathlib import Path

import click

from walknoise.data import resolve_data
from walknoise.noise.points import discover
from walknoise.walk.guard import model_errors

from .options import model_options, open_model


@click.command()
@model_options
@click.option(
    "--data",
    default=None,
    help="Data to take the input shape from when the file does not record it.",
)
def layers(model_path: Path, arch: str | None, trust_pickle: bool, data: str | None) -> None:
    """List the injection points of MODEL (names are named_modules() names)."""
    loaded = open_model(model_path, arch, trust_pickle)
    shape = loaded.input_shape or resolve_data(data or "mnist").input_shape
    rows = [("layer", "type", "output shape", "params", "scanned by default")]
    with model_errors():
        found = discover(loaded.model, shape)
    for p in found:
        rows.append(
            (p.name, p.type, "×".join(map(str, p.shape)), str(p.params), "yes" if p.default else "")
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
