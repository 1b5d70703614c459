"""Every user mistake: one line on stderr, exit code 2, no traceback, no file touched."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import numpy as np
import pytest
import torch
from torch import nn

import walknoise
from tests.cli.conftest import assert_user_error, invoke
from tests.stuck import StuckForward
from walknoise.cli.app import error_line
from walknoise.cli.main import cli, flag_of
from walknoise.errors import WalknoiseError
from walknoise.io.lock import one_writer

FAST = ("--sigmas", "0.1,1", "--repeats", "1", "--quiet")
ROOT = Path(__file__).parents[2]


def test_missing_model(tmp_path: Path) -> None:
    assert_user_error(invoke("scan", tmp_path / "nope.pt", *FAST), "no such model file")


@pytest.mark.parametrize("content", ["hdf5 of another tool", "not hdf5"])
def test_foreign_file_fix_depends_on_reading_or_writing(
    mlp_checkpoint: Path, tmp_path: Path, content: str
) -> None:
    path = tmp_path / "other.h5"
    if content == "not hdf5":
        path.write_text("hello")
    else:
        import h5py

        with h5py.File(path, "w") as f:
            f["x"] = [1, 2, 3]
    before = path.read_bytes()
    plotted = invoke("plot", "heatmap", path, "-o", tmp_path / "h.png")
    assert_user_error(plotted, "written by `walknoise scan`")
    assert "--overwrite" not in plotted.stderr  # plot cannot replace anything
    written = invoke("scan", mlp_checkpoint, *FAST, "-o", path)
    assert_user_error(written, "error: --overwrite: ")  # only a scan can replace the file
    assert "pass --overwrite" in written.stderr
    assert path.read_bytes() == before


def test_corrupt_checkpoint(mlp_checkpoint: Path, tmp_path: Path) -> None:
    bad = tmp_path / "cut.pt"
    bad.write_bytes(mlp_checkpoint.read_bytes()[:200])
    assert_user_error(invoke("scan", bad, *FAST), "cannot read model file")


def test_pickled_module_needs_trust(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), path)
    assert_user_error(invoke("scan", path, *FAST), "--trust-pickle")
    ok = invoke("scan", path, "--trust-pickle", *FAST, "-o", tmp_path / "r.h5")
    assert ok.exit_code == 0, ok.output


def test_bare_state_dict_needs_arch(tmp_path: Path) -> None:
    path = tmp_path / "sd.pt"
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).state_dict(), path)
    assert_user_error(invoke("scan", path, *FAST), "--arch")


def test_input_shape_that_does_not_fit(mlp_checkpoint: Path, tmp_path: Path) -> None:
    data = tmp_path / "small.npz"
    np.savez(data, x=np.zeros((20, 3, 8, 8), np.float32), y=np.zeros(20, np.int64))
    assert_user_error(
        invoke("scan", mlp_checkpoint, "--data", data, *FAST), "does not accept inputs of shape"
    )


def test_data_file_wrong_key(mlp_checkpoint: Path, tmp_path: Path) -> None:
    data = tmp_path / "d.npz"
    np.savez(data, images=np.zeros((20, 1, 28, 28), np.float32), y=np.zeros(20, np.int64))
    assert_user_error(invoke("scan", mlp_checkpoint, "--data", data, *FAST), "x")


def test_labels_beyond_model_outputs(mlp_checkpoint: Path, tmp_path: Path) -> None:
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((20, 1, 28, 28), np.float32), y=np.full(20, 12, np.int64))
    assert_user_error(invoke("scan", mlp_checkpoint, "--data", data, *FAST), "labels go up to")


@pytest.mark.parametrize("spec", ["log:1e3:1e-2:5", "nan", "0,1", "-1,2", "log:1:2"])
def test_bad_sigmas(mlp_checkpoint: Path, spec: str) -> None:
    assert_user_error(invoke("scan", mlp_checkpoint, "--sigmas", spec), "σ")


def test_layer_glob_matching_nothing(mlp_checkpoint: Path) -> None:
    assert_user_error(
        invoke("scan", mlp_checkpoint, "--layers", "conv*", *FAST), "matches no injection point"
    )


def test_cuda_absent() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert_user_error(invoke("scan", "x.pt", "--device", "cuda", *FAST), "no CUDA GPU")


def test_other_config_on_existing_file(mlp_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.h5"
    assert invoke("scan", mlp_checkpoint, *FAST, "-o", out).exit_code == 0
    before = out.read_bytes()
    assert_user_error(
        invoke("scan", mlp_checkpoint, "--sigmas", "0.1,1,10", "--repeats", "1", "-o", out),
        "--overwrite",
    )
    assert out.read_bytes() == before


def test_plot_missing_results(tmp_path: Path) -> None:
    assert_user_error(invoke("plot", "curves", tmp_path / "none.h5"), "no such results file")


# The scan in a child that pauses right after its first layer is stored (the layers of a
# streamed scan are written in one burst of ~0.1 s: a signal timed from outside would race it)
# and says so on stdout; SIGINT then lands with every other layer still to write.
PAUSE_AFTER_FIRST_LAYER = """
import sys, time

