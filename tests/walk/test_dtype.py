"""``dtype``: the noisy passes in bfloat16 where the CPU has native kernels, else float32."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import walknoise
from walknoise.devices import native_dtype
from walknoise.errors import WalknoiseError

KW = dict(sigmas="log:1e-2:1e2:13", repeats=3, progress=False)


def test_bfloat16_moves_midpoints_little_and_is_recorded(trained_mlp, data) -> None:  # type: ignore[no-untyped-def]
    full = walknoise.scan(trained_mlp, data, **KW)
    half = walknoise.scan(trained_mlp, data, dtype="bfloat16", **KW)
    ran = native_dtype("bfloat16", torch.device("cpu"))
    assert half.dataset.attrs["compute_dtype"] == ran
    assert full.dataset.attrs["compute_dtype"] == "float32"
    # bfloat16 keeps 8 bits of mantissa (~0.4% per rounding): logits move by about that, the
    # midpoints (read off accuracy curves of 600 samples) by a few percent at most
    mids = half.midpoints()["midpoint"] / full.midpoints()["midpoint"]
    assert np.allclose(mids, 1, atol=0.05), mids
    if ran == "bfloat16":  # the clean reference stays float32
        assert half.clean_accuracy == full.clean_accuracy
        assert not np.array_equal(half.dataset["loss"].values, full.dataset["loss"].values)


def test_a_dtype_without_native_kernels_runs_float32(
    trained_mlp, data, monkeypatch, caplog
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_fp16_supported", lambda: False)
    caplog.set_level(logging.WARNING, "walknoise")
    result = walknoise.scan(trained_mlp, data, dtype="float16", **KW)
    assert result.dataset.attrs["compute_dtype"] == "float32"
    assert "no native float16 kernels" in caplog.text


def test_unknown_dtype_is_refused(trained_mlp, data) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(WalknoiseError, match="unknown dtype 'float64'") as err:
        walknoise.scan(trained_mlp, data, dtype="float64", **KW)
    assert err.value.argument == "dtype"
