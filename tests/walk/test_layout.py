"""The noisy passes' copy of the model: faster kernels and layout where they run and agree,
never changing a result beyond float rounding (pools: exactly), names and hooks kept."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from walknoise.models import build_model
from walknoise.noise.linear import linear_successors
from walknoise.training import seeded_init
from walknoise.walk.kernels import fits_pool, kernel_of, max_of_slices, use_chunks
from walknoise.walk.layout import fast_layout


class ViewsNCHW(nn.Module):
    """A forward that assumes contiguous NCHW strides, as hand-written models often do; its
    convolution (8·3·3 inputs per output) is too wide for the chunked kernel."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return self.fc(h.view(h.shape[0], -1))  # fails on a channels-last tensor


class NoCopy(nn.Sequential):
    def __deepcopy__(self, memo: dict[int, Any]) -> NoCopy:
        raise RuntimeError("this model cannot be copied")


def pools_only() -> nn.Module:
    """Odd-sized maps (29×27, then 14×13), pools that fit and pools that must be left alone."""
    with seeded_init(0):
        return nn.Sequential(
            nn.MaxPool2d(2),  # fits: 29×27 -> 14×13, the last row and column dropped
            nn.MaxPool2d((2, 2), stride=(2, 2)),  # fits, as pairs: 14×13 -> 7×6
            nn.MaxPool2d(2, ceil_mode=True),  # 7×6 -> 4×3: left alone
            nn.MaxPool2d(2, stride=1),  # left alone
            nn.MaxPool2d(2, padding=1),  # left alone
            nn.Flatten(),
            nn.Linear(3 * 2 * 2, 5),  # 7×6 -> 4×3 -> 3×2 -> 2×2
        ).eval()