from walknoise.cli.main import main
from walknoise.walk import store

write = store.write_layer


def write_then_pause(*args, **kwargs):
    write(*args, **kwargs)
    store.write_layer = write
    print("ready", flush=True)
    time.sleep(600)  # SIGINT ends it


store.write_layer = write_then_pause
sys.argv = ["walknoise", *sys.argv[1:]]
main()
"""


@pytest.mark.usefixtures("ctrl_c")  # SIGINT must raise, whatever we inherited
def test_ctrl_c_keeps_finished_layers_and_resumes(mlp_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.h5"
    scan = ["scan", str(mlp_checkpoint), "--sigmas", "log:1e-2:1e3:13", "--repeats", "2"]
    scan += ["-o", str(out), "--quiet"]
    proc = subprocess.Popen(
        [sys.executable, "-c", PAUSE_AFTER_FIRST_LAYER, *scan],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # blocks until the pause, or until the child ends
    if first.strip() == "ready":
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)  # safety only
    assert first.strip() == "ready", err
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == [
        f"interrupted: finished layers are saved in {out}; run the same command again to resume"
    ]
    done = walknoise.load(out).dataset["layer_done"].values
    assert done.sum() == 1  # the one stored before the pause, nothing half-written
    rerun = subprocess.run(
        [sys.executable, "-m", "walknoise.cli", *scan], capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr
    assert walknoise.load(out).complete


@pytest.mark.usefixtures("ctrl_c")  # SIGINT must raise, whatever we inherited
def test_ctrl_c_inside_a_long_forward_pass_stops_the_scan_there(tmp_path: Path) -> None:
    """Python runs a signal handler only between bytecodes, so a ``KeyboardInterrupt`` waits
    for the torch operation in flight (seconds on a big batch); cli.interrupt's watcher ends
    the process at once. StuckForward's forward pass never returns: only the watcher can stop
    the scan, and the safety timeout fails a scan that waits for the pass to end."""
    model, out, entered = tmp_path / "stuck.pt", tmp_path / "r.h5", tmp_path / "entered"
    torch.save(StuckForward(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), out, entered), model)
    args = [sys.executable, "-m", "walknoise.cli", "scan", str(model), "--trust-pickle"]
    args += ["--layers", "<input>", "--sigmas", "0.1,1", "--repeats", "1", "-o", str(out)]
    # from the repository root: the pickle names the class tests.stuck.StuckForward
    proc = subprocess.Popen([*args, "--quiet"], stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 300  # safety only: start-up on a loaded machine
        while not entered.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if not entered.exists():
            proc.kill()
            pytest.fail(f"no forward pass after the file was created: {proc.communicate()[1]}")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)  # safety only: without the watcher, an hour
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted: finished layers are saved")
    partial = walknoise.load(out)  # readable, and resumable: nothing half-written
    assert not partial.dataset["layer_done"].values.any()  # stopped inside the first layer


def test_interrupt_raised_without_a_signal_stops_the_ordinary_way(
    mlp_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("walknoise.cli.scan.run_spec", interrupted)
    result = invoke("scan", mlp_checkpoint, *FAST, "-o", tmp_path / "r.h5")
    assert result.exit_code == 130
    # stopped before the file existed: no "finished layers are saved" in a file that isn't there
    assert result.stderr.splitlines() == [
        f"interrupted before {tmp_path / 'r.h5'} was written; nothing to resume"
    ]


def test_second_scan_on_the_same_file_is_refused(mlp_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.h5"
    assert invoke("scan", mlp_checkpoint, *FAST, "-o", out).exit_code == 0
    before = out.read_bytes()
    with one_writer(out):  # as a running scan holds it
        result = invoke("scan", mlp_checkpoint, *FAST, "-o", out, "--overwrite")
    assert_user_error(result, "is being written by another walknoise scan")
    assert out.read_bytes() == before


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("scan", "--repeats", "0", "m.pt"), "Invalid value for '--repeats'"),
        (("scan", "m.pt", "--noise", "loud"), "Invalid value for '--noise'"),
        (("scan",), "Missing argument 'MODEL'"),
        (("scan", "m.pt", "--bogus"), "No such option"),
        (("plot", "heatmap"), "Missing argument"),
        (("nonsense",), "No such command"),
        (("gni-plot",), "No such command 'gni-plot'"),  # now `gni plot`
        (("nin", "plt"), "Did you mean 'plot'?"),  # suggests commands not loaded yet
    ],
)
def test_usage_errors_are_one_line(args: tuple[str, ...], match: str) -> None:
    assert_user_error(invoke(*args), match)


def _raises(argument: str | None, message: str = "ratio=1.5 is not in (0, 1)") -> Any:
    def fail(*args: object, **kwargs: object) -> None:
        raise WalknoiseError(message, argument=argument)

    return fail


@pytest.mark.parametrize(
    ("argument", "line"),
    [
        ("data", "error: --data: ratio=1.5 is not in (0, 1)"),
        ("trust_pickle", "error: --trust-pickle: ratio=1.5 is not in (0, 1)"),
        ("model_path", "error: MODEL: ratio=1.5 is not in (0, 1)"),  # an argument: its metavar
        ("ratio", "error: ratio=1.5 is not in (0, 1)"),  # `layers` has no --ratio
        (None, "error: ratio=1.5 is not in (0, 1)"),
    ],
)
def test_library_error_gets_the_flag_of_its_argument(
    mlp_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, argument: str | None, line: str
) -> None:
    monkeypatch.setattr("walknoise.cli.layers.survey", _raises(argument))
    result = invoke("layers", mlp_checkpoint)
    assert_user_error(result, line)
    assert result.stderr.strip() == line


def test_flag_of_a_nested_command_and_a_renamed_option(
    mlp_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = "layers=['nope'] matches no injection point;\n see walknoise.noise.discover"
    monkeypatch.setattr("walknoise.cli.gni.run_gni", _raises("layers", message))
    result = invoke("gni", "run", mlp_checkpoint, "--quiet")
    # --layers sets the parameter `layer_names`; the flag spelled as a name matches too
    assert_user_error(result, "error: --layers: layers=['nope'] matches no injection point; see")


def test_suggested_fixes_are_spelled_as_the_command_line_does() -> None:
    scan = cli.get_command(click.Context(cli), "scan")
    message = WalknoiseError(
        "ratio=1.5 is outside [0, 1]; pass overwrite=True, e.g. sigmas='log:1e-2:1e3:31' "
        "(or trust_pickle=True); max_overwrite=True stays; output_key='x' is reported"
    )
    assert error_line(message, scan) == (
        "error: ratio=1.5 is outside [0, 1]; pass --overwrite, e.g. --sigmas "
        "'log:1e-2:1e3:31' (or --trust-pickle); max_overwrite=True stays; output_key='x' is "
        "reported"
    )
    assert error_line(message, None) == f"error: {message}"  # no command, no flags


def test_flag_of_prefers_the_long_option() -> None:
    scan = cli.get_command(click.Context(cli), "scan")
    assert flag_of(scan, "output") == "--output"
    assert flag_of(scan, "sigmas") == "--sigmas"
    assert flag_of(scan, "include_global") is None  # --no-global is not the same question
    assert flag_of(None, "sigmas") is None


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("--phase", "train", "--clamp-weights", "-1"), "error: --clamp-weights: clamp=-1.0"),
        (("--executor", "slurm", "--slurm-gpus", "-1"), "error: --slurm-gpus: SlurmOptions gpus="),
        (("--executor", "slurm", "--slurm-cpus", "0"), "error: --slurm-cpus: SlurmOptions cpus="),
        (("--executor", "slurm", "--slurm-time", "0"), "error: --slurm-time: SlurmOptions time="),
    ],
)
def test_options_named_otherwise_than_their_api_argument(
    mlp_checkpoint: Path, args: tuple[str, ...], line: str
) -> None:
    """ScanSpec's clamp is --clamp-weights, SlurmOptions' gpus/cpus/time are --slurm-*."""
    assert_user_error(invoke("scan", mlp_checkpoint, *FAST, *args), line)
