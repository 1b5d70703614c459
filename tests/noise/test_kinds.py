"""Noise kinds against their formulas: empirical mean and std of what they inject."""

from typing import get_args

import pytest
import torch

from walknoise.errors import WalknoiseError
from walknoise.noise.kinds import KINDS, Additive, Combined, Multiplicative, make_noise
from walknoise.types import NoiseKind

N = 400_000


def draw(draws: int) -> torch.Tensor:
    return torch.randn((draws, N), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("sigma", [0.1, 2.0])
def test_additive_mean_and_std(sigma: float) -> None:
    y = torch.full((N,), 3.0)
    out = Additive().apply(y, torch.tensor(sigma), draw(1))
    delta = out - y
    assert abs(delta.mean().item()) < 4 * sigma / N**0.5
    assert delta.std().item() == pytest.approx(sigma, rel=0.01)


@pytest.mark.parametrize("y0", [-2.0, 0.5])
def test_multiplicative_scales_with_signal(y0: float) -> None:
    sigma = 0.3
    y = torch.full((N,), y0)
    out = Multiplicative().apply(y, torch.tensor(sigma), draw(1))
    assert out.mean().item() == pytest.approx(y0, abs=4 * abs(y0) * sigma / N**0.5)
    assert out.std().item() == pytest.approx(abs(y0) * sigma, rel=0.01)
    zero = Multiplicative().apply(torch.zeros(N), torch.tensor(sigma), draw(1))
    assert torch.count_nonzero(zero) == 0  # no signal, no noise


def test_combined_variance_splits_by_ratio() -> None:
    sigma, ratio, y0 = 0.8, 0.25, 2.0
    out = Combined(ratio).apply(torch.full((N,), y0), torch.tensor(sigma), draw(2))
    expected = ((y0 * sigma * (1 - ratio)) ** 2 + (sigma * ratio) ** 2) ** 0.5
    assert out.mean().item() == pytest.approx(y0, abs=0.01)
    assert out.std().item() == pytest.approx(expected, rel=0.01)


def test_sigma_stack_broadcasts_one_eps() -> None:
    eps = draw(1)[:, :10]
    y = torch.ones(1, 10)
    sigmas = torch.tensor([[0.0], [1.0], [2.0]])
    out = Additive().apply(y, sigmas, eps)
    assert torch.equal(out[0], y[0])
    assert torch.allclose(out[2] - 1, 2 * (out[1] - 1))  # common random numbers


def test_make_noise_errors() -> None:
    assert make_noise("combined", ratio=0.1) == Combined(0.1)
    with pytest.raises(WalknoiseError, match="choose one of additive, multiplicative") as err:
        make_noise("gaussian")  # type: ignore[arg-type]
    assert err.value.argument == "noise"
    with pytest.raises(WalknoiseError, match=r"ratio=1.5 is outside \[0, 1\]") as err:
        Combined(1.5)
    assert err.value.argument == "ratio"


def test_kinds_are_the_literal_choices() -> None:
    assert KINDS == get_args(NoiseKind) == ("additive", "multiplicative", "combined")
    assert [make_noise(k).kind for k in KINDS] == list(KINDS)
