"""Resume only what was computed from the same data and the same model (issue 15, item 1)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import walknoise
from walknoise.data import TensorData, fingerprint
from walknoise.errors import WalknoiseError
from walknoise.walk import evaluate

KW = dict(sigmas="0.1,1,10", repeats=1, progress=False)


def _count_layers(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = {"n": 0}
    original = evaluate._values

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(evaluate, "_values", counted)
    return calls


def test_other_data_of_the_same_size_is_refused(trained_mlp, data, tmp_path: Path) -> None:
    x, y = data
    out = tmp_path / "r.h5"
    walknoise.scan(trained_mlp, (x[:300], y[:300]), output=out, **KW)
    before = out.read_bytes()
    with pytest.raises(WalknoiseError) as err:
        walknoise.scan(trained_mlp, (x[300:], y[300:]), output=out, **KW)
    message = str(err.value).replace(str(out), "FILE")  # the test's path holds "data"
    old, new = (
        fingerprint(TensorData(x[:300], y[:300], "a")),
        fingerprint(TensorData(x[300:], y[300:], "b")),
    )
    assert "different data" in message and "model" not in message
    assert old[:12] in message and new[:12] in message
    assert "overwrite=True" in message and err.value.argument == "overwrite"
    assert "\n" not in message
    assert out.read_bytes() == before  # refused before anything was written


def test_same_samples_in_another_order_are_other_data(trained_mlp, data, tmp_path) -> None:
    x, y = data
    out = tmp_path / "r.h5"
    walknoise.scan(trained_mlp, (x, y), output=out, **KW)
    order = torch.arange(len(x)).flip(0)
    with pytest.raises(WalknoiseError, match="different data"):
        walknoise.scan(trained_mlp, (x[order], y[order]), output=out, **KW)


def test_same_data_in_new_tensors_resumes(trained_mlp, data, tmp_path, monkeypatch) -> None:
    x, y = data
    out = tmp_path / "r.h5"
    first = walknoise.scan(trained_mlp, (x, y), output=out, **KW)
    calls = _count_layers(monkeypatch)
    again = walknoise.scan(trained_mlp, (x.clone().numpy(), y.clone()), output=out, **KW)
    assert calls["n"] == 0  # nothing recomputed
    assert again.dataset["accuracy"].equals(first.dataset["accuracy"])
    ds = walknoise.load(out).dataset
    assert ds.attrs["data_sha256"] == fingerprint(TensorData(x, y, "x"))
    assert len(ds.attrs["model_sha256"]) == 64


def test_other_model_weights_are_refused(trained_mlp, data, tmp_path: Path) -> None:
    out = tmp_path / "r.h5"
    walknoise.scan(trained_mlp, data, output=out, **KW)
    other = copy.deepcopy(trained_mlp)
    with torch.no_grad():
        other.fc2.bias += 1.0
    with pytest.raises(WalknoiseError) as err:
        walknoise.scan(other, data, output=out, **KW)
    message = str(err.value).replace(str(out), "FILE")
    assert "different model" in message and "data" not in message
    assert err.value.argument == "overwrite"
    walknoise.scan(other, data, output=out, overwrite=True, **KW)  # the named fix works


def test_fingerprint_sees_bytes_dtype_and_shape(data) -> None:
    x, y = data
    base = fingerprint(TensorData(x, y, "a"))
    assert fingerprint(TensorData(x.clone(), y.clone(), "other name")) == base
    assert fingerprint(TensorData(x.double(), y, "a")) != base  # same values, other dtype
    assert fingerprint(TensorData(x.reshape(len(x), 16), y, "a")) != base  # other shape
    flipped = x.clone()
    flipped.view(-1)[-1] = torch.nextafter(flipped.view(-1)[-1], torch.tensor(10.0))
    assert fingerprint(TensorData(flipped, y, "a")) != base  # one ulp of the last value


def test_fingerprint_in_chunks_equals_one_pass(data, monkeypatch) -> None:
    """Chunking is an implementation detail: the digest is that of the whole byte string."""
    import hashlib

    import walknoise.data as data_module

    x, y = data
    monkeypatch.setattr(data_module, "HASH_CHUNK_BYTES", 100)  # many tiny chunks
    chunked = fingerprint(TensorData(x, y, "a"))
    h = hashlib.sha256()
    for name, t in (("x", x), ("y", y)):
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.contiguous().numpy().tobytes())
    assert chunked == h.hexdigest()


def _modes(model: torch.nn.Module) -> dict[str, bool]:
    return {name: m.training for name, m in model.named_modules()}


def test_scan_gives_the_model_back_in_its_own_modes(trained_mlp, data, tmp_path) -> None:
    model = copy.deepcopy(trained_mlp).train()
    model.fc2.eval()  # a mix: every submodule's own flag comes back, not one for all
    before = _modes(model)
    walknoise.scan(model, data, **KW)
    assert _modes(model) == before
    with pytest.raises(WalknoiseError, match="does not exist"):  # fails after the planning
        walknoise.scan(model, data, output=tmp_path / "no" / "r.h5", **KW)
    assert _modes(model) == before
