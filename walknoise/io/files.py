"""Temporary files beside a target, with the mode the target will have once renamed.

Every file walknoise writes is written to a temporary copy in the same directory and
renamed over the target (``os.replace`` is atomic). ``tempfile.mkstemp`` creates that copy
with mode 0600, which the rename would carry over whatever the user's umask; here a new file
gets ``0o666 & ~umask`` (the kernel applies the umask to ``os.open``'s mode, as for any
ordinary file) and the copy of an existing file keeps that file's mode.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

__all__ = ["temp_beside"]


def temp_beside(path: Path) -> Path:
    """Create an empty ``.{name}.<random>.tmp`` beside ``path`` and return its path."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        try:
            if path.exists():
                os.fchmod(fd, stat.S_IMODE(path.stat().st_mode))
        finally:
            os.close(fd)
        return tmp
