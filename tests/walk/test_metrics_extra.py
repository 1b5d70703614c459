"""Metrics beyond top-1: top-k accuracy, agreement with the clean model, KL from it, and
each metric driving the midpoint (issue 16)."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy.special import rel_entr, softmax
from torch import nn

import walknoise
from walknoise.cli.main import cli
from walknoise.errors import WalknoiseError
from walknoise.walk.metrics import BatchStats, Target, extra, midpoint


def _logits(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    noisy = torch.randn(3, 8, 6, generator=g) * 3
    noisy[1, 2, 4] = float("inf")  # one overflowed row of copy 1
    clean = torch.randn(8, 6, generator=g) * 3
    y = torch.randint(0, 6, (8,), generator=g)
    return noisy, clean, y


def test_extra_matches_sample_by_sample_loops() -> None:
    noisy, clean, y = _logits()
    k = 3
    top, agree, kl, both = extra(noisy, y, clean, k)
    for c in range(noisy.shape[0]):
        want_top = want_agree = want_n = 0
        want_kl = 0.0
        for i in range(noisy.shape[1]):
            row = noisy[c, i].double().numpy()
            if not np.isfinite(row).all():
                continue  # wrong, disagreeing, left out of the KL
            ranked = sorted(range(6), key=lambda j: -row[j])[:k]
            want_top += int(int(y[i]) in ranked)
            want_agree += int(int(np.argmax(row)) == int(clean[i].argmax()))
            p, q = softmax(clean[i].double().numpy()), softmax(row)
            want_kl += float(rel_entr(p, q).sum())
            want_n += 1
        assert int(top[c]) == want_top and int(agree[c]) == want_agree
        assert int(both[c]) == want_n
        # float64 both ways, different formulas: agree to a few ulps of values ~1-10 nats
        assert float(kl[c]) == pytest.approx(want_kl, rel=1e-12, abs=1e-12)
    assert int(both[1]) == 7  # the inf row is out


def test_kl_of_a_model_from_itself_is_zero_and_agreement_one() -> None:
    _, clean, y = _logits(1)
    _, agree, kl, both = extra(clean.unsqueeze(0), y, clean, 1)
    assert int(agree[0]) == 8 and int(both[0]) == 8
    assert abs(float(kl[0])) < 1e-12  # log p − log p in float64


def test_partial_sums_over_batches_add_up_to_the_whole() -> None:
    noisy, clean, y = _logits(2)
    whole, parts = BatchStats.zeros(3, "cpu"), BatchStats.zeros(3, "cpu")
    whole.add_extra(slice(None), noisy, y, clean, 2)
    for sl in (slice(0, 3), slice(3, 8)):
        parts.add_extra(slice(None), noisy[:, sl], y[sl], clean[sl], 2)
    whole.total = parts.total = 8
    np.testing.assert_array_equal(whole.topk_accuracy(), parts.topk_accuracy())
    np.testing.assert_array_equal(whole.agreement(), parts.agreement())
    # the same float64 terms summed in another grouping: equal to rounding
    np.testing.assert_allclose(whole.mean_kl(), parts.mean_kl(), rtol=1e-13)


def test_rising_metric_midpoint_by_hand() -> None:
    sigmas = np.array([0.1, 1.0, 10.0, 100.0])
    loss = np.array([0.2, 0.5, 2.0, 2.4])
    target = Target("loss", 0.2, math.log(10))
    got, status = midpoint(sigmas, target.falling(loss), *target.refs)
    half = 0.2 + (math.log(10) - 0.2) / 2  # 1.2513
    t = (half - 0.5) / (2.0 - 0.5)  # the crossing lies between σ = 1 and σ = 10
    assert status == 1
    assert got == pytest.approx(10**t, rel=1e-12)


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> nn.Module:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def hundred_mlp() -> nn.Module:
    """The architecture of ``hundred`` (an ``--arch`` factory for the CLI test)."""
    return nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 100))


@pytest.fixture(scope="module")
def hundred() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A 100-class task a small MLP learns in a second: class = nearest of 100 centres."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(100, 16, generator=g) * 2
    y = torch.arange(400) % 100
    x = centres[y] + 0.3 * torch.randn(400, 16, generator=g)
    torch.manual_seed(0)
    return _fit(hundred_mlp(), x, y, 150), x, y


def test_top5_scan_of_a_100_class_task(hundred) -> None:  # type: ignore[no-untyped-def]
    model, x, y = hundred
    res = walknoise.scan(
        model, (x, y), sigmas="log:1e-2:1e2:9", repeats=2, metric="topk", progress=False
    )
    ds = res.dataset
    with torch.inference_mode():
        top5 = model(x).topk(5, dim=-1).indices
    clean = float((top5 == y[:, None]).any(-1).double().mean())
    assert ds.attrs["topk"] == 5 and ds.attrs["clean_topk_accuracy"] == clean
    assert ds.attrs["midpoint_end"] == pytest.approx(0.05)
    assert clean > 0.9  # the task is learnt, so the curve has somewhere to fall
    table = res.midpoints()
    assert (table["status"] == 1).all() and table["within_rtol"].all()


@pytest.mark.parametrize("metric", ["topk", "agreement", "kl", "loss"])
def test_each_metric_gives_midpoints(hundred, metric: str) -> None:  # type: ignore[no-untyped-def]
    model, x, y = hundred
    res = walknoise.scan(
        model,
        (x, y),
        sigmas="log:1e-2:1e2:9",
        repeats=2,
        metric=metric,
        refine=False,
        include_global=False,
        progress=False,
    )
    ds = res.dataset
    var = {"topk": "topk_accuracy", "agreement": "agreement", "kl": "kl_divergence"}.get(
        metric, metric
    )
    ref, end = ds.attrs["midpoint_reference"], ds.attrs["midpoint_end"]
    assert ds.attrs["midpoint_metric"] == metric
    if metric == "loss":
        assert end == pytest.approx(math.log(100))
    half = ref + (end - ref) / 2
    for layer, row in res.midpoints().iterrows():
        assert row["status"] == 1
        mean = ds[var].sel(layer=layer).mean("repeat").values
        s = ds["sigma"].values
        crossed = mean >= half if metric in ("kl", "loss") else mean <= half
        i = int(np.flatnonzero(crossed)[0])  # first grid σ past halfway, by hand
        t = (half - mean[i - 1]) / (mean[i] - mean[i - 1])
        want = math.exp(math.log(s[i - 1]) + t * (math.log(s[i]) - math.log(s[i - 1])))
        assert row["midpoint"] == pytest.approx(want, rel=1e-9)  # two float64 formulas


def test_metric_mistakes_are_one_line(hundred) -> None:  # type: ignore[no-untyped-def]
    model, x, y = hundred
    with pytest.raises(WalknoiseError, match="unknown metric 'top5'"):
        walknoise.scan(model, (x, y), sigmas="1,10", metric="top5", progress=False)
    with pytest.raises(WalknoiseError, match="topk=100 with 100 classes"):
        walknoise.scan(model, (x, y), sigmas="1,10", metric="topk", topk=100, progress=False)
    with pytest.raises(WalknoiseError, match="needs phase='eval'"):
        walknoise.scan(model, (x, y), sigmas="1,10", metric="kl", phase="train", progress=False)


def test_a_scan_without_labels_gives_agreement_midpoints(hundred, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model, x, y = hundred
    path = tmp_path / "inputs.pt"
    torch.save({"x": x}, path)  # a data file without y
    kwargs = dict(sigmas="log:1e-2:1e2:9", repeats=2, metric="agreement", progress=False)
    unlabelled = walknoise.scan(model, str(path), **kwargs)  # type: ignore[arg-type]
    labelled = walknoise.scan(model, (x, y), **kwargs)  # type: ignore[arg-type]
    ds = unlabelled.dataset
    assert (unlabelled.midpoints()["status"] == 1).all()
    # agreement and KL need no labels: the same numbers as with them
    for name in ("agreement", "kl_divergence", "midpoint"):
        np.testing.assert_array_equal(ds[name].values, labelled.dataset[name].values)
    for name in ("accuracy", "loss", "topk_accuracy"):
        assert np.isnan(ds[name].values).all()
    assert math.isnan(ds.attrs["clean_accuracy"])


def test_a_label_metric_without_labels_is_one_line(hundred) -> None:  # type: ignore[no-untyped-def]
    model, x, _ = hundred
    for metric in ("accuracy", "topk", "loss"):
        with pytest.raises(WalknoiseError, match=f"no labels, which metric='{metric}' needs"):
            walknoise.scan(model, x, sigmas="1,10", metric=metric, progress=False)
    with pytest.raises(WalknoiseError, match="no labels, and phase='train'"):
        walknoise.scan(model, (x, None), sigmas="1,10", phase="train", progress=False)


def test_cli_metric_and_topk_flags(hundred, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model, x, _ = hundred
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    torch.save({"x": x}, tmp_path / "inputs.pt")
    args = ["scan", str(tmp_path / "sd.pt"), "--arch", f"{__name__}:hundred_mlp", "--data"]
    args += [str(tmp_path / "inputs.pt"), "--sigmas", "log:1e-2:1e2:5", "--repeats", "2"]
    args += ["--quiet", "-o", str(tmp_path / "r.h5"), "--topk", "3"]
    ok = CliRunner().invoke(cli, [*args, "--metric", "kl"])
    assert ok.exit_code == 0, ok.output
    assert "midpoint of kl: halfway from 0 to" in ok.output
    ds = walknoise.load(tmp_path / "r.h5").dataset
    assert ds.attrs["midpoint_metric"] == "kl" and ds.attrs["topk"] == 3
    bad = CliRunner().invoke(cli, [*args, "--metric", "loss", "--overwrite"])
    assert bad.exit_code == 2
    assert "error: --metric: " in bad.stderr and "has no labels" in bad.stderr
    assert "choose --metric 'agreement' or --metric 'kl'" in bad.stderr  # both fixes as flags


def test_search_on_a_rising_metric_finds_the_refined_grid_midpoint(hundred) -> None:  # type: ignore[no-untyped-def]
    model, x, y = hundred
    kw = dict(sigmas="log:1e-2:1e2:9", repeats=2, metric="kl", include_global=False)
    grid = walknoise.scan(model, (x, y), progress=False, **kw)  # type: ignore[arg-type]
    search = walknoise.scan(model, (x, y), midpoint_search=True, progress=False, **kw)  # type: ignore[arg-type]
    a, b = grid.midpoints(), search.midpoints()
    assert (b["status"] == 1).all()
    # the same common-random-number curve, each answer pinned within rtol = 5% of its crossing
    np.testing.assert_allclose(b["midpoint"], a["midpoint"], rtol=0.11)
    visited = search.dataset["search_accuracy"].values
    assert np.nanmin(visited) >= 0  # stored as KL itself, not the negated curve the search uses


def test_a_file_from_before_the_new_metrics_resumes(hundred, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model, x, y = hundred
    out = tmp_path / "r.h5"
    kw = dict(sigmas="log:1e-2:1e2:5", repeats=2, output=out, progress=False)
    whole = walknoise.scan(model, (x, y), **kw).dataset  # type: ignore[arg-type]
    with h5py.File(out, "a") as f:  # as an older walknoise left it, one layer short
        for name in ("topk_accuracy", "agreement", "kl_divergence"):
            del f[name]
        f["layer_done"][-1] = 0
        f["accuracy"][-1] = np.nan
    resumed = walknoise.scan(model, (x, y), **kw).dataset  # type: ignore[arg-type]
    assert "agreement" not in resumed
    np.testing.assert_array_equal(resumed["accuracy"].values, whole["accuracy"].values)


def test_fused_sums_equal_score_and_extra() -> None:
    """``all_sums`` (what a scan adds per batch: one log-sum-exp shared by loss and KL, top-k
    by counting rivals) against ``score`` and ``extra`` computed separately."""
    from walknoise.walk.metrics import all_sums, score

    noisy, clean, y = _logits(3)
    noisy[0, 5] = noisy[0, 5].clamp(max=0) + torch.tensor([1e30, 0, 0, 0, 0, 0])  # a huge gap
    noisy[2, 0, y[0]] = float("inf")  # overflowed towards the label: still wrong, not counted
    fused = all_sums(noisy, y, clean, 3)
    parts = (*score(noisy, y), *extra(noisy, y, clean, 3))
    for a, b in zip(fused, parts, strict=True):
        # float64 both ways, different formulas (log-sum-exp algebra against log-softmax)
        np.testing.assert_allclose(a.double().numpy(), b.double().numpy(), rtol=1e-12)


def test_topk_counts_a_tie_for_the_label() -> None:
    from walknoise.walk.metrics import topk_hits

    logits = torch.tensor([[[3.0, 1.0, 1.0, 0.0]]])
    assert topk_hits(logits, torch.tensor([1]), 2).item()  # one rival above, one tied
    assert topk_hits(logits, torch.tensor([2]), 2).item()
    assert not topk_hits(logits, torch.tensor([3]), 3).item()  # three strictly above
