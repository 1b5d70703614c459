"""Plain-text and pandas summaries of NIN probes and comparisons (CLI and notebooks); the
comparison's tables live in :mod:`walknoise.nin.compare_report`."""

from __future__ import annotations

import math

import numpy as np

from walknoise.nin.compare_report import compare_summary, compare_text
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
    ratios = [
        median_over_seeds(st[f"eta_sigma2_lambda_{when}"].values)
        for when in ("start", "max", "end")
    ]
    rows = [["σ_ε", *lrs]]
    for i, sigma in enumerate(st["sigma_eps"].values):
        cells = [" / ".join(_short(r[i, j]) for r in ratios) for j in range(len(lrs))]
        rows.append([f"{sigma:g}", *cells])
    return [
        "top Hessian eigenvalue λ of the loss w.r.t. the NIN layer's output (largest over NINs,",
        f"median over seeds): {_num(lam0)} at initialisation; at the end without NINs: {ends}",
        "η σ_ε² λ at the start / largest / end of each run (SGD's linear picture: boundary at 2)",
        text_table(rows),
    ]


def _short(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.2g}"


def _num(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.3g}"
