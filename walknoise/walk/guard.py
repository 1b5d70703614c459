"""An exception raised inside the user's model becomes one line naming the module and its input.

A model that asserts its input shape (timm style), a custom forward with a shape mismatch, or
any other failure of the user's code would otherwise surface as a long traceback through
walknoise's internals. :func:`model_errors` turns it into a :class:`WalknoiseError` such as
``the model failed in module 'blocks.0.attn' (Attention) on input of shape (500, 1, 28, 28):
AssertionError: ...``, chained ``from`` the original so a debugger still sees it.

The module is read from the exception's traceback, not from hooks: every module call runs
through ``nn.Module._call_impl``, whose frame holds the module (``self``) and its inputs
(``args``), and the innermost such frame is the module that failed. This costs nothing while
the model runs and cannot go stale when an exception is caught inside the model (the
runner's fan-out probe catches one on purpose; it never reaches the guard).

Only the user's code is blamed: when the innermost frame that is neither torch's nor the
standard library's belongs to walknoise (a noise hook runs inside the module it is attached
to), the exception is a walknoise bug and keeps its type and traceback. The zoo's models in
``walknoise.models`` count as models.
"""

from __future__ import annotations

import linecache
import sysconfig
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

import torch
from torch import nn

from walknoise.errors import WalknoiseError

_CALL = nn.Module._call_impl.__code__
_WALKNOISE = Path(__file__).resolve().parents[1]  # walknoise/walk/guard.py -> walknoise/
_MODELS = _WALKNOISE / "models"
_NEUTRAL = (
    Path(torch.__file__).resolve().parent,
    *{Path(sysconfig.get_paths()[k]).resolve() for k in ("stdlib", "platstdlib")},
)
_LONGEST = 200
"""Characters of the original message kept (torch's can run to many lines)."""


@contextmanager
def model_errors() -> Iterator[None]:
    """Inside: an exception from the user's model is re-raised as one-line WalknoiseError.

    Usable as a decorator too (``@model_errors()``).
    """
    try:
        yield
    except Exception as err:
        failed = model_error(err)
        if failed is None:
            raise
        raise failed from err


def model_error(err: BaseException) -> WalknoiseError | None:
    """``err`` as a one-line WalknoiseError if the user's model raised it, else None."""
    if isinstance(err, WalknoiseError) or not isinstance(err, Exception):
        return None
    failure = _locate(err)
    return None if failure is None else WalknoiseError(failure.message(err))


@dataclass(frozen=True)
class _Failure:
    root: nn.Module
    module: nn.Module
    args: tuple[object, ...]
    line: str
    """Source line the exception was raised at (shown when its message is empty)."""

    def message(self, err: Exception) -> str:
        where = _describe(self.root, self.module)
        return f"the model failed in {where} on {_inputs(self.args)}: {_brief(err, self.line)}"


def _describe(root: nn.Module, module: nn.Module) -> str:
    kind = type(module).__name__
    if module is root:
        return f"its top module ({kind})"
    name = next((n for n, m in root.named_modules() if m is module), None)
    return f"a {kind} module" if name is None else f"module {name!r} ({kind})"


def _locate(err: BaseException) -> _Failure | None:
    """The failing module of ``err``'s traceback, or None if no user module raised it."""
    frames = list(_frames(err.__traceback__))
    calls = [i for i, f in enumerate(frames) if f.f_code is _CALL]
    if not calls:
        return None  # raised outside any model call
    inward = [f for f in frames[calls[0] :] if not _neutral(f)]
    if inward and _is_walknoise(inward[-1]):
        return None  # walknoise's own code (e.g. a noise hook) failed: a bug, keep it
    outer, inner = frames[calls[0]], frames[calls[-1]]
    args = inner.f_locals.get("args", ())
    last = frames[-1]
    line = linecache.getline(last.f_code.co_filename, _lineno(err.__traceback__)).strip()
    return _Failure(
        root=outer.f_locals["self"],
        module=inner.f_locals["self"],
        args=args if isinstance(args, tuple) else (args,),
        line=line,
    )


def _frames(tb: TracebackType | None) -> Iterator[FrameType]:
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


def _lineno(tb: TracebackType | None) -> int:
    line = 0
    while tb is not None:
        line, tb = tb.tb_lineno, tb.tb_next
    return line


def _path(frame: FrameType) -> Path | None:
    name = frame.f_code.co_filename
    return None if name.startswith("<") else Path(name).resolve()  # <stdin>, notebooks: user


def _neutral(frame: FrameType) -> bool:
    path = _path(frame)
    return path is not None and any(path.is_relative_to(p) for p in _NEUTRAL)


def _is_walknoise(frame: FrameType) -> bool:
    path = _path(frame)
    return path is not None and path.is_relative_to(_WALKNOISE) and not path.is_relative_to(_MODELS)


def _inputs(args: tuple[object, ...]) -> str:
    shapes = [str(tuple(a.shape)) for a in args if isinstance(a, torch.Tensor)]
    if not shapes:
        kinds = ", ".join(type(a).__name__ for a in args) or "nothing"
        return f"input ({kinds}, no tensor)"
    if len(shapes) == 1:
        return f"input of shape {shapes[0]}"
    return f"inputs of shapes {', '.join(shapes)}"


def _brief(err: Exception, line: str) -> str:
    text = " ".join(str(err).split()) or line
    if len(text) > _LONGEST:
        text = text[: _LONGEST - 3] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
