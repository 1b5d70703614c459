"""``walknoise.nin.compare``: NINR against the usual regularisers, on one architecture.

Every method trains the same architecture from the same initial weights and data order per
seed, with the project's recipe (:func:`walknoise.training.train_model`: Adam, cosine
schedule); only the regulariser differs. Each trained model is then evaluated *without* any
training-time noise: clean test accuracy, accuracy under Gaussian noise added to the test
inputs at several σ, and the per-layer midpoint from a walk (:func:`walknoise.scan`).
This is the comparison table of the NINR paper (Levi et al., ICLR 2023), on bundled data.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.hooks import RemovableHandle

from walknoise.data import TensorData
from walknoise.errors import WalknoiseError
from walknoise.io.result import ResultBase
from walknoise.nin.model import NINModel, attach_nins
from walknoise.nin.probe import ModelFactory, model_factory, train_test_data
from walknoise.nin.results import file_attrs
from walknoise.nin.train import torch_threads
from walknoise.noise.inject import inject
from walknoise.progress import progress_bar
from walknoise.training import TrainConfig, evaluate, seeded_init, train_model
from walknoise.walk.driver import scan
from walknoise.walk.spec import parse_sigmas

__all__ = ["FORMAT", "METHODS", "CompareConfig", "CompareResult", "compare", "load_compare"]

FORMAT = "walknoise-nin-compare"
FORMAT_VERSION = 1
METHODS = ("none", "in-ninr", "full-ninr", "input-noise", "l2", "dropout")
ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh,
    nn.Sigmoid, nn.Hardtanh, nn.Softplus, nn.PReLU,
)  # fmt: skip


@dataclass(frozen=True)
class CompareConfig:
    """Methods, seeds and every method's hyper-parameter; invalid values raise."""

    methods: tuple[str, ...] = METHODS
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 5
    lr: float = 1e-3
    batch_size: int = 64
    nin_sigma: float = 100.0
    """σ_ε of in-NINR and full-NINR (NIWs start like the layer's weights)."""
    input_noise: float = 1.0
    """σ of the Gaussian noise added to every training input (inputs span [-1, 1])."""
    weight_decay: float = 5e-4
    """Adam's L2 penalty for ``l2``."""
    dropout: float = 0.2
    """Drop probability after every hidden activation for ``dropout``."""
    test_sigmas: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    """σ of the Gaussian noise on the test inputs."""
    walk_sigmas: str = "log:1e-2:1e2:17"
    walk_repeats: int = 2

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods or len(set(self.methods)) != len(self.methods):
            raise WalknoiseError(
                f"methods {list(self.methods)}: name each once from {', '.join(METHODS)}"
            )
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise WalknoiseError(f"seeds {list(self.seeds)}: give at least one, each once")
        sigmas = self.test_sigmas
        checks = (
            (self.epochs >= 1, f"epochs is {self.epochs}; use at least 1"),
            (self.lr > 0, f"learning rate is {self.lr}; use a positive value such as 1e-3"),
            (self.batch_size >= 1, f"batch size is {self.batch_size}; use at least 1"),
            (_pos(self.nin_sigma), f"NIN σ_ε is {self.nin_sigma}; use a positive value"),
            (_pos(self.input_noise), f"input noise is {self.input_noise}; use a positive σ"),
            (_pos(self.weight_decay), f"weight decay is {self.weight_decay}; use a positive value"),
            (0 < self.dropout < 1, f"dropout is {self.dropout}; use a probability in (0, 1)"),
            (bool(sigmas) and all(_pos(s) for s in sigmas), "test σ values must be positive"),
            (self.walk_repeats >= 1, "walk repeats must be at least 1"),
        )
        for ok, message in checks:
            if not ok:
                raise WalknoiseError(message)
        parse_sigmas(self.walk_sigmas)  # a bad grid fails now, not after the training
        object.__setattr__(self, "methods", tuple(self.methods))
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "test_sigmas", tuple(sorted(float(s) for s in sigmas)))

    def describe(self) -> dict[str, str]:
        """Each method with its stated hyper-parameters."""
        every = {
            "none": "no regulariser",
            "in-ninr": f"NIN on the first Linear/Conv, σ_ε = {self.nin_sigma:g}",
            "full-ninr": f"NIN on every Linear/Conv, σ_ε = {self.nin_sigma:g}",
            "input-noise": f"Gaussian noise σ = {self.input_noise:g} on training inputs",
            "l2": f"L2 weight decay {self.weight_decay:g} (Adam)",
            "dropout": f"dropout p = {self.dropout:g} after each hidden activation",
        }
        return {m: every[m] for m in self.methods}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pos(value: float) -> bool:
    return math.isfinite(value) and value > 0


