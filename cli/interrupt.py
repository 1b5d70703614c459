"""Ctrl-C that ends a scan within a second, even in the middle of a long forward pass.

Python runs a signal handler only between bytecodes, so a ``KeyboardInterrupt`` waits for the
torch operation in flight, and then unwinding and interpreter shutdown take half a second
more. Torch releases the GIL while it computes, so a watcher thread woken by the signal
(``signal.set_wakeup_fd``) can act at once: it waits for a results-file update in progress
(milliseconds), prints the message and ends the process with ``os._exit(130)``. That is as
safe as a kill, which the SIGKILL fault test covers: every finished layer is already on disk,
each update is atomic, and the kernel drops the writer lock.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from walknoise.io.netcdf import WRITING

EXIT_INTERRUPTED = 130


Cleanup = Callable[[], str | None]
Message = str | Callable[[], str]
"""The line to print, or a function giving it at the moment of the Ctrl-C (what is on disk
then)."""


@contextmanager
def stop_promptly(message: Message, cleanup: Cleanup | None = None) -> Iterator[None]:
    """On Ctrl-C inside the block: print ``message`` and exit 130 at once.

    ``cleanup`` runs first (e.g. cancelling SLURM jobs); the line it returns is printed too.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only; nothing to watch
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    signalled = threading.Event()
    watcher = threading.Thread(
        target=_watch, args=(read_fd, signalled, message, cleanup), daemon=True
    )
    watcher.start()
    try:
        yield
    except KeyboardInterrupt:
        if signalled.wait(0.5):  # a real Ctrl-C: the watcher is ending the process
            threading.Event().wait()
        _say(message)  # raised by code, not by a signal: stop the ordinary way
        sys.exit(EXIT_INTERRUPTED)
    finally:
        signal.set_wakeup_fd(previous)
        os.write(write_fd, b"\0")  # not a signal number: tells the watcher to return
        watcher.join()
        os.close(read_fd)
        os.close(write_fd)


def _watch(
    read_fd: int, signalled: threading.Event, message: Message, cleanup: Cleanup | None
) -> None:
    while True:
        received = os.read(read_fd, 64)  # one byte per signal: its number
        if signal.SIGINT in received:
            break
        if 0 in received:
            return
    signalled.set()
    done = cleanup() if cleanup is not None else None
    with WRITING:  # let an update in progress land: it holds a finished layer
        line = message() if callable(message) else message
        _say(line if done is None else f"{line}\n{done}")
        sys.stdout.flush()
        os._exit(EXIT_INTERRUPTED)


def _say(message: Message) -> None:
    message = message() if callable(message) else message
    newline = "\n" if sys.stderr.isatty() else ""  # off the progress bar's line
    sys.stderr.write(f"{newline}{message}\n")
    sys.stderr.flush()
