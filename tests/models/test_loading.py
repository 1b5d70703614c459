"""Loading what users bring: a whole pickled model whose class lives in the working directory,
and checkpoint dicts or DataParallel state dicts given with ``arch``."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.cli.conftest import invoke
from walknoise.models import load_model

MODELS = """
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(28 * 28, 10)

    def forward(self, x):
        return self.fc(self.flatten(x))
"""


@pytest.fixture
def pickled_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``model.pt``: a whole pickled ``Tiny`` whose class is in ``./<module>.py``, with the
    working directory not on ``sys.path`` (as under the console script)."""
    name = "wn_pickled_" + tmp_path.name.replace("-", "_")
    source = tmp_path / f"{name}.py"
    source.write_text(MODELS)
    spec = importlib.util.spec_from_file_location(name, source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    torch.save(module.Tiny(), tmp_path / "model.pt")
    monkeypatch.delitem(sys.modules, name)  # loading must import it again, from the cwd
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    return tmp_path / "model.pt"


def test_trusted_pickle_finds_its_class_in_the_working_directory(pickled_in_cwd: Path) -> None:
    loaded = load_model("model.pt", trust_pickle=True)
    assert type(loaded.model).__name__ == "Tiny"
    torch.manual_seed(0)
    expected = nn.Linear(28 * 28, 10).weight  # Tiny's only layer, from the same seed
    torch.testing.assert_close(loaded.model.fc.weight, expected, rtol=0, atol=0)


def test_trusted_pickle_from_the_command_line(pickled_in_cwd: Path) -> None:
    result = invoke("layers", "model.pt", "--trust-pickle")
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.stdout.splitlines()[1:4]] == [
        "<input>",
        "flatten",
        "fc",
    ]
