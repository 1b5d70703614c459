"""The root attributes every walknoise file carries: format, versions, time, command, config.

One helper for the scan, GNI and NIN files. The command line is what the CLI was invoked
with (set by :func:`invoked_as`); from Python it is the calling script's ``sys.argv``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import torch

from walknoise._version import __version__

__all__ = ["command_line", "invoked_as", "provenance"]

_COMMAND: ContextVar[str | None] = ContextVar("walknoise_command", default=None)


@contextmanager
def invoked_as(command: str) -> Iterator[None]:
    """Record ``command`` as the ``command`` attribute of files written inside the block."""
    token = _COMMAND.set(command)
    try:
        yield
    finally:
        _COMMAND.reset(token)


def command_line() -> str:
    """The command being run: the CLI's, else this process's arguments."""
    return _COMMAND.get() or " ".join(sys.argv)


def provenance(
    fmt: str, version: int, title: str, config: Mapping[str, Any] | str
) -> dict[str, Any]:
    """Format name and version, title, walknoise and torch versions, creation time (UTC),
    command and ``config`` (JSON; a mapping is dumped with sorted keys)."""
    return {
        "format": fmt,
        "format_version": version,
        "title": title,
        "walknoise_version": __version__,
        "torch_version": str(torch.__version__),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command_line(),
        "config": config if isinstance(config, str) else json.dumps(dict(config), sort_keys=True),
    }
