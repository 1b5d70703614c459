"""Midpoint precision on the demo LeNet-5: a coarse and a fine grid over one range.

Issue 13's acceptance line: the midpoint of the demo LeNet-5's conv1 from a 5-σ grid and from
a 41-σ grid over the same range (1e-2 to 1e3) agree within ``rtol`` (5%), or the coarse one
reports a bracket that holds the fine one. The demo model is trained as ``walknoise demo``
trains it (``walknoise.recipes.run_demo``, 12 epochs, its own 5-σ scan), then conv1 is
scanned with additive noise at 5, 9 and 41 σ, with the refinement (the default) and without
it, 5 repeats as the demo. Writes ``docs/midpoint_precision.json``.

    python benchmarks/midpoint_precision.py            # ~2 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import walknoise
from walknoise.models import load_model
from walknoise.recipes import run_demo

RANGE = (1e-2, 1e3)
GRIDS = (5, 9, 41)
LAYER = "conv1"


def one_scan(model: Any, points: int, refine: bool, repeats: int) -> dict[str, Any]:
    start = time.perf_counter()
    result = walknoise.scan(
        model,
        "mnist:test",
        sigmas=f"log:{RANGE[0]:g}:{RANGE[1]:g}:{points}",
        layers=[LAYER],
        repeats=repeats,
        refine=refine,
        progress=False,
    )
    row = result.midpoints().loc[LAYER]
    visits = result.dataset.get("search_visits")
    return {
        "grid_points": points,
        "refine": refine,
        "midpoint": float(row["midpoint"]),
        "bracket": [float(row["bracket_low"]), float(row["bracket_high"])],
        "within_rtol": bool(row["within_rtol"]),
        "interval_95": [float(row["low"]), float(row["high"])],
        "extra_sigmas": int(visits.sel(layer=LAYER)) if visits is not None else 0,
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("docs/midpoint_precision.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        demo = run_demo(tmp, sigmas=f"log:{RANGE[0]:g}:{RANGE[1]:g}:5", progress=False)
        model = load_model(demo.model).model
        runs = [one_scan(model, n, refine, args.repeats) for n in GRIDS for refine in (True, False)]
    coarse, fine = runs[0], runs[-2]  # 5 and 41 σ, both refined
    agree = abs(coarse["midpoint"] / fine["midpoint"] - 1) <= 0.05
    held = coarse["bracket"][0] <= fine["midpoint"] <= coarse["bracket"][1]
    report = {
        "what": f"demo LeNet-5 {LAYER}, additive noise, log σ grids over {RANGE}",
        "test_accuracy": demo.test_accuracy,
        "repeats": args.repeats,
        "rtol": 0.05,
        "runs": runs,
        "acceptance": {"agree_within_rtol": agree, "coarse_bracket_holds_fine": held},
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for run in runs:
        print(run)
    print(report["acceptance"])


if __name__ == "__main__":
    main()
