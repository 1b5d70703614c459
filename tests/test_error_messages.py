"""Library errors speak API terms: no WalknoiseError message in walknoise/ gives a CLI flag.

A notebook user told to "pass --overwrite" has no such thing to pass; the library names the
keyword (``overwrite=True``) and sets ``argument``, and the CLI adds its flag. The check
reads the source with ``ast``: every string in a ``WalknoiseError(...)`` call, and the
module constants and parameter defaults (``fix: str = TO_WRITE``) such a call interpolates.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import walknoise

PACKAGE = Path(walknoise.__file__).parent
# ``--flag`` anywhere, or a one-letter option such as ``-o`` standing alone
FLAG = re.compile(r"(?<![\w-])--[a-z]|(?<![\w-])-[a-zA-Z](?=[\s,;)]|$)")


def _strings(node: ast.AST | None) -> list[str]:
    if node is None:
        return []
    return [
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def _defaults(func: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, ast.expr]:
    args = func.args
    positional = args.posonlyargs + args.args
    with_default = positional[len(positional) - len(args.defaults) :]
    pairs = list(zip(with_default, args.defaults, strict=True))
    pairs += [
        (a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None
    ]
    return {a.arg: d for a, d in pairs}


def flag_messages(source: str) -> list[str]:
    """The message parts of ``WalknoiseError(...)`` calls in ``source`` that give a flag."""
    tree = ast.parse(source)
    constants = {
        target.id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    found: list[str] = []

    def visit(node: ast.AST, defaults: dict[str, ast.expr]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            defaults = {**defaults, **_defaults(node)}
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "WalknoiseError":
            parts = _strings(node)
            for name in sorted({n.id for n in ast.walk(node) if isinstance(n, ast.Name)}):
                value = defaults.get(name)
                if isinstance(value, ast.Name):  # a parameter defaulting to a constant
                    value = constants.get(value.id)
                parts += _strings(value if value is not None else constants.get(name))
            found.extend(p for p in parts if FLAG.search(p))
        for child in ast.iter_child_nodes(node):
            visit(child, defaults)

    visit(tree, {})
    return found


def test_no_library_error_gives_a_cli_flag() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): bad
        for path in sorted(PACKAGE.rglob("*.py"))
        if "cli" not in path.relative_to(PACKAGE).parts
        if (bad := flag_messages(path.read_text(encoding="utf-8")))
    }
    assert not offenders, f"WalknoiseError messages with CLI flags: {offenders}"


def test_the_check_finds_flags_however_the_message_is_built() -> None:
    source = textwrap.dedent(
        """
        HINT = "pass --overwrite to replace it"
        FORMS = ("a checkpoint, or a state dict plus --arch")

        def direct(x):
            raise WalknoiseError(f"--ratio must be in [0, 1], got {x}")

        def joined(x):
            raise WalknoiseError("bad " f"{x}; " "choose another -o path")

        def via_constant(path):
            raise WalknoiseError(f"{path} exists; {HINT}")

        def via_default(path, fix=HINT):
            raise WalknoiseError(f"{path} is not ours; {fix}")

        def built():
            return WalknoiseError(f"accepted are {FORMS}")
        """
    )
    found = flag_messages(source)
    expected = ["--ratio must", "another -o path", "--overwrite", "--overwrite", "plus --arch"]
    assert len(found) == len(expected)
    assert all(e in f for e, f in zip(expected, found, strict=True)), found
    fine = 'raise WalknoiseError(f"ratio={x}; σ in [-clamp, clamp], x-axis", argument="ratio")'
    assert flag_messages(fine) == []
