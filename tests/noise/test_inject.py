"""Hooks: noise lands where asked, is drawn fresh per pass, and always goes away."""

import pytest
import torch

import walknoise
from tests.conftest import tiny_mlp
from walknoise.errors import WalknoiseError


def hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_noise_only_at_named_layer() -> None:
    model = tiny_mlp().eval()
    x = torch.randn(8, 1, 4, 4)
    seen: dict[str, torch.Tensor] = {}
    model.fc1.register_forward_hook(lambda m, i, o: seen.__setitem__("fc1", o))
    clean_fc1 = model.fc1(x.flatten(1))
    with walknoise.noise.inject(model, "act1", "additive", sigma=1.0):
        model(x)
    assert torch.equal(seen["fc1"], clean_fc1)  # before the point: untouched


def test_additive_std_at_layer_output() -> None:
    model = tiny_mlp().eval()
    x = torch.randn(4000, 1, 4, 4)
    clean = model(x)
    gen = torch.Generator().manual_seed(0)
    with walknoise.noise.inject(model, "fc2", "additive", sigma=0.5, generator=gen):
        noisy = model(x)
    assert (noisy - clean).std().item() == pytest.approx(0.5, rel=0.02)
    assert (noisy - clean).mean().item() == pytest.approx(0.0, abs=0.01)


def test_fresh_noise_every_forward() -> None:
    model = tiny_mlp().eval()
    x = torch.randn(5, 1, 4, 4)
    with walknoise.noise.inject(model, "<input>", "multiplicative", sigma=0.3):
        a, b = model(x), model(x)
    assert not torch.equal(a, b)


def test_hooks_removed_after_exit_and_after_error() -> None:
    model = tiny_mlp()
    before = hook_count(model)
    with walknoise.noise.inject(model, ["<input>", "fc1", "act1"], "combined", sigma=0.1):
        assert hook_count(model) == before + 3
    assert hook_count(model) == before
    with pytest.raises(ValueError), walknoise.noise.inject(model, "fc1", sigma=0.1):
        raise ValueError("user code failed")
    assert hook_count(model) == before


def test_unknown_layer_is_a_clear_error_and_leaves_no_hook() -> None:
    model = tiny_mlp()
    with (
        pytest.raises(WalknoiseError, match="no layer named 'fc9'"),
        walknoise.noise.inject(model, ["fc1", "fc9"], sigma=0.1),
    ):
        pass
    assert hook_count(model) == 0
