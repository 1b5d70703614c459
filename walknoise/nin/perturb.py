"""Test-time input perturbations for the NINR comparison, written in torch.

Each perturbation is a function ``(x, strength, generator) -> x'`` on a batch ``x`` of shape
``(N, ...)`` (images: ``(N, C, H, W)``); ``strength = 0`` leaves ``x`` unchanged and larger
values perturb more. Random choices come from ``generator`` only, so the same generator state
gives every model the same perturbed inputs (a paired comparison). Levels that depend on the
data's range (impulse noise's black and white, contrast's grey) are taken per image from the
image itself, so the functions work for inputs in [0, 1], [-1, 1] or standardised alike.

The NINR paper (Levi et al., arXiv 2210.15764) tests robustness against several such
corruptions and domain shifts; these are the common ones, not its exact set.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from walknoise.errors import WalknoiseError

__all__ = [
    "PERTURBATIONS",
    "Perturbation",
    "blur",
    "contrast",
    "gaussian_kernel",
    "gaussian_noise",
    "impulse_noise",
    "rotate",
    "rotation",
    "translate",
    "translation",
]

PerturbFn = Callable[[Tensor, float, torch.Generator], Tensor]


def _per_image(values: Tensor, like: Tensor) -> Tensor:
    """``(N,)`` values shaped to broadcast over a batch like ``like``."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


def _images(x: Tensor, what: str) -> Tensor:
    if x.dim() != 4:
        raise WalknoiseError(
            f"{what} needs image inputs of shape (N, C, H, W), got shape {tuple(x.shape)}; "
            "leave it out for other inputs"
        )
    return x


def gaussian_noise(x: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """``x + strength · ε`` with ε ~ N(0, 1) per element (strength: σ in input units)."""
    eps = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
    return x + strength * eps


def impulse_noise(x: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """Salt and pepper: each element, with probability ``strength``, is replaced by its
    image's maximum (salt) or minimum (pepper), each with probability ½."""
    hit = torch.rand(x.shape, generator=generator) < strength
    salt = torch.rand(x.shape, generator=generator) < 0.5
    flat = x.flatten(1)
    low, high = _per_image(flat.amin(1), x), _per_image(flat.amax(1), x)
    level = torch.where(salt.to(x.device), high, low)
    return torch.where(hit.to(x.device), level, x)


def gaussian_kernel(sigma: float) -> Tensor:
    """The normalised 1-D Gaussian of std ``sigma`` pixels, truncated at ``ceil(3σ)``."""
    radius = max(1, math.ceil(3 * sigma))
    k = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (k / sigma) ** 2)
    return g / g.sum()


def blur(x: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """Gaussian blur of std ``strength`` pixels: two separable ``conv2d`` passes, one per
    channel, with edge pixels replicated outwards (so a flat background stays flat)."""
    del generator  # deterministic
    _images(x, "blur")
    if strength == 0:
        return x.clone()
    g = gaussian_kernel(strength).to(x.device, x.dtype)
    c, r = x.shape[1], g.numel() // 2
    rows = g.reshape(1, 1, -1, 1).expand(c, 1, -1, 1)
    cols = g.reshape(1, 1, 1, -1).expand(c, 1, 1, -1)
    out = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), rows, groups=c)
    return F.conv2d(F.pad(out, (r, r, 0, 0), mode="replicate"), cols, groups=c)


def _warp(x: Tensor, theta: Tensor) -> Tensor:
    """Resample ``x`` at ``theta @ (u, v, 1)`` (normalised output coordinates, pixel
    centres, bilinear); points outside take the nearest edge pixel's value."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def rotate(x: Tensor, degrees: Tensor) -> Tensor:
    """Rotate each image by its ``degrees`` (shape ``(N,)``) anticlockwise as displayed
    (row 0 at the top) about the image centre."""
    _images(x, "rotation")
    a = torch.deg2rad(degrees.to(torch.float64))
    cos, sin = torch.cos(a), torch.sin(a)
    h, w = x.shape[-2:]
    zero = torch.zeros_like(a)
    # Normalised coordinates scale x by 2/W and y by 2/H: undo that around the rotation.
    theta = torch.stack(
        [torch.stack([cos, -sin * h / w, zero], 1), torch.stack([sin * w / h, cos, zero], 1)], 1
    )
    return _warp(x, theta.to(x.device))


def translate(x: Tensor, dx: Tensor, dy: Tensor) -> Tensor:
    """Shift each image's content by ``dx`` pixels right and ``dy`` down (shapes ``(N,)``,
    fractions allowed); uncovered pixels repeat the nearest edge pixel."""
    _images(x, "translation")
    h, w = x.shape[-2:]
    one, zero = torch.ones_like(dx, dtype=torch.float64), torch.zeros_like(dx, dtype=torch.float64)
    tx, ty = -2 * dx.to(torch.float64) / w, -2 * dy.to(torch.float64) / h
    theta = torch.stack([torch.stack([one, zero, tx], 1), torch.stack([zero, one, ty], 1)], 1)
    return _warp(x, theta.to(x.device))


def rotation(x: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """Rotate each image by ``strength`` degrees, clockwise or anticlockwise at random."""
    sign = torch.randint(0, 2, (len(x),), generator=generator) * 2 - 1
    return rotate(x, sign * strength)


def translation(x: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """Shift each image by ``strength`` pixels in a direction drawn uniformly at random."""
    angle = torch.rand(len(x), generator=generator, dtype=torch.float64) * 2 * math.pi
    return translate(x, strength * torch.cos(angle), strength * torch.sin(angle))


def contrast(x: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """Lower the contrast: ``m + (1 - strength)(x - m)`` with ``m`` each image's mean
    (torchvision's ``adjust_contrast`` with factor ``1 - strength``, minus its clamp)."""
    del generator  # deterministic
    mean = _per_image(x.flatten(1).mean(1), x)
    return mean + (1 - strength) * (x - mean)


@dataclass(frozen=True)
class Perturbation:
    """One kind of perturbation, its default strengths and what they measure."""

    name: str
    fn: PerturbFn
    strengths: tuple[float, ...]
    """Default strengths for MNIST-like 28 × 28 images in [0, 1] (the bundled MNIST's
    default scaling)."""
    unit: str
    """What ``strength`` is, for tables and the results file."""
    images_only: bool
    """Whether it needs ``(N, C, H, W)`` inputs."""
    max_strength: float = math.inf
    """Largest meaningful strength (a probability or a fraction is at most 1)."""


PERTURBATIONS: dict[str, Perturbation] = {
    p.name: p
    for p in (
        Perturbation("gaussian", gaussian_noise, (0.25, 0.5, 1.0), "σ (input units)", False),
        Perturbation("impulse", impulse_noise, (0.05, 0.1, 0.2), "fraction of elements", False, 1),
        Perturbation("blur", blur, (0.5, 1.0, 1.5), "σ (pixels)", True),
        Perturbation("rotation", rotation, (10.0, 20.0, 30.0), "degrees", True),
        Perturbation("translation", translation, (1.0, 2.0, 3.0), "pixels", True),
        Perturbation("contrast", contrast, (0.3, 0.6, 0.8), "contrast reduction", False, 1),
    )
}
"""Every perturbation by name, in table order."""
