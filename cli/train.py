"""``walknoise train``: train a zoo model (or your factory) and save a checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from walknoise.gni.tracking import MODES, GNITraining, training_hooks
from walknoise.io.provenance import invoked_as
from walknoise.noise.kinds import KINDS
from walknoise.recipes import train_checkpoint
from walknoise.training import OPTIMIZERS, TrainConfig
from walknoise.types import NoiseKind

from .options import command_line, data_option, normalize_option, prefixed_options

# plain SGD needs a larger step than Adam: at 1e-3 the MLP stays near chance for 2 epochs
DEFAULT_LR = {"adam": 1e-3, "sgd": 0.05}


@click.command()
@click.option(
    "--arch",
    default="lenet5",
    show_default=True,
    help="mlp, lenet5, cnn, or package.module:factory.",
)
@click.option("--batchnorm", is_flag=True, help="Zoo models: add BatchNorm after each layer.")
@data_option("8,000-image train split")
@normalize_option()
@click.option("--epochs", default=5, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--lr",
    type=float,
    help="Learning rate  [default: 1e-3 with adam, 0.05 with sgd (1e-3 barely moves plain SGD "
    "in a few epochs)]",
)
@click.option(
    "--optimizer",
    type=click.Choice(OPTIMIZERS),
    default="adam",
    show_default=True,
    help="sgd: plain SGD without momentum (the GNI paper's optimizer).",
)
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto.")
@click.option(
    "--gni-mode",
    type=click.Choice(MODES),
    default=None,
    help="Gaussian noise injections: implicit (one draw per step) or marginal (mean of K).",
)
@click.option("--gni-noise", type=click.Choice(KINDS), default="additive", show_default=True)
@click.option("--gni-sigma", default=0.1, show_default=True, type=float)
@click.option("--gni-draws", default=16, show_default=True, type=int, help="K for marginal.")
@click.option("--gni-every", default=None, type=int, help="Track the gradient noise every N steps.")
@click.option(
    "--gni-output",
    default=None,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Tracked statistics (default: the checkpoint name with .gni.h5).",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Checkpoint to write (e.g. model.pt).",
)
def train(
    arch: str,
    batchnorm: bool,
    data: str,
    normalize: str,
    epochs: int,
    lr: float | None,
    optimizer: str,
    batch_size: int,
    seed: int,
    device: str,
    gni_mode: str | None,
    gni_noise: NoiseKind,
    gni_sigma: float,
    gni_draws: int,
    gni_every: int | None,
    gni_output: Path | None,
    output: Path,
) -> None:
    """Train a model with Adam or plain SGD (cosine schedule) and save a walknoise checkpoint."""
    if lr is None:
        lr = DEFAULT_LR[optimizer]
    config = TrainConfig(
        epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, optimizer=optimizer
    )
    kwargs = {"batchnorm": True} if batchnorm else {}
    if gni_every is not None and gni_output is None:
        gni_output = output.with_suffix(".gni.h5")
    with prefixed_options("gni_"):  # GNITraining's `every` is --gni-every here
        noisy = GNITraining(
            mode=gni_mode,
            noise=gni_noise,
            sigma=gni_sigma,
            draws=gni_draws,
            every=gni_every,
            output=gni_output,
            seed=seed,
        )
        with invoked_as(command_line(click.get_current_context())):  # tracking files record it
            hooks = training_hooks(noisy, data, config, normalize)
    metrics = train_checkpoint(
        arch,
        output,
        data=data,
        normalize=normalize,
        arch_kwargs=kwargs,
        config=config,
        device=device,
        **(hooks if noisy.active else {}),
    )
    line = f"saved {output}: train accuracy {metrics['train_accuracy']:.4f}"
    if "test_accuracy" in metrics:
        line += f", test accuracy {metrics['test_accuracy']:.4f}"
    if noisy.active and "test_loss" in metrics:
        line += f", test loss {metrics['test_loss']:.4f}"
    click.echo(line)
    if gni_every is not None:
        click.echo(f"wrote {gni_output}")
