"""``walknoise layers``: every injection point with type, output shape and parameters, and
every module that cannot take noise with the reason."""

from __future__ import annotations

from pathlib import Path

import click

from walknoise.data import resolve_data
from walknoise.noise.points import survey
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
    with model_errors():  # the user's model runs here: its failures are one line
        found = survey(loaded.model, shape)
    rows = [("layer", "type", "output shape", "params", "scanned by default")]
    for p in found.points:
        dims = "×".join(map(str, p.shape)) + (" (1st of tuple)" if p.tuple_output else "")
        rows.append((p.name, p.type, dims, str(p.params), "yes" if p.default else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    if found.skipped:
        click.echo("\nnot injection points:")
        for s in found.skipped:
            click.echo(f"  {s.name} ({s.type}) {s.reason}")
    if any("#" in p.name for p in found.points):
        click.echo("\nname#k is the k-th call of a module reused in one forward pass; name alone")
        click.echo("is its first call (--layers 'name,name#*' takes every call).")