@contextmanager
def _dropout(model: nn.Module, p: float, seed: int) -> Iterator[None]:
    """Seeded dropout on every activation's output while training (hooks, so the module
    names a walk reports stay those of the bare model); removed on exit."""
    gen = torch.Generator().manual_seed(seed)

    def hook(module: nn.Module, _inputs: object, out: Tensor) -> Tensor | None:
        if not module.training:
            return None
        keep = torch.rand(out.shape, generator=gen) >= p
        return out * keep.to(out.device, out.dtype) / (1 - p)

    acts = [m for m in model.modules() if isinstance(m, ACTIVATIONS)]
    if not acts:
        raise WalknoiseError("dropout needs activation modules (e.g. nn.ReLU) in the model")
    handles: list[RemovableHandle] = [m.register_forward_hook(hook) for m in acts]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _noisy_inputs(sigma: float, seed: int) -> Callable[..., tuple[Tensor, Tensor]]:
    gen = torch.Generator().manual_seed(seed)

    def loss_fn(model: nn.Module, xb: Tensor, yb: Tensor) -> tuple[Tensor, Tensor]:
        noise = torch.randn(xb.shape, generator=gen).to(xb.device, xb.dtype)
        logits = model(xb + sigma * noise)
        return F.cross_entropy(logits, yb), logits

    return loss_fn


def train_method(
    method: str, factory: ModelFactory, train: TensorData, cfg: CompareConfig, seed: int
) -> tuple[nn.Module, float]:
    """Train one (method, seed); returns the bare model and its final NIW norm (or NaN)."""
    with seeded_init(seed):
        model = factory()
    wd = cfg.weight_decay if method == "l2" else 0.0
    tc = TrainConfig(cfg.epochs, cfg.lr, cfg.batch_size, seed, weight_decay=wd)
    target: nn.Module = model
    if method in ("in-ninr", "full-ninr"):
        where = "input" if method == "in-ninr" else "all"
        target = attach_nins(model, where, sigma_eps=cfg.nin_sigma, seed=seed)
    loss_fn = _noisy_inputs(cfg.input_noise, seed) if method == "input-noise" else None
    if method == "dropout":
        with _dropout(model, cfg.dropout, seed):
            train_model(model, train.x, train.y, tc, progress=False)
    else:
        train_model(target, train.x, train.y, tc, progress=False, loss_fn=loss_fn)
    if isinstance(target, NINModel):
        niw = float(target.niw_norms().norm())
        return target.remove().eval(), niw
    return model.eval(), float("nan")


def noisy_accuracy(
    model: nn.Module, test: TensorData, sigmas: Sequence[float], seed: int = 0
) -> list[float]:
    """Accuracy with Gaussian noise of each σ added to the inputs (one seeded draw each)."""
    out = []
    for sigma in sigmas:
        gen = torch.Generator().manual_seed(seed)  # the same ε for every model: fair
        with inject(model, "<input>", "additive", sigma=sigma, generator=gen):
            out.append(evaluate(model, test.x, test.y)[0])
    return out


def compare(
    arch: str | ModelFactory = "mlp",
    data: Any = "mnist",
    config: CompareConfig | None = None,
    *,
    test_data: Any = None,
    output: str | Path | None = None,
    threads: int | None = None,
    progress: bool = True,
) -> CompareResult:
    """Train every (method, seed) of ``config``, evaluate, and return the table's numbers."""
    cfg = config or CompareConfig()
    if output is not None and not Path(output).parent.is_dir():
        raise WalknoiseError(f"directory {Path(output).parent} does not exist; create it first")
    train, test = train_test_data(data, test_data)
    factory = model_factory(arch, train)
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    with torch_threads(threads):
        cells = [(i, k) for i in range(len(cfg.methods)) for k in range(len(cfg.seeds))]
        for i, k in progress_bar(cells, desc="nin compare", unit="model", disable=not progress):
            rows[i, k] = _evaluate_cell(cfg.methods[i], factory, train, test, cfg, cfg.seeds[k])
    result = CompareResult(_dataset(cfg, rows, _attrs(cfg, arch, train, test)))
    if output is not None:
        result.save(output)
    return result


