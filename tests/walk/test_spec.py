"""σ-grid parsing and the scan spec's JSON round trip."""

import numpy as np
import pytest

from walknoise.errors import WalknoiseError
from walknoise.walk.spec import ScanSpec, parse_sigmas


def test_parse_log_lin_and_list() -> None:
    assert parse_sigmas("log:1e-2:1e2:5") == pytest.approx([0.01, 0.1, 1, 10, 100])
    assert parse_sigmas("lin:0.5:2:4") == pytest.approx([0.5, 1.0, 1.5, 2.0])
    assert parse_sigmas("10, 0.1,1") == (0.1, 1.0, 10.0)
    assert np.allclose(np.diff(np.log10(parse_sigmas("log:1e-2:1e3:31"))), 1 / 6)


def test_paper_presets_are_the_authors_grids() -> None:
    # UniHD-CEG/walking-noise experiment_configs/MNIST/*_layer_wise_noise_experiment.yaml:
    # seml loguniform grids = np.logspace(log10 min, log10 max, num)
    assert parse_sigmas("paper-additive") == pytest.approx(np.logspace(-2, 8, 41))
    assert parse_sigmas("paper-multiplicative") == pytest.approx(np.logspace(0, 16, 65))
    assert parse_sigmas("paper-combined") == pytest.approx(np.logspace(-2, 10, 25))
    assert parse_sigmas("paper-multiplicative-lin") == pytest.approx(np.linspace(0, 6, 61)[1:])
    # NAME:N keeps the range and the spacing rule
    assert parse_sigmas("paper-multiplicative:17") == pytest.approx(np.logspace(0, 16, 17))


@pytest.mark.parametrize(
    "bad",
    [
        "log:1e3:1e-2:5",
        "log:0:1:5",
        "lin:-1:1:3",
        "1,1,2",
        "nan",
        "abc",
        "log:1:2",
        "",
        "0.1,-2",
        "log:1:10:0",
        "paper-additive:x",
        "paper-noise",
    ],
)
def test_bad_sigma_specs(bad: str) -> None:
    with pytest.raises(WalknoiseError) as err:
        parse_sigmas(bad)
    assert err.value.argument == "sigmas"


def test_spec_json_roundtrip_and_identity() -> None:
    spec = ScanSpec(sigmas=(0.1, 1.0), noise="combined", ratio=0.2, layers=("fc*",))
    again = ScanSpec.from_json(spec.to_json())
    assert again == spec
    assert "device" not in spec.identity() and "sigmas" in spec.identity()


def test_spec_rejects_bad_fields() -> None:
    with pytest.raises(WalknoiseError, match="repeats"):
        ScanSpec(sigmas=(1.0,), repeats=0)
    with pytest.raises(WalknoiseError, match="noise kind"):
        ScanSpec(sigmas=(1.0,), noise="uniform")


@pytest.mark.parametrize(
    ("fields", "message", "argument"),
    [
        ({"noise": "pink"}, "unknown noise kind 'pink'; choose one of additive, ", "noise"),
        ({"noise": "combined", "ratio": 1.5}, r"ratio=1.5 is outside \[0, 1\]", "ratio"),
        ({"phase": "test"}, "unknown phase 'test'; choose one of eval, train, both", "phase"),
        ({"midpoint_search": True, "phase": "train"}, "needs phase='eval'", "midpoint_search"),
        ({"midpoint_search": True, "rtol": 1.0}, r"rtol=1.0 is not in \(0, 1\)", "rtol"),
        ({"clamp": 0.0}, "clamp=0.0; it must be positive", "clamp"),
        ({"batch_size": 0}, "batch_size=0; it must be at least 1", "batch_size"),
        ({"max_batch": -1}, "max_batch=-1; it must be at least 1", "max_batch"),
        ({"seed": 2**63}, "does not fit in 64 bits", "seed"),
        ({"sigmas": ()}, "pass e.g. sigmas='log:1e-2:1e3:31'", "sigmas"),
    ],
)
def test_spec_errors_name_the_argument(
    fields: dict[str, object], message: str, argument: str
) -> None:
    """Each message speaks API terms and ``argument`` names the keyword, for the CLI's flag."""
    with pytest.raises(WalknoiseError, match=message) as err:
        ScanSpec(**{"sigmas": (1.0,), **fields})  # type: ignore[arg-type]
    assert err.value.argument == argument
    assert "--" not in str(err.value)


def test_midpoint_search_with_its_defaults_is_valid() -> None:
    spec = ScanSpec(sigmas=(0.1, 1.0), midpoint_search=True)
    assert spec.rtol == 0.05 and spec.phase == "eval"
