"""Step 7's prompt box: type a prompt, pick a seed and steps, press Generate, see the frame.

The model is loaded once per kernel and stays loaded between prompts (and between studios on the same model).
"Add to storyboard" appends the prompt and its seed to the storyboard file, so a good find goes straight into
the video. Errors show inside the widget; the widget keeps working.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .. import models
from .. import storyboard as storyboard_mod
from ..backends import Backend, FrameRequest, create, resolve_name
from ..errors import TTLessonError
from ..expectations import duration
from ..frames import encode_png
from ..values import parse_size

_LOADED: dict[tuple, Backend] = {}  # one loaded backend per (model, backend, device) for the kernel's lifetime


def loaded_backend(model: str = "sd14", backend: str = "auto", device: str | None = None) -> Backend:
    """A loaded backend for ``model``, loaded on first use and reused afterwards."""
    key = (model, resolve_name(backend), device)
    if key not in _LOADED:
        engine = create(key[1], models.resolve(model), device=device)
        engine.load()
        _LOADED[key] = engine
    return _LOADED[key]


class PromptStudio:
    """The interactive widget. ``display(studio)`` shows it; ``studio.generate()`` is what the button calls."""

    def __init__(self, storyboard_path: str | os.PathLike, model: str = "sd14", backend: str = "auto",
                 device: str | None = None, steps: int | None = None, size: int | str | None = None,
                 seed: int = 0):
        import ipywidgets as w

        self.storyboard_path = Path(storyboard_path)
        self.model, self.backend_name, self.device = model, backend, device
        spec = models.resolve(model)
        self.width, self.height = parse_size(size) if size else (spec.width, spec.height)
        self.guidance = spec.guidance
        self.prompt = w.Textarea(placeholder="Describe the frame…", layout=w.Layout(width="100%", height="4em"))
        self.seed = w.BoundedIntText(value=seed, min=0, max=storyboard_mod.MAX_SEED, description="seed")
        self.steps = w.IntSlider(value=steps or spec.steps, min=1, max=max(100, steps or spec.steps),
                                 description="steps")
        self.generate_button = w.Button(description="Generate", button_style="primary", icon="paint-brush")
        self.add_button = w.Button(description="Add to storyboard", icon="plus", disabled=True,
                                   layout=w.Layout(width="auto"))  # the default width cuts the label off
        self.status = w.HTML()
        self.image = w.Image(format="png", layout=w.Layout(max_width=f"{self.width}px"))
        self.generate_button.on_click(lambda _: self.generate())
        self.add_button.on_click(lambda _: self.add_to_storyboard())
        self.widget = w.VBox([self.prompt, w.HBox([self.seed, self.steps]),
                              w.HBox([self.generate_button, self.add_button]), self.status, self.image])
        self.last: FrameRequest | None = None

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def generate(self) -> bool:
        """Make the frame for the current prompt, seed and steps; returns False (and says why) on failure.

        Both buttons are disabled while it runs: a second press cannot start another frame, and Add cannot add a
        prompt whose frame is not made yet.
        """
        text = self.prompt.value.strip()
        if not text:
            return self._fail("Type a prompt first.")
        request = FrameRequest(prompt=text, seed=self.seed.value, steps=self.steps.value, guidance=self.guidance,
                               width=self.width, height=self.height)
        self.generate_button.disabled = self.add_button.disabled = True
        try:
            loading = not self._is_loaded()
            if loading:
                self._say(f"loading {self.model}…")
            load_started = time.perf_counter()
            engine = loaded_backend(self.model, self.backend_name, self.device)
            load_seconds = time.perf_counter() - load_started if loading else None
            self._say("generating…")
            started = time.perf_counter()
            image = engine.generate(request, on_step=lambda step, total: self._step(step, total, started))
            self.image.value = encode_png(image)
            self.last = request
            loaded = (f", after loading the model in {load_seconds:.1f} s" if load_seconds is not None
                      else " (the model was already loaded)")
            self._say(f"seed {request.seed}, {request.steps} steps: {time.perf_counter() - started:.1f} s on "
                      f"{engine.device}{loaded}")
            return True
        except TTLessonError as err:
            return self._fail(str(err))
        except Exception as err:  # the widget must survive anything a generation throws
            return self._fail(f"{type(err).__name__}: {err}")
        finally:
            self.generate_button.disabled = False
            self.add_button.disabled = self.last is None

    @property
    def status_text(self) -> str:
        """The status line as plain text."""
        import html
        import re

        return html.unescape(re.sub(r"<[^>]+>", "", self.status.value))

    def _step(self, step: int, total: int, started: float) -> None:
        left = (time.perf_counter() - started) / step * (total - step) if step else 0.0
        self._say(f"step {step}/{total}" + (f" · about {duration(left)} left" if left >= 10 else ""))

    def add_to_storyboard(self) -> bool:
        """Append the last generated prompt and its seed to the storyboard file (created if missing)."""
        if self.last is None:
            return self._fail("Generate a frame first; its prompt and seed are what gets added.")
        try:
            board = (storyboard_mod.load(self.storyboard_path) if self.storyboard_path.exists()
                     else storyboard_mod.Storyboard(frames=[]))
            board.append(self.last.prompt, seed=self.last.seed)
            board.save(self.storyboard_path)
        except TTLessonError as err:
            return self._fail(str(err))
        self._say(f"added as frame {len(board) - 1} of {self.storyboard_path.name}")
        return True

    def _is_loaded(self) -> bool:
        return (self.model, resolve_name(self.backend_name), self.device) in _LOADED

    def _say(self, text: str) -> None:
        import html

        self.status.value = html.escape(text)

    def _fail(self, text: str) -> bool:
        import html

        self.status.value = f'<span style="color:#b00020">{html.escape(text)}</span>'
        return False
