"""Saving and safely loading models.

Files are read with ``torch.load(weights_only=True)``, which cannot run code from the
file; a pickled whole module is only unpickled when the user explicitly trusts it.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from walknoise.errors import WalknoiseError
from walknoise.io.files import temp_beside
from walknoise.models.repair import (
    is_state_dict,
    nested_state,
    report,
    strip_prefix,
    stripped,
    took_entry,
)
from walknoise.models.zoo import ARCHS, build_model, import_from_cwd

FORMAT = "walknoise-checkpoint"
FORMAT_VERSION = 1

_FORMS = (
    "a walknoise checkpoint (from walknoise.train_checkpoint), a bare state dict "
    "(torch.save(model.state_dict()) plus arch=...), or a whole pickled nn.Module "
    "(torch.save(model) plus trust_pickle=True)"
)


def _plain(value: Any, where: str) -> Any:
    """Copy ``value`` as lists/dicts/primitives only, so weights_only loading accepts it."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v, where) for v in value]
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"{where}: dict keys must be str, got {list(value)!r}")
        return {k: _plain(v, where) for k, v in value.items()}
    raise TypeError(f"{where}: {type(value).__name__} is not storable; use plain JSON-like values")


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    arch: str,
    arch_kwargs: Mapping[str, Any],
    input_shape: tuple[int, ...],
    num_classes: int,
    meta: Mapping[str, Any],
) -> str:
    """Write ``model`` as a walknoise checkpoint atomically; return the file's sha256.

    ``arch_kwargs`` are passed to the factory on load; for zoo architectures the stored
    ``input_shape`` and ``num_classes`` are added when ``arch_kwargs`` lacks them.
    """
    target = Path(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": str(arch),
        "arch_kwargs": _plain(dict(arch_kwargs), "arch_kwargs"),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "input_shape": [int(d) for d in input_shape],
        "num_classes": int(num_classes),
        "meta": _plain(dict(meta), "meta"),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    tmp_name: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Temp file in the same directory so os.replace is an atomic rename: a crash
        # never leaves a half-written checkpoint under the real name.
        tmp_name = str(temp_beside(target))  # the umask's mode, not mkstemp's 0600
        with open(tmp_name, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, target)
        tmp_name = None
    except OSError as exc:
        raise WalknoiseError(
            f"cannot write checkpoint {target}: {exc.strerror or exc}; "
            "check the directory exists and is writable"
        ) from exc
    finally:
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)
    return hashlib.sha256(data).hexdigest()


@dataclass
class LoadedModel:
    """A model read by :func:`load_model`, in eval mode, with what the file said about it."""

    model: nn.Module
    input_shape: tuple[int, ...] | None
    num_classes: int | None
    arch: str | None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""


