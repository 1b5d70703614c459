"""Statistics of the reproduction: every finding as a number with a 95% interval over seeds.

Seeds are independent trainings, so the interval of a mean over seeds is Student's t with
n − 1 degrees of freedom (n = 3: the half-width is 2.5 standard deviations). Midpoints and
ratios are averaged in log σ (geometric means), accuracies and fractions linearly. Each
per-seed midpoint keeps its bracket: the two evaluated σ it interpolates between.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

import walknoise
from walknoise.walk.metrics import midpoint

CHANCE = 0.1  # MNIST's 10 classes


def sig(x: float, digits: int = 4) -> float | None:
    """``x`` to ``digits`` significant digits; None for NaN/inf (JSON has no NaN)."""
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.{digits}g}")


def interval(values: Sequence[float], log: bool = False, unit: bool = False) -> dict[str, Any]:
    """Mean over seeds with a t-based 95% interval (in log10 when ``log``; cut to [0, 1]
    when ``unit``, for accuracies and fractions).

    Non-finite values (a midpoint not reached in the grid) are counted apart and left out.
    """
    v = np.asarray(values, dtype=float)
    ok = v[np.isfinite(v) & ((v > 0) if log else True)]
    out: dict[str, Any] = {"per_seed": [sig(x) for x in v], "n": int(ok.size)}
    out["not_finite"] = int(v.size - ok.size)
    if ok.size == 0:
        return out | {"mean": None, "low": None, "high": None}
    w = np.log10(ok) if log else ok
    m = float(w.mean())
    half = (
        float(stats.t.ppf(0.975, ok.size - 1) * w.std(ddof=1) / math.sqrt(ok.size))
        if ok.size > 1
        else math.nan
    )
    low, high = m - half, m + half
    if log:
        m, low, high = 10**m, 10**low, 10**high
    if unit:
        low, high = max(low, 0.0), min(high, 1.0)
    return out | {"mean": sig(m), "low": sig(low), "high": sig(high)}


def overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two intervals share a point (missing bounds overlap everything)."""
    if None in (a["low"], a["high"], b["low"], b["high"]):
        return True
    return bool(a["low"] <= b["high"] and b["low"] <= a["high"])


def seed_midpoint(sigmas: np.ndarray, acc: np.ndarray, clean: float) -> dict[str, Any]:
    """Midpoint of one seed's curve, its bracket, and ``inf`` when never reached."""
    value, status = midpoint(sigmas, acc, clean, CHANCE)
    below = np.flatnonzero(np.asarray(acc) <= CHANCE + (clean - CHANCE) / 2)
    # the two trained σ the midpoint interpolates between (each σ is one training)
    low, high = (sigmas[below[0] - 1], sigmas[below[0]]) if status == 1 else (math.nan,) * 2
    if status == 0:
        value = math.inf
    return {"value": value, "bracket": [sig(low), sig(high)], "status": int(status)}


# ---------------------------------------------------------------- (a): eval midpoints


def eval_midpoints(files: Sequence[Path]) -> dict[str, Any]:
    """Per layer, the midpoint of each seed's clean model (one file per seed) and its
    interval; pairs of layers whose intervals do not overlap."""
    results = [walknoise.load(f) for f in files]
    layers = list(results[0].layers)
    per: dict[str, list[float]] = {layer: [] for layer in layers}
    brackets: dict[str, list[Any]] = {layer: [] for layer in layers}
    statuses: dict[str, list[int]] = {layer: [] for layer in layers}
    for res in results:
        ds = res.dataset
        for layer in layers:
            value = float(ds["midpoint"].sel(layer=layer))
            status = int(ds["midpoint_status"].sel(layer=layer))
            per[layer].append(math.inf if status == 0 else value)
            brackets[layer].append(_file_bracket(ds, layer))
            statuses[layer].append(status)  # 1 reached, 0 not by σ max, -1 below σ min
    out = {
        layer: interval(per[layer], log=True)
        | {"brackets": brackets[layer], "status": statuses[layer]}
        for layer in layers
    }
    plain = [layer for layer in layers if layer != "<global>"]
    pairs = [(a, b) for i, a in enumerate(plain) for b in plain[i + 1 :]]
    apart = [[a, b] for a, b in pairs if not overlap(out[a], out[b])]
    means = {k: out[k]["mean"] for k in plain if out[k]["mean"] is not None}
    summary = {
        "pairs": len(pairs),
        "pairs_apart": len(apart),
        "lowest": min(means, key=means.__getitem__) if means else None,
        "highest": max(means, key=means.__getitem__) if means else None,
        "sigmas": [sig(s) for s in results[0].sigmas],
        "clean_accuracy": interval([r.dataset.attrs["clean_accuracy"] for r in results], unit=True),
        "normalization": str(results[0].dataset.attrs.get("data_normalization", "unrecorded")),
    }
    return {"layers": out, "summary": summary, "apart": apart}


