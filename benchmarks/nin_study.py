"""The measurements behind docs/nin.md: NIN phases and NINR robustness on bundled MNIST.

1. ``acceptance`` — the command ``walknoise nin probe --arch mlp --data mnist`` with a
   3 × 3 (σ_ε, lr) grid (its default learning rates and epochs), run as a user would (a
   subprocess), timed.
2. ``sgd`` — the probe on the MLP with in-NINR and vanilla SGD (the papers' optimiser):
   7 σ_ε × 4 lr (0.01, where the run without NINs does not learn, to 0.3) × 2 seeds, 3 epochs.
3. ``full`` — the same with full-NINR (a NIN on every Linear layer), 6 σ_ε × 3 lr, 1 seed.
4. ``adam`` — in-NINR with Adam, 3 σ_ε × 3 lr, 1 seed, for contrast.
5. ``compare`` — NINR against no regulariser, input noise, L2 and dropout on the MLP, every
   method tuned over 3 candidates on a validation split, tested on six perturbations and the
   walk: SGD (5 seeds) and Adam (3 seeds), chosen by clean validation accuracy, and SGD
   chosen by perturbed validation accuracy (3 seeds); 5 epochs.

The probe parts evaluate the test set every 5th step (``eval_every=5``) and measure the
Hessian ~20 times per run; together they take ~10 minutes at ``nice -n 5`` on the shared
2-core machine (sizes cut from 3 seeds and 5 epochs to fit that).

    python benchmarks/nin_study.py            # the numbers in docs/nin.md (~25 min on 2 cores)
    python benchmarks/nin_study.py --quick    # a smoke run of every part (a few minutes)
    python benchmarks/nin_study.py --replot /tmp/nin_study_XXXX   # figures again, no training

Figures go to docs/figures/nin_*.png, the text tables to docs/nin_study.txt and the numbers
to docs/nin_study.json. torch runs on one thread: the networks are small, and on a shared
2-core machine a second intra-op thread mostly waits.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from walknoise.nin import plots as nin_plots
from walknoise.nin.compare import CompareConfig, CompareResult, compare, load_compare
from walknoise.nin.compare_report import compare_markdown, compare_text
from walknoise.nin.phases import PHASES
from walknoise.nin.probe import ProbeConfig, ProbeResult, load_probe, probe
from walknoise.nin.report import probe_text
from walknoise.walk.plots import save_figure

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "docs" / "figures"
NUMBERS = ROOT / "docs" / "nin_study.json"
TABLES = ROOT / "docs" / "nin_study.txt"
SIGMAS = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)


def probe_numbers(result: ProbeResult) -> dict[str, Any]:
    ds = result.dataset
    grid = result.phase_grid()
    st = result.stability()
    return {
        "reference_fall": ds["reference_fall"].max("sigma_eps").values.tolist(),
        "lambda_start": float(np.nanmedian(st["reference_lambda_start"].values)),
        "reference_lambda_start": st["reference_lambda_start"].values.tolist(),
        "reference_lambda_end": st["reference_lambda_end"].values.tolist(),
        "eta_sigma2_lambda_start": st["eta_sigma2_lambda_start"].values.tolist(),
        "eta_sigma2_lambda_end": st["eta_sigma2_lambda_end"].values.tolist(),
        "eta_sigma2_lambda_max": st["eta_sigma2_lambda_max"].values.tolist(),
        "by_phase": by_phase(ds, st),
        "phase_codes": ds["phase"].values.tolist(),
        "sigma_eps": [float(v) for v in ds["sigma_eps"].values],
        "phases": {f"{s:g}": [str(p) for p in grid.loc[s]] for s in grid.index},
        "lr": [float(v) for v in ds["lr"].values],
        "phase_counts": {p: int((ds["phase"].values == i).sum()) for i, p in enumerate(PHASES)},
        "tau_niw": ds["tau_niw"].median(("nin", "seed")).values.tolist(),
        "tau_train_loss": ds["tau_train_loss"].median("seed").values.tolist(),
        "tau_test_loss": ds["tau_test_loss"].median("seed").values.tolist(),
        "final_test_accuracy": ds["final_test_accuracy"].mean("seed").values.tolist(),
        "reference_final_test_accuracy": ds["reference_final_test_accuracy"]
        .mean("seed")
        .values.tolist(),
        "seconds_per_run": float(np.nanmean(ds["seconds"].values)),
    }


def by_phase(ds: Any, st: Any) -> dict[str, dict[str, Any]]:
    """Per phase: how many runs, and the range of η σ_ε² λ (start, largest, end) over them."""
    codes = ds["phase"].values
    out: dict[str, dict[str, Any]] = {}
    for code, name in enumerate(PHASES):
        here = codes == code
        if not here.any():
            continue
        out[name] = {"runs": int(here.sum())}
        for when in ("start", "max", "end"):
            values = st[f"eta_sigma2_lambda_{when}"].values[here]
            values = values[np.isfinite(values)]
            out[name][when] = [float(values.min()), float(values.max())] if values.size else None
    return out


def draw_probe(name: str, result: ProbeResult, figures: Path) -> None:
    for kind, draw in (
        ("phases", nin_plots.phase_diagram),
        ("niw", nin_plots.niw_trajectories),
        ("timescales", nin_plots.time_scales),
    ):
        save_figure(draw(result), figures / f"nin_{name}_{kind}.png")


def run_probe(name: str, config: ProbeConfig, args: argparse.Namespace) -> dict[str, Any]:
    result = probe("mlp", "mnist", config, output=args.scratch / f"nin_{name}.h5", progress=False)
    draw_probe(name, result, args.figures)
    args.text.append(probe_text(result))
    return probe_numbers(result)


def replot(scratch: Path, figures: Path) -> None:
    """Draw every figure again from the result files of an earlier run (no training)."""
    for name in ("sgd", "full", "adam"):
        if (scratch / f"nin_{name}.h5").exists():
            draw_probe(name, load_probe(scratch / f"nin_{name}.h5"), figures)
    if (scratch / "nin_acceptance.h5").exists():
        accepted = load_probe(scratch / "nin_acceptance.h5")
        save_figure(nin_plots.phase_diagram(accepted), figures / "nin_acceptance_phases.png")
    for name in COMPARE_RUNS:
        if (scratch / f"nin_compare_{name}.h5").exists():
            result = load_compare(scratch / f"nin_compare_{name}.h5")
            save_figure(nin_plots.compare_figure(result), figures / f"nin_compare_{name}.png")


def part_acceptance(args: argparse.Namespace) -> dict[str, Any]:
    out = args.scratch / "nin_acceptance.h5"
    sigmas, lrs = ("1,1000", "0.1") if args.quick else ("1,100,1000", "0.03,0.1,0.3")
    epochs = "1" if args.quick else "3"
    command = [
        sys.executable, "-m", "walknoise.cli", "nin", "probe", "--arch", "mlp", "--data", "mnist",
        "--sigma-eps", sigmas, "--lr", lrs, "--epochs", epochs, "-o", str(out),
        "--overwrite", "--quiet",
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    shown = "\n".join(ln for ln in done.stdout.splitlines() if not ln.startswith("wrote "))
    args.text.append(f"$ walknoise {' '.join(command[3:])}\n{shown}\n({seconds:.1f} s)")
    png = out.with_name(out.stem + "-phases.png")
    (args.figures / "nin_acceptance_phases.png").write_bytes(png.read_bytes())
    return {"seconds": round(seconds, 1), **probe_numbers(load_probe(out))}


def part_sgd(args: argparse.Namespace) -> dict[str, Any]:
    config = ProbeConfig(
        sigma_eps=args.sigmas, lr=(0.01, 0.03, 0.1, 0.3), seeds=args.seeds[:2],
        epochs=args.probe_epochs, eval_every=5,
    )  # fmt: skip
    return run_probe("sgd", config, args)


def part_full(args: argparse.Namespace) -> dict[str, Any]:
    sigmas = tuple(s for s in args.sigmas if s != 3.0)
    config = ProbeConfig(
        sigma_eps=sigmas, lr=(0.03, 0.1, 0.3), seeds=args.seeds[:1], epochs=args.probe_epochs,
        eval_every=5, where="all",
    )  # fmt: skip
    return run_probe("full", config, args)


def part_adam(args: argparse.Namespace) -> dict[str, Any]:
    sigmas = (args.sigmas[0], args.sigmas[len(args.sigmas) // 2], args.sigmas[-1])
    config = ProbeConfig(
        sigma_eps=tuple(sorted(set(sigmas))), lr=(1e-4, 1e-3, 1e-2), seeds=args.seeds[:1],
        epochs=args.probe_epochs, eval_every=5, optimizer="adam",
    )  # fmt: skip
    return run_probe("adam", config, args)


COMPARE_RUNS: dict[str, dict[str, Any]] = {
    "mlp_sgd": {"optimizer": "sgd"},
    "mlp_adam": {"optimizer": "adam"},
    "mlp_sgd_robust": {"optimizer": "sgd", "selection": "perturbed"},
}
"""The comparison runs: the MLP with SGD (the papers' optimiser; 5 seeds) and with Adam
(3 seeds), each method chosen by clean validation accuracy; and SGD again (3 seeds) with
each method chosen by its mean validation accuracy over the perturbations (tuning for
robustness). Fewer seeds for the two contrasts keep the part near 20 minutes."""


def compare_numbers(result: CompareResult) -> dict[str, Any]:
    ds = result.dataset
    keep = ("optimizer", "lr", "momentum", "epochs", "batch_size", "selection", "fit_size")
    return {
        "settings": {k: ds.attrs[k] for k in (*keep, "validation_size", "paired_test")},
        "methods": result.describe(),
        "seeds": [int(s) for s in ds["seed"].values],
        "conditions": [str(c) for c in ds["condition"].values],
        "layers": [str(v) for v in ds["layer"].values],
        "chosen": result.chosen(),
        "lr": ds["lr"].values.tolist(),
        "candidate_diverged": ds["candidate_diverged"].values.tolist(),
        "validation_score": ds["validation_score"].values.tolist(),
        "clean_accuracy": ds["clean_accuracy"].values.tolist(),
        "accuracy": ds["accuracy"].values.tolist(),
        "clean_difference": ds["clean_difference"].values.tolist(),
        "clean_p_value": ds["clean_p_value"].values.tolist(),
        "accuracy_difference": ds["accuracy_difference"].values.tolist(),
        "accuracy_p_value": ds["accuracy_p_value"].values.tolist(),
        "midpoint": ds["midpoint"].where(ds["midpoint_status"] == 1).values.tolist(),
        "midpoint_difference": ds["midpoint_difference"].values.tolist(),
        "midpoint_p_value": ds["midpoint_p_value"].values.tolist(),
        "train_seconds_total": float(ds["train_seconds"].sum()),
        "markdown": compare_markdown(result),
    }


def part_compare(args: argparse.Namespace) -> dict[str, Any]:
    """NINR against the other regularisers on the MLP, tuned alike (see COMPARE_RUNS)."""
    out: dict[str, Any] = {}
    for name, settings in COMPARE_RUNS.items():
        seeds = args.compare_seeds if name == "mlp_sgd" else args.compare_seeds[:3]
        config = CompareConfig(seeds=seeds, epochs=args.compare_epochs, **settings)
        start = time.perf_counter()
        result = compare("mlp", "mnist", config, progress=False)
        seconds = time.perf_counter() - start
        result.save(args.scratch / f"nin_compare_{name}.h5")
        save_figure(nin_plots.compare_figure(result), args.figures / f"nin_compare_{name}.png")
        args.text.append(f"[{name}]\n{compare_text(result)}")
        out[name] = compare_numbers(result) | {"seconds": round(seconds, 1)}
        print(f"compare {name}: {seconds:.0f} s", flush=True)
    return out


PARTS = {
    "acceptance": part_acceptance,
    "sgd": part_sgd,
    "full": part_full,
    "adam": part_adam,
    "compare": part_compare,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check the script runs")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--replot", type=Path, help="redraw the figures from this scratch dir")
    args = parser.parse_args()
    if args.replot:
        replot(args.replot, FIGURES)
        return
    torch.set_num_threads(1)
    quick = args.quick
    args.sigmas = (1.0, 1000.0) if quick else SIGMAS
    args.seeds = (0, 1) if quick else (0, 1, 2)
    args.probe_epochs = 1 if quick else 3
    args.compare_seeds = (0, 1) if quick else (0, 1, 2, 3, 4)
    args.compare_epochs = 1 if quick else 5
    args.scratch = Path(tempfile.mkdtemp(prefix="nin_study_"))  # result files, for --replot
    args.figures = args.scratch if quick else FIGURES  # a smoke run leaves docs alone
    args.figures.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = json.loads(NUMBERS.read_text()) if NUMBERS.exists() and not quick else {}
    for name in args.parts.split(","):
        args.text = []
        start = time.perf_counter()
        out[name] = PARTS[name](args)
        out[name]["text"] = "\n\n".join(args.text)
        out.setdefault("seconds", {})[name] = round(time.perf_counter() - start, 1)
        print(f"{name}: {out['seconds'][name]} s", flush=True)
        if not quick:  # re-read first: another part may have finished in another process
            fresh = json.loads(NUMBERS.read_text()) if NUMBERS.exists() else {}
            fresh[name] = out[name]
            fresh.setdefault("seconds", {})[name] = out["seconds"][name]
            out = fresh
            NUMBERS.write_text(json.dumps(out, indent=1, default=float))
    # Every part's tables, in order, also those kept from an earlier run of other parts.
    text = "\n\n".join(out[name]["text"] for name in PARTS if "text" in out.get(name, {}))
    print(text)
    if not quick:
        TABLES.write_text(text + "\n")
    print(json.dumps(out["seconds"]))


if __name__ == "__main__":
    main()
