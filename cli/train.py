"""``walknoise train``: train a zoo model (or your factory) and save a checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from walknoise.recipes import train_checkpoint
from walknoise.training import TrainConfig


@click.command()
@click.option(
    "--arch",
    default="lenet5",
    show_default=True,
    help="mlp, lenet5, cnn, or package.module:factory.",
)
@click.option("--batchnorm", is_flag=True, help="Zoo models: add BatchNorm after each layer.")
@click.option(
    "--data",
    default="mnist",
    show_default=True,
    help="'mnist' (bundled, 8,000-image train split) or a .pt/.npz file with x, y.",
)
@click.option("--epochs", default=5, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", default=1e-3, show_default=True, type=float)
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto.")
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
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    device: str,
    output: Path,
) -> None:
    """Train a model with Adam (cosine schedule) and save a walknoise checkpoint."""
    config = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    kwargs = {"batchnorm": True} if batchnorm else {}
    metrics = train_checkpoint(
        arch, output, data=data, arch_kwargs=kwargs, config=config, device=device
    )
    line = f"saved {output}: train accuracy {metrics['train_accuracy']:.4f}"
    if "test_accuracy" in metrics:
        line += f", test accuracy {metrics['test_accuracy']:.4f}"
    click.echo(line)
