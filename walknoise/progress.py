"""Progress bars: a notebook widget where Jupyter can draw one, plain text everywhere else.

``tqdm.auto`` picks the widget in any Jupyter kernel and, when ipywidgets is missing (it is
not a walknoise dependency), warns "IProgress not found" before falling back to text. Here
the widget is chosen only when ipywidgets imports, so no path warns. ``tqdm`` is the text
bar's class, the base of both, for annotations.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from tqdm import tqdm

__all__ = ["bar_class", "progress_bar", "tqdm"]


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (tqdm.autonotebook's own test)."""
    ipython = sys.modules.get("IPython")
    try:
        shell = ipython.get_ipython() if ipython is not None else None
        return shell is not None and "IPKernelApp" in shell.config
    except Exception:  # an IPython too old or too odd to ask: draw text
        return False


def bar_class() -> type[tqdm[Any]]:
    """tqdm's notebook bar in Jupyter when ipywidgets imports, else the text bar."""
    if not in_notebook():
        return tqdm
    try:
        importlib.import_module("ipywidgets")
    except ImportError:
        return tqdm
    from tqdm.notebook import tqdm as notebook_bar

    return notebook_bar


def progress_bar(*args: Any, **kwargs: Any) -> tqdm[Any]:
    """A progress bar of :func:`bar_class` taking tqdm's arguments."""
    return bar_class()(*args, **kwargs)
