"""Bad model and results files, fuzzed: one line, exit 2, no code run, nothing touched.

Shares its checks with ``test_fuzz.py``; ``WALKNOISE_FUZZ_EXAMPLES`` scales both.
"""

from __future__ import annotations

import json
import pathlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.cli.conftest import invoke
from tests.cli.test_fuzz import FAST, FUZZ, refused
from walknoise.models import build_model, save_checkpoint
from walknoise.training import seeded_init


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz_files")


@pytest.fixture(scope="module")
def results_file(mlp_checkpoint: Path, workdir: Path) -> Path:
    out = workdir / "good.h5"
    assert invoke("scan", mlp_checkpoint, *FAST, "-o", out).exit_code == 0
    return out


# --- checkpoints ----------------------------------------------------------------------------


class _Evil:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (pathlib.Path.touch, (self.marker,))


def _checkpoint(
    path: Path, arch: str, poison: int = 0, stored: dict[str, object] | None = None
) -> None:
    with seeded_init(0):
        model = build_model(arch)
    if poison:
        with torch.no_grad():
            weight = next(model.parameters()).view(-1)
            weight[torch.randperm(weight.numel())[:poison]] = float("nan")
    save_checkpoint(
        path, model, arch=arch, arch_kwargs={}, input_shape=(1, 28, 28), num_classes=10, meta={}
    )
    if stored:  # rewrite stored fields, as a hand-edited or hostile file would
        payload = torch.load(path, weights_only=True)
        payload.update(stored)
        torch.save(payload, path)


BAD_MODELS = st.one_of(
    st.tuples(st.just("truncated"), st.floats(0, 0.99)),
    st.tuples(st.just("random bytes"), st.binary(max_size=300)),
    st.tuples(st.just("foreign"), st.sampled_from(["json", "hdf5", "npz", "empty"])),
    st.tuples(st.just("other arch"), st.sampled_from(["lenet5", "cnn"])),
    st.tuples(st.just("wrong --arch"), st.sampled_from(["lenet5", "cnn"])),
    st.tuples(st.just("non-finite weights"), st.integers(1, 50)),
    st.tuples(
        st.just("stored factory"), st.from_regex(r"[a-z_.]{1,12}:[a-z_]{1,8}", fullmatch=True)
    ),
)


def _bad_model(path: Path, kind: str, arg: object) -> tuple[str, ...]:
    """Write a bad model file of ``kind``; return the words its error may contain."""
    unreadable = ("cannot read model file", "pickled Python object")
    if kind == "truncated":
        _checkpoint(path, "mlp")
        whole = path.read_bytes()
        path.write_bytes(whole[: int(len(whole) * float(str(arg)))])
        return unreadable
    if kind == "random bytes":
        path.write_bytes(bytes(str(arg), "latin-1") if isinstance(arg, str) else bytes(arg))
        return unreadable
    if kind == "foreign":
        if arg == "hdf5":
            with h5py.File(path, "w") as f:
                f["w"] = np.zeros(3)
        elif arg == "npz":
            with open(path, "wb") as fh:
                np.savez(fh, w=np.zeros(3))
        else:
            path.write_text(json.dumps({"w": [0, 1]}) if arg == "json" else "")
        return unreadable
    if kind == "other arch":  # a lenet5/cnn checkpoint whose file says mlp
        _checkpoint(path, str(arg), stored={"arch": "mlp"})
        return ("does not fit architecture mlp",)
    if kind == "wrong --arch":  # a lenet5/cnn checkpoint, the user says --arch mlp
        _checkpoint(path, str(arg))
        return ("does not fit architecture mlp",)
    if kind == "non-finite weights":
        _checkpoint(path, "mlp", poison=int(str(arg)))
        return ("non-finite weights",)
    _checkpoint(path, "mlp", stored={"arch": arg, "arch_kwargs": {"command": "true"}})
    return ("names the model factory",)


@FUZZ
@given(bad=BAD_MODELS, command=st.sampled_from(["scan", "layers"]))
def test_bad_checkpoints(workdir: Path, bad: tuple[str, object], command: str) -> None:
    check_bad_checkpoint(workdir, bad, command)


