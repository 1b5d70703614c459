"""Run a block around a noisy point once per sample up to the point, with lazy broadcasting.

Inside a residual block the σ copies cannot fan out at the point and simply flow on: the
skip connection meets a tensor of ``B`` samples where the point's copies have ``S·B``.
Replicating the block's input runs the layers before the point ``S`` times. Instead, the
block runs here as a ``torch.fx`` graph: every value keeps the batch it has (the point's
hook makes ``S·B``), and a value of ``B`` samples is replicated, copy-major as the hook
stacks its copies, only where it meets the copies (the skip at the sum). The layers before
the point, and the shortcut, run once per sample.

Values are tagged by where they come from: ``CONST`` (parameters, constants, shapes that do
not depend on the batch), ``BATCHED`` (computed from the block's inputs, one row per sample)
and ``FANNED`` (computed from the point's copies). Anything the rules cannot vouch for
raises :class:`Unsafe`; the caller then falls back to replication, and checks every graph
against it before first use (``walknoise.walk.enclosing.find_fan``).
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

CONST, BATCHED, FANNED = 0, 1, 2
_SHAPE_ATTRS = {"ndim", "dtype", "device", "is_cuda", "layout"}


class Unsafe(RuntimeError):
    """Lazy broadcasting cannot be sure of the block's numbers (the caller falls back)."""


class _Tracer(fx.Tracer):
    """Traces through the point's ancestors only: every other submodule is one call."""

    def __init__(self, ancestors: set[str]) -> None:
        super().__init__()
        self.ancestors = ancestors

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name not in self.ancestors


@dataclass(frozen=True)
class BlockGraph:
    """A block traced around one point's module (``point``: its name inside the block)."""

    graph: fx.Graph
    point: str
    last_uses: dict[fx.Node, list[fx.Node]]


def trace_block(block: nn.Module, point: str) -> BlockGraph:
    """Trace ``block`` with ``point`` (a module name inside it) as a leaf; raises when fx
    cannot trace it or the graph needs what lazy broadcasting does not handle."""
    parts = point.split(".")
    ancestors = {".".join(parts[:i]) for i in range(1, len(parts))}
    for name in ancestors:  # traced through: their own hooks would not run
        sub = block.get_submodule(name)
        if sub._forward_hooks or sub._forward_pre_hooks:
            raise Unsafe(f"{name} has hooks")
    graph = _Tracer(ancestors).trace(block)
    nodes = list(graph.nodes)
    if any(n.op == "placeholder" and str(n.target).startswith("*") for n in nodes):
        raise Unsafe("variable arguments")
    if not any(n.op == "call_module" and n.target == point for n in nodes):
        raise Unsafe(f"{point} is not called in the traced block")
    last_uses: dict[fx.Node, list[fx.Node]] = {}
    seen: set[fx.Node] = set()
    for node in reversed(nodes):  # each value's last user frees it
        for inp in node.all_input_nodes:
            if inp not in seen:
                seen.add(inp)
                last_uses.setdefault(node, []).append(inp)
    return BlockGraph(graph, point, last_uses)


def _leading(value: object) -> int | None:
    if isinstance(value, torch.Tensor) and value.dim() > 0:
        return int(value.shape[0])
    return None


def _is_shape(node: fx.Node) -> bool:
    """``x.shape`` or ``x.size()``: a whole shape, batch size included."""
    if node.op == "call_function" and node.target is getattr:
        return node.args[1] == "shape"
    return node.op == "call_method" and node.target == "size" and len(node.args) == 1


def _batch_free(node: fx.Node) -> bool:
    """A property of a tensor that does not depend on its batch size (``x.size(1)``,
    ``x.shape[2]``, ``x.dtype``): decided from the graph alone, never from values."""
    args = node.args
    if node.op == "call_method" and node.target in ("dim", "ndimension"):
        return True
    if node.op == "call_method" and node.target == "size" and len(args) == 2:
        return isinstance(args[1], int) and args[1] > 0
    if node.op == "call_function" and node.target is getattr:
        return args[1] in _SHAPE_ATTRS
    if node.op == "call_function" and node.target is operator.getitem:
        first = args[0]
        return isinstance(first, fx.Node) and _is_shape(first) and _positive_int(args[1])
    return False


def _positive_int(index: object) -> bool:
    return isinstance(index, int) and index > 0


def _inplace(node: fx.Node) -> bool:
    name = getattr(node.target, "__name__", str(node.target))
    if node.op == "call_function" and node.target in (
        operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.iand,
        operator.ior,
    ):  # fmt: skip
        return True
    if node.kwargs.get("inplace") is True:
        return True
    return (
        node.op in ("call_method", "call_function")
        and name.endswith("_")
        and not (name.startswith("_"))
    )


