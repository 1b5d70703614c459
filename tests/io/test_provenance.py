"""Every file's root attributes: format, versions, time, the command that wrote it, config."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta

import pytest
import torch

from walknoise._version import __version__
from walknoise.io.provenance import command_line, invoked_as, provenance


def test_attributes_and_config_as_sorted_json() -> None:
    attrs = provenance("walknoise-x", 3, "a title", {"b": 1, "a": [1, 2]})
    assert attrs["format"] == "walknoise-x" and attrs["format_version"] == 3
    assert attrs["title"] == "a title"
    assert attrs["walknoise_version"] == __version__
    assert attrs["torch_version"] == str(torch.__version__)
    assert attrs["config"] == '{"a": [1, 2], "b": 1}'
    created = datetime.fromisoformat(attrs["created"])
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=1)
    assert provenance("f", 1, "t", '{"kept": "as is"}')["config"] == '{"kept": "as is"}'


def test_command_is_the_process_arguments_outside_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["train.py", "--fast"])
    assert command_line() == "train.py --fast"
    assert provenance("f", 1, "t", {})["command"] == "train.py --fast"


def test_invoked_as_records_the_cli_command_inside_the_block_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "argv", ["python"])
    with invoked_as("walknoise scan model.pt -o r.h5"):
        assert provenance("f", 1, "t", {})["command"] == "walknoise scan model.pt -o r.h5"
        with invoked_as("walknoise nin probe"):
            assert command_line() == "walknoise nin probe"
        assert command_line() == "walknoise scan model.pt -o r.h5"
    assert command_line() == "python"
    with pytest.raises(RuntimeError), invoked_as("walknoise gni run"):
        raise RuntimeError
    assert command_line() == "python"  # reset even when the block fails


def test_config_must_be_json() -> None:
    with pytest.raises(TypeError):
        provenance("f", 1, "t", {"tensor": torch.zeros(1)})
    assert json.loads(provenance("f", 1, "t", {"x": 1.5})["config"]) == {"x": 1.5}
