"""Model zoo: shapes, layer names and ``--arch`` resolution."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from walknoise.errors import WalknoiseError
from walknoise.models import ARCHS, build_model, cnn, lenet5, mlp

SHAPES = [(1, 28, 28), (3, 32, 32)]


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_output_shape(arch: str, batchnorm: bool, shape: tuple[int, ...]) -> None:
    model = build_model(arch, input_shape=shape, num_classes=7, batchnorm=batchnorm)
    model.eval()
    out = model(torch.randn(5, *shape))
    assert out.shape == (5, 7)
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert has_bn == batchnorm


def _names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


def test_mlp_names() -> None:
    assert _names(mlp()) == [
        "flatten", "fc1", "act1", "fc2", "act2", "fc3", "act3", "fc4",
    ]  # fmt: skip
    names = _names(mlp(batchnorm=True))
    assert names[:4] == ["flatten", "fc1", "bn1", "act1"]
    assert {"bn2", "bn3", "fc4"} <= set(names)


def test_lenet5_names_and_sizes() -> None:
    model = lenet5(batchnorm=True)
    assert _names(model) == [
        "conv1", "bn1", "act1", "pool1", "conv2", "bn2", "act2", "pool2", "flatten",
        "fc1", "bn3", "act3", "fc2", "bn4", "act4", "fc3",
    ]  # fmt: skip
    modules = dict(model.named_modules())
    fc1 = modules["fc1"]
    assert isinstance(fc1, nn.Linear) and fc1.in_features == 16 * 4 * 4
    assert isinstance(modules["bn1"], nn.BatchNorm2d)
    assert isinstance(modules["bn3"], nn.BatchNorm1d)
    assert "bn1" not in _names(lenet5())


def test_cnn_names() -> None:
    assert _names(cnn()) == [
        "conv1", "act1", "pool1", "conv2", "act2", "pool2", "flatten", "fc1", "act3", "fc2",
    ]  # fmt: skip
    assert {"bn1", "bn2"} <= set(_names(cnn(batchnorm=True)))


def test_batchnorm_does_not_change_initial_weights() -> None:
    torch.manual_seed(3)
    plain = lenet5()
    torch.manual_seed(3)
    with_bn = lenet5(batchnorm=True)
    assert torch.equal(plain.state_dict()["fc3.weight"], with_bn.state_dict()["fc3.weight"])


@pytest.mark.parametrize(
    ("arch", "shape"), [("lenet5", (1, 8, 8)), ("cnn", (1, 2, 2)), ("cnn", (28, 28))]
)
def test_bad_input_shape(arch: str, shape: tuple[int, ...]) -> None:
    with pytest.raises(WalknoiseError) as info:
        build_model(arch, input_shape=shape)
    assert "\n" not in str(info.value)


def test_unknown_arch_lists_zoo() -> None:
    with pytest.raises(WalknoiseError) as info:
        build_model("resnet")
    message = str(info.value)
    assert all(name in message for name in ARCHS)
    assert "package.module:factory" in message


def test_bad_kwargs() -> None:
    with pytest.raises(WalknoiseError, match="does not accept"):
        build_model("mlp", width=3)


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = "wn_user_models_" + tmp_path.name.replace("-", "_")
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            from collections import OrderedDict
            from torch import nn

            def tiny(n_in=4, n_out=3):
                return nn.Sequential(OrderedDict(fc=nn.Linear(n_in, n_out)))

            def broken():
                raise ValueError("boom")

            def not_a_model():
                return 42

            NOT_CALLABLE = 1
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield name
    sys.modules.pop(name, None)


def test_build_from_cwd_module(user_module: str) -> None:
    model = build_model(f"{user_module}:tiny", n_in=6)
    assert model(torch.randn(2, 6)).shape == (2, 3)
    assert _names(model) == ["fc"]


@pytest.mark.parametrize(
    ("suffix", "match"),
    [
        (":missing", "has no attribute"),
        (":NOT_CALLABLE", "not a callable"),
        (":broken", "failed to build"),
        (":not_a_model", "not a torch.nn.Module"),
        (":tiny", "does not accept"),
    ],
)
def test_factory_errors(user_module: str, suffix: str, match: str) -> None:
    kwargs = {"depth": 2} if suffix == ":tiny" else {}
    with pytest.raises(WalknoiseError, match=match) as info:
        build_model(user_module + suffix, **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("arch", ["no_such_module_xyz:f", ":f", "mod:"])
def test_unimportable(arch: str) -> None:
    with pytest.raises(WalknoiseError) as info:
        build_model(arch)
    assert "package.module:factory" in str(info.value)
