"""The ``walknoise`` click application: lazy groups whose errors are one line and exit code 2.

``cli/main.py`` is the console entry point that imports this module (see there why).

Every command module is imported only when its command runs (or its own ``--help`` is
asked for): ``walknoise --help`` imports neither torch nor matplotlib, and ``walknoise
layers --help`` no plotting library. The table below holds each command's one-line help for
the listings; ``tests/cli/test_lazy.py`` checks it against the commands' own docstrings.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

import click

from walknoise._version import __version__
from walknoise.errors import WalknoiseError

from .main import interrupted

Lazy = tuple[str, str]
"""``("module:attribute", one-line help)`` of a command loaded on first use."""

RUNNING = "walknoise.command"
"""``ctx.meta`` key (shared by a context and its children): the innermost command resolved."""


class LazyGroup(click.Group):
    """A group whose commands in ``lazy`` are imported when resolved, not when listed."""

    def __init__(self, *args: Any, lazy: Mapping[str, Lazy] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, _, attribute = self.lazy[cmd_name][0].partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return self.commands.get(cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            name, command, rest = super().resolve_command(ctx, args)
        except click.NoSuchCommand as err:  # click suggests loaded names only; add the lazy ones
            raise click.NoSuchCommand(
                err.command_name, possibilities=self.list_commands(ctx), ctx=ctx
            ) from None
        ctx.meta[RUNNING] = command
        return name, command, rest

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's listing, from the table for commands not loaded yet (no import)."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(map(len, names))
        rows = []
        for name in names:
            # a stand-in carrying the table's help shortens it exactly as click would
            command = self.commands.get(name) or click.Command(name, help=self.lazy[name][1])
            if not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


class Walknoise(LazyGroup):
    """The root group: user errors become one line on stderr and exit code 2.

    * A :class:`~walknoise.errors.WalknoiseError` prints ``error: <message>``; when its
      ``argument`` names a parameter of the command being run (its click name, e.g.
      ``ratio``, or its flag spelled as a name, e.g. ``layers`` for ``--layers``), the flag
      comes first, as in argparse: ``error: --ratio: ratio=1.5 is outside [0, 1]; ...``.
      An argument such as ``MODEL`` is named by its metavar.
    * A click usage error prints ``error: <click's message>; see `walknoise CMD -h```.
    * An exception raised inside the user's model, wherever a command runs it, prints
      ``error: the model failed in module ...`` (``walknoise.walk.guard``).
    * Ctrl-C prints ``interrupted`` and exits with code 130 (``scan`` says more, see
      ``cli/interrupt.py``), also while click parses the command line, where click itself
      would print ``Aborted!`` and exit with code 1.
    """

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except KeyboardInterrupt:
            interrupted()

    def invoke(self, ctx: click.Context) -> Any:
        warnings = logging.getLogger("walknoise")
        line = WarningLine(logging.WARNING)
        warnings.addHandler(line)
        try:
            return super().invoke(ctx)
        except WalknoiseError as err:
            click.echo(error_line(err, ctx.meta.get(RUNNING)), err=True)
            sys.exit(2)
        except click.UsageError as err:  # click's own is four lines; ours are one
            where = f"; see `{err.ctx.command_path} -h`" if err.ctx else ""
            text = " ".join(err.format_message().split()).rstrip(".")
            click.echo(f"error: {text}{where}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            interrupted()
        except Exception as err:  # one from the user's model is theirs; any other, a bug
            failed = _model_error(err)
            if failed is None:
                raise
            click.echo(error_line(failed, None), err=True)
            sys.exit(2)
        finally:
            warnings.removeHandler(line)


class WarningLine(logging.Handler):
    """The library's logged warnings as ``warning: <message>``, one line each on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"warning: {' '.join(record.getMessage().split())}", err=True)


def _model_error(err: Exception) -> WalknoiseError | None:
    if "torch" not in sys.modules:
        return None  # no model ran; and `walknoise --help` stays free of torch
    from walknoise.walk.guard import model_error

    return model_error(err)


def error_line(err: WalknoiseError, command: click.Command | None) -> str:
    """``error: [FLAG: ]message`` on one line (see :class:`Walknoise`)."""
    text = cli_terms(" ".join(str(err).split()), command)
    flag = flag_of(command, err.argument)
    return f"error: {flag}: {text}" if flag else f"error: {text}"


