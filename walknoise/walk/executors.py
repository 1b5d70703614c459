"""Where a scan's layers are computed: here, in local worker processes, or on a SLURM cluster.

Layers are independent, so an executor takes a ``LayerWork`` and a list of ``LayerTask`` and
yields each layer's outcome as it arrives, in any order. It never writes the results file:
the driver (``walknoise.walk.driver.run_spec``) stores each layer as it comes back, so a crash
anywhere loses at most the layers in flight, and a rerun computes only what is missing.

* ``Serial``: in this process, one layer after the other.
* ``Joblib``: ``joblib.Parallel`` worker processes (loky by default; any backend set with
  ``joblib.parallel_config``, e.g. Dask or Ray, is used instead).
* ``Submitit``: ONE job array over the layers through submitit (``cluster="slurm"``), or
  submitit's local processes (``cluster="local"``, for tests). A job that fails or dies is
  yielded as ``LayerFailed``; the driver reports it and submits its layers again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from walknoise.errors import WalknoiseError
from walknoise.types import EXECUTORS as EXECUTORS  # the names, re-exported
from walknoise.types import ExecutorName
from walknoise.walk.cells import EVAL, LayerDone, LayerTask, LayerWork, compute_tasks

POLL_S = 0.25  # how often the driver looks for finished SLURM jobs (a file check, no sacct)


@dataclass(frozen=True)
class LayerFailed:
    """A task whose job failed or died; its layer stays undone."""

    task: LayerTask
    message: str


Outcome = LayerDone | LayerFailed


class Executor(Protocol):
    """Runs layer tasks somewhere and yields their outcomes as they finish."""

    remote: bool
    """Runs on other machines, which may have devices this one lacks."""

    def map(self, work: LayerWork, tasks: Sequence[LayerTask]) -> Iterator[Outcome]: ...

    def cancel(self) -> str | None:
        """Stop what is running elsewhere (Ctrl-C); return a line saying what was stopped."""
        ...


class Serial:
    """In the calling process: the reference path, and the default."""

    remote = False

    def map(self, work: LayerWork, tasks: Sequence[LayerTask]) -> Iterator[Outcome]:
        yield from compute_tasks(work, tasks)

    def cancel(self) -> str | None:
        return None


@dataclass
class Joblib:
    """Local worker processes via ``joblib.Parallel`` (``jobs`` as joblib's ``n_jobs``)."""

    jobs: int = 2
    remote = False

    def map(self, work: LayerWork, tasks: Sequence[LayerTask]) -> Iterator[Outcome]:
        import joblib

        # Each worker gets its share of the cores: more would oversubscribe them. With as
        # many threads as a serial run, results are bitwise those of the serial run.
        threads = max(1, torch.get_num_threads() // joblib.effective_n_jobs(self.jobs))
        shipped = work.portable(threads)
        driver = os.getpid()
        groups = _groups(tasks, joblib.effective_n_jobs(self.jobs))
        calls = (joblib.delayed(run_in_worker)(shipped, group, driver) for group in groups)
        with _watched_workers(driver):
            try:
                parallel = joblib.Parallel(
                    n_jobs=self.jobs, batch_size=1, return_as="generator_unordered"
                )
            except ValueError:  # a backend that cannot stream (e.g. multiprocessing, Ray)
                parallel = joblib.Parallel(n_jobs=self.jobs, batch_size=1, return_as="list")
            for done in parallel(calls):
                yield from done

    def cancel(self) -> str | None:
        return None  # workers exit with the driver (exit_with_parent)


def _watched_workers(driver: int) -> contextlib.AbstractContextManager[Any]:
    """With joblib's default (loky) backend, every worker watches the driver from its start,
    not only from its first task: a worker still starting when the driver is killed would
    otherwise wait for work until loky's idle timeout (5 minutes). Other backends (Dask,
    Ray, chosen with ``joblib.parallel_config``) are left as configured."""
    from joblib.parallel import LokyBackend, get_active_backend, parallel_config

    backend, _ = get_active_backend()
    if not isinstance(backend, LokyBackend):
        return contextlib.nullcontext()
    kwargs = {**backend.backend_kwargs, "initializer": _watch, "initargs": (driver,)}
    config: contextlib.AbstractContextManager[Any] = parallel_config(backend="loky", **kwargs)
    return config


def _groups(tasks: Sequence[LayerTask], workers: int) -> list[list[LayerTask]]:
    """Eval tasks dealt round-robin into one group per worker (each group reads the data once
    for all its layers); train tasks one per group (each is many trainings)."""
    evals = [t for t in tasks if t.flag == EVAL]
    dealt = [evals[i :: max(1, workers)] for i in range(min(workers, len(evals)))]
    return [g for g in dealt if g] + [[t] for t in tasks if t.flag != EVAL]


def run_in_worker(
    work: LayerWork, tasks: Sequence[LayerTask], driver: int | None = None
) -> list[LayerDone]:
    """The entry point in a worker process: threads, device, then the layers."""
    if driver is not None:  # only in local worker processes
        exit_with_parent(driver)
    threads = work.threads or int(os.environ.get("SLURM_CPUS_PER_TASK", "0"))
    if threads:
        torch.set_num_threads(threads)
    return list(compute_tasks(work.localized(), tasks))


def exit_with_parent(driver: int) -> None:
    """In a local worker: end this process soon after the driver ends (Ctrl-C, kill), instead
    of finishing a layer nobody will store. Only for direct children of the driver: a Dask or
    Ray worker has another parent and is left alone."""
    if os.getppid() == driver:
        _watch(driver)


def _watch(driver: int) -> None:
    """Exit when the parent is no longer ``driver`` (already, or later); ignore Ctrl-C, which
    the driver handles. Loky runs this first in every worker it starts for us."""
    if any(t.name == "walknoise-parent" for t in threading.enumerate()):
        return
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == driver:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="walknoise-parent", daemon=True).start()


@dataclass(frozen=True)
class SlurmOptions:
    """Where and how the job array runs."""

    folder: Path = Path("walknoise-slurm")
    """Job scripts, pickles and logs; must be visible from the compute nodes."""
    partition: str | None = None
    gpus: int = 0
    """GPUs per array task (``--gpus-per-node``)."""
    cpus: int = 1
    """CPU cores per array task; torch uses as many threads."""
    time: int = 60
    """Time limit of each array task, in minutes."""
    parallelism: int | None = None
    """Most array tasks running at once (``%N``); ``None``: as SLURM allows."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder))  # a str is fine too
        for name, least in (("gpus", 0), ("cpus", 1), ("time", 1)):
            if getattr(self, name) < least:
                raise WalknoiseError(
                    f"SlurmOptions {name}={getattr(self, name)}; it must be at least {least}",
                    argument=name,
                )


class Submitit:
    """One job array over the layers through submitit; failed tasks come back as such."""

    remote = True

    def __init__(self, options: SlurmOptions | None = None, cluster: str = "slurm") -> None:
        self.options = options or SlurmOptions()
        self.cluster = cluster
        self._jobs: list[Any] = []
        # Ctrl-C reaches cancel() twice at once: from the watcher thread that prints its line
        # and from the unwinding generator's `finally`. The lock and the remembered line make
        # both calls report the one cancellation, whichever ran it.
        self._cancel_lock = threading.Lock()
        self._cancelled: str | None = None

    def map(self, work: LayerWork, tasks: Sequence[LayerTask]) -> Iterator[Outcome]:
        folder = self.options.folder.resolve()
        folder.mkdir(parents=True, exist_ok=True)
        self._cancel_stale(folder)
        shipped = folder / f"work-{uuid.uuid4().hex}.pkl"
        _dump(work.portable(), shipped)
        try:
            jobs = self._submit(folder, shipped, tasks)
            yield from self._collect(jobs, tasks)
        finally:
            self.cancel()  # nothing is left running once the driver stops listening
            shipped.unlink(missing_ok=True)
            (folder / ACTIVE).unlink(missing_ok=True)

    def _submit(self, folder: Path, shipped: Path, tasks: Sequence[LayerTask]) -> list[Any]:
        import submitit

        executor = submitit.AutoExecutor(folder=folder, cluster=self.cluster)
        opts = self.options
        params: dict[str, Any] = {"timeout_min": opts.time, "cpus_per_task": opts.cpus}
        params |= {"name": "walknoise", "gpus_per_node": opts.gpus or None}
        if self.cluster == "slurm":
            params |= {"slurm_partition": opts.partition, "slurm_array_parallelism": 256}
            if opts.parallelism:
                params["slurm_array_parallelism"] = opts.parallelism
        executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
        try:
            jobs = executor.map_array(run_from_file, [str(shipped)] * len(tasks), list(tasks))
        except Exception as err:  # sbatch refused: bad partition, no such GPU, ...
            raise WalknoiseError(f"SLURM refused the job array: {_first_line(err)}") from None
        self._jobs, self._cancelled = list(jobs), None
        (folder / ACTIVE).write_text("".join(f"{j.job_id}\n" for j in jobs))
        return self._jobs

    def _collect(self, jobs: list[Any], tasks: Sequence[LayerTask]) -> Iterator[Outcome]:
        waiting = dict(enumerate(jobs))
        while waiting:
            for i, job in list(waiting.items()):
                if job.done():
                    del waiting[i]
                    yield _outcome(job, tasks[i])
            if waiting:
                time.sleep(POLL_S)

    def cancel(self) -> str | None:
        """Cancel the unfinished jobs; never raises (it runs on Ctrl-C). Returns the line
        to print, also to a second caller that found nothing left to cancel."""
        with self._cancel_lock:
            jobs, self._jobs = self._jobs, []
            if jobs:
                self._cancelled = self._scancel(jobs)
            return self._cancelled

    def _scancel(self, jobs: list[Any]) -> str | None:
        ids = [str(job.job_id) for job in jobs if not _finished(job)]
        if not ids:
            return None
        try:
            if self.cluster == "slurm":
                subprocess.run(["scancel", *ids], capture_output=True, timeout=3, check=False)
            else:
                for job in jobs:
                    job.cancel(check=False)
        except (OSError, subprocess.SubprocessError) as err:
            return f"could not cancel jobs {' '.join(ids)} ({_first_line(err)}): use scancel"
        return f"cancelled unfinished jobs {' '.join(ids)}"

    def _cancel_stale(self, folder: Path) -> None:
        """Jobs a killed driver left running for this folder: nobody will store them."""
        stale = folder / ACTIVE
        if self.cluster != "slurm" or not stale.exists():
            return
        ids = stale.read_text().split()
        if ids:
            subprocess.run(["scancel", *ids], capture_output=True, timeout=10, check=False)


ACTIVE = "active-jobs"  # ids of the jobs the current driver submitted, one per line


def _finished(job: Any) -> bool:
    """Finished as far as the files say: no sacct call, which a Ctrl-C cannot wait for."""
    return bool(job.paths.result_pickle.exists())


def _outcome(job: Any, task: LayerTask) -> Outcome:
    try:
        done = job.result()
    except Exception as err:  # FailedJobError, UncompletedJobError: the job failed or died
        return LayerFailed(task, f"job {job.job_id} failed: {_first_line(err)}")
    assert isinstance(done, LayerDone)
    return done


def _first_line(err: BaseException) -> str:
    text = str(err).split("\n")[0] or type(err).__name__
    return f"{type(err).__name__}: {text[:200]}"


def _dump(work: LayerWork, path: Path) -> None:
    import cloudpickle  # submitit's dependency: pickles models defined in a notebook too

    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        cloudpickle.dump(work, fh)
    os.replace(tmp, path)


def run_from_file(shipped: str, task: LayerTask) -> LayerDone:
    """The job array's function: load the shared work once, compute one layer."""
    with open(shipped, "rb") as fh:
        work = pickle.load(fh)
    (done,) = run_in_worker(work, [task])
    return done


def make_executor(
    name: ExecutorName = "auto", jobs: int = 1, slurm: SlurmOptions | None = None
) -> Executor:
    """``auto``: serial for one job, joblib for more; ``slurm``: one job array."""
    if name not in EXECUTORS:
        raise WalknoiseError(
            f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}",
            argument="executor",
        )
    if jobs == 0 or jobs < -1:
        raise WalknoiseError(
            f"jobs={jobs}; it must be at least 1 (or -1 for every core)", argument="jobs"
        )
    if name == "slurm":
        _require("submitit", "slurm")
        options = slurm or SlurmOptions()
        if options.parallelism is None and jobs > 1:
            options = dataclasses.replace(options, parallelism=jobs)
        return Submitit(options)
    if name == "joblib" or (name == "auto" and jobs != 1):
        _require("joblib", None)
        return Joblib(jobs)
    return Serial()


def _require(module: str, extra: str | None) -> None:
    try:
        __import__(module)
    except ImportError:
        how = f"pip install 'walknoise[{extra}]'" if extra else f"pip install {module}"
        raise WalknoiseError(
            f"this executor needs {module}, which is not installed: {how}"
        ) from None
