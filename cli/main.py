"""The ``walknoise`` console entry point: Ctrl-C at any moment is one line and exit code 130.

The console script and ``python -m walknoise.cli`` import this module and call :func:`main`.
It imports nothing itself: click, the application (``cli/app.py``), each command's module and
torch are all imported inside :func:`main`, where a Ctrl-C that lands in an import is caught
like any other. Before it, only the interpreter starts and ``import walknoise`` runs (a few
milliseconds; a Ctrl-C there is Python's own).

Python drops a ``KeyboardInterrupt`` raised while a weakref callback or a finalizer runs: it
prints ``Exception ignored in ...`` and carries on, so the command went on as if never
interrupted. Imports run such callbacks (their module locks), so a Ctrl-C during start-up
could vanish; :func:`main` delivers such an interrupt to the main thread again.

The application's names (``cli``, ``flag_of``, the groups) still read from here
(``walknoise.cli.main:cli`` for the docs and other tools), loaded on first access.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
from collections.abc import Callable, MutableMapping
from typing import Any, NoReturn

from walknoise.heap import keep_freed_memory

EXIT_INTERRUPTED = 130
REDELIVER_S = 0.01
"""Delay before a dropped Ctrl-C is delivered again (once this hook has returned)."""


def interrupted() -> NoReturn:
    """Ctrl-C: one line on stderr and exit code 130."""
    print("interrupted", file=sys.stderr, flush=True)
    sys.exit(EXIT_INTERRUPTED)


def main() -> None:
    """Run the ``walknoise`` command line (``sys.argv``)."""
    wait_passively_when_busy(os.environ)
    keep_freed_memory()  # activations reuse pages, not fault in new ones (walknoise/heap.py)
    previous = sys.unraisablehook
    sys.unraisablehook = _redeliver(previous)
    try:
        from .app import cli  # click, then the commands' modules: a Ctrl-C may land in them

        cli(prog_name="walknoise")
    except KeyboardInterrupt:
        interrupted()
    finally:
        sys.unraisablehook = previous


def wait_passively_when_busy(env: MutableMapping[str, str]) -> None:
    """Before torch loads OpenMP: on a machine already as busy as it has cores, let OpenMP's
    threads sleep instead of spinning while they wait for each other.

    Measured on 2 cores (benchmarks/bench_threads.py), the LeNet-5 walk: idle, one thread
    12.4 s, two spinning (the default) 7.5 s, two sleeping 10.4 s; beside one busy process,
    12.1 s, 24.1 s and 12.4 s. Spinning wins on an idle machine and loses 2×
    on a busy one, so the choice goes by the load at start; a user's own setting stands.
    """
    try:
        busy = os.getloadavg()[0] >= (os.cpu_count() or 1)
    except (OSError, AttributeError):  # no load average on this platform
        return
    if busy:
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")


Unraisable = Callable[["sys.UnraisableHookArgs"], Any]


def _redeliver(previous: Unraisable) -> Unraisable:
    """An unraisable hook that raises a dropped KeyboardInterrupt again in the main thread."""

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        if issubclass(unraisable.exc_type, KeyboardInterrupt):
            # A little later, from another thread: raised in this hook, the KeyboardInterrupt
            # would be dropped again (and if it lands in a callback again, it comes back
            # here). As a signal would, it also wakes the watcher of a scan (cli/interrupt.py).
            threading.Timer(REDELIVER_S, _thread.interrupt_main, (signal.SIGINT,)).start()
        else:
            previous(unraisable)

    return hook


def __getattr__(name: str) -> Any:
    if name.startswith("__"):  # the import system probes e.g. __path__: not the app's
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import app

    return getattr(app, name)
