"""A griffe extension for the API pages: walknoise's docstrings are written for ``help()``.

Two reStructuredText habits read badly as Markdown, so, for the site only, this turns

* roles such as ``:class:`TensorData``` and ``:func:`~walknoise.scan``` into code spans, and
* ``>>>`` doctest lines (with their ``...`` continuations) into fenced ``pycon`` blocks.

The source is untouched. Loaded by ``mkdocs.yml`` (mkdocstrings' ``extensions`` option).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|obj|exc):`~?([^`]+)`")


def markdown(text: str) -> str:
    """The docstring ``text`` with roles made code spans and doctest lines fenced."""
    text = ROLE.sub(r"`\1`", text)
    out: list[str] = []
    in_example = False
    for line in text.splitlines():
        stripped = line.lstrip()
        is_example = stripped.startswith(">>>") or (in_example and stripped.startswith("..."))
        if is_example and not in_example:
            out += ["", "```pycon"]
        elif not is_example and in_example:
            out += ["```", ""]
        in_example = is_example
        out.append(stripped if is_example else line)
    if in_example:
        out.append("```")
    return "\n".join(out)


class RstToMarkdown(griffe.Extension):
    """Rewrite each docstring as it is loaded (see the module docstring)."""

    def on_instance(self, *, node: Any, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
