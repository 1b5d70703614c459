"""The comparison's parts: validation split, candidate training, tuning, paired tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from tests.nin.toy import _one_thread, data, small  # noqa: F401 (an autouse fixture)
from walknoise.errors import WalknoiseError
from walknoise.nin.paired import paired_test
from walknoise.nin.regularisers import (
    Fit,
    dropout_hooks,
    input_noise_hook,
    train_candidate,
)
from walknoise.nin.train import make_optimizer
from walknoise.nin.tuning import split_validation, tune
from walknoise.training import evaluate

FIT = Fit("sgd", 0.05, 0.0, 3, 64)


def test_validation_split_is_a_fixed_permutation_of_the_training_data() -> None:
    train, _ = data()
    fit, val = split_validation(train, 0.2, seed=0)
    assert (len(fit), len(val)) == (400, 100)
    order = np.random.default_rng(0).permutation(500)
    assert torch.equal(val.x, train.x[order[400:]]) and torch.equal(fit.y, train.y[order[:400]])
    # Disjoint and complete: every training sample is in exactly one part.
    assert sorted(order[:400].tolist() + order[400:].tolist()) == list(range(500))
    again = split_validation(train, 0.2, seed=0)[1]
    assert torch.equal(again.x, val.x)
    with pytest.raises(WalknoiseError, match="empty"):
        split_validation(train, 0.001)


def test_candidates_share_initial_weights_and_differ_only_by_the_regulariser() -> None:
    train, test = data()
    plain = train_candidate("none", 0.05, small, train, FIT, seed=4)
    tiny_l2 = train_candidate("l2", 1e-12, small, train, FIT, seed=4)
    # λ = 1e-12 changes each update by ~1e-14 of the weights: float32 rounding at most.
    for a, b in zip(plain.model.parameters(), tiny_l2.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    strong = train_candidate("l2", 0.5, small, train, FIT, seed=4)
    norm = sum(float(p.detach().norm() ** 2) for p in strong.model.parameters())
    assert norm < 0.5 * sum(float(p.detach().norm() ** 2) for p in plain.model.parameters())
    assert plain.finished and plain.lr == 0.05 and np.isnan(plain.niw_norm)
    ninr = train_candidate("in-ninr", 10.0, small, train, FIT, seed=4)
    assert ninr.niw_norm > 0 and not any(m._forward_hooks for m in ninr.model.modules())
    assert not ninr.model.training
    assert evaluate(ninr.model, test.x, test.y)[0] > 0.4  # chance is 0.25


def test_sgd_weight_decay_is_an_l2_gradient() -> None:
    w = torch.nn.Parameter(torch.tensor([2.0, -1.0]))
    opt = make_optimizer("sgd", [w], 0.1, weight_decay=0.5)
    (w * torch.tensor([1.0, 3.0])).sum().backward()  # type: ignore[no-untyped-call]
    opt.step()
    # w - lr (g + λ w): [2 - 0.1 (1 + 1), -1 - 0.1 (3 - 0.5)]
    torch.testing.assert_close(w.detach(), torch.tensor([1.8, -1.25]))


def test_input_noise_and_dropout_hooks_act_only_in_training() -> None:
    model = small()
    x = data()[1].x
    plain = model.eval()(x)
    model.train()
    with input_noise_hook(model, 0.5, seed=3):
        a = model(x)
        gen = torch.Generator().manual_seed(3)
        by_hand = model.eval()(x + 0.5 * torch.randn(x.shape, generator=gen))
        model.train()
    torch.testing.assert_close(a, by_hand)
    with dropout_hooks(model, 0.5, seed=3):
        b, c = model(x), model(x)
        assert not torch.equal(b, c)
        assert torch.equal(model.eval()(x), plain)  # eval mode: no dropout
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_tune_keeps_the_best_candidate_and_never_a_diverged_one() -> None:
    train, _ = data()
    fit_data, _ = split_validation(train, 0.2)
    scores = iter([0.3, 0.7, 0.7])

    def score(_model: torch.nn.Module) -> float:
        return next(scores)

    tuned = tune("dropout", (0.1, 0.2, 0.3), small, fit_data, score, FIT, seed=0)
    assert tuned.chosen == 1 and tuned.scores == [0.3, 0.7, 0.7]  # the first of ties
    blown = tune("full-ninr", (1.0, 1e6), small, fit_data, lambda m: 0.5, FIT, seed=0)
    assert blown.diverged == [False, True] and blown.chosen == 0
    assert np.isnan(blown.scores[1])


def test_paired_test_is_scipys_ttest_rel() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    mean, p = paired_test(a, b)
    for i in range(4):
        assert p[i] == pytest.approx(stats.ttest_rel(a[i], b[i]).pvalue, rel=1e-12)
        assert mean[i] == pytest.approx(np.mean(a[i] - b[i]), abs=1e-12)
    # Identical differences have no spread (undefined t); one seed has no test at all.
    m, p = paired_test(np.array([0.5, 0.6, 0.7]), np.array([0.4, 0.5, 0.6]))
    assert m == pytest.approx(0.1) and np.isnan(p)
    assert np.isnan(paired_test(np.array([1.0]), np.array([0.0]))[1])