def _reason(exc: BaseException) -> str:
    """The informative part of a torch.load error, on one short line."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    text = " ".join(text.split()).split(" Check the documentation", 1)[0]
    text = text.split(". ", 1)[0].rstrip(".")
    if len(text) > 120:
        text = text[:117] + "..."
    if isinstance(exc, EOFError):
        text = text or "the file ends early"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _read(path: Path, data: bytes, trust_pickle: bool) -> Any:
    def unreadable(exc: BaseException) -> WalknoiseError:
        return WalknoiseError(
            f"cannot read model file {path}: it is not a PyTorch checkpoint or it is "
            f"truncated ({_reason(exc)})"
        )

    if not data:
        raise unreadable(EOFError("the file is empty"))
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # A refused GLOBAL/class/function means a well-formed pickle of arbitrary objects;
        # other failures (bad opcodes) mean a damaged or foreign file.
        detail = str(exc).rsplit("WeightsUnpickler error:", 1)[-1]
        if not re.search(r"global|allowlist|unrecognized function", detail, re.IGNORECASE):
            raise unreadable(exc) from exc
        if not trust_pickle:
            raise WalknoiseError(
                f"{path} holds a pickled Python object (e.g. torch.save(model)); "
                "unpickling runs code from the file, so walknoise refuses it: pass "
                "trust_pickle=True if you trust its source, or save model.state_dict() and "
                "pass arch='package.module:factory'",
                argument="trust_pickle",
            ) from exc
    except Exception as exc:  # weights-only parsing cannot run code; any failure = bad file
        raise unreadable(exc) from exc
    import_from_cwd()  # the pickle names classes by module, as arch= names a factory
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as exc:  # trusted unpickling runs the file's code, which may fail anyhow
        raise WalknoiseError(
            f"cannot unpickle {path} even with trust_pickle=True ({_reason(exc)}); make the "
            "classes it names importable, or save model.state_dict() and pass arch=...",
            argument="arch",
        ) from exc


def _fit_problems(model: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    expected = model.state_dict()
    problems = [f"missing key {k!r}" for k in expected if k not in state]
    problems += [f"unexpected key {k!r}" for k in state if k not in expected]
    for key, tensor in state.items():
        if key in expected and tensor.shape != expected[key].shape:
            problems.append(
                f"{key!r} has shape {tuple(tensor.shape)} in the file but "
                f"{tuple(expected[key].shape)} in the model"
            )
    return problems


def _build_and_load(
    path: Path,
    state: Mapping[str, torch.Tensor],
    arch: str,
    arch_kwargs: Mapping[str, Any],
    input_shape: tuple[int, ...] | None,
    num_classes: int | None,
    notes: list[str],
) -> tuple[nn.Module, dict[str, Any]]:
    """The model ``arch`` builds, with ``state`` loaded; what had to be done goes to ``notes``."""
    kwargs = dict(arch_kwargs)
    if arch in ARCHS:
        # Zoo factories need the data geometry; the file or the caller supplies it.
        if input_shape is not None:
            kwargs.setdefault("input_shape", input_shape)
        if num_classes is not None:
            kwargs.setdefault("num_classes", num_classes)
    if isinstance(kwargs.get("input_shape"), list):
        kwargs["input_shape"] = tuple(kwargs["input_shape"])
    model = build_model(arch, **kwargs)
    problems = _fit_problems(model, state)
    unwrapped = strip_prefix(state, list(model.state_dict())) if problems else None
    if unwrapped is not None:
        prefix, state = unwrapped
        notes.append(stripped(prefix))
        problems = _fit_problems(model, state)
    if not problems:
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:  # e.g. a custom module's own checks
            problems.append(_reason(exc))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise WalknoiseError(
            f"state dict in {path} does not fit architecture {arch}: {problems[0]}{more}; "
            "pass the arch it was trained with",
            argument="arch",
        )
    return model, kwargs


def _guess_num_classes(state: Mapping[str, torch.Tensor]) -> int | None:
    """Rows of the last 2-D weight: the logits layer of every zoo model."""
    weights = [t for k, t in state.items() if k.endswith("weight") and t.dim() == 2]
    return int(weights[-1].shape[0]) if weights else None


def _check_finite(path: Path, model: nn.Module) -> None:
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() or tensor.is_complex():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise WalknoiseError(
                    f"model in {path} has non-finite weights ({bad} NaN/inf values in "
                    f"{name}); it cannot be evaluated"
                )


def _check_stored_factory(path: Path, stored: str, arch: str | None, trust_pickle: bool) -> None:
    """A ``package.module:factory`` named by the file is code the file asks us to run
    (``os:system`` with ``arch_kwargs={"command": ...}`` runs a shell command), so, like a
    pickle, it needs the user's word: ``arch`` naming it, or ``trust_pickle``."""
    if arch is None and stored not in ARCHS and not trust_pickle:
        shown = stored if len(stored) <= 80 else stored[:77] + "..."
        raise WalknoiseError(
            f"{path} names the model factory {shown!r}; importing and calling code a file "
            f"names can run anything, so pass arch={shown!r} if you trust it "
            "(or trust_pickle=True)",
            argument="arch",
        )


