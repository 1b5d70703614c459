"""Every shell command in README.md and docs/*.md runs as written, or is on a short allow-list
that says why it cannot run here and still checks that its arguments parse.

Commands come from fenced ``bash``/``console``/``sh`` blocks, and from unlabelled blocks whose
lines start with ``walknoise `` or ``python ``; ``\\`` continuations are joined and ``#``
comments dropped (``shlex``). ``walknoise`` commands run in-process through click in one
temporary directory prepared like a new user's (the files the pages assume), in page order,
each distinct command once. The own-model guide's commands are run by test_docs_guide.py and
are not repeated here.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner
from walknoise.cli.main import cli

from tests.test_docs_guide import titled

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELLS = {"bash", "console", "sh", "shell"}
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
GUIDE = "own-model.md"  # run by tests/test_docs_guide.py

# Commands that cannot run here as written: (pattern, reason). Each is still parse-checked.
CANNOT_RUN = [
    (r"^make ", "builds .venv and runs the whole suite: it is CI itself (checked: make -n)"),
    (r"^pip install ", "needs the network (checked: the extra exists in pyproject.toml)"),
    (r"^sbatch ", "needs a SLURM cluster (checked: the script is a titled block of the page)"),
    (r"^source \.venv/", "inside the sbatch script (checked: the Makefile creates .venv)"),
    (r"--device cuda", "needs a GPU (checked: click parses the arguments)"),
    (r"--executor slurm", "needs a SLURM cluster; tests/cli/test_slurm.py runs one (parsed)"),
    (r"^\.venv/bin/mkdocs serve", "serves until stopped; make docs builds (checked: --help)"),
    (r"^python benchmarks/", "minutes to 41 min of benchmark (checked: argparse --help)"),
    (r"^python docs/scripts/", "rewrites committed figures (checked: the script compiles)"),
]


@dataclass(frozen=True)
class Command:
    page: str
    text: str

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text)

    def __str__(self) -> str:
        return f"{self.page}: {self.text}"


def commands(page: Path) -> list[Command]:
    """The shell commands of ``page``'s code blocks, in order."""
    found = []
    for lang, code in FENCE.findall(page.read_text()):
        lines = code.replace("\\\n", " ").splitlines()
        if lang not in SHELLS and not (
            lang == "" and any(ln.startswith(("walknoise ", "python ")) for ln in lines)
        ):
            continue
        for line in lines:
            words = shlex.split(line.removeprefix("$ "), comments=True)
            if words:
                found.append(Command(page.relative_to(ROOT).as_posix(), shlex.join(words)))
    return found


def all_commands() -> list[Command]:
    seen: dict[str, Command] = {}
    for page in PAGES:
        for command in commands(page):
            seen.setdefault(command.text, command)  # the quick start is on two pages
    return list(seen.values())


def reason(command: Command) -> str | None:
    return next((why for pattern, why in CANNOT_RUN if re.search(pattern, command.text)), None)


def runnable() -> list[Command]:
    return [c for c in all_commands() if reason(c) is None and not c.page.endswith(GUIDE)]


def test_every_command_is_run_or_allowed() -> None:
    """Nothing is skipped silently: a command is run below, by the guide test, or allow-listed
    (and each allow-list entry is still used by some page)."""
    everything = all_commands()
    strays = [c for c in runnable() if c.argv[0] not in ("walknoise", "python")]
    assert strays == [], "commands this test does not know how to run: " + ", ".join(
        map(str, strays)
    )
    for pattern, why in CANNOT_RUN:
        assert any(re.search(pattern, c.text) for c in everything), f"unused: {pattern} ({why})"


def test_allowed_commands_parse(tmp_path: Path) -> None:
    for command in (c for c in all_commands() if reason(c) is not None):
        argv = command.argv
        if argv[0] == "walknoise":
            _parse(argv[1:], str(command))
        elif argv[0] == "make":
            run = subprocess.run(["make", "-n", *argv[1:]], cwd=ROOT, capture_output=True)
            assert run.returncode == 0, f"{command}: {run.stderr.decode()}"
        elif argv[:2] == ["pip", "install"]:
            extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
                "optional-dependencies"
            ]
            (wanted,) = re.findall(r"\[(\w+)\]", argv[-1])
            assert wanted in extras, command
        elif argv[0] == "sbatch":
            assert titled(Path(command.page).name, "bash", argv[1]), command
        elif argv[0] == "source":
            assert "VENV ?= .venv" in (ROOT / "Makefile").read_text(), command
        elif argv[0] == "python" and "argparse" in (ROOT / argv[1]).read_text():
            run = subprocess.run(
                [sys.executable, *argv[1:], "--help"], cwd=ROOT, capture_output=True
            )
            assert run.returncode == 0, f"{command}: {run.stderr.decode()}"
        elif argv[0] == "python":
            compile((ROOT / argv[1]).read_text(), argv[1], "exec")
        else:
            run = subprocess.run([*argv, "--help"], cwd=ROOT, capture_output=True)
            assert run.returncode == 0, f"{command}: {run.stderr.decode()}"


def _parse(args: list[str], what: str) -> None:
    """Parse ``walknoise ARGS`` as click would, down to the command, without running it."""
    group: click.Command = cli
    ctx = group.make_context("walknoise", list(args), resilient_parsing=False)
    while isinstance(group, click.Group):
        protected = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args
        pending = [*protected, *ctx.args]  # click 8.2 renamed protected_args
        name, sub, rest = group.resolve_command(ctx, pending)
        assert sub is not None, what
        group, ctx = sub, sub.make_context(name, rest, parent=ctx)


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A new user's directory: what the pages assume exists before their commands."""
    yield tmp_path_factory.mktemp("user")


def test_documented_commands_run(user_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)
    monkeypatch.chdir(user_dir)
    failed = []
    for command in runnable():
        argv = command.argv
        start = time.perf_counter()
        if argv[0] == "python":
            run = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True)
            code, output = run.returncode, run.stderr
        else:
            result = CliRunner().invoke(cli, argv[1:])
            code, output = result.exit_code, result.output
        print(f"{time.perf_counter() - start:6.1f} s  exit {code}  {command}")
        if code != 0:
            failed.append(f"{command}\n{output.strip().splitlines()[-1:]}")
    assert failed == [], "\n".join(failed)
