"""A real checkpoint trained once per session through the library, for the CLI tests."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from walknoise.cli.main import cli
from walknoise.recipes import train_checkpoint
from walknoise.training import TrainConfig


@pytest.fixture(scope="session")
def mlp_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "mlp.pt"
    train_checkpoint("mlp", path, config=TrainConfig(epochs=3), progress=False)
    return path


def scan_argv(model: Path, out: Path, options: Sequence[str], *extra: str) -> list[str]:
    """``walknoise scan`` as a separate process runs it (``python -m walknoise.cli``)."""
    return [
        sys.executable,
        "-m",
        "walknoise.cli",
        "scan",
        str(model),
        *options,
        "-o",
        str(out),
        *extra,
    ]


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


def assert_user_error(result: Result, match: str) -> None:
    """Exit code 2, one line on stderr naming the problem, no traceback."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    assert match in lines[0], lines[0]