def outputs(net: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every named module's output on ``x``, seen by forward hooks."""
    seen: dict[str, torch.Tensor] = {}
    handles = [
        m.register_forward_hook(lambda _m, _i, out, n=n: seen.__setitem__(n, out))
        for n, m in net.named_modules()
        if n
    ]
    with torch.inference_mode():
        net(x)
    for h in handles:
        h.remove()
    return seen


def test_max_of_slices_is_max_pool_bit_for_bit() -> None:
    x = torch.randn(3, 5, 9, 7)
    x[0, 0, 0, 0] = float("nan")
    x[1, 1, :2, :2] = float("inf")
    for t in (x, x.contiguous(memory_format=torch.channels_last), x[0]):
        assert torch.equal(max_of_slices(t).nan_to_num(), F.max_pool2d(t, 2).nan_to_num())
        assert torch.equal(max_of_slices(t).isnan(), F.max_pool2d(t, 2).isnan())
    assert max_of_slices(x).is_contiguous()  # as max_pool2d's, for forwards that .view() it


def test_pools_are_swapped_only_where_they_fit_and_the_copy_is_exact() -> None:
    model = pools_only()
    x = torch.randn(4, 3, 29, 27)
    fast = fast_layout(model, x)
    assert fast is not model
    kernels = [kernel_of(m) for m in fast]
    assert kernels == ["slices", "slices", "own", "own", "own", "own", "own"]
    assert [fits_pool(m) for m in model][:5] == [True, True, False, False, False]
    assert all(kernel_of(m) == "own" for m in model)  # the user's model is left as it was
    plain, seen = outputs(model, x), outputs(fast, x)
    assert seen.keys() == plain.keys()
    for name, out in plain.items():  # every hook sees the same tensor, exactly
        assert torch.equal(seen[name], out), name
    assert seen["1"].shape == (4, 3, 7, 6)


def test_lenet_copy_keeps_names_hooks_and_outputs() -> None:
    with seeded_init(0):
        model = build_model("lenet5").eval()
    x = torch.randn(8, 1, 28, 28)
    fast = fast_layout(model, x)
    assert fast is not model
    assert kernel_of(fast.pool1) == kernel_of(fast.pool2) == "slices"
    assert kernel_of(fast.conv2) == "own"  # 6·5·5 inputs per output: not a small conv
    assert kernel_of(fast.conv1) in ("own", f"chunks of {2**19 // (6 * 24 * 24)}")
    assert [(n, type(m)) for n, m in fast.named_modules()] == [
        (n, type(m)) for n, m in model.named_modules()
    ]
    assert model.conv1.weight.is_contiguous()  # the user's model is left as it was
    # the pool's output, whatever the layout chosen: its input differs from the plain
    # model's only by the order of the convolutions' sums (hence the tolerance)
    plain, seen = outputs(model, x), outputs(fast, x)
    for name, out in plain.items():
        torch.testing.assert_close(seen[name], out, rtol=1e-5, atol=1e-5, msg=name)
    # torch.fx still sees the modules as leaves: linearity finds the same successors
    assert linear_successors(fast) == linear_successors(model) != {}
    # its parameters are ordinary tensors (not made in inference mode): autograd works
    assert not fast.conv1.weight.is_inference()
    fast(x).sum().backward()
    for again in (copy.deepcopy(fast), pickle.loads(pickle.dumps(fast))):  # e.g. to a worker
        assert kernel_of(again.pool1) == "slices"
        assert again.pool1.forward.args[0] is again.pool1  # bound to its own module


def test_chunked_convolution_agrees_with_the_module() -> None:
    conv = nn.Conv2d(1, 6, 5)
    x = torch.randn(300, 1, 28, 28)
    with torch.inference_mode():
        ref = conv(x)
        use_chunks(conv, 64)
        assert kernel_of(conv) == "chunks of 64"
        torch.testing.assert_close(conv(x), ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(conv(x[:3]), ref[:3], rtol=1e-5, atol=1e-6)


def test_models_it_cannot_help_are_returned_as_they_are() -> None:
    mlp = build_model("mlp").eval()
    assert fast_layout(mlp, torch.randn(4, 1, 28, 28)) is mlp  # no convolution, no pool
    views = ViewsNCHW().eval()
    assert fast_layout(views, torch.randn(4, 8, 8, 8)) is views  # .view() breaks on the copy
    uncopied = NoCopy(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2)).eval()
    assert fast_layout(uncopied, torch.randn(4, 1, 8, 8)) is uncopied
    lenet = build_model("lenet5").eval()
    assert fast_layout(lenet, torch.randn(4, 784)) is lenet  # not an image batch
    batchnorm = build_model("lenet5", batchnorm=True).train()
    stats = batchnorm.bn1.running_mean.clone()
    assert fast_layout(batchnorm, torch.randn(4, 1, 28, 28)) is batchnorm  # training mode
    assert torch.equal(batchnorm.bn1.running_mean, stats)  # and untouched


@pytest.mark.parametrize("fails_on", ["pool", "all"])
def test_a_forward_that_fails_on_the_copy_keeps_the_plain_model(fails_on: str) -> None:
    class Picky(nn.Module):
        """Fails unless its pool runs ATen's kernel (as a forward inspecting it might)."""

        def __init__(self) -> None:
            super().__init__()
            self.conv, self.pool = nn.Conv2d(1, 2, 3), nn.MaxPool2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if fails_on == "all" and self is not model:
                raise RuntimeError("only the original runs")
            if kernel_of(self.pool) != "own":
                raise RuntimeError("swapped pool")
            return self.pool(self.conv(x).contiguous())

    model = Picky().eval()
    fast = fast_layout(model, torch.randn(4, 1, 10, 10))
    if fails_on == "all":
        assert fast is model
    else:  # the kernel copy fails; only the channels-last copy or the model itself remains
        assert fast is model or kernel_of(fast.pool) == "own"


def test_layouts_are_timed_in_the_dtype_of_the_noisy_passes(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """With ``--dtype bfloat16`` the layouts race under autocast (where channels-last gains
    most), while the copy is still verified against the plain model in float32."""
    import walknoise.walk.layout as layout

    seen: list[torch.dtype | None] = []
    timed = layout.best_times

    def spy(fns, x):  # type: ignore[no-untyped-def]
        on = torch.is_autocast_enabled("cpu")
        seen.append(torch.get_autocast_dtype("cpu") if on else None)
        return timed(fns, x)

    monkeypatch.setattr(layout, "best_times", spy)
    with seeded_init(0):
        model = build_model("lenet5").eval()
    x = torch.rand(4, 1, 28, 28)
    net = fast_layout(model, x, torch.bfloat16)
    fast_layout(model, x)
    assert seen == [torch.bfloat16, None]
    with torch.inference_mode():  # verified in float32: reordered sums only
        torch.testing.assert_close(net(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("most", "expected"), [(None, 2**21 // (6 * 24 * 24)), (6, 6), (1, 2)])
def test_layouts_are_timed_on_a_pass_of_the_runners_size(most, expected, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The timed batch fills the element budget (LeNet-5's widest map: 6×24×24), but never
    exceeds the most a noisy pass will hold (a small dataset's few copies), nor goes below
    the two probe samples."""
    import walknoise.walk.layout as layout

    monkeypatch.setattr(layout, "element_budget", lambda device: 2**21)
    sizes: list[int] = []
    timed = layout.best_times
    monkeypatch.setattr(layout, "best_times", lambda fns, x: sizes.append(len(x)) or timed(fns, x))
    with seeded_init(0):
        model = build_model("lenet5").eval()
    x = torch.rand(4, 1, 28, 28)
    fast_layout(model, x) if most is None else fast_layout(model, x, most=most)
    assert sizes and sizes[-1] == expected
