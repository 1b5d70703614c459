"""``walknoise.scan``: plan a walk, run it layer by layer, keep each finished layer on disk."""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn
from tqdm.auto import tqdm

import walknoise
from walknoise import store
from walknoise.data import TensorData, resolve_data
from walknoise.errors import WalknoiseError
from walknoise.metrics import layer_midpoint
from walknoise.noise import make_noise
from walknoise.points import Point, discover, select
from walknoise.result import Result
from walknoise.runner import Clean, LayerCells, LayerRunner, clean_pass, entries
from walknoise.spec import ScanSpec, parse_sigmas


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` (must exist) or ``auto`` (cuda when present)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise WalknoiseError(
            "--device cuda was asked for but no CUDA GPU is visible; "
            "use --device cpu or --device auto"
        )
    try:
        return torch.device(name)
    except RuntimeError:
        raise WalknoiseError(f"unknown device {name!r}; use cpu, cuda or auto") from None


def model_fingerprint(model: nn.Module) -> str:
    """sha256 over the state dict (names, dtypes, shapes, bytes): the model's identity."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def scan(
    model: nn.Module,
    data: Any = "mnist",
    *,
    noise: str = "additive",
    sigmas: str | Sequence[float] = "log:1e-2:1e3:31",
    layers: Sequence[str] | None = None,
    repeats: int = 5,
    output: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    command: str | None = None,
    **options: Any,
) -> Result:
    """Evaluate ``model`` with noise at each layer (and all at once) over a σ grid.

    ``data`` is a name (``"mnist"``), an ``(x, y)`` pair, a ``Dataset``/``DataLoader`` or a
    ``.pt``/``.npz`` path. Further ``options`` are ``ScanSpec`` fields (``ratio``, ``types``,
    ``relative``, ``include_global``, ``seed``, ``batch_size``, ``max_batch``, ``device``).
    With ``output``, each finished layer is written at once and a rerun resumes.
    """
    grid = parse_sigmas(sigmas) if isinstance(sigmas, str) else tuple(float(s) for s in sigmas)
    for key in ("types",):
        if options.get(key) is not None:
            options[key] = tuple(options[key])
    spec = ScanSpec(
        sigmas=grid,
        noise=noise,
        repeats=repeats,
        layers=tuple(layers) if layers else None,
        **options,
    )
    return run_spec(
        model, data, spec, output=output, overwrite=overwrite, progress=progress, command=command
    )


def run_spec(
    model: nn.Module,
    data: Any,
    spec: ScanSpec,
    *,
    output: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    command: str | None = None,
) -> Result:
    """Run a ``ScanSpec`` (the CLI and ``scan`` both end here)."""
    device = resolve_device(spec.device)
    td = resolve_data(data)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    model = model.to(device).eval()
    x, y = td.x.to(device=device, dtype=dtype), td.y.to(device)
    found = discover(model, td.input_shape, device)
    chosen = [p.name for p in select(found, spec.layers, spec.types)]
    clean = clean_pass(model, x, y, chosen, spec.batch_size)
    axis = entries(chosen, spec.include_global)
    scales = {p: (clean.output_std[p] if spec.relative else 1.0) for p in chosen}
    identity = {
        **spec.identity(),
        "model_sha256": model_fingerprint(model),
        "data": td.name,
        "n_samples": len(td),
    }
    attrs = _attrs(spec, identity, clean, td, command)
    ds = _prepare(
        Path(output) if output else None,
        axis,
        spec,
        attrs,
        identity,
        scales,
        overwrite,
        _types(model, axis),
    )
    runner = LayerRunner(
        model,
        x,
        y,
        make_noise(spec.noise, spec.ratio),
        spec.sigmas,
        batch_size=spec.batch_size,
        max_batch=spec.max_batch,
        widths=widest_after(found),
    )
    todo = [i for i, done in enumerate(ds["layer_done"].values) if not done]
    total = len(todo) * spec.repeats * len(spec.sigmas)
    with tqdm(total=total, unit="cell", disable=not progress, desc="scan") as bar:
        for i in todo:
            layer = axis[i]
            bar.set_postfix_str(layer)
            points = chosen if layer == "<global>" else [layer]
            cells = runner.run(
                layer, points, [scales[p] for p in points], spec.seed, spec.repeats, bar
            )
            values = _layer_values(cells, spec, clean, scales.get(layer, float("nan")))
            if output:
                store.write_layer(Path(output), i, values)
            for name, value in values.items():
                ds[name][i] = value
            ds["layer_done"][i] = 1
    return Result(ds)


def widest_after(points: Sequence[Point]) -> dict[str, int]:
    """Per point, the largest per-sample activation from it to the output (forward order)."""
    widest, out = 1, {}
    for p in reversed(points):
        widest = max(widest, math.prod(p.shape))
        out[p.name] = widest
    return out


def _layer_values(cells: LayerCells, spec: ScanSpec, clean: Clean, scale: float) -> dict[str, Any]:
    chance = 1.0 / clean.num_classes
    mid = layer_midpoint(np.asarray(spec.sigmas), cells.accuracy, clean.accuracy, chance)
    return {
        "accuracy": cells.accuracy,
        "accuracy_drop": clean.accuracy - cells.accuracy,
        "loss": cells.loss,
        "nonfinite_fraction": cells.nonfinite_fraction,
        "midpoint": mid.value,
        "midpoint_status": mid.status,
        "midpoint_low": mid.low,
        "midpoint_high": mid.high,
        "midpoint_per_repeat": mid.per_repeat,
        "layer_scale": scale,
    }


def _types(model: nn.Module, axis: Sequence[str]) -> list[str]:
    modules = dict(model.named_modules())
    special = {"<input>": "Input", "<global>": "Global"}
    return [special.get(n) or type(modules[n]).__name__ for n in axis]


def _attrs(
    spec: ScanSpec, identity: dict[str, Any], clean: Clean, td: TensorData, command: str | None
) -> dict[str, Any]:
    return {
        "format": store.FORMAT,
        "format_version": store.FORMAT_VERSION,
        "title": "walknoise layer-wise noise scan",
        "walknoise_version": walknoise.__version__,
        "torch_version": str(torch.__version__),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command or " ".join(sys.argv),
        "config": json.dumps(
            {"identity": identity, "runtime": {"device": spec.device, "max_batch": spec.max_batch}},
            sort_keys=True,
        ),
        "model_sha256": identity["model_sha256"],
        "data": td.name,
        "n_samples": len(td),
        "noise": spec.noise,
        "noise_ratio": spec.ratio if spec.noise == "combined" else float("nan"),
        "sigma_mode": "relative" if spec.relative else "absolute",
        "seed": spec.seed,
        "clean_accuracy": clean.accuracy,
        "clean_loss": clean.loss,
        "num_classes": clean.num_classes,
        "chance_accuracy": 1.0 / clean.num_classes,
    }


def _prepare(
    path: Path | None,
    axis: list[str],
    spec: ScanSpec,
    attrs: dict[str, Any],
    identity: dict[str, Any],
    scales: dict[str, float],
    overwrite: bool,
    types: list[str],
) -> xr.Dataset:
    """The in-memory grid: fresh, or the finished layers of a file being resumed."""
    coords = {"layer": axis, "sigma": list(spec.sigmas), "repeat": list(range(spec.repeats))}
    if path is not None and path.exists() and not overwrite:
        header = store.read_header(path)
        stored = store.config_of(header)
        if stored != json.loads(json.dumps(identity)):
            diff = sorted(
                k
                for k in set(stored) | set(identity)
                if stored.get(k) != json.loads(json.dumps(identity.get(k)))
            )
            raise WalknoiseError(
                f"{path} holds a scan with a different config (differs in: {', '.join(diff)}); "
                "pass --overwrite to replace it, or choose another -o path"
            )
        return store.read(path)
    if path is not None:
        store.create(path, coords, types, attrs)
        return store.read(path)
    ds = _empty(coords, types, attrs)
    return ds


def _empty(coords: dict[str, Any], types: list[str], attrs: dict[str, Any]) -> xr.Dataset:
    shape = {k: len(v) for k, v in coords.items()}
    variables: dict[str, Any] = {}
    for name, (dims, long_name, units) in store.VARIABLES.items():
        integer = name in store.INT_VARS
        arr = np.full(
            [shape[d] for d in dims],
            0 if integer else np.nan,
            dtype=np.int8 if integer else np.float64,
        )
        variables[name] = (dims, arr, {"long_name": long_name, "units": units})
    variables["layer_type"] = (("layer",), np.array(types))
    return xr.Dataset(variables, coords=coords, attrs=attrs)
