"""``walknoise nin probe|compare|plot``: Noise Injection Nodes as a probe and as a regulariser.

The figures import matplotlib and seaborn: ``_draw`` imports them when it runs.
"""

from __future__ import annotations

import math
from pathlib import Path

import click

from walknoise.errors import WalknoiseError
from walknoise.io.provenance import invoked_as
from walknoise.nin.compare import FORMAT as COMPARE_FORMAT
from walknoise.nin.compare import METHODS, CompareConfig, CompareResult, compare, load_compare
from walknoise.nin.compare_config import DEFAULT_LR, SELECTIONS
from walknoise.nin.compare_report import compare_text
from walknoise.nin.perturb import PERTURBATIONS
from walknoise.nin.probe import ProbeConfig, probe
from walknoise.nin.report import probe_text
from walknoise.nin.results import ProbeResult, load_probe
from walknoise.nin.train import OPTIMIZERS

from .options import command_line, normalize_option, output_options


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise WalknoiseError(f"{what} {text!r} is not a comma-separated list of numbers") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise WalknoiseError(f"{what} {text!r}: give finite numbers such as 0.1,1,10")
    return values


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise WalknoiseError(f"{what} {text!r} is not a comma-separated list of integers") from None


def _fresh(output: Path, overwrite: bool) -> None:
    if output.exists() and not overwrite:
        raise WalknoiseError(f"{output} exists; pass --overwrite or choose another -o path")


def _data_options(f: click.decorators.FC) -> click.decorators.FC:
    f = click.option(
        "--threads",
        default=1,
        show_default=True,
        type=click.IntRange(min=1),
        help="torch CPU threads (1 is fastest for small models).",
    )(f)
    f = normalize_option()(f)
    f = click.option("--test-data", default=None, help="Clean test set for a --data file.")(f)
    f = click.option(
        "--data",
        default="mnist",
        show_default=True,
        help="'mnist' (bundled 8,000/2,000 split) or a .pt/.npz with x, y.",
    )(f)
    return click.option(
        "--arch",
        default="mlp",
        show_default=True,
        help="mlp, lenet5, cnn, or package.module:factory.",
    )(f)


