"""An exception raised inside the user's model is one WalknoiseError naming the module and the
input shape it was given; a bug in walknoise itself keeps its own exception and traceback."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

import walknoise
from tests.conftest import Residual, learnable_data, tiny_mlp
from walknoise.errors import WalknoiseError
from walknoise.walk.guard import model_errors


class Picky(nn.Module):
    """Raises ValueError on inputs above ``limit``: fine clean, broken by large noise."""

    def __init__(self, limit: float) -> None:
        super().__init__()
        self.limit = limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.abs().max() > self.limit:
            raise ValueError(f"activations above {self.limit}")
        return x


class Block(nn.Module):
    def __init__(self, limit: float) -> None:
        super().__init__()
        self.fc = nn.Linear(32, 32)
        self.check = Picky(limit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.check(self.fc(x))


def picky_model(limit: float) -> nn.Module:
    torch.manual_seed(0)
    net = tiny_mlp()
    return nn.Sequential(net.flatten, net.fc1, nn.Sequential(Block(limit)), net.fc2)


def test_a_model_failing_under_noise_names_the_module_and_its_input() -> None:
    x, y = learnable_data(300)
    with pytest.raises(WalknoiseError) as caught:
        # σ = 1e6 at the input pushes every activation far above the limit; clean stays below
        walknoise.scan(
            picky_model(1e3), (x, y), layers=["<input>"], sigmas=[1e6], repeats=1, progress=False
        )
    text = str(caught.value)
    assert "module '2.0.check' (Picky)" in text, text
    assert "ValueError: activations above 1000.0" in text, text
    assert "(300, 32)" in text, text  # all 300 samples in one batch, one σ copy
    assert isinstance(caught.value.__cause__, ValueError)  # chained for a debugger


def test_a_model_failing_on_the_clean_data_is_reported_too() -> None:
    x, y = learnable_data(300)
    with pytest.raises(WalknoiseError, match=r"module '2\.0\.check' \(Picky\)"):
        walknoise.scan(picky_model(0.0), (x, y), sigmas=[1.0], repeats=1, progress=False)


def test_the_top_module_is_named_as_the_model() -> None:
    class Whole(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise KeyError("no")

    with pytest.raises(WalknoiseError) as caught, model_errors():
        Whole()(torch.zeros(3, 2))
    assert str(caught.value) == (
        "the model failed in its top module (Whole) on input of shape (3, 2): KeyError: 'no'"
    )


def test_an_empty_assertion_shows_its_source_line(tmp_path: Path) -> None:
    # the user's module lives in a file of its own: pytest rewrites asserts of test files only
    source = tmp_path / "patchy.py"
    source.write_text(
        "from torch import nn\n\n"
        "class Patch(nn.Module):\n"
        "    def forward(self, x):\n"
        "        assert x.shape[1] == 3\n"
        "        return x\n"
    )
    spec = importlib.util.spec_from_file_location("patchy", source)
    assert spec is not None and spec.loader is not None
    patchy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(patchy)
    net = nn.Sequential(nn.Identity(), patchy.Patch())
    with pytest.raises(WalknoiseError) as caught, model_errors():
        net(torch.zeros(5, 1, 2))
    assert str(caught.value) == (
        "the model failed in module '1' (Patch) on input of shape (5, 1, 2): "
        "AssertionError: assert x.shape[1] == 3"
    )


def test_a_failed_fan_out_probe_is_not_a_model_error(data) -> None:
    # the runner's first forward through a skip connection fails on purpose and falls back
    result = walknoise.scan(Residual(), data, layers=["inner"], sigmas=[0.1], progress=False)
    assert result.accuracy.shape == (1, 1, 5)


def test_exceptions_outside_the_model_and_walknoise_errors_pass_unchanged() -> None:
    with pytest.raises(ZeroDivisionError), model_errors():
        _ = 1 / 0
    mine = WalknoiseError("one line", argument="sigmas")

    class Raises(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise mine

    with pytest.raises(WalknoiseError) as caught, model_errors():
        Raises()(torch.zeros(1))
    assert caught.value is mine


def test_a_bug_in_walknoise_code_run_by_a_hook_keeps_its_exception() -> None:
    # a hook whose code lives in walknoise (as the noise hooks do) and fails: a walknoise bug
    source = "def hook(module, args, out):\n    raise IndexError('walknoise bug')\n"
    where = str(Path(walknoise.__file__).parent / "noise" / "inject.py")
    scope: dict[str, object] = {}
    exec(compile(source, where, "exec"), scope)
    net = nn.Sequential(nn.Linear(2, 2))
    net[0].register_forward_hook(scope["hook"])  # type: ignore[arg-type]
    with pytest.raises(IndexError, match="walknoise bug"), model_errors():
        net(torch.zeros(1, 2))
