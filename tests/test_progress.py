"""Progress bars never warn in Jupyter without ipywidgets (issue 15, item 5)."""

from __future__ import annotations

import re
import sys
import types
import warnings
from pathlib import Path

import pytest
from tqdm import tqdm

from walknoise.progress import bar_class, progress_bar

PACKAGE = Path(__file__).resolve().parent.parent / "walknoise"


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process looks like a Jupyter kernel to tqdm and to walknoise."""
    shell = types.SimpleNamespace(config={"IPKernelApp": {}})
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: shell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", ipython)


def test_jupyter_without_ipywidgets_gets_a_text_bar_and_no_warning(kernel, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets fails
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bar_class() is tqdm
        with progress_bar(total=3, disable=True) as bar:
            bar.update(3)


def test_jupyter_with_ipywidgets_gets_the_notebook_bar(kernel, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ipywidgets", types.ModuleType("ipywidgets"))
    from tqdm.notebook import tqdm as notebook_bar

    assert bar_class() is notebook_bar


def test_a_terminal_gets_the_text_bar() -> None:
    assert bar_class() is tqdm


def test_every_bar_comes_from_the_helper() -> None:
    """tqdm.auto (or tqdm.autonotebook) anywhere would warn in such a notebook again."""
    users = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if re.search(r"tqdm\.auto|\btqdm\(", p.read_text()) and p.name != "progress.py"
    ]
    assert users == []
