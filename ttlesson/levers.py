"""Where the learner is, and the lever a fix names there: in a notebook, the ``TTLESSON_*`` environment variable
set before Jupyter starts (``TTLESSON_MODEL=tiny``); in a terminal, the command's flag (``--model tiny``).

A leaf: the messages of every layer (the Hub, the backends, the doctor) name their fix through ``lever``.
"""

from __future__ import annotations

import sys

from . import env

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
