"""Plain-text and pandas summaries of NIN probes and comparisons (CLI and notebooks)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from walknoise.nin.compare import CompareResult
from walknoise.nin.phases import PHASES
from walknoise.nin.results import ProbeResult, median_over_seeds
from walknoise.table import text_table

__all__ = ["compare_summary", "compare_text", "probe_text"]


def _phase_cell(codes: np.ndarray, majority: str) -> str:
    """The majority phase, with its count when the seeds disagree."""
    n = int(np.sum(codes == PHASES.index(majority)))
    return majority if n == codes.size else f"{majority} ({n}/{codes.size})"


def probe_text(result: ProbeResult) -> str:
    """Phase of each (σ_ε, lr) cell, the median time scales, and the reference runs."""
    ds = result.dataset
    grid = result.phase_grid()
    lrs = [f"lr {lr:g}" for lr in ds["lr"].values]
    rows = [["σ_ε", *lrs]]
    codes = ds["phase"].values
    for i, sigma in enumerate(ds["sigma_eps"].values):
        cells = [_phase_cell(codes[i, j], str(grid.iloc[i, j])) for j in range(len(lrs))]
        rows.append([f"{sigma:g}", *cells])
    tau = [["σ_ε", *(f"τ niw/train/test, {lr}" for lr in lrs)]]
    niw = ds["tau_niw"].median(("nin", "seed")).values
    train = ds["tau_train_loss"].median("seed").values
    test = ds["tau_test_loss"].median("seed").values
    for i, sigma in enumerate(ds["sigma_eps"].values):
        cells = [
            f"{_num(niw[i, j])}/{_num(train[i, j])}/{_num(test[i, j])}" for j in range(len(lrs))
        ]
        tau.append([f"{sigma:g}", *cells])
    ref = ds["reference_final_test_accuracy"].mean("seed").values
    fall = median_over_seeds(ds["reference_fall"].values.max(axis=0))  # same for every σ_ε
    ref_line = ", ".join(
        f"{lr}: {acc:.3f} (test loss -{100 * f:.0f}%)"
        for lr, acc, f in zip(lrs, ref, fall, strict=True)
    )
    learned = result.criteria().learned
    steps = ds.sizes["step"] - 1
    head = (
        f"NIN probe: {ds.attrs.get('arch')} on {ds.attrs.get('data')}, "
        f"{ds.attrs.get('optimizer')}, {steps} steps, NINs at "
        f"{', '.join(str(n) for n in ds['nin'].values)}, {ds.sizes['seed']} seed(s)"
    )
    return "\n".join(
        [
            head,
            "",
            text_table(rows),
            "",
            "decay times in steps (median over seeds; - = no decay within the run)",
            text_table(tau),
            "",
            f"final test accuracy without NINs: {ref_line}",
            f"(a run is undetermined where that test loss fell by less than {learned:.0%})",
            "",
            *_curvature_lines(result, lrs),
        ]
    )


def _curvature_lines(result: ProbeResult, lrs: list[str]) -> list[str]:
    """λ at the start and the end, and η σ_ε² λ per cell (medians over seeds)."""
    st = result.stability()
    lam0 = median_over_seeds(st["reference_lambda_start"].values.ravel()[None])[0]
    ref_end = median_over_seeds(st["reference_lambda_end"].values)
    ends = ", ".join(f"{lr}: {_num(v)}" for lr, v in zip(lrs, ref_end, strict=True))
    start = median_over_seeds(st["eta_sigma2_lambda_start"].values)
    end = median_over_seeds(st["eta_sigma2_lambda_end"].values)
    rows = [["σ_ε", *lrs]]
    for i, sigma in enumerate(st["sigma_eps"].values):
        cells = [f"{_num(start[i, j])} -> {_num(end[i, j])}" for j in range(len(lrs))]
        rows.append([f"{sigma:g}", *cells])
    return [
        "top Hessian eigenvalue λ of the loss w.r.t. the NIN layer's output (largest over NINs,",
        f"median over seeds): {_num(lam0)} at initialisation; at the end without NINs: {ends}",
        "η σ_ε² λ at the start -> the end of each run (the linear picture's boundary: 2)",
        text_table(rows),
    ]


def _num(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.3g}"


def _mean_std(values: np.ndarray, digits: int = 3) -> str:
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def _midpoint_cell(values: np.ndarray, status: np.ndarray, sigma_max: float) -> str:
    reached = values[(status == 1) & np.isfinite(values)]
    if reached.size == 0:
        return f"> {sigma_max:g}"
    cell = f"{np.mean(reached):.3g} ± {np.std(reached):.2g}"
    return cell if reached.size == values.size else f"{cell} ({reached.size}/{values.size})"


def compare_summary(result: CompareResult) -> pd.DataFrame:
    """One row per method: clean and noisy accuracy, then each layer's midpoint (mean ± std
    over seeds; a midpoint not reached by every seed notes how many reached it)."""
    ds = result.dataset
    sigma_max = float(ds.attrs.get("walk_sigma_max", float("nan")))
    table: dict[str, list[str]] = {"clean": []}
    for sigma in ds["sigma"].values:
        table[f"σ={sigma:g}"] = []
    for layer in ds["layer"].values:
        table[f"mid {layer}"] = []
    for method in result.methods:
        row = ds.sel({"method": method})  # not sel(method=...): that is its fill method
        table["clean"].append(_mean_std(row["clean_accuracy"].values))
        for sigma in ds["sigma"].values:
            acc = row["noisy_accuracy"].sel(sigma=sigma).values
            table[f"σ={sigma:g}"].append(_mean_std(acc))
        for layer in ds["layer"].values:
            mid = row["midpoint"].sel(layer=layer).values
            status = row["midpoint_status"].sel(layer=layer).values
            table[f"mid {layer}"].append(_midpoint_cell(mid, status, sigma_max))
    return pd.DataFrame(table, index=pd.Index(result.methods, name="method"))


def compare_text(result: CompareResult) -> str:
    """The accuracy table and the midpoint table, then what each method was."""
    ds = result.dataset
    summary = compare_summary(result)
    acc_cols = [c for c in summary.columns if not c.startswith("mid ")]
    mid_cols = [c for c in summary.columns if c.startswith("mid ")]
    parts = [
        f"NINR comparison: {ds.attrs.get('arch')} on {ds.attrs.get('data')}, "
        f"{ds.attrs.get('epochs')} epochs, {ds.sizes['seed']} seeds (mean ± std)",
        "",
        "test accuracy, clean and with Gaussian input noise σ",
        _table(summary, acc_cols),
        "",
        "midpoint σ of the walk (additive noise), per layer",
        text_table(
            [
                ["layer", *summary.index],
                *([c.removeprefix("mid "), *summary[c]] for c in mid_cols),
            ]
        ),
        "",
        *(f"{m}: {what}" for m, what in result.describe().items()),
    ]
    return "\n".join(parts)


def _table(df: pd.DataFrame, columns: list[str]) -> str:
    rows = [["method", *columns]]
    rows += [[str(m), *(str(df.loc[m, c]) for c in columns)] for m in df.index]
    return text_table(rows)
