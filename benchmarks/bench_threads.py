"""The LeNet-5 walk (12 points × 25 σ × 5 repeats, 2,000 images, no refinement) with one
thread, two spinning (torch's default) and two with ``OMP_WAIT_POLICY=PASSIVE``, on an idle
machine and beside one busy process; each run a fresh process. The numbers behind the
thread policy of the ``walknoise`` command (``cli/main.py``).

    python benchmarks/bench_threads.py --json docs/bench_threads.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from _machine import machine

CHILD = """
import sys, time, torch
import walknoise
from walknoise.data import load_mnist
from walknoise.models import build_model
from walknoise.training import seeded_init
torch.set_num_threads(int(sys.argv[1]))
with seeded_init(0):
    model = build_model("lenet5").eval()
start = time.perf_counter()
walknoise.scan(model, load_mnist("test"), sigmas="log:1e-2:1e3:25", repeats=5,
               include_global=False, refine=False, progress=False)
print(time.perf_counter() - start)
"""
SETTINGS = {"1 thread": (1, None), "2 spinning": (2, None), "2 passive": (2, "PASSIVE")}


def walk(threads: int, policy: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", CHILD, str(threads)], env=env,
                         capture_output=True, text=True, check=True)  # fmt: skip
    return float(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    for load in ("idle", "beside one busy process"):
        busy = None
        if load != "idle":
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            results[load] = {name: walk(*cfg) for name, cfg in SETTINGS.items()}
        finally:
            if busy is not None:
                busy.kill()
        print(load, {k: f"{v:.1f} s" for k, v in results[load].items()})
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), **results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
