"""Injection-point discovery and selection by name, glob and type."""

import pytest

from tests.conftest import Residual, tiny_mlp
from walknoise.errors import WalknoiseError
from walknoise.noise.points import discover, select


def test_discover_in_forward_order_with_shapes() -> None:
    points = discover(tiny_mlp(batchnorm=True), (1, 4, 4))
    assert [p.name for p in points] == ["<input>", "flatten", "fc1", "act1", "bn1", "fc2"]
    by_name = {p.name: p for p in points}
    assert by_name["fc1"].shape == (32,) and by_name["fc1"].params == 16 * 32 + 32
    assert not by_name["flatten"].default  # Walking Noise puts no operator after a flatten


def test_select_default_glob_and_type() -> None:
    points = discover(Residual(), (1, 4, 4))
    assert [p.name for p in select(points)] == ["<input>", "fc1", "inner", "act", "head"]
    assert [p.name for p in select(points, layers=["fc*", "head"])] == ["fc1", "head"]
    assert [p.name for p in select(points, types=["Linear"])] == ["fc1", "inner", "head"]


def test_select_errors_name_the_fix() -> None:
    points = discover(tiny_mlp(), (1, 4, 4))
    with pytest.raises(WalknoiseError, match=r"walknoise\.noise\.discover") as err:
        select(points, layers=["conv*"])
    assert err.value.argument == "layers"
    with pytest.raises(WalknoiseError, match="types in this model") as err:
        select(points, types=["Conv2d"])
    assert err.value.argument == "types"
    with pytest.raises(WalknoiseError, match="filters leave no point") as err:
        select(points, layers=["fc1"], types=["ReLU"])
    assert err.value.argument == "layers"


def test_wrong_input_shape() -> None:
    with pytest.raises(WalknoiseError, match="does not accept inputs of shape"):
        discover(tiny_mlp(), (3, 8, 8))
