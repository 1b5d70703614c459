"""The implicit effect of Gaussian noise injections, per parameter tensor.

Camuto, Wang, Şimşekli, Holmes & Gürbüzbalaban, "Asymmetric Heavy Tails and Implicit Bias in
Gaussian Noise Injections" (ICML 2021, arXiv 2102.07006). Training with Gaussian noise ε
injected into activations follows ∇L(w, ε), which splits into the gradient of the
noise-averaged loss E_ε L(w, ε) (an explicit regulariser) and the *implicit effect*
∇[L(w, ε) − E_ε L(w, ε)], a gradient noise the paper finds heavy-tailed and asymmetric.

For each mini-batch we take K draws ε_1..ε_K and keep g_k = ∇L(w, ε_k) − mean_j ∇L(w, ε_j).
This is the leave-one-out version ∇L(w, ε_k) − mean_{j≠k} ∇L(w, ε_j) times (K−1)/K, so
after standardisation it is the same sample, at K backward passes instead of 2K.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import xarray as xr
from torch import Tensor, nn

from walknoise.data import Normalization, data_normalization, resolve_data
from walknoise.data_norm import NONE
from walknoise.devices import resolve_device
from walknoise.errors import WalknoiseError
from walknoise.gni import store as gni_store
from walknoise.gni.result import GNIResult, load_gni
from walknoise.gni.spec import LOSSES, PARAMS, Criterion, GNISpec, criterion
from walknoise.gni.stable import stable_into
from walknoise.gni.tails import (
    histogram,
    robust_columns,
    standardize,
    standardize_columns,
    summarize,
)
from walknoise.io import netcdf
from walknoise.noise.inject import cell_seed, inject, make_generator
from walknoise.noise.kinds import make_noise
from walknoise.noise.points import INPUT, discover, select
from walknoise.noise.sites import split_point
from walknoise.progress import progress_bar, tqdm
from walknoise.types import NoiseKind
from walknoise.walk.spec import parse_sigmas

__all__ = [
    "LOSSES",
    "PARAMS",
    "Criterion",
    "GNIResult",
    "GNISpec",
    "criterion",
    "draw_gradients",
    "gradient_noise",
    "injection_points",
    "load_gni",
    "measure",
    "noisy_loss",
    "parameter_layers",
    "run_gni",
]

ACTIVATIONS: tuple[type[nn.Module], ...] = (
    *(nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU),
    *(nn.Mish, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Softplus),
)
# TailStats' fields, in order, as results-file variables
_STAT_VARS = ("alpha_block", "skewness", "kurtosis", "n_samples")


def injection_points(
    model: nn.Module,
    input_shape: Sequence[int],
    layers: Sequence[str] | None = None,
    device: torch.device | str = "cpu",
) -> list[str]:
    """``layers`` resolved to point names; by default the input and every activation output."""
    found = discover(model, input_shape, device)
    if layers:
        return [p.name for p in select(found, layers)]
    modules = dict(model.named_modules())
    acts = [
        p.name
        for p in found
        if p.name != INPUT
        and isinstance(modules[split_point(p.name)[0]], ACTIVATIONS)
        and p.default
    ]
    return [INPUT, *acts]


def parameter_layers(model: nn.Module, which: str = "weights") -> list[tuple[str, nn.Parameter]]:
    """The parameter tensors to analyse, by ``named_parameters()`` name."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if which == "weights":
        named = [(n, p) for n, p in named if p.dim() >= 2]
    if not named:
        raise WalknoiseError(
            f"the model has no trainable {which!r} parameters; use params='all' or another model",
            argument="params",
        )
    return named


