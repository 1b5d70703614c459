"""Channels-last copies for the noisy passes: used where they run, never changing a result."""

from __future__ import annotations

import torch
from torch import nn

from walknoise.models import build_model
from walknoise.training import seeded_init
from walknoise.walk.layout import fast_layout


class ViewsNCHW(nn.Module):
    """A forward that assumes contiguous NCHW strides, as hand-written models often do."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return self.fc(h.view(h.shape[0], -1))  # fails on a channels-last tensor


def test_cnn_gets_a_channels_last_copy_with_the_same_outputs() -> None:
    with seeded_init(0):
        model = build_model("lenet5").eval()
    x = torch.randn(8, 1, 28, 28)
    fast = fast_layout(model, x)
    assert fast is not model
    assert fast.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert model.conv1.weight.is_contiguous()  # the user's model is left as it was
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-5, atol=1e-5)


def test_models_it_cannot_help_are_returned_as_they_are() -> None:
    mlp = build_model("mlp").eval()
    assert fast_layout(mlp, torch.randn(4, 1, 28, 28)) is mlp  # no convolution
    views = ViewsNCHW().eval()
    assert fast_layout(views, torch.randn(4, 1, 8, 8)) is views  # .view() breaks
    lenet = build_model("lenet5").eval()
    assert fast_layout(lenet, torch.randn(4, 784)) is lenet  # not an image batch
    batchnorm = build_model("lenet5", batchnorm=True).train()
    stats = batchnorm.bn1.running_mean.clone()
    assert fast_layout(batchnorm, torch.randn(4, 1, 28, 28)) is batchnorm  # training mode
    assert torch.equal(batchnorm.bn1.running_mean, stats)  # and untouched
