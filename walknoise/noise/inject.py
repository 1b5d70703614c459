"""Forward hooks that inject noise, as context managers that always remove them.

Two uses share one hook:

* ``inject(model, layer, noise, sigma)`` — the notebook API: fresh ε on every forward pass.
* the scan engine — a *stack* of σ values in one forward pass. The hook at the noisy point
  receives a clean batch of ``B`` samples and fans it out to ``S·B`` (one copy per σ), so the
  layers before it run once; every copy is scaled from the same ε (common random numbers),
  which is cached per batch so that splitting σ into chunks does not change a single number.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from walknoise.errors import WalknoiseError
from walknoise.noise.kinds import Noise, make_noise
from walknoise.noise.sites import tap
from walknoise.types import NoiseKind


def cell_seed(seed: int, layer: str, repeat: int) -> int:
    """The generator seed of one (layer, repeat): stable across runs, machines and Python."""
    digest = hashlib.sha256(f"walknoise:{seed}:{layer}:{repeat}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


NOISE_STREAM = "batch-seeded"
"""How ε is drawn, recorded in each results file's identity: files whose noise came from one
generator per (layer, repeat) for all batches (files written before it) are not resumed."""


def batch_seed(seed: int, layer: str, repeat: int, batch: int) -> int:
    """The generator seed of one (layer, repeat, batch): ε of a batch never depends on which
    batches or cells were computed before it, so a scan may run them in any order, stream the
    data once for all cells, or resume in the middle of a pass."""
    digest = hashlib.sha256(f"walknoise:{seed}:{layer}:{repeat}:{batch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


@dataclass
class Fanout:
    """Per-forward state shared by the hooks of one scan cell group."""

    sigmas: torch.Tensor
    """The σ values of this forward pass, one per stacked copy (already scaled)."""
    batch: int = 0
    """Number of clean samples ``B`` in the current forward pass."""
    full: int = 0
    """Samples of the whole batch ε is drawn for (0: the pass's own ``batch``)."""
    offset: int = 0
    """Where the current pass's samples start within the whole batch."""
    cache_eps: bool = True
    """Reuse each hook call's ε for later σ chunks of the same batch (scan engine)."""
    gens: Sequence[torch.Generator] | None = None
    """One generator per group of copies (a repeat: its σ copies are one group): each group
    draws its own ε, the draws it would make alone; the hooks' own generator is unused."""
    _eps: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)
    _calls: dict[int, int] = field(default_factory=dict)

    @property
    def copies(self) -> int:
        return int(self.sigmas.numel())

    @property
    def groups(self) -> int:
        """Copies are ``groups × (copies / groups)``, group-major: one group per generator
        (a repeat, whose σ copies share its ε), or one group for the hooks' own generator."""
        return len(self.gens) if self.gens is not None else 1

    def lead(self) -> tuple[int, int]:
        """The copy axis as (groups, σ per group)."""
        return self.groups, self.copies // self.groups

    def grouped(self, eps: torch.Tensor) -> torch.Tensor:
        """``eps`` from :meth:`eps` shaped to broadcast over ``(*lead(), batch, ...)``."""
        return eps.unsqueeze(2) if self.gens is not None else eps

    def new_batch(self, batch: int) -> None:
        """Start a new batch: forget cached ε (the next draws continue each generator)."""
        self.batch = self.full = batch
        self.offset = 0
        self._eps.clear()
        self._calls.clear()

    def window(self, offset: int, size: int) -> None:
        """Next sub-batch of the same batch: its samples' slice of the ε drawn for the whole
        batch, so splitting a batch changes no number."""
        self.offset, self.batch = offset, size
        self._calls.clear()

    def new_chunk(self, sigmas: torch.Tensor) -> None:
        """Next σ chunk of the same batch: replay the cached ε in the same call order."""
        self.sigmas = sigmas
        self._calls.clear()

    def replay(self) -> None:
        """The same pass again: the cached ε in the same call order."""
        self._calls.clear()

    def new_copies(self, sigmas: torch.Tensor, gens: Sequence[torch.Generator]) -> None:
        """Next chunk of per-copy generators: fresh draws from each (nothing to replay)."""
        self.sigmas, self.gens = sigmas, gens
        self._calls.clear()
        self._eps.clear()

    def eps(
        self, hook_id: int, gen: torch.Generator | None, noise: Noise, like: torch.Tensor
    ) -> torch.Tensor:
        call = self._calls.get(hook_id, 0)
        self._calls[hook_id] = call + 1
        key = (hook_id, call)
        if self.cache_eps and key in self._eps:
            return self._part(self._eps[key])
        shape = (noise.draws, self.full or self.batch, *like.shape[1:])
        if self.gens is None:
            draw = torch.randn(shape, generator=gen, device=like.device, dtype=torch.float32)
        else:  # (draws, groups, batch, ...): see ``grouped``
            draws = [
                torch.randn(shape, generator=g, device=like.device, dtype=torch.float32)
                for g in self.gens
            ]
            draw = torch.stack(draws, dim=1)
        if self.cache_eps:
            self._eps[key] = draw
        return self._part(draw)

    def _part(self, draw: torch.Tensor) -> torch.Tensor:
        """The current window's samples of a whole-batch draw."""
        if not self.full or (self.offset == 0 and self.batch == self.full):
            return draw
        return draw.narrow(1 if self.gens is None else 2, self.offset, self.batch)


