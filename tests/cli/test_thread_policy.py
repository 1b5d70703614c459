"""The CLI's thread policy: OpenMP threads sleep instead of spinning on a busy machine."""

from __future__ import annotations

import os

import pytest

from walknoise.cli.main import wait_passively_when_busy


@pytest.mark.parametrize(
    ("load", "given", "expected"),
    [
        (2.5, None, "PASSIVE"),  # as busy as its 2 cores: sleep
        (0.3, None, None),  # idle: torch's default (spinning is faster there)
        (2.5, "ACTIVE", "ACTIVE"),  # the user's own setting stands
    ],
)
def test_policy_follows_the_load(monkeypatch, load, given, expected) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    env = {} if given is None else {"OMP_WAIT_POLICY": given}
    wait_passively_when_busy(env)
    assert env.get("OMP_WAIT_POLICY") == expected


def test_no_load_average_leaves_it_alone(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def unavailable() -> tuple[float, float, float]:
        raise OSError("no load average here")

    monkeypatch.setattr(os, "getloadavg", unavailable)
    env: dict[str, str] = {}
    wait_passively_when_busy(env)
    assert env == {}
