"""The one exception type for mistakes a user can make (bad path, bad file, bad option)."""


class WalknoiseError(Exception):
    """A user-facing error: the message names the problem and the fix, in one line.

    The CLI prints it as ``error: <message>`` and exits with code 2; anything else that
    escapes is a bug in walknoise and keeps its traceback.
    """
