"""Loading what users bring: a whole pickled model whose class lives in the working directory,
and checkpoint dicts or DataParallel state dicts given with ``arch``."""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.cli.conftest import invoke
from walknoise.errors import WalknoiseError
from walknoise.models import build_model, load_model

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


def mlp_state(seed: int = 3) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return build_model("mlp").state_dict()


def assert_same_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    for key, tensor in state.items():
        torch.testing.assert_close(loaded[key], tensor, rtol=0, atol=0)  # a copy: exact


@pytest.mark.parametrize("key", ["model", "state_dict", "model_state_dict", "net"])
def test_a_training_checkpoint_dict_loads_its_state_dict(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, key: str
) -> None:
    state = mlp_state()
    torch.save({key: state, "epoch": 7, "best_acc": 0.98}, tmp_path / "ckpt.pt")
    with caplog.at_level(logging.WARNING, logger="walknoise"):
        loaded = load_model(tmp_path / "ckpt.pt", arch="mlp")
    assert_same_weights(loaded.model, state)
    assert caplog.messages == [
        f"{tmp_path / 'ckpt.pt'}: took the state dict in its {key!r} entry "
        "(the file also holds: best_acc, epoch)"
    ]


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod."])
def test_wrapper_prefixes_are_stripped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, prefix: str
) -> None:
    # DataParallel/DDP save "module.fc1.weight", torch.compile "_orig_mod.fc1.weight"
    state = mlp_state()
    torch.save({prefix + k: v for k, v in state.items()}, tmp_path / "dp.pt")
    with caplog.at_level(logging.WARNING, logger="walknoise"):
        loaded = load_model(tmp_path / "dp.pt", arch="mlp")
    assert_same_weights(loaded.model, state)
    assert caplog.messages == [
        f"{tmp_path / 'dp.pt'}: stripped {prefix!r} from every key "
        "(saved from a wrapped model: DataParallel, DDP or torch.compile)"
    ]


def test_both_at_once_from_the_command_line(tmp_path: Path) -> None:
    state = mlp_state()
    wrapped = {"module." + k: v for k, v in state.items()}
    torch.save({"model": wrapped, "optimizer": {"lr": 0.1}, "epoch": 3}, tmp_path / "c.pt")
    # a real process: in pytest, log records go to pytest's handlers, not to stderr
    command = [sys.executable, "-m", "walknoise.cli", "layers", tmp_path / "c.pt"]
    result = subprocess.run([*command, "--arch", "mlp"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    [line] = result.stderr.splitlines()  # the command line may prefix it with "warning: "
    assert line.endswith(
        f"{tmp_path / 'c.pt'}: took the state dict in its 'model' entry (the file also holds: "
        "epoch, optimizer); stripped 'module.' from every key (saved from a wrapped model: "
        "DataParallel, DDP or torch.compile)"
    ), line
    assert "fc4" in result.stdout


def test_a_checkpoint_dict_without_arch_names_the_fix(tmp_path: Path) -> None:
    torch.save({"model": mlp_state(), "epoch": 1}, tmp_path / "ckpt.pt")
    with pytest.raises(WalknoiseError) as caught:
        load_model(tmp_path / "ckpt.pt")
    assert caught.value.argument == "arch"
    assert "its 'model' entry is a state dict; pass arch=" in str(caught.value)


def test_a_prefix_is_not_stripped_unless_the_rest_fits_exactly(tmp_path: Path) -> None:
    # the same prefix on other weights (here a wider first layer) stays an error
    torch.manual_seed(0)
    other = build_model("mlp", input_shape=(1, 14, 14)).state_dict()
    torch.save({"module." + k: v for k, v in other.items()}, tmp_path / "dp.pt")
    with pytest.raises(WalknoiseError, match="does not fit architecture mlp"):
        load_model(tmp_path / "dp.pt", arch="mlp")
    partial = {"module." + k: v for k, v in mlp_state().items() if k != "fc4.bias"}
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(WalknoiseError, match="does not fit architecture mlp"):
        load_model(tmp_path / "partial.pt", arch="mlp")