def _evaluate_cell(
    method: str,
    factory: ModelFactory,
    train: TensorData,
    test: TensorData,
    cfg: CompareConfig,
    seed: int,
) -> dict[str, Any]:
    start = time.perf_counter()
    model, niw = train_method(method, factory, train, cfg, seed)
    seconds = time.perf_counter() - start
    accuracy, loss = evaluate(model, test.x, test.y)
    walk = scan(
        model, test, sigmas=cfg.walk_sigmas, repeats=cfg.walk_repeats, progress=False, seed=seed
    )
    mids = walk.midpoints()
    return {
        "clean_accuracy": accuracy,
        "clean_loss": loss,
        "noisy_accuracy": noisy_accuracy(model, test, cfg.test_sigmas, seed),
        "layers": list(mids.index),
        "midpoint": mids["midpoint"].to_numpy(dtype=np.float64),
        "midpoint_status": mids["status"].to_numpy(dtype=np.int8),
        "niw_norm_end": niw,
        "train_seconds": seconds,
        "walk_sigma_max": float(walk.sigmas.max()),
    }


COORDS = {
    "method": ("training method (regulariser)", ""),
    "seed": ("seed of initial weights, data order and training noise", "1"),
    "sigma": ("std of Gaussian noise added to the test inputs", "1"),
    "layer": ("injection point of the walk (named_modules() name, <input> or <global>)", ""),
}
VARIABLES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "clean_accuracy": (("method", "seed"), "clean test accuracy", "1"),
    "clean_loss": (("method", "seed"), "clean test cross-entropy", "nat"),
    "noisy_accuracy": (("method", "seed", "sigma"), "test accuracy with noisy inputs", "1"),
    "midpoint": (("method", "seed", "layer"), "midpoint noise level of the walk", "sigma"),
    "midpoint_status": (
        ("method", "seed", "layer"),
        "1 reached in grid, 0 not reached (> sigma max), -1 at or below sigma min",
        "1",
    ),
    "niw_norm_end": (("method", "seed"), "total NIW norm after training (NINR only)", "1"),
    "train_seconds": (("method", "seed"), "wall time of training", "s"),
}


def _dataset(
    cfg: CompareConfig, rows: dict[tuple[int, int], dict[str, Any]], attrs: dict[str, Any]
) -> xr.Dataset:
    layers: list[str] = rows[0, 0]["layers"]
    shape = {"method": len(cfg.methods), "seed": len(cfg.seeds)}
    shape.update(sigma=len(cfg.test_sigmas), layer=len(layers))
    data_vars: dict[str, Any] = {}
    for name, (dims, long_name, units) in VARIABLES.items():
        integer = name == "midpoint_status"
        arr = np.zeros([shape[d] for d in dims], dtype=np.int8 if integer else np.float64)
        for (i, k), row in rows.items():
            arr[i, k] = row[name]
        data_vars[name] = (dims, arr, {"long_name": long_name, "units": units})
    coords = {
        "method": list(cfg.methods),
        "seed": np.array(cfg.seeds),
        "sigma": np.array(cfg.test_sigmas),
        "layer": layers,
    }
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    ds.attrs["walk_sigma_max"] = rows[0, 0]["walk_sigma_max"]
    for name, (long_name, units) in COORDS.items():
        ds[name].attrs.update(long_name=long_name, units=units)
    return ds


def _attrs(
    cfg: CompareConfig,
    arch: str | ModelFactory,
    train: TensorData,
    test: TensorData,
) -> dict[str, Any]:
    title = "walknoise comparison of NINR with other regularisers"
    return file_attrs(FORMAT, FORMAT_VERSION, title, cfg.to_dict(), arch, train, test) | {
        "methods": json.dumps(cfg.describe()),
        "optimizer": "Adam (cosine schedule)",
        "epochs": cfg.epochs,
    }


class CompareResult(ResultBase):
    """A comparison's numbers; everything is in ``dataset`` (an ``xarray.Dataset``)."""

    FORMAT = FORMAT
    FORMAT_VERSION = FORMAT_VERSION
    WHAT = "NIN comparison"
    CELL = ("method", "seed")

    @property
    def methods(self) -> list[str]:
        return [str(m) for m in self.dataset["method"].values]

    def describe(self) -> dict[str, str]:
        """Each method's stated hyper-parameters."""
        described: dict[str, str] = json.loads(self.dataset.attrs["methods"])
        return described

    def _describe(self) -> str:
        ds = self.dataset
        return (
            f"{', '.join(self.methods)} × {ds.sizes['seed']} seeds, "
            f"{ds.attrs.get('arch')} on {ds.attrs.get('data')}"
        )


def load_compare(path: str | Path) -> CompareResult:
    """Read a comparison written by :func:`compare` or ``walknoise nin compare``."""
    return CompareResult.load(path)
