"""One writer per results file; a lock left by a killed process never blocks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import walknoise
from walknoise.errors import WalknoiseError
from walknoise.io import lock

HOLDER = """
import sys, time
from pathlib import Path
from walknoise.io.lock import one_writer
with one_writer(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def hold_in_subprocess(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_is_refused(trained_mlp, data, tmp_path: Path) -> None:
    out = tmp_path / "r.h5"
    with lock.one_writer(out), pytest.raises(WalknoiseError, match="another walknoise scan"):
        walknoise.scan(trained_mlp, data, sigmas="0.1,1", repeats=1, output=out, progress=False)
    assert not out.exists()
    walknoise.scan(trained_mlp, data, sigmas="0.1,1", repeats=1, output=out, progress=False)
    assert walknoise.load(out).complete  # released on exit: the next scan writes
    assert not lock.lock_path(out).exists()  # and removed: no litter next to the results


def test_stale_lock_of_a_killed_process_does_not_block(tmp_path: Path) -> None:
    out = tmp_path / "r.h5"
    proc = hold_in_subprocess(out)
    try:
        with pytest.raises(WalknoiseError, match="being written by another"), lock.one_writer(out):
            pass
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert lock.lock_path(out).exists()  # the file stays behind, the lock does not
    # one_writer never waits (timeout=0): entering at all means the kernel dropped the lock
    # (and once in, we hold it: a second writer is refused)
    refused = pytest.raises(WalknoiseError, match="being written by another")
    with lock.one_writer(out), refused, lock.one_writer(out):
        pass


def test_stale_temporary_copies_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "r.h5"
    left = [tmp_path / ".r.h5.abc123.tmp", tmp_path / ".r.h5.x.tmp"]
    other = tmp_path / ".other.h5.abc.tmp"  # another file's copy is not ours to delete
    for p in [*left, other]:
        p.write_bytes(b"half-written")
    with lock.one_writer(out):
        assert not any(p.exists() for p in left)
    assert other.exists()


def test_missing_directory_is_not_created(tmp_path: Path) -> None:
    out = tmp_path / "nope" / "r.h5"
    with pytest.raises(WalknoiseError, match="does not exist"), lock.one_writer(out):
        pass
    assert not out.parent.exists()


def test_without_output_nothing_is_locked(
    trained_mlp, data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    walknoise.scan(trained_mlp, data, sigmas="0.1,1", repeats=1, progress=False)
    assert list(tmp_path.iterdir()) == []


RACER = """
import os, sys
from pathlib import Path
from walknoise.errors import WalknoiseError
from walknoise.io.lock import one_writer
out, inside, held = Path(sys.argv[1]), Path(sys.argv[1] + ".inside"), 0
for _ in range(int(sys.argv[2])):
    try:
        with one_writer(out):
            fd = os.open(inside, os.O_CREAT | os.O_EXCL)  # fails if another holder is inside
            os.close(fd)
            os.unlink(inside)
            held += 1
    except WalknoiseError:
        pass
print(held)
"""


def test_racing_writers_never_overlap(tmp_path: Path) -> None:
    """Removing the lock file on release must not let two processes in at once."""
    out = tmp_path / "r.h5"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(out), "300"], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    held = [int(p.communicate(timeout=120)[0]) for p in racers]
    assert all(p.returncode == 0 for p in racers)  # an overlap would raise FileExistsError
    assert sum(held) > 0