def cli_terms(text: str, command: click.Command | None) -> str:
    """The fixes a library message suggests, as this command line spells them.

    The library says what to pass in Python (``pass overwrite=True``, ``e.g.
    sigmas='log:1e-2:1e3:31'``); for each option of ``command`` those become ``--overwrite``
    and ``--sigmas 'log:1e-2:1e3:31'``. A value that is only reported (``ratio=1.5 is
    outside [0, 1]``, ``output_key='logit' is not in …``) stays as it is.
    """
    for param in command.params if command is not None else ():
        if not isinstance(param, click.Option) or param.name is None:
            continue
        flag = max(param.opts, key=len)
        name = re.escape(param.name)
        text = re.sub(rf"(?<![\w.-]){name}=True\b", flag, text)
        fix = rf"(\b(?:e\.g\.|pass|use|or|with|choose) ){name}=(?=['\"])"  # not a reported value
        text = re.sub(fix, rf"\g<1>{flag} ", text)  # a flag holds no backslash
    return text


def flag_of(command: click.Command | None, argument: str | None) -> str | None:
    """How ``command``'s command line spells the API argument ``argument``, if it has it."""
    if command is None or argument is None:
        return None
    for param in command.params:
        spellings = {param.name, *(o.lstrip("-").replace("-", "_") for o in param.opts)}
        if argument in spellings:
            if isinstance(param, click.Argument):
                return param.human_readable_name
            return max(param.opts, key=len)  # --output rather than -o
    return None


CLI = "walknoise.cli"

plot = LazyGroup(
    "plot",
    help="Draw a results file: heatmap, curves, midpoints, weights or histogram.",
    lazy={
        "heatmap": (
            f"{CLI}.plot:heatmap",
            "Layers × log σ coloured by accuracy, midpoints marked.",
        ),
        "curves": (f"{CLI}.plot:curves", "Accuracy vs σ per layer with the spread over repeats."),
        "midpoints": (f"{CLI}.plot:midpoints", "One bar per layer: its midpoint noise level."),
        "weights": (
            f"{CLI}.plot:weights",
            "Train phase: each entry's own-layer weight growth and kurtosis, layer × σ.",
        ),
        "histogram": (
            f"{CLI}.plot:histogram",
            "Train phase: one cell's weight histograms against the clean model's.",
        ),
    },
)

gni = LazyGroup(
    "gni",
    help="Gaussian noise injections: measure the implicit gradient noise (run), draw it (plot).",
    lazy={
        "run": (
            f"{CLI}.gni:run",
            "Stable-law α and β (with bootstrap intervals), block α and skewness of the implicit "
            "gradient noise, per weight tensor.",
        ),
        "plot": (
            f"{CLI}.gni:plot",
            "Draw a gradient-noise file over σ, over training or as densities.",
        ),
    },
)

nin = LazyGroup(
    "nin",
    help="Noise Injection Nodes: probe learning dynamics (probe), regularise (compare), "
    "redraw (plot).",
    lazy={
        "probe": (
            f"{CLI}.nin:probe_command",
            "Train one run per (σ_ε, lr, seed) with NINs, classify phases, draw the figures.",
        ),
        "compare": (
            f"{CLI}.nin:compare_command",
            "Tune no regulariser, in-/full-NINR, input noise, L2 and dropout alike on a validation "
            "split, then test each against several perturbations and the layer walk.",
        ),
        "plot": (
            f"{CLI}.nin:plot_command",
            "Redraw the figures of a `nin probe` or `nin compare` file.",
        ),
    },
)


@click.group(
    cls=Walknoise,
    context_settings={"help_option_names": ["-h", "--help"]},
    lazy={
        "train": (
            f"{CLI}.train:train",
            "Train a model with Adam or plain SGD (cosine schedule) and save a walknoise "
            "checkpoint.",
        ),
        "layers": (
            f"{CLI}.layers:layers",
            "List the injection points of MODEL (names are named_modules() names).",
        ),
        "scan": (
            f"{CLI}.scan:scan",
            "Scan MODEL layer by layer over a σ grid; rerun the same command to resume.",
        ),
        "demo": (
            f"{CLI}.demo:demo",
            "The two-minute tour: model.pt, results.h5 and heatmap.png in one directory.",
        ),
        # the families' groups, listed lazily too: tools that read `commands` (mkdocs-click)
        # find it empty and ask list_commands/get_command, which know every command
        **{g.name: (f"{CLI}.app:{g.name}", g.help) for g in (plot, gni, nin) if g.name and g.help},
    },
)
@click.version_option(__version__, prog_name="walknoise")
def cli() -> None:
    """Walk Gaussian noise through a PyTorch model, one layer at a time."""
