"""The lazy command table of ``cli/main.py`` agrees with the commands it stands for."""

from __future__ import annotations

import json
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


GROUPS = [[], ["gni"], ["nin"], ["plot"]]
# One process loads every command, then prints each group's --help as `walknoise` would
# (importing everything is the slow part: once, not once per group).
LOAD_ALL_THEN_RUN = """
import contextlib, io, json, sys, click
from tests.cli.test_lazy import groups
from walknoise.cli.main import main
for group in groups():
    for name in group.lazy:
        group.get_command(click.Context(group), name)
helps = []
for args in json.loads(sys.argv[1]):
    sys.argv = ["walknoise", *args, "--help"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main()
        except SystemExit as stop:
            assert stop.code in (0, None), stop.code
    helps.append(out.getvalue())
print(json.dumps(helps))
"""


@pytest.fixture(scope="module")
def loaded_helps() -> list[str]:
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_ALL_THEN_RUN, json.dumps(GROUPS)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent.parent,
    )
    assert loaded.returncode == 0, loaded.stderr
    helps: list[str] = json.loads(loaded.stdout)
    return helps


@pytest.mark.parametrize("index", range(len(GROUPS)), ids=lambda i: "-".join(GROUPS[i]) or "cli")
def test_help_lists_the_same_before_and_after_loading(index: int, loaded_helps: list[str]) -> None:
    lazily = subprocess.run(
        [sys.executable, "-m", "walknoise.cli", *GROUPS[index], "--help"],
        capture_output=True,
        text=True,
    )
    assert lazily.returncode == 0, lazily.stderr
    assert "Commands:" in lazily.stdout
    assert loaded_helps[index] == lazily.stdout


def test_one_command_shape_per_family() -> None:
    ctx = click.Context(cli)
    assert cli.list_commands(ctx) == [
        "demo", "gni", "layers", "nin", "plot", "scan", "train"
    ]  # fmt: skip
    gni, nin = cli.get_command(ctx, "gni"), cli.get_command(ctx, "nin")
    assert isinstance(gni, LazyGroup) and isinstance(nin, LazyGroup)
    assert sorted(gni.lazy) == ["plot", "run"]
    assert sorted(nin.lazy) == ["compare", "plot", "probe"]
