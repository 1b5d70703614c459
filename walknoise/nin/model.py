"""Noise Injection Nodes (NINs): pure noise fed into a layer through trainable weights.

A NIN (Levi, Bloch, Freytsis, Volansky, arXiv 2210.13599 and 2210.15764) is one extra input
node carrying ε ~ N(0, σ_ε²) into a Linear or Conv layer through its own weights, the noise
injection weights (NIWs) ``w``: the layer's output (the pre-activation) becomes ``z + w·ε``.
ε is one scalar per sample for a dense layer and one value per spatial position for a conv
layer (the pixel-wise cNINR variant), redrawn on every forward pass; ``w`` has one entry per
output unit/channel and is trained by the model's unchanged optimiser.

:func:`attach_nins` wraps a model in a :class:`NINModel`, whose ``parameters()`` are the
model's own plus the NIWs. NINs act while the layer is in training mode and are off in
eval mode (then the output is exactly the bare model's) unless ``noise_at_eval`` is set.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from walknoise.errors import WalknoiseError

__all__ = ["WHERE", "NINModel", "NoiseInjectionNode", "attach_nins", "nin_targets"]

WHERE = ("input", "all")
"""``input``: the first Linear/Conv only (in-NINR); ``all``: every Linear/Conv (full-NINR)."""

_TARGET_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.modules.conv._ConvNd)


def _node_seed(seed: int, layer: str) -> int:
    """Stable per-(seed, layer) seed, so each NIN has its own reproducible stream."""
    digest = hashlib.sha256(f"walknoise-nin:{seed}:{layer}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def _width_and_fan_in(module: nn.Module) -> tuple[int, int, bool]:
    """(output units or channels, fan-in, is-conv) of a Linear or Conv layer."""
    if isinstance(module, nn.Linear):
        return module.out_features, module.in_features, False
    if isinstance(module, nn.modules.conv._ConvNd):
        fan_in = module.in_channels // module.groups * math.prod(module.kernel_size)
        return module.out_channels, fan_in, True
    raise TypeError(type(module).__name__)  # callers check the type first


class NoiseInjectionNode(nn.Module):
    """One NIN: ``w·ε`` added to the output of the layer it is hooked on."""

    def __init__(
        self,
        layer: str,
        width: int,
        *,
        conv: bool,
        sigma_eps: float,
        init_bound: float,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not (math.isfinite(sigma_eps) and sigma_eps >= 0):
            raise WalknoiseError(f"σ_ε is {sigma_eps}; use a finite value >= 0 such as 1.0")
        if not (math.isfinite(init_bound) and init_bound >= 0):
            raise WalknoiseError(f"NIW init scale is {init_bound}; use a finite value >= 0")
        self.layer = layer
        self.conv = conv
        self.sigma_eps = float(sigma_eps)
        self.noise_at_eval = False
        self._seed = _node_seed(seed, layer)
        # Uniform like the layer's own weights: the NIN is one more input node of the layer.
        init = torch.Generator().manual_seed(self._seed ^ 1)
        start = (torch.rand(width, generator=init) * 2 - 1) * init_bound
        self.weight = nn.Parameter(start)
        self._generators: dict[torch.device, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        gen = self._generators.get(device)
        if gen is None:
            gen = torch.Generator(device=device).manual_seed(self._seed)
            self._generators[device] = gen
        return gen

    def reseed(self, seed: int) -> None:
        """Restart the ε stream from ``seed`` (the NIWs are left as they are)."""
        self._seed = _node_seed(seed, self.layer)
        self._generators.clear()

    def draw(self, like: Tensor) -> Tensor:
        """ε shaped to broadcast over ``like``: one value per sample (and pixel, for conv)."""
        if self.conv:
            shape = (like.shape[0], 1, *like.shape[2:])
        else:
            shape = (like.shape[0], *([1] * (like.dim() - 1)))
        eps = torch.randn(shape, generator=self._generator(like.device), device=like.device)
        return (eps * self.sigma_eps).to(like.dtype)

    def injected(self, like: Tensor) -> Tensor:
        """``w·ε`` for an output like ``like`` (a fresh ε)."""
        w = self.weight.to(like.dtype)
        if self.conv:
            w = w.reshape(1, -1, *([1] * (like.dim() - 2)))
        return w * self.draw(like)

    def hook(self, module: nn.Module, _inputs: object, output: object) -> Tensor | None:
        if not (module.training or self.noise_at_eval):
            return None  # off: the layer's output is returned untouched
        if not isinstance(output, Tensor):
            raise WalknoiseError(f"layer {self.layer!r} does not return one tensor; no NIN there")
        return output + self.injected(output)

    def extra_repr(self) -> str:
        return f"layer={self.layer!r}, width={self.weight.numel()}, sigma_eps={self.sigma_eps:g}"


class NINModel(nn.Module):
    """``model`` with NINs hooked on some of its layers; ``forward`` is the model's."""

    def __init__(self, model: nn.Module, nodes: Sequence[NoiseInjectionNode]) -> None:
        super().__init__()
        self.model = model
        self.nodes = nn.ModuleList(nodes)
        modules = dict(model.named_modules())
        self._handles: list[RemovableHandle] = [
            modules[node.layer].register_forward_hook(node.hook) for node in nodes
        ]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    @property
    def names(self) -> list[str]:
        """The layers carrying a NIN, in attachment order."""
        return [node.layer for node in self._nodes()]

    def _nodes(self) -> list[NoiseInjectionNode]:
        return [n for n in self.nodes if isinstance(n, NoiseInjectionNode)]

    def niw_norms(self) -> Tensor:
        """L2 norm of each NIN's weights, shape ``(number of NINs,)``."""
        with torch.no_grad():
            return torch.stack([node.weight.detach().norm() for node in self._nodes()])

    def niw_parameters(self) -> list[nn.Parameter]:
        return [node.weight for node in self._nodes()]

    def reseed(self, seed: int) -> None:
        for node in self._nodes():
            node.reseed(seed)

    @contextmanager
    def noise_on(self) -> Iterator[NINModel]:
        """Keep the NINs active in eval mode while the block runs."""
        before = [node.noise_at_eval for node in self._nodes()]
        for node in self._nodes():
            node.noise_at_eval = True
        try:
            yield self
        finally:
            for node, was in zip(self._nodes(), before, strict=True):
                node.noise_at_eval = was

    def remove(self) -> nn.Module:
        """Take the NINs off for good and return the bare model (its trained weights)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        return self.model


def nin_targets(model: nn.Module, where: str | Sequence[str]) -> list[str]:
    """The layer names ``where`` picks: ``"input"``, ``"all"`` or explicit names.

    "The input layer" is the first Linear/Conv in ``named_modules()`` order, which is the
    forward order for ``nn.Sequential`` models such as the zoo's.
    """
    modules = dict(model.named_modules())
    eligible = [name for name, m in modules.items() if name and isinstance(m, _TARGET_TYPES)]
    if not eligible:
        raise WalknoiseError("the model has no Linear or Conv layer to attach a NIN to")
    if isinstance(where, str) and where in WHERE:
        return eligible[:1] if where == "input" else eligible
    names = [where] if isinstance(where, str) else list(where)
    for name in names:
        if name not in eligible:
            why = "is not a Linear/Conv layer" if name in modules and name else "does not exist"
            raise WalknoiseError(
                f"layer {name!r} {why}; attach NINs with 'input', 'all' or Linear/Conv names "
                f"such as {', '.join(eligible[:5])}"
            )
    if len(set(names)) != len(names) or not names:
        raise WalknoiseError("name each NIN layer once (and at least one); e.g. fc1,fc2")
    return names


def attach_nins(
    model: nn.Module,
    where: str | Sequence[str] = "input",
    *,
    sigma_eps: float = 1.0,
    init_scale: float | None = None,
    seed: int = 0,
) -> NINModel:
    """Hook a NIN on each layer ``where`` names; returns the wrapping :class:`NINModel`.

    ``init_scale`` is the bound ``a`` of the NIWs' initial ``U(-a, a)``; by default the
    layer's own ``1/sqrt(fan_in)``, as if the NIN were one more input of the layer. ``seed``
    fixes the NIWs' initial values and the ε streams.
    """
    if isinstance(model, NINModel):
        raise WalknoiseError("the model already carries NINs; call .remove() first")
    modules = dict(model.named_modules())
    nodes = []
    for name in nin_targets(model, where):
        width, fan_in, conv = _width_and_fan_in(modules[name])
        bound = 1.0 / math.sqrt(fan_in) if init_scale is None else float(init_scale)
        nodes.append(
            NoiseInjectionNode(
                name, width, conv=conv, sigma_eps=sigma_eps, init_bound=bound, seed=seed
            )
        )
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return NINModel(model, nodes).to(device)
