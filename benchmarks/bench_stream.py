"""Streamed scans over an on-disk ``.npy`` dataset: flat memory, one read per pass, equal
numbers, resume after ``kill -9``.

A CIFAR-size CNN (3×32×32 inputs, 2 conv + pool + 2 linear, random init with seed 0: its
robustness numbers are not the point) is scanned over synthetic data the benchmark writes to a
temporary directory (``x.npy`` float32 N×3×32×32 standard normal + ``y.npy``, the model's own
clean predictions, so the clean accuracy is 1 and both layers' midpoints lie inside the σ
grid), each scan in a fresh subprocess so that its peak RSS (VmHWM) is its own. Measured:

1. peak RSS of the scan over N samples vs over the first N/10 (acceptance: at most 1.5×), and
   the RSS after each batch of the big scan's grid pass (flat once the allocator has warmed
   up; two runs of the same scan differ by ~30 MiB);
2. samples read (the source's ``reads``) per sample: one pass for the clean reference and the
   grid together (+ one pass per refinement round, measured on the small set with
   ``refine=True``);
3. the streamed scan vs the in-memory path on the same small set: max |difference| per
   variable (bit for bit expected: same batches, same generators);
4. ``kill -9`` during the grid pass over N samples, then a rerun: batches computed before the
   kill, the checkpoint's batch count, batches computed again, and whether the resumed file
   equals the uninterrupted run's.

    python benchmarks/bench_stream.py            # 50,000 vs 5,000: docs/bench_stream.json
    python benchmarks/bench_stream.py --quick    # 10,000 vs 1,000, JSON only with --json

The full run writes ~680 MB to the temporary directory (removed at the end) and takes ~9
minutes on 2 shared cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _machine import machine
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
SETTINGS: dict[str, Any] = {
    "layers": "conv2,fc1",
    "sigmas": "log:1e-2:1e0:5",  # both midpoints inside,
    "repeats": 2,
    "include_global": False,
    "refine": False,
    "batch_size": 500,
    "seed": 0,
}
CHECKPOINT_EVERY = 10
KILL_AFTER = 25  # batches of the grid pass logged before SIGKILL (fewer on small sets)
WRITE_CHUNK = 2_500  # samples generated and written at a time


def make_model() -> nn.Module:
    """The CIFAR-size CNN with named layers (conv1, conv2, fc1, fc2), random weights (seed 0)."""
    torch.manual_seed(0)
    layers = [
        ("conv1", nn.Conv2d(3, 8, 3, padding=1)),
        ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(8, 16, 3, padding=1)),
        ("relu2", nn.ReLU()),
        ("pool2", nn.MaxPool2d(2)),
        ("flat", nn.Flatten()),
        ("fc1", nn.Linear(16 * 8 * 8, 64)),
        ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(64, 10)),
    ]
    model, fc2 = nn.Sequential(OrderedDict(layers)), layers[-1][1]
    assert isinstance(fc2, nn.Linear)
    # centre the logits on standard normal inputs, else a random net predicts one class
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # in chunks: a big probe would be the process's peak RSS
        total = torch.zeros(10)  # added in this order: the weights are the same bits every run
        for _ in range(8):
            total = total + model(torch.randn(250, 3, 32, 32, generator=gen)).mean(0)
        fc2.bias.sub_(total / 8)
    return model


def write_data(folder: Path, n: int) -> None:
    """``x.npy`` (float32 N×3×32×32, standard normal) and ``y.npy``: the model's own clean
    predictions, so that the clean accuracy is 1, noise brings it down to chance and every
    layer has a midpoint. Written a chunk at a time: writing 614 MB never holds it all."""
    folder.mkdir(parents=True)
    rng, model = np.random.default_rng(0), make_model().eval()
    x = np.lib.format.open_memmap(folder / "x.npy", "w+", np.float32, (n, 3, 32, 32))
    y = np.empty(n, np.int64)
    for lo in range(0, n, WRITE_CHUNK):
        hi = min(n, lo + WRITE_CHUNK)
        chunk = rng.standard_normal((hi - lo, 3, 32, 32), np.float32)
        x[lo:hi] = chunk
        with torch.inference_mode():
            y[lo:hi] = model(torch.from_numpy(chunk)).argmax(1).numpy()
        x.flush()
    del x
    np.save(folder / "y.npy", y)


def copy_head(src: Path, dst: Path, n: int) -> None:
    """The first ``n`` samples of ``src`` as a dataset of their own."""
    dst.mkdir(parents=True)
    x = np.load(src / "x.npy", mmap_mode="r")
    out = np.lib.format.open_memmap(dst / "x.npy", "w+", np.float32, (n, *x.shape[1:]))
    out[:] = x[:n]
    out.flush()
    del out, x
    np.save(dst / "y.npy", np.load(src / "y.npy")[:n])


# ----- the child: one scan in a fresh process ---------------------------------------------


def _vm(field: str) -> int:
    """A /proc/self/status field in bytes (VmHWM: peak RSS; VmRSS: RSS now)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return -1


