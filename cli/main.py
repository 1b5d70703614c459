"""The ``walknoise`` command: a click group whose errors are one line and exit code 2."""

from __future__ import annotations

import sys
from typing import Any

import click

from walknoise import __version__
from walknoise.errors import WalknoiseError

from .demo import demo
from .gni import gni, gni_plot
from .layers import layers
from .nin import nin
from .plot import plot
from .scan import scan
from .train import train


class Group(click.Group):
    """Turns user errors into ``error: ...`` and Ctrl-C into a clean stop."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WalknoiseError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
        except click.UsageError as err:  # click's own is four lines; ours are one
            where = f"; see `{err.ctx.command_path} -h`" if err.ctx else ""
            text = " ".join(err.format_message().split()).rstrip(".")
            click.echo(f"error: {text}{where}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="walknoise")
def cli() -> None:
    """Walk Gaussian noise through a PyTorch model, one layer at a time."""


for command in (train, layers, scan, plot, demo, gni, gni_plot, nin):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="walknoise")
