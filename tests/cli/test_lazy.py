"""The lazy command table of ``cli/main.py`` agrees with the commands it stands for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

from walknoise.cli.main import LazyGroup, cli


def groups(group: click.Group = cli) -> list[LazyGroup]:
    """``cli`` and every lazy group below it (loading every command)."""
    found = [group] if isinstance(group, LazyGroup) else []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        sub = group.get_command(ctx, name)
        if isinstance(sub, click.Group):
            found += groups(sub)
    return found


@pytest.mark.parametrize("group", groups(), ids=lambda g: g.name)
def test_table_help_is_the_command_help(group: LazyGroup) -> None:
    ctx = click.Context(group)
    for name, (_, text) in group.lazy.items():
        command = group.get_command(ctx, name)
        assert command is not None and command.name == name
        listed = click.Command(name, help=text).get_short_help_str(1000)
        assert command.get_short_help_str(1000) == listed, f"fix the table entry of {name}"


LOAD_ALL_THEN_RUN = """
import sys, click
from tests.cli.test_lazy import groups
from walknoise.cli.main import main
for group in groups():
    for name in group.lazy:
        group.get_command(click.Context(group), name)
sys.argv[0] = "walknoise"
main()
"""


@pytest.mark.parametrize("group", [[], ["gni"], ["nin"], ["plot"]])
def test_help_lists_the_same_before_and_after_loading(group: list[str]) -> None:
    lazily = subprocess.run(
        [sys.executable, "-m", "walknoise.cli", *group, "--help"], capture_output=True, text=True
    )
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_ALL_THEN_RUN, *group, "--help"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent.parent,
    )
    assert lazily.returncode == loaded.returncode == 0, lazily.stderr + loaded.stderr
    assert "Commands:" in lazily.stdout
    assert loaded.stdout == lazily.stdout


def test_one_command_shape_per_family() -> None:
    ctx = click.Context(cli)
    assert cli.list_commands(ctx) == [
        "demo", "gni", "layers", "nin", "plot", "scan", "train"
    ]  # fmt: skip
    gni, nin = cli.get_command(ctx, "gni"), cli.get_command(ctx, "nin")
    assert isinstance(gni, LazyGroup) and isinstance(nin, LazyGroup)
    assert sorted(gni.lazy) == ["plot", "run"]
    assert sorted(nin.lazy) == ["compare", "plot", "probe"]
