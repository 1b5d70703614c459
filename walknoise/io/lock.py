"""One writer per results file: an OS lock on ``results.h5.lock`` while a scan writes.

The lock is ``flock`` (via ``filelock``), which the kernel ties to the open file: when the
holder exits or is killed, even by SIGKILL, the lock goes with it, so a stale lock never
blocks a later scan. A killed holder leaves the empty ``.lock`` file behind; its existence
means nothing. A holder that finishes removes it while still holding the lock, which is safe
because filelock (>= 4) refuses a lock on a file that was unlinked under it and retries.
(On a filesystem without ``flock``, filelock falls back to a marker file; see the docs.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TypeVar

from filelock import FileLock, Timeout

from walknoise.errors import WalknoiseError
from walknoise.io.netcdf import stale_temps

P = ParamSpec("P")
R = TypeVar("R")


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


@contextmanager
def one_writer(path: Path) -> Iterator[None]:
    """Hold the writer lock of results file ``path``; refuse at once if another holds it."""
    path = Path(path)
    if not path.parent.is_dir():  # filelock would create the missing directories
        raise WalknoiseError(
            f"directory {path.parent} does not exist; create it or choose another output path"
        )
    lock = FileLock(lock_path(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise WalknoiseError(
            f"{path} is being written by another walknoise scan (it holds {lock_path(path)}); "
            "wait for it to finish, or choose another output path"
        ) from None
    except OSError as err:
        raise WalknoiseError(
            f"cannot create the lock file {lock_path(path)} ({err.strerror or err}); "
            "check that the directory is writable"
        ) from None
    try:
        for tmp in stale_temps(path):  # left by a killed writer; we are the only one
            tmp.unlink(missing_ok=True)
        yield
    finally:
        lock_path(path).unlink(missing_ok=True)  # no litter; see the module docstring
        lock.release()


def locks_output(func: Callable[P, R]) -> Callable[P, R]:
    """Run ``func`` holding the lock of its ``output=`` results file (when one is given)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        output = kwargs.get("output")
        if not output:
            return func(*args, **kwargs)
        with one_writer(Path(str(output))):
            return func(*args, **kwargs)

    return wrapper