def _load_bare(
    path: Path,
    obj: Mapping[Any, Any],
    arch: str | None,
    arch_kwargs: Mapping[str, Any] | None,
    shape: tuple[int, ...] | None,
    notes: list[str],
) -> tuple[nn.Module, dict[str, Any], int | None]:
    """A bare state dict, or one in an entry of a training checkpoint, built as ``arch``."""
    state, what = obj, "a bare state dict"
    found = None if is_state_dict(obj) else nested_state(obj)
    if found is not None:
        key, state = found
        what = f"a training checkpoint: its {key!r} entry is a state dict"
        notes.append(took_entry(obj, key))
    if arch is None:
        raise WalknoiseError(
            f"{path} is {what}; pass arch='package.module:factory' (or a zoo name) to build "
            "the model it belongs to",
            argument="arch",
        )
    classes = _guess_num_classes(state) if arch in ARCHS else None
    model, kwargs = _build_and_load(path, state, arch, arch_kwargs or {}, shape, classes, notes)
    return model, kwargs, classes


def load_model(
    path: str | os.PathLike[str],
    *,
    arch: str | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    trust_pickle: bool = False,
    input_shape: tuple[int, ...] | None = None,
) -> LoadedModel:
    """Load a walknoise checkpoint, a bare state dict (needs ``arch``) or, only with
    ``trust_pickle``, a whole pickled ``nn.Module``; the model is returned in eval mode.

    ``arch``/``arch_kwargs`` override what a checkpoint stores; ``input_shape`` overrides
    the stored input shape (and is the only source of it for the other two forms).
    """
    p = Path(path)
    if not p.exists():
        raise WalknoiseError(f"no such model file: {p} (check the path)")
    if not p.is_file():
        raise WalknoiseError(f"model file {p} is not a regular file; pass the checkpoint file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise WalknoiseError(
            f"cannot read model file {p}: {exc.strerror or exc}; check its permissions"
        ) from exc
    digest = hashlib.sha256(data).hexdigest()
    obj = _read(p, data, trust_pickle)
    shape = tuple(int(d) for d in input_shape) if input_shape is not None else None
    used_arch: str | None = None
    used_kwargs: dict[str, Any] = {}
    classes: int | None = None
    meta: dict[str, Any] = {}
    notes: list[str] = []  # how the file had to be read, said in one log line

    if isinstance(obj, nn.Module):
        model = obj
    elif isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        version = obj.get("format_version")
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise WalknoiseError(
                f"{p} is walknoise checkpoint format {version!r}, newer than this walknoise "
                f"reads ({FORMAT_VERSION}); upgrade walknoise"
            )
        state = obj.get("state_dict")
        stored_arch = obj.get("arch")
        if not is_state_dict(state) or not isinstance(stored_arch, str) or version is None:
            raise WalknoiseError(
                f"{p} is a damaged walknoise checkpoint (no version, state_dict or arch); "
                "re-save it"
            )
        stored_shape = obj.get("input_shape")
        if shape is None and isinstance(stored_shape, list):
            shape = tuple(int(d) for d in stored_shape)
        stored_classes = obj.get("num_classes")
        classes = stored_classes if isinstance(stored_classes, int) else None
        _check_stored_factory(p, stored_arch, arch, trust_pickle)
        used_arch = arch or stored_arch
        if arch_kwargs is None:
            # Stored kwargs describe the stored arch; they would likely break another one.
            same = arch is None or arch == stored_arch
            arch_kwargs = (obj.get("arch_kwargs") or {}) if same else {}
        model, used_kwargs = _build_and_load(
            p, state, used_arch, arch_kwargs, shape, classes, notes
        )
        meta = dict(obj.get("meta") or {})
    elif is_state_dict(obj) or (isinstance(obj, Mapping) and nested_state(obj)):
        model, used_kwargs, classes = _load_bare(p, obj, arch, arch_kwargs, shape, notes)
        used_arch = arch
    else:
        raise WalknoiseError(
            f"{p} holds a {type(obj).__name__}, not a model; accepted are {_FORMS}"
        )

    if isinstance(used_kwargs.get("num_classes"), int):
        classes = used_kwargs["num_classes"]  # what the model was actually built with
    _check_finite(p, model)
    report(p, notes)
    model.eval()
    return LoadedModel(
        model=model,
        input_shape=shape,
        num_classes=classes,
        arch=used_arch,
        arch_kwargs=used_kwargs,
        meta=meta,
        sha256=digest,
    )
