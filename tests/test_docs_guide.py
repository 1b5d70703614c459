"""The documentation's code runs as written: the own-model guide, the FAQ's by-hand cell, the
notebook's committed form and the figures the pages show. (`make docs` builds the site with
``mkdocs build --strict`` and executes the notebook.)"""

from __future__ import annotations

import json
import re
import runpy
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

import walknoise
from walknoise.cli.app import cli
from walknoise.data import load_mnist
from walknoise.models import build_model
from walknoise.training import seeded_init

DOCS = Path(__file__).resolve().parent.parent / "docs"
FENCE = re.compile(r'^```(\w+)(?: title="([^"]+)")?\n(.*?)^```', re.MULTILINE | re.DOTALL)


def blocks(page: str, lang: str) -> list[tuple[str | None, str]]:
    """``(title, code)`` of every fenced block of ``lang`` on ``docs/page``, in order."""
    text = (DOCS / page).read_text()
    return [(title or None, code) for kind, title, code in FENCE.findall(text) if kind == lang]


def titled(page: str, lang: str, title: str) -> str:
    found = [code for t, code in blocks(page, lang) if t == title]
    assert len(found) == 1, f"{page} should have one ```{lang} block titled {title}"
    return found[0]


def commands(page: str, starts: str) -> list[list[str]]:
    """The shell commands on ``page`` that begin with ``starts`` (continuations joined)."""
    out = []
    for _, code in blocks(page, "bash"):
        for line in code.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith(starts):
                out.append(shlex.split(line)[1:])  # without the leading `walknoise`
    return out


def run(args: list[str]) -> str:
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def guide_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh working directory whose ``mymodels`` is the guide's, not another test's."""
    sys.modules.pop("mymodels", None)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("mymodels", None)


def make_guide_files(directory: Path) -> None:
    """Steps 1 and 2 of the own-model guide in ``directory`` (the working directory, on
    ``sys.path``): ``mymodels.py``, and ``sd.pt`` and ``my_test.npz`` from its
    ``train_mine.py``, whose test set is cut to 200 images so that scans in CI are quick."""
    (directory / "mymodels.py").write_text(titled("own-model.md", "python", "mymodels.py"))
    train = titled("own-model.md", "python", "train_mine.py")
    small = 'load_mnist("train"), load_mnist("test").subset(200)'
    assert 'load_mnist("train"), load_mnist("test")' in train
    (directory / "train_mine.py").write_text(
        train.replace('load_mnist("train"), load_mnist("test")', small)
    )
    runpy.run_path(str(directory / "train_mine.py"), run_name="__main__")
    assert (directory / "sd.pt").is_file() and (directory / "my_test.npz").is_file()


def test_own_model_guide_runs_as_written(guide_dir: Path) -> None:
    torch.set_num_threads(1)
    make_guide_files(guide_dir)

    # `walknoise layers` prints exactly the table the guide shows
    (layers,) = commands("own-model.md", "walknoise layers")
    shown = next(code for _, code in blocks("own-model.md", "text") if code.startswith("layer "))
    assert run(layers) == shown

    scan = [c for c in commands("own-model.md", "walknoise scan") if "--phase" not in c]
    assert len(scan) == 1
    output = run([*scan[0], "--quiet"])
    assert "clean accuracy" in output and "wrote results.h5" in output
    for plot in commands("own-model.md", "walknoise plot"):
        run(plot)

    # the pandas and xarray snippets of step 5
    python = [code for title, code in blocks("own-model.md", "python") if title is None]
    pandas_part = next(c for c in python if c.startswith("import walknoise\n\nresult ="))
    namespace = runpy.run_path(_script(guide_dir, "pandas.py", pandas_part))
    df, result = namespace["df"], namespace["result"]
    assert list(df.columns) == [
        *("layer", "sigma", "repeat", "accuracy", "accuracy_drop", "loss"),
        *("nonfinite_fraction", "topk_accuracy", "agreement", "kl_divergence"),
    ]
    assert len(df) == len(result.layers) * len(result.sigmas) * 2
    assert list(namespace["wide"].columns) == result.layers
    assert (guide_dir / "cells.csv").is_file()
    xarray_part = next(c for c in python if c.startswith("ds = result.dataset"))
    runpy.run_path(_script(guide_dir, "xr.py", xarray_part), init_globals={"result": result})


def _script(directory: Path, name: str, code: str) -> str:
    path = directory / name
    path.write_text(code)
    return str(path)


def test_faq_recomputes_a_cell_exactly(tmp_path: Path) -> None:
    (code,) = [c for _, c in blocks("faq.md", "python") if "def cell_by_hand" in c]
    definitions = code.split("\nmodel = load_model", 1)[0]  # the rest reads the user's files
    cell_by_hand: Any = runpy.run_path(_script(tmp_path, "faq.py", definitions))["cell_by_hand"]

    with seeded_init(0):
        model = build_model("mlp").eval()
    test = load_mnist("test").subset(300)
    result = walknoise.scan(
        model, test, sigmas="0.3,3,30", layers=["fc2"], repeats=2, progress=False
    )
    for j, sigma in enumerate(result.sigmas):
        expected = float(result.accuracy.sel(layer="fc2", repeat=1)[j])
        assert cell_by_hand(model, test.x, test.y, "fc2", float(sigma), repeat=1) == expected


def test_notebook_is_committed_without_outputs() -> None:
    notebook = json.loads((DOCS / "examples" / "walk_a_model.ipynb").read_text())
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code, "the notebook has no code"
    for cell in code:
        assert cell["outputs"] == [] and cell["execution_count"] is None, cell["source"]


def test_every_figure_the_pages_show_exists() -> None:
    script = (DOCS / "scripts" / "make_figures.py").read_text()
    for page in DOCS.rglob("*.md"):
        for name in re.findall(r"figures/([\w.-]+\.png)", page.read_text()):
            assert (DOCS / "figures" / name).is_file(), f"{page.name} shows missing {name}"
            if name.startswith("docs_"):  # ours; gni_* and nin_* come from benchmarks/
                assert f'"{name}"' in script, f"{name} is not drawn by make_figures.py"
