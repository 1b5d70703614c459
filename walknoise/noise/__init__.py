"""Noise and where it enters: kinds (``kinds``), injection points (``points``) and the forward
hooks that add noise there, with the σ fan-out (``inject``)."""

from walknoise.noise.inject import Fanout, batch_seed, cell_seed, hooks, inject, make_generator
from walknoise.noise.kinds import KINDS, Additive, Combined, Multiplicative, Noise, make_noise
from walknoise.noise.points import GLOBAL, INPUT, Point, discover, select

__all__ = [
    "GLOBAL",
    "INPUT",
    "KINDS",
    "Additive",
    "Combined",
    "Fanout",
    "Multiplicative",
    "Noise",
    "Point",
    "batch_seed",
    "cell_seed",
    "discover",
    "hooks",
    "inject",
    "make_generator",
    "make_noise",
    "select",
]
