"""Injection-point discovery and selection by name, glob and type."""

import pytest
import torch
from torch import nn

from tests.conftest import Residual, tiny_mlp
from walknoise.errors import WalknoiseError
from walknoise.noise.points import discover, select, survey


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


class Reused(nn.Module):
    """One ReLU called twice on tensors of different shapes (torchvision's BasicBlock.relu)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16, 32)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(32, 8)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.fc2(self.act(self.fc1(self.flatten(x))))))


class Sequence(nn.Module):
    """Tuple-returning modules (GRU, MultiheadAttention) and modules that cannot take noise."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.gru = nn.GRU(4, 8, batch_first=True)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.time_major = nn.GRU(8, 8)  # batch_first=False: (T, B, H)
        self.unused = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(x)
        a, _ = self.attn(h, h, h)
        t, _ = self.time_major(a.transpose(0, 1))
        return self.head(t[-1])


def test_each_call_of_a_reused_module_is_its_own_point() -> None:
    points = discover(Reused(), (1, 4, 4))
    names = [p.name for p in points]
    assert names == ["<input>", "flatten", "fc1", "act", "fc2", "act#2", "head"]
    by_name = {p.name: p for p in points}
    assert by_name["act"].shape == (32,) and by_name["act#2"].shape == (8,)
    assert by_name["act#2"].type == "ReLU" and by_name["act#2"].default


def test_select_one_call_or_all_calls() -> None:
    points = discover(Reused(), (1, 4, 4))
    assert [p.name for p in select(points, layers=["act#2"])] == ["act#2"]
    assert [p.name for p in select(points, layers=["act"])] == ["act"]  # the first call
    assert [p.name for p in select(points, layers=["act", "act#*"])] == ["act", "act#2"]
    assert [p.name for p in select(points, types=["ReLU"])] == ["act", "act#2"]


def test_tuple_outputs_are_points_and_the_rest_say_why_not() -> None:
    found = survey(Sequence(), (5, 4))
    by_name = {p.name: p for p in found.points}
    assert by_name["gru"].shape == (5, 8) and by_name["gru"].tuple_output
    assert by_name["attn"].shape == (5, 8) and by_name["attn"].type == "MultiheadAttention"
    assert by_name["head"].shape == (3,) and not by_name["head"].tuple_output
    reasons = {s.name: s.reason for s in found.skipped}
    assert set(reasons) == {"attn.out_proj", "time_major", "unused"}
    assert "never called" in reasons["unused"]
    assert "never called" in reasons["attn.out_proj"]  # attention uses its weight directly
    assert "first dimension" in reasons["time_major"] and "batch" in reasons["time_major"]
    assert [p.name for p in discover(Sequence(), (5, 4))] == [p.name for p in found.points]


def test_a_pattern_naming_a_module_that_cannot_take_noise_says_why() -> None:
    found = survey(Sequence(), (5, 4))
    with pytest.raises(WalknoiseError, match="time_major") as err:
        select(found.points, layers=["time_major"], skipped=found.skipped)
    assert "first dimension" in str(err.value) and err.value.argument == "layers"
    assert "\n" not in str(err.value)


class ReturnsNone(nn.Module):
    def forward(self, x: torch.Tensor) -> None:
        return None


class Logger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.log = ReturnsNone()
        self.pair = Pair()
        self.fc = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log(x)
        d = self.pair(x.flatten(1))
        return self.fc(d["y"])


class Pair(nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"y": x}


def test_modules_returning_none_or_a_dict_are_listed_with_the_reason() -> None:
    reasons = {s.name: s.reason for s in survey(Logger(), (1, 4, 4)).skipped}
    assert reasons == {"log": "returns None", "pair": "returns a dict, not a tensor"}
