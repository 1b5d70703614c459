"""No user string reaches a shell or an evaluator; files are read without unpickling.

A static check over the source of ``walknoise`` and ``cli``: walking the syntax tree, not
grepping, so comments and strings cannot hide or fake a call. Programs are started only with
an argument list (``subprocess.run(["scancel", ...])``), never through a shell.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
SOURCES = sorted([*ROOT.glob("walknoise/**/*.py"), *ROOT.glob("cli/**/*.py")])
EVALUATORS = {"eval", "exec", "compile"}  # the builtins; model.eval() is fine
SHELLS = {"system", "popen", "spawnl", "spawnv", "execv", "execvp", "execl", "execlp"}
# torch.load without weights_only=True is allowed once: the loader's --trust-pickle branch.
TRUSTED_UNPICKLE = "walknoise/models/checkpoint.py"
# pickle.load of the job file the driver itself wrote for its SLURM workers (submitit's way).
TRUSTED_PICKLE = {"walknoise/walk/executors.py"}


def calls(path: Path) -> list[ast.Call]:
    return [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)]


def name(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def keyword(call: ast.Call, key: str) -> object:
    for kw in call.keywords:
        if kw.arg == key:
            return kw.value.value if isinstance(kw.value, ast.Constant) else "<expr>"
    return None


def owner(call: ast.Call) -> str:
    f = call.func
    return f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_shell_eval_or_subprocess(path: Path) -> None:
    for call in calls(path):
        where = f"{path.name}:{call.lineno}"
        assert not (isinstance(call.func, ast.Name) and call.func.id in EVALUATORS), where
        assert not (owner(call) == "os" and name(call) in SHELLS), where
        assert keyword(call, "shell") in (None, False), where
        if owner(call) == "subprocess" and call.args:  # an argument list, not a command line
            assert isinstance(call.args[0], ast.List | ast.Tuple), where


def test_every_load_is_weights_only() -> None:
    unpickling = []
    for path in SOURCES:
        for call in calls(path):
            where = f"{path.name}:{call.lineno}"
            loads = (owner(call), name(call)) == ("torch", "load")
            if loads and keyword(call, "weights_only") is not True:
                unpickling.append(str(path.relative_to(ROOT)))
            if (owner(call), name(call)) == ("np", "load"):
                assert keyword(call, "allow_pickle") is False, where
            unpickles = owner(call) in ("pickle", "marshal") and name(call).startswith("load")
            assert not unpickles or str(path.relative_to(ROOT)) in TRUSTED_PICKLE, where
    assert unpickling == [TRUSTED_UNPICKLE]
