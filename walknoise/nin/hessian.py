"""The curvature that sets the NIN phase boundary: the top eigenvalue λ of the Hessian of the
loss with respect to a NIN layer's output.

**Which Hessian.** A dense NIN adds ``w·ε_b`` to sample ``b``'s pre-activation ``z_b`` (one
ε per sample, ``E ε² = σ_ε²``). The SGD gradient on the NIWs of the batch-mean loss is
``mean_b ε_b ∇ℓ_b(z_b + w ε_b) ≈ mean_b ε_b ∇ℓ_b(z_b) + mean_b ε_b² H_b w``, whose average
over ε is ``σ_ε² H w`` with

    H = mean_b ∂²ℓ_b / ∂z_b²,

the batch mean of each sample's Hessian of its own loss with respect to its own pre-activation
(width × width). To this order an SGD step maps ``w ↦ (1 − η σ_ε² H) w``: the NIWs decay along
every eigendirection while ``|1 − η σ_ε² λ| < 1`` and the boundary the papers draw is
``η σ_ε² λ = 2`` for the top eigenvalue λ. The same ``H`` is the Hessian of the batch-mean
loss with respect to one shift ``u`` added to every sample's output, ``∂²/∂u² mean_b
ℓ_b(z_b + u)``, which is what is computed here: a forward hook adds ``u`` (zero) to the layer's
output and Hessian-vector products come from double backward (``torch.autograd.grad`` with
``create_graph``). For a layer whose output has more than the batch dimension (a Linear layer
on sequences), ``u`` is shared by every position, as the NIN's ε is.

The loss is the clean one: the model in eval mode (NINs off, dropout off), on a fixed set of
training samples, so a series λ(t) changes only with the weights. For conv layers the NIN is
pixel-wise (one ε per position), whose curvature is the position-diagonal part of the
Hessian, not the common-shift one; it is not measured (NaN).

**How.** Power iteration with the Rayleigh quotient, warm-started from the previous
measurement's eigenvector. It converges to the eigenvalue of largest ``|λ|``; if that one is
negative (possible for smooth activations; ReLU networks have ``H = Jᵀ H_logits J ⪰ 0``), a
second power iteration on ``H − λ_dom I`` (spectrum ``≥ 0``, top ``λ_max − λ_dom``) finds the
largest algebraic eigenvalue, which is what the boundary uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from walknoise.nin.model import NINModel

__all__ = ["OutputCurvature", "output_hvp", "top_eigenvalue"]

LossFn = Callable[[Tensor, Tensor], Tensor]
Hvp = Callable[[Tensor], Tensor]


def output_hvp(
    model: nn.Module, layer: str, x: Tensor, y: Tensor, loss_fn: LossFn = F.cross_entropy
) -> tuple[Hvp, int]:
    """``(v ↦ H v, width)`` for the Hessian ``H`` of ``loss_fn(model(x), y)`` with respect to a
    shift of ``layer``'s output shared by all samples (see the module docstring). The model
    is evaluated as it is (call ``eval()`` first for the clean loss)."""
    module = dict(model.named_modules())[layer]
    width = _width(module)
    param = next(model.parameters())
    u = torch.zeros(width, dtype=param.dtype, device=param.device, requires_grad=True)

    def shift(_module: nn.Module, _inputs: object, output: Tensor) -> Tensor:
        return output + u  # broadcasts over the batch (and any positions) on the last dim

    handle = module.register_forward_hook(shift)
    try:
        loss = loss_fn(model(x), y)
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(loss, u, create_graph=True)

    def hvp(v: Tensor) -> Tensor:
        (hv,) = torch.autograd.grad(grad, u, grad_outputs=v.to(u), retain_graph=True)
        return hv

    return hvp, width


def _width(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.out_features
    raise TypeError(f"{type(module).__name__}: the output curvature is measured for Linear only")


def _power(hvp: Hvp, start: Tensor, iterations: int, tol: float) -> tuple[float, Tensor]:
    """Dominant eigenvalue (largest |λ|, by its Rayleigh quotient) and its unit eigenvector."""
    v = start / start.norm()
    rayleigh = float("nan")
    for _ in range(iterations):
        hv = hvp(v).to(v.dtype)  # the iteration runs in float64 whatever the model's dtype
        new = float(torch.dot(v, hv))
        size = hv.norm()
        if not (np.isfinite(new) and torch.isfinite(size)):
            return float("nan"), v
        if size == 0:
            return 0.0, v
        v = hv / size
        if abs(new - rayleigh) <= tol * abs(new):
            return new, v
        rayleigh = new
    return rayleigh, v


def top_eigenvalue(
    hvp: Hvp,
    dim: int,
    *,
    start: Tensor | None = None,
    iterations: int = 200,
    tol: float = 1e-5,
    seed: int = 0,
) -> tuple[float, Tensor]:
    """The largest (algebraic) eigenvalue of the symmetric operator ``hvp`` on ``R^dim``, and
    an eigenvector for a warm start next time.

    Stops when the Rayleigh quotient changes by at most ``tol`` (relative) in an iteration;
    its error then is about ``tol·r²/(1 − r²)`` for ``r`` the ratio of the two largest |λ|.
    """
    if start is None or not torch.isfinite(start).all() or start.norm() == 0:
        gen = torch.Generator().manual_seed(seed)
        start = torch.randn(dim, generator=gen, dtype=torch.float64)
    dominant, v = _power(hvp, start, iterations, tol)
    if not dominant < 0:  # NaN, 0 or positive: the dominant one is the top one
        return dominant, v
    top, v = _power(lambda w: hvp(w) - dominant * w, start, iterations, tol)
    return top + dominant, v


class OutputCurvature:
    """Measures λ of each NIN layer of a model along a run, warm-starting each layer's power
    iteration from its previous eigenvector. Conv layers give NaN (see the module docstring)."""

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str],
        x: Tensor,
        y: Tensor,
        loss_fn: LossFn = F.cross_entropy,
    ) -> None:
        self.model = model.model if isinstance(model, NINModel) else model
        modules = dict(self.model.named_modules())
        self.layers = [name for name in layers if isinstance(modules[name], nn.Linear)]
        self.names = list(layers)
        device = next(self.model.parameters()).device
        self.x, self.y = x.to(device), y.to(device)
        self.loss_fn = loss_fn
        self._vectors: dict[str, Tensor] = {}

    def __call__(self) -> np.ndarray:
        """λ per layer (in ``layers`` order) at the current weights; NaN for conv layers."""
        was = self.model.training
        self.model.eval()
        out = np.full(len(self.names), np.nan)
        try:
            for name in self.layers:
                hvp, width = output_hvp(self.model, name, self.x, self.y, self.loss_fn)
                value, vector = top_eigenvalue(hvp, width, start=self._vectors.get(name))
                self._vectors[name] = vector.detach()
                out[self.names.index(name)] = value
        finally:
            self.model.train(was)
        return out
