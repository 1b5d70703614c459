"""The package's shape, checked from its source with ``ast`` (nothing is imported).

Only *load-time* imports count as edges of the import graph: statements at module level,
including those inside module-level ``try``/``if`` blocks, but not imports inside functions
(they run on use, which is how plotting and the CLI's commands stay lazy) and not those under
``if TYPE_CHECKING:`` (never executed). ``from pkg import name`` is an edge to ``pkg.name``
when that is a module, else to ``pkg``.
"""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: source folder -> the dotted package it installs as (cli/ installs as walknoise.cli)
SOURCES = {ROOT / "walknoise": "walknoise", ROOT / "cli": "walknoise.cli"}
MAX_LINES = 400
PLOTTING = {"plots.py", "weight_plots.py"}
DRAWING = ("matplotlib", "seaborn")


@dataclass(frozen=True)
class Import:
    """One load-time import statement: the modules it names (``import a.b`` -> ``a.b``;
    ``from a import b`` -> ``a`` and, where ``a.b`` is one of ours, ``a.b``)."""

    line: int
    targets: tuple[str, ...]
    names: tuple[str, ...]  # what ``from X import ...`` takes; () for ``import X``


def modules(sources: dict[Path, str] = SOURCES) -> dict[str, Path]:
    """Dotted name -> file of every module of the package (a package is its ``__init__``)."""
    found = {}
    for folder, dotted in sources.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([dotted, *parts])] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _load_time(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module loads: module level, descending into
    ``if``/``try``/``with`` blocks but not into functions, classes or ``if TYPE_CHECKING``."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                found += _load_time(node.body)
            found += _load_time(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                found += _load_time(block)
            for handler in node.handlers:
                found += _load_time(handler.body)
        elif isinstance(node, ast.With):
            found += _load_time(node.body)
    return found


def imports(name: str, path: Path, known: set[str]) -> list[Import]:
    """The load-time imports of module ``name`` (at ``path``), relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in _load_time(ast.parse(path.read_text(), str(path)).body):
        if isinstance(node, ast.Import):
            out.append(Import(node.lineno, tuple(a.name for a in node.names), ()))
            continue
        base = node.module or ""
        if node.level:  # `from ..x import y` inside package: climb level - 1 packages
            anchor = package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, *([base] if base else [])])
        names = tuple(a.name for a in node.names)
        subs = tuple(f"{base}.{n}" for n in names if f"{base}.{n}" in known)
        # the parent package is loaded first anyway; it is a target only for the names that
        # are not submodules (``from walknoise.gni import measure`` reads ``gni/__init__``)
        whole = (base,) if len(subs) < len(names) else ()
        out.append(Import(node.lineno, (*whole, *subs), names))
    return out


def graph(sources: dict[Path, str] = SOURCES) -> dict[str, set[str]]:
    """Module -> the package modules it imports at load time.

    Importing ``a.b.c`` also runs ``a`` and ``a.b``, but those parent edges are left out: a
    package importing its own submodules (every front door does) would otherwise read as a
    cycle with each of them. A submodule importing its parent's ``__init__`` *by name* still
    counts, and so does a real cycle between siblings."""
    found = modules(sources)
    known = set(found)
    edges: dict[str, set[str]] = {}
    for name, path in found.items():
        edges[name] = {t for i in imports(name, path, known) for t in i.targets if t in known}
        edges[name].discard(name)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None."""
    try:
        tuple(TopologicalSorter(edges).static_order())
    except CycleError as error:
        cycle: list[str] = list(error.args[1])[::-1]  # graphlib lists it backwards
        start = cycle.index(min(cycle[:-1]))  # the same cycle reads the same on every run
        return [*cycle[start:-1], *cycle[:start], cycle[start]]
    return None


def violations(sources: dict[Path, str] = SOURCES) -> dict[str, list[str]]:
    """Every broken rule, by rule, each as ``file:line: what`` (the cycle as one entry)."""
    found = modules(sources)
    known = set(found)
    subpackages = {n for n in known if n.count(".") == 1}  # walknoise.walk, walknoise.data...
    broken: dict[str, list[str]] = {r: [] for r in ("cycle", "face", "size", "click", "draw")}
    edges = graph(sources)
    cycle = find_cycle(edges)
    if cycle:
        broken["cycle"].append(" -> ".join(cycle))
    plotting = {n for n, p in found.items() if p.name in PLOTTING}
    for door in (n for n, p in found.items() if p.name == "__init__.py"):
        if drawn := sorted(reach(edges, door) & plotting):
            broken["draw"].append(f"import {door} loads {drawn} (import them on use)")
    for name, path in found.items():
        where = next(path.relative_to(f.parent) for f in sources if path.is_relative_to(f))
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            broken["size"].append(f"{where}: {lines} lines (split it; at most {MAX_LINES})")
        library = not name.startswith("walknoise.cli")
        for imp in imports(name, path, known):
            at = f"{where}:{imp.line}"
            roots = {t.split(".")[0] for t in imp.targets}
            if name != "walknoise" and "walknoise" in imp.targets:
                face = [n for n in imp.names if f"walknoise.{n}" not in subpackages]
                if not imp.names or face:
                    broken["face"].append(f"{at}: imports the package face {face or ''}")
            if library and "click" in roots:
                broken["click"].append(f"{at}: the library imports click (only cli/ may)")
            if path.name not in PLOTTING and roots & set(DRAWING):
                drawn = sorted(roots & set(DRAWING))
                broken["draw"].append(f"{at}: {drawn} at load time outside a plotting module")
    return broken


def test_no_import_cycle() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_imports_the_package_face() -> None:
    """``walknoise/__init__`` is the users' door; modules import what they use from where it is
    defined, so the face can re-export them without a cycle."""
    assert not (broken := violations()["face"]), "\n".join(broken)


def test_no_module_over_400_lines() -> None:
    assert not (broken := violations()["size"]), "\n".join(broken)


def test_only_the_cli_imports_click() -> None:
    assert not (broken := violations()["click"]), "\n".join(broken)


def test_drawing_libraries_load_only_in_plotting_modules() -> None:
    """matplotlib and seaborn take seconds to import: only plots.py/weight_plots.py import them
    at load time, and no front door (a package's ``__init__``) reaches those at load time."""
    assert not (broken := violations()["draw"]), "\n".join(broken)


def reach(edges: dict[str, set[str]], start: str) -> set[str]:
    """Every module that loading ``start`` loads (its load-time imports, transitively)."""
    seen, todo = set(), [start]
    while todo:
        for nxt in edges[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_the_wheel_lists_every_package() -> None:
    """A subpackage missing from ``[tool.setuptools] packages`` is silently left out of the
    wheel (the editable install still finds it, so only this test notices)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        ".".join(("walknoise", *p.parent.relative_to(ROOT / "walknoise").parts))
        for p in (ROOT / "walknoise").rglob("__init__.py")
    } | {"walknoise.cli"}
    assert set(config["packages"]) == on_disk
    assert config["package-dir"]["walknoise.cli"] == "cli"


# The checks above must be able to fail: each rule, broken on purpose in a scratch package.


def _scratch(tmp: Path, files: dict[str, str]) -> dict[Path, str]:
    for name, text in files.items():
        (tmp / "walknoise" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / "walknoise" / name).write_text(text)
    return {tmp / "walknoise": "walknoise"}


def test_each_rule_catches_a_violation(tmp_path: Path) -> None:
    sources = _scratch(
        tmp_path,
        {
            "__init__.py": "from walknoise.walk.a import f\n",
            "walk/__init__.py": "",
            "walk/a.py": "from .b import g\nimport click\n",
            "walk/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    import walknoise.walk.c\nfrom walknoise.walk import c\n",
            "walk/c.py": "import matplotlib.pyplot as plt\nfrom walknoise.walk import plots\n"
            + "def late():\n    import walknoise.walk.a\n"
            + "x = 1\n" * MAX_LINES
            + "from . import a\n",
            "walk/plots.py": "import seaborn\nfrom walknoise import walk\n",
            "walk/d.py": "from walknoise import f, walk\n",
        },
    )
    broken = violations(sources)
    walk = ["walknoise.walk.a", "walknoise.walk.b", "walknoise.walk.c", "walknoise.walk.a"]
    assert broken["cycle"] == [" -> ".join(walk)]
    assert [v.split(":")[:2] for v in broken["face"]] == [["walknoise/walk/d.py", "1"]]
    assert [v.split(":")[0] for v in broken["size"]] == ["walknoise/walk/c.py"]
    assert [v.split(":")[:2] for v in broken["click"]] == [["walknoise/walk/a.py", "2"]]
    assert broken["draw"] == [
        "import walknoise loads ['walknoise.walk.plots'] (import them on use)",
        "walknoise/walk/c.py:1: ['matplotlib'] at load time outside a plotting module",
    ]


def test_lazy_and_type_only_imports_are_not_edges(tmp_path: Path) -> None:
    sources = _scratch(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "import walknoise.b\n",
            "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import walknoise.a\n"
            "def f():\n    from walknoise import a\n",
        },
    )
    assert graph(sources) == {
        "walknoise": set(),
        "walknoise.a": {"walknoise.b"},
        "walknoise.b": set(),
    }
    assert all(v == [] for v in violations(sources).values())
