"""Models whose forward returns a tuple or a dict: ``output_key`` picks the logits."""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import walknoise
from tests.conftest import learnable_data, tiny_mlp
from walknoise.errors import WalknoiseError
from walknoise.walk.output import describe, key_label, select_output
from walknoise.walk.spec import ScanSpec

SCAN = {"sigmas": "0.1,1,10", "repeats": 2, "progress": False, "layers": "net.fc1,net.act1"}


class Wrapped(nn.Module):
    """The tiny MLP's logits inside a tuple, a dict or a namedtuple (module names unchanged)."""

    def __init__(self, form: str) -> None:
        super().__init__()
        self.form = form
        self.net = tiny_mlp()

    def forward(self, x: torch.Tensor) -> object:
        logits = self.net(x)
        hidden = logits.detach() * 0
        if self.form == "plain":
            return logits
        if self.form == "tuple":
            return logits, hidden
        if self.form == "dict":
            return {"features": hidden, "logits": logits}
        return Pair(hidden, logits)


Pair = namedtuple("Pair", ["hidden", "logits"])


def logits_first(out: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return out[0]


@pytest.fixture(scope="module")
def reference() -> walknoise.Result:
    """The same net returning its logits directly: what every selector must reproduce."""
    model = Wrapped("plain")
    return walknoise.scan(model, learnable_data(200), **SCAN)


@pytest.mark.parametrize(
    ("form", "key"),
    [("tuple", 0), ("tuple", logits_first), ("dict", "logits"), ("named", "logits")],
)
def test_selected_logits_give_the_plain_models_numbers(
    form: str, key: object, reference: walknoise.Result
) -> None:
    model = Wrapped(form)
    result = walknoise.scan(model, learnable_data(200), output_key=key, **SCAN)
    assert result.layers == ["net.fc1", "net.act1", "<global>"]  # no renamed modules
    # the same modules on the same data and seeds: the same arithmetic, so exact
    np.testing.assert_array_equal(result.accuracy.values, reference.accuracy.values)
    assert result.clean_accuracy == reference.clean_accuracy
    assert not model._forward_hooks  # the selector is gone afterwards


def test_selector_recorded_in_the_file(tmp_path: Path) -> None:
    out = tmp_path / "r.h5"
    walknoise.scan(
        Wrapped("tuple"), learnable_data(100), output_key=logits_first, output=out, **SCAN
    )
    config = walknoise.load(out).dataset.attrs["config"]
    assert '"output_key": "callable:tests.walk.test_output.logits_first"' in config
    walknoise.scan(
        Wrapped("dict"), learnable_data(100), output_key="logits", output=tmp_path / "d.h5", **SCAN
    )
    assert '"output_key": "logits"' in walknoise.load(tmp_path / "d.h5").dataset.attrs["config"]


def test_selector_travels_to_worker_processes(tmp_path: Path, reference: walknoise.Result) -> None:
    result = walknoise.scan(
        Wrapped("dict"), learnable_data(200), output_key="logits", jobs=2, **SCAN
    )
    np.testing.assert_array_equal(result.accuracy.values, reference.accuracy.values)


def test_a_tuple_output_without_a_selector_is_one_clear_line() -> None:
    with pytest.raises(WalknoiseError) as err:
        walknoise.scan(Wrapped("tuple"), learnable_data(50), **SCAN)
    message = str(err.value)
    assert message == (
        "the model returns a tuple of 2 (0: Tensor (2, 4), 1: Tensor (2, 4)), not a tensor of "
        "logits; say where the logits are with output_key (e.g. output_key=0) or pass a "
        "callable that returns them"
    )
    assert err.value.argument == "output_key"


@pytest.mark.parametrize(
    ("out", "key", "message"),
    [
        (
            {"logits": torch.zeros(2, 3), "h": [1]},
            "logit",
            "output_key='logit' is not in the model's output, a dict with keys ('logits': "
            "Tensor (2, 3), 'h': list); pass one of 'logits', 'h'",
        ),
        (
            (torch.zeros(2, 3), None),
            1,
            "output_key=1 selects None from the model's output, not a tensor of logits",
        ),
        ((torch.zeros(2, 3),), 3, "output_key=3 is not in the model's output, a tuple of 1"),
    ],
)
def test_selector_errors_name_what_the_output_holds(out: object, key: object, message: str) -> None:
    with pytest.raises(WalknoiseError) as err:
        select_output(out, key)  # type: ignore[arg-type]
    assert str(err.value).startswith(message) and err.value.argument == "output_key"


def test_selector_lookups() -> None:
    logits = torch.ones(2, 3)
    assert select_output({"0": logits}, 0) is logits  # a key read from the command line
    assert select_output(Pair(None, logits), "logits") is logits
    assert select_output((None, logits), -1) is logits
    assert describe({"a": 1}) == "a dict with keys ('a': int)"
    assert key_label(logits_first) == "callable:tests.walk.test_output.logits_first"
    assert key_label("logits") == "logits" and key_label(0) == 0


def test_spec_validates_and_records_the_selector() -> None:
    with pytest.raises(WalknoiseError, match=r"output_key=1\.5") as err:
        ScanSpec(sigmas=(1.0,), output_key=1.5)  # type: ignore[arg-type]
    assert err.value.argument == "output_key"
    spec = ScanSpec(sigmas=(1.0,), output_key=logits_first)
    assert spec.identity()["output_key"] == "callable:tests.walk.test_output.logits_first"
    assert ScanSpec.from_json(ScanSpec(sigmas=(1.0,), output_key=0).to_json()).output_key == 0