def child(job: dict[str, Any]) -> dict[str, Any]:
    """Run one scan as ``job`` says; return its measurements (printed as JSON)."""
    import walknoise
    import walknoise.walk.stream as stream
    from walknoise.sources import open_source

    torch.set_num_threads(int(job.get("threads", 2)))
    if job.get("log"):  # the batch indices each pass computes, one line each
        original = stream._batch

        def logged(jobs: Any, b: int, xb: torch.Tensor, yb: torch.Tensor) -> Any:
            out = original(jobs, b, xb, yb)
            with open(job["log"], "a") as f:
                f.write(f"{b} {_vm('VmRSS')}\n")
            return out

        stream._batch = logged
    model = make_model().eval()
    whole_process_peak = _vm("VmHWM")  # imports and the model: the same in every scan
    rss_before = _vm("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here on: the scan's own peak
    source = None
    if job["in_memory"]:
        x, y = np.load(Path(job["data"]) / "x.npy"), np.load(Path(job["data"]) / "y.npy")
        data: Any = (torch.from_numpy(x), torch.from_numpy(y))
    else:
        data = source = open_source(job["data"])
    settings = {**SETTINGS, **job.get("settings", {})}
    start = time.perf_counter()
    walknoise.scan(
        model,
        data,
        **settings,
        progress=False,
        output=job.get("output"),
        checkpoint_every=CHECKPOINT_EVERY,
    )
    return {
        "seconds": time.perf_counter() - start,
        "peak_rss": max(whole_process_peak, _vm("VmHWM")),
        "scan_peak_rss": _vm("VmHWM"),
        "rss_before_scan": rss_before,
        "reads": None if source is None else source.reads,
    }


# ----- the parent --------------------------------------------------------------------------


def _child_cmd(job: dict[str, Any]) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(job)]


