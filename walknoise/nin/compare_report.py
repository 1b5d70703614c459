"""Tables of a NINR comparison: accuracy per perturbation (mean ± std over seeds), each
method's difference from the baseline with its paired-test p-value, the walk midpoints, and
the hyper-parameters each method chose on the validation split. Plain text for the CLI,
Markdown for the docs, pandas for notebooks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from walknoise.nin.compare import CompareResult
from walknoise.table import text_table

__all__ = [
    "chosen_table",
    "compare_markdown",
    "compare_summary",
    "compare_tests",
    "compare_text",
    "midpoint_summary",
]


def _mean_std(values: np.ndarray, digits: int = 3) -> str:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return "-"
    cell = f"{np.mean(finite):.{digits}f} ± {np.std(finite):.{digits}f}"
    return cell if finite.size == values.size else f"{cell} ({finite.size}/{values.size})"


def _difference(mean: float, p: float, digits: int = 3) -> str:
    """``+0.012 (p 0.031)``; ``-`` where there is nothing to compare."""
    if not np.isfinite(mean):
        return "-"
    if not np.isfinite(p):
        return f"{mean:+.{digits}f}"
    shown = "p < 0.001" if p < 0.001 else f"p {p:.2g}"
    return f"{mean:+.{digits}f} ({shown})"


def _rows(ds: xr.Dataset) -> list[tuple[str, xr.DataArray, str]]:
    """(row label, accuracy over (method, seed), test prefix + selector) per table row."""
    out = [("clean", ds["clean_accuracy"], "clean")]
    for cond in ds["condition"].values:
        out.append((str(cond), ds["accuracy"].sel(condition=cond), str(cond)))
    return out


def _frame(
    index: Sequence[str], columns: Sequence[str], cell: Callable[[int, int], str]
) -> pd.DataFrame:
    return pd.DataFrame(
        [[cell(r, c) for c in range(len(columns))] for r in range(len(index))],
        index=pd.Index(list(index), name="test"),
        columns=list(columns),
    )


def compare_summary(result: CompareResult) -> pd.DataFrame:
    """Test accuracy, mean ± std over seeds: a row per test (clean, then each perturbation
    and strength), a column per method."""
    ds = result.dataset
    rows = _rows(ds)
    return _frame(
        [r[0] for r in rows],
        result.methods,
        lambda r, c: _mean_std(rows[r][1].values[c]),
    )


def _test_cells(
    ds: xr.Dataset, prefix: str, select: dict[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    mean = ds[f"{prefix}_difference"]
    p = ds[f"{prefix}_p_value"]
    if select:
        mean, p = mean.sel(select), p.sel(select)
    return mean.values, p.values


def compare_tests(result: CompareResult) -> pd.DataFrame:
    """Each method's accuracy minus the baseline's (mean over seeds) and the p-value of the
    paired test, per test; a column per method other than ``none``."""
    ds = result.dataset
    methods = result.methods
    others = [m for m in methods if m != "none"]
    cells = {"clean": _test_cells(ds, "clean", {})}
    for cond in ds["condition"].values:
        cells[str(cond)] = _test_cells(ds, "accuracy", {"condition": str(cond)})
    index = list(cells)

    def cell(r: int, c: int) -> str:
        mean, p = cells[index[r]]
        j = methods.index(others[c])
        return _difference(float(mean[j]), float(p[j]))

    return _frame(index, others, cell)


def midpoint_summary(result: CompareResult, tests: bool = False) -> pd.DataFrame:
    """Walk midpoint σ per layer (mean ± std over the seeds that reached it), or with
    ``tests`` the difference from the baseline and its p-value."""
    ds = result.dataset
    layers = [str(v) for v in ds["layer"].values]
    methods = result.methods
    if tests:
        others = [m for m in methods if m != "none"]
        mean, p = ds["midpoint_difference"].values, ds["midpoint_p_value"].values

        def diff(r: int, c: int) -> str:
            j = methods.index(others[c])
            return _difference(float(mean[j, r]), float(p[j, r]), 2)

        return _frame(layers, others, diff)
    mids = ds["midpoint"].where(ds["midpoint_status"] == 1).values
    return _frame(layers, methods, lambda r, c: _mean_std(mids[c, :, r], 2))


def chosen_table(result: CompareResult) -> pd.DataFrame:
    """Each method's tuned hyper-parameter, its candidates, and the value chosen per seed."""
    ds = result.dataset
    named = result.hyperparameters()
    chosen = result.chosen()
    seeds = [str(s) for s in ds["seed"].values]
    rows = {
        m: [
            named[m],
            ", ".join(f"{v:g}" for v in ds["hyperparameter"].values[i]),
            *(f"{v:g}" for v in chosen[m]),
        ]
        for i, m in enumerate(result.methods)
    }
    columns = ["hyper-parameter", "candidates", *(f"seed {s}" for s in seeds)]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)


def _heading(ds: xr.Dataset) -> str:
    a = ds.attrs
    momentum = f", momentum {a['momentum']:g}" if a.get("optimizer") == "sgd" else ""
    return (
        f"NINR comparison: {a.get('arch')} on {a.get('data')}, {a.get('optimizer')}"
        f"{momentum}, {a.get('epochs')} epochs, batch {a.get('batch_size')}, "
        f"{ds.sizes['seed']} seeds; each method tuned over {ds.sizes['candidate']} candidates "
        f"by {a.get('selection')} accuracy on {a.get('validation_size')} validation samples "
        f"carved from the training data ({a.get('fit_size')} left to train on)"
    )


def _parts(result: CompareResult, table: Callable[[pd.DataFrame, str], str]) -> list[str]:
    ds = result.dataset
    return [
        _heading(ds),
        "",
        "chosen hyper-parameters (validation split; the baseline's lr is every method's)",
        table(chosen_table(result), "method"),
        "",
        "test accuracy (mean ± std over seeds)",
        table(compare_summary(result), "test"),
        "",
        f"accuracy minus none (mean over seeds), {ds.attrs.get('paired_test')}",
        table(compare_tests(result), "test"),
        "",
        "walk midpoint σ per layer (additive noise; mean ± std over seeds that reached it)",
        table(midpoint_summary(result), "layer"),
        "",
        "midpoint minus none (paired t-test over seeds)",
        table(midpoint_summary(result, tests=True), "layer"),
        "",
        *(f"{m}: {what}" for m, what in result.describe().items()),
    ]


def _plain(df: pd.DataFrame, corner: str) -> str:
    rows = [[corner, *map(str, df.columns)]]
    rows += [[str(i), *(str(v) for v in df.loc[i])] for i in df.index]
    return text_table(rows)


def _markdown(df: pd.DataFrame, corner: str) -> str:
    lines = [
        "| " + " | ".join([corner, *map(str, df.columns)]) + " |",
        "|" + "---|" * (len(df.columns) + 1),
    ]
    # `<input>` and `<global>` would be read as HTML tags: code-format every row label.
    lines += ["| " + " | ".join([f"`{i}`", *(str(v) for v in df.loc[i])]) + " |" for i in df.index]
    return "\n".join(lines)


def compare_text(result: CompareResult) -> str:
    """Every table of the comparison as plain text (what ``walknoise nin compare`` prints)."""
    return "\n".join(_parts(result, _plain))


def compare_markdown(result: CompareResult) -> str:
    """The same tables in Markdown (what docs/nin.md shows)."""
    return "\n".join(_parts(result, _markdown))
