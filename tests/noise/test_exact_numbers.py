"""Noise and injection against numbers computed another way: the formula with the same ε, pinned
seeds and draws. Moment tests (test_kinds.py) cannot tell ``y + σ·y·ε`` from ``y + σ·|y|·ε``;
these can.
"""

import hashlib
import json

import numpy as np
import pytest
import torch
from torch import nn

import walknoise
from walknoise.errors import WalknoiseError
from walknoise.noise.inject import cell_seed, make_generator
from walknoise.noise.kinds import Additive, Combined, Multiplicative, Noise, noise_from_dict

SIGMA, RATIO = 0.7, 0.2


def formula(kind: str, y: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """The noise kinds written out in float64 (Walking Noise's definitions)."""
    if kind == "additive":
        return y + SIGMA * eps[0]
    if kind == "multiplicative":
        return y + SIGMA * y * eps[0]
    return y + SIGMA * (1 - RATIO) * y * eps[0] + SIGMA * RATIO * eps[1]


@pytest.mark.parametrize("noise", [Additive(), Multiplicative(), Combined(RATIO)])
def test_each_kind_is_its_formula_with_the_same_eps(noise: Noise) -> None:
    gen = torch.Generator().manual_seed(11)
    y = torch.randn(1000, generator=gen) * 3  # about half negative: |y| ≠ y
    eps = torch.randn((noise.draws, 1000), generator=gen)
    out = noise.apply(y, torch.tensor(SIGMA), eps)
    expected = formula(noise.kind, y.double().numpy(), eps.double().numpy())
    # float32 arithmetic against float64: a few float32 roundings of values of size ~10
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-5)


def test_combined_ratio_ends_are_the_pure_kinds() -> None:
    gen = torch.Generator().manual_seed(2)
    y, eps = torch.randn(50, generator=gen), torch.randn((2, 50), generator=gen)
    sigma = torch.tensor(SIGMA)
    torch.testing.assert_close(
        Combined(1.0).apply(y, sigma, eps), Additive().apply(y, sigma, eps[1:])
    )
    torch.testing.assert_close(
        Combined(0.0).apply(y, sigma, eps), Multiplicative().apply(y, sigma, eps)
    )


@pytest.mark.parametrize("noise", [Additive(), Multiplicative(), Combined(RATIO)])
def test_noise_reloads_with_its_ratio(noise: Noise) -> None:
    assert noise_from_dict(json.loads(json.dumps(noise.to_dict()))) == noise


# Golden values: every stored number of every results file depends on them. A change here
# silently changes every cell of every scan, so it must be a deliberate format change.
GOLDEN_SEEDS = {
    (0, "fc1", 0): 6588298059067512432,
    (0, "<input>", 3): 3478714199696048312,
    (12345, "<global>", 1): 8841695838457695226,
    (7, "layer1.0.conv1", 4): 7402918454314805150,
}


def test_cell_seeds_are_pinned() -> None:
    for (seed, layer, repeat), golden in GOLDEN_SEEDS.items():
        assert cell_seed(seed, layer, repeat) == golden
        digest = hashlib.sha256(f"walknoise:{seed}:{layer}:{repeat}".encode()).digest()
        assert golden == int.from_bytes(digest[:8], "little") % 2**63


def test_first_draws_of_a_cell_are_pinned() -> None:
    draws = torch.randn(4, generator=make_generator(cell_seed(0, "fc1", 0)))
    # torch.randn may differ in the last bits on CPUs without AVX2 (issue 15, item 6)
    golden = [-1.0999069213867188, 0.32568636536598206, 1.0323081016540527, -0.7751023769378662]
    np.testing.assert_allclose(draws.numpy(), golden, rtol=1e-6)


def test_inject_draws_from_its_generator() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 6)).eval()
    x = torch.randn(5, 1, 4, 4)
    with torch.no_grad():
        clean = model(x)
        with walknoise.noise.inject(model, "1", "additive", SIGMA, generator=make_generator(9)):
            first, second = model(x), model(x)
    gen = make_generator(9)  # the same stream by hand: one (draws, batch, ...) tensor a pass
    eps1, eps2 = (torch.randn((1, 5, 6), generator=gen)[0] for _ in range(2))
    # y + σ·ε fused (addcmul) against two float32 operations: one rounding apart
    torch.testing.assert_close(first, clean + SIGMA * eps1)
    torch.testing.assert_close(second, clean + SIGMA * eps2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", ["additive", "multiplicative"])
def test_half_precision_noise_is_computed_in_float32(dtype: torch.dtype, kind: str) -> None:
    """σ and ε rounded to 16 bits first would move about one element in five by one ulp."""
    y = (torch.randn(64, 50, generator=torch.Generator().manual_seed(3)) * 3).to(dtype)
    model = nn.Sequential(nn.Identity())
    with walknoise.noise.inject(model, "<input>", kind, 0.1, generator=make_generator(5)):
        out = model(y)
    eps = torch.randn((1, 64, 50), generator=make_generator(5))[0]
    y32 = y.float()
    expected = y32 + 0.1 * eps if kind == "additive" else y32 + 0.1 * y32 * eps
    assert out.dtype == dtype
    # One rounding from float32 either way. The library's float32 arithmetic may be fused
    # (addcmul) where this is not: the two float32 values can differ by an ulp, which flips
    # the 16-bit rounding only when they straddle a 16-bit boundary (~1 in 2**13 elements
    # for float16, 2**16 for bfloat16). Computing in 16 bits moves ~1 in 5 elements.
    got, want = out.float(), expected.to(dtype).float()
    ulp = torch.finfo(dtype).eps * want.abs().clamp_min(torch.finfo(dtype).tiny)
    assert bool(((got - want).abs() <= ulp).all())  # never more than one 16-bit unit
    assert float((got != want).float().mean()) <= 0.002


def test_extra_model_arguments_pass_through_input_noise() -> None:
    class Scaled(nn.Module):
        def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
            return x * scale

    model = Scaled()
    x = torch.zeros(3, 4)
    with walknoise.noise.inject(model, "<input>", "additive", 1.0, generator=make_generator(1)):
        out = model(x, 1000.0)
    eps = torch.randn((1, 3, 4), generator=make_generator(1))[0]
    torch.testing.assert_close(out, 1000.0 * eps)


class Swap(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.t()


def test_a_point_whose_batch_is_not_first_is_refused() -> None:
    """Two features: the transposed (2, B) output looks batch-first to a dummy pass of 2."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2), Swap(), Swap(), nn.Linear(2, 4))
    x, y = torch.randn(20, 1, 4, 4), torch.randint(0, 4, (20,))
    with pytest.raises(WalknoiseError, match="leading size 2, expected the batch size 10"):
        walknoise.scan(
            model, (x, y), sigmas=(0.1, 1.0), layers="2", repeats=1, batch_size=10,
            progress=False,
        )  # fmt: skip