def run_child(job: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(_child_cmd(job), capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"child {job} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _log_lines(path: Path) -> list[list[int]]:
    return [[int(v) for v in line.split()] for line in path.read_text().splitlines()]


def logged_batches(path: Path) -> list[int]:
    """The batch indices a child logged, in the order it computed them."""
    return [b for b, _ in _log_lines(path)] if path.exists() else []


def logged_rss(path: Path) -> list[int]:
    """RSS (bytes) after each logged batch."""
    return [rss for _, rss in _log_lines(path)]


def kill_and_resume(
    data: Path, n: int, work: Path, reference: Path, settings: dict[str, Any]
) -> dict[str, Any]:
    """SIGKILL the scan once a checkpoint exists and ``KILL_AFTER`` batches of its grid pass
    are done (fewer on a set of under 30 batches); rerun it to the end."""
    n_batches = -(-n // settings["batch_size"])
    kill_after = max(CHECKPOINT_EVERY + 1, min(KILL_AFTER, n_batches - 5))
    out, log1, log2 = work / "r.h5", work / "kill.log", work / "resume.log"
    partial = out.with_name(out.name + ".partial")
    job = {"data": str(data), "in_memory": False, "output": str(out), "log": str(log1),
           "settings": settings}  # fmt: skip
    proc = subprocess.Popen(_child_cmd(job), cwd=ROOT, stdout=subprocess.DEVNULL)
    start = time.perf_counter()
    while proc.poll() is None:
        if list(partial.glob("*.pt")) and len(logged_batches(log1)) >= kill_after:
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        raise RuntimeError("the scan finished before it could be killed; use more samples")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = time.perf_counter() - start
    before = logged_batches(log1)
    (checkpoint,) = list(partial.glob("*.pt"))
    saved = int(torch.load(checkpoint, map_location="cpu", weights_only=True)["batches"])
    resumed = run_child({**job, "log": str(log2)})
    after = logged_batches(log2)
    return {
        "killed_after_s": killed_at,
        "batches_before_kill": len(before),
        "checkpoint_batches": saved,
        "batches_recomputed": len(set(before) & set(after)),
        "resume_first_batch": min(after) if after else None,
        "resume_batches": len(after),
        "batches_in_grid_pass": n_batches,
        "resume_reads": resumed["reads"],
        "resume_reads_per_sample": resumed["reads"] / n,
        "resume_seconds": resumed["seconds"],
        "partial_folder_left": partial.exists(),
        "max_abs_diff_vs_uninterrupted": compare(out, reference),
    }


def compare(a: Path, b: Path) -> dict[str, float]:
    """:func:`diffs` of two results files."""
    import walknoise

    return diffs(walknoise.load(a).dataset, walknoise.load(b).dataset)


def diffs(da: Any, db: Any) -> dict[str, float]:
    """Max |a - b| of every data variable of two datasets (NaN where both are NaN counts as
    equal; a non-numeric variable: 0 if equal, else inf)."""
    if set(da.data_vars) != set(db.data_vars):
        raise RuntimeError(f"different variables: {set(da.data_vars) ^ set(db.data_vars)}")
    out = {}
    for name in sorted(map(str, da.data_vars)):
        va, vb = np.asarray(da[name].values), np.asarray(db[name].values)
        if va.dtype.kind not in "fiub" or va.shape != vb.shape:
            out[name] = 0.0 if np.array_equal(va, vb) else float("inf")
            continue
        va, vb = va.astype(np.float64), vb.astype(np.float64)
        d = np.where(np.isnan(va) & np.isnan(vb), 0.0, np.abs(va - vb))
        out[name] = float(np.where(np.isnan(d), np.inf, d).max()) if d.size else 0.0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 vs 1,000 samples")
    parser.add_argument("--n", type=int, help="samples of the large set (the small: n / 10)")
    parser.add_argument("--batch-size", type=int, default=SETTINGS["batch_size"])
    parser.add_argument("--json", type=Path, help="where to write the numbers")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    n = args.n or (10_000 if args.quick else 50_000)
    settings = {**SETTINGS, "batch_size": args.batch_size}
    out_json = args.json or (None if args.quick else ROOT / "docs" / "bench_stream.json")
    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    start = time.perf_counter()
    try:
        report = run(work, n, n // 10, settings)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["settings"] = {**settings, "checkpoint_every": CHECKPOINT_EVERY, "n": n,
                          "small": n // 10, "quick": args.quick}  # fmt: skip
    report["machine"] = machine() | {"total_seconds": time.perf_counter() - start}
    if out_json is not None:
        out_json.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {out_json}")


def run(work: Path, n: int, small: int, settings: dict[str, Any]) -> dict[str, Any]:
    """Every measurement on a big set of ``n`` samples and its first ``small``."""
    big_dir, small_dir = work / "big", work / "small"
    t = time.perf_counter()
    write_data(big_dir, n)
    copy_head(big_dir, small_dir, small)
    mb = (big_dir / "x.npy").stat().st_size / 1e6
    print(f"wrote {n:,} samples ({mb:.0f} MB) and their first {small:,} "
          f"in {time.perf_counter() - t:.0f} s")  # fmt: skip
    streamed = {"in_memory": False, "settings": settings}
    runs = {
        "big": {**streamed, "data": str(big_dir), "output": str(work / "big.h5"),
                "log": str(work / "big.log")},
        "small": {**streamed, "data": str(small_dir), "output": str(work / "small.h5")},
        "small_in_memory": {"data": str(small_dir), "in_memory": True, "settings": settings,
                            "output": str(work / "mem.h5")},
        "small_refined": {**streamed, "data": str(small_dir), "log": str(work / "refined.log"),
                          "settings": {**settings, "refine": True}},
    }  # fmt: skip
    measured = {}
    for name, job in runs.items():
        measured[name] = m = run_child(job)
        size = n if name == "big" else small
        reads = "-" if m["reads"] is None else f"{m['reads'] / size:g}"
        print(f"{name:<16} {m['seconds']:6.1f} s  peak RSS {m['peak_rss'] / MIB:6.1f} MiB"
              f"  reads/sample {reads}")  # fmt: skip
    big, sm = measured["big"], measured["small"]
    trace = logged_rss(work / "big.log")
    passes = len(logged_batches(work / "refined.log")) / -(-small // settings["batch_size"])
    report: dict[str, Any] = {
        "runs": measured,
        "peak_rss_ratio_big_to_small": big["peak_rss"] / sm["peak_rss"],
        "scan_peak_rss_ratio_big_to_small": big["scan_peak_rss"] / sm["scan_peak_rss"],
        "big_grid_pass_rss_mib": {
            "after_batch_1": trace[0] / MIB,
            "after_batch_10": trace[min(9, len(trace) - 1)] / MIB,
            "after_last_batch": trace[-1] / MIB,
            "max": max(trace) / MIB,
        },
        "reads_per_sample_big": big["reads"] / n,
        "reads_per_sample_small": sm["reads"] / small,
        "refined_small": {
            "reads_per_sample": measured["small_refined"]["reads"] / small,
            "passes_computing_cells": passes,
            "refinement_rounds": passes - 1,
        },
        "big_results": summary(work / "big.h5"),
        "streamed_vs_in_memory_max_abs_diff": compare(work / "small.h5", work / "mem.h5"),
    }
    (work / "kill").mkdir()
    report["kill_resume"] = kill_and_resume(big_dir, n, work / "kill", work / "big.h5", settings)
    print_summary(report, n, small)
    return report


MIB = 2**20


def summary(path: Path) -> dict[str, Any]:
    """The clean accuracy and each layer's midpoint: the scan found interior midpoints."""
    import walknoise

    ds = walknoise.load(path).dataset
    return {
        "clean_accuracy": float(ds.attrs.get("clean_accuracy", float("nan"))),
        "midpoint": {
            str(k): float(v) for k, v in zip(ds.layer.values, ds.midpoint.values, strict=True)
        },
        "midpoint_status": {
            str(k): int(v) for k, v in zip(ds.layer.values, ds.midpoint_status.values, strict=True)
        },
    }


def print_summary(r: dict[str, Any], n: int, small: int) -> None:
    runs, kr, tr = r["runs"], r["kill_resume"], r["big_grid_pass_rss_mib"]
    print()
    print(f"peak RSS  {n:,}: {runs['big']['peak_rss'] / MIB:.1f} MiB   {small:,}: "
          f"{runs['small']['peak_rss'] / MIB:.1f} MiB   ratio "
          f"{r['peak_rss_ratio_big_to_small']:.3f} (acceptance <= 1.5); since the scan began: "
          f"ratio {r['scan_peak_rss_ratio_big_to_small']:.3f}")  # fmt: skip
    print(f"RSS during the grid pass over {n:,}: after batch 1 {tr['after_batch_1']:.0f} MiB, "
          f"10 {tr['after_batch_10']:.0f}, last {tr['after_last_batch']:.0f}")  # fmt: skip
    print(f"reads/sample  {n:,}: {r['reads_per_sample_big']:g}   {small:,}: "
          f"{r['reads_per_sample_small']:g}   (clean reference and grid in one pass)")  # fmt: skip
    rs = r["refined_small"]
    print(f"refine=True on {small:,}: {rs['reads_per_sample']:g} reads/sample = clean & grid + "
          f"{rs['refinement_rounds']:g} refinement rounds")  # fmt: skip
    diffs = r["streamed_vs_in_memory_max_abs_diff"]
    print(f"streamed vs in-memory on {small:,}: {len(diffs)} variables, largest |diff| "
          f"{max(diffs.values()):g}")  # fmt: skip
    for name, d in diffs.items():
        if d != 0:
            print(f"    {name}: {d:g}")
    print(f"kill -9 on {n:,}: {kr['batches_before_kill']} of {kr['batches_in_grid_pass']} batches "
          f"done, checkpoint at {kr['checkpoint_batches']}, recomputed "
          f"{kr['batches_recomputed']} (< {CHECKPOINT_EVERY}); the rerun read "
          f"{kr['resume_reads_per_sample']:g} × N")  # fmt: skip
    worst = max(kr["max_abs_diff_vs_uninterrupted"].values())
    print(f"resumed file vs uninterrupted: largest |diff| {worst:g} over "
          f"{len(kr['max_abs_diff_vs_uninterrupted'])} variables")  # fmt: skip


if __name__ == "__main__":
    main()