class _Run:
    """One pass of a block graph: the values, their tags and the replicated copies."""

    def __init__(self, block: nn.Module, bg: BlockGraph, copies: int, batch: int) -> None:
        self.block, self.bg, self.copies, self.batch = block, bg, copies, batch
        self.env: dict[fx.Node, Any] = {}
        self.tag: dict[fx.Node, int] = {}
        self.wide: dict[fx.Node, torch.Tensor] = {}

    def widened(self, node: fx.Node) -> Any:
        """A batched value as ``S`` copies, copy-major like the hook's (cached)."""
        if self.tag[node] != BATCHED:
            return self.env[node]
        if node not in self.wide:
            x = self.env[node]
            if _leading(x) != self.batch:
                raise Unsafe(f"{node.name}: a batch-derived value without the batch first")
            wide = x.unsqueeze(0).expand(self.copies, *x.shape)
            self.wide[node] = wide.reshape(self.copies * self.batch, *x.shape[1:])
        return self.wide[node]

    def run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        for i, node in enumerate(self.bg.graph.nodes):
            if node.op == "output":
                return self._output(node)
            self.env[node], self.tag[node] = self._node(node, i, args, kwargs)
            for done in self.bg.last_uses.get(node, ()):
                self.env.pop(done, None)
                self.wide.pop(done, None)
        raise Unsafe("the graph has no output")

    def _output(self, node: fx.Node) -> Any:
        fanned = any(self.tag[n] == FANNED for n in node.all_input_nodes)
        get = self.widened if fanned else self.env.__getitem__
        return fx.node.map_arg(node.args[0], get)

    def _node(
        self, node: fx.Node, i: int, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, int]:
        if node.op == "placeholder":
            value = _bind(node, i, args, kwargs)
            return value, BATCHED if _leading(value) == self.batch else CONST
        if node.op == "get_attr":
            return _fetch(self.block, str(node.target)), CONST  # parameters stay as they are
        tag = max((self.tag[n] for n in node.all_input_nodes), default=CONST)
        get = self.env.__getitem__
        if tag == FANNED:
            self._check_fanned(node)
            get = self.widened
        value = _call(self.block, node, fx.node.map_arg(node.args, get),
                      fx.node.map_arg(node.kwargs, get))  # fmt: skip
        if tag == BATCHED and _inplace(node) and isinstance(node.args[0], fx.Node):
            self.wide.pop(node.args[0], None)  # its copies would be stale
        if tag == BATCHED and _batch_free(node):
            tag = CONST
        if node.op == "call_module" and node.target == self.bg.point:
            if not isinstance(value, torch.Tensor):
                raise Unsafe("the point returns more than one tensor")
            if tag == BATCHED and _leading(value) == self.copies * self.batch:
                tag = FANNED  # the hook fanned this call out
        return value, tag

    def _check_fanned(self, node: fx.Node) -> None:
        """Where copies meet batched values: an in-place update of a batched value would
        change only its replica, not the value other users see."""
        first = node.args[0] if node.args else None
        if (
            _inplace(node)
            and isinstance(first, fx.Node)
            and self.tag[first] == BATCHED
            and len(first.users) > 1
        ):
            raise Unsafe(f"{node.name} updates a shared batched value in place")
        for n in node.all_input_nodes:
            if self.tag[n] == BATCHED and not isinstance(self.env[n], torch.Tensor):
                raise Unsafe(f"{node.name}: the copies meet a batch-sized {n.name}")


def _bind(node: fx.Node, i: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if i < len(args):
        return args[i]
    if node.target in kwargs:
        return kwargs[str(node.target)]
    if node.args:
        return node.args[0]  # the default
    raise Unsafe(f"no value for the block's argument {node.target}")


def _fetch(block: nn.Module, target: str) -> Any:
    obj: Any = block
    for atom in target.split("."):
        obj = getattr(obj, atom)
    return obj


def _call(block: nn.Module, node: fx.Node, args: Any, kwargs: Any) -> Any:
    if node.op == "call_function":
        return node.target(*args, **kwargs)  # type: ignore[operator]
    if node.op == "call_method":
        return getattr(args[0], str(node.target))(*args[1:], **kwargs)
    if node.op == "call_module":
        return _fetch(block, str(node.target))(*args, **kwargs)
    raise Unsafe(f"unknown node {node.op}")


def run_block(
    block: nn.Module, bg: BlockGraph, copies: int, batch: int, args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:  # fmt: skip
    """``block``'s output for inputs of ``batch`` samples, the point fanning out ``copies``."""
    return _Run(block, bg, copies, batch).run(args, kwargs)


@contextmanager
def lazily(block: nn.Module, bg: BlockGraph, copies: int, batch: int) -> Iterator[None]:
    """While the context runs, ``block`` runs its graph with lazy broadcasting (its own
    hooks still run: only its ``forward`` is replaced)."""
    own = vars(block).get("forward")

    def forward(*args: Any, **kwargs: Any) -> Any:
        return run_block(block, bg, copies, batch, args, kwargs)

    setattr(block, "forward", forward)  # noqa: B010 (an instance attribute shadows the method)
    try:
        yield
    finally:
        if own is None:
            delattr(block, "forward")
        else:
            setattr(block, "forward", own)  # noqa: B010
