"""One LeNet-5 scan three ways, same run: in process, ``--jobs 2`` workers, a SLURM job array.

Each is timed end to end (planning, worker or job start-up, writing the file) and checked to
give the same accuracies as the serial run. The SLURM run needs a cluster (``SLURM_CONF`` set,
e.g. by ``tests/slurm/start_cluster.sh``); without one it is skipped.

    python benchmarks/bench_parallel.py                  # 12 points × 25 σ × 5 repeats
    python benchmarks/bench_parallel.py --quick          # 12 points × 9 σ × 2 repeats
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import walknoise
from walknoise.data import resolve_data
from walknoise.models import build_model
from walknoise.training import TrainConfig, seeded_init, train_model
from walknoise.walk.executors import Executor, SlurmOptions, Submitit, make_executor


def timed(
    model: torch.nn.Module, out: Path, executor: Executor, sigmas: str, repeats: int
) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    result = walknoise.scan(
        model,
        "mnist",
        sigmas=sigmas,
        repeats=repeats,
        include_global=False,
        progress=False,
        output=out,
        executor=executor,
    )
    return time.perf_counter() - start, result.accuracy.values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sigmas, repeats = ("log:1e-2:1e3:9", 2) if args.quick else ("log:1e-2:1e3:25", 5)
    train = resolve_data("mnist:train")
    with seeded_init(0):
        model = build_model("lenet5")
    train_model(model, train.x, train.y, TrainConfig(epochs=3), progress=False)
    model.eval()
    folder = Path(tempfile.mkdtemp(dir=Path.cwd(), prefix=".bench-parallel-"))  # jobs see it
    runs: dict[str, Executor] = {
        "serial (--jobs 1)": make_executor("auto", 1),
        "joblib (--jobs 2)": make_executor("auto", 2),
    }
    if os.environ.get("SLURM_CONF") and shutil.which("sbatch"):
        runs["SLURM job array"] = Submitit(SlurmOptions(folder=folder / "jobs", cpus=1))
    print(f"LeNet-5 on 2,000 images, {sigmas} × {repeats} repeats, {os.cpu_count()} cores")
    try:
        reference = None
        for i, (name, executor) in enumerate(runs.items()):
            seconds, acc = timed(model, folder / f"{i}.h5", executor, sigmas, repeats)
            reference = acc if reference is None else reference
            same = np.abs(acc - reference).max()
            print(f"{name:<20} {seconds:7.1f} s   largest accuracy gap to serial {same:.4f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
