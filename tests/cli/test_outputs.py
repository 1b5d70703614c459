"""A GRU/LSTM classifier returning a tuple, a tiny ViT with nn.MultiheadAttention and a reused
GELU, and a model returning a dict: each scanned from the command line at every point that
``walknoise layers`` lists, every cell recomputed by a hand-written hook loop."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from torch import nn

import walknoise
from tests.cli.conftest import assert_user_error, invoke
from walknoise.noise.inject import batch_seed

MODELS = """
import torch
from torch import nn


def spread(head):
    # larger output weights: a fresh net predicts one class for almost every input, and
    # labels of one class would hide what the noise does
    with torch.no_grad():
        head.weight.mul_(20)
        head.bias.zero_()


class GRUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(4, 8, batch_first=True)
        self.lstm = nn.LSTM(4, 8, batch_first=True)
        self.act = nn.ReLU()
        self.head = nn.Linear(8, 3)
        spread(self.head)

    def forward(self, x):
        out, h = self.gru(x)
        side, _ = self.lstm(x)
        return self.head(self.act(out[:, -1] + side[:, -1])), h


class ViT(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(1, 16, 4, stride=4)
        self.pos = nn.Parameter(torch.randn(1, 4, 16) * 0.1)
        self.norm1 = nn.LayerNorm(16)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.norm2 = nn.LayerNorm(16)
        self.fc1 = nn.Linear(16, 32)
        self.act = nn.GELU()  # called twice: in the MLP block and on the pooled token
        self.fc2 = nn.Linear(32, 16)
        self.head = nn.Linear(16, 3)
        spread(self.head)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        n = self.norm1(t)
        t = t + self.attn(n, n, n)[0]
        t = t + self.fc2(self.act(self.fc1(self.norm2(t))))
        return self.head(self.act(t.mean(1)))


class DictNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16, 32)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(32, 3)
        spread(self.fc2)

    def forward(self, x):
        h = self.act(self.fc1(self.flatten(x)))
        return {"features": h, "logits": self.fc2(h)}
