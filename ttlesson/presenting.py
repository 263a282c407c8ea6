"""One way for every result to present itself: ``str()`` in a terminal, ``to_dict()`` for JSON, and in a notebook
``_repr_html_`` (and IPython's pretty printer), instead of each result's own ``summary()``/``describe()``.

A result subclasses ``Presentable`` and writes ``__str__``; ``to_dict`` defaults to its dataclass fields made
JSON-friendly (paths and other objects as text), and the notebook shows the same text as the terminal unless the
result writes its own ``_repr_html_``.
"""

from __future__ import annotations

import dataclasses
import html
import json
from pathlib import Path


class Presentable:
    def __str__(self) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {field.name: _plain(getattr(self, field.name)) for field in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(str(self))}</pre>"

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython's text display: the sentence, not every field
        printer.text(str(self))


def _plain(value):
    """A value as JSON can hold it."""
    if isinstance(value, Presentable):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: _plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    return str(value)