def _file_bracket(ds: Any, layer: str) -> list[float | None]:
    if "midpoint_bracket_low" not in ds:
        return [None, None]
    return [
        sig(float(ds["midpoint_bracket_low"].sel(layer=layer))),
        sig(float(ds["midpoint_bracket_high"].sel(layer=layer))),
    ]


# ------------------------------------------------------------------ train-phase files


def trained_midpoints(ds: Any, layer: str) -> list[dict[str, Any]]:
    """Per seed, the midpoint of that seed's noise-trained curve against its clean model."""
    sigmas = np.asarray(ds["sigma"].values, dtype=float)
    acc = ds["trained_accuracy"].sel(layer=layer).values  # (sigma, repeat)
    clean = ds["clean_model_accuracy"].values
    return [seed_midpoint(sigmas, acc[:, r], float(clean[r])) for r in range(acc.shape[1])]


def own(ds: Any, layer: str) -> str | None:
    """The parametrised layer at or before the point (its weights feed the noise)."""
    owner: dict[str, str] = json.loads(str(ds.attrs.get("param_layer_of", "{}")))
    return owner.get(layer)


def per_sigma(ds: Any, var: str, layer: str, log: bool = False, param: str | None = None) -> list:
    """``var`` at each σ of one layer, as an interval over seeds."""
    unit = "accuracy" in var or "fraction" in var
    da = ds[var].sel(layer=layer)
    if param is not None:
        da = da.sel(param_layer=param)
    return [interval(da.isel(sigma=j).values, log, unit) for j in range(ds.sizes["sigma"])]


def compare_b(eval_a: dict[str, Any], train_file: Path) -> dict[str, Any]:
    """(b): per trained layer, trained vs eval midpoint, paired over seeds (log ratio)."""
    ds = walknoise.load(train_file).dataset
    out = {}
    for layer in [str(v) for v in ds["layer"].values]:
        trained = trained_midpoints(ds, layer)
        ev = eval_a["layers"][layer]["per_seed"]
        ratio = [
            t["value"] / e if e and math.isfinite(t["value"]) else math.inf
            for t, e in zip(trained, ev, strict=True)
        ]
        out[layer] = {
            "trained": interval([t["value"] for t in trained], log=True)
            | {
                "brackets": [t["bracket"] for t in trained],
                "status": [t["status"] for t in trained],
            },
            "eval": eval_a["layers"][layer],
            "ratio": interval(ratio, log=True),
            "trained_accuracy": per_sigma(ds, "trained_accuracy", layer),
        }
    return {"sigmas": [sig(s) for s in ds["sigma"].values], "layers": out}


def growth(train_file: Path, clamp: float | None = None) -> dict[str, Any]:
    """(c): own-layer growth of L2 and max|w| per σ, trained accuracy, largest |w| anywhere."""
    ds = walknoise.load(train_file).dataset
    out: dict[str, Any] = {"sigmas": [sig(s) for s in ds["sigma"].values], "clamp": sig(clamp or 0)}
    out["largest_abs_weight"] = sig(float(ds["weight_max_abs"].max()))
    out["clean_largest_abs_weight"] = sig(float(ds["clean_weight_max_abs"].max()))
    layers = {}
    for layer in [str(v) for v in ds["layer"].values]:
        p = own(ds, layer)
        layers[layer] = {
            "own": p,
            "growth_l2": per_sigma(ds, "growth_l2", layer, log=True, param=p),
            "growth_max_abs": per_sigma(ds, "growth_max_abs", layer, log=True, param=p),
            "trained_accuracy": per_sigma(ds, "trained_accuracy", layer),
            "trained_midpoint": interval([t["value"] for t in trained_midpoints(ds, layer)], True),
        }
    out["layers"] = layers
    return out


