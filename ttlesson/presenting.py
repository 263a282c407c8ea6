"""One way for every result to present itself: ``str()`` in a terminal, ``to_dict()`` for JSON, and in a notebook
``_repr_html_`` (and IPython's pretty printer), instead of each result's own ``summary()``/``describe()``.

A result subclasses ``Presentable`` and writes ``__str__``; ``to_dict`` defaults to its dataclass fields made
JSON-friendly (paths and other objects as text), and the notebook shows the same text as the terminal unless the
result writes its own ``_repr_html_``.

Where the learner is (``in_notebook``), and the lever a fix names there: in a notebook, the ``TTLESSON_*``
environment variable set before Jupyter starts (``TTLESSON_MODEL=tiny``); in a terminal, the command's flag
(``--model tiny``).

A leaf: the messages of every layer (the Hub, the backends, the doctor) name their fix through ``lever``.
"""

from __future__ import annotations

import dataclasses
import html
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

from . import env

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


class Presentable:
    def __str__(self) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict:
        fields = dataclasses.fields(cast("DataclassInstance", self))  # every result is a dataclass
        return {field.name: _plain(getattr(self, field.name)) for field in fields}

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


# The settings a learner changes either way: (the variable the notebooks read, the command-line flag).
SETTINGS = {"model": (env.MODEL, "--model"), "backend": (env.BACKEND, "--backend"), "steps": (env.STEPS, "--steps"),
            "size": (env.SIZE, "--size"), "server": (env.SERVER, "--server")}


def in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, VS Code, nbval, Colab), where widgets can be shown."""
    if "google.colab" in sys.modules:
        return True
    ipython = sys.modules.get("IPython")  # a kernel has imported it already; importing it here would not help
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def lever(setting: str, value: object) -> str:
    """How to give ``setting`` the value ``value`` here: ``TTLESSON_MODEL=tiny`` in a notebook, ``--model tiny``
    in a terminal."""
    variable, flag = SETTINGS[setting]
    return f"{variable}={value}" if in_notebook() else f"{flag} {value}"


def how_to_stop() -> str:
    """How to stop a long run here: the kernel's interrupt in a notebook, Ctrl-C in a terminal."""
    return "interrupt the kernel (the ■ button)" if in_notebook() else "press Ctrl-C"