@click.command("probe")
@_data_options
@click.option("--sigma-eps", default="0.1,1,10,100", show_default=True, help="σ_ε values.")
@click.option("--lr", default="0.03,0.1,0.3", show_default=True, help="Learning rates.")
@click.option("--seeds", default="0", show_default=True, help="Seeds, e.g. 0,1,2.")
@click.option("--epochs", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="sgd", show_default=True)
@click.option(
    "--where",
    default="input",
    show_default=True,
    help="input (in-NINR), all (full-NINR) or Linear/Conv names, e.g. fc1,fc2.",
)
@click.option(
    "--init-scale",
    type=float,
    default=None,
    help="NIW init bound a of U(-a, a) (default: the layer's 1/sqrt(fan_in)).",
)
@click.option(
    "--eval-every",
    type=click.IntRange(min=1),
    default=None,
    help="Steps between test evaluations (default: up to 500 per run).",
)
@click.option(
    "--hessian-every",
    type=click.IntRange(min=1),
    default=None,
    help="Steps between measurements of the top Hessian eigenvalue (default: ~20 per run).",
)
@output_options("nin-probe.h5")
def probe_command(
    arch: str,
    data: str,
    test_data: str | None,
    normalize: str,
    threads: int,
    sigma_eps: str,
    lr: str,
    seeds: str,
    epochs: int,
    batch_size: int,
    optimizer: str,
    where: str,
    init_scale: float | None,
    eval_every: int | None,
    hessian_every: int | None,
    device: str,
    output: Path,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Train one run per (σ_ε, lr, seed) with NINs, classify phases, draw the figures."""
    names = tuple(n.strip() for n in where.split(",") if n.strip())
    config = ProbeConfig(
        sigma_eps=_floats(sigma_eps, "--sigma-eps"),
        lr=_floats(lr, "--lr"),
        seeds=_ints(seeds, "--seeds"),
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        where=names[0] if len(names) == 1 and names[0] in ("input", "all") else names,
        init_scale=init_scale,
        eval_every=eval_every,
        hessian_every=hessian_every,
    )
    _fresh(output, overwrite)
    with invoked_as(command_line(click.get_current_context())):
        result = probe(
            arch,
            data,
            config,
            test_data=test_data,
            output=output,
            device=device,
            threads=threads,
            progress=not quiet,
            normalize=normalize,
        )
    click.echo(probe_text(result))
    click.echo(f"wrote {output}")
    _draw(result, output)


def _assignments(items: tuple[str, ...], what: str, example: str) -> dict[str, tuple[float, ...]]:
    """``NAME=v1,v2`` items as ``{NAME: (v1, v2)}``."""
    out: dict[str, tuple[float, ...]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name.strip():
            raise WalknoiseError(f"{what} {item!r}: write NAME=values, e.g. {what} {example}")
        out[name.strip()] = _floats(values, what)
    return out


@click.command("compare")
@_data_options
@click.option("--methods", default=",".join(METHODS), show_default=True)
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option(
    "--optimizer",
    type=click.Choice(OPTIMIZERS),
    default="sgd",
    show_default=True,
    help="sgd (vanilla, as in the NIN papers) or adam.",
)
@click.option(
    "--lr",
    default=None,
    type=float,
    help=f"Constant learning rate (default: sgd {DEFAULT_LR['sgd']:g}, adam "
    f"{DEFAULT_LR['adam']:g}); the baseline tunes it, the others use its choice.",
)
@click.option("--momentum", default=0.0, show_default=True, type=float, help="SGD momentum.")
@click.option("--epochs", default=5, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--grid",
    "grids",
    multiple=True,
    help="A method's candidates, e.g. --grid in-ninr=10,30,100 (repeatable); every method "
    "needs as many as the others.",
)
@click.option(
    "--validation-fraction",
    default=0.2,
    show_default=True,
    type=float,
    help="Share of the training data held out for tuning.",
)
@click.option(
    "--selection",
    type=click.Choice(SELECTIONS),
    default="clean",
    show_default=True,
    help="Choose candidates by clean or by mean perturbed validation accuracy.",
)
@click.option(
    "--perturbations",
    default=None,
    help=f"Test perturbations, from {', '.join(PERTURBATIONS)} (default: all that fit).",
)
@click.option(
    "--strengths",
    multiple=True,
    help="A perturbation's strengths, e.g. --strengths rotation=5,15 (repeatable); "
    "without --perturbations only the perturbations named here are tested.",
)
@click.option("--walk-sigmas", default=CompareConfig.walk_sigmas, show_default=True)
@click.option("--walk-repeats", default=2, show_default=True, type=click.IntRange(min=1))
@output_options("nin-compare.h5", device=False)
def compare_command(
    arch: str,
    data: str,
    test_data: str | None,
    normalize: str,
    threads: int,
    methods: str,
    seeds: str,
    optimizer: str,
    lr: float | None,
    momentum: float,
    epochs: int,
    batch_size: int,
    grids: tuple[str, ...],
    validation_fraction: float,
    selection: str,
    perturbations: str | None,
    strengths: tuple[str, ...],
    walk_sigmas: str,
    walk_repeats: int,
    output: Path,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Tune no regulariser, in-/full-NINR, input noise, L2 and dropout alike on a validation
    split, then test each against several perturbations and the layer walk."""
    chosen = _assignments(strengths, "--strengths", "rotation=5,15")
    if perturbations is not None:
        names = [n.strip() for n in perturbations.split(",") if n.strip()]
        chosen = {n: chosen.get(n, ()) for n in names} | {
            n: v for n, v in chosen.items() if n not in names
        }
    config = CompareConfig(
        methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
        seeds=_ints(seeds, "--seeds"),
        optimizer=optimizer,
        lr=lr,
        momentum=momentum,
        epochs=epochs,
        batch_size=batch_size,
        grids=_assignments(grids, "--grid", "in-ninr=10,30,100"),
        validation_fraction=validation_fraction,
        selection=selection,
        perturbations=chosen or None,
        walk_sigmas=walk_sigmas,
        walk_repeats=walk_repeats,
    )
    _fresh(output, overwrite)
    with invoked_as(command_line(click.get_current_context())):
        result = compare(
            arch,
            data,
            config,
            test_data=test_data,
            output=output,
            threads=threads,
            progress=not quiet,
            normalize=normalize,
        )
    click.echo(compare_text(result))
    click.echo(f"wrote {output}")
    _draw(result, output)


@click.command("plot")
@click.argument("results", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "-o",
    "--output",
    default=None,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Name the figures after this path instead of RESULTS: a probe's STEM-phases.png, "
    "STEM-niw.png and STEM-timescales.png, a comparison's STEM.png.",
)
def plot_command(results: Path, output: Path | None) -> None:
    """Redraw the figures of a `nin probe` or `nin compare` file."""
    _draw(_load(results), output or results)


def _load(path: Path) -> ProbeResult | CompareResult:
    """The probe or comparison in ``path``, told apart by its ``format`` attribute."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("format")
    except OSError:
        fmt = None  # load_probe says what is wrong with the path
    return load_compare(path) if fmt == COMPARE_FORMAT else load_probe(path)


def _draw(result: ProbeResult | CompareResult, named_after: Path) -> None:
    """The figures ``nin probe`` or ``nin compare`` write beside their results file."""
    from walknoise.nin import plots
    from walknoise.walk.plots import save_figure

    stem = named_after.with_suffix("")
    if isinstance(result, CompareResult):
        click.echo(f"wrote {save_figure(plots.compare_figure(result), f'{stem}.png')}")
        return
    for name, draw in (
        ("phases", plots.phase_diagram),
        ("niw", plots.niw_trajectories),
        ("timescales", plots.time_scales),
    ):
        click.echo(f"wrote {save_figure(draw(result), f'{stem}-{name}.png')}")