def check_bad_checkpoint(workdir: Path, bad: tuple[str, object], command: str) -> None:
    model = workdir / "model.pt"
    words = _bad_model(model, *bad)
    extra = (*FAST, "-o", workdir / "m.h5") if command == "scan" else ()
    arch = ("--arch", "mlp") if bad[0] == "wrong --arch" else ()
    refused(workdir, words, command, model, *extra, *arch)
    assert not (workdir / "m.h5").exists()


# One fixed example of every kind, so that each runs on every CI run.
EVERY_MODEL = [
    ("truncated", 0.5), ("truncated", 0.0), ("random bytes", b"\x80\x02garbage"),
    ("foreign", "json"), ("foreign", "hdf5"), ("foreign", "npz"), ("foreign", "empty"),
    ("other arch", "lenet5"), ("wrong --arch", "cnn"), ("non-finite weights", 3),
    ("stored factory", "os:system"),
]  # fmt: skip


@pytest.mark.parametrize("bad", EVERY_MODEL, ids=[f"{k}-{a!r}" for k, a in EVERY_MODEL])
def test_every_checkpoint_defect(workdir: Path, bad: tuple[str, object]) -> None:
    check_bad_checkpoint(workdir, bad, "scan")


@pytest.mark.parametrize("command", ["scan", "layers"])
def test_malicious_pickle_is_refused_by_the_cli(tmp_path: Path, command: str) -> None:
    marker, evil = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"weights": _Evil(marker)}, evil)
    refused(tmp_path, "--trust-pickle", command, evil, *(FAST if command == "scan" else ()))
    assert not marker.exists()


# --- results files --------------------------------------------------------------------------

BAD_RESULTS = [
    "text", "other tool", "version 0", "version 2", "version '1'", "truncated", "no accuracy",
    "short layer_done", "config garbage", "config code", "config list",
]  # fmt: skip


def _bad_results(path: Path, good: Path, kind: str) -> tuple[str, ...]:
    """Write a bad results file of ``kind``; return the words its error may contain."""
    path.write_bytes(good.read_bytes())
    if kind == "text":
        path.write_text("layer,sigma,accuracy\n")
        return ("cannot read",)
    if kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        return ("cannot read", "damaged")
    with h5py.File(path, "r+") as f:
        if kind == "other tool":
            del f.attrs["format"]
        elif kind.startswith("version"):
            f.attrs["format_version"] = {"0": 0, "2": 2, "'1'": "1"}[kind.split()[1]]
        elif kind == "no accuracy":
            del f["accuracy"]
        elif kind == "short layer_done":
            del f["layer_done"]
            f["layer_done"] = np.ones(2, np.int8)
        else:
            f.attrs["config"] = {
                "config garbage": "{not json",
                "config code": f"__import__('pathlib').Path('{path.parent}/pwned').touch()",
                "config list": json.dumps({"identity": [1, 2]}),
            }[kind]
    return {
        "other tool": ("not a walknoise results file",),
        "no accuracy": ("damaged",),
        "short layer_done": ("damaged",),
    }.get(kind, ("format version",) if kind.startswith("version") else ("no readable config",))


@pytest.mark.parametrize("command", ["scan", "plot"])
@pytest.mark.parametrize("kind", BAD_RESULTS)  # few enough to try them all
def test_bad_results_files(
    mlp_checkpoint: Path, workdir: Path, results_file: Path, kind: str, command: str
) -> None:
    if command == "plot" and kind.startswith("config"):
        pytest.skip("plot draws the numbers; it never reads the scan config")
    bad = workdir / "bad.h5"
    words = _bad_results(bad, results_file, kind)
    args = (
        ("scan", mlp_checkpoint, *FAST, "-o", bad)
        if command == "scan"
        else ("plot", "heatmap", bad, "-o", workdir / "h.png")
    )
    refused(workdir, words, *args)
    assert not (workdir / "pwned").exists() and not (workdir / "h.png").exists()
