"""Checkpoint save/load, including refusal of untrusted pickles."""

from __future__ import annotations

import hashlib
import os
import pathlib
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from walknoise.errors import WalknoiseError
from walknoise.models import build_model, load_model, save_checkpoint
from walknoise.training import seeded_init


def _lenet(batchnorm: bool = True) -> nn.Module:
    with seeded_init(1):
        model = build_model("lenet5", batchnorm=batchnorm)
    # Non-trivial BN statistics, so the roundtrip checks buffers too.
    model.train()
    model(torch.randn(32, 1, 28, 28))
    return model.eval()


def _save(path: Path, model: nn.Module, arch: str = "lenet5") -> str:
    return save_checkpoint(
        path,
        model,
        arch=arch,
        arch_kwargs={"batchnorm": True},
        input_shape=(1, 28, 28),
        num_classes=10,
        meta={"dataset": "mnist", "epochs": 1, "tags": ("a", "b")},
    )


def _one_line_error(path: Path, **kwargs: object) -> str:
    with pytest.raises(WalknoiseError) as info:
        load_model(path, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    return message


def test_roundtrip(tmp_path: Path) -> None:
    model = _lenet()
    path = tmp_path / "sub" / "m.pt"
    digest = _save(path, model)
    x = torch.randn(8, 1, 28, 28)
    loaded = load_model(path)
    assert not loaded.model.training
    assert torch.equal(loaded.model(x), model(x))
    assert loaded.arch == "lenet5"
    assert loaded.input_shape == (1, 28, 28)
    assert loaded.num_classes == 10
    assert loaded.meta == {"dataset": "mnist", "epochs": 1, "tags": ["a", "b"]}
    assert loaded.sha256 == digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert os.listdir(path.parent) == ["m.pt"]  # no temp file left behind

    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "walknoise-checkpoint"
    assert raw["format_version"] == 1
    assert raw["input_shape"] == [1, 28, 28]
    assert set(raw) == {
        "format", "format_version", "arch", "arch_kwargs", "state_dict",
        "input_shape", "num_classes", "meta",
    }  # fmt: skip


def test_bare_state_dict(tmp_path: Path) -> None:
    model = _lenet(batchnorm=False)
    path = tmp_path / "sd.pt"
    torch.save(model.state_dict(), path)  # an OrderedDict
    assert "bare state dict" in _one_line_error(path)
    loaded = load_model(path, arch="lenet5")
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(loaded.model(x), model(x))
    assert loaded.num_classes == 10
    assert loaded.input_shape is None


def test_bare_state_dict_user_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "wn_ckpt_models_" + tmp_path.name.replace("-", "_")
    (tmp_path / f"{name}.py").write_text(
        "from torch import nn\n\ndef two(width=5):\n    return nn.Sequential(nn.Linear(3, width))\n"
    )
    monkeypatch.chdir(tmp_path)
    torch.save(nn.Sequential(nn.Linear(3, 7)).state_dict(), tmp_path / "w.pt")
    loaded = load_model(tmp_path / "w.pt", arch=f"{name}:two", arch_kwargs={"width": 7})
    assert loaded.model(torch.randn(1, 3)).shape == (1, 7)
    assert "does not fit" in _one_line_error(tmp_path / "w.pt", arch=f"{name}:two")


def test_arch_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    _save(path, _lenet())
    message = _one_line_error(path, arch="mlp")
    assert "does not fit architecture mlp" in message
    assert "pass the arch it was trained with" in message
    torch.save(_lenet(batchnorm=False).state_dict(), tmp_path / "sd.pt")
    assert "does not fit" in _one_line_error(tmp_path / "sd.pt", arch="mlp")
    # Same keys, other shapes: lenet5 weights for 10 classes into a 3-class lenet5.
    message = _one_line_error(tmp_path / "sd.pt", arch="lenet5", arch_kwargs={"num_classes": 3})
    assert "has shape" in message


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (pathlib.Path.touch, (self.marker,))


def test_malicious_pickle_is_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"weights": _Evil(marker)}, path)
    message = _one_line_error(path)
    assert "pickled Python object" in message and "trust_pickle=True" in message
    assert not marker.exists()
    # Trusting it really unpickles (and runs) it; the result is still not a model.
    assert "not a model" in _one_line_error(path, trust_pickle=True)
    assert marker.exists()