def noisy_loss(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    points: Sequence[str],
    noise: NoiseKind,
    sigma: float,
    draws: int,
    generator: torch.Generator | None,
    loss: str = "cross_entropy",
    ratio: float = 0.5,
) -> tuple[Tensor, Tensor]:
    """Mean of L(w, ε_k) over ``draws`` independent draws, and the first draw's outputs.

    The draws run as one forward pass on ``draws`` stacked copies of the batch; with
    ``draws=1`` this is the plain GNI loss, with many it approaches the noise-averaged loss.
    """
    stacked = x.repeat(draws, *([1] * (x.dim() - 1)))
    with inject(model, list(points), make_noise(noise, ratio), sigma, generator=generator):
        out = model(stacked)
    target = y.repeat(draws, *([1] * (y.dim() - 1)))
    return criterion(loss)(out, target).mean(), out[: len(x)]


def _batches(x: Tensor, y: Tensor, spec: GNISpec) -> list[tuple[Tensor, Tensor]]:
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(spec.seed))
    size = min(spec.batch_size, len(x))
    count = max(1, min(spec.batches, len(x) // size))
    picks = [order[i * size : (i + 1) * size].to(x.device) for i in range(count)]
    return [(x[idx], y[idx]) for idx in picks]


def _coords(params: Sequence[tuple[str, nn.Parameter]], spec: GNISpec) -> list[Tensor]:
    out = []
    for name, p in params:
        idx = torch.arange(p.numel())
        if p.numel() > spec.max_coords:
            gen = make_generator(cell_seed(spec.seed, name, 0))
            idx = torch.randperm(p.numel(), generator=gen)[: spec.max_coords].sort().values
        out.append(idx.to(p.device))
    return out


def draw_gradients(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    tensors: Sequence[Tensor],
    draws: int,
    loss: str = "cross_entropy",
    coords: Sequence[Tensor] | None = None,
) -> tuple[list[Tensor], float]:
    """∇L(w, ε_k) for ``draws`` forward passes, one row per draw, and the mean loss.

    Noise comes from whatever hooks are attached (``inject``); each forward draws afresh.
    ``coords`` picks entries of each flattened tensor. ``.grad`` fields are not touched.
    """
    picks = coords if coords is not None else [torch.arange(t.numel()) for t in tensors]
    rows = [torch.empty(draws, len(i), dtype=t.dtype) for t, i in zip(tensors, picks, strict=True)]
    crit, total = criterion(loss), 0.0
    for k in range(draws):
        value = crit(model(x), y).mean()
        parts = torch.autograd.grad(value, list(tensors), allow_unused=True)
        for row, g, idx in zip(rows, parts, picks, strict=True):
            row[k] = 0.0 if g is None else g.detach().reshape(-1)[idx].cpu()
        total += float(value.detach())
    return rows, total / draws


def _collect(
    model: nn.Module,
    batches: Sequence[tuple[Tensor, Tensor]],
    points: Sequence[str],
    params: Sequence[tuple[str, nn.Parameter]],
    coords: Sequence[Tensor],
    spec: GNISpec,
    sigma: float,
    bar: tqdm[Any],
) -> tuple[list[npt.NDArray[np.float32]], float]:
    """Per-draw gradients, each parameter as (batch, draw, coordinate), and the mean loss."""
    grads = [np.empty((len(batches), spec.draws, len(i)), dtype=np.float32) for i in coords]
    tensors = [p for _, p in params]
    # The same ε stream for every σ (common random numbers): curves over σ are smooth.
    gen = make_generator(cell_seed(spec.seed, "gni-noise", 0), tensors[0].device)
    total = 0.0
    with inject(model, list(points), make_noise(spec.noise, spec.ratio), sigma, generator=gen):
        for b, (xb, yb) in enumerate(batches):
            rows, mean_loss = draw_gradients(model, xb, yb, tensors, spec.draws, spec.loss, coords)
            for j, row in enumerate(rows):
                grads[j][b] = row.numpy()
            total += mean_loss
            bar.update(1)
    return grads, total / len(batches)


def _fill(
    ds: xr.Dataset,
    cell: tuple[int, int],
    g: npt.NDArray[np.float32],
    rng: np.random.Generator,
    bootstrap: int,
) -> None:
    """Statistics of one parameter tensor's gradient noise at one σ, written into ``ds``."""
    raw = g.astype(np.float64)
    raw -= raw.mean(axis=1, keepdims=True)  # the implicit effect: minus the mean over draws
    # Coordinates the noise never moves (e.g. behind a dead ReLU) are not noise; drop them.
    live = np.broadcast_to(np.any(raw != 0, axis=1, keepdims=True), raw.shape)
    j, i = cell
    if not live.any():
        return
    z = standardize(raw[live])
    # Per coordinate (each batch's coordinate over its draws): by its std, then by its MAD.
    own = standardize_columns(raw, axis=1)[live]
    robust = robust_columns(raw, axis=1)[live]
    for m, sample in enumerate((z, own, standardize(robust[np.isfinite(robust)]))):
        st = summarize(sample, rng)
        for name, value in zip(_STAT_VARS, asdict(st).values(), strict=True):
            ds[name].values[j, i, 0, m] = value
    ds["rms"].values[j, i, 0] = math.sqrt(float(np.mean(raw**2)))
    ds["histogram"].values[j, i, 0], ds["hist_outside"].values[j, i, 0] = histogram(z)
    # The paper's statistics: one stable law per tensor on the pooled noise (its scale does
    # not matter: the fit is location/scale invariant); then the same after each coordinate
    # is divided by its MAD over the draws, which leaves a stable law's α unchanged but
    # takes out the spread of scales between coordinates (a scale mixture reads heavier).
    stable_into(ds, cell, "", raw, live, rng, bootstrap)
    mad = robust_columns(raw, axis=1)
    stable_into(ds, cell, "_mad", mad, live & np.isfinite(mad), rng, bootstrap)


def _clean_loss(model: nn.Module, batches: Sequence[tuple[Tensor, Tensor]], loss: str) -> float:
    crit = criterion(loss)
    with torch.no_grad():
        return float(np.mean([float(crit(model(xb), yb).mean()) for xb, yb in batches]))


def measure(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    spec: GNISpec,
    points: Sequence[str],
    *,
    step: int = 0,
    attrs: dict[str, Any] | None = None,
    progress: bool = False,
) -> xr.Dataset:
    """Gradient-noise statistics of ``model`` as it is now, at every σ of ``spec``.

    Runs in eval mode (BatchNorm uses running statistics, nothing else changes) and restores
    the caller's mode; parameter ``.grad`` fields are left untouched.
    """
    params = parameter_layers(model, spec.params)
    coords = _coords(params, spec)
    batches = _batches(x, y, spec)
    attrs = dict(attrs or {})
    ds = gni_store.empty([n for n, _ in params], spec.sigmas, step, attrs)
    ds["param_size"].values[:] = [p.numel() for _, p in params]
    ds["param_coords"].values[:] = [len(c) for c in coords]
    was_training = model.training
    model.eval()
    total = len(spec.sigmas) * len(batches)
    try:
        ds["loss_clean"].values[0] = _clean_loss(model, batches, spec.loss)
        with progress_bar(total=total, unit="batch", desc="gni", disable=not progress) as bar:
            for i, sigma in enumerate(spec.sigmas):
                grads, noisy = _collect(model, batches, points, params, coords, spec, sigma, bar)
                ds["loss_noisy"].values[i, 0] = noisy
                for j, (name, _) in enumerate(params):
                    rng = np.random.default_rng(cell_seed(spec.seed, name, step))
                    _fill(ds, (j, i), grads[j], rng, spec.bootstrap)
    finally:
        model.train(was_training)
    return ds


def normalization_for(data: Any, loss: str, normalize: str | Normalization) -> Normalization:
    """What ``normalize`` means for GNI ``data``; the ``mse`` pair is used as given."""
    if loss == "mse" and normalize not in ("none", NONE):
        raise WalknoiseError(
            "normalize applies to classification data; scale x yourself for the mse loss",
            argument="normalize",
        )
    return NONE if loss == "mse" else data_normalization(normalize, data)


def tensors_of(data: Any, loss: str, normalize: Normalization = NONE) -> tuple[Tensor, Tensor, str]:
    """``(x, y, name)``: classification data via ``resolve_data`` (``mnist`` = its train
    split, what SGD sees; rescaled by ``normalize``), or a float ``(x, y)`` pair for the
    ``mse`` loss."""
    if loss != "mse":
        td = resolve_data("mnist:train" if data == "mnist" else data, normalize=normalize)
        return td.x, td.y, td.name
    if not isinstance(data, tuple | list) or len(data) != 2:
        raise WalknoiseError("the mse loss needs data as an (x, y) pair of float tensors")
    x, y = (torch.as_tensor(v, dtype=torch.float32) for v in data)
    if len(x) == 0 or len(x) != len(y):
        raise WalknoiseError(f"x has {len(x)} samples and y {len(y)}; they must match, N >= 1")
    return x, y, "in-memory regression data"


def run_gni(
    model: nn.Module,
    data: Any,
    spec: GNISpec,
    *,
    output: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
    step: int = 0,
    normalize: str | Normalization = "none",
) -> GNIResult:
    """Measure ``spec`` on ``model`` (the CLI and :func:`gradient_noise` both end here);
    ``normalize`` rescales the inputs (``"none"``, ``"pm1"``, ``"standard"``), recorded."""

    if output is not None and Path(output).exists() and not overwrite:
        fix = "pass overwrite=True to replace it or choose another output"
        raise WalknoiseError(f"{output} exists; {fix}", argument="overwrite")
    device = resolve_device(spec.device)
    norm = normalization_for(data, spec.loss, normalize)
    x, y, name = tensors_of(data, spec.loss, norm)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    model = model.to(device)
    points = injection_points(model, tuple(x.shape[1:]), spec.layers, device)
    attrs = gni_store.file_attrs(spec.to_dict(), points, name, len(x)) | norm.attrs()
    x, y = x.to(device, dtype), y.to(device)
    ds = measure(model, x, y, spec, points, step=step, attrs=attrs, progress=progress)
    if output is not None:
        netcdf.save(output, ds)
    return GNIResult(ds)


def gradient_noise(
    model: nn.Module,
    data: Any = "mnist",
    *,
    noise: NoiseKind = "additive",
    sigma: float | Sequence[float] | str = 0.1,
    layers: Sequence[str] | None = None,
    draws: int = 100,
    output: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
    normalize: str | Normalization = "none",
    **options: Any,
) -> GNIResult:
    """Per-parameter-tensor statistics of the implicit gradient noise of GNI.

    ``sigma`` is one level, a list, or a grid string (``"log:1e-2:1:5"``). Further
    ``options`` are :class:`GNISpec` fields (``batches``, ``batch_size``, ``params``,
    ``loss``, ``seed``, ``bootstrap``, ``max_coords``, ``ratio``, ``device``).
    ``normalize`` rescales the inputs: ``"none"`` (MNIST in [0, 1]), ``"pm1"`` or
    ``"standard"``.

    >>> res = gradient_noise(model, "mnist", noise="multiplicative", sigma=0.1)
    >>> res.table()   # stable-fit α, β (with intervals), block α, skewness per tensor and σ
    """
    if isinstance(sigma, str):
        sigmas = parse_sigmas(sigma)
    elif isinstance(sigma, int | float):
        sigmas = (float(sigma),)
    else:
        sigmas = tuple(float(s) for s in sigma)
    spec = GNISpec(
        sigmas=sigmas, noise=noise, layers=tuple(layers) if layers else None, draws=draws, **options
    )
    return run_gni(
        model, data, spec, output=output, overwrite=overwrite, progress=progress,
        normalize=normalize,
    )  # fmt: skip
