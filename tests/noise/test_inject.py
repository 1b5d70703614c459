"""Hooks: noise lands where asked, is drawn fresh per pass, and always goes away."""

import pytest
import torch
from torch import nn

import walknoise
from tests.conftest import tiny_mlp
from tests.noise.test_points import Reused
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
        assert hook_count(model) > before
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


def test_noise_at_one_call_of_a_reused_module_only() -> None:
    model = Reused().eval()
    x = torch.randn(6, 1, 4, 4)
    gen = torch.Generator().manual_seed(3)
    with walknoise.noise.inject(model, "act#2", sigma=0.5, generator=gen):
        noisy = model(x)
    eps = torch.randn((1, 6, 8), generator=torch.Generator().manual_seed(3))[0]
    with torch.no_grad():  # the same net by hand: noise after the second ReLU only
        h = model.act(model.fc1(x.flatten(1)))
        expected = model.head(model.act(model.fc2(h)) + 0.5 * eps)
    assert torch.equal(noisy, expected)


def test_call_count_restarts_with_every_forward_pass() -> None:
    model = Reused().eval()
    x = torch.randn(6, 1, 4, 4)
    seen: list[torch.Tensor] = []
    model.fc2.register_forward_pre_hook(lambda _m, a: seen.append(a[0]))
    with torch.no_grad():
        clean_first = torch.relu(model.fc1(x.flatten(1)))
        with walknoise.noise.inject(model, "act", sigma=0.5):
            model(x)
            model(x)  # a second pass: noise again at the first call, not the second
        clean = model(x)
        with walknoise.noise.inject(model, "act#2", sigma=0.5):
            outs = [model(x), model(x)]
    assert [torch.equal(s, clean_first) for s in seen] == [False, False, True, True, True]
    assert not torch.equal(outs[0], clean) and not torch.equal(outs[1], clean)


def test_noise_on_the_first_element_of_a_tuple_output() -> None:
    gru = nn.GRU(4, 8, batch_first=True).eval()
    model = nn.Sequential()
    model.add_module("gru", gru)
    x = torch.randn(3, 5, 4)
    clean_out, clean_h = gru(x)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad(), walknoise.noise.inject(model, "gru", sigma=2.0, generator=gen):
        out, h = model(x)
    eps = torch.randn((1, 3, 5, 8), generator=torch.Generator().manual_seed(1))[0]
    assert torch.allclose(out, clean_out + 2.0 * eps) and torch.equal(h, clean_h)


def test_noise_where_a_module_returns_no_tensor_is_a_clear_error() -> None:
    class Pair(nn.Module):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"y": x}

    model = nn.Sequential()
    model.add_module("pair", Pair())
    with (
        pytest.raises(WalknoiseError, match="pair returns a dict, not a tensor"),
        walknoise.noise.inject(model, "pair", sigma=1.0),
    ):
        model(torch.randn(2, 3))


def test_batch_seed_is_the_documented_hash() -> None:
    """A results file resumes only with the same noise stream (``noise_stream:
    batch-seeded``): the seed of (seed, layer, repeat, batch) is pinned to the first 8 bytes
    of the SHA-256 of ``walknoise:seed:layer:repeat:batch``, little-endian, 63 bits. Any
    other hash gives statistically equal noise, so only this test notices a change."""
    import hashlib
    import struct

    from walknoise.noise.inject import batch_seed

    for args in [(0, "fc1", 0, 0), (7, "s2b0.conv1", 3, 12), (1, "<input>", 1, 1)]:
        text = "walknoise:{}:{}:{}:{}".format(*args).encode()
        (want,) = struct.unpack("<Q", hashlib.sha256(text).digest()[:8])
        assert batch_seed(*args) == want & (2**63 - 1)
