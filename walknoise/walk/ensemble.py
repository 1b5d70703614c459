"""Train the cells of one layer together: one vmapped ensemble instead of one model per cell.

The train-phase cells of one layer differ only in σ and seed. Their models are stacked
(``torch.func.stack_module_state``) and trained as one: each step is one ``vmap`` over
``functional_call``, one backward pass and one Adam step for every member. Adam, the cosine
schedule and weight clamping act element by element, so every member follows the arithmetic
of its one-by-one training; only the rounding inside batched kernels differs.

The randomness is the one-by-one path's, draw for draw: member (σ, seed) starts from
``fresh(template, seed)``, sees the data in the order of a generator seeded with ``seed``, and
draws its noise from the generator of ``cell_seed(seed, "train:<points>", 0)`` in the same
calls with the same shapes. Members that share a seed share those draws (their one-by-one
runs do too), so each seed's draws are made once and handed to all of its σ.

Models that keep state or draw their own randomness while training (BatchNorm running
statistics, Dropout) are trained one by one instead (``blocker`` says why).
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn import functional as F

from walknoise.noise.inject import cell_seed, make_generator
from walknoise.noise.kinds import Noise
from walknoise.noise.sites import tap
from walknoise.training import TrainConfig
from walknoise.walk.weights import param_layers

ELEMENT_BUDGET = 2**23  # activation elements of all members in one batch, per ensemble


def blocker(model: nn.Module) -> str | None:
    """Why ``model`` cannot be trained as a vmapped ensemble; ``None`` when it can."""
    if next(model.buffers(), None) is not None:
        return "it has buffers (e.g. BatchNorm running statistics), updated in training"
    if any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules()):
        return "Dropout draws its own random numbers"
    return None


@dataclass
class Draws:
    """Per forward pass: each member's σ and ε, handed to the hooks call by call."""

    sigma: Tensor | None = None
    eps: Sequence[Tensor] = ()
    calls: int = 0

    def next(self) -> tuple[Tensor, Tensor]:
        assert self.sigma is not None
        eps = self.eps[self.calls]
        self.calls += 1
        return self.sigma, eps


@dataclass
class Ensemble:
    """One layer's cells: ``members`` are (σ, seed) pairs trained together."""

    models: list[nn.Module]
    members: list[tuple[float, int]]
    points: list[str]
    scales: list[float]
    noise: Noise
    device: torch.device
    calls: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)
    """Noise draws of one forward pass, in order: (point index, per-sample shape)."""

    def hooks(self, base: nn.Module, draws: Draws) -> list[Any]:
        """Noise at each point of ``base``, from ``draws`` (inside vmap: one member's)."""

        def noisy(y: Tensor, scale: float) -> Tensor:
            sigma, eps = draws.next()
            sig = (sigma * scale).to(y.dtype)
            return self.noise.apply(y, sig, eps.to(y.dtype))

        handles = []
        for point, scale in zip(self.points, self.scales, strict=True):
            handles += tap(base, point, functools.partial(noisy, scale=scale))
        return handles

    def probe(self, x: Tensor) -> None:
        """Record the order and shapes of the noise draws of one forward pass."""
        handles = []
        for i, point in enumerate(self.points):

            def record(out: Tensor, i: int = i) -> None:
                self.calls.append((i, tuple(out.shape[1:])))

            handles += tap(self.models[0], point, record)
        try:
            with torch.no_grad():
                self.models[0].train()(x[:2].to(self.device))
        finally:
            for h in handles:
                h.remove()

    def draw(self, gens: dict[int, torch.Generator], batch: int) -> dict[int, list[Tensor]]:
        """Per seed, ε of every call: drawn once per seed, as the one-by-one runs do."""
        return {
            seed: [
                torch.randn(
                    (self.noise.draws, batch, *shape),
                    generator=gen,
                    device=self.device,
                    dtype=torch.float32,
                )
                for _, shape in self.calls
            ]
            for seed, gen in gens.items()
        }


def train_ensemble(
    models: list[nn.Module],
    members: list[tuple[float, int]],
    x: Tensor,
    y: Tensor,
    *,
    noise: Noise,
    points: Sequence[str],
    scales: Sequence[float],
    config: TrainConfig,
    clamp: float | None = None,
    device: torch.device | str = "cpu",
) -> list[nn.Module]:
    """Train ``models`` (fresh, one per member (σ, seed)) in place as one ensemble."""
    dev = torch.device(device)
    ens = Ensemble(
        [m.to(dev) for m in models], list(members), list(points), list(scales), noise, dev
    )
    ens.probe(x)
    for model in ens.models:
        model.train()
    params, buffers = stack_module_state(ens.models)
    base = copy.deepcopy(ens.models[0])
    draws = Draws()
    handles = ens.hooks(base, draws)
    try:
        _loop(ens, base, draws, params, buffers, x, y, config, clamp)
    finally:
        for h in handles:
            h.remove()
    for i, model in enumerate(ens.models):
        model.load_state_dict({k: v[i].detach() for k, v in params.items()}, strict=False)
        model.eval()
    return ens.models


