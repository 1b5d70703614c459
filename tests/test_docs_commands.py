"""Every shell command in README.md and docs/*.md runs as written, or is on a short allow-list
that says why it cannot run here and still checks that its arguments parse.

Commands come from fenced ``bash``/``console``/``sh`` blocks, and from unlabelled blocks whose
lines start with ``walknoise `` or ``python ``; ``\\`` continuations are joined and ``#``
comments dropped (``shlex``). ``walknoise`` commands run in-process through click, in page
order, each distinct command once. Each page starts in a fresh directory holding what the
pages assume a user has: the own-model guide's files and the README tour's ``model.pt`` (its
first command, run first); then the README's other commands run in this process while a
second one runs the other pages. The own-model guide's commands are run by
test_docs_guide.py and are not repeated here. The examples are sized to run in seconds.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

from tests.test_docs_guide import make_guide_files, titled
from walknoise.cli.app import cli

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELLS = {"bash", "console", "sh", "shell"}
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
GUIDE = "own-model.md"  # run by tests/test_docs_guide.py
# What every page may assume: the own-model guide's files, and the README tour's model.
START = ("mymodels.py", "sd.pt", "my_test.npz", "model.pt")

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
    helps: dict[str, str] = {}  # script -> its --help (one start-up per script, not per use)
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
            if argv[1] not in helps:
                run = subprocess.run(
                    [sys.executable, argv[1], "--help"], cwd=ROOT, capture_output=True, text=True
                )
                assert run.returncode == 0, f"{command}: {run.stderr}"
                helps[argv[1]] = run.stdout
            # --help exits before argparse looks at the other options: each must be listed
            unknown = [a for a in argv[2:] if a.startswith("-") and a not in helps[argv[1]]]
            assert unknown == [], f"{command}: {unknown} not in its --help"
        elif argv[0] == "python":
            compile((ROOT / argv[1]).read_text(), argv[1], "exec")
        else:  # .venv/bin/TOOL: the running venv's, wherever the tree is (mutation copies)
            tool = argv[0].removeprefix(".venv/bin/")
            exe = str(Path(sys.executable).parent / tool) if tool != argv[0] else argv[0]
            run = subprocess.run([exe, *argv[1:], "--help"], cwd=ROOT, capture_output=True)
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


def test_documented_commands_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's first command trains the ``model.pt`` the other pages use; then the rest
    of the README runs here while a second process runs the other pages (two lanes of one
    thread each: CI's two cores, and the README is the longer lane)."""
    torch.set_num_threads(1)
    sys.modules.pop("mymodels", None)  # the guide's, imported from each page's directory
    start = tmp_path / "start"
    start.mkdir()
    monkeypatch.chdir(start)
    monkeypatch.syspath_prepend(str(start))
    make_guide_files(start)
    pages: dict[str, list[Command]] = {}
    for command in runnable():
        pages.setdefault(command.page, []).append(command)
    readme = pages.pop("README.md")
    assert readme[0].text.endswith("-o model.pt"), "the README trains the model.pt others use"
    began = time.perf_counter()
    here = tmp_path / "README.md"
    monkeypatch.chdir(_page_dir(here, start))
    failed = run_commands(readme[:1])
    assert failed == [], failed
    shutil.copy(here / "model.pt", start)
    todo = json.dumps({page: [c.text for c in cs] for page, cs in pages.items()})
    other = subprocess.Popen(
        [sys.executable, "-c", OTHER_LANE, str(tmp_path), str(start), todo],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        failed += run_commands(readme[1:])
        out, _ = other.communicate(timeout=1800)
    finally:
        other.kill()  # a no-op once it has ended; else it must not outlive a failed test
    *lines, result = out.splitlines() or ["null"]
    print("\n".join(lines))
    assert other.returncode == 0, out
    failed += json.loads(result)
    sys.modules.pop("mymodels", None)
    print(f"{time.perf_counter() - began:6.1f} s  all documented commands")
    assert failed == [], "\n".join(failed)


# The second lane: the pages other than the README, each in a fresh directory as above; the
# failures as one JSON line at the end.
OTHER_LANE = """
import json, os, sys, torch
from pathlib import Path
from tests.test_docs_commands import Command, _page_dir, run_commands
torch.set_num_threads(1)
root, start = Path(sys.argv[1]), Path(sys.argv[2])
sys.path.insert(0, str(start))
failed = []
for page, texts in json.loads(sys.argv[3]).items():
    os.chdir(_page_dir(root / page.replace("/", "_"), start))
    failed += run_commands([Command(page, text) for text in texts])
print(json.dumps(failed))
"""


def _page_dir(here: Path, start: Path) -> Path:
    """A fresh directory holding what every page may assume (the files of ``start``)."""
    here.mkdir()
    for name in START:
        if (start / name).exists():
            shutil.copy(start / name, here)
    return here


def run_commands(commands: list[Command]) -> list[str]:
    """Run ``commands`` in order in the working directory: what failed, with its last line."""
    return [f"{c}\n{output}" for c in commands if (output := _run(c)) is not None]


def _run(command: Command) -> str | None:
    """Run ``command`` in the working directory: None if it succeeds, else its last line."""
    argv = command.argv
    start = time.perf_counter()
    if argv[0] == "python":
        run = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True)
        code, output = run.returncode, run.stderr
    else:
        result = CliRunner().invoke(cli, argv[1:])
        code, output = result.exit_code, result.output
    print(f"{time.perf_counter() - start:6.1f} s  exit {code}  {command}")
    return None if code == 0 else "\n".join(output.strip().splitlines()[-1:])
