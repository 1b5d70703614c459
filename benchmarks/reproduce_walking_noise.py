"""Reproduce Walking Noise's findings on bundled MNIST (LeNet-5 and the 3×64 MLP), with intervals.

(a) layers differ: eval-phase midpoint σ per layer, 95% interval over independently trained
    seeds; (b) training under the noise raises the midpoint (paired over seeds); (c) additive
    noisy training grows the weights, and clamping (±1 as the authors, and at the clean
    max|w|) limits it; (d) multiplicative noisy training: robustness at large σ and
    self-binarization at the noisy point. Combined noise (ratios 0.1, 0.5, 0.9), global noise
    and BatchNorm models are run too. Conditions follow the authors' code
    (UniHD-CEG/walking-noise); docs/reproduction.md lists where they differ.

    python benchmarks/reproduce_walking_noise.py --quick   # smoke test: 7 min on 2 shared cores
    python benchmarks/reproduce_walking_noise.py           # the full profile: 37 min
    python benchmarks/reproduce_walking_noise.py --quick --replot   # figures from the JSON

Writes ``reproduction_{quick,full}.json`` (every number quoted in docs/reproduction.md) and
the figures ``reproduction_{quick,full}_*.png`` to ``--out`` (default ``docs/figures``); the
results files go to ``--results``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path
from typing import Any

import _repro_figures as figures
import _repro_stats as st
from _repro_jobs import ARCHS, PROFILES, RATIOS, Job, Profile, jobs, run_job


def run_all(profile: Profile, results: Path, workers: int) -> dict[str, Any]:
    """Every job of the profile in ``workers`` processes; their outcomes by job name."""
    todo = jobs(profile)
    done: dict[str, Any] = {}
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {pool.submit(run_job, profile, job, results): job for job in todo}
        for i, future in enumerate(as_completed(futures), 1):
            job = futures[future]
            try:
                done[job.name] = future.result()
            except Exception as exc:  # one failed job leaves the others' findings standing
                print(f"[{i}/{len(todo)}] {job.name} failed: {exc!r}", flush=True)
                continue
            print(f"[{i}/{len(todo)}] {job.name}: {done[job.name]['seconds']} s", flush=True)
    return done


def outcome(profile: Profile, results: Path, job: Job) -> dict[str, Any]:
    return dict(json.loads((results / f"{profile.name}_{job.name}.json").read_text()))


def arch_report(profile: Profile, results: Path, arch: str) -> dict[str, Any]:
    """Every finding of one architecture from the results files of its finished jobs; a
    section whose jobs did not finish is None and its jobs are listed under ``missing``."""
    p = profile.name
    missing: list[str] = []

    def ready(*jobs: Job) -> bool:
        gone = [j.name for j in jobs if not (results / f"{p}_{j.name}.json").exists()]
        missing.extend(gone)
        return not gone

    def file(job: Job, suffix: str = "") -> Path:
        return results / f"{p}_{job.name}{suffix}.h5"

    def evals(kind: str, bn: bool = False) -> list[Path] | None:
        jobs = [Job("bn_eval" if bn else "eval", arch, {"seed": s}) for s in range(profile.seeds)]
        return [file(j, f"_{kind}") for j in jobs] if ready(*jobs) else None

    def section(fn: Any, *args: Any) -> Any:
        return None if any(a is None for a in args) else fn(*args)

    free_job, mult_job = (Job("train", arch, {"noise": n}) for n in ("additive", "multiplicative"))
    free = file(free_job) if ready(free_job) else None
    mult = file(mult_job) if ready(mult_job) else None
    out: dict[str, Any] = {"a": section(st.eval_midpoints, evals("additive"))}
    out["a_multiplicative"] = section(st.eval_midpoints, evals("multiplicative"))
    out["a_combined"] = {str(r): section(st.eval_midpoints, evals(f"combined{r}")) for r in RATIOS}
    out["a_batchnorm"] = section(st.eval_midpoints, evals("additive", bn=True))
    out["b"] = section(st.compare_b, out["a"], free)
    out["c"] = {"free": section(st.growth, free)}
    for at in ("1", "max"):
        job = Job("clamp", arch, {"at": at})
        if ready(job):
            clamp = outcome(profile, results, job)["clamp"]
            out["c"][f"clamp{at}"] = st.growth(file(job), clamp)
            out["c"][f"effect_clamp{at}"] = section(st.clamp_effect, free, file(job))
    out["d"] = section(st.selfbin, mult)
    if out["d"] is not None:
        out["d"]["midpoints"] = section(st.compare_b, out["a_multiplicative"], mult)
    out["combined"] = {}
    for r in RATIOS:
        job = Job("combined", arch, {"ratio": r})
        out["combined"][str(r)] = st.plain_train(file(job)) if ready(job) else None
    bn = Job("bn_train", arch)
    out["batchnorm"] = st.plain_train(file(bn)) if ready(bn) else None
    out["global"] = {}
    for kind in ("additive", "multiplicative"):
        job = Job("global", arch, {"noise": kind})
        path = results / f"{p}_{job.name}.json"
        out["global"][kind] = st.global_train(path) if ready(job) else None
    out["missing"] = sorted(set(missing))
    return out


def provenance() -> dict[str, str]:
    """Which walknoise computed the files: its path and the repository's commit (a copy made
    by ``git archive`` names its commit in a ``COMMIT`` file beside the package)."""
    import walknoise

    path = Path(walknoise.__file__).parent
    git = ["git", "-C", str(path), "rev-parse", "HEAD"]
    commit = subprocess.run(git, capture_output=True, text=True).stdout.strip()
    stamp = path.parent / "COMMIT"
    if not commit and stamp.exists():
        commit = stamp.read_text().strip()
    return {"path": str(path), "commit": commit or "unknown"}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small profile")
    parser.add_argument("--out", type=Path, default=Path("docs/figures"))
    parser.add_argument("--results", type=Path, default=Path("reproduction-results"))
    parser.add_argument("--replot", action="store_true", help="figures from the JSON only")
    parser.add_argument("--jobs", type=int, default=2, help="parallel processes (1 thread each)")
    parser.add_argument("--overwrite", action="store_true", help="start over, not resume")
    parser.add_argument(
        "--no-run", action="store_true", help="report the finished jobs only (run none)"
    )
    args = parser.parse_args()
    profile = PROFILES["quick" if args.quick else "full"]
    report_path = args.out / f"reproduction_{profile.name}.json"
    args.out.mkdir(parents=True, exist_ok=True)
    if args.replot:
        figures.draw_all(json.loads(report_path.read_text()), args.out, profile.name)
        return
    if args.overwrite and args.results.exists():
        shutil.rmtree(args.results)
    args.results.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if not args.no_run:
        run_all(profile, args.results, args.jobs)
    # --no-run reports files made earlier: keep the wall time of the run that made them
    wall = json.loads(report_path.read_text()).get("wall_seconds") if report_path.exists() else None
    report: dict[str, Any] = {
        "profile": asdict(profile),
        "command": "python benchmarks/reproduce_walking_noise.py"
        + (" --quick" if args.quick else ""),
        "wall_seconds": wall if args.no_run else round(time.perf_counter() - start),
        "walknoise": provenance(),
        "job_seconds": {
            job.name: outcome(profile, args.results, job)["seconds"]
            for job in jobs(profile)
            if (args.results / f"{profile.name}_{job.name}.json").exists()
        },
    }
    report |= {arch: arch_report(profile, args.results, arch) for arch in ARCHS}
    report_path.write_text(json.dumps(report, indent=1))
    figures.draw_all(report, args.out, profile.name)
    print(f"wrote {report_path} in {report['wall_seconds']} s")


if __name__ == "__main__":
    main()