"""

# name: (factory, sample shape, --output-key, how the test reads the logits)
CASES = {
    "gru": ("GRUNet", (6, 4), "0", lambda out: out[0]),
    "vit": ("ViT", (1, 8, 8), None, lambda out: out),
    "dict": ("DictNet", (1, 4, 4), "logits", lambda out: out["logits"]),
}
N, BATCH, SIGMAS, REPEATS = 50, 20, (0.3, 1.0, 3.0), 2


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("outputs")


@pytest.fixture(scope="module")
def models(workdir: Path) -> ModuleType:
    (workdir / "e2e_models.py").write_text(MODELS)
    spec = importlib.util.spec_from_file_location("e2e_models", workdir / "e2e_models.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["e2e_models"] = module  # the one the CLI's --arch imports too
    spec.loader.exec_module(module)
    return module


def _prepare(name: str, models: ModuleType, workdir: Path) -> tuple[nn.Module, torch.Tensor]:
    """The model's state dict and a .npz test set labelled by the clean model (accuracy 1)."""
    factory, shape, _key, logits_of = CASES[name]
    torch.manual_seed(0)
    model = getattr(models, factory)().eval()
    torch.save(model.state_dict(), workdir / f"{name}.pt")
    x = torch.randn(N, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = logits_of(model(x)).argmax(-1)
    np.savez(workdir / f"{name}.npz", x=x.numpy(), y=y.numpy())
    return model, x


def _listed(name: str, workdir: Path) -> tuple[list[str], str]:
    args = ("layers", f"{name}.pt", "--arch", f"e2e_models:{CASES[name][0]}")
    result = invoke(*args, "--data", f"{name}.npz")
    assert result.exit_code == 0, result.output
    table = result.output.split("\n\n")[0].splitlines()[1:]
    return [row.split()[0] for row in table], result.output


class HandNoise:
    """A plain forward hook: σ·ε on the ``call``-th output of a module (a tuple's first
    element), ε drawn on the first σ of a batch and reused for the others."""

    def __init__(self, gen: torch.Generator, call: int) -> None:
        self.gen, self.call, self.eps, self.seen, self.sigma = gen, call, None, 0, 0.0

    def noisy(self, t: torch.Tensor) -> torch.Tensor:
        if self.eps is None:
            self.eps = torch.randn((1, *t.shape), generator=self.gen)[0]
        return t + self.sigma * self.eps

    def hook(self, _m: nn.Module, _i: object, out: object) -> object:
        self.seen += 1
        if self.seen != self.call:
            return None
        if isinstance(out, tuple):
            return (self.noisy(out[0]), *out[1:])
        assert isinstance(out, torch.Tensor)
        return self.noisy(out)

    def pre_hook(self, _m: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
        return (self.noisy(args[0]),)


def by_hand(
    model: nn.Module, name: str, x: torch.Tensor, y: torch.Tensor, point: str
) -> np.ndarray:
    """Accuracy (σ, repeat) at ``point``, by plain hooks and the cell's seed (one forward pass
    per σ and batch)."""
    logits_of = CASES[name][3]
    module_name, _, call = point.partition("#")
    acc = np.zeros((len(SIGMAS), REPEATS))
    for r in range(REPEATS):
        hand = HandNoise(torch.Generator(), int(call or 1))
        handle = (
            model.register_forward_pre_hook(hand.pre_hook)
            if point == "<input>"
            else dict(model.named_modules())[module_name].register_forward_hook(hand.hook)
        )
        for start in range(0, N, BATCH):
            xb, yb = x[start : start + BATCH], y[start : start + BATCH]
            hand.eps = None  # a new batch: a draw from its own generator
            hand.gen.manual_seed(batch_seed(0, point, r, start // BATCH))
            for i, sigma in enumerate(SIGMAS):
                hand.sigma, hand.seen = sigma, 0
                with torch.no_grad():
                    pred = logits_of(model(xb)).argmax(-1)
                acc[i, r] += int((pred == yb).sum())
        handle.remove()
    return acc / N


@pytest.mark.parametrize("name", list(CASES))
def test_scan_every_listed_point_matches_a_hand_written_hook_loop(
    name: str, models: ModuleType, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workdir)
    model, x = _prepare(name, models, workdir)
    points, listing = _listed(name, workdir)
    expected_points = {
        "gru": ["<input>", "gru", "lstm", "act", "head"],
        "vit": ["<input>", "patch", "norm1", "attn", "norm2", "fc1", "act", "fc2", "act#2", "head"],
        "dict": ["<input>", "flatten", "fc1", "act", "fc2"],
    }[name]
    assert points == expected_points
    if name == "vit":
        assert "attn.out_proj (NonDynamicallyQuantizableLinear) is never called" in listing
    key = CASES[name][2]
    args = ["scan", f"{name}.pt", "--arch", f"e2e_models:{CASES[name][0]}"]
    args += ["--data", f"{name}.npz", "--layers", ",".join(points), "--no-global"]
    args += ["--sigmas", ",".join(map(str, SIGMAS)), "--repeats", str(REPEATS)]
    args += ["--batch-size", str(BATCH), "-o", f"{name}.h5", "--quiet"]
    result = invoke(*args, *(["--output-key", key] if key else []))
    assert result.exit_code == 0, result.output
    res = walknoise.load(workdir / f"{name}.h5")
    assert res.layers == points and res.clean_accuracy == 1.0
    y = torch.as_tensor(np.load(workdir / f"{name}.npz")["y"])
    for point in points:
        hand = by_hand(model, name, x, y, point)
        scanned = res.accuracy.sel(layer=point).values
        # The scan stacks the σ copies into one batch (and runs the ViT channels-last); the
        # loop runs one σ at a time. Kernels may round differently with the batch size, which
        # can flip an argmax at a near tie: at most one sample of N per cell.
        assert np.abs(scanned - hand).max() <= 1 / N + 1e-12, (point, scanned, hand)
        assert scanned.min() < 1.0, point  # the noise reached the output at every point


def test_a_dict_output_without_output_key_is_one_line(
    models: ModuleType, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workdir)
    _prepare("dict", models, workdir)
    args = ["scan", "dict.pt", "--arch", "e2e_models:DictNet", "--data", "dict.npz", "--quiet"]
    assert_user_error(
        invoke(*args, "--sigmas", "1", "-o", "x.h5"),
        "error: --output-key: the model returns a dict with keys ('features': Tensor (2, 32), "
        "'logits': Tensor (2, 3)), not a tensor of logits; say where the logits are with "
        "output_key (e.g. --output-key 'logits') or pass a callable that returns them",
    )
    assert_user_error(
        invoke(*args, "--sigmas", "1", "-o", "x.h5", "--output-key", "logit"),
        "error: --output-key: output_key='logit' is not in the model's output",
    )


def test_asking_for_a_module_that_cannot_take_noise_says_why(
    models: ModuleType, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workdir)
    _prepare("vit", models, workdir)
    args = ["scan", "vit.pt", "--arch", "e2e_models:ViT", "--data", "vit.npz", "--quiet"]
    assert_user_error(
        invoke(*args, "--sigmas", "1", "-o", "v.h5", "--layers", "attn.out_proj"),
        "error: --layers: layer pattern 'attn.out_proj' matches no injection point: "
        "attn.out_proj (NonDynamicallyQuantizableLinear) is never called in the forward pass",
    )
