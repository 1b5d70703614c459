"""Each test-time perturbation against an independent computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from walknoise.errors import WalknoiseError
from walknoise.nin.perturb import (
    PERTURBATIONS,
    blur,
    contrast,
    gaussian_kernel,
    gaussian_noise,
    impulse_noise,
    rotate,
    rotation,
    translate,
    translation,
)


def _images(n: int = 6, c: int = 2, h: int = 9, w: int = 9) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(1)) * 2 - 1


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_gaussian_noise_is_sigma_times_the_generators_normal_draw() -> None:
    x = _images()
    want = x + 0.7 * torch.randn(x.shape, generator=_gen(3))
    assert torch.equal(gaussian_noise(x, 0.7, _gen(3)), want)
    big = gaussian_noise(torch.zeros(200_000), 2.0, _gen())
    # std of 200,000 normal draws: relative standard error 1/sqrt(2 n) ≈ 0.0016; 1% is 6 SE.
    assert float(big.std()) == pytest.approx(2.0, rel=0.01)


def test_impulse_noise_hits_the_stated_fraction_with_each_images_extremes() -> None:
    x = _images(n=40, c=1, h=50, w=50)
    out = impulse_noise(x, 0.2, _gen())
    changed = out != x
    # 100,000 Bernoulli(0.2) draws: SE 0.0013; 0.01 is ~8 SE.
    assert float(changed.double().mean()) == pytest.approx(0.2, abs=0.01)
    low = x.amin(dim=(1, 2, 3), keepdim=True).expand_as(x)
    high = x.amax(dim=(1, 2, 3), keepdim=True).expand_as(x)
    hit = out[changed]
    assert torch.all((hit == low[changed]) | (hit == high[changed]))
    salt = float((hit == high[changed]).double().mean())
    assert salt == pytest.approx(0.5, abs=0.02)  # ~20,000 hits: SE 0.0035
    assert torch.equal(impulse_noise(x, 0.0, _gen()), x)


def test_blur_kernel_sums_to_one_and_matches_scipy() -> None:
    for sigma in (0.5, 1.0, 1.5, 3.0):
        g = gaussian_kernel(sigma)
        assert float(g.sum()) == pytest.approx(1.0, abs=1e-12)
        assert g.numel() == 2 * max(1, math.ceil(3 * sigma)) + 1
        assert torch.equal(g, g.flip(0))
    x = _images(n=3, c=2, h=12, w=10).double()
    out = blur(x, 1.2, _gen())
    # scipy's gaussian_filter truncated at the same radius, edges replicated ("nearest").
    want = ndimage.gaussian_filter(
        x.numpy(), sigma=(0, 0, 1.2, 1.2), mode="nearest", truncate=math.ceil(3 * 1.2) / 1.2
    )
    np.testing.assert_allclose(out.numpy(), want, atol=1e-12)  # float64 both ways
    flat = torch.full((1, 1, 7, 7), -1.0)
    assert torch.allclose(blur(flat, 2.0, _gen()), flat)  # a flat image stays flat


def test_rotation_by_90_degrees_is_rot90() -> None:
    x = _images(h=8, w=8)
    # Square images, pixel centres map onto pixel centres: bilinear weights are 0/1 up to
    # float32 rounding of the grid (~1e-7 of the coordinate), hence the 1e-5.
    quarter = rotate(x, torch.full((len(x),), 90.0))
    torch.testing.assert_close(quarter, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5, rtol=0)
    back = rotate(x, torch.full((len(x),), -90.0))
    torch.testing.assert_close(back, torch.rot90(x, -1, dims=(2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(rotate(x, torch.zeros(len(x))), x, atol=1e-6, rtol=0)


def test_rotation_perturbation_turns_each_image_by_plus_or_minus_the_strength() -> None:
    x = _images(n=12, h=8, w=8)
    out = rotation(x, 90.0, _gen(5))
    left, right = torch.rot90(x, 1, dims=(2, 3)), torch.rot90(x, -1, dims=(2, 3))
    signs = torch.randint(0, 2, (12,), generator=_gen(5)) * 2 - 1
    for i in range(12):
        want = left[i] if signs[i] > 0 else right[i]
        torch.testing.assert_close(out[i], want, atol=1e-5, rtol=0)
    assert set(signs.tolist()) == {-1, 1}


def _shifted(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """``out[i, j] = x[i - dy, j - dx]``, indices clamped into the image (edge replicated)."""
    h, w = x.shape[-2:]
    rows = (torch.arange(h) - dy).clamp(0, h - 1)
    cols = (torch.arange(w) - dx).clamp(0, w - 1)
    return x[..., rows, :][..., cols]


@pytest.mark.parametrize(("dx", "dy"), [(1, 0), (0, 2), (-3, 1), (2, -2)])
def test_translation_by_whole_pixels_is_a_shifted_tensor(dx: int, dy: int) -> None:
    x = _images(h=9, w=11)
    n = len(x)
    out = translate(x, torch.full((n,), float(dx)), torch.full((n,), float(dy)))
    torch.testing.assert_close(out, _shifted(x, dx, dy), atol=1e-5, rtol=0)


def test_translation_perturbation_moves_by_the_strength() -> None:
    x = torch.full((50, 1, 40, 40), -1.0)
    x[:, :, 18:22, 18:22] = 1.0  # a square at the centre
    out = translation(x, 3.0, _gen())
    rows, cols = torch.arange(40.0).reshape(40, 1), torch.arange(40.0)

    def centre(img: torch.Tensor) -> torch.Tensor:
        mass = img[:, 0] + 1
        total = mass.sum((1, 2))[:, None]
        return torch.stack([(mass * cols).sum((1, 2)), (mass * rows).sum((1, 2))], 1) / total

    moved = (centre(out) - centre(x)).norm(dim=1)
    # Bilinear resampling keeps a symmetric blob's centre of mass exactly where it moved.
    torch.testing.assert_close(moved, torch.full((50,), 3.0), atol=1e-4, rtol=0)


def test_contrast_scales_about_each_images_mean() -> None:
    x = _images()
    out = contrast(x, 0.6, _gen())
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(out - mean, 0.4 * (x - mean))
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)))
    torch.testing.assert_close(contrast(x, 0.0, _gen()), x)  # m + (x - m): rounding only


def test_every_perturbation_is_reproducible_and_identity_at_zero() -> None:
    x = _images()
    for p in PERTURBATIONS.values():
        a, b = p.fn(x, p.strengths[-1], _gen(9)), p.fn(x, p.strengths[-1], _gen(9))
        assert torch.equal(a, b) and a.shape == x.shape and a.dtype == x.dtype
        assert not torch.equal(a, x), p.name
        if p.name != "blur":  # σ = 0 blur has no kernel; it is defined as the identity
            torch.testing.assert_close(p.fn(x, 0.0, _gen()), x, atol=1e-5, rtol=0)
        assert torch.equal(blur(x, 0.0, _gen()), x)


def test_image_perturbations_refuse_flat_inputs() -> None:
    for fn in (blur, rotation, translation):
        with pytest.raises(WalknoiseError, match="image inputs"):
            fn(torch.zeros(4, 16), 1.0, _gen())