def _loop(
    ens: Ensemble,
    base: nn.Module,
    draws: Draws,
    params: dict[str, Tensor],
    buffers: dict[str, Tensor],
    x: Tensor,
    y: Tensor,
    config: TrainConfig,
    clamp: float | None,
) -> None:
    """``training.train_model``'s loop, every member at once."""
    seeds = sorted({seed for _, seed in ens.members})
    order_gens = {s: torch.Generator().manual_seed(s) for s in seeds}  # as TrainConfig.seed
    layers = ",".join(ens.points)
    noise_gens = {s: make_generator(cell_seed(s, "train:" + layers, 0), ens.device) for s in seeds}
    sigma = torch.tensor([s for s, _ in ens.members], dtype=torch.float32, device=ens.device)
    opt = torch.optim.Adam(params.values(), lr=config.lr, weight_decay=config.weight_decay)
    total = -(-len(x) // config.batch_size) * config.epochs
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        if config.schedule == "cosine"
        else None
    )
    clamped = [params[f"{n}.weight"] for n in param_layers(base)] if clamp is not None else []
    # One seed: every member sees the same batch and ε, passed once (unbatched), which
    # also turns the first layer's convolution into one wide one instead of a grouped one.
    shared = len(seeds) == 1
    step = _step_fn(base, draws, shared, len(ens.calls))
    base.train()
    for _ in range(config.epochs):
        orders = {s: torch.randperm(len(x), generator=g) for s, g in order_gens.items()}
        for start in range(0, len(x), config.batch_size):
            idx = {s: o[start : start + config.batch_size] for s, o in orders.items()}
            per_seed = ens.draw(noise_gens, len(idx[seeds[0]]))
            if shared:
                xb, yb, eps = x[idx[seeds[0]]], y[idx[seeds[0]]], per_seed[seeds[0]]
            else:
                xb = torch.stack([x[idx[s]] for _, s in ens.members])
                yb = torch.stack([y[idx[s]] for _, s in ens.members])
                eps = [
                    torch.stack([per_seed[s][k] for _, s in ens.members])
                    for k in range(len(ens.calls))
                ]
            xb, yb = xb.to(ens.device), yb.to(ens.device, torch.long)
            loss = step(params, buffers, xb, yb, sigma, eps)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            if sched is not None:
                sched.step()
            with torch.no_grad():
                for w in clamped:
                    w.clamp_(-clamp, clamp)  # type: ignore[operator]


def _step_fn(base: nn.Module, draws: Draws, shared: bool, calls: int) -> Callable[..., Tensor]:
    """Summed loss of all members: each member's gradient is that of its own mean loss.
    ``shared``: data and ε are the same for every member (one tensor, not a stack)."""

    def member_loss(
        p: dict[str, Tensor],
        b: dict[str, Tensor],
        xb: Tensor,
        yb: Tensor,
        sigma: Tensor,
        *eps: Tensor,
    ) -> Tensor:
        draws.sigma, draws.eps, draws.calls = sigma, eps, 0
        logits = functional_call(base, (p, b), (xb,))
        return F.cross_entropy(logits, yb)

    data_dim = None if shared else 0
    batched = vmap(member_loss, in_dims=(0, 0, data_dim, data_dim, 0, *[data_dim] * calls))

    def step(
        p: dict[str, Tensor],
        b: dict[str, Tensor],
        xb: Tensor,
        yb: Tensor,
        sigma: Tensor,
        eps: list[Tensor],
    ) -> Tensor:
        return batched(p, b, xb, yb, sigma, *eps).sum()

    return step


def group_size(widest: int, batch: int) -> int:
    """Members per ensemble: all of a layer's cells, within the activation budget."""
    return max(1, ELEMENT_BUDGET // max(1, widest * batch))


def widest_activation(model: nn.Module, x: Tensor) -> int:
    """The largest per-sample output of any module (what bounds an ensemble's memory)."""
    sizes = [1]
    handles = [
        m.register_forward_hook(
            lambda _m, _i, out: (
                sizes.append(math.prod(out.shape[1:])) if isinstance(out, Tensor) else None
            )
        )
        for m in model.modules()
    ]
    try:
        with torch.no_grad():
            model(x[:2])
    finally:
        for h in handles:
            h.remove()
    return max(sizes)
