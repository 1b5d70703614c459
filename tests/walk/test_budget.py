"""The element budget of a stacked pass, sized from the last-level cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from walknoise.walk import budget


def fake_sysfs(root: Path, caches: dict[str, str]) -> Path:
    for i, (level, size) in enumerate(caches.items()):
        d = root / f"index{i}"
        d.mkdir(parents=True)
        (d / "level").write_text(level)
        (d / "size").write_text(size + "\n")
    return root


@pytest.fixture(autouse=True)
def _fresh_cache():  # type: ignore[no-untyped-def]
    budget.last_level_cache.cache_clear()
    yield
    budget.last_level_cache.cache_clear()


@pytest.mark.parametrize(
    ("caches", "expected"),
    [
        ({"1": "32K", "2": "512K", "3": "32768K"}, 2**21),  # our Zen 3 VMs: a quarter of 32 MiB
        ({"1": "48K", "2": "2048K", "3": "105M"}, 105 * 2**20 // 16),  # in the range: as is
        ({"1": "32K", "2": "256K"}, 2**20),  # a 256 KiB L2 alone: the floor
        ({"1": "32K", "3": "1G"}, 2**23),  # a huge cache: the ceiling
    ],
)
def test_budget_is_a_quarter_of_the_last_level_cache_in_float32(
    tmp_path, monkeypatch, caches, expected
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(budget, "SYSFS", fake_sysfs(tmp_path, caches))
    assert budget.element_budget(torch.device("cpu")) == expected


def test_unreadable_sysfs_falls_back_to_sysconf(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(budget, "SYSFS", fake_sysfs(tmp_path, {"1": "garbage", "3": ""}))
    monkeypatch.setattr(budget.os, "sysconf", lambda name: 8 * 2**20)
    assert budget.last_level_cache() == 8 * 2**20
    assert budget.element_budget(torch.device("cpu")) == budget.FLOOR  # 8 MiB / 16 = 2^19


def test_no_cache_information_gives_the_default(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(budget, "SYSFS", tmp_path / "absent")

    def no_sysconf(name: str) -> int:
        raise ValueError(name)

    monkeypatch.setattr(budget.os, "sysconf", no_sysconf)
    assert budget.element_budget(torch.device("cpu")) == budget.DEFAULT


def test_gpus_keep_the_default(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(budget, "SYSFS", fake_sysfs(tmp_path, {"3": "32768K"}))
    assert budget.element_budget(torch.device("cuda")) == budget.DEFAULT == 2**21


def test_this_machine_reads_a_plausible_cache() -> None:
    size = budget.last_level_cache()
    if size is None:
        pytest.skip("no cache size exposed here")
    assert 2**15 <= size <= 2**32  # 32 KiB to 4 GiB: bytes, not KiB or bits
    assert budget.FLOOR <= budget.element_budget(torch.device("cpu")) <= budget.CEILING
