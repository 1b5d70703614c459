"""Options shared by several commands, and loading the model they name."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from walknoise.data_norm import NORMALIZATIONS, Normalization
from walknoise.errors import WalknoiseError
from walknoise.models import LoadedModel, load_model


def model_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``MODEL`` plus ``--arch`` and ``--trust-pickle``."""
    f = click.option(
        "--trust-pickle",
        is_flag=True,
        help="Allow a whole pickled nn.Module (unpickling runs code from the file).",
    )(f)
    f = click.option(
        "--arch",
        default=None,
        metavar="NAME|pkg.module:factory",
        help="Architecture for a bare state dict (or to override a checkpoint's).",
    )(f)
    return click.argument(
        "model_path", metavar="MODEL", type=click.Path(path_type=Path, dir_okay=False)
    )(f)


def open_model(model_path: Path, arch: str | None, trust_pickle: bool) -> LoadedModel:
    return load_model(model_path, arch=arch, trust_pickle=trust_pickle)


@contextmanager
def prefixed_options(prefix: str) -> Iterator[None]:
    """Inside, library errors name API arguments that this command spells ``--PREFIX-NAME``
    (``every`` of ``GNITraining`` is ``--gni-every``): point them at that option."""
    names = {param.name for param in click.get_current_context().command.params}
    try:
        yield
    except WalknoiseError as err:
        if err.argument is not None and prefix + err.argument in names:
            err.argument = prefix + err.argument
        raise


@contextmanager
def renamed_options(**options: str) -> Iterator[None]:
    """Inside, a library error about the API argument ``NAME`` names this command's option
    ``options[NAME]`` (``clamp`` of ``ScanSpec`` is ``--clamp-weights``). Also a decorator."""
    try:
        yield
    except WalknoiseError as err:
        if err.argument in options:
            err.argument = options[err.argument]
        raise


def command_line(ctx: click.Context) -> str:
    """The command as the user gave it (defaults left out), rebuilt from parsed parameters."""
    words = ["walknoise", *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        name = param.name or ""
        if ctx.get_parameter_source(name) == click.core.ParameterSource.DEFAULT:
            continue
        value = ctx.params[name]
        if isinstance(param, click.Argument):
            words.append(str(value))
        elif param.is_flag:  # type: ignore[attr-defined]
            words.append(param.opts[0])
        else:
            words += [
                param.opts[-1] if param.opts[-1].startswith("--") else param.opts[0],
                str(value),
            ]
    return shlex.join(words)


def train_phase_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--phase`` and the settings of the train phase (defaults: the checkpoint's)."""
    options = [
        click.option(
            "--phase",
            type=click.Choice(["eval", "train", "both"]),
            default="eval",
            show_default=True,
            help="eval: walk MODEL; train: train a fresh model per cell under the "
            "noise; both: the two.",
        ),
        click.option(
            "--epochs",
            type=click.IntRange(min=1),
            default=None,
            help="Train phase: epochs (default: the checkpoint's).",
        ),
        click.option("--lr", type=float, default=None, help="Train phase: Adam learning rate."),
        click.option(
            "--train-batch-size",
            type=click.IntRange(min=1),
            default=None,
            help="Train phase: batch size.",
        ),
        click.option(
            "--clamp-weights",
            type=float,
            default=None,
            help="Train phase: clamp weights to [-C, C] after each step.",
        ),
        click.option(
            "--train-data", default=None, help="Train phase: training data (default: mnist:train)."
        ),
    ]
    f = renamed_options(clamp="clamp_weights")(f)  # ScanSpec's clamp
    for option in reversed(options):
        f = option(f)
    return f


OUTPUT = click.Path(path_type=Path, dir_okay=False)


def output_options(default: str, device: bool = True) -> Callable[[Callable[..., Any]], Any]:
    """``--device`` (unless ``device=False``), ``-o/--output``, ``--overwrite``, ``--quiet``."""

    def wrap(f: Callable[..., Any]) -> Any:
        f = click.option("--quiet", is_flag=True, help="No progress bar.")(f)
        f = click.option("--overwrite", is_flag=True, help="Replace an existing output file.")(f)
        f = click.option("-o", "--output", type=OUTPUT, default=default, show_default=True)(f)
        if device:
            f = click.option(
                "--device", default="cpu", show_default=True, help="cpu, cuda or auto."
            )(f)
        return f

    return wrap


def data_option(split: str, streamed: bool = False) -> Callable[[Callable[..., Any]], Any]:
    """``--data``: the bundled MNIST ``split`` (described for the help) or a user's file;
    with ``streamed``, also the forms ``walknoise.sources`` reads batch by batch."""
    more = (
        ", a folder with x.npy (+ y.npy), a folder of MNIST IDX files, or "
        "package.module:factory returning a Dataset or DataLoader"
        if streamed
        else ""
    )
    return click.option(
        "--data",
        default="mnist",
        show_default=True,
        help=f"'mnist' (bundled {split}), a .pt/.npz file with x, y{more}.",
    )


_SCALINGS = (
    "Input scaling: none (as given; MNIST in [0, 1]), pm1 ((x - 0.5) / 0.5), standard "
    "(mean/std of the training data)."
)


def normalize_option(from_model: bool = False) -> Callable[[Callable[..., Any]], Any]:
    """``--normalize none|pm1|standard``; with ``from_model`` its default is the one MODEL's
    checkpoint records (see :func:`model_normalization`)."""
    return click.option(
        "--normalize",
        type=click.Choice(NORMALIZATIONS),
        default=None if from_model else "none",
        show_default=not from_model,
        help=_SCALINGS + (" Default: MODEL's, else none." if from_model else ""),
    )


def model_normalization(loaded: LoadedModel, normalize: str | None) -> str | Normalization:
    """``normalize``, or (``None``) what MODEL was trained on: a checkpoint from
    ``walknoise train`` records it (``standard`` with the training data's mean/std), so the
    scan sees inputs scaled as in training. A different choice is warned about."""
    trained = Normalization.from_attrs(loaded.meta)
    if normalize is None and trained is None and str(loaded.meta.get("data", "")) == "mnist:train":
        # walknoise train before the setting was recorded mapped MNIST to [-1, 1]
        click.echo(
            "warning: MODEL was trained on bundled MNIST by a walknoise that mapped it to "
            "[-1, 1] without recording it; pass --normalize pm1 to scan it as trained",
            err=True,
        )
    if normalize is None:
        return trained or "none"
    if trained is not None and trained.kind != normalize:
        click.echo(
            f"warning: MODEL was trained on inputs normalised {trained.describe()}; "
            f"--normalize {normalize} scales them differently",
            err=True,
        )
    return normalize