def clamp_effect(free: Path, clamped: Path) -> dict[str, Any]:
    """Accuracy with clamping minus without, paired over seeds, at each σ both trained."""
    a, b = walknoise.load(free).dataset, walknoise.load(clamped).dataset
    out: dict[str, Any] = {}
    for layer in [str(v) for v in b["layer"].values]:
        if layer not in a["layer"].values:
            continue
        rows = []
        for s in b["sigma"].values:
            if s not in a["sigma"].values:
                continue
            diff = (
                b["trained_accuracy"].sel(layer=layer, sigma=s).values
                - a["trained_accuracy"].sel(layer=layer, sigma=s).values
            )
            rows.append({"sigma": sig(float(s))} | interval(diff))
        out[layer] = rows
    return out


# ------------------------------------------------------------ (d): self-binarization

CELL_VARS = (
    "trained_accuracy",
    "clean_noisy_accuracy",
    "onoff_accuracy",
    "clean_onoff_accuracy",
    "activation_zero_fraction",
    "activation_bimodality",
    "own_layer_binarized_accuracy",
    "own_layer_binarized_accuracy_per_channel",
    "binarized_accuracy",
)


def selfbin(train_file: Path) -> dict[str, Any]:
    """(d): per multiplicative-trained point and σ, every self-binarization statistic, the
    own layer's kurtosis (trained, clean, at init) and the train-σ × test-σ matrix."""
    ds = walknoise.load(train_file).dataset
    out: dict[str, Any] = {"sigmas": [sig(s) for s in ds["sigma"].values]}
    out["test_sigmas"] = [sig(s) for s in ds["test_sigma"].values] if "test_sigma" in ds else []
    layers = {}
    for layer in [str(v) for v in ds["layer"].values]:
        p = own(ds, layer)
        cell = {v: per_sigma(ds, v, layer) for v in CELL_VARS if v in ds}
        point = ds.sel(layer=layer)
        for v in ("clean_activation_zero_fraction", "clean_activation_bimodality"):
            if v in ds:
                cell[v] = interval(point[v].values, unit="fraction" in v)
        if p is not None:
            cell["own_kurtosis"] = per_sigma(ds, "weight_kurtosis", layer, param=p)
            cell["clean_own_kurtosis"] = interval(ds["clean_weight_kurtosis"].sel(param_layer=p))
            if "init_weight_kurtosis" in ds:
                cell["init_own_kurtosis"] = interval(ds["init_weight_kurtosis"].sel(param_layer=p))
        if "cross_accuracy" in ds:
            cross = point["cross_accuracy"]  # (sigma, repeat, test_sigma)
            cell["cross_mean"] = [[sig(x, 3) for x in row] for row in cross.mean("repeat").values]
            cell["no_noise_accuracy"] = [
                interval(cross.isel(sigma=j, test_sigma=0).values, unit=True)
                for j in range(ds.sizes["sigma"])
            ]
        trained = trained_midpoints(ds, layer)
        cell["trained_midpoint"] = interval([t["value"] for t in trained], log=True) | {
            "status": [t["status"] for t in trained]
        }
        layers[layer] = cell | {"own": p}
    out["layers"] = layers
    return out


def plain_train(train_file: Path) -> dict[str, Any]:
    """Combined and BatchNorm train phases: trained vs clean model under the same noise."""
    ds = walknoise.load(train_file).dataset
    layer = str(ds["layer"].values[0])
    return {
        "layer": layer,
        "sigmas": [sig(s) for s in ds["sigma"].values],
        "trained_accuracy": per_sigma(ds, "trained_accuracy", layer),
        "clean_noisy_accuracy": per_sigma(ds, "clean_noisy_accuracy", layer),
        "gain": [
            interval(
                ds["trained_accuracy"].sel(layer=layer).isel(sigma=j).values
                - ds["clean_noisy_accuracy"].sel(layer=layer).isel(sigma=j).values
            )
            for j in range(ds.sizes["sigma"])
        ],
        "clean_model_accuracy": interval(ds["clean_model_accuracy"].values, unit=True),
    }


def global_train(job_json: Path) -> dict[str, Any]:
    """Global noise in training: accuracy under the noise, trained vs clean, per σ."""
    info = json.loads(job_json.read_text())
    cells = info["cells"]
    out = {"points": info["points"], "rows": []}
    for s in sorted({c["sigma"] for c in cells}):
        rows = [c for c in cells if c["sigma"] == s]
        gain = [c["accuracy"] - c["clean_model_accuracy"] for c in rows]
        out["rows"].append(
            {
                "sigma": s,
                "trained": interval([c["accuracy"] for c in rows], unit=True),
                "clean_model": interval([c["clean_model_accuracy"] for c in rows], unit=True),
                "gain": interval(gain),
                "trained_no_noise": interval([c["accuracy_no_noise"] for c in rows], unit=True),
            }
        )
    return out