class NoiseHook:
    """Adds noise to one point's output; knows how to fan a clean batch out to σ copies."""

    def __init__(
        self, fanout: Fanout, noise: Noise, gen: torch.Generator | None, scale: float = 1.0
    ) -> None:
        self.fanout = fanout
        self.noise = noise
        self.gen = gen
        self.scale = scale

    def perturb(self, y: torch.Tensor) -> torch.Tensor:
        fo = self.fanout
        if fo.batch == 0 or not fo.cache_eps:
            fo.batch = y.shape[0]  # plain `inject` use: every call is its own batch
        n, copies, batch = y.shape[0], fo.copies, fo.batch
        if n not in (batch, copies * batch):
            raise WalknoiseError(
                f"an injection point got a tensor with leading size {n}, expected the batch "
                f"size {batch}; walknoise needs the batch as the first dimension"
            )
        # (groups, σ per group, batch, ...): a group's σ copies share its ε
        eps = fo.grouped(fo.eps(id(self), self.gen, self.noise, y))
        lead, rest = fo.lead(), y.shape[1:]
        base = y.reshape(1, 1, batch, *rest) if n == batch else y.reshape(*lead, batch, *rest)
        sig = (fo.sigmas * self.scale).reshape(*lead, *([1] * y.dim()))
        work = base.float() if base.dtype in (torch.float16, torch.bfloat16) else base
        out = self.noise.apply(work, sig.to(work.device, work.dtype), eps.to(work.dtype))
        return out.to(y.dtype).reshape(copies * batch, *y.shape[1:])


def attach(model: nn.Module, layer: str, hook: NoiseHook) -> list[RemovableHandle]:
    """Register ``hook`` at ``layer`` (a point name: ``fc1``, ``act#2`` or ``<input>``)."""
    return tap(model, layer, hook.perturb)


@contextmanager
def hooks(
    model: nn.Module,
    layers: Sequence[str],
    fanout: Fanout,
    noise: Noise,
    gens: Sequence[torch.Generator | None],
    scales: Sequence[float],
) -> Iterator[None]:
    """Attach one hook per layer for the duration of the block; removed even on error."""
    handles: list[RemovableHandle] = []
    try:
        for layer, gen, scale in zip(layers, gens, scales, strict=True):
            handles += attach(model, layer, NoiseHook(fanout, noise, gen, scale))
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def inject(
    model: nn.Module,
    layer: str | Sequence[str],
    noise: Noise | NoiseKind = "additive",
    sigma: float = 0.1,
    *,
    generator: torch.Generator | None = None,
) -> Iterator[nn.Module]:
    """Inject Gaussian noise at ``layer`` (or several layers) while the block runs.

    ε is drawn independently per element and per forward pass, from ``generator`` when given.

    >>> with walknoise.noise.inject(model, "conv1", "multiplicative", sigma=0.2):
    ...     noisy_logits = model(x)
    """
    layers = [layer] if isinstance(layer, str) else list(layer)
    fanout = Fanout(sigmas=torch.tensor([float(sigma)]), cache_eps=False)
    with hooks(
        model, layers, fanout, make_noise(noise), [generator] * len(layers), [1.0] * len(layers)
    ):
        yield model
