"""Gradient noise of Gaussian noise injections (Camuto et al., ICML 2021): measure the implicit
gradient noise (``measure``), its tails (``tails``), track it during training (``tracking``),
keep it in a results file (``store``, ``result``) and draw it (``plots``, imported on use)."""

from walknoise.gni.measure import GNISpec, gradient_noise, measure, noisy_loss, run_gni
from walknoise.gni.result import GNIResult, load_gni
from walknoise.gni.tracking import GNITracker, GNITraining, NoisyLoss, training_hooks

__all__ = [
    "GNIResult",
    "GNISpec",
    "GNITracker",
    "GNITraining",
    "NoisyLoss",
    "gradient_noise",
    "load_gni",
    "measure",
    "noisy_loss",
    "run_gni",
    "training_hooks",
]
