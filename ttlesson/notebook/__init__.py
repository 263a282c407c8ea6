"""What the notebooks call: ``lesson`` (the few calls each notebook makes), ``settings`` (the TTLESSON_* values),
``display`` (views of frames, storyboards, manifests, videos, charts), ``widgets`` (the notebook progress display,
Step 7's prompt studio), ``by_hand`` (the lesson's own commands), ``next_steps`` (SD 3.5 where it runs).

Importing this package is cheap; the widgets import ipywidgets only when made.
"""

from __future__ import annotations

from ..presenting import in_notebook  # lives in a leaf: messages of every layer ask it (levers.lever)


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
