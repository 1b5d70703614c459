"""Ctrl-C at any moment of start-up (imports, model loading) is one line and exit code 130.

Each child pauses at a known point (a meta-path finder that sleeps when a given module is
first imported, or a model factory that sleeps) and says so on stdout; the test then sends
SIGINT. The child's SIGINT disposition is set to the default explicitly: a test runner started
in the background ignores SIGINT, and its children would inherit that.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

from walknoise.cli.main import cli

# Runs the console entry point (or ``python -m walknoise.cli``) after installing the pause.
CHILD = """
import sys, time, weakref

TARGET, HOW, ENTRY = sys.argv[1:4]
sys.argv = ["walknoise", *sys.argv[4:]]


def pause():
    print("ready", flush=True)
    time.sleep(600)  # SIGINT ends it


class Pause:
    def find_spec(self, name, path=None, target=None):
        if name == TARGET:
            sys.meta_path.remove(self)
            if HOW == "weakref":  # the interrupt lands in a callback, where Python drops it
                class Thing:
                    pass

                thing = Thing()
                keep = weakref.ref(thing, lambda _: pause())
                del thing
            else:
                pause()
        return None


sys.meta_path.insert(0, Pause())
if ENTRY == "script":
    from walknoise.cli.main import main

    main()
else:
    import runpy

    runpy.run_module("walknoise.cli", run_name="__main__")
"""

SLOW_FACTORY = """
import time


def build():
    print("ready", flush=True)
    time.sleep(600)
"""


def interrupt(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``args``, wait for its ``ready`` line, send SIGINT, return what it did."""
    child = subprocess.Popen(
        args,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert child.stdout is not None
    first = child.stdout.readline()
    if first.strip() == "ready":
        child.send_signal(signal.SIGINT)
    out, err = child.communicate()
    assert first.strip() == "ready", first + out + err  # it must have paused where meant
    return subprocess.CompletedProcess(args, child.returncode, out, err)


def assert_interrupted(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 130, done.stderr
    assert done.stderr.splitlines() == ["interrupted"], done.stderr


@pytest.mark.parametrize("entry", ["script", "module"])
@pytest.mark.parametrize(
    "target",
    [
        "walknoise._version",  # `import walknoise`, before the entry point runs
        "click",  # importing the command line itself
        "walknoise.cli.scan",  # importing a command's module
        "torch",  # ... and the heavy libraries it needs
    ],
)
def test_ctrl_c_during_imports_is_one_line(tmp_path: Path, target: str, entry: str) -> None:
    args = [sys.executable, "-c", CHILD, target, "sleep", entry, "scan", "m.pt", "--quiet"]
    assert_interrupted(interrupt(args, tmp_path))


def test_ctrl_c_that_python_would_drop_still_stops(tmp_path: Path) -> None:
    # a signal handled inside a weakref callback raises KeyboardInterrupt where Python only
    # prints "Exception ignored"; without care the command went on as if never interrupted
    args = [sys.executable, "-c", CHILD, "walknoise.cli.scan", "weakref", "script"]
    assert_interrupted(interrupt([*args, "scan", "m.pt", "--quiet"], tmp_path))


def test_ctrl_c_while_the_model_loads_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "slowmodels.py").write_text(SLOW_FACTORY)
    torch.save({"w": torch.zeros(1)}, tmp_path / "m.pt")
    args = [sys.executable, "-m", "walknoise.cli", "scan", "m.pt", "--arch", "slowmodels:build"]
    assert_interrupted(interrupt([*args, "--quiet"], tmp_path))


def test_ctrl_c_while_click_parses_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # click would print a blank line and "Aborted!" with exit code 1
    def parse_args(*_: object) -> list[str]:
        raise KeyboardInterrupt

    monkeypatch.setattr(click.Group, "parse_args", parse_args)
    result = CliRunner().invoke(cli, ["layers", "m.pt"])
    assert result.exit_code == 130
    assert result.stderr.splitlines() == ["interrupted"]
