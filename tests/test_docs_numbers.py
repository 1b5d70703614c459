"""The performance page's numbers are its benchmarks' JSON, as printed: a re-run benchmark
whose page was not updated (or a page edited by hand) fails here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
# the page's current measurements; those below "Earlier measurements" have JSON of past commits
PAGE = (DOCS / "performance.md").read_text().split("## Earlier measurements")[0]


def bench(name: str) -> Any:
    return json.loads((DOCS / name).read_text())


def row(start: str) -> list[str]:
    """The cells of the one table row of the page that begins with ``start``."""
    found = [line for line in PAGE.splitlines() if line.replace("*", "").startswith(f"| {start}")]
    assert len(found) == 1, f"performance.md should have one row starting {start!r}"
    return [cell.strip() for cell in found[0].replace("*", "").strip("|").split("|")]


def result(name: str, arch: str) -> dict[str, Any]:
    (r,) = [r for r in bench(name)["results"] if r["arch"] == arch]
    return dict(r)


def ratio(x: float) -> str:
    return f"{x:.2f}×"


@pytest.mark.parametrize(
    ("name", "arch", "label"),
    [
        ("bench_scan.json", "lenet5", "LeNet-5, 12 points"),
        ("bench_scan.json", "mlp", "MLP 3×64, 8 points"),
        ("bench_scan_resnet20.json", "resnet20", "ResNet-20, 64 points"),
    ],
)
def test_walk_tables_are_the_benchmark_json(name: str, arch: str, label: str) -> None:
    r, cells = result(name, arch), row(label)
    runs, macs = r["runs"], r["macs"]
    if "naive" in runs:
        assert cells[1] == f"{runs['naive']['wall']:.1f} s"
    assert cells[2] == f"{runs['expert']['wall']:.1f} s"
    assert cells[3] == f"{runs['walknoise']['wall']:.1f} s"
    speed = runs["expert"]["wall"] / runs["walknoise"]["wall"]
    said = f"{speed:.2f}× faster" if speed >= 1 else f"{1 / speed:.1f}× slower"
    assert cells[4].startswith(said), (cells[4], said)
    pairs = [
        e["wall"] / w["wall"]
        for e, w in zip(r["pairs"]["expert"], r["pairs"]["walknoise"], strict=True)
    ]
    if len(pairs) > 1:
        assert cells[4].endswith("(" + ", ".join(f"{p:.2f}" for p in pairs) + ")")
    assert cells[5].startswith(ratio(macs["walknoise"] / macs["minimum"]))
    assert f"({r['gemm_gflops']:.0f} GFLOP/s" in PAGE


def test_lenet_throughput_share_is_the_json() -> None:
    r = result("bench_scan.json", "lenet5")
    share = 2 * r["macs"]["walknoise"] / r["runs"]["walknoise"]["wall"] / 1e9 / r["gemm_gflops"]
    assert f"{share:.0%} of the machine's kernel throughput" in PAGE.replace("\n", " ")


def test_resnet_macs_table_is_the_json() -> None:
    d = bench("bench_resnet_macs.json")
    for label, key in [
        ("the traced block", "traced"),
        ("the block's input, replicated", "block_input"),
        ("the network's input, replicated", "input_replicated"),
    ]:
        cells = row(label)
        assert cells[1] == f"{d[f'{key}_G']:,.0f} G"
        assert cells[2] == ratio(d[f"{key}_ratio"])
    assert f"vs the minimum ({d['minimum_G']:,.0f} G)" in PAGE


def test_heap_table_is_the_json() -> None:
    m = bench("bench_heap.json")["medians"]
    for label, key in [("glibc's defaults", "default"), ("freed memory kept", "kept")]:
        cells = row(label)
        assert cells[1:] == [
            f"{m[key]['minor_faults'] / 1e6:.2f} M",
            f"{m[key]['sys']:.2f} s",
            f"{m[key]['user']:.1f} s",
            f"{m[key]['wall']:.1f} s",
        ]


def test_dtype_table_is_the_json() -> None:
    d = bench("bench_dtype.json")
    for label, key in [("ResNet-20 (98.5%", "resnet20"), ("MLP 3×64 (trained", "mlp")]:
        cells, r = row(label), d[key]
        assert cells[1:4] == [
            f"{r['seconds_float32']:.1f} s",
            f"{r['seconds_bfloat16']:.1f} s",
            ratio(r["speedup"]),
        ]
        assert cells[4].endswith(f"+{100 * r['max_abs_midpoint_rel_diff']:.2f}%")


def test_budget_table_is_the_json() -> None:
    d = bench("bench_budget.json")
    for r in d["results"]:
        med = {int(b): t for b, t in r["median"].items()}
        best = min(med.values())
        col = 2 + 2 * ["lenet5", "resnet20"].index(r["arch"])
        for b, t in med.items():
            cells = row(f"2^{b.bit_length() - 1}")
            assert cells[col : col + 2] == [f"{t:.2f} s", ratio(t / best)], (b, cells)
            assert cells[0].endswith("(the rule)") == (b == r["rule_budget"])
        spread = {b: (max(t) - min(t)) / med[int(b)] for b, t in r["seconds"].items()}
        below_2_24 = max(v for b, v in spread.items() if int(b) < 2**24)
        assert f"at most {below_2_24:.0%}" in PAGE or f"and {below_2_24:.0%} on" in PAGE
        share = 2 * r["macs"] / best / 1e9 / d["gemm_gflops"]
        assert f"{share:.0%}" in PAGE
    assert f"{d['gemm_gflops']:.0f} GFLOP/s" in PAGE
