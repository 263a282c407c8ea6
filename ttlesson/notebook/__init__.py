"""What the notebooks call: ``lesson`` (the few calls each notebook makes), ``settings`` (the TTLESSON_* values),
``display`` (views of frames, storyboards, manifests, videos, charts), ``widgets`` (the notebook progress display,
Step 7's prompt studio), ``by_hand`` (the lesson's own commands), ``next_steps`` (SD 3.5 where it runs).

Importing this package is cheap; the widgets import ipywidgets only when made.
"""

from __future__ import annotations

import sys


def in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, VS Code, nbval, Colab), where widgets can be shown."""
    if "google.colab" in sys.modules:
        return True
    ipython = sys.modules.get("IPython")  # a kernel has imported it already; importing it here would not help
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def for_environment(gallery: bool = True):
    """The display that fits where this runs: widgets (already shown) in a notebook, tqdm in a terminal."""
    if in_notebook():
        from IPython.display import display

        from .widgets import NotebookProgress

        progress = NotebookProgress(gallery=gallery)
        display(progress)
        return progress
    from ..progress import TqdmProgress

    return TqdmProgress()