def test_whole_module_pickle(tmp_path: Path) -> None:
    model = _lenet()
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    assert "pickled Python object" in _one_line_error(path)
    model.train()
    torch.save(model, path)
    loaded = load_model(path, trust_pickle=True, input_shape=(1, 28, 28))
    assert not loaded.model.training
    assert loaded.arch is None and loaded.input_shape == (1, 28, 28)
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(loaded.model(x), model.eval()(x))


@pytest.mark.parametrize("cut", [0, 10, 100, -30])
def test_truncated(tmp_path: Path, cut: int) -> None:
    full = tmp_path / "m.pt"
    _save(full, _lenet())
    data = full.read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[:cut])
    message = _one_line_error(path)
    assert "not a PyTorch checkpoint or it is truncated" in message


@pytest.mark.parametrize("seed", range(4))
def test_random_bytes(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "rand.pt"
    gen = torch.Generator().manual_seed(seed)
    path.write_bytes(bytes(torch.randint(0, 256, (4096,), generator=gen).tolist()))
    assert "not a PyTorch checkpoint" in _one_line_error(path)


def test_missing_and_directory(tmp_path: Path) -> None:
    assert "no such model file" in _one_line_error(tmp_path / "nope.pt")
    assert "not a regular file" in _one_line_error(tmp_path)


@pytest.mark.parametrize(
    "obj", [[torch.zeros(2)], {"a": 1}, OrderedDict(), {"state_dict": {"w": 1}}]
)
def test_other_objects(tmp_path: Path, obj: object) -> None:
    path = tmp_path / "x.pt"
    torch.save(obj, path)
    message = _one_line_error(path, arch="mlp")
    assert "bare state dict" in message and "walknoise checkpoint" in message


def test_nan_weights(tmp_path: Path) -> None:
    model = _lenet()
    fc2 = model.get_submodule("fc2")
    assert isinstance(fc2, nn.Linear)
    with torch.no_grad():
        fc2.weight[0, :3] = float("nan")
        fc2.weight[1, 0] = float("inf")
    path = tmp_path / "nan.pt"
    _save(path, model)
    message = _one_line_error(path)
    assert "non-finite weights (4 NaN/inf values in fc2.weight)" in message


def test_factory_named_by_the_file_is_not_called(tmp_path: Path) -> None:
    """A weights-only file can still name code: ``os:system`` with a command as kwargs."""
    marker, path = tmp_path / "pwned", tmp_path / "m.pt"
    _save(path, _lenet())
    payload = torch.load(path, weights_only=True)
    payload.update(arch="os:system", arch_kwargs={"command": f"touch {marker}"})
    torch.save(payload, path)
    message = _one_line_error(path)
    assert "names the model factory 'os:system'" in message and "arch='os:system'" in message
    assert not marker.exists()


def test_factory_named_by_the_file_runs_once_the_user_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "wn_ckpt_trusted_" + tmp_path.name.replace("-", "_")
    (tmp_path / f"{name}.py").write_text(
        "from torch import nn\n\ndef two(width=5):\n    return nn.Sequential(nn.Linear(3, width))\n"
    )
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "m.pt"
    save_checkpoint(
        path,
        nn.Sequential(nn.Linear(3, 7)),
        arch=f"{name}:two",
        arch_kwargs={"width": 7},
        input_shape=(3,),
        num_classes=7,
        meta={},
    )
    assert "names the model factory" in _one_line_error(path)
    for kwargs in ({"arch": f"{name}:two"}, {"trust_pickle": True}):
        loaded = load_model(path, **kwargs)  # type: ignore[arg-type]
        assert loaded.model(torch.randn(1, 3)).shape == (1, 7)  # stored kwargs applied
