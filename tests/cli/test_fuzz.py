"""Bad input, fuzzed: every malformed argument or file gets one line, exit 2, nothing touched.

Each property builds a bad input with hypothesis, runs the real command through click, and
checks: exit code 2, a single ``error: ...`` line naming the problem, no traceback, no new
results file, and every file that was there before byte-for-byte unchanged (only the empty
``.lock`` of a refused scan may appear). More examples: ``WALKNOISE_FUZZ_EXAMPLES=200``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.cli.conftest import assert_user_error, invoke
from walknoise.devices import resolve_device
from walknoise.errors import WalknoiseError
from walknoise.walk.spec import parse_sigmas

EXAMPLES = int(os.environ.get("WALKNOISE_FUZZ_EXAMPLES", "15"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
FAST = ("--sigmas", "0.1,1", "--repeats", "1", "--quiet")
MLP_POINTS = ["<input>", "flatten", "fc1", "act1", "fc2", "act2", "fc3", "act3", "fc4"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def digests(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in directory.iterdir()
        if p.is_file() and p.suffix != ".lock"
    }


def refused(directory: Path, match: str | tuple[str, ...], *args: object) -> None:
    """Run the command; it must fail cleanly and leave every file in ``directory`` as it was."""
    before = digests(directory)
    result = invoke(*(str(a) for a in args))
    matches = (match,) if isinstance(match, str) else match
    assert_user_error(result, "")
    assert any(m in result.stderr for m in matches), result.stderr
    assert digests(directory) == before


# --- arguments ------------------------------------------------------------------------------


def _is_refused(parse: Callable[[str], object], text: str) -> bool:
    try:
        parse(text)
    except WalknoiseError as err:
        assert "\n" not in str(err)
        return True
    return False


bad_numbers = st.sampled_from(["0", "-1", "-1e-3", "nan", "inf", "-inf", "1e400", "0.0"])
bad_sigmas = st.one_of(
    st.lists(bad_numbers, min_size=1, max_size=3).map(",".join),
    st.tuples(st.sampled_from(["log", "lin"]), st.floats(1e-3, 1e3), st.floats(1e-3, 1e3))
    .filter(lambda t: t[1] >= t[2])
    .map(lambda t: f"{t[0]}:{t[1]}:{t[2]}:5"),  # reversed or empty range
    st.text(max_size=30).filter(lambda s: _is_refused(parse_sigmas, s)),  # garbage
    st.integers(10**6 + 1, 10**12).map(lambda n: f"log:1e-2:1e2:{n}"),  # too many to allocate
)


@FUZZ
@given(spec=bad_sigmas)
def test_bad_sigma_specs(mlp_checkpoint: Path, workdir: Path, spec: str) -> None:
    refused(workdir, "σ", "scan", mlp_checkpoint, f"--sigmas={spec}", "-o", workdir / "s.h5")


@FUZZ
@given(text=st.text(max_size=40))
def test_any_sigma_text_parses_or_is_refused_in_one_line(text: str) -> None:
    try:
        grid = parse_sigmas(text)
    except WalknoiseError as err:
        assert "\n" not in str(err)
        return
    assert len(grid) >= 1 and all(np.isfinite(grid)) and min(grid) > 0
    assert all(a < b for a, b in itertools.pairwise(grid))


@FUZZ
@given(pattern=st.text(max_size=12).map(str.strip))
def test_layer_globs_matching_nothing(mlp_checkpoint: Path, workdir: Path, pattern: str) -> None:
    assume(pattern and "," not in pattern and not fnmatch.filter(MLP_POINTS, pattern))
    refused(
        workdir, "matches no injection point", "scan", mlp_checkpoint, *FAST,
        f"--layers={pattern}", "-o", workdir / "g.h5",
    )  # fmt: skip


def _valid_number(option: str, value: str) -> bool:
    if option == "--device":
        return not _is_refused(resolve_device, value)
    try:
        n = int(value)  # what click's INT does
    except ValueError:
        return False
    if option == "--seed":
        return -(2**63) <= n < 2**63
    return n >= 1 and (option != "--repeats" or n <= 1000)


@FUZZ
@given(
    option=st.sampled_from(["--repeats", "--seed", "--batch-size", "--max-batch", "--device"]),
    value=st.one_of(
        st.integers(-(2**70), 0).map(str), st.integers(2**63, 2**80).map(str), st.text(max_size=8)
    ),
)
def test_bad_numbers_and_devices(
    mlp_checkpoint: Path, workdir: Path, option: str, value: str
) -> None:
    assume(not _valid_number(option, value))  # else it would run a scan
    refused(workdir, ("--", "seed", "device", "cells"), "scan", mlp_checkpoint, *FAST,
            f"{option}={value}", "-o", workdir / "n.h5")  # fmt: skip


# --- data files -----------------------------------------------------------------------------

# Each defect: (x, y, rng) -> (contents, words the error must contain). One defect per file.
Defect = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[dict[str, object], str]]


def _renamed(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[dict, str]:
    key = str(rng.choice(["x", "y"]))
    content: dict[str, object] = {"x": x, "y": y}
    content[f"{key}_{rng.integers(100)}"] = content.pop(key)
    return content, f"no key '{key}'"


def _nonfinite(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[dict, str]:
    x = x.copy()
    x.flat[rng.integers(0, x.size, rng.integers(1, 5))] = rng.choice([np.nan, np.inf, -np.inf])
    return {"x": x, "y": y}, "non-finite values"


DEFECTS: dict[str, Defect] = {
    "renamed key": _renamed,
    "x integer": lambda x, y, r: ({"x": (x * 100).astype(np.int32), "y": y}, "dtype"),
    "x bool": lambda x, y, r: ({"x": x > 0, "y": y}, "dtype"),
    "x complex": lambda x, y, r: ({"x": x.astype(np.complex64), "y": y}, "dtype"),
    "y float": lambda x, y, r: ({"x": x, "y": y.astype(np.float32)}, "dtype"),
    "x 1-D": lambda x, y, r: ({"x": x.reshape(-1)[: len(y)], "y": y}, "at least 2-D"),
    "y 2-D": lambda x, y, r: ({"x": x, "y": y[:, None]}, "1-D"),
    "lengths differ": lambda x, y, r: ({"x": x, "y": np.append(y, 1)}, "samples, y"),
    "sample shape": lambda x, y, r: ({"x": x[:, :, 1:], "y": y}, "does not accept inputs"),
    "NaN pixels": _nonfinite,
    "negative label": lambda x, y, r: ({"x": x, "y": np.where(y == y[0], -1, y)}, "negative"),
    "label too big": lambda x, y, r: ({"x": x, "y": y + 10}, "labels go up to"),
    "empty": lambda x, y, r: ({"x": x[:0], "y": y[:0]}, "no samples"),
}


def _write_data(path: Path, content: dict[str, object]) -> None:
    if path.suffix == ".npz":
        np.savez(path, **content)  # type: ignore[arg-type]
    else:
        torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in content.items()}, path)


@FUZZ
@given(
    defect=st.sampled_from(sorted(DEFECTS)),
    suffix=st.sampled_from([".npz", ".pt"]),
    n=st.integers(1, 30),
    seed=st.integers(0, 2**32 - 1),
)
def test_bad_data_files(
    mlp_checkpoint: Path, workdir: Path, defect: str, suffix: str, n: int, seed: int
) -> None:
    check_bad_data(mlp_checkpoint, workdir, defect, suffix, n, seed)


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_every_data_defect(mlp_checkpoint: Path, workdir: Path, defect: str, suffix: str) -> None:
    check_bad_data(mlp_checkpoint, workdir, defect, suffix, n=8, seed=0)


def check_bad_data(
    checkpoint: Path, workdir: Path, defect: str, suffix: str, n: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, 28, 28)).astype(np.float32)
    content, words = DEFECTS[defect](x, rng.integers(0, 10, n), rng)
    data = workdir / f"data{suffix}"
    _write_data(data, content)
    out = workdir / "results.h5"
    refused(workdir, words, "scan", checkpoint, *FAST, "--data", data, "-o", out)
    assert not out.exists()


@FUZZ
@given(suffix=st.sampled_from([".npz", ".pt", ".txt"]), cut=st.floats(0, 0.99))
def test_truncated_or_foreign_data_files(
    mlp_checkpoint: Path, workdir: Path, suffix: str, cut: float
) -> None:
    good = workdir / f"good{'.npz' if suffix == '.npz' else '.pt'}"
    _write_data(good, {"x": np.zeros((4, 1, 28, 28), np.float32), "y": np.zeros(4, np.int64)})
    data = workdir / f"cut{suffix}"
    data.write_bytes(good.read_bytes()[: int(good.stat().st_size * cut)])
    words = "unknown extension" if suffix == ".txt" else "cannot read data file"
    refused(workdir, words, "scan", mlp_checkpoint, *FAST, "--data", data, "-o", workdir / "t.h5")
