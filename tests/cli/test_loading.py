"""Loading the user's model from the command line, and the user's model failing in a scan."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.cli.conftest import assert_user_error, invoke

FAST = ("--sigmas", "0.1,1", "--repeats", "1", "--quiet")

TIMM_STYLE = """
import torch
from torch import nn


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(28 * 28 * 3, 10)

    def forward(self, x):
        assert x.shape[1] == 3
        return self.proj(x.flatten(1))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = Attention()

    def forward(self, x):
        return self.attn(x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(Block())

    def forward(self, x):
        return self.blocks(x)


def build(**_):  # train passes input_shape and num_classes
    return Net()
"""


def user_module(where: Path, name: str, source: str) -> None:
    """``where/name.py``; each test uses its own name, as imported modules stay cached."""
    (where / f"{name}.py").write_text(source)


@pytest.mark.parametrize("command", ["scan", "layers"])
def test_a_model_asserting_its_input_shape_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.chdir(tmp_path)
    name = f"timm_style_{command}"
    user_module(tmp_path, name, TIMM_STYLE)
    scope: dict[str, object] = {}
    exec(TIMM_STYLE, scope)
    torch.save(scope["build"]().state_dict(), "net.pt")  # type: ignore[operator]
    extra = FAST if command == "scan" else ()
    result = invoke(command, "net.pt", "--arch", f"{name}:build", *extra)
    assert_user_error(
        result,
        # discover's probe batch of two MNIST-shaped samples is the first input it meets
        "error: the model failed in module 'blocks.0.attn' (Attention) on input of shape "
        "(2, 1, 28, 28): AssertionError: assert x.shape[1] == 3",
    )


def test_any_command_running_the_users_model_reports_its_failure_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `train` runs the model outside a scan's guarded steps: the command line guards it too
    monkeypatch.chdir(tmp_path)
    user_module(tmp_path, "timm_style_train", TIMM_STYLE)
    args = ("--arch", "timm_style_train:build", "--epochs", "1", "-o", "m.pt")
    result = invoke("train", *args)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.stderr.splitlines()[-1] == (  # after the progress bar train always draws
        "error: the model failed in module 'blocks.0.attn' (Attention) on input of shape "
        "(64, 1, 28, 28): AssertionError: assert x.shape[1] == 3"
    )
    assert not (tmp_path / "m.pt").exists()
