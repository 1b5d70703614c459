"""Run the targeted mutants of ``mutants.py``: one at a time, on a private copy of the tree.

Run on demand, not in CI (a full run takes tens of minutes)::

    .venv/bin/python -m tests.mutation.run_mutants            # the working tree
    .venv/bin/python -m tests.mutation.run_mutants --rev HEAD  # a committed tree
    .venv/bin/python -m tests.mutation.run_mutants --check     # only look for stale snippets

Each mutant is applied to a copy (the checkout is never touched, so other work in it goes
on), the mutated module's tests run first, and a mutant they miss is run against the whole
non-slow suite (skip that with ``--module-only``). The unmutated copy must pass every test
group first, or nothing is reported. Bytecode caching is off in the copies: a mutant and the
original can have the same size and modification second, and a stale ``.pyc`` would then run
the wrong code.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.mutation.mutants import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.egg-info", "site", ".mypy_cache", ".ruff_cache",
    ".pytest_cache", "*.h5", "*.nc",
)  # fmt: skip
SUITE = ("-m", "not slow", "tests")


@dataclass
class Outcome:
    mutant: Mutant
    status: str  # killed | survived | stale | ambiguous
    by: str = ""
    seconds: float = 0.0


def make_copy(rev: str | None) -> Path:
    """A private tree: the working tree, or ``git archive`` of ``rev``; cli/ inside the package.

    ``walknoise.cli`` is installed from ``cli/``; placing a copy at ``walknoise/cli`` makes
    the copy self-contained, so nothing of the checkout is imported.
    """
    dest = Path(tempfile.mkdtemp(prefix="walknoise-mutants-")) / "tree"
    if rev is None:
        shutil.copytree(ROOT, dest, ignore=SKIP)
    else:
        dest.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(dest, filter="data")
    shutil.copytree(dest / "cli", dest / "walknoise" / "cli")
    return dest


def env_for(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}


def check_imports(tree: Path) -> None:
    """Refuse to run if ``walknoise`` would be imported from anywhere but the copy."""
    code = "import walknoise.walk.metrics as m, walknoise.cli as c; print(m.__file__, c.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tree, env=env_for(tree), capture_output=True, text=True
    )
    files = out.stdout.split()
    if out.returncode != 0 or not all(f.startswith(str(tree)) for f in files) or not files:
        sys.exit(f"the copy at {tree} does not import its own walknoise: {out.stdout}{out.stderr}")


def pytest(tree: Path, args: Sequence[str], timeout: float) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args]
    try:
        out = subprocess.run(
            cmd, cwd=tree, env=env_for(tree), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return -1, "timeout"
    return out.returncode, out.stdout[-3000:] + out.stderr[-3000:]


def locate(tree: Path, mutant: Mutant) -> tuple[str, str | None]:
    """The file's text and ``None``, or the reason the mutant cannot be applied."""
    path = tree / mutant.path
    text = path.read_text() if path.exists() else ""
    count = text.count(mutant.find)
    if count == 0:
        return text, "stale"
    return text, None if count == 1 else "ambiguous"


class Baselines:
    """Each test group run once unmutated, on first use: it must pass, and its time (×5, plus
    a minute) bounds the mutants' runs, so a mutant that loops forever counts as killed."""

    def __init__(self, tree: Path) -> None:
        self.tree, self.timeouts = tree, dict[tuple[str, ...], float]()

    def timeout(self, group: tuple[str, ...]) -> float:
        if group not in self.timeouts:
            start = time.monotonic()
            rc, output = pytest(self.tree, args_of(group), timeout=3600)
            if rc != 0:
                sys.exit(f"the unmutated tree fails {' '.join(group)}:\n{output}")
            seconds = time.monotonic() - start
            print(f"baseline {' '.join(group)}: {seconds:.0f} s", flush=True)
            self.timeouts[group] = 5 * seconds + 60
        return self.timeouts[group]


def args_of(group: tuple[str, ...]) -> tuple[str, ...]:
    return group if group == SUITE else ("-m", "not slow", *group)


def run_one(tree: Path, mutant: Mutant, baselines: Baselines, suite: bool) -> Outcome:
    text, problem = locate(tree, mutant)
    if problem:
        return Outcome(mutant, problem)
    stages = [(mutant.tests, "module tests"), *([(SUITE, "suite")] if suite else [])]
    path, start = tree / mutant.path, time.monotonic()
    try:
        for group, where in stages:
            path.write_text(text)  # the baseline, if due, runs on the unmutated tree
            limit = baselines.timeout(group)
            path.write_text(text.replace(mutant.find, mutant.replace))
            rc, _ = pytest(tree, args_of(group), limit)
            if rc != 0:
                return Outcome(mutant, "killed", _why(rc, where), time.monotonic() - start)
        return Outcome(mutant, "survived", "", time.monotonic() - start)
    finally:
        path.write_text(text)


def _why(rc: int, where: str) -> str:
    return {1: where, -1: f"{where} (timeout)"}.get(rc, f"{where} (exit {rc})")


def report(outcomes: Sequence[Outcome]) -> int:
    width = max(len(o.mutant.name) for o in outcomes)
    print(f"\n{'mutant':<{width}}  {'file':<28} {'result':<9} {'by':<22} listed")
    for o in outcomes:
        listed = "yes" if o.mutant.listed else ""
        print(
            f"{o.mutant.name:<{width}}  {o.mutant.path.removeprefix('walknoise/'):<28} "
            f"{o.status:<9} {o.by:<22} {listed}"
        )
    applied = [o for o in outcomes if o.status in ("killed", "survived")]
    killed = sum(o.status == "killed" for o in applied)
    bad = [o for o in outcomes if o.status in ("stale", "ambiguous")]
    listed_alive = [o for o in applied if o.mutant.listed and o.status == "survived"]
    score = killed / len(applied) if applied else 0.0
    print(f"\nscore: {killed}/{len(applied)} killed ({score:.0%}); {len(bad)} stale or ambiguous")
    for o in bad:
        print(f"  {o.status} mutant: {o.mutant.name} ({o.mutant.path}): snippet {o.mutant.find!r}")
    return 0 if score >= 0.9 and not bad and not listed_alive else 1


def check(tree: Path, mutants: Sequence[Mutant]) -> int:
    """Report the mutants whose snippet is missing or not unique; 1 if there is any."""
    bad = [(mu, problem) for mu in mutants if (problem := locate(tree, mu)[1])]
    for mu, problem in bad:
        print(f"{problem} mutant: {mu.name} ({mu.path}): snippet {mu.find!r}")
    print(f"{len(mutants)} mutants, {len(bad)} stale or ambiguous")
    return 1 if bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", help="mutate this git revision instead of the working tree")
    parser.add_argument(
        "--only", action="append", help="run the mutants whose name contains this text (repeatable)"
    )
    parser.add_argument("--module-only", action="store_true", help="skip the suite stage")
    parser.add_argument("--check", action="store_true", help="only report stale snippets")
    args = parser.parse_args(argv)
    mutants = [mu for mu in MUTANTS if not args.only or any(o in mu.name for o in args.only)]
    tree = make_copy(args.rev)
    try:
        if args.check:
            return check(tree, mutants)
        check_imports(tree)
        baselines, outcomes = Baselines(tree), []
        for i, mu in enumerate(mutants, 1):
            outcome = run_one(tree, mu, baselines, suite=not args.module_only)
            print(f"[{i}/{len(mutants)}] {outcome.status:<9} {mu.name}", flush=True)
            outcomes.append(outcome)
        return report(outcomes)
    finally:
        shutil.rmtree(tree.parent)


if __name__ == "__main__":
    sys.exit(main())
