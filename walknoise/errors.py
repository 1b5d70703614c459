"""The one exception type for mistakes a user can make (bad path, bad file, bad option)."""

from __future__ import annotations


class WalknoiseError(Exception):
    """A user-facing error: the message names the problem and the fix, in one line.

    Messages speak the library's language (``ratio=1.5``), never a command-line flag;
    ``argument`` names the API argument the mistake is in, so the CLI can add its flag. The
    CLI prints ``error: <message>`` and exits with code 2; anything else that escapes is a
    bug in walknoise and keeps its traceback.
    """

    def __init__(self, message: str, *, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument
        """The API argument at fault (``"ratio"``, ``"sigmas"``), or None."""
